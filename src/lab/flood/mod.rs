//! The flood generator: BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, kernel
//! ≥ 5.18) runs bpf/flood.bpf.c on a template frame, and XDP_TX transmits every run's frame out
//! of a veth: millions of packets per second, where a socket manages a few hundred thousand.
//!
//! For safety it only ever sends on veth interfaces (labs), and says so when asked for another.
//! The frames carry the peer's MAC and valid checksums, so the peer's kernel stack (netfilter
//! included) accepts them. A veth peer only receives XDP frames when it has an XDP program
//! attached or GRO on (`xdpctl testenv` turns GRO on), and veth refuses frames when the peer's
//! XDP ring is full, so the flood counts what the veth took (xdp:xdp_devmap_xmit).

mod generator;
mod interface;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use ipnet::IpNet;

pub use generator::{live_run, test_run, Generator};
pub use interface::{driver, parse_mac, require_veth, resolve};

use crate::packets::{self, Transport};

/// What to send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FloodProto {
    /// UDP to port 9 (discard).
    #[default]
    Udp,
    /// TCP SYNs to port 80.
    Syn,
    /// ICMP (or ICMPv6) echo requests.
    Icmp,
}

/// How long to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Until {
    Duration(Duration),
    Count(u64),
}

/// Everything a flood needs, resolved.
#[derive(Clone, Debug)]
pub struct Plan {
    pub ifname: String,
    pub ifindex: u32,
    pub proto: FloodProto,
    /// The source: one address, or a prefix to draw random sources from.
    pub source: IpNet,
    pub destination: IpAddr,
    pub source_mac: [u8; 6],
    pub destination_mac: [u8; 6],
    /// Frame size in bytes, without the FCS.
    pub size: usize,
    /// Packets per second, or None for as fast as possible.
    pub pps: Option<u64>,
    pub until: Until,
}

/// What a flood sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Frames the veth took (and handed to its peer).
    pub packets: u64,
    pub bytes: u64,
    /// Frames the veth refused: its peer's XDP ring was full, or the peer took no XDP frames
    /// at all (no XDP program, GRO off).
    pub refused: u64,
    pub seconds: f64,
}

impl Report {
    pub fn pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.packets as f64 / self.seconds
        } else {
            0.0
        }
    }
}

// --- The frame --------------------------------------------------------------------------------

impl FloodProto {
    /// What the frames carry.
    fn transport(self) -> Transport {
        match self {
            FloodProto::Udp => Transport::Udp { dport: 9 },
            FloodProto::Syn => Transport::Syn { dport: 80 },
            FloodProto::Icmp => Transport::EchoRequest,
        }
    }
}

/// The minimal frame for a protocol and IP version (Ethernet + IP + L4 headers).
pub fn minimum_size(proto: FloodProto, ipv6: bool) -> usize {
    packets::l4_offset(ipv6) + proto.transport().header_len()
}

/// The template frame, with valid checksums, and the offset of the L4 checksum that covers the
/// source address (0 when none does: ICMPv4).
pub fn template(plan: &Plan) -> Result<(Vec<u8>, u16)> {
    let ipv6 = plan.destination.is_ipv6();
    let min = minimum_size(plan.proto, ipv6);
    if plan.size < min {
        bail!(
            "--size {} is too small: this frame needs at least {min} bytes",
            plan.size
        );
    }
    if plan.size > 1514 {
        bail!(
            "--size {} is larger than a 1514-byte Ethernet frame",
            plan.size
        );
    }
    let payload = vec![0x78u8; plan.size - min];
    let transport = plan.proto.transport();
    let frame = packets::checksummed(
        (plan.source_mac, plan.destination_mac),
        plan.source.network(),
        plan.destination,
        transport,
        &payload,
    )?;
    let check_off = if transport == Transport::EchoRequest && !ipv6 {
        0
    } else {
        packets::l4_offset(ipv6) + transport.checksum_offset()
    };
    Ok((frame, check_off as u16))
}

/// The bits of the source to randomize: the host part of the prefix (for IPv6, within the last
/// 64 bits).
fn random_masks(source: &IpNet) -> (u32, u64) {
    match source {
        IpNet::V4(net) => (u32::from(net.hostmask()).to_be(), 0),
        IpNet::V6(net) => {
            let host = u128::from(net.hostmask()) as u64;
            (0, host.to_be())
        }
    }
}

