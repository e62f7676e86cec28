/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The exact-address tables (struct fw_exact_bucket and struct fw_exact_slot in xdpctl.h): the
 * program's side. Userspace (src/firewall/exact.rs) inserts and removes through its own mapping of
 * the same arrays, with the same hash; the program looks addresses up, counts hits, and inserts the
 * sources it auto-blocks.
 *
 * Everything here is inlined loads, stores and arithmetic, with no branch per lane: the call
 * into the kernel's hash map these tables replace cost more than a whole lookup here.
 */
#ifndef XDPCTL_EXACT_H
#define XDPCTL_EXACT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"

#define EXACT_K1       0x9E3779B97F4A7C15ULL
#define EXACT_K2       0xC2B2AE3D27D4EB4FULL
#define EXACT_K3       0xFF51AFD7ED558CCDULL
#define EXACT_ONES     0x0001000100010001ULL /* 1 in every 16-bit lane */
#define EXACT_HIGHS    0x8000800080008000ULL /* the top bit of every lane */
#define EXACT_V4_ONES  0x0000000100000001ULL /* the same for the 32-bit lanes of IPv4 elements */
#define EXACT_V4_HIGHS 0x8000000080000000ULL

/* At most this many lanes of a bucket may share a tag (inserts keep to it), so a lookup checks
 * at most this many slots; four equal tags of 65,535 among 16 lanes practically never meet. */
#define EXACT_MAX_SAME_TAG 4

/* Accesses the compiler may neither repeat, merge nor move: another CPU or userspace writes. */
#define EXACT_ONCE(x) (*(volatile typeof(x) *)&(x))

/* An address as the tables key it: its 16 bytes as two words (an IPv4 address fills the low
 * four bytes of `lo`), and the LIVE state of its family, which keeps an IPv4 address and the
 * IPv6 address of the same bytes apart. */
struct exact_key {
	__u64 lo;
	__u64 hi;
	__u32 state;
};

/* Where a key may live: its two buckets, and its tag; and its word and bits in the filter. */
struct exact_place {
	__u32 bucket[2];
	__u64 tag_pattern; /* the tag in every lane of a word */
	__u16 tag;
	__u32 filter_word; /* in a half of the filter */
	__u64 filter_bits;
};

static __always_inline struct exact_key exact_key_v4(__u32 addr)
{
	struct exact_key key = {.lo = addr, .hi = 0, .state = FW_EXACT_LIVE_V4};

	return key;
}

static __always_inline struct exact_key exact_key_v6(struct fw_v6_addr *addr)
{
	struct exact_key key = {.state = FW_EXACT_LIVE_V6};

	/* Packet bytes: not aligned. */
	__builtin_memcpy(&key.lo, addr->addr, 8);
	__builtin_memcpy(&key.hi, addr->addr + 8, 8);
	return key;
}

/* The two buckets and the tag of a key: a keyed multiply-xorshift hash whose halves, scaled to
 * the bucket count (no division), pick the buckets, and whose low 16 bits (which the buckets
 * hardly depend on) are the tag. The hash mixed once more picks the filter word (its high half,
 * scaled) and three bits in it (6 low bits each). Mirrored by src/firewall/exact.rs
 * (Place::of). */
static __always_inline struct exact_place exact_place(struct fw_config *cfg, struct exact_key *key)
{
	struct exact_place place;
	__u64 n = cfg->exact_buckets;
	__u64 h = (key->lo ^ cfg->exact_seed) * EXACT_K1;

	h ^= key->hi ^ key->state;
	h = (h ^ (h >> 32)) * EXACT_K2;
	h ^= h >> 32;
	place.bucket[0] = ((h >> 32) * n) >> 32;
	place.bucket[1] = ((h & 0xffffffff) * n) >> 32;
	place.tag = h;
	if (!place.tag)
		place.tag = 1;
	place.tag_pattern = place.tag * EXACT_ONES;
	h = (h ^ (h >> 29)) * EXACT_K3;
	place.filter_word = ((h >> 32) * (n * FW_EXACT_FILTER_WORDS)) >> 32;
	place.filter_bits = 1ULL << (h & 63) | 1ULL << ((h >> 6) & 63) | 1ULL << ((h >> 12) & 63);
	return place;
}

