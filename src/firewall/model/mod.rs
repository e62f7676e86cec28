//! The reference model of the firewall: its verdict semantics written once, in plain Rust, and
//! checked against bpf/firewall.bpf.c packet by packet (tests/differential.rs) and on named
//! edge cases (tests/fixtures.rs). Where the two disagree, one of them has a bug.
//!
//! # Parsing policy
//! - Ethernet, then up to 4 VLAN tags (0x8100, 0x88a8, 0x9100). Truncated, or a 5th tag:
//!   dropped as malformed.
//! - Not IPv4/IPv6: passed (counted as `other`).
//! - The fixed IP header (20 / 40 bytes) incomplete: dropped as malformed.
//! - With the fixed header present, the source address is known and the allowlist and the
//!   blocklist apply, whatever follows: bad IHL/version, truncated options, a truncated or too
//!   deep (more than 8) IPv6 extension chain, or a truncated L4 header. Such a packet is then
//!   dropped as malformed, unless allowlisted.
//! - A non-first fragment (IPv4 offset != 0, or an IPv6 fragment header with offset != 0) has no
//!   L4 header: ports are never read from it, so port rules do not apply to it; address rules
//!   and the rate limit do.
//!
//! # Decision, in order
//! allowlist → PASS; blocklist → DROP(blocklist); malformed → DROP(malformed);
//! TCP/UDP destination port rule → DROP(port); per-source token bucket → DROP(ratelimit)
//! (plus an auto-block for `block_for`); prefix limits (hhh.rs) → DROP(prefix) (plus a prefix
//! auto-block); otherwise PASS. A block list rule the prefix limits made drops as DROP(prefix).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

pub use crate::firewall::RateLimit;
use crate::firewall::{RateLimitProto, SOURCE_WAYS, TOKEN};
use crate::input::{PortProto, PortSpec};

pub mod hhh;
pub mod leases;
mod packet;
pub use hhh::{PrefixConfig, PrefixCounts};
pub use packet::{parse, IpPacket, Parsed};
use packet::{proto_index, IPPROTO_TCP, IPPROTO_UDP};

/// Why a packet was dropped (enum fw_drop_reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    Blocklist = crate::abi::FW_DROP_BLOCKLIST as isize,
    Port = crate::abi::FW_DROP_PORT as isize,
    RateLimit = crate::abi::FW_DROP_RATELIMIT as isize,
    Malformed = crate::abi::FW_DROP_MALFORMED as isize,
    Prefix = crate::abi::FW_DROP_PREFIX as isize,
}

/// What the token bucket made of a packet (enum bucket_verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bucket {
    /// Passed, or not counted: its prefixes count it now.
    Pass,
    Over,
    /// Passed from a lease: its prefixes count it when the lease goes back.
    Leased,
}

/// The firewall's answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass,
    Drop(DropReason),
}

impl Verdict {
    /// The XDP action the program returns.
    pub fn xdp_action(self) -> u32 {
        match self {
            Verdict::Pass => 2,
            Verdict::Drop(_) => 1,
        }
    }
}

/// One prefix rule's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleState {
    pub hits: u64,
    /// 0 for never.
    pub expires_ns: u64,
    pub reason: u32,
}

impl RuleState {
    fn expired(&self, now: u64) -> bool {
        self.expires_ns != 0 && now >= self.expires_ns
    }
}

/// A list (allow or block): exact addresses and ranges, as the program keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixTable {
    pub exact: HashMap<IpAddr, RuleState>,
    pub ranges: BTreeMap<IpNet, RuleState>,
}

impl PrefixTable {
    pub fn insert(&mut self, prefix: IpNet, rule: RuleState) {
        if prefix.prefix_len() == prefix.max_prefix_len() {
            self.exact.insert(prefix.addr(), rule);
        } else {
            self.ranges.insert(prefix, rule);
        }
    }

