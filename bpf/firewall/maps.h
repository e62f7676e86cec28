/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The firewall's maps: the rule maps every interface shares (pinned under
 * /sys/fs/bpf/xdpctl/rules), and each interface's own memo and counters.
 */
#ifndef XDPCTL_FIREWALL_MAPS_H
#define XDPCTL_FIREWALL_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"

/* The rule maps are global: userspace pins them under /sys/fs/bpf/xdpctl/rules and every
 * interface's firewall shares them. Their sizes here are the defaults (FW_DEFAULT_* in
 * xdpctl.h); xdpctl sets them at load. */
#define RANGE_TRIE(_name, _key)                                                                    \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                               \
		__type(key, _key);                                                                 \
		__type(value, struct fw_rule);                                                     \
		__uint(max_entries, FW_DEFAULT_MAX_RULES);                                         \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
	} _name SEC(".maps")

RANGE_TRIE(allow_v4_lpm, struct fw_lpm_v4_key);
RANGE_TRIE(allow_v6_lpm, struct fw_lpm_v6_key);
RANGE_TRIE(block_v4_lpm, struct fw_lpm_v4_key);
RANGE_TRIE(block_v6_lpm, struct fw_lpm_v6_key);

/* Each list's exact addresses (bpf/firewall/exact.h): buckets of tags, the slots they lead to, the
 * presence filter in front of them (two halves), and the buckets' IPv4 lanes whole. */
#define EXACT_TABLE(_list)                                                                         \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                                  \
		__type(key, __u32);                                                                \
		__type(value, struct fw_exact_bucket);                                             \
		__uint(max_entries, FW_DEFAULT_EXACT_BUCKETS);                                     \
		__uint(map_flags, BPF_F_MMAPABLE);                                                 \
	} _list##_tags SEC(".maps");                                                               \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                                  \
		__type(key, __u32);                                                                \
		__type(value, struct fw_exact_slot);                                               \
		__uint(max_entries, FW_DEFAULT_EXACT_BUCKETS *FW_EXACT_LANES);                     \
		__uint(map_flags, BPF_F_MMAPABLE);                                                 \
	} _list##_slots SEC(".maps");                                                              \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                                  \
		__type(key, __u32);                                                                \
		__type(value, __u64);                                                              \
		__uint(max_entries, FW_DEFAULT_EXACT_BUCKETS *FW_EXACT_FILTER_WORDS * 2);          \
		__uint(map_flags, BPF_F_MMAPABLE);                                                 \
	} _list##_filter SEC(".maps");                                                             \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                                  \
		__type(key, __u32);                                                                \
		__type(value, struct fw_exact_v4);                                                 \
		__uint(max_entries, FW_DEFAULT_EXACT_BUCKETS);                                     \
		__uint(map_flags, BPF_F_MMAPABLE);                                                 \
	} _list##_v4 SEC(".maps")

EXACT_TABLE(allow);
EXACT_TABLE(block);

/* The range filter (FW_RANGE_WORDS in xdpctl.h): a word array, in trie_index order, then the
 * IPv4 tries' fine level. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, FW_RANGE_ALL_WORDS);
	__uint(map_flags, BPF_F_MMAPABLE);
} range_bits SEC(".maps");

/* Per interface (not pinned): each list's memo of its last match (exact_memo_slot, exact_remember).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_exact_memo);
	__uint(max_entries, FW_LIST_MAX);
} exact_memo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_port_rule);
	__uint(max_entries, FW_PORT_SLOTS);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_config);
	__uint(max_entries, 1);
} fw_config SEC(".maps");

/* The per-source table (see struct fw_source_set): max_entries sets of FW_SOURCE_WAYS. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_source_set);
	__uint(max_entries, FW_DEFAULT_MAX_SOURCES / FW_SOURCE_WAYS);
} sources SEC(".maps");

/* Its index (struct fw_source_index): an entry per set of `sources`. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_source_index);
	__uint(max_entries, FW_DEFAULT_MAX_SOURCES / FW_SOURCE_WAYS);
} source_index SEC(".maps");

/* Each CPU's leases of sources' tokens (struct fw_leases, bpf/firewall/ratelimit.h). Global,
 * with the buckets they come from. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_leases);
	__uint(max_entries, 1);
} source_leases SEC(".maps");

/* Prefix limits (bpf/firewall/hhh.h): each CPU's sketches, a chunk per level and row, and the
 * prefixes it noted as heavy. Global: a host's limits count its traffic on every interface. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_hhh_chunk);
	__uint(max_entries, FW_HHH_CHUNKS);
} hhh_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_hhh_heavy);
	__uint(max_entries, 1);
} hhh_heavy SEC(".maps");

/* Rule hits not yet in their rules' counters (struct fw_hit_cache, bpf/firewall/hits.h). Global,
 * as the rules are: a reload keeps them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_hit_cache);
	__uint(max_entries, 1);
} hit_cache SEC(".maps");

/* Per interface (not pinned): packets per destination port, slot FW_PROTO_TCP/UDP * 65536 + port,
 * counted whatever the verdict (`xdpctl ports`). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, FW_PORT_SLOTS);
} port_packets SEC(".maps");

/* Per interface (not pinned): the firewall's own counters, beside xdp_stats_map. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_stats);
	__uint(max_entries, 1);
} fw_stats SEC(".maps");

#endif /* XDPCTL_FIREWALL_MAPS_H */
