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
//! (plus an auto-block for `block_for`); otherwise PASS.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

pub use crate::firewall::RateLimit;
use crate::firewall::{RateLimitProto, SOURCE_WAYS, TOKEN};
use crate::input::{PortProto, PortSpec};

/// Why a packet was dropped (enum fw_drop_reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    Blocklist = 0,
    Port = 1,
    RateLimit = 2,
    Malformed = 3,
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

/// What parsing learns about an IP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub source: IpAddr,
    /// The upper-layer protocol, once the IP header (options, extension chain) parsed.
    pub l4proto: Option<u8>,
    pub malformed: bool,
    /// TCP/UDP destination port, when an L4 header was parsed.
    pub dport: Option<u16>,
    /// TCP SYN without ACK.
    pub syn: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Ethernet/VLAN truncated or too deep.
    L2Malformed,
    /// Not IPv4 or IPv6.
    NotIp,
    /// IPv4/IPv6 EtherType, but the fixed header is not all there.
    IpIncomplete,
    Ip(IpPacket),
}

fn be16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

fn is_vlan(ethertype: u16) -> bool {
    matches!(ethertype, 0x8100 | 0x88a8 | 0x9100)
}

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// Parses a frame the way the firewall does (see the module docs).
pub fn parse(data: &[u8]) -> Parsed {
    if data.len() < 14 {
        return Parsed::L2Malformed;
    }
    let mut ethertype = be16(data, 12);
    let mut pos = 14;
    for _ in 0..crate::abi::FW_VLAN_MAX_DEPTH {
        if !is_vlan(ethertype) {
            break;
        }
        if pos + 4 > data.len() {
            return Parsed::L2Malformed;
        }
        ethertype = be16(data, pos + 2);
        pos += 4;
    }
    if is_vlan(ethertype) {
        return Parsed::L2Malformed;
    }
    match ethertype {
        0x0800 => parse_ipv4(data, pos),
        0x86dd => parse_ipv6(data, pos),
        _ => Parsed::NotIp,
    }
}

fn parse_ipv4(data: &[u8], pos: usize) -> Parsed {
    if pos + 20 > data.len() {
        return Parsed::IpIncomplete;
    }
    let source = IpAddr::V4(Ipv4Addr::new(
        data[pos + 12],
        data[pos + 13],
        data[pos + 14],
        data[pos + 15],
    ));
    let mut packet = IpPacket {
        source,
        l4proto: None,
        malformed: false,
        dport: None,
        syn: false,
    };
    let (version, ihl) = (data[pos] >> 4, (data[pos] & 0x0f) as usize);
    if version != 4 || ihl < 5 || pos + ihl * 4 > data.len() {
        packet.malformed = true;
        return Parsed::Ip(packet);
    }
    let proto = data[pos + 9];
    packet.l4proto = Some(proto);
    let nonfirst_fragment = be16(data, pos + 6) & 0x1fff != 0;
    if !nonfirst_fragment {
        parse_l4(data, pos + ihl * 4, IPPROTO_ICMP, &mut packet);
    }
    Parsed::Ip(packet)
}