/// Floods per the plan until done or `stop` is set. `Until::Count(n)` means n frames that the
/// veth took: frames it refused are made again.
pub fn run(plan: &Plan, stop: &AtomicBool) -> Result<Report> {
    let mut generator = Generator::new(plan)?;
    generator.count_transmits()?;
    let size = generator.template().len() as u64;
    let started = Instant::now();
    let mut made = 0u64;
    let mut wholly_refused = 0;
    // Each BPF_PROG_RUN of more than one live frame costs about 24 ms on top of its frames
    // (measured here: the run's page pool is set up and torn down). So a paced flood goes out
    // in one run per 100 ms slot (bursts at full speed, the average on the mark up to about
    // 1.5 Mpps) and an unpaced one in runs of 2^18 frames.
    let slot = Duration::from_millis(100);
    let per_slot = plan.pps.map(|pps| (pps / 10).max(1));
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (taken_before, _) = generator.transmits();
        let left = match plan.until {
            Until::Count(n) => n.saturating_sub(taken_before),
            Until::Duration(d) if started.elapsed() >= d => 0,
            Until::Duration(_) => u64::MAX,
        };
        if left == 0 {
            break;
        }
        let batch = per_slot.unwrap_or(1 << 18).min(left).min(u32::MAX as u64) as u32;
        generator.send(plan.ifindex, batch)?;
        made += batch as u64;
        let (taken, _) = generator.transmits();
        if taken == 0 {
            bail!(
                "the peer of {} took none of the {batch} frames sent: a veth's peer takes XDP \
                 frames only with an XDP program attached or GRO on (`ethtool -K PEER gro on`; \
                 `xdpctl testenv` labs have it on)",
                plan.ifname
            );
        }
        // A peer that stops taking frames (its program detached) ends the flood, rather than
        // leave a count that can never be reached; the report says what was refused.
        wholly_refused = if taken == taken_before {
            wholly_refused + 1
        } else {
            0
        };
        if wholly_refused == 3 {
            break;
        }
        if let Some(per_slot) = per_slot {
            // Keep the average rate of frames made: wait until this many are due.
            let due = started + slot.mul_f64(made as f64 / per_slot as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    let (taken, refused) = generator.transmits();
    Ok(Report {
        packets: taken,
        bytes: taken * size,
        refused,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(proto: FloodProto, src: &str, dst: &str, size: usize) -> Plan {
        Plan {
            ifname: "veth0".into(),
            ifindex: 1,
            proto,
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
            source_mac: [2, 0, 0, 0, 0, 1],
            destination_mac: [2, 0, 0, 0, 0, 2],
            size,
            pps: None,
            until: Until::Count(1),
        }
    }

    #[test]
    fn templates_have_the_size_and_valid_checksums() {
        for (proto, src, dst) in [
            (FloodProto::Udp, "10.0.0.0/16", "10.1.0.1"),
            (FloodProto::Syn, "10.0.0.1/32", "10.1.0.1"),
            (FloodProto::Icmp, "10.0.0.1/32", "10.1.0.1"),
            (FloodProto::Udp, "fc00::/64", "fc00:1::1"),
            (FloodProto::Icmp, "fc00::1/128", "fc00:1::1"),
        ] {
            let p = plan(proto, src, dst, 128);
            let (frame, check_off) = template(&p).unwrap();
            assert_eq!(frame.len(), 128, "{proto:?}");
            let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            match parsed.net.unwrap() {
                etherparse::NetSlice::Ipv4(ip) => {
                    let header = ip.header().to_header();
                    assert_eq!(header.header_checksum, header.calc_header_checksum());
                    assert_eq!(IpAddr::V4(header.source.into()), p.source.network());
                }
                etherparse::NetSlice::Ipv6(ip) => {
                    assert_eq!(IpAddr::V6(ip.header().source_addr()), p.source.network());
                }
            }
            if proto == FloodProto::Icmp && !p.destination.is_ipv6() {
                assert_eq!(check_off, 0);
            } else {
                assert!(check_off as usize + 2 <= frame.len());
            }
        }
    }

    #[test]
    fn too_small_and_too_large_frames_are_refused() {
        let err = template(&plan(FloodProto::Syn, "10.0.0.1/32", "10.1.0.1", 40)).unwrap_err();
        assert!(err.to_string().contains("at least 54"), "{err}");
        assert!(template(&plan(FloodProto::Udp, "10.0.0.1/32", "10.1.0.1", 2000)).is_err());
        assert_eq!(minimum_size(FloodProto::Udp, false), 42);
    }

    #[test]
    fn random_bits_are_the_host_part() {
        let (m4, _) = random_masks(&"10.0.0.0/16".parse().unwrap());
        assert_eq!(u32::from_be(m4), 0x0000_ffff);
        let (m4, _) = random_masks(&"10.0.0.1/32".parse().unwrap());
        assert_eq!(m4, 0);
        let (_, m6) = random_masks(&"fc00::/120".parse().unwrap());
        assert_eq!(u64::from_be(m6), 0xff);
    }
}