    /// The matching live rule: the exact address first, then the longest live range. Expired
    /// rules stay until `list` sweeps them or they are renewed: the program removes nothing.
    fn matching(&mut self, addr: IpAddr, now: u64) -> Option<&mut RuleState> {
        if self.exact.get(&addr).is_some_and(|rule| !rule.expired(now)) {
            return self.exact.get_mut(&addr);
        }
        self.ranges
            .iter_mut()
            .filter(|(net, rule)| net.contains(&addr) && !rule.expired(now))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, rule)| rule)
    }
}

/// A source's state (struct fw_source): one slot of the source table. packets == 0: free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    pub addr: [u8; 16],
    pub tokens: u64,
    pub last_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// The program's keyed multiplicative hash of a source, over the address's four 32-bit words
/// (as loaded on this little-endian machine).
pub fn source_hash(seed: u32, addr: &[u8; 16]) -> u32 {
    let mut h = seed;
    for word in addr.chunks_exact(4) {
        let w = u32::from_le_bytes(word.try_into().unwrap());
        h = (h ^ w).wrapping_mul(0x9E37_79B1);
    }
    h ^ (h >> 15)
}

/// The set of a source in the source table: the hash's low bits.
pub fn source_set(seed: u32, mask: u32, addr: &[u8; 16]) -> u32 {
    source_hash(seed, addr) & mask
}

/// A source's tag in the source table's index (struct fw_source_index): the hash's high bits.
pub fn source_tag(seed: u32, addr: &[u8; 16]) -> u16 {
    (source_hash(seed, addr) >> 16) as u16
}

/// One way of a set in the source table's index (struct fw_source_index): the tag of its source
/// and its packets counted up to 65,535. packets == 0: free; 1: a source seen once, known only
/// by its tag (no slot yet); more: the way's slot holds the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexWay {
    pub tag: u16,
    pub packets: u16,
}

/// Every counter the program keeps for an interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// (packets, bytes) per XDP action.
    pub actions: [(u64, u64); 5],
    pub proto_packets: [u64; crate::abi::FW_PROTO_MAX as usize],
    pub drop_packets: [u64; crate::abi::FW_DROP_MAX as usize],
    pub drop_bytes: [u64; crate::abi::FW_DROP_MAX as usize],
}

/// The whole firewall: rules, rate limit, per-source state and counters.
#[derive(Clone, Debug, Default)]
pub struct Firewall {
    pub allow: PrefixTable,
    pub block: PrefixTable,
    /// Port rules that are on, with their hits.
    pub ports: HashMap<PortSpec, u64>,
    pub rate_limit: RateLimit,
    /// The source table: set index -> its slots (sets never touched are absent, all free).
    pub sources: HashMap<u32, [SourceState; SOURCE_WAYS]>,
    /// The source table's index: set index -> its ways (absent: all free).
    pub source_index: HashMap<u32, [IndexWay; SOURCE_WAYS]>,
    /// fw_config.source_set_mask and .source_seed.
    pub source_set_mask: u32,
    pub source_seed: u32,
    /// fw_config.rl_lease_max: 0 or 1, no leases.
    pub lease_max: u32,
    /// One CPU's leases (leases.rs), by index; absent: empty.
    pub leases: HashMap<usize, leases::Lease>,
    /// Packets passed from a lease: no state of the program's, a count for tests to check
    /// that leases were exercised.
    pub leased_passes: u64,
    /// Prefix limits: one CPU's sketches (the program's on the CPU a test runs it on).
    pub prefix: PrefixCounts,
    pub counters: Counters,
}

