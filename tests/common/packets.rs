//! Test packets: a small builder for exactly the frames the firewall must get right (VLAN
//! stacks, IPv4 options and fragments, IPv6 extension chains, TCP/UDP/ICMP), and random
//! generation and mutation for the differential test.
#![allow(dead_code)]

use std::net::IpAddr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// An IPv6 extension header.
#[derive(Clone, Debug)]
pub enum Ext {
    HopByHop(u8),
    Routing(u8),
    DstOpts(u8),
    /// Fragment offset (in 8-byte units) and the more-fragments flag.
    Fragment(u16, bool),
    /// AH with this payload-length field.
    Auth(u8),
}

impl Ext {
    fn number(&self) -> u8 {
        match self {
            Ext::HopByHop(_) => 0,
            Ext::Routing(_) => 43,
            Ext::DstOpts(_) => 60,
            Ext::Fragment(..) => 44,
            Ext::Auth(_) => 51,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        match *self {
            Ext::HopByHop(len) | Ext::Routing(len) | Ext::DstOpts(len) => {
                let mut b = vec![0u8; (len as usize + 1) * 8];
                b[0] = next;
                b[1] = len;
                b
            }
            Ext::Auth(len) => {
                let mut b = vec![0u8; (len as usize + 2) * 4];
                b[0] = next;
                b[1] = len;
                b
            }
            Ext::Fragment(offset, more) => {
                let field = (offset << 3) | more as u16;
                let mut b = vec![next, 0];
                b.extend_from_slice(&field.to_be_bytes());
                b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
                b
            }
        }
    }
}

/// The L4 part.
#[derive(Clone, Debug)]
pub enum L4 {
    Udp {
        dport: u16,
    },
    /// Flags byte (0x02 SYN, 0x10 ACK) and data offset in 32-bit words.
    Tcp {
        dport: u16,
        flags: u8,
        doff: u8,
    },
    Icmp,
    /// Another protocol number with this payload.
    Other(u8, Vec<u8>),
}

impl L4 {
    fn proto(&self, ipv6: bool) -> u8 {
        match self {
            L4::Udp { .. } => 17,
            L4::Tcp { .. } => 6,
            L4::Icmp => {
                if ipv6 {
                    58
                } else {
                    1
                }
            }
            L4::Other(p, _) => *p,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            L4::Udp { dport } => {
                let mut b = vec![0x9c, 0x40];
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&[0, 8, 0, 0]);
                b
            }
            L4::Tcp { dport, flags, doff } => {
                let len = (*doff as usize * 4).max(20);
                let mut b = vec![0u8; len];
                b[0..2].copy_from_slice(&[0x9c, 0x40]);
                b[2..4].copy_from_slice(&dport.to_be_bytes());
                b[12] = doff << 4;
                b[13] = *flags;
                b
            }
            L4::Icmp => vec![8, 0, 0, 0, 0, 1, 0, 1],
            L4::Other(_, payload) => payload.clone(),
        }
    }
}

/// A frame, described.
#[derive(Clone, Debug)]
pub struct Frame {
    /// VLAN TPIDs, outermost first.
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4: IHL in words (5 = no options). Ignored for IPv6.
    pub ihl: u8,
    /// Overrides the version nibble when set.
    pub version: Option<u8>,
    /// IPv4 fragment offset (8-byte units) and more-fragments flag.
    pub frag: (u16, bool),
    pub exts: Vec<Ext>,
    pub l4: L4,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(src: IpAddr, l4: L4) -> Frame {
        let dst = match src {
            IpAddr::V4(_) => "192.0.2.1".parse().unwrap(),
            IpAddr::V6(_) => "2001:db8:ffff::1".parse().unwrap(),
        };
        Frame {
            vlans: Vec::new(),
            src,
            dst,
            ihl: 5,
            version: None,
            frag: (0, false),
            exts: Vec::new(),
            l4,
            payload: vec![0x55; 18],
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let ipv6 = self.src.is_ipv6();
        // MACs, then the EtherType chain: each VLAN tag's TPID, a TCI, ..., the L3 type.
        let mut out = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
        let mut chain: Vec<u16> = self.vlans.clone();
        chain.push(if ipv6 { 0x86dd } else { 0x0800 });
        out.extend_from_slice(&chain[0].to_be_bytes());
        for next in &chain[1..] {
            out.extend_from_slice(&[0, 7]);
            out.extend_from_slice(&next.to_be_bytes());
        }
        let mut l4 = self.l4.bytes();
        l4.extend_from_slice(&self.payload);
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let ihl = self.ihl as usize;
                let mut ip = vec![0u8; (ihl * 4).max(20)];
                ip[0] = (self.version.unwrap_or(4) << 4) | (self.ihl & 0x0f);
                let total = (ip.len() + l4.len()) as u16;
                ip[2..4].copy_from_slice(&total.to_be_bytes());
                let frag = (self.frag.0 & 0x1fff) | if self.frag.1 { 0x2000 } else { 0 };
                ip[6..8].copy_from_slice(&frag.to_be_bytes());
                ip[8] = 64;
                ip[9] = self.l4.proto(false);
                ip[12..16].copy_from_slice(&src.octets());
                ip[16..20].copy_from_slice(&dst.octets());
                ip[20..].fill(1); // NOP options
                out.extend_from_slice(&ip);
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let mut ip = vec![0u8; 40];
                ip[0] = self.version.unwrap_or(6) << 4;
                let mut exts = Vec::new();
                let proto = self.l4.proto(true);
                for (i, ext) in self.exts.iter().enumerate() {
                    let next = self.exts.get(i + 1).map(|e| e.number()).unwrap_or(proto);
                    exts.extend_from_slice(&ext.bytes(next));
                }
                let payload_len = (exts.len() + l4.len()) as u16;
                ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
                ip[6] = self.exts.first().map(|e| e.number()).unwrap_or(proto);
                ip[7] = 64;
                ip[8..24].copy_from_slice(&src.octets());
                ip[24..40].copy_from_slice(&dst.octets());
                out.extend_from_slice(&ip);
                out.extend_from_slice(&exts);
            }
            _ => panic!("source and destination families differ"),
        }
        out.extend_from_slice(&l4);
        out
    }
}

