//! Test and benchmark frames, built in one place for the flood generator, the bench and the
//! tests. Two kinds:
//!
//! - [`checksummed`]: well-formed frames with valid checksums (etherparse), which a kernel stack
//!   accepts: the flood's template, the bench's and the tests' plain UDP frames.
//! - [`Frame`]: a frame described field by field and written by hand, because it must also be
//!   able to be wrong (bad IHL or version, odd VLAN stacks, IPv4 options and fragments, IPv6
//!   extension chains, short TCP offsets), which is exactly what the firewall must get right.
//!   Its checksums are left zero: the firewall never reads them.
//!
//! Both use the same MACs and source port unless told otherwise.

use std::net::IpAddr;

use anyhow::{bail, Result};
use etherparse::PacketBuilder;

/// The source MAC of test frames (locally administered).
pub const SOURCE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The destination MAC of test frames.
pub const DESTINATION_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The source port of every UDP and TCP frame built here.
pub const SOURCE_PORT: u16 = 40000;

// --- Well-formed frames ------------------------------------------------------------------------

/// The L4 part of a well-formed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp {
        dport: u16,
    },
    /// A TCP SYN (sequence 1, window 65535).
    Syn {
        dport: u16,
    },
    /// An ICMP echo request (ICMPv6 for IPv6), id 1, sequence 1.
    EchoRequest,
}

impl Transport {
    /// The length of its header.
    pub fn header_len(self) -> usize {
        match self {
            Transport::Udp { .. } => 8,
            Transport::Syn { .. } => 20,
            Transport::EchoRequest => 8,
        }
    }

    /// Where its checksum is within its header.
    pub fn checksum_offset(self) -> usize {
        match self {
            Transport::Udp { .. } => 6,
            Transport::Syn { .. } => 16,
            Transport::EchoRequest => 2,
        }
    }
}

/// Ethernet + IP header length: where the L4 header starts.
pub fn l4_offset(ipv6: bool) -> usize {
    14 + if ipv6 { 40 } else { 20 }
}

/// A well-formed Ethernet frame with valid checksums, from `source` to `destination` (of one IP
/// version) with the given MACs, carrying `payload`.
pub fn checksummed(
    macs: ([u8; 6], [u8; 6]),
    source: IpAddr,
    destination: IpAddr,
    transport: Transport,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let eth = PacketBuilder::ethernet2(macs.0, macs.1);
    let ip = match (source, destination) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => bail!("source and destination are of different IP versions"),
    };
    let mut frame = Vec::with_capacity(l4_offset(source.is_ipv6()) + 20 + payload.len());
    // The builder's type changes with each L4 step, so each arm writes its own frame.
    match transport {
        Transport::Udp { dport } => ip.udp(SOURCE_PORT, dport).write(&mut frame, payload)?,
        Transport::Syn { dport } => ip
            .tcp(SOURCE_PORT, dport, 1, 65535)
            .syn()
            .write(&mut frame, payload)?,
        Transport::EchoRequest if source.is_ipv6() => {
            ip.icmpv6_echo_request(1, 1).write(&mut frame, payload)?
        }
        Transport::EchoRequest => ip.icmpv4_echo_request(1, 1).write(&mut frame, payload)?,
    }
    Ok(frame)
}

/// A well-formed UDP frame between the test MACs, from `source` to `destination` port `dport`.
pub fn udp(source: IpAddr, destination: IpAddr, dport: u16, payload: &[u8]) -> Vec<u8> {
    checksummed(
        (SOURCE_MAC, DESTINATION_MAC),
        source,
        destination,
        Transport::Udp { dport },
        payload,
    )
    .expect("a UDP frame between addresses of one IP version")
}

// --- Described frames --------------------------------------------------------------------------

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
                let mut b = SOURCE_PORT.to_be_bytes().to_vec();
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&[0, 8, 0, 0]);
                b
            }
            L4::Tcp { dport, flags, doff } => {
                let len = (*doff as usize * 4).max(20);
                let mut b = vec![0u8; len];
                b[0..2].copy_from_slice(&SOURCE_PORT.to_be_bytes());
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
        let mut out = [DESTINATION_MAC, SOURCE_MAC].concat();
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
    frame.extend_from_slice(&SOURCE_MAC);
    frame.extend_from_slice(&[0x08, 0x06]);
    frame.extend_from_slice(&[0u8; 28]);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // The exact bytes the bench, the tests and their recorded figures were made with, before the
    // builders were merged here: a change to them changes what is measured and tested.

    #[test]
    fn the_bench_frame_is_64_bytes_with_these_bytes() {
        let frame = udp(
            "10.0.0.1".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
            9,
            &[0x5a; 22],
        );
        assert_eq!(
            hex(&frame),
            "0200000000020200000000010800450000320000400040116eb90a000001c00002019c400009001eb584\
             5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
        );
    }

    #[test]
    fn an_icmpv4_flood_frame_has_these_bytes() {
        let frame = checksummed(
            ([2, 0x58, 0, 0, 0, 1], [2, 0x58, 0, 0, 0, 2]),
            "10.0.0.1".parse().unwrap(),
            "10.1.0.1".parse().unwrap(),
            Transport::EchoRequest,
            &[0x78; 22],
        )
        .unwrap();
        assert_eq!(
            hex(&frame),
            "02580000000202580000000108004500003200004000400126c90a0000010a0100010800cad000010001\
             78787878787878787878787878787878787878787878"
        );
    }

    #[test]
    fn mixed_ip_versions_are_refused() {
        let err = checksummed(
            (SOURCE_MAC, DESTINATION_MAC),
            "10.0.0.1".parse().unwrap(),
            "fc00::1".parse().unwrap(),
            Transport::Udp { dport: 9 },
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "source and destination are of different IP versions"
        );
    }

    #[test]
    fn described_frames_have_these_bytes() {
        let mut v6 = Frame::new(
            "2001:db8::1".parse().unwrap(),
            L4::Tcp {
                dport: 22,
                flags: 0x02,
                doff: 5,
            },
        );
        v6.vlans = vec![0x88a8, 0x8100];
        v6.exts = vec![Ext::HopByHop(0), Ext::Fragment(3, true)];
        v6.payload = vec![0x55; 2];
        assert_eq!(
            hex(&v6.bytes()),
            "02000000000202000000000188a800078100000786dd600000000026004020010db80000000000000000\
             0000000120010db8ffff000000000000000000012c0000000000000006000019deadbeef9c4000160000\
             00000000000050020000000000005555"
        );
        let mut v4 = Frame::new("198.51.100.7".parse().unwrap(), L4::Udp { dport: 53 });
        v4.ihl = 6;
        v4.frag = (5, true);
        v4.payload = Vec::new();
        assert_eq!(
            hex(&v4.bytes()),
            "0200000000020200000000010800460000200000200540110000c6336407c0000201010101019c400035\
             00080000"
        );
        assert_eq!(
            hex(&non_ip_frame()),
            "ffffffffffff020000000001080600000000000000000000000000000000000000000000000000000000"
        );
    }
}
