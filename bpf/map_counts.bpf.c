// SPDX-License-Identifier: GPL-2.0
/*
 * map_counts: counts the firewall's rules and rate-limited sources for `xdpctl exporter`,
 * inside the kernel, with bpf_for_each_map_elem: a call per element and no copy, so a million
 * rules take milliseconds instead of the fraction of a second it takes to read them out.
 *
 * The maps here are stand-ins: before each load, userspace points every one of them at the
 * firewall's pinned map of the same name (libbpf's reuse_fd), so a scrape always counts the
 * maps that are pinned now, and holds none of them afterwards. It sets now_ns and recent_ns,
 * runs `count` once (BPF_PROG_RUN), then reads the tallies.
 *
 * LPM tries have no bpf_for_each_map_elem: userspace counts the ranges itself.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"

#define RULE_HASH(_name, _key)                                                                     \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__type(key, _key);                                                                 \
		__type(value, struct fw_rule);                                                     \
		__uint(max_entries, 1);                                                            \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
	} _name SEC(".maps")

RULE_HASH(allow_v4, __u32);
RULE_HASH(allow_v6, struct fw_v6_addr);
RULE_HASH(block_v4, __u32);
RULE_HASH(block_v6, struct fw_v6_addr);

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
/* fw_config.maps_in_use: a map whose bit is clear is empty, and walking the buckets of an empty
 * hash of a million still costs milliseconds. */
const volatile __u32 maps_in_use;
/* Whether to walk the source table (only with a rate limit on: without one the buckets mean
 * nothing). */
const volatile __u8 count_sources;

/* What one rule hash holds. */
struct rule_tally {
	__u64 live;	    /* rules not expired */
	__u64 rate_limited; /* of those, the ones the rate limiter made (auto-blocked sources) */
};

struct port_tally {
	__u64 tcp;
	__u64 udp;
};

/* Outputs. */
struct rule_tally allow_v4_rules, allow_v6_rules, block_v4_rules, block_v6_rules;
struct port_tally port_rules;
__u64 rate_limited_sources;

static long count_rule(struct bpf_map *map, void *key, struct fw_rule *rule,
		       struct rule_tally *tally)
{
	if (rule->expires_ns && now_ns >= rule->expires_ns)
		return 0;
	tally->live++;
	if (rule->reason == FW_REASON_RATELIMIT)
		tally->rate_limited++;
	return 0;
}

static long count_port(struct bpf_map *map, __u32 *slot, struct fw_port_rule *rule,
		       struct port_tally *tally)
{
	if (!rule->enabled)
		return 0;
	if (*slot / 65536 == FW_PORT_TCP)
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

/* Walks one rule hash, unless it is empty, into its output (the callbacks' context must be on
 * the stack). */
#define COUNT_RULES(_map, _bit)                                                                    \
	({                                                                                         \
		struct rule_tally tally = {};                                                      \
		if (maps_in_use & (_bit))                                                          \
			bpf_for_each_map_elem(&_map, count_rule, &tally, 0);                       \
		_map##_rules = tally;                                                              \
	})

SEC("syscall")
int xdpctl_counts(void *ctx)
{
	struct port_tally ports_on = {};
	__u64 limited = 0;

	COUNT_RULES(allow_v4, FW_ALLOW_V4);
	COUNT_RULES(allow_v6, FW_ALLOW_V6);
	COUNT_RULES(block_v4, FW_BLOCK_V4);
	COUNT_RULES(block_v6, FW_BLOCK_V6);
	bpf_for_each_map_elem(&ports, count_port, &ports_on, 0);
	port_rules = ports_on;
	if (count_sources)
		bpf_for_each_map_elem(&sources, count_source_set, &limited, 0);
	rate_limited_sources = limited;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
