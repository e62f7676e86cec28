/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Prefix limits (enum fw_hhh_level in xdpctl.h): per-CPU counts of each source prefix in a
 * tumbling window, and the auto-block of a prefix over its limit, in the block list's trie.
 * src/firewall/model/hhh.rs mirrors every step, cell for cell.
 */
#ifndef XDPCTL_FIREWALL_HHH_H
#define XDPCTL_FIREWALL_HHH_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xdpctl.h"
#include "firewall/maps.h"
#include "firewall/clock.h"
#include "firewall/packet.h"
#include "firewall/lists.h"

/* A prefix's key: the source's first `len` bits, as its first 8 bytes (IPv6) or 4 (IPv4) load
 * on this little-endian machine, the rest masked off. */
static __always_inline __u64 hhh_key(__u64 first, __u32 len)
{
	return len >= 64 ? first : first & ((1ULL << len) - 1);
}

/* The length of a family's level `i` (0: the shortest). */
static __always_inline __u32 hhh_len(int is_v6, __u32 i)
{
	return is_v6 ? 32 + 16 * i : 8 + 8 * i;
}

/* A keyed 64-bit mix of a prefix and its level: row 0 takes its low bits, row 1 the next. */
static __always_inline __u64 hhh_hash(__u32 seed, __u64 key, __u32 level)
{
	__u64 h = (key ^ ((__u64)seed << 32 | seed) ^ ((__u64)level << 59)) * 0x9E3779B97F4A7C15ULL;

	h ^= h >> 29;
	h *= 0xBF58476D1CE4E5B9ULL;
	return h ^ (h >> 32);
}

/* Counts `packets` of a prefix in its level's two rows, conservatively: the estimate is the
 * smaller cell plus the packets, and only cells below the new estimate rise to it. A cell of
 * another window counts as 0 and restarts. Returns the prefix's new estimate in this window. */
static __always_inline __u32 hhh_count(__u32 level, __u64 h, __u32 window, __u32 packets)
{
	__u32 row0 = level * FW_HHH_ROWS, row1 = row0 + 1;
	struct fw_hhh_chunk *r0 = bpf_map_lookup_elem(&hhh_counts, &row0);
	struct fw_hhh_chunk *r1 = bpf_map_lookup_elem(&hhh_counts, &row1);
	struct fw_hhh_cell *a, *b;
	__u32 va, vb, n;

	if (!r0 || !r1)
		return 0;
	a = &r0->cell[h & (FW_HHH_CELLS - 1)];
	b = &r1->cell[(h >> 16) & (FW_HHH_CELLS - 1)];
	va = a->window == window ? a->count : 0;
	vb = b->window == window ? b->count : 0;
	n = va < vb ? va : vb;
	n = n > ~0U - packets ? ~0U : n + packets;
	if (va < n) {
		a->window = window;
		a->count = n;
	}
	if (vb < n) {
		b->window = window;
		b->count = n;
	}
	return n;
}

/* Notes a prefix for `top` when its count `n` (up by `packets`) passes a quarter of its
 * limit (once a window). */
static __always_inline void hhh_note_heavy(__u32 limit, __u32 n, __u32 packets, __u64 key,
					   __u32 level, __u64 h, __u32 window)
{
	struct fw_hhh_heavy *heavy;
	struct fw_hhh_candidate *slot;
	__u32 zero = 0;

	if (!limit || n <= limit / 4 || (__u64)n > (__u64)(limit / 4) + packets)
		return;
	heavy = bpf_map_lookup_elem(&hhh_heavy, &zero);
	if (!heavy)
		return;
	slot = &heavy->prefix[(h >> 32) & (FW_HHH_HEAVY - 1)];
	slot->key = key;
	slot->level = level;
	slot->window = window;
}

/* Counts `packets` of a source at its family's three lengths, and finds the longest prefix
 * over its level's limit whose shorter prefixes are all over that limit too: its level, or
 * FW_HHH_LEVELS if none is. `first`: the source's first 8 bytes (IPv6) or 4 (IPv4), as
 * loaded. */
static __always_inline int prefix_count(struct clock *clk, __u64 first, int is_v6, __u32 packets)
{
	struct fw_config *cfg = clk->cfg;
	__u32 base = is_v6 ? FW_HHH_V6_32 : FW_HHH_V4_8;
	__u32 n[FW_HHH_FAMILY_LEVELS], window, limit, i, j;
	__u64 key, h;
	int over;

	if (!cfg->hhh_window_shift)
		return FW_HHH_LEVELS;
	window = now_ns(clk) >> (cfg->hhh_window_shift & 63);
#pragma unroll
	for (i = 0; i < FW_HHH_FAMILY_LEVELS; i++) {
		key = hhh_key(first, hhh_len(is_v6, i));
		h = hhh_hash(cfg->hhh_seed, key, base + i);
		n[i] = hhh_count(base + i, h, window, packets);
		hhh_note_heavy(cfg->hhh_limit[base + i], n[i], packets, key, base + i, h, window);
	}
#pragma unroll
	for (i = FW_HHH_FAMILY_LEVELS; i-- > 0;) {
		limit = cfg->hhh_limit[base + i];
		over = limit && n[i] > limit;
#pragma unroll
		for (j = 0; j < i; j++)
			over = over && n[j] > limit;
		if (over)
			return base + i;
	}
	return FW_HHH_LEVELS;
}

/* A source's first 8 bytes (IPv6) or 4 (IPv4), as prefix_count() takes them. */
static __always_inline __u64 source_first(struct pkt *p)
{
	__u64 first = p->saddr4;

	if (p->is_v6)
		__builtin_memcpy(&first, p->saddr6.addr, 8);
	return first;
}

