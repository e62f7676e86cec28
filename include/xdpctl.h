/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The structs shared by the BPF programs and the Rust side. Every layout here
 * is part of xdpctl's ABI: the Rust side reads and writes these bytes in maps
 * (through the types the skeletons generate from BTF), so change both sides
 * together. Its constants and enums reach Rust through bindgen (build.rs, src/abi.rs).
 */
#ifndef XDPCTL_H
#define XDPCTL_H

/* One slot per XDP action: XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT. */
#define XDP_ACTION_MAX 5

/* The value of xdp_stats_map: the xdp-tutorial's layout, so its tools and ours agree. */
struct datarec {
	__u64 rx_packets;
	__u64 rx_bytes;
};

/* --- Per-second history (every built-in program) --------------------------------------- */

/* Seconds the ring holds: slot = CLOCK_MONOTONIC second % XDPCTL_HISTORY_SLOTS (8.5 minutes). */
#define XDPCTL_HISTORY_SLOTS 512

/* Why a packet counted as dropped in the history: the firewall's reasons (enum fw_drop_reason),
 * then a program's own XDP_DROP, then XDP_ABORTED. */
enum history_drop {
	HISTORY_DROP_PROGRAM = 5,
	HISTORY_DROP_ABORTED = 6,
	HISTORY_DROP_MAX = 7,
};

/* One CPU's counts of one second; received is passed + dropped + other (one add fewer per
 * packet). A slot whose `second` is not the one asked for is stale (that CPU saw no packet in
 * that second). */
struct history_second {
	__u64 second; /* CLOCK_MONOTONIC seconds */
	__u64 passed;
	__u64 dropped; /* XDP_DROP and XDP_ABORTED */
	__u64 other;   /* XDP_TX and XDP_REDIRECT */
	__u64 bytes;   /* received */
	__u64 drops[HISTORY_DROP_MAX];
};

/* Per CPU: the coarse clock as of the current jiffy, so a packet reads the time for the price
 * of a load (bpf_jiffies64 is inlined) instead of a helper call. */
struct clock_cache {
	__u64 jiffies;
	__u64 now_ns;	     /* CLOCK_MONOTONIC_COARSE at the first packet of that jiffy */
	__u64 second;	     /* now_ns / 1e9 */
	__u64 second_end_ns; /* when `second` ends */
};

/* --- The firewall --------------------------------------------------------------------- */

/* VLAN tags parsed before the packet counts as malformed (too deep). */
#define FW_VLAN_MAX_DEPTH 4
/* IPv6 extension headers walked before the packet counts as malformed (too deep). */
#define FW_IPV6_EXT_MAX 8

/* Protocol counters: every packet counts in exactly one of tcp/udp/icmp/other; syn counts TCP
 * SYNs without ACK on top. */
enum fw_proto {
	FW_PROTO_TCP = 0,
	FW_PROTO_UDP = 1,
	FW_PROTO_ICMP = 2,
	FW_PROTO_OTHER = 3,
	FW_PROTO_SYN = 4,
	FW_PROTO_MAX = 5,
};

/* Why a packet was dropped. */
enum fw_drop_reason {
	FW_DROP_BLOCKLIST = 0,
	FW_DROP_PORT = 1,
	FW_DROP_RATELIMIT = 2,
	FW_DROP_MALFORMED = 3,
	FW_DROP_PREFIX = 4, /* over a prefix limit, or auto-blocked for it (enum fw_hhh_level) */
	FW_DROP_MAX = 5,
};

/* The history's drop reasons continue the firewall's. */
_Static_assert(HISTORY_DROP_PROGRAM == FW_DROP_MAX, "history drop reasons follow the firewall's");

/* Per-CPU firewall counters (one element). */
struct fw_stats {
	__u64 proto_packets[FW_PROTO_MAX];
	__u64 drop_packets[FW_DROP_MAX];
	__u64 drop_bytes[FW_DROP_MAX];
};

/* Keys of the range tries (prefixes shorter than /32 and /128). Addresses are in network byte
 * order. */
struct fw_lpm_v4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct fw_lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct fw_v6_addr {
	__u8 addr[16];
};

