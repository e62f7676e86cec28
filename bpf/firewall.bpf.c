// SPDX-License-Identifier: GPL-2.0
/*
 * firewall: xdpctl's main program. Per packet:
 *
 *   parse eth + VLAN/QinQ -> IPv4 (options, fragments) | IPv6 (extension headers) -> L4
 *   allowlist -> PASS
 *   blocklist (exact-address table, then CIDR trie) -> DROP blocklist
 *   malformed (anything truncated or invalid after the fixed IP header) -> DROP malformed
 *   port rules (TCP/UDP destination port; never for non-first fragments) -> DROP port
 *   per-source token bucket -> DROP ratelimit, and auto-block with an expiry
 *   PASS
 *
 * Address rules only need the fixed IP header (20 / 40 bytes): whatever follows it cannot get
 * a blocked source past the blocklist. Packets without a complete fixed header, and L2 frames
 * truncated or tagged deeper than FW_VLAN_MAX_DEPTH, are dropped as malformed; non-IP frames
 * pass. src/model.rs is the reference model of these semantics, checked against this program
 * packet by packet.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xdpctl.h"
#include "parsing.h"
#include "xdp_stats.h"
#include "exact.h"

/* The rule maps are global: userspace pins them under /sys/fs/bpf/xdpctl/rules and every
 * interface's firewall shares them. Sizes here are defaults; xdpctl sets them at load. */
#define FW_DEFAULT_MAX_RULES   1048576
#define FW_DEFAULT_MAX_SOURCES 262144
/* 5/4 of the lanes the rules need, as src/exact.rs (buckets_for) sizes them. */
#define FW_DEFAULT_EXACT_BUCKETS                                                                   \
	((FW_DEFAULT_MAX_RULES * 5 / 4 + FW_EXACT_LANES - 1) / FW_EXACT_LANES)

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

/* Each list's exact addresses (bpf/exact.h): buckets of tags, the slots they lead to, and the
 * presence filter in front of them (two halves). */
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
	} _list##_filter SEC(".maps")

EXACT_TABLE(allow);
EXACT_TABLE(block);

/* The range filter (FW_RANGE_WORDS in xdpctl.h): a word array, in trie_index order. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 4 * FW_RANGE_WORDS);
	__uint(map_flags, BPF_F_MMAPABLE);
} range_bits SEC(".maps");

/* Per interface (not pinned): each list's memo of its last match (exact_lookup). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_exact_memo);
	__uint(max_entries, 2);
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

/* Per interface (not pinned): packets per destination port, slot FW_PORT_TCP/UDP * 65536 + port,
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

/* What parsing found out about a packet. */
struct pkt {
	int is_v6;
	__u32 saddr4;
	struct fw_v6_addr saddr6; /* IPv6 only */
	int l4proto;		  /* -1 until the IP header (options, extension chain) parsed */
	int malformed;		  /* something after the fixed IP header is truncated or invalid */
	int has_ports;		  /* TCP/UDP header parsed: dport is valid */
	__u16 dport;
	int syn; /* TCP SYN without ACK */
};

/* The clock: CLOCK_MONOTONIC_COARSE as of this jiffy, from the per-CPU cache the history is
 * keyed by (history.h). Tick resolution (1-4 ms) is plenty for expiries and token buckets, and
 * a cached read costs nothing, where bpf_ktime_get_ns costs 30 ns in a VM and even the coarse
 * helper 13 ns (measured). Tests set now_override_ns to drive it. */
struct clock {
	struct fw_config *cfg;
	struct clock_cache *cache;
};

static __always_inline __u64 now_ns(struct clock *clk)
{
	if (clk->cfg->now_override_ns)
		return clk->cfg->now_override_ns;
	return clk->cache ? clk->cache->now_ns : bpf_ktime_get_coarse_ns();
}

static __always_inline int expired(struct fw_rule *rule, struct clock *clk)
{
	return rule->expires_ns && now_ns(clk) >= rule->expires_ns;
}

