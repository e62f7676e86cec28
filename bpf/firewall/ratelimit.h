/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The per-source table (struct fw_source_set, struct fw_source_index): top-talker counts and
 * the rate limit's token buckets, and the auto-block of a source over the limit.
 */
#ifndef XDPCTL_FIREWALL_RATELIMIT_H
#define XDPCTL_FIREWALL_RATELIMIT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "xdpctl.h"
#include "firewall/maps.h"
#include "firewall/clock.h"
#include "firewall/exact.h"
#include "firewall/packet.h"
#include "firewall/hhh.h"

static __always_inline int rl_applies(struct fw_config *cfg, struct pkt *p)
{
	switch (cfg->rl_proto) {
	case FW_RL_UDP:
		return p->l4proto == IPPROTO_UDP;
	case FW_RL_TCP:
		return p->l4proto == IPPROTO_TCP;
	case FW_RL_ICMP:
		return proto_counter(p) == FW_PROTO_ICMP;
	case FW_RL_SYN:
		return p->syn;
	default:
		return 1;
	}
}

/* Whether the rate limit counts this packet: then its prefix limits count it too. */
static __always_inline int rate_limited(struct fw_config *cfg, struct pkt *p)
{
	return cfg->rl_enabled && cfg->rl_pps && rl_applies(cfg, p);
}

/* A keyed multiplicative hash of a source's four 32-bit words: its low bits pick the set, its
 * high 16 bits are the source's tag in the index. Mirrored by src/firewall/model/ (source_hash). */
static __always_inline __u32 source_hash(struct fw_config *cfg, struct fw_v6_addr *addr)
{
	__u32 w[4], h;

	__builtin_memcpy(w, addr->addr, 16);
	h = cfg->source_seed;
	h = (h ^ w[0]) * 0x9E3779B1;
	h = (h ^ w[1]) * 0x9E3779B1;
	h = (h ^ w[2]) * 0x9E3779B1;
	h = (h ^ w[3]) * 0x9E3779B1;
	return h ^ (h >> 15);
}

/* Where a source lives in the table: its set, its tag and its key (an IPv6 source as it is, an
 * IPv4 one in its IPv4-mapped form). */
struct source_loc {
	__u64 want[2];
	__u32 set;
	__u16 tag;
};

/* Finds the source's set and tag. */
static __always_inline void source_locate(struct fw_config *cfg, struct pkt *p,
					  struct source_loc *loc)
{
	struct fw_v6_addr key;
	__u32 hash;

	if (p->is_v6) {
		key = p->saddr6;
	} else {
		__builtin_memset(key.addr, 0, 10);
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &p->saddr4, 4);
	}
	hash = source_hash(cfg, &key);
	loc->set = hash & cfg->source_set_mask;
	loc->tag = hash >> 16;
	__builtin_memcpy(loc->want, key.addr, 16);
}

/* Whether a source key (16 bytes, as in fw_source.addr and fw_lease.addr) is `want`. */
static __always_inline int key_is(const void *addr, __u64 *want)
{
	__u64 have[2];

	__builtin_memcpy(have, addr, 16);
	return have[0] == want[0] && have[1] == want[1];
}

/* Whether a slot holds the source's address. */
static __always_inline int source_holds(struct fw_source *slot, __u64 *want)
{
	return key_is(slot->addr, want);
}

/* A source's place in the table: its slot (NULL: none, or its first packet), and its packet
 * count in the index (NULL: no set). */
struct source_ref {
	struct fw_source *slot;
	__u16 *packets;
	__u32 way;
};

/* Finds the source in its set, by the index (struct fw_source_index). A way with one packet is
 * a source seen once, known by its tag alone: its slot is written only at its second packet, so
 * a flood of one-off sources costs a read and a write in the index per packet and nothing in
 * the (much larger) slots. A new source takes the way with the fewest packets. */
static __always_inline struct source_ref source_slot(struct clock *clk, struct source_loc *loc,
						     __u64 cap)
{
	struct fw_source_index *index = bpf_map_lookup_elem(&source_index, &loc->set);
	struct fw_source_set *set = bpf_map_lookup_elem(&sources, &loc->set);
	struct source_ref ref = {};
	struct fw_config *cfg = clk->cfg;
	struct fw_source *slot;
	int i, seen_once, victim = 0;
	__u32 fewest = ~0U;

	if (!index || !set)
		return ref;
#pragma unroll
	for (i = 0; i < FW_SOURCE_WAYS; i++) {
		seen_once = index->packets[i] == 1;
		slot = &set->way[i];
		/* A way seen once is this source's by its tag alone: its slot holds nothing yet. */
		if (index->packets[i] && index->tag[i] == loc->tag &&
		    (seen_once || source_holds(slot, loc->want))) {
			if (seen_once) {
				/* Its second packet: the slot starts now, the first counted. */
				__builtin_memcpy(slot->addr, loc->want, 16);
				slot->tokens = cfg->rl_enabled ? cap : 0;
				slot->last_ns = now_ns(clk);
				slot->packets = 1;
				slot->bytes = 0;
			}
			ref.slot = slot;
			ref.packets = &index->packets[i];
			ref.way = i;
			return ref;
		}
		if (index->packets[i] < fewest) {
			fewest = index->packets[i];
			victim = i;
		}
	}
	victim &= FW_SOURCE_WAYS - 1;
	/* A slot in use is emptied for readers of the table (top talkers, the exporter). */
	if (index->packets[victim] > 1)
		set->way[victim].packets = 0;
	index->tag[victim] = loc->tag;
	index->packets[victim] = 0;
	ref.packets = &index->packets[victim];
	return ref;
}

