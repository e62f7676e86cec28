/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Rule hit counts (struct fw_hit_cache in xdpctl.h): a hit is counted in this CPU's cache, and
 * reaches the rule's own (shared) counter only when another rule takes its entry over. A flood
 * that hits one rule from every CPU so writes no line another CPU writes; a flood over many
 * rules adds to each rule's counter about once per hit, into the line its lookup just read.
 */
#ifndef XDPCTL_FIREWALL_HITS_H
#define XDPCTL_FIREWALL_HITS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xdpctl.h"
#include "firewall/maps.h"
#include "firewall/exact.h"

#define HIT_K1 0x9E3779B97F4A7C15ULL

/* A rule as its cache entry knows it (the entry's fields past its counts), and its own
 * counter. The generation is read through a pointer only when it is needed, as an entry holds
 * the rule or takes it over: an IPv4 rule found by its bucket's element (exact_v4_find) then
 * costs no read of its slot, which a random source's rule would pay a miss for. */
struct hit_rule {
	__u64 addr[2];
	__u64 word; /* kind, list and index, as they lie in struct fw_hit_entry (no generation) */
	__u16 *generation;
	__u64 *counter;
	__u32 *lane_hits; /* an IPv4 exact rule's meta word (struct fw_exact_v4), or NULL */
};

#define HIT_GENERATION_BITS (0xffffULL << 16)

_Static_assert(__builtin_offsetof(struct fw_hit_entry, addr) == 8, "hit entry layout");
_Static_assert(__builtin_offsetof(struct fw_hit_entry, kind) == 24, "hit entry layout");
_Static_assert(sizeof(struct fw_hit_entry) == 32, "hit entry layout");

static __always_inline struct hit_rule hit_rule(__u8 kind, __u8 list, __u16 *generation,
						__u32 index, __u64 lo, __u64 hi, __u64 *counter,
						__u32 *lane_hits)
{
	struct hit_rule rule = {
	    .addr = {lo, hi}, .generation = generation, .counter = counter, .lane_hits = lane_hits};

	rule.word = kind | (__u64)list << 8 | (__u64)index << 32;
	return rule;
}

/* Adds a hit to the rule's own counter: for an IPv4 exact rule, its lane's count in the line
 * its lookup just read, which moves into the slot's counter each FW_EXACT_V4_FOLD hits (the CPU
 * that sees the count reach it moves it; the flag bit above is left alone). */
static __always_inline void add_hit(struct hit_rule *rule)
{
	__u32 old;

	if (!rule->lane_hits) {
		__sync_fetch_and_add(rule->counter, 1);
		return;
	}
	old = __sync_fetch_and_add(rule->lane_hits, 1);
	if ((old & FW_EXACT_V4_HITS) == FW_EXACT_V4_FOLD - 1) {
		__sync_fetch_and_add(rule->lane_hits, -FW_EXACT_V4_FOLD);
		__sync_fetch_and_add(rule->counter, FW_EXACT_V4_FOLD);
	}
}

/* The rule's counter, if the rule an entry counted for is still there: the same slot, range
 * or port, with the same generation. A rule gone since only loses the hits not yet added. */