/* Exact addresses (/32, /128) of a list, both families: a hash table in two arrays that
 * userspace maps into its own memory (BPF_F_MMAPABLE), so a lookup is a few inlined loads
 * instead of a call into the kernel's hash map, and a million rules load without a syscall
 * each. bpf/firewall/exact.h has the program's side, src/firewall/exact.rs userspace's.
 *
 * An address hashes to two buckets of FW_EXACT_LANES lanes; it lives in a lane of one of them.
 * A bucket is half a cache line of 16-bit tags (a hash of the address; 0 = free lane), so looking
 * for an address that is not there reads at most two of them, whatever the table's size; only a
 * lane whose tag matches leads to its slot (the same index in the slot array). Inserts go to the
 * bucket with more free lanes, which keeps both nearly even: a table with 5/4 of its rules'
 * lanes never had both buckets full in 5 million simulated inserts.
 *
 * In front of the buckets sits the list's presence filter (`<list>_filter`), a Bloom filter
 * of FW_EXACT_FILTER_WORDS 64-bit words per bucket, each address setting three bits of one
 * word. A source it rules out (most sources, when the list is not theirs) costs a
 * read in it, half the size of the tags, instead of two in the tags: at a million rules the
 * tags (2.6 MB) and the source index (1 MB) together no longer stay in this machine's cache,
 * and a flood of random sources paid for that on every packet. Bits are only ever set (by
 * every insert, before its tag is published), never cleared for one address, so the filter
 * never rules out an address in the table. It has two halves: the program reads the one
 * fw_config.exact_filter_half names, every insert sets bits in both, and userspace rebuilds the
 * other from the table when removals left enough stale bits, then switches. */
#define FW_EXACT_LANES	      16
#define FW_EXACT_FILTER_WORDS 2

struct fw_exact_bucket {
	__u16 tag[FW_EXACT_LANES];
};

/* Each bucket's IPv4 lanes again, whole (`<list>_v4`, an element per bucket): the program
 * finds a random IPv4 source's rule in this one 128-byte element, which the hash places, instead
 * of in the tags and then the slot they lead to (two misses in a chain, the slot's in an array of
 * 50 MB at a million rules). A lane's addr is the address (as loaded) of a live IPv4 lane, else 0,
 * so 0.0.0.0 is looked up by its tag. Its meta word holds the lane's hits not yet folded into its
 * slot (its hits are the slot's plus these), and FW_EXACT_V4_SLOW when the rule expires or is
 * an auto-block: only then does a lookup read the slot. Writers publish in the order slot, meta,
 * addr, tag; a remover clears the tag, then addr, then meta. */
struct fw_exact_v4_line {
	__u32 addr[FW_EXACT_LANES / 2];
	__u32 meta[FW_EXACT_LANES / 2];
};
/* Lane l lies in line l / 8: a lane's meta word is in the line its address was searched in, so
 * a hit reads nothing the search did not (the search reads both lines, of both buckets, at once).
 */
struct fw_exact_v4 {
	struct fw_exact_v4_line line[2];
};
#define FW_EXACT_V4_SLOW 0x80000000U
#define FW_EXACT_V4_HITS 0x7fffffffU
/* A lane's count reaching this moves it into the slot's counter (one atomic add there per
 * FW_EXACT_V4_FOLD hits), so it never overflows into the flag. */
#define FW_EXACT_V4_FOLD 0x40000000U

/* A slot's state: who may use it. A writer claims a free slot by compare-and-swap to BUSY, fills
 * it, sets LIVE_V4/LIVE_V6 and then publishes the tag; a remover clears the tag first. Readers
 * trust a slot only with its tag and a LIVE state of their family. */
enum fw_exact_state {
	FW_EXACT_FREE = 0,
	FW_EXACT_BUSY = 1,
	FW_EXACT_LIVE_V4 = 4,
	FW_EXACT_LIVE_V6 = 6,
};

/* One exact rule. An IPv4 address fills addr[0..4] (the rest is zero). */
struct fw_exact_slot {
	__u8 addr[16];
	__u64 hits;	  /* hits folded from the CPUs' hit caches (struct fw_hit_cache) */
	__u64 expires_ns; /* as in struct fw_rule */
	__u16 reason;	  /* enum fw_rule_reason */
	__u16 generation; /* one more at each new rule in the slot: see struct fw_hit_entry */
	__u32 state;	  /* enum fw_exact_state */
};