/* This CPU's lease for the source's place (struct fw_lease), if leases are on. */
static __always_inline struct fw_lease *lease_of(struct fw_config *cfg, struct source_loc *loc)
{
	struct fw_leases *leases;
	__u32 zero = 0;

	if (cfg->rl_lease_max < 2)
		return NULL;
	leases = bpf_map_lookup_elem(&source_leases, &zero);
	return leases ? &leases->lease[loc->tag & (FW_LEASES - 1)] : NULL;
}

/* Gives what a lease holds back to its source's slot (if the slot still holds the source):
 * its tokens, up to the bucket's size, and its packet counts; the packets it passed count
 * towards the source's prefixes now, and may block one. Then the lease is empty. */
static __always_inline void lease_settle(struct clock *clk, struct fw_lease *lease, __u64 cap)
{
	struct fw_source_set *set;
	struct fw_source *slot;
	__u64 tokens;

	if (!lease->left && !lease->packets)
		return;
	if (lease->packets) {
		/* An IPv4 source is its IPv4-mapped key: its address is the key's last 4 bytes. */
		prefix_over_limit_leased(clk, lease->is_v6 ? lease->addr[0] : lease->addr[1] >> 32,
					 lease->is_v6, lease->packets);
	}
	set = bpf_map_lookup_elem(&sources, &lease->set);
	if (set) {
		slot = &set->way[lease->way & (FW_SOURCE_WAYS - 1)];
		if (slot->packets && source_holds(slot, lease->addr)) {
			tokens = slot->tokens + (__u64)lease->left * FW_TOKEN;
			slot->tokens = tokens < cap ? tokens : cap;
			slot->packets += lease->packets;
			slot->bytes += lease->bytes;
		}
	}
	lease->left = 0;
	lease->packets = 0;
	lease->bytes = 0;
}

/* What the token bucket made of a packet. */
enum bucket_verdict {
	BUCKET_PASS = 0,   /* passed (or not counted): its prefixes count it now */
	BUCKET_OVER = 1,   /* over the limit */
	BUCKET_LEASED = 2, /* passed from a lease: its prefixes count it when the lease goes back */
};

/* Counts the source (top talkers) and runs its token bucket. A source's first packet is only
 * counted in the index: its bucket starts at its second. With leases on, a packet of the
 * source this CPU holds a live lease for passes from it, and the shared slot is written only
 * at each grant: once per rl_lease_max packets. */
static __always_inline enum bucket_verdict over_rate_limit(struct clock *clk, struct pkt *p,
							   struct source_loc *loc, __u64 len)
{
	struct fw_config *cfg = clk->cfg;
	__u64 cap = cfg->rl_burst * FW_TOKEN;
	struct fw_lease *lease = NULL;
	struct source_ref ref;
	struct fw_source *src;
	__u64 tokens, elapsed, now = 0, grant;

	if (rate_limited(cfg, p))
		lease = lease_of(cfg, loc);
	if (lease) {
		now = now_ns(clk);
		if (lease->left && key_is(lease->addr, loc->want) && now >= lease->granted_ns &&
		    now - lease->granted_ns < FW_LEASE_NS) {
			lease->left--;
			lease->packets++;
			lease->bytes += len;
			return BUCKET_LEASED;
		}
		lease_settle(clk, lease, cap);
	}
	ref = source_slot(clk, loc, cap);
	src = ref.slot;
	if (!ref.packets)
		return BUCKET_PASS;
	if (*ref.packets < FW_SOURCE_INDEX_MAX_PACKETS)
		(*ref.packets)++;
	if (!src)
		return BUCKET_PASS;
	/* Top-talker counters: plain adds, as the bucket below; a race between CPUs on one
	 * source can lose an increment, which costs less than two atomics on every packet. */
	src->packets++;
	src->bytes += len;
	if (!rate_limited(cfg, p))
		return BUCKET_PASS;

	/* Continuous refill from the last update: no windows, so no refill at a boundary.
	 * A clock that reads earlier than last_ns refills nothing instead of underflowing.
	 * rl_full_ns (userspace divides once) is when an empty bucket is full again. */
	now = now_ns(clk);
	tokens = src->tokens;
	if (now > src->last_ns) {
		elapsed = now - src->last_ns;
		if (elapsed >= cfg->rl_full_ns)
			tokens = cap;
		else
			tokens += elapsed * cfg->rl_pps;
		src->last_ns = now;
	}
	if (tokens > cap)
		tokens = cap;
	if (tokens < FW_TOKEN) {
		src->tokens = tokens;
		return BUCKET_OVER;
	}
	grant = 1;
	if (lease) {
		grant = tokens / FW_TOKEN;
		if (grant > cfg->rl_lease_max)
			grant = cfg->rl_lease_max;
		lease->addr[0] = loc->want[0];
		lease->addr[1] = loc->want[1];
		lease->granted_ns = now;
		lease->left = grant - 1;
		lease->set = loc->set;
		lease->way = ref.way;
		lease->is_v6 = p->is_v6;
	}
	src->tokens = tokens - grant * FW_TOKEN;
	return BUCKET_PASS;
}

static __always_inline void auto_block(struct clock *clk, struct pkt *p)
{
	struct fw_config *cfg = clk->cfg;
	struct exact_key key = p->is_v6 ? exact_key_v6(&p->saddr6) : exact_key_v4(p->saddr4);
	__u64 now = now_ns(clk);

	if (!cfg->rl_block_for_ns)
		return;
	/* A full table refuses the entry: the source is still dropped by its bucket. */
	exact_insert(&block_tags, &block_slots, &block_filter, &block_v4, cfg, &key, now,
		     now + cfg->rl_block_for_ns, FW_REASON_RATELIMIT);
}

#endif /* XDPCTL_FIREWALL_RATELIMIT_H */