static __noinline __u64 *hit_counter(struct fw_hit_entry *e)
{
	struct fw_lpm_v6_key key6 = {.prefixlen = e->index};
	struct fw_lpm_v4_key key4 = {.prefixlen = e->index, .addr = (__u32)e->addr[0]};
	struct fw_exact_slot *slot;
	struct fw_port_rule *port;
	struct fw_rule *rule;
	__u32 index = e->index, state;

	switch (e->kind) {
	case FW_HIT_EXACT_V4:
	case FW_HIT_EXACT_V6:
		slot = bpf_map_lookup_elem(
		    e->list == FW_LIST_BLOCK ? (void *)&block_slots : (void *)&allow_slots, &index);
		state = e->kind == FW_HIT_EXACT_V4 ? FW_EXACT_LIVE_V4 : FW_EXACT_LIVE_V6;
		if (!slot || slot->state != state || slot->generation != e->generation ||
		    ((__u64 *)slot->addr)[0] != e->addr[0] ||
		    ((__u64 *)slot->addr)[1] != e->addr[1])
			return NULL;
		return &slot->hits;
	case FW_HIT_RANGE_V4:
		rule = bpf_map_lookup_elem(e->list == FW_LIST_BLOCK ? (void *)&block_v4_lpm
								    : (void *)&allow_v4_lpm,
					   &key4);
		break;
	case FW_HIT_RANGE_V6:
		__builtin_memcpy(key6.addr, e->addr, 16);
		rule = bpf_map_lookup_elem(e->list == FW_LIST_BLOCK ? (void *)&block_v6_lpm
								    : (void *)&allow_v6_lpm,
					   &key6);
		break;
	case FW_HIT_PORT:
		port = bpf_map_lookup_elem(&ports, &index);
		if (!port || !port->enabled || port->generation != e->generation)
			return NULL;
		return &port->hits;
	default:
		return NULL;
	}
	if (!rule || rule->prefixlen != e->index || rule->generation != e->generation)
		return NULL;
	return &rule->hits;
}

/* Counts a hit of `rule` in this CPU's cache, or in the rule's own counter while another rule
 * holds its entry. */
static __always_inline void count_hit(struct hit_rule *rule)
{
	__u32 zero = 0, i, pending;
	struct fw_hit_cache *cache = bpf_map_lookup_elem(&hit_cache, &zero);
	struct fw_hit_entry *e;
	__u64 word, *counter;

	if (!cache)
		return;
	i = ((rule->addr[0] ^ rule->addr[1] * HIT_K1 ^ rule->word) * HIT_K1) >> 54;
	e = &cache->entry[i & (FW_HIT_CACHE_ENTRIES - 1)];
	__builtin_memcpy(&word, &e->kind, 8);
	if ((word & ~HIT_GENERATION_BITS) == rule->word && e->addr[0] == rule->addr[0] &&
	    e->addr[1] == rule->addr[1] && e->count < ~0U &&
	    e->generation == EXACT_ONCE(*rule->generation)) {
		e->count++;
		e->misses = 0;
		return;
	}
	if (e->count && ++e->misses < FW_HIT_TAKEOVER) {
		add_hit(rule);
		return;
	}
	/* Userspace reads entries while this runs: an entry's count is zeroed before it is added
	 * to its rule, and set for a new rule only after the rule is written, so a reading under
	 * traffic may miss an entry's hits for a moment but never counts them twice. */
	pending = e->count;
	e->count = 0;
	asm volatile("" ::: "memory");
	if (pending) {
		counter = hit_counter(e);
		if (counter)
			__sync_fetch_and_add(counter, pending);
	}
	e->misses = 0;
	e->addr[0] = rule->addr[0];
	e->addr[1] = rule->addr[1];
	word = rule->word | (__u64)EXACT_ONCE(*rule->generation) << 16;
	__builtin_memcpy(&e->kind, &word, 8);
	asm volatile("" ::: "memory"); /* x86 keeps stores in order; the compiler must too */
	e->count = 1;
}

/* The first address of the /len range around an address (16 bytes as two words, as loaded). */
static __always_inline void range_start(__u64 *lo, __u64 *hi, __u32 len, int is_v6)
{
	if (!is_v6) {
		*lo &= len ? bpf_htonl(~0U << (32 - len)) : 0;
		return;
	}
	if (len < 64) {
		*lo &= len ? __builtin_bswap64(~0ULL << (64 - len)) : 0;
		*hi = 0;
	} else if (len < 128) {
		*hi &= len > 64 ? __builtin_bswap64(~0ULL << (128 - len)) : 0;
	}
}

#endif /* XDPCTL_FIREWALL_HITS_H */