/* Whether any lane of a bucket may hold the tag: the cheap test an absent address (the common
 * case) ends at. After the XOR a matching lane is zero, and (v - ONES) & ~v sets the top bit of
 * the lowest zero lane of a word (perhaps of lanes above it too, never in a word without one). */
static __always_inline int exact_maybe(struct fw_exact_bucket *b, __u64 pattern)
{
	__u64 *words = (__u64 *)b->tag, v, flags = 0;
	int w;

#pragma unroll
	for (w = 0; w < FW_EXACT_LANES / 4; w++) {
		v = words[w] ^ pattern;
		flags |= (v - EXACT_ONES) & ~v;
	}
	return (flags & EXACT_HIGHS) != 0;
}

/* Exactly the lanes of a bucket whose tag is in `pattern` (0: the free lanes), as bits: lane
 * 4w + j is bit 16j + w. Adding 0x7fff to a lane's low 15 bits carries into its top bit unless
 * they are all zero, and or-ing the lane itself catches its top bit. No branch per lane: the
 * verifier would follow every combination. */
static __always_inline __u64 exact_lanes(struct fw_exact_bucket *b, __u64 pattern)
{
	__u64 *words = (__u64 *)b->tag, v, lanes = 0;
	int w;

#pragma unroll
	for (w = 0; w < FW_EXACT_LANES / 4; w++) {
		v = EXACT_ONCE(words[w]) ^ pattern;
		lanes |= (~(((v & ~EXACT_HIGHS) + ~EXACT_HIGHS) | v) & EXACT_HIGHS) >> (15 - w);
	}
	return lanes;
}

/* Bits set in x (the classic parallel count). */
static __always_inline __u64 exact_popcount(__u64 x)
{
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (x * 0x0101010101010101ULL) >> 56;
}

/* The lowest lane of a set of lanes (which must not be empty). */
static __always_inline __u32 exact_lowest(__u64 lanes)
{
	__u64 bit = exact_popcount((lanes & -lanes) - 1);

	return ((bit & 3) * 4 + (bit >> 4)) & (FW_EXACT_LANES - 1);
}

/* The lanes of a bucket's IPv4 element that hold `addr` (never 0: that is a free lane there), as
 * bits (lane i is bit i). The same zero-lane test as exact_lanes, on 32-bit lanes. */
static __always_inline __u32 exact_v4_lanes(struct fw_exact_v4 *b, __u32 addr)
{
	__u64 pattern = addr * EXACT_V4_ONES, v, zero, *words;
	__u32 lanes = 0;
	int h, w;

#pragma unroll
	for (h = 0; h < 2; h++) {
		words = (__u64 *)b->line[h].addr;
#pragma unroll
		for (w = 0; w < FW_EXACT_LANES / 4; w++) {
			v = EXACT_ONCE(words[w]) ^ pattern;
			zero = ~(((v & ~EXACT_V4_HIGHS) + ~EXACT_V4_HIGHS) | v) & EXACT_V4_HIGHS;
			lanes |= ((zero >> 31 | zero >> 62) & 3) << (8 * h + 2 * w);
		}
	}
	return lanes;
}

/* A lane's address and meta word in its element. */
#define EXACT_V4_ADDR(element, lane) ((element)->line[((lane) >> 3) & 1].addr[(lane)&7])
#define EXACT_V4_META(element, lane) ((element)->line[((lane) >> 3) & 1].meta[(lane)&7])

/* The lowest lane of a set of IPv4 lanes (which must not be empty). */
static __always_inline __u32 exact_v4_lowest(__u32 lanes)
{
	return exact_popcount((lanes & -lanes) - 1) & (FW_EXACT_LANES - 1);
}

/* The meta word of slot `index`'s lane in its bucket's IPv4 element (an address: nothing is
 * read), or NULL outside the array. */
static __always_inline __u32 *exact_v4_meta(void *v4, __u32 index)
{
	__u32 bucket = index / FW_EXACT_LANES;
	struct fw_exact_v4 *element = bpf_map_lookup_elem(v4, &bucket);

	if (!element)
		return NULL;
	/* Else clang computes the address before the check, which the verifier refuses. */
	asm volatile("" : "+r"(element));
	return &EXACT_V4_META(element, index);
}