/* Who made a rule. */
enum fw_rule_reason {
	FW_REASON_MANUAL = 0,
	FW_REASON_RATELIMIT = 1,
	FW_REASON_PREFIX = 2, /* a prefix auto-blocked for its traffic (enum fw_hhh_level) */
	FW_REASON_CONFIG = 3, /* from a config file, by `xdpctl apply` */
};

/* The value of every range rule. hits holds the hits folded from the CPUs' hit caches;
 * expires_ns is CLOCK_MONOTONIC_COARSE (bpf_ktime_get_coarse_ns), 0 for never. prefixlen
 * repeats the key's, because a trie lookup does not say which prefix matched: past an expired
 * match, the program looks again among the shorter prefixes. */
struct fw_rule {
	__u64 hits;
	__u64 expires_ns;
	__u16 reason;	  /* enum fw_rule_reason */
	__u16 generation; /* see struct fw_hit_entry */
	__u32 prefixlen;
};

/* Port rules: an array indexed by proto * 65536 + destination port, where proto is
 * FW_PROTO_TCP or FW_PROTO_UDP of enum fw_proto, the one TCP/UDP protocol enum. The rows take
 * fw_proto's first two values, so fw_proto must keep TCP and UDP there. */
_Static_assert(FW_PROTO_TCP == 0 && FW_PROTO_UDP == 1, "port rows are fw_proto's TCP and UDP");
/* Rows of the port array: fw_proto's TCP and UDP. */
#define FW_PORT_ROWS 2
_Static_assert(FW_PORT_ROWS == FW_PROTO_UDP + 1, "a port row for TCP and one for UDP");
#define FW_PORT_SLOTS (FW_PORT_ROWS * 65536)

struct fw_port_rule {
	__u64 hits; /* as in struct fw_exact_slot */
	__u32 enabled;
	__u16 generation; /* one more at each enable: see struct fw_hit_entry */
	__u16 _pad;
};

/* What the rate limit counts (fw_config.rl_proto): a selector, not a protocol (ALL and SYN
 * are none). Its values predate fw_proto and differ from it (UDP 1, TCP 2); they are stored in
 * the pinned fw_config, so they stay, and rl_applies() maps each to its test. */
enum fw_rl_proto {
	FW_RL_ALL = 0,
	FW_RL_UDP = 1,
	FW_RL_TCP = 2,
	FW_RL_ICMP = 3,
	FW_RL_SYN = 4,
};

/* The two address lists, by index: exact_memo's element, the bit of fw_config.exact_filter_half
 * (1 << list), the element of fw_config.exact_filter_stale. */
enum fw_list {
	FW_LIST_ALLOW = 0,
	FW_LIST_BLOCK = 1,
	FW_LIST_MAX = 2,
};

/* Tokens are kept in nano-tokens: one packet costs FW_TOKEN. */
#define FW_TOKEN 1000000000ULL

/* The range filter: per list and family, a bit per value of an address's first 16 bits, set
 * where a range of the list's trie may cover it (a range shorter than /16 sets every value it
 * spans). A clear bit spares the program the trie lookup, a call into the kernel. Userspace
 * sets bits before it inserts a range, and recomputes them from the trie, under its edit lock,
 * after removing ranges. The array holds FW_RANGE_WORDS 64-bit words for each trie, in the
 * order allow IPv4, allow IPv6, block IPv4, block IPv6.
 *
 * The IPv4 tries have a finer level after those: a bit per /20 (FW_RANGE_FINE_WORDS words each,
 * allow then block), read only where the /16 bit is set. Ranges spread over the whole space
 * (country blocks, DROP lists) set one /16 bit in seven at 10,000 ranges, and the trie walk
 * costs hundreds of ns; at /20 a source reaches the trie only if a range may cover it (about
 * 2% of the space for those ranges). 128 KiB each, where a /24 level would take 2 MiB. */
