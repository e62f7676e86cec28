/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The allow and block lists: whether a packet's source has a live rule in a list, by the
 * list's exact table (exact.h) and then its range trie, behind the range filter.
 */
#ifndef XDPCTL_FIREWALL_LISTS_H
#define XDPCTL_FIREWALL_LISTS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xdpctl.h"
#include "firewall/maps.h"
#include "firewall/clock.h"
#include "firewall/exact.h"
#include "firewall/packet.h"
#include "firewall/hits.h"

/* The tag search of each list's exact table, as global functions: the verifier checks each
 * once, on its own, instead of again for every state the pipeline reaches it in (inlined, the
 * searches kept the program within a few percent of the verifier's limit of a million
 * instructions). Only a source the presence filter cannot rule out pays the call. */
__noinline long allow_exact_search(struct exact_key *key, struct exact_place *place)
{
	return exact_search(&allow_tags, &allow_slots, &allow_v4, key, place);
}

__noinline long block_exact_search(struct exact_key *key, struct exact_place *place)
{
	return exact_search(&block_tags, &block_slots, &block_v4, key, place);
}

/* An exact rule a lookup found: its slot (read only where the rule may expire), its index,
 * its reason, and for an IPv4 rule found by its bucket's element, its lane's meta word. */
struct exact_match {
	struct fw_exact_slot *slot;
	__u32 *meta;
	__u32 index;
	__u32 reason;
};

/* The live exact rule of an address: by the memo, else behind the presence filter, which rules
 * out most absent keys, by the search (exact_search). An IPv4 rule found by its bucket's
 * element that an operator made (by hand or by apply) and never expires is known without a read
 * of its slot; its drop counts as the blocklist's, whichever of the two made it. */
static __always_inline int live_exact(enum fw_list list, struct exact_key *key, struct clock *clk,
				      struct exact_match *m)
{
	int block = list == FW_LIST_BLOCK;
	void *slots = block ? (void *)&block_slots : (void *)&allow_slots;
	struct fw_exact_memo *memo = bpf_map_lookup_elem(&exact_memo, &list);
	struct exact_place place;
	long found;

	m->meta = NULL;
	m->slot = exact_memo_slot(slots, memo, key, &m->index);
	if (!m->slot) {
		place = exact_place(clk->cfg, key);
		if (!exact_filter_may_hold(block ? (void *)&block_filter : (void *)&allow_filter,
					   clk->cfg, list, &place))
			return 0;
		found = block ? block_exact_search(key, &place) : allow_exact_search(key, &place);
		if (found < 0)
			return 0;
		m->index = (__u32)found;			 /* without EXACT_FOUND_FAST */
		m->slot = bpf_map_lookup_elem(slots, &m->index); /* an address: nothing is read */
		if (!m->slot)
			return 0;
		exact_remember(memo, key, m->index);
		if (found & EXACT_FOUND_FAST) {
			m->meta =
			    exact_v4_meta(block ? (void *)&block_v4 : (void *)&allow_v4, m->index);
			m->reason = FW_REASON_MANUAL;
			return m->meta != NULL;
		}
	}
	if (!exact_slot_holds(m->slot, key))
		return 0;
	if (m->slot->expires_ns && now_ns(clk) >= m->slot->expires_ns)
		return 0;
	m->reason = m->slot->reason;
	return 1;
}

/* The range tries, by index, for the bpf_loop callback below (it cannot take a map pointer). */
enum trie_index { ALLOW_V4_TRIE, ALLOW_V6_TRIE, BLOCK_V4_TRIE, BLOCK_V6_TRIE };

static __always_inline void *trie_of(enum trie_index trie)
{
	switch (trie) {
	case ALLOW_V4_TRIE:
		return &allow_v4_lpm;
	case ALLOW_V6_TRIE:
		return &allow_v6_lpm;
	case BLOCK_V4_TRIE:
		return &block_v4_lpm;
	default:
		return &block_v6_lpm;
	}
}

/* The range filter's word `word` (0 outside the array: never, with the array the program was
 * built with, as load refuses pins of another size). */
static __always_inline __u64 range_word(__u32 word)
{
	__u64 *bits = bpf_map_lookup_elem(&range_bits, &word);

	return bits ? *bits : 0;
}

/* Whether a range of a trie may cover an address (the range filter): if not, the trie's lookup
 * is not worth its call. `top` is the address's first 16 bits; for IPv4, `fine` its first
 * FW_RANGE_FINE_BITS, asked where the /16 bit is set. */
static __always_inline int range_may_match(enum trie_index trie, int is_v6, __u32 top, __u32 fine)
{
	__u32 list = trie >= BLOCK_V4_TRIE;

	if (!((range_word(trie * FW_RANGE_WORDS + (top >> 6)) >> (top & 63)) & 1))
		return 0;
	return is_v6 ||
	       (range_word(FW_RANGE_FINE_FIRST + list * FW_RANGE_FINE_WORDS + (fine >> 6)) >>
		(fine & 63)) &
		   1;
}