/* The exact rule of an address, if it has not expired. */
static __always_inline struct fw_exact_slot *live_exact(void *tags, void *slots, void *filter,
							__u32 list, struct exact_key *key,
							struct clock *clk)
{
	struct fw_exact_memo *memo = bpf_map_lookup_elem(&exact_memo, &list);
	struct fw_exact_slot *slot = exact_lookup(tags, slots, filter, list, memo, clk->cfg, key);

	if (slot && slot->expires_ns && now_ns(clk) >= slot->expires_ns)
		return NULL;
	return slot;
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

/* Whether a range of a trie may cover an address whose first 16 bits are `top` (the range
 * filter): if not, the trie's lookup is not worth its call. */
static __always_inline int range_may_match(enum trie_index trie, __u32 top)
{
	__u32 word = trie * FW_RANGE_WORDS + (top >> 6);
	__u64 *bits = bpf_map_lookup_elem(&range_bits, &word);

	return bits && (*bits >> (top & 63)) & 1;
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

/* The hit counter of the list's live rule for the packet's source, or NULL: the exact table
 * first, then the trie, each only if it may hold entries (maps_in_use), and the trie only if the
 * range filter says a range may cover the source. `block`: the block list, else the allow list
 * (a constant where this is inlined, so the maps below are too). */
static __always_inline __u64 *match_list(int block, struct pkt *p, struct clock *clk)
{
	__u32 in_use = clk->cfg->maps_in_use;
	enum trie_index trie = (block ? BLOCK_V4_TRIE : ALLOW_V4_TRIE) + p->is_v6;
	__u32 lpm_bit = (block ? FW_BLOCK_V4_LPM : FW_ALLOW_V4_LPM) << p->is_v6;
	struct fw_lpm_v6_key lpm_key = {}; /* the IPv4 trie reads it as a struct fw_lpm_v4_key */
	struct fw_exact_slot *slot;
	struct exact_key key;
	struct fw_rule *rule;
	__u32 top;

	if (in_use & (block ? FW_BLOCK_EXACT : FW_ALLOW_EXACT)) {
		key = p->is_v6 ? exact_key_v6(&p->saddr6) : exact_key_v4(p->saddr4);
		slot = live_exact(block ? (void *)&block_tags : (void *)&allow_tags,
				  block ? (void *)&block_slots : (void *)&allow_slots,
				  block ? (void *)&block_filter : (void *)&allow_filter, block,
				  &key, clk);
		if (slot)
			return &slot->hits;
	}
	if (!(in_use & lpm_bit))
		return NULL;
	if (p->is_v6) {
		lpm_key.prefixlen = 128;
		__builtin_memcpy(lpm_key.addr, p->saddr6.addr, 16);
		top = (__u32)p->saddr6.addr[0] << 8 | p->saddr6.addr[1];
	} else {
		lpm_key.prefixlen = 32;
		__builtin_memcpy(lpm_key.addr, &p->saddr4, 4);
		top = bpf_ntohl(p->saddr4) >> 16;
	}
	if (!range_may_match(trie, top))
		return NULL;
	rule = live_lpm(trie, &lpm_key, clk);
	return rule ? &rule->hits : NULL;
}

static __always_inline void parse_l4(struct hdr_cursor *nh, void *data_end, struct pkt *p,
				     int nonfirst_frag)
{
	struct tcphdr *tcph;
	struct udphdr *udph;
	int icmp = p->is_v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;

	if (nonfirst_frag)
		return;
	if (p->l4proto == IPPROTO_TCP) {
		if (parse_tcphdr(nh, data_end, &tcph)) {
			p->malformed = 1;
			return;
		}
		p->has_ports = 1;
		p->dport = bpf_ntohs(tcph->dest);
		p->syn = tcph->syn && !tcph->ack;
	} else if (p->l4proto == IPPROTO_UDP) {
		if (parse_udphdr(nh, data_end, &udph)) {
			p->malformed = 1;
			return;
		}
		p->has_ports = 1;
		p->dport = bpf_ntohs(udph->dest);
	} else if (p->l4proto == icmp) {
		if (parse_icmphdr(nh, data_end))
			p->malformed = 1;
	}
}

/* Parses everything after Ethernet. Returns -1 when the fixed IP header is incomplete. */
static __always_inline int parse_ip(struct hdr_cursor *nh, void *data_end, int eth_type,
				    struct pkt *p)
{
	struct ipv6hdr *ip6h;
	struct iphdr *iph;
	int nonfirst_frag = 0;

	p->l4proto = -1;
	if (eth_type == bpf_htons(ETH_P_IP)) {
		if (parse_iphdr_fixed(nh, data_end, &iph))
			return -1;
		p->saddr4 = iph->saddr;
		p->l4proto = parse_iphdr_options(nh, data_end, iph);
		if (p->l4proto < 0) {
			p->malformed = 1;
			return 0;
		}
		nonfirst_frag = (bpf_ntohs(iph->frag_off) & IP_OFFSET) != 0;
	} else {
		if (parse_ip6hdr_fixed(nh, data_end, &ip6h))
			return -1;
		p->is_v6 = 1;
		__builtin_memcpy(p->saddr6.addr, &ip6h->saddr, 16);
		p->l4proto = parse_ip6_ext(nh, data_end, ip6h, &nonfirst_frag);
		if (p->l4proto < 0) {
			p->malformed = 1;
			return 0;
		}
	}
	parse_l4(nh, data_end, p, nonfirst_frag);
	return 0;
}

static __always_inline int proto_counter(struct pkt *p)
{
	if (p->l4proto == IPPROTO_TCP)
		return FW_PROTO_TCP;
	if (p->l4proto == IPPROTO_UDP)
		return FW_PROTO_UDP;
	if (p->l4proto == (p->is_v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP))
		return FW_PROTO_ICMP;
	return FW_PROTO_OTHER;
}

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

/* A keyed multiplicative hash of a source's four 32-bit words: its low bits pick the set, its
 * high 16 bits are the source's tag in the index. Mirrored by src/model.rs (source_hash). */
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

/* Whether a slot holds the source's address. */
static __always_inline int source_holds(struct fw_source *slot, struct source_loc *loc)
{
	__u64 have[2];

	__builtin_memcpy(have, slot->addr, 16);
	return have[0] == loc->want[0] && have[1] == loc->want[1];
}

/* A source's place in the table: its slot (NULL: none, or its first packet), and its packet
 * count in the index (NULL: no set). */
struct source_ref {
	struct fw_source *slot;
	__u16 *packets;
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
		    (seen_once || source_holds(slot, loc))) {
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

/* Counts the source (top talkers) and runs its token bucket. Returns 1 if over the limit. A
 * source's first packet is only counted in the index: its bucket starts at its second. */
static __always_inline int over_rate_limit(struct clock *clk, struct pkt *p, struct source_loc *loc,
					   __u64 len)
{
	struct fw_config *cfg = clk->cfg;
	__u64 cap = cfg->rl_burst * FW_TOKEN;
	struct source_ref ref = source_slot(clk, loc, cap);
	struct fw_source *src = ref.slot;
	__u64 tokens, elapsed, now;

	if (!ref.packets)
		return 0;
	if (*ref.packets < FW_SOURCE_INDEX_MAX_PACKETS)
		(*ref.packets)++;
	if (!src)
		return 0;
	/* Top-talker counters: plain adds, as the bucket below; a race between CPUs on one
	 * source can lose an increment, which costs less than two atomics on every packet. */
	src->packets++;
	src->bytes += len;
	if (!cfg->rl_enabled || !cfg->rl_pps || !rl_applies(cfg, p))
		return 0;

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
	if (tokens >= FW_TOKEN) {
		src->tokens = tokens - FW_TOKEN;
		return 0;
	}
	src->tokens = tokens;
	return 1;
}

static __always_inline void auto_block(struct clock *clk, struct pkt *p)
{
	struct fw_config *cfg = clk->cfg;
	struct exact_key key = p->is_v6 ? exact_key_v6(&p->saddr6) : exact_key_v4(p->saddr4);
	__u64 now = now_ns(clk);

	if (!cfg->rl_block_for_ns)
		return;
	/* A full table refuses the entry: the source is still dropped by its bucket. */
	exact_insert(&block_tags, &block_slots, &block_filter, cfg, &key, now,
		     now + cfg->rl_block_for_ns, FW_REASON_RATELIMIT);
}

static __always_inline __u32 count(struct xdp_md *ctx, struct clock_cache *clock, int proto,
				   int syn, int drop_reason, __u64 len)
{
	__u32 zero = 0;
	struct fw_stats *stats = bpf_map_lookup_elem(&fw_stats, &zero);

	if (stats) {
		stats->proto_packets[proto & 3]++;
		if (syn)
			stats->proto_packets[FW_PROTO_SYN]++;
		/* Bytes in all and dropped are not counted again here: xdp_stats_map has them by
		 * action, and drop_bytes by reason. */
		if (drop_reason >= 0 && drop_reason < FW_DROP_MAX) {
			stats->drop_packets[drop_reason]++;
			stats->drop_bytes[drop_reason] += len;
		}
	}
	return xdp_stats_record_verdict(ctx, clock, drop_reason >= 0 ? XDP_DROP : XDP_PASS,
					drop_reason);
}

SEC("xdp")
int firewall(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct hdr_cursor nh = {.pos = data};
	__u64 len = data_end - data;
	struct pkt p = {};
	struct clock clk = {};
	struct source_loc source;
	__u64 *hits;
	__u32 zero = 0, slot;
	int eth_type, proto;

	clk.cfg = bpf_map_lookup_elem(&fw_config, &zero);
	if (!clk.cfg)
		return XDP_ABORTED;
	clk.cache = clock_now();

	eth_type = parse_ethhdr(&nh, data_end);
	if (eth_type < 0)
		return count(ctx, clk.cache, FW_PROTO_OTHER, 0, FW_DROP_MALFORMED, len);
	if (eth_type != bpf_htons(ETH_P_IP) && eth_type != bpf_htons(ETH_P_IPV6))
		return count(ctx, clk.cache, FW_PROTO_OTHER, 0, -1, len);
	if (parse_ip(&nh, data_end, eth_type, &p))
		return count(ctx, clk.cache, FW_PROTO_OTHER, 0, FW_DROP_MALFORMED, len);
	proto = proto_counter(&p);
	if (p.has_ports) {
		__u64 *port_count;

		slot = (p.l4proto == IPPROTO_TCP ? FW_PORT_TCP : FW_PORT_UDP) * 65536 + p.dport;
		port_count = bpf_map_lookup_elem(&port_packets, &slot);
		if (port_count)
			(*port_count)++;
	}

	hits = match_list(0, &p, &clk);
	if (hits) {
		__sync_fetch_and_add(hits, 1);
		return count(ctx, clk.cache, proto, p.syn, -1, len);
	}
	hits = match_list(1, &p, &clk);
	if (hits) {
		__sync_fetch_and_add(hits, 1);
		return count(ctx, clk.cache, proto, p.syn, FW_DROP_BLOCKLIST, len);
	}
	if (p.malformed)
		return count(ctx, clk.cache, proto, p.syn, FW_DROP_MALFORMED, len);
	if (p.has_ports) {
		struct fw_port_rule *port;

		port = bpf_map_lookup_elem(&ports, &slot);
		if (port && port->enabled) {
			__sync_fetch_and_add(&port->hits, 1);
			return count(ctx, clk.cache, proto, p.syn, FW_DROP_PORT, len);
		}
	}
	source_locate(clk.cfg, &p, &source);
	if (over_rate_limit(&clk, &p, &source, len)) {
		auto_block(&clk, &p);
		return count(ctx, clk.cache, proto, p.syn, FW_DROP_RATELIMIT, len);
	}
	return count(ctx, clk.cache, proto, p.syn, -1, len);
}

char LICENSE[] SEC("license") = "GPL";
