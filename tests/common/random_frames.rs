//! Random frames for the differential test: addresses from small pools (so that rules hit),
//! mostly well-formed frames with the odd structures the parser must handle, and mutation of
//! their bytes. The frames themselves are xdpctl::packets' [`Frame`]s.
#![allow(dead_code)]

use std::net::IpAddr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use xdpctl::packets::{Ext, Frame, L4};

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