/// The key of a source in the per-source table.
pub fn source_key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Firewall {
    /// Runs one packet through the firewall at time `now` (ns), updating every counter.
    pub fn process(&mut self, data: &[u8], now: u64) -> Verdict {
        let parsed = parse(data);
        let (verdict, packet) = match &parsed {
            Parsed::L2Malformed | Parsed::IpIncomplete => {
                (Verdict::Drop(DropReason::Malformed), None)
            }
            Parsed::NotIp => (Verdict::Pass, None),
            Parsed::Ip(packet) => (self.decide(packet, data.len() as u64, now), Some(packet)),
        };
        self.count(
            data.len() as u64,
            proto_index(packet),
            packet.is_some_and(|p| p.syn),
            verdict,
        );
        verdict
    }

    fn decide(&mut self, packet: &IpPacket, len: u64, now: u64) -> Verdict {
        if let Some(rule) = self.allow.matching(packet.source, now) {
            rule.hits += 1;
            return Verdict::Pass;
        }
        if let Some(rule) = self.block.matching(packet.source, now) {
            rule.hits += 1;
            if rule.reason == crate::abi::FW_REASON_PREFIX {
                return Verdict::Drop(DropReason::Prefix);
            }
            return Verdict::Drop(DropReason::Blocklist);
        }
        if packet.malformed {
            return Verdict::Drop(DropReason::Malformed);
        }
        if let Some(port) = packet.dport {
            let proto = if packet.l4proto == Some(IPPROTO_TCP) {
                PortProto::Tcp
            } else {
                PortProto::Udp
            };
            if let Some(hits) = self.ports.get_mut(&PortSpec { port, proto }) {
                *hits += 1;
                return Verdict::Drop(DropReason::Port);
            }
        }
        let bucket = self.over_rate_limit(packet, len, now);
        if bucket == Bucket::Over {
            if self.rate_limit.block_for_ns != 0 {
                let rule = RuleState {
                    hits: 0,
                    expires_ns: now.wrapping_add(self.rate_limit.block_for_ns),
                    reason: crate::abi::FW_REASON_RATELIMIT,
                };
                self.block.exact.insert(packet.source, rule);
            }
            return Verdict::Drop(DropReason::RateLimit);
        }
        if bucket == Bucket::Pass && self.rate_limited(packet) {
            if let Some(trip) = self.prefix.count(packet.source, now) {
                self.block_prefix(trip, now);
                return Verdict::Drop(DropReason::Prefix);
            }
        }
        Verdict::Pass
    }

    /// Blocks a tripped prefix for the prefix limits' block time (if any).
    fn block_prefix(&mut self, trip: hhh::Trip, now: u64) {
        let block_for = self.prefix.config.block_for_ns;
        if block_for != 0 {
            let rule = RuleState {
                hits: 0,
                expires_ns: now.wrapping_add(block_for),
                reason: crate::abi::FW_REASON_PREFIX,
            };
            self.block.ranges.insert(trip.prefix, rule);
        }
    }

    /// Whether the rate limit counts this packet (and so the prefix limits do).
    fn rate_limited(&self, packet: &IpPacket) -> bool {
        self.rate_limit.enabled && self.rate_limit.pps != 0 && self.applies(packet)
    }

    fn applies(&self, packet: &IpPacket) -> bool {
        match self.rate_limit.proto {
            RateLimitProto::All => true,
            RateLimitProto::Udp => packet.l4proto == Some(IPPROTO_UDP),
            RateLimitProto::Tcp => packet.l4proto == Some(IPPROTO_TCP),
            RateLimitProto::Icmp => proto_index(Some(packet)) == 2,
            RateLimitProto::Syn => packet.syn,
        }
    }

    /// Finds a source in its set by the index: the way whose tag matches and which was seen once
    /// (its second packet: the slot starts now, its first packet counted), or whose slot holds
    /// the address. A new source takes the way with the fewest indexed packets (the first such);
    /// a slot it replaces is emptied. Returns the set, the way, and whether the way has a slot
    /// (not for a source's first packet).
    fn find_source(&mut self, addr: [u8; 16], cap: u64, now: u64) -> (u32, usize, bool) {
        let enabled = self.rate_limit.enabled;
        let set = source_set(self.source_seed, self.source_set_mask, &addr);
        let tag = source_tag(self.source_seed, &addr);
        let index = self.source_index.entry(set).or_default();
        let slots = self.sources.entry(set).or_default();
        for way in 0..SOURCE_WAYS {
            if index[way].packets == 0 || index[way].tag != tag {
                continue;
            }
            if index[way].packets == 1 {
                slots[way] = SourceState {
                    addr,
                    tokens: if enabled { cap } else { 0 },
                    last_ns: now,
                    packets: 1,
                    bytes: 0,
                };
                return (set, way, true);
            }
            if slots[way].addr == addr {
                return (set, way, true);
            }
        }
        let mut victim = 0;
        for way in 0..SOURCE_WAYS {
            if index[way].packets < index[victim].packets {
                victim = way;
            }
        }
        if index[victim].packets > 1 {
            slots[victim].packets = 0;
        }
        index[victim] = IndexWay { tag, packets: 0 };
        (set, victim, false)
    }

    /// The slot of a source, if it is in the table.
    pub fn source(&self, addr: IpAddr) -> Option<&SourceState> {
        let key = source_key(addr);
        self.sources
            .get(&source_set(self.source_seed, self.source_set_mask, &key))?
            .iter()
            .find(|s| s.packets > 0 && s.addr == key)
    }

    /// Counts the source and runs its token bucket: continuous refill at `pps` up to `burst`
    /// packets, in nano-tokens; a clock that reads earlier than the last refill adds nothing.
    /// A source's first packet is only counted in the index: its bucket starts at its second.
    /// With leases, a packet may pass from its source's lease instead (leases.rs).
    fn over_rate_limit(&mut self, packet: &IpPacket, len: u64, now: u64) -> Bucket {
        let rl = self.rate_limit;
        let applies = self.rate_limited(packet);
        let cap = rl.burst.wrapping_mul(TOKEN);
        let addr = source_key(packet.source);
        let lease = (applies && self.lease_max > 1)
            .then(|| leases::lease_index(source_tag(self.source_seed, &addr)));
        if let Some(at) = lease {
            if self.pass_from_lease(at, addr, len, now) {
                return Bucket::Leased;
            }
            self.settle_lease(at, cap, now);
        }
        let (set, way, has_slot) = self.find_source(addr, cap, now);
        let indexed = &mut self.source_index.get_mut(&set).unwrap()[way].packets;
        *indexed = indexed.saturating_add(1);
        if !has_slot {
            return Bucket::Pass;
        }
        let source = &mut self.sources.get_mut(&set).unwrap()[way];
        source.packets = source.packets.wrapping_add(1);
        source.bytes = source.bytes.wrapping_add(len);
        if !applies {
            return Bucket::Pass;
        }
        let mut tokens = source.tokens;
        if now > source.last_ns {
            let elapsed = now - source.last_ns;
            if elapsed >= rl.full_ns() {
                tokens = cap;
            } else {
                tokens = tokens.wrapping_add(elapsed.wrapping_mul(rl.pps));
            }
            source.last_ns = now;
        }
        tokens = tokens.min(cap);
        if tokens < TOKEN {
            source.tokens = tokens;
            return Bucket::Over;
        }
        let grant = match lease {
            Some(at) => self.grant_lease(at, (set, way), packet.source, tokens, now),
            None => 1,
        };
        self.sources.get_mut(&set).unwrap()[way].tokens = tokens - grant * TOKEN;
        Bucket::Pass
    }

    fn count(&mut self, len: u64, proto: usize, syn: bool, verdict: Verdict) {
        let c = &mut self.counters;
        let action = verdict.xdp_action() as usize;
        c.actions[action].0 += 1;
        c.actions[action].1 += len;
        c.proto_packets[proto] += 1;
        if syn {
            c.proto_packets[4] += 1;
        }
        if let Verdict::Drop(reason) = verdict {
            c.drop_packets[reason as usize] += 1;
            c.drop_bytes[reason as usize] += len;
        }
    }
}

#[cfg(test)]
mod tests;