#define FW_RANGE_WORDS	    (65536 / 64)
#define FW_RANGE_FINE_BITS  20
#define FW_RANGE_FINE_WORDS ((1 << FW_RANGE_FINE_BITS) / 64)
#define FW_RANGE_FINE_FIRST (4 * FW_RANGE_WORDS) /* the first word of the fine level */
#define FW_RANGE_ALL_WORDS  (FW_RANGE_FINE_FIRST + 2 * FW_RANGE_FINE_WORDS)

/* Bits of fw_config.maps_in_use: the rule maps that may hold entries. A clear bit lets the
 * program skip a lookup; userspace sets a bit before it inserts and clears it only once the map
 * is empty (holding its edit lock), and keeps the block list's exact bit set while auto-block may
 * insert. */
enum fw_map_bit {
	FW_ALLOW_EXACT = 1 << 0,
	FW_ALLOW_V4_LPM = 1 << 1,
	FW_ALLOW_V6_LPM = 1 << 2,
	FW_BLOCK_EXACT = 1 << 3,
	FW_BLOCK_V4_LPM = 1 << 4,
	FW_BLOCK_V6_LPM = 1 << 5,
};

/* --- Prefix limits: hierarchical heavy hitters --------------------------------------------
 *
 * A spoofed flood spreads over so many sources that none of them exceeds the per-source
 * limit; its prefix does. Each CPU counts the packets that passed their source's bucket per
 * prefix, at three lengths per family, in a tumbling window (fw_config.hhh_window_shift), in
 * small count-min sketches (two rows per level, conservative update). A prefix whose count
 * exceeds its level's limit trips: the packet is dropped (FW_DROP_PREFIX) and the longest
 * tripping prefix is inserted into the block list's trie with an expiry and reason
 * FW_REASON_PREFIX. A level trips only if every shorter level of the family is over that limit
 * too: a prefix's count can never exceed its parent's, so this filters sketch collisions.
 * src/firewall/model/hhh.rs is the reference. */
enum fw_hhh_level {
	FW_HHH_V4_8 = 0,
	FW_HHH_V4_16 = 1,
	FW_HHH_V4_24 = 2,
	FW_HHH_V6_32 = 3,
	FW_HHH_V6_48 = 4,
	FW_HHH_V6_64 = 5,
	FW_HHH_LEVELS = 6,
};

/* Levels per family, shortest first: IPv4 from FW_HHH_V4_8, IPv6 from FW_HHH_V6_32. */
#define FW_HHH_FAMILY_LEVELS 3
/* Rows of each level's sketch, and cells per row (one chunk of hhh_counts, 32 KiB: the most a
 * per-CPU value may hold). Row r of level l is chunk l * FW_HHH_ROWS + r. */
#define FW_HHH_ROWS   2
#define FW_HHH_CELLS  4096
#define FW_HHH_CHUNKS (FW_HHH_LEVELS * FW_HHH_ROWS)
/* The window userspace sets: 2^28 ns, about 268 ms. */
#define FW_HHH_WINDOW_SHIFT 28

/* A sketch cell: the count of the window it was written in (another window's cell reads 0). */
struct fw_hhh_cell {
	__u32 window;
	__u32 count;
};

struct fw_hhh_chunk {
	struct fw_hhh_cell cell[FW_HHH_CELLS];
};

/* The heavy prefixes `xdpctl top` shows: a prefix is noted here, per CPU, when its count in a
 * window reaches a quarter of its level's limit (once per window: counts rise by one). */
#define FW_HHH_HEAVY 512

struct fw_hhh_candidate {
	__u64 key; /* the prefix: its first bytes, as loaded little-endian, masked (hhh.h) */
	__u32 level;
	__u32 window;
};

struct fw_hhh_heavy {
	struct fw_hhh_candidate prefix[FW_HHH_HEAVY];
};

/* --- Rule hit counts: per-CPU hit caches -------------------------------------------------
 * A rule's hits are counted in the hitting CPU's cache (hit_cache, one element per CPU), so a
 * flood that hits one rule from every CPU writes no shared line. An entry holds one rule's
 * hits not yet added to the rule's own counter; another rule that maps to the same entry
 * takes it over (FW_HIT_TAKEOVER), first adding them there (atomically: it is shared). A rule's
 * hits are its counter plus its entries on every CPU (src/firewall/hit_cache.rs). A rule is
 * known by its kind, list, generation, index and address: the generation of a slot (or range,
 * or port) goes up with each new rule there, so counts of a rule removed or expired and
 * renewed meanwhile never reach its successor. */