/// An ARP-like non-IP frame.
pub fn non_ip_frame() -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    frame.extend_from_slice(&[0u8; 28]);
    frame
}

/// Addresses the random rules and packets are drawn from: small pools, so that rules hit.
pub struct Universe {
    pub v4: Vec<IpAddr>,
    pub v6: Vec<IpAddr>,
    /// A few flooders that send much of the traffic, so rate limits trip.
    pub hot: Vec<IpAddr>,
}

impl Universe {
    pub fn new(rng: &mut StdRng) -> Universe {
        let v4: Vec<IpAddr> = (0..64)
            .map(|_| {
                let base: [u8; 2] = *[[10u8, 1], [10, 2], [192, 0], [198, 51]]
                    .choose(rng)
                    .unwrap();
                IpAddr::from([base[0], base[1], rng.gen_range(0..4), rng.gen_range(0..8)])
            })
            .collect();
        let v6: Vec<IpAddr> = (0..64)
            .map(|_| {
                let mut o = [0u8; 16];
                o[0..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                o[4] = rng.gen_range(0..2);
                o[5] = rng.gen_range(0..4);
                o[15] = rng.gen_range(0..8);
                IpAddr::from(o)
            })
            .collect();
        let hot = vec![v4[0], v4[1], v6[0]];
        Universe { v4, v6, hot }
    }

    pub fn addr(&self, rng: &mut StdRng, ipv6: bool) -> IpAddr {
        *if ipv6 { &self.v6 } else { &self.v4 }.choose(rng).unwrap()
    }

    /// A packet source: a flooder a third of the time.
    pub fn source(&self, rng: &mut StdRng) -> IpAddr {
        if rng.gen_bool(0.33) {
            *self.hot.choose(rng).unwrap()
        } else {
            let ipv6 = rng.gen_bool(0.4);
            self.addr(rng, ipv6)
        }
    }
}

const PORTS: [u16; 6] = [22, 53, 80, 443, 8080, 12345];

/// A random, mostly well-formed frame with the odd structures the parser must handle.
pub fn random_frame(rng: &mut StdRng, universe: &Universe) -> Frame {
    let src = universe.source(rng);
    let ipv6 = src.is_ipv6();
    let l4 = match rng.gen_range(0..10) {
        0..=3 => L4::Udp {
            dport: *PORTS.choose(rng).unwrap(),
        },
        4..=6 => L4::Tcp {
            dport: *PORTS.choose(rng).unwrap(),
            flags: *[0x02, 0x12, 0x10, 0x18, 0x01, 0x04].choose(rng).unwrap(),
            doff: *[5, 5, 5, 8, 15, 4, 0].choose(rng).unwrap(),
        },
        7 | 8 => L4::Icmp,
        _ => L4::Other(
            *[47, 132, 50, 59].choose(rng).unwrap(),
            vec![0x53; rng.gen_range(0..16)],
        ),
    };
    let mut frame = Frame::new(src, l4);
    if rng.gen_bool(0.25) {
        let depth = rng.gen_range(1..=5);
        frame.vlans = (0..depth)
            .map(|_| *[0x8100u16, 0x88a8, 0x9100].choose(rng).unwrap())
            .collect();
    }
    if rng.gen_bool(0.03) {
        frame.version = Some(rng.gen_range(0..16));
    }
    if ipv6 {
        if rng.gen_bool(0.3) {
            let n = rng.gen_range(1..=10);
            frame.exts = (0..n)
                .map(|_| match rng.gen_range(0..5) {
                    0 => Ext::HopByHop(rng.gen_range(0..3)),
                    1 => Ext::Routing(rng.gen_range(0..3)),
                    2 => Ext::DstOpts(rng.gen_range(0..3)),
                    3 => Ext::Fragment(
                        if rng.gen_bool(0.5) {
                            0
                        } else {
                            rng.gen_range(1..200)
                        },
                        rng.gen_bool(0.5),
                    ),
                    _ => Ext::Auth(rng.gen_range(0..4)),
                })
                .collect();
        }
    } else {
        if rng.gen_bool(0.15) {
            frame.ihl = *[0, 3, 4, 6, 8, 15].choose(rng).unwrap();
        }
        if rng.gen_bool(0.15) {
            frame.frag = (
                if rng.gen_bool(0.5) {
                    0
                } else {
                    rng.gen_range(1..1000)
                },
                rng.gen_bool(0.5),
            );
        }
    }
    frame.payload = vec![0x35; rng.gen_range(0..64)];
    frame
}

/// Mutates serialized bytes: truncation anywhere (but never under 14 bytes, which
/// BPF_PROG_TEST_RUN refuses), random byte flips, or random garbage appended.
pub fn mutate(rng: &mut StdRng, mut bytes: Vec<u8>) -> Vec<u8> {
    match rng.gen_range(0..10) {
        0..=3 => {}
        4..=6 => {
            let len = rng.gen_range(14..=bytes.len().max(14));
            bytes.truncate(len);
        }
        7 | 8 => {
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(12..bytes.len());
                bytes[at] = rng.gen();
            }
        }
        _ => {
            let extra = rng.gen_range(1..32);
            bytes.extend((0..extra).map(|_| rng.gen::<u8>()));
        }
    }
    while bytes.len() < 14 {
        bytes.push(0);
    }
    bytes
}