fn parse_ipv6(data: &[u8], pos: usize) -> Parsed {
    if pos + 40 > data.len() {
        return Parsed::IpIncomplete;
    }
    let source: [u8; 16] = data[pos + 8..pos + 24].try_into().unwrap();
    let mut packet = IpPacket {
        source: IpAddr::V6(Ipv6Addr::from(source)),
        l4proto: None,
        malformed: false,
        dport: None,
        syn: false,
    };
    if data[pos] >> 4 != 6 {
        packet.malformed = true;
        return Parsed::Ip(packet);
    }
    let mut nexthdr = data[pos + 6];
    let mut pos = pos + 40;
    let mut nonfirst_fragment = false;
    let mut done = false;
    for _ in 0..crate::abi::FW_IPV6_EXT_MAX {
        let ext_len = match nexthdr {
            0 | 43 | 60 => data.get(pos + 1).map(|&len| (len as usize + 1) * 8),
            51 => data.get(pos + 1).map(|&len| (len as usize + 2) * 4),
            44 => Some(8),
            _ => {
                done = true;
                break;
            }
        };
        match ext_len {
            Some(len) if pos + len <= data.len() => {
                let next = data[pos];
                if nexthdr == 44 && be16(data, pos + 2) & 0xfff8 != 0 {
                    nonfirst_fragment = true;
                    nexthdr = next;
                    done = true;
                    break;
                }
                nexthdr = next;
                pos += len;
            }
            _ => {
                packet.malformed = true;
                return Parsed::Ip(packet);
            }
        }
    }
    if !done && matches!(nexthdr, 0 | 43 | 60 | 51 | 44) {
        packet.malformed = true;
        return Parsed::Ip(packet);
    }
    packet.l4proto = Some(nexthdr);
    if !nonfirst_fragment {
        parse_l4(data, pos, IPPROTO_ICMPV6, &mut packet);
    }
    Parsed::Ip(packet)
}

/// TCP (20 bytes and its options), UDP (8) and ICMP/ICMPv6 (8) headers.
fn parse_l4(data: &[u8], pos: usize, icmp: u8, packet: &mut IpPacket) {
    match packet.l4proto {
        Some(IPPROTO_TCP) => {
            if pos + 20 > data.len() {
                packet.malformed = true;
                return;
            }
            let len = (data[pos + 12] >> 4) as usize * 4;
            if len < 20 || pos + len > data.len() {
                packet.malformed = true;
                return;
            }
            packet.dport = Some(be16(data, pos + 2));
            let flags = data[pos + 13];
            packet.syn = flags & 0x02 != 0 && flags & 0x10 == 0;
        }
        Some(IPPROTO_UDP) => {
            if pos + 8 > data.len() {
                packet.malformed = true;
                return;
            }
            packet.dport = Some(be16(data, pos + 2));
        }
        Some(p) if p == icmp && pos + 8 > data.len() => packet.malformed = true,
        _ => {}
    }
}