#define FW_HIT_CACHE_ENTRIES 1024
/* A hit on a rule whose entry another rule holds is added to the rule's own counter (its line
 * was just read by the lookup); the FW_HIT_TAKEOVERth such hit in a row takes the entry over.
 * So a flood over many rules (a botnet) seldom pays the extra read a fold costs (the old
 * rule's counter), and a rule hit again and again soon counts in the cache. */
#define FW_HIT_TAKEOVER 16

enum fw_hit_kind {
	FW_HIT_FREE = 0,
	FW_HIT_EXACT_V4 = 1, /* index: the slot; addr: the address, as struct fw_exact_slot */
	FW_HIT_EXACT_V6 = 2,
	FW_HIT_RANGE_V4 = 3, /* index: the prefix length; addr: the range's first address */
	FW_HIT_RANGE_V6 = 4,
	FW_HIT_PORT = 5, /* index: the port slot; addr: zero */
};

struct fw_hit_entry {
	__u32 count;  /* hits not yet in the rule's counter */
	__u32 misses; /* hits of other rules since the entry's rule last hit or took it */
	__u64 addr[2];
	__u8 kind; /* enum fw_hit_kind */
	__u8 list; /* enum fw_list; 0 for ports */
	__u16 generation;
	__u32 index;
};

struct fw_hit_cache {
	struct fw_hit_entry entry[FW_HIT_CACHE_ENTRIES];
};
/* The single element of fw_config. */
struct fw_config {
	__u64 rl_pps;	       /* tokens per second; 0 with rl_enabled = 0 */
	__u64 rl_burst;	       /* bucket size in packets */
	__u64 rl_full_ns;      /* time to fill an empty bucket: rl_burst * FW_TOKEN / rl_pps */
	__u64 rl_block_for_ns; /* auto-block an over-limit source this long; 0: just drop */
	__u32 rl_enabled;
	__u32 rl_proto;	       /* enum fw_rl_proto */
	__u64 now_override_ns; /* tests only: a fixed clock when non-zero */
	__u32 maps_in_use;     /* enum fw_map_bit */
	__u32 source_set_mask; /* sets in `sources` - 1 (a power of two) */
	__u32 source_seed;     /* keys the source hash, so sources cannot be aimed at a set */
	__u32 exact_buckets;   /* buckets of each list's exact table */
	__u64 exact_seed; /* keys the exact tables' hash, so rules cannot be aimed at a bucket */
	__u32 exact_filter_half; /* bit 1 << list: the half of a list's filter that is read */
	/* per enum fw_list: removals since its filter's build */
	__u32 exact_filter_stale[FW_LIST_MAX];
	__u32 rl_lease_max; /* tokens a CPU's lease takes at most (struct fw_lease); 0, 1: none */
	/* Prefix limits (bpf/firewall/hhh.h): per level, the count in one window on one CPU
	 * above which a prefix trips; 0 turns the level's limit off. */
	__u32 hhh_limit[FW_HHH_LEVELS];
	__u32 hhh_window_shift; /* window = now_ns >> shift; 0: no prefix counting */
	__u32 hhh_seed;		/* keys the sketches' hash, so prefixes cannot be aimed at a cell */
	__u64 hhh_block_for_ns; /* auto-block a tripped prefix this long; 0: just drop */
	__u64 hhh_pps[FW_HHH_LEVELS]; /* the host-wide limits asked for, for display */
	/* The generations of the program's prefix blocks, new or renewed (struct fw_hit_entry):
	 * drawn from a counter, with the top bit set, so one never meets hits cached for an
	 * earlier block of its prefix (userspace's new ranges draw theirs without the top bit). */
	__u32 next_block_generation;
	__u32 config_pad;
};

/* Per-source state: the rate limiter's bucket and the top-talker counters, in a set-associative
 * table: a keyed hash of the source picks a set of FW_SOURCE_WAYS slots; a new source takes the
 * slot with the fewest packets, so a flooder (always the busiest) keeps its bucket while one-off
 * sources replace each other. No allocation, no lock: an array lookup and four compares. IPv4
 * sources use the IPv4-mapped form ::ffff:a.b.c.d. A slot with packets == 0 is free. */
