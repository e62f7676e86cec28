//! The reference of bpf/firewall/hhh.h: one CPU's prefix counts, cell for cell, and which prefix
//! a packet trips.
//!
//! Per packet that passed its source's bucket (and that the rate limit counts): for each of the
//! family's three levels (IPv4 /8 /16 /24, IPv6 /32 /48 /64), the prefix's estimate in this
//! window rises by one in a two-row count-min sketch with conservative update. The longest level
//! whose estimate exceeds its threshold, with every shorter level of the family over that same
//! threshold, trips: the packet is dropped, and the prefix is blocked for `block_for_ns`.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::abi::{FW_HHH_CELLS, FW_HHH_HEAVY, FW_HHH_ROWS, FW_HHH_V4_8, FW_HHH_V6_32};

/// Levels per family (FW_HHH_FAMILY_LEVELS).
pub const FAMILY_LEVELS: usize = crate::abi::FW_HHH_FAMILY_LEVELS as usize;
/// Every level (FW_HHH_LEVELS).
pub const LEVELS: usize = crate::abi::FW_HHH_LEVELS as usize;
/// The prefix length of each level, in enum fw_hhh_level order.
pub const LEVEL_LENGTHS: [u8; LEVELS] = [8, 16, 24, 32, 48, 64];

/// The prefix settings of fw_config, as the program reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixConfig {
    /// Per level: the count on one CPU in one window above which a prefix trips; 0: no limit.
    pub thresholds: [u32; LEVELS],
    /// window = now >> window_shift; 0: no counting at all.
    pub window_shift: u32,
    pub seed: u32,
    /// Auto-block a tripped prefix this long; 0: only drop.
    pub block_for_ns: u64,
}

impl PrefixConfig {
    pub fn of_config(config: &crate::firewall::Config) -> PrefixConfig {
        PrefixConfig {
            thresholds: config.hhh_limit,
            window_shift: config.hhh_window_shift,
            seed: config.hhh_seed,
            block_for_ns: config.hhh_block_for_ns,
        }
    }

    /// Writes these settings into fw_config (the host-wide rates shown are the caller's).
    pub fn write_to(&self, config: &mut crate::firewall::Config) {
        config.hhh_limit = self.thresholds;
        config.hhh_window_shift = self.window_shift;
        config.hhh_seed = self.seed;
        config.hhh_block_for_ns = self.block_for_ns;
    }
}

/// A prefix the program noted as heavy (struct fw_hhh_candidate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    pub key: u64,
    pub level: u32,
    pub window: u32,
}

/// One CPU's sketches and heavy prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixCounts {
    pub config: PrefixConfig,
    /// (chunk, cell) -> (window, count); cells never written are absent.
    pub cells: HashMap<(u32, u32), (u32, u32)>,
    /// Slot of hhh_heavy -> what it holds; slots never written are absent.
    pub heavy: HashMap<u32, Candidate>,
}