/* Where an IPv4 address other than 0.0.0.0 has its rule, by its two buckets' IPv4 elements:
 * its slot's index and its lane's meta word. Both elements are read before either is searched,
 * so their misses overlap; a random blocked source then costs one miss, not the tags' and then
 * the slot's (reading the second only when the first lacks the address cost more: 206-230 ns
 * against 179-194). The bucket is chosen by arithmetic, not a branch: which of the two holds a
 * random source is a coin toss, which a branch would mispredict half the time. Returns 0 if
 * neither holds it. */
static __always_inline int exact_v4_find(void *v4, struct exact_place *place, __u32 addr,
					 __u32 *index, __u32 **meta)
{
	struct fw_exact_v4 *first = bpf_map_lookup_elem(v4, &place->bucket[0]);
	struct fw_exact_v4 *second = bpf_map_lookup_elem(v4, &place->bucket[1]);
	__u64 lanes, in_first, keep;
	__u32 bucket;

	if (!first || !second)
		return 0;
	lanes = exact_v4_lanes(first, addr);
	in_first = -lanes >> 63; /* 1 if the first element holds it */
	asm volatile("" : "+r"(in_first));
	keep = in_first - 1; /* all ones if it does not */
	lanes |= exact_v4_lanes(second, addr) & keep;
	if (!lanes)
		return 0;
	bucket = place->bucket[1] ^ ((place->bucket[0] ^ place->bucket[1]) & ~(__u32)keep);
	*index = bucket * FW_EXACT_LANES + exact_v4_lowest(lanes);
	*meta = exact_v4_meta(v4, *index);
	return *meta != NULL;
}

static __always_inline int exact_slot_holds(struct fw_exact_slot *slot, struct exact_key *key)
{
	__u64 *addr = (__u64 *)slot->addr; /* at offset 0 of an 8-aligned struct */

	if (EXACT_ONCE(slot->state) != key->state)
		return 0;
	return addr[0] == key->lo && addr[1] == key->hi;
}

/* Slot `index`, if it holds `key`. */
static __always_inline struct fw_exact_slot *exact_slot_at(void *slots, __u32 index,
							   struct exact_key *key)
{
	struct fw_exact_slot *slot = bpf_map_lookup_elem(slots, &index);

	return slot && exact_slot_holds(slot, key) ? slot : NULL;
}

/* The slot of `key` in one bucket (its index in *index), or NULL. */
static __always_inline struct fw_exact_slot *exact_in_bucket(void *tags, void *slots, __u32 bucket,
							     struct exact_place *place,
							     struct exact_key *key, __u32 *index)
{
	struct fw_exact_bucket *b = bpf_map_lookup_elem(tags, &bucket);
	struct fw_exact_slot *slot;
	__u64 lanes;
	int i;

	if (!b || !exact_maybe(b, place->tag_pattern))
		return NULL;
	lanes = exact_lanes(b, place->tag_pattern);
	for (i = 0; i < EXACT_MAX_SAME_TAG; i++) {
		if (!lanes)
			return NULL;
		*index = bucket * FW_EXACT_LANES + exact_lowest(lanes);
		lanes &= lanes - 1;
		slot = exact_slot_at(slots, *index, key);
		if (slot)
			return slot;
	}
	return NULL;
}

/* The slot holding `key` (expired or not; its index in *index), or NULL. */
static __always_inline struct fw_exact_slot *
exact_find(void *tags, void *slots, struct exact_place *place, struct exact_key *key, __u32 *index)
{
	struct fw_exact_slot *slot =
	    exact_in_bucket(tags, slots, place->bucket[0], place, key, index);

	if (slot || place->bucket[1] == place->bucket[0])
		return slot;
	return exact_in_bucket(tags, slots, place->bucket[1], place, key, index);
}

/* The key's word in half `half` (0 or 1) of the filter. */
static __always_inline __u64 *exact_filter_word(void *filter, struct fw_config *cfg,
						struct exact_place *place, __u32 half)
{
	__u32 word = place->filter_word + half * cfg->exact_buckets * FW_EXACT_FILTER_WORDS;