#define FW_SOURCE_WAYS 4

struct fw_source {
	__u8 addr[16];
	__u64 tokens;  /* nano-tokens */
	__u64 last_ns; /* last refill */
	__u64 packets; /* plain increments: cheap, exact but for races between CPUs */
	__u64 bytes;
};

struct fw_source_set {
	struct fw_source way[FW_SOURCE_WAYS];
};

/* The source table's index, an entry per set of `sources`: per way, a tag of the source's hash
 * and its packets counted up to 65,535 (0: free; 1: seen once, no slot yet). The firewall reads
 * this 16-byte entry to find a source's way, or the way a new source takes (the fewest packets),
 * and writes a slot only from a source's second packet: a flood of one-off sources costs a read
 * and a write here (1 MB at the default size) and nothing in the 12 MB of slots. */
struct fw_source_index {
	__u16 tag[FW_SOURCE_WAYS];
	__u16 packets[FW_SOURCE_WAYS];
};
#define FW_SOURCE_INDEX_MAX_PACKETS 65535

/* Leases (bpf/firewall/ratelimit.h): a CPU takes up to fw_config.rl_lease_max of a source's
 * tokens from its bucket at once, and passes the source's next packets from its lease,
 * counting them there, without writing the shared slot. A lease is good for FW_LEASE_NS. What
 * a lease holds goes back to the slot (tokens up to the bucket's size, and the packet counts)
 * when the source next reaches the bucket on that CPU, or when another source takes the
 * lease's place; the packets it passed count towards the source's prefixes then (hhh.h).
 * Tokens in leases are outside the bucket's cap, so a source may pass up to
 * (rl_lease_max - 1) packets per CPU more than its burst; and while one CPU holds some, the
 * source may be refused on another that many earlier than its bucket alone would. */
#define FW_LEASES   256
#define FW_LEASE_NS (1ULL << 20)

struct fw_lease {
	__u64 addr[2]; /* the source's key, as fw_source.addr; left == 0 and packets == 0: free */
	__u64 granted_ns;
	__u32 left;    /* tokens (packets) not used yet */
	__u32 packets; /* passed from the lease, not yet in the slot's counters */
	__u64 bytes;
	__u32 set; /* the source's slot */
	__u16 way;
	__u16 is_v6; /* the source's family, for its prefixes (addr alone does not tell) */
};

struct fw_leases {
	struct fw_lease lease[FW_LEASES];
};

/* The firewall's map sizes when none are asked for (--max-rules, --max-sources): the rule
 * maps hold FW_DEFAULT_MAX_RULES entries each, the source table FW_DEFAULT_MAX_SOURCES. An
 * exact table has 5/4 of the lanes the rules need (src/firewall/exact.rs, buckets_for). */
#define FW_DEFAULT_MAX_RULES   1048576
#define FW_DEFAULT_MAX_SOURCES 262144
#define FW_DEFAULT_EXACT_BUCKETS                                                                   \
	((FW_DEFAULT_MAX_RULES * 5 / 4 + FW_EXACT_LANES - 1) / FW_EXACT_LANES)

/* Per CPU and list: the last address found in the list's exact table, and its slot
 * (exact_memo_slot in bpf/firewall/exact.h). */
struct fw_exact_memo {
	__u64 lo;
	__u64 hi;
	__u32 state;
	__u32 slot;
};

/* --- xdpctl trace --------------------------------------------------------------------- */

/* One xdp:xdp_exception, sent by bpf/trace.bpf.c through its ring buffer to `xdpctl trace`.
 * The kernel raises it for XDP_ABORTED, for an action number that is not an XDP action, and
 * when a driver fails to carry out XDP_TX or XDP_REDIRECT. */
struct trace_exception_event {
	__u64 timestamp_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 prog_id;	    /* the XDP program's id (xdp->aux->id) */
	__u32 action;	    /* what it returned: an XDP action, or an invalid number */
	__u32 ifindex;	    /* the device, within netns_inode */
	__u32 netns_inode;  /* the device's network namespace (its nsfs inode number) */
};

#endif /* XDPCTL_H */
