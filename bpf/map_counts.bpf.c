// SPDX-License-Identifier: GPL-2.0
/*
 * map_counts: counts the firewall's port rules and rate-limited sources for `xdpctl exporter`,
 * inside the kernel, with bpf_for_each_map_elem: a call per element and no copy, so the 262,144
 * slots of the source table take a millisecond instead of the time it takes to read them out.
 *
 * The maps here are stand-ins: before each load, userspace points every one of them at the
 * firewall's pinned map of the same name (libbpf's reuse_fd), so a scrape always counts the
 * maps that are pinned now, and holds none of them afterwards. It sets now_ns and recent_ns,
 * runs `count` once (BPF_PROG_RUN), then reads the tallies.
 *
 * Userspace counts the address rules itself: the exact tables are mapped into its memory
 * (src/firewall/exact.rs), and LPM tries have no bpf_for_each_map_elem.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_port_rule);
	__uint(max_entries, 1);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_source_set);
	__uint(max_entries, 1);
} sources SEC(".maps");

/* Inputs: the firewall's clock now, and how recent a dry bucket's last packet must be for its
 * source to count as rate-limited. */
const volatile __u64 now_ns;
const volatile __u64 recent_ns;
/* Whether to walk the source table (only with a rate limit on: without one the buckets mean
 * nothing). */
const volatile __u8 count_sources;

struct port_tally {
	__u64 tcp;
	__u64 udp;
};

/* Outputs. */
struct port_tally port_rules;
__u64 rate_limited_sources;

static long count_port(struct bpf_map *map, __u32 *slot, struct fw_port_rule *rule,
		       struct port_tally *tally)
{
	if (!rule->enabled)
		return 0;
	if (*slot / 65536 == FW_PROTO_TCP)
		tally->tcp++;
	else
		tally->udp++;
	return 0;
}

/* A slot is rate-limited when it is in use, its bucket held less than one packet's tokens after
 * its last packet, and that packet came within recent_ns (a clock behind last_ns counts as
 * recent). The kernel updates a bucket only when a packet comes, so this is what it can tell. */
static long count_source_set(struct bpf_map *map, __u32 *index, struct fw_source_set *set,
			     __u64 *limited)
{
	struct fw_source *slot;
	int i;

	for (i = 0; i < FW_SOURCE_WAYS; i++) {
		slot = &set->way[i];
		if (slot->packets && slot->tokens < FW_TOKEN &&
		    (now_ns <= slot->last_ns || now_ns - slot->last_ns < recent_ns))
			(*limited)++;
	}
	return 0;
}

SEC("syscall")
int xdpctl_counts(void *ctx)
{
	struct port_tally ports_on = {};
	__u64 limited = 0;

	bpf_for_each_map_elem(&ports, count_port, &ports_on, 0);
	port_rules = ports_on;
	if (count_sources)
		bpf_for_each_map_elem(&sources, count_source_set, &limited, 0);
	rate_limited_sources = limited;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