/// The program's keyed mix of a prefix key and its level.
pub fn hash(seed: u32, key: u64, level: u32) -> u64 {
    let seed = u64::from(seed);
    let mut h =
        (key ^ (seed << 32 | seed) ^ (u64::from(level) << 59)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

/// The first bytes of a source as the program loads them (little-endian): 4 for IPv4, 8 for
/// IPv6; and its family's first level.
fn first_bytes(addr: IpAddr) -> (u64, u32) {
    match addr {
        IpAddr::V4(a) => (u64::from(u32::from_le_bytes(a.octets())), FW_HHH_V4_8),
        IpAddr::V6(a) => (
            u64::from_le_bytes(a.octets()[..8].try_into().unwrap()),
            FW_HHH_V6_32,
        ),
    }
}

/// A prefix key: the first `len` bits of those bytes.
pub fn key(first: u64, len: u8) -> u64 {
    if len >= 64 {
        first
    } else {
        first & ((1u64 << len) - 1)
    }
}

/// The prefix a key stands for at a level.
pub fn prefix_of(key: u64, level: usize) -> IpNet {
    let len = LEVEL_LENGTHS[level];
    if level < FW_HHH_V6_32 as usize {
        let addr = std::net::Ipv4Addr::from((key as u32).to_le_bytes());
        IpNet::new(addr.into(), len).unwrap()
    } else {
        let mut octets = [0u8; 16];
        octets[..8].copy_from_slice(&key.to_le_bytes());
        IpNet::new(std::net::Ipv6Addr::from(octets).into(), len).unwrap()
    }
}

/// The cells of a key at a level: (chunk, cell) of row 0 and row 1.
pub fn cells_of(h: u64, level: u32) -> [(u32, u32); 2] {
    let mask = u64::from(FW_HHH_CELLS - 1);
    let row0 = level * FW_HHH_ROWS;
    [
        (row0, (h & mask) as u32),
        (row0 + 1, ((h >> 16) & mask) as u32),
    ]
}

/// The window a time falls in (the program keeps its low 32 bits).
pub fn window_of(now: u64, shift: u32) -> u32 {
    (now >> (shift & 63)) as u32
}

/// What a packet tripped: the prefix to block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trip {
    pub prefix: IpNet,
    pub level: usize,
}

impl PrefixCounts {
    /// Counts one packet of `source` at time `now`; the prefix it trips, if any.
    pub fn count(&mut self, source: IpAddr, now: u64) -> Option<Trip> {
        self.count_packets(source, now, 1)
    }

    /// Counts `packets` of `source` at once (those a lease passed, when it goes back).
    pub fn count_packets(&mut self, source: IpAddr, now: u64, packets: u32) -> Option<Trip> {
        let config = self.config;
        if config.window_shift == 0 {
            return None;
        }
        let window = window_of(now, config.window_shift);
        let (first, base) = first_bytes(source);
        let mut keys = [0u64; FAMILY_LEVELS];
        let mut estimates = [0u32; FAMILY_LEVELS];
        for i in 0..FAMILY_LEVELS {
            let level = base + i as u32;
            keys[i] = key(first, LEVEL_LENGTHS[level as usize]);
            let h = hash(config.seed, keys[i], level);
            estimates[i] = self.add(h, level, window, packets);
            let limit = config.thresholds[level as usize];
            // Noted when the count passes a quarter of the limit.
            let quarter = u64::from(limit / 4);
            let n = u64::from(estimates[i]);
            if limit != 0 && n > quarter && n <= quarter + u64::from(packets) {
                let slot = ((h >> 32) as u32) & (FW_HHH_HEAVY - 1);
                let candidate = Candidate {
                    key: keys[i],
                    level,
                    window,
                };
                self.heavy.insert(slot, candidate);
            }
        }
        (0..FAMILY_LEVELS).rev().find_map(|i| {
            let level = base as usize + i;
            let limit = config.thresholds[level];
            let over = limit != 0 && estimates[..=i].iter().all(|&n| n > limit);
            over.then(|| Trip {
                prefix: prefix_of(keys[i], level),
                level,
            })
        })
    }

    /// Conservative update of a key's two cells; its new estimate.
    fn add(&mut self, h: u64, level: u32, window: u32, packets: u32) -> u32 {
        let cells = cells_of(h, level);
        let read = |cells: &HashMap<(u32, u32), (u32, u32)>, at| match cells.get(&at) {
            Some(&(w, count)) if w == window => count,
            _ => 0,
        };
        let values = cells.map(|at| read(&self.cells, at));
        let estimate = values[0].min(values[1]).saturating_add(packets);
        for (at, value) in cells.into_iter().zip(values) {
            if value < estimate {
                self.cells.insert(at, (window, estimate));
            }
        }
        estimate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::model::{DropReason, Firewall, RateLimit, Verdict};
    use crate::firewall::prefix_limits::{single_source_bound, PrefixLimits};

    fn udp_from(src: IpAddr) -> Vec<u8> {
        let dst: IpAddr = if src.is_ipv6() {
            "2001:db8::1".parse().unwrap()
        } else {
            [192, 0, 2, 1].into()
        };
        crate::packets::udp(src, dst, 53, &[])
    }

    /// A firewall limiting each source to `pps` (burst as much), with prefix thresholds.
    fn firewall(pps: u64, thresholds: [u32; LEVELS], block_for_ns: u64) -> Firewall {
        Firewall {
            rate_limit: RateLimit {
                enabled: true,
                pps,
                burst: pps,
                ..RateLimit::default()
            },
            prefix: PrefixCounts {
                config: PrefixConfig {
                    thresholds,
                    window_shift: 28,
                    seed: 0x1234_5678,
                    block_for_ns,
                },
                ..PrefixCounts::default()
            },
            ..Firewall::default()
        }
    }

    #[test]
    fn a_spoofed_slash_24_trips_at_its_limit_and_is_blocked_until_expiry() {
        let mut fw = firewall(1000, [0, 0, 50, 0, 0, 0], 5_000_000_000);
        let now = 1 << 40;
        for i in 0..50u8 {
            let src = IpAddr::from([100, 64, 7, i]);
            assert_eq!(fw.process(&udp_from(src), now), Verdict::Pass, "packet {i}");
        }
        let src = IpAddr::from([100, 64, 7, 200]);
        assert_eq!(
            fw.process(&udp_from(src), now),
            Verdict::Drop(DropReason::Prefix)
        );
        let net: IpNet = "100.64.7.0/24".parse().unwrap();
        let rule = fw.block.ranges[&net];
        assert_eq!(rule.reason, crate::abi::FW_REASON_PREFIX);
        assert_eq!(rule.expires_ns, now + 5_000_000_000);
        // Blocked: every source of the /24, counted as prefix drops; others pass.
        let inside = udp_from([100, 64, 7, 1].into());
        assert_eq!(
            fw.process(&inside, now + 1),
            Verdict::Drop(DropReason::Prefix)
        );
        assert_eq!(fw.block.ranges[&net].hits, 1);
        assert_eq!(
            fw.process(&udp_from([100, 64, 8, 1].into()), now + 1),
            Verdict::Pass
        );
        // Expired, in a new window: the /24 passes again.
        assert_eq!(fw.process(&inside, now + 5_000_000_000), Verdict::Pass);
        assert_eq!(fw.counters.drop_packets[DropReason::Prefix as usize], 2);
    }

    #[test]
    fn the_longest_tripping_prefix_is_blocked_and_a_window_restarts_counts() {
        // A /16 flood spread over 256 /24s: the /16 trips long before any /24.
        let mut fw = firewall(1000, [0, 100, 100, 0, 0, 0], 0);
        let now = 5 << 28;
        let mut first_drop = None;
        for i in 0..400u32 {
            let src = IpAddr::from([10, 9, (i % 256) as u8, (i / 256) as u8]);
            if fw.process(&udp_from(src), now) != Verdict::Pass && first_drop.is_none() {
                first_drop = Some(i);
            }
        }
        assert_eq!(first_drop, Some(100));
        // block_for 0: only dropped, nothing inserted.
        assert!(fw.block.ranges.is_empty());
        // The next window counts from zero.
        assert_eq!(
            fw.process(&udp_from([10, 9, 0, 9].into()), now + (1 << 28)),
            Verdict::Pass
        );
    }

    #[test]
    fn ipv6_prefixes_trip_at_slash_64_and_slash_48() {
        let mut fw = firewall(1000, [0, 0, 0, 0, 30, 20], 1_000_000_000);
        let now = 1 << 40;
        let source =
            |net: u8, host: u8| -> IpAddr { format!("2001:db8:1:{net}::{host}").parse().unwrap() };
        let verdicts: Vec<Verdict> = (0..21)
            .map(|h| fw.process(&udp_from(source(1, h + 1)), now))
            .collect();
        assert_eq!(verdicts[20], Verdict::Drop(DropReason::Prefix));
        assert!(verdicts[..20].iter().all(|v| *v == Verdict::Pass));
        assert!(fw
            .block
            .ranges
            .contains_key(&"2001:db8:1:1::/64".parse().unwrap()));
        // Ten more sources over other /64s of the /48 push it over 30.
        for n in 2..12 {
            fw.process(&udp_from(source(n, 1)), now);
        }
        assert!(fw
            .block
            .ranges
            .contains_key(&"2001:db8:1::/48".parse().unwrap()));
    }

    #[test]
    fn an_allowlisted_host_inside_a_blocked_prefix_still_passes() {
        let mut fw = firewall(1000, [0, 0, 10, 0, 0, 0], 60_000_000_000);
        let friend: IpAddr = [198, 51, 100, 7].into();
        let live = crate::firewall::model::RuleState {
            hits: 0,
            expires_ns: 0,
            reason: crate::abi::FW_REASON_MANUAL,
        };
        fw.allow.insert(IpNet::from(friend), live);
        for i in 0..20u8 {
            fw.process(&udp_from([198, 51, 100, 100 + i].into()), 1 << 40);
        }
        assert!(fw
            .block
            .ranges
            .contains_key(&"198.51.100.0/24".parse().unwrap()));
        assert_eq!(fw.process(&udp_from(friend), 1 << 40), Verdict::Pass);
    }

    #[test]
    fn one_host_under_its_limit_never_trips_the_default_thresholds() {
        // The host sends at its limit, in bursts, for 10 s; with the defaults on two CPUs and
        // this rate limit, its prefix never trips (the floor is twice its most per window).
        let pps = 200;
        let rl = RateLimit {
            enabled: true,
            pps,
            burst: pps,
            ..RateLimit::default()
        };
        let thresholds = PrefixLimits::defaults(pps).thresholds(&rl, 2, 28);
        assert!(thresholds
            .iter()
            .all(|&t| u64::from(t) >= 2 * single_source_bound(&rl, 28, 2)));
        let mut fw = firewall(pps, thresholds, 60_000_000_000);
        let host = udp_from([203, 0, 113, 9].into());
        let mut now = 1u64 << 40;
        for second in 0..10 {
            // The whole second's allowance at once, then silence; and a few over the limit,
            // which the bucket drops (they never count towards the prefix).
            for _ in 0..pps + 20 {
                let verdict = fw.process(&host, now);
                assert_ne!(
                    verdict,
                    Verdict::Drop(DropReason::Prefix),
                    "second {second}"
                );
            }
            now += 1_000_000_000;
        }
        assert!(fw.block.ranges.is_empty());
    }

    #[test]
    fn conservative_update_only_raises_the_smaller_cells() {
        let mut counts = PrefixCounts {
            config: PrefixConfig {
                thresholds: [0; LEVELS],
                window_shift: 20,
                seed: 1,
                block_for_ns: 0,
            },
            ..PrefixCounts::default()
        };
        let h = hash(1, 42, 2);
        let [a, b] = cells_of(h, 2);
        counts.cells.insert(a, (7, 5));
        assert_eq!(counts.add(h, 2, 7, 1), 1);
        assert_eq!(counts.cells[&a], (7, 5));
        assert_eq!(counts.cells[&b], (7, 1));
        // Another window's cell counts as 0 and restarts.
        assert_eq!(counts.add(h, 2, 8, 1), 1);
        assert_eq!(counts.cells[&a], (8, 1));
        assert_eq!(
            prefix_of(key(u64::from(u32::from_le_bytes([10, 1, 2, 3])), 16), 1).to_string(),
            "10.1.0.0/16"
        );
    }
}
