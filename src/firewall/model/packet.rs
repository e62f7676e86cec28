//! The packet parse the firewall does (bpf/firewall/packet.h), in plain Rust: what the
//! decision in `super` needs to know about a frame. The policy is in the module docs of
//! `super`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

pub(super) const IPPROTO_ICMP: u8 = 1;
pub(super) const IPPROTO_TCP: u8 = 6;
pub(super) const IPPROTO_UDP: u8 = 17;
pub(super) const IPPROTO_ICMPV6: u8 = 58;

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
pub(super) fn proto_index(packet: Option<&IpPacket>) -> usize {
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