/* A search for the longest live prefix below an expired one. `key` is a trie key (the IPv4
 * trie reads its first 8 bytes); `live` is set when a live prefix is found at key.prefixlen. */
struct below_expired {
	struct fw_lpm_v6_key key;
	__u64 now;
	enum trie_index trie;
	int live;
};

static long look_below(__u32 i, struct below_expired *search)
{
	struct fw_rule *rule = bpf_map_lookup_elem(trie_of(search->trie), &search->key);

	if (!rule)
		return 1;
	if (!rule->expires_ns || search->now < rule->expires_ns) {
		search->live = 1;
		search->key.prefixlen = rule->prefixlen;
		return 1;
	}
	if (rule->prefixlen == 0 || rule->prefixlen > search->key.prefixlen)
		return 1;
	search->key.prefixlen = rule->prefixlen - 1;
	return 0;
}

/* The longest live prefix in a trie. A lookup finds the longest match no longer than the key's
 * prefixlen, so past an expired match, look again below its length. (Userspace sweeps expired
 * ranges; the program cannot delete them, not knowing which prefix matched.) That rare search
 * runs in bpf_loop, so the verifier checks it once instead of on every path that gets here. */
static __always_inline struct fw_rule *live_lpm(enum trie_index trie, struct fw_lpm_v6_key *key,
						struct clock *clk)
{
	void *map = trie_of(trie);
	struct fw_rule *rule = bpf_map_lookup_elem(map, key);
	struct below_expired search = {.now = now_ns(clk), .trie = trie};

	if (!rule || !expired(rule, clk))
		return rule;
	if (rule->prefixlen == 0 || rule->prefixlen > key->prefixlen)
		return NULL;
	search.key = *key;
	search.key.prefixlen = rule->prefixlen - 1;
	bpf_loop(129, look_below, &search, 0);
	if (!search.live)
		return NULL;
	key->prefixlen = search.key.prefixlen;
	return bpf_map_lookup_elem(map, key);
}

/* Whether the list has a live rule for the packet's source: then *hit is that rule (for
 * count_hit) and *reason its reason (enum fw_rule_reason). The exact table first, then the
 * trie, each only if it may hold entries (maps_in_use), and the trie only if the range filter
 * says a range may cover the source. `list` is a constant where this is inlined, so the maps
 * below are too. */
static __always_inline int match_list(enum fw_list list, struct pkt *p, struct clock *clk,
				      struct hit_rule *hit, __u32 *reason)
{
	int block = list == FW_LIST_BLOCK;
	__u32 in_use = clk->cfg->maps_in_use;
	enum trie_index trie = (block ? BLOCK_V4_TRIE : ALLOW_V4_TRIE) + p->is_v6;
	__u32 lpm_bit = (block ? FW_BLOCK_V4_LPM : FW_ALLOW_V4_LPM) << p->is_v6;
	struct fw_lpm_v6_key lpm_key = {}; /* the IPv4 trie reads it as a struct fw_lpm_v4_key */
	struct exact_match exact;
	struct exact_key key;
	struct fw_rule *rule;
	__u64 lo, hi;
	__u32 top, fine = 0;

	if (in_use & (block ? FW_BLOCK_EXACT : FW_ALLOW_EXACT)) {
		key = p->is_v6 ? exact_key_v6(&p->saddr6) : exact_key_v4(p->saddr4);
		if (live_exact(list, &key, clk, &exact)) {
			*reason = exact.reason;
			*hit = hit_rule(p->is_v6 ? FW_HIT_EXACT_V6 : FW_HIT_EXACT_V4, list,
					&exact.slot->generation, exact.index, key.lo, key.hi,
					&exact.slot->hits, exact.meta);
			return 1;
		}
	}
	if (!(in_use & lpm_bit))
		return 0;
	if (p->is_v6) {
		lpm_key.prefixlen = 128;
		__builtin_memcpy(lpm_key.addr, p->saddr6.addr, 16);
		top = (__u32)p->saddr6.addr[0] << 8 | p->saddr6.addr[1];
	} else {
		lpm_key.prefixlen = 32;
		__builtin_memcpy(lpm_key.addr, &p->saddr4, 4);
		top = bpf_ntohl(p->saddr4) >> 16;
		fine = bpf_ntohl(p->saddr4) >> (32 - FW_RANGE_FINE_BITS);
	}
	if (!range_may_match(trie, p->is_v6, top, fine))
		return 0;
	rule = live_lpm(trie, &lpm_key, clk);
	if (!rule)
		return 0;
	*reason = rule->reason;
	__builtin_memcpy(&lo, lpm_key.addr, 8);
	__builtin_memcpy(&hi, lpm_key.addr + 8, 8);
	if (!p->is_v6)
		lo &= 0xffffffff;
	range_start(&lo, &hi, rule->prefixlen, p->is_v6);
	*hit = hit_rule(p->is_v6 ? FW_HIT_RANGE_V6 : FW_HIT_RANGE_V4, list, &rule->generation,
			rule->prefixlen, lo, hi, &rule->hits, NULL);
	return 1;
}

#endif /* XDPCTL_FIREWALL_LISTS_H */