	return bpf_map_lookup_elem(filter, &word);
}

/* Whether the list's filter (the half being read) may hold the key: 0 only if it is not in the
 * table. */
static __always_inline int exact_filter_may_hold(void *filter, struct fw_config *cfg,
						 enum fw_list list, struct exact_place *place)
{
	__u64 *bits = exact_filter_word(filter, cfg, place, (cfg->exact_filter_half >> list) & 1);

	return !bits || (EXACT_ONCE(*bits) & place->filter_bits) == place->filter_bits;
}

/* Adds the key to both halves of the filter, before its tag is published. */
static __always_inline void exact_filter_add(void *filter, struct fw_config *cfg,
					     struct exact_place *place)
{
	__u64 *bits = exact_filter_word(filter, cfg, place, 0);

	if (bits)
		__sync_fetch_and_or(bits, place->filter_bits);
	bits = exact_filter_word(filter, cfg, place, 1);
	if (bits)
		__sync_fetch_and_or(bits, place->filter_bits);
}

/* The memo: the last key this CPU found in the list's table, and where. A flood from one
 * source then finds its rule with a few loads, without the hash and the tag search. The slot
 * is checked each time, so a rule removed or moved is never trusted. */
static __always_inline struct fw_exact_slot *
exact_memo_slot(void *slots, struct fw_exact_memo *memo, struct exact_key *key, __u32 *index)
{
	if (!memo || memo->lo != key->lo || memo->hi != key->hi || memo->state != key->state)
		return NULL;
	*index = memo->slot;
	return exact_slot_at(slots, *index, key);
}

/* Remembers a found key, and its slot, in the memo. */
static __always_inline void exact_remember(struct fw_exact_memo *memo, struct exact_key *key,
					   __u32 index)
{
	if (!memo)
		return;
	memo->lo = key->lo;
	memo->hi = key->hi;
	memo->state = key->state;
	memo->slot = index;
}

/* exact_search's answer for an IPv4 rule known from its bucket's element alone (an operator's,
 * never expiring: its meta word has no FW_EXACT_V4_SLOW), beside the slot's index. */
#define EXACT_FOUND_FAST (1L << 32)

/* The index of the slot holding `key` (expired or not), or -1. An IPv4 address other than
 * 0.0.0.0 is found by its buckets' elements, with EXACT_FOUND_FAST if its slot need not be
 * read (the caller checks a slot it reads, as the memo's); anything else by the tags, and its
 * slot checked here. */
static __always_inline long exact_search(void *tags, void *slots, void *v4, struct exact_key *key,
					 struct exact_place *place)
{
	__u32 index, *meta;

	if (!key || !place)
		return -1;
	if (key->state == FW_EXACT_LIVE_V4 && key->lo) {
		if (!exact_v4_find(v4, place, key->lo, &index, &meta))
			return -1;
		return EXACT_ONCE(*meta) & FW_EXACT_V4_SLOW ? (long)index
							    : (long)index | EXACT_FOUND_FAST;
	}
	return exact_find(tags, slots, place, key, &index) ? index : -1;
}

/* The free lanes of a bucket that may take the tag: none if EXACT_MAX_SAME_TAG lanes hold it. */
static __always_inline __u64 exact_room(void *tags, __u32 bucket, struct exact_place *place)
{
	struct fw_exact_bucket *b = bpf_map_lookup_elem(tags, &bucket);

	if (!b || exact_popcount(exact_lanes(b, place->tag_pattern)) >= EXACT_MAX_SAME_TAG)
		return 0;
	return exact_lanes(b, 0);
}

/* Claims one of the free `lanes` of a bucket for `key` and publishes it there. A lane another
 * writer claimed first is skipped; a few tries are plenty. Returns 0, or -1 if none was had. */