/// The protocol counter (enum fw_proto, without syn) of a packet.
fn proto_index(packet: Option<&IpPacket>) -> usize {
    let Some(packet) = packet else {
        return 3;
    };
    let icmp = if packet.source.is_ipv6() {
        IPPROTO_ICMPV6
    } else {
        IPPROTO_ICMP
    };
    match packet.l4proto {
        Some(IPPROTO_TCP) => 0,
        Some(IPPROTO_UDP) => 1,
        Some(p) if p == icmp => 2,
        _ => 3,
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
    pub proto_packets: [u64; 5],
    pub drop_packets: [u64; 4],
    pub drop_bytes: [u64; 4],
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
        if self.over_rate_limit(packet, len, now) {
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
        Verdict::Pass
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
    fn over_rate_limit(&mut self, packet: &IpPacket, len: u64, now: u64) -> bool {
        let rl = self.rate_limit;
        let applies = self.applies(packet);
        let cap = rl.burst.wrapping_mul(TOKEN);
        let (set, way, has_slot) = self.find_source(source_key(packet.source), cap, now);
        let indexed = &mut self.source_index.get_mut(&set).unwrap()[way].packets;
        *indexed = indexed.saturating_add(1);
        if !has_slot {
            return false;
        }
        let source = &mut self.sources.get_mut(&set).unwrap()[way];
        source.packets = source.packets.wrapping_add(1);
        source.bytes = source.bytes.wrapping_add(len);
        if !rl.enabled || rl.pps == 0 || !applies {
            return false;
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
        if tokens >= TOKEN {
            source.tokens = tokens - TOKEN;
            false
        } else {
            source.tokens = tokens;
            true
        }
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
mod tests {
    use super::*;

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame
    }

    fn ipv4_udp(src: [u8; 4], dport: u16) -> Vec<u8> {
        let mut frame = eth(0x0800);
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&[192, 0, 2, 1]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&[0x30, 0x39]);
        frame.extend_from_slice(&dport.to_be_bytes());
        frame.extend_from_slice(&[0, 8, 0, 0]);
        frame
    }

    #[test]
    fn parses_udp_ports_and_sources() {
        let Parsed::Ip(p) = parse(&ipv4_udp([10, 0, 0, 1], 53)) else {
            panic!()
        };
        assert_eq!(p.source.to_string(), "10.0.0.1");
        assert_eq!(
            (p.l4proto, p.dport, p.malformed),
            (Some(17), Some(53), false)
        );
    }

    #[test]
    fn a_short_frame_and_a_fifth_vlan_tag_are_malformed() {
        assert_eq!(parse(&[0; 13]), Parsed::L2Malformed);
        let mut frame = eth(0x8100);
        for _ in 0..4 {
            frame.extend_from_slice(&[0, 1, 0x81, 0x00]);
        }
        frame.extend_from_slice(&[0; 40]);
        assert_eq!(parse(&frame), Parsed::L2Malformed);
    }

    #[test]
    fn the_blocklist_applies_before_malformed_and_allow_before_both() {
        let mut fw = Firewall::default();
        let rule = RuleState {
            hits: 0,
            expires_ns: 0,
            reason: 0,
        };
        fw.block.insert("10.0.0.0/8".parse().unwrap(), rule);
        let mut truncated = ipv4_udp([10, 1, 2, 3], 53);
        truncated.truncate(14 + 20 + 4);
        assert_eq!(
            fw.process(&truncated, 1),
            Verdict::Drop(DropReason::Blocklist)
        );
        let mut other = ipv4_udp([11, 1, 2, 3], 53);
        other.truncate(14 + 20 + 4);
        assert_eq!(fw.process(&other, 1), Verdict::Drop(DropReason::Malformed));
        fw.allow.insert("10.1.2.3/32".parse().unwrap(), rule);
        assert_eq!(fw.process(&truncated, 1), Verdict::Pass);
        assert_eq!(fw.counters.drop_packets, [1, 0, 0, 1]);
        assert_eq!(fw.counters.proto_packets[1], 3);
    }

    #[test]
    fn longest_live_prefix_wins_and_expired_rules_stop_matching() {
        let mut table = PrefixTable::default();
        let live = RuleState {
            hits: 0,
            expires_ns: 0,
            reason: 0,
        };
        table.insert("10.0.0.0/8".parse().unwrap(), live);
        table.insert(
            "10.1.0.0/16".parse().unwrap(),
            RuleState {
                expires_ns: 100,
                ..live
            },
        );
        let addr: IpAddr = "10.1.2.3".parse().unwrap();
        table.matching(addr, 50).unwrap().hits += 1;
        assert_eq!(table.ranges[&"10.1.0.0/16".parse().unwrap()].hits, 1);
        table.matching(addr, 100).unwrap().hits += 1;
        assert_eq!(table.ranges[&"10.0.0.0/8".parse().unwrap()].hits, 1);
        // An exact address wins while it lives; expired, it stays in the table unmatched.
        table.insert(
            "10.1.2.3/32".parse().unwrap(),
            RuleState {
                expires_ns: 200,
                ..live
            },
        );
        table.matching(addr, 150).unwrap().hits += 1;
        assert_eq!(table.exact[&addr].hits, 1);
        table.matching(addr, 200).unwrap().hits += 1;
        assert_eq!(table.ranges[&"10.0.0.0/8".parse().unwrap()].hits, 2);
        assert!(table.exact.contains_key(&addr));
    }

    #[test]
    fn a_new_source_takes_the_quietest_way_of_its_set_and_the_flooder_stays() {
        // One set (mask 0): five sources compete for four ways.
        let mut fw = Firewall::default();
        let flooder = ipv4_udp([10, 0, 0, 1], 1);
        for _ in 0..10 {
            fw.process(&flooder, 1);
        }
        for i in 2..7u8 {
            fw.process(&ipv4_udp([10, 0, 0, i], 1), 1);
        }
        // The flooder's slot counts its first packet too.
        assert_eq!(fw.source("10.0.0.1".parse().unwrap()).unwrap().packets, 10);
        // Sources seen once have a way in the index but no slot. 10.0.0.5 took the quietest
        // way (the first with one packet: 10.0.0.2's), and 10.0.0.6 took it from 10.0.0.5.
        let tag = |addr: &str| source_tag(0, &source_key(addr.parse().unwrap()));
        let index = fw.source_index[&0];
        assert_eq!(index.map(|w| w.packets), [10, 1, 1, 1]);
        assert_eq!(
            index.map(|w| w.tag),
            [
                tag("10.0.0.1"),
                tag("10.0.0.6"),
                tag("10.0.0.3"),
                tag("10.0.0.4")
            ]
        );
        assert!(fw.source("10.0.0.6".parse().unwrap()).is_none());
        // Its second packet gives it a slot, with both packets counted.
        fw.process(&ipv4_udp([10, 0, 0, 6], 1), 1);
        assert_eq!(fw.source("10.0.0.6".parse().unwrap()).unwrap().packets, 2);
        assert_eq!(fw.source_index[&0][1].packets, 2);
    }

    #[test]
    fn a_source_that_loses_its_way_loses_its_slot() {
        let mut fw = Firewall::default();
        for i in 1..5u8 {
            fw.process(&ipv4_udp([10, 0, 0, i], 1), 1);
            fw.process(&ipv4_udp([10, 0, 0, i], 1), 1);
        }
        assert_eq!(fw.sources[&0].iter().filter(|s| s.packets > 0).count(), 4);
        // All have two packets: the newcomer takes the first way, whose slot empties.
        fw.process(&ipv4_udp([10, 0, 0, 9], 1), 1);
        assert!(fw.source("10.0.0.1".parse().unwrap()).is_none());
        assert_eq!(fw.sources[&0][0].packets, 0);
        assert_eq!(fw.source_index[&0][0].packets, 1);
        assert!(fw.source("10.0.0.2".parse().unwrap()).is_some());
    }

    #[test]
    fn source_sets_spread_with_the_seed() {
        let a = source_key("10.0.0.1".parse().unwrap());
        let b = source_key("10.0.0.2".parse().unwrap());
        assert_eq!(source_set(7, 0, &a), 0);
        assert!(source_set(7, 0xffff, &a) <= 0xffff);
        assert_ne!(source_set(7, 0xffff, &a), source_set(7, 0xffff, &b));
        assert_ne!(source_set(7, 0xffff, &a), source_set(8, 0xffff, &a));
    }

    #[test]
    fn token_bucket_allows_a_burst_then_refills_continuously() {
        let mut fw = Firewall {
            rate_limit: RateLimit {
                enabled: true,
                pps: 10,
                burst: 2,
                block_for_ns: 0,
                proto: RateLimitProto::All,
            },
            ..Default::default()
        };
        let pkt = ipv4_udp([10, 0, 0, 9], 1234);
        let t0 = 1_000_000_000;
        // The first packet is only noted in the index; the bucket starts full at the second.
        assert_eq!(fw.process(&pkt, t0), Verdict::Pass);
        assert!(fw.source("10.0.0.9".parse().unwrap()).is_none());
        assert_eq!(fw.process(&pkt, t0), Verdict::Pass);
        assert_eq!(fw.process(&pkt, t0), Verdict::Pass);
        assert_eq!(fw.process(&pkt, t0), Verdict::Drop(DropReason::RateLimit));
        // 10 pps: one token per 100 ms, whatever the boundaries.
        assert_eq!(
            fw.process(&pkt, t0 + 99_999_999),
            Verdict::Drop(DropReason::RateLimit)
        );
        assert_eq!(fw.process(&pkt, t0 + 100_000_000), Verdict::Pass);
        // A clock that goes backwards refills nothing and does not underflow.
        assert_eq!(fw.process(&pkt, t0), Verdict::Drop(DropReason::RateLimit));
        assert_eq!(
            fw.source("10.0.0.9".parse().unwrap()).unwrap().last_ns,
            t0 + 100_000_000
        );
    }
}