/* Sets bits of the range filter, after the trie holds the new block they are for: userspace
 * recomputes the filter from the trie and then marks what the trie holds again, so a block is
 * never left unmarked. */
static __always_inline void prefix_mark_filter(__u32 word, __u64 bits)
{
	__u64 *at = bpf_map_lookup_elem(&range_bits, &word);

	if (at)
		__sync_fetch_and_or(at, bits);
}

/* The bits of the values of an IPv4 address's first `bits` bits that the /len prefix from
 * `first` (host order) spans, in the filter level whose words start at `base`: a power of two
 * of them, aligned; up to 64 words of them whole. */
static __always_inline void prefix_mark_level(__u32 base, __u32 bits, __u32 first, __u32 len)
{
	__u32 value = first >> (32 - bits), count = len >= bits ? 1 : 1 << (bits - len), k;

	if (count < 64) {
		prefix_mark_filter(base + (value >> 6), ((1ULL << count) - 1) << (value & 63));
		return;
	}
	for (k = 0; k < 64 && k < count / 64; k++)
		prefix_mark_filter(base + (value >> 6) + k, ~0ULL);
}

/* A new block's generation (struct fw_hit_entry): the next of the program's own, for a renewal
 * too. One more than the block it replaces would be the generation of the next fresh block of
 * the prefix, so hit counts cached for a block swept since could reach that one. */
static __always_inline __u16 block_generation(struct fw_config *cfg)
{
	return 0x8000 | __sync_fetch_and_add(&cfg->next_block_generation, 1);
}

/* Blocks the prefix `key`/`len` from `now` for fw_config.hhh_block_for_ns. A full
 * trie refuses it: the packet is still dropped, and so is every packet over the limit in this
 * window. A global function, which the verifier checks once on its own instead of on every
 * path to its callers (with its filter loops); it runs once per prefix blocked. */
__noinline int prefix_block(__u64 key, __u32 len, __u32 is_v6, __u64 now)
{
	struct fw_rule rule = {.reason = FW_REASON_PREFIX, .prefixlen = len};
	struct fw_lpm_v6_key key6 = {.prefixlen = len};
	struct fw_lpm_v4_key key4 = {.prefixlen = len, .addr = (__u32)key};
	struct fw_config *cfg;
	__u32 zero = 0, top, first;

	cfg = bpf_map_lookup_elem(&fw_config, &zero);
	if (!cfg || !cfg->hhh_block_for_ns)
		return 0;
	rule.expires_ns = now + cfg->hhh_block_for_ns;
	rule.generation = block_generation(cfg);
	if (is_v6) {
		__builtin_memcpy(key6.addr, &key, 8);
		if (bpf_map_update_elem(&block_v6_lpm, &key6, &rule, BPF_ANY))
			return -1;
		top = (__u32)key6.addr[0] << 8 | key6.addr[1];
		prefix_mark_filter(BLOCK_V6_TRIE * FW_RANGE_WORDS + (top >> 6), 1ULL << (top & 63));
		return 0;
	}
	if (bpf_map_update_elem(&block_v4_lpm, &key4, &rule, BPF_ANY))
		return -1;
	/* IPv4 levels are /8, /16 and /24: a /8 spans 256 values of the /16 level and 4,096 of
	 * the /20 level, 4 and 64 words. */
	first = bpf_ntohl(key4.addr);
	len = len < 8 ? 8 : len;
	prefix_mark_level(BLOCK_V4_TRIE * FW_RANGE_WORDS, 16, first, len);
	prefix_mark_level(FW_RANGE_FINE_FIRST + FW_RANGE_FINE_WORDS, FW_RANGE_FINE_BITS, first,
			  len);
	return 0;
}

/* Blocks the prefix of source bytes `first` at the level prefix_count() found over its limit;
 * returns 1, or 0 if there is none (FW_HHH_LEVELS). */
static __always_inline int prefix_trip_block(struct clock *clk, __u64 first, int is_v6, int level)
{
	__u32 len;

	if (level >= FW_HHH_LEVELS)
		return 0;
	len = hhh_len(is_v6, level - (is_v6 ? FW_HHH_V6_32 : FW_HHH_V4_8));
	prefix_block(hhh_key(first, len), len, is_v6, now_ns(clk));
	return 1;
}

/* Counts a packet that passed its source's bucket towards its prefixes, and blocks the
 * longest prefix over its limit: then returns 1. Inlined: it runs for every such packet. */
static __always_inline int prefix_over_limit(struct clock *clk, struct pkt *p)
{
	__u64 first = source_first(p);

	return prefix_trip_block(clk, first, p->is_v6, prefix_count(clk, first, p->is_v6, 1));
}

/* prefix_count() as a global function, for the packets a lease passed, counted when the lease
 * goes back (lease_settle): the verifier checks it once on its own. Inlined there too, deep in
 * the token bucket's paths, the counts' branches took most of the program's budget of a
 * million verified instructions. Returns the level that tripped, or FW_HHH_LEVELS. */
__noinline int prefix_count_global(__u64 first, __u32 is_v6, __u32 packets)
{
	struct clock clk = {.cache = clock_cached()};
	__u32 zero = 0;

	clk.cfg = bpf_map_lookup_elem(&fw_config, &zero);
	if (!clk.cfg)
		return FW_HHH_LEVELS;
	return prefix_count(&clk, first, is_v6, packets);
}

/* Counts the packets a lease passed towards their source's prefixes, and blocks the longest
 * prefix over its limit. The caller of both globals, so their stacks never add up. */
static __always_inline void prefix_over_limit_leased(struct clock *clk, __u64 first, int is_v6,
						     __u32 packets)
{
	prefix_trip_block(clk, first, is_v6, prefix_count_global(first, is_v6, packets));
}

#endif /* XDPCTL_FIREWALL_HHH_H */