static __always_inline int exact_claim(void *tags, void *slots, void *v4, __u32 bucket, __u64 lanes,
				       struct exact_place *place, struct exact_key *key,
				       __u64 expires_ns, __u32 reason)
{
	struct fw_exact_bucket *b = bpf_map_lookup_elem(tags, &bucket);
	struct fw_exact_v4 *element = bpf_map_lookup_elem(v4, &bucket);
	struct fw_exact_slot *slot;
	__u32 lane, index;
	int i;

	if (!b || !element)
		return -1;
	for (i = 0; i < 4; i++) {
		if (!lanes)
			return -1;
		lane = exact_lowest(lanes);
		lanes &= lanes - 1;
		index = bucket * FW_EXACT_LANES + lane;
		slot = bpf_map_lookup_elem(slots, &index);
		if (!slot || __sync_val_compare_and_swap(&slot->state, FW_EXACT_FREE,
							 FW_EXACT_BUSY) != FW_EXACT_FREE)
			continue;
		((__u64 *)slot->addr)[0] = key->lo;
		((__u64 *)slot->addr)[1] = key->hi;
		slot->hits = 0;
		slot->expires_ns = expires_ns;
		slot->reason = reason;
		slot->generation++; /* a new rule: hits cached for the slot's last are not its */
		/* x86 keeps stores in order: a reader that sees the tag sees the whole slot. */
		EXACT_ONCE(slot->state) = key->state;
		asm volatile("" ::: "memory");
		if (key->state == FW_EXACT_LIVE_V4) {
			/* The program's rules expire: lookups read their slot. */
			EXACT_ONCE(EXACT_V4_META(element, lane)) = FW_EXACT_V4_SLOW;
			asm volatile("" ::: "memory");
			EXACT_ONCE(EXACT_V4_ADDR(element, lane)) = key->lo;
			asm volatile("" ::: "memory");
		}
		EXACT_ONCE(b->tag[lane]) = place->tag;
		return 0;
	}
	return -1;
}

/* Inserts `key` at `now` (the program's auto-block) into the bucket with more room. If the
 * key is there already, its rule (expired: the program auto-blocks only sources no live rule
 * blocks) is renewed in place as a new one, its hits from 0. The program never removes a slot:
 * expired rules stay until userspace sweeps them (`xdpctl list`) or they are renewed, so a
 * renewal by userspace never races a removal here. Returns 0, or -1 if both buckets are full:
 * the source is then still dropped by its token bucket. */
static __always_inline int exact_insert(void *tags, void *slots, void *filter, void *v4,
					struct fw_config *cfg, struct exact_key *key, __u64 now,
					__u64 expires_ns, __u32 reason)
{
	struct exact_place place = exact_place(cfg, key);
	__u32 *meta;
	__u64 first, second, lanes;
	__u32 bucket, index;
	struct fw_exact_slot *slot = exact_find(tags, slots, &place, key, &index);

	/* Also for a renewal: it mends bits a rebuild racing the key's first insert missed. */
	exact_filter_add(filter, cfg, &place);
	if (slot) {
		meta = key->state == FW_EXACT_LIVE_V4 ? exact_v4_meta(v4, index) : NULL;
		/* The flag before the expiry: a lookup that misses it reads no expiry yet. */
		if (slot->expires_ns && now >= slot->expires_ns) {
			/* A new rule: no hit of the old one is counted for it (no CPU adds any to
			 * an expired rule), so its lane's count starts again too. */
			slot->hits = 0;
			slot->generation++;
			if (meta)
				EXACT_ONCE(*meta) = FW_EXACT_V4_SLOW;
		} else if (meta) {
			__sync_fetch_and_or(meta, FW_EXACT_V4_SLOW);
		}
		slot->expires_ns = expires_ns;
		slot->reason = reason;
		return 0;
	}
	first = exact_room(tags, place.bucket[0], &place);
	second = exact_room(tags, place.bucket[1], &place);
	if (exact_popcount(second) > exact_popcount(first)) {
		bucket = place.bucket[0];
		place.bucket[0] = place.bucket[1];
		place.bucket[1] = bucket;
		lanes = first;
		first = second;
		second = lanes;
	}
	if (!exact_claim(tags, slots, v4, place.bucket[0], first, &place, key, expires_ns, reason))
		return 0;
	return exact_claim(tags, slots, v4, place.bucket[1], second, &place, key, expires_ns,
			   reason);
}

#endif /* XDPCTL_EXACT_H */
