//! Prefix limits as users set them: a host-wide packet rate per prefix length, turned into the
//! per-CPU count per window that bpf/firewall/hhh.h compares (model/hhh.rs is its reference);
//! and the heavy prefixes the program noted, for `top`.
//!
//! A threshold is never below twice what one source can pass through its own bucket in a
//! window (`single_source_bound`), so no single host under the per-source limit can trip its
//! prefix, however its packets are spread over CPUs: its count on a CPU is at most its total.

use crate::sys::map_io;
use anyhow::{Context, Result};
use ipnet::IpNet;

use super::model::hhh::{self, Candidate, LEVELS, LEVEL_LENGTHS};
use super::{Config, FirewallMaps, HhhChunk, HhhHeavy, RateLimit};

/// The default limit of each level, as a multiple of the per-source rate: a /24 (or /64) may
/// send as much as 16 sources at their limit, a /16 (/48) 64, a /8 (/32) 256.
pub const DEFAULT_MULTIPLES: [u64; LEVELS] = [256, 64, 16, 256, 64, 16];
/// How long a tripped prefix stays blocked unless told otherwise.
pub const DEFAULT_BLOCK_FOR_NS: u64 = 60_000_000_000;
/// The window every CPU counts in (FW_HHH_WINDOW_SHIFT: 2^28 ns, about 268 ms).
pub const WINDOW_SHIFT: u32 = crate::abi::FW_HHH_WINDOW_SHIFT;

/// The level of a prefix length: IPv4 /8 /16 /24, IPv6 /32 /48 /64.
pub fn level_of_length(len: u8) -> Option<usize> {
    LEVEL_LENGTHS.iter().position(|&l| l == len)
}

/// Whether a level counts IPv6 prefixes.
pub fn is_v6_level(level: usize) -> bool {
    level >= crate::abi::FW_HHH_V6_32 as usize
}

/// The name of a level, as users write it: "/24", "/48 (IPv6)".
pub fn level_name(level: usize) -> String {
    format!(
        "/{}{}",
        LEVEL_LENGTHS[level],
        if is_v6_level(level) { " (IPv6)" } else { "" }
    )
}

/// The prefix limits users set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixLimits {
    /// Host-wide packets per second per level (enum fw_hhh_level); 0: no limit.
    pub pps: [u64; LEVELS],
    /// Auto-block a prefix over its limit this long; 0: only drop its excess.
    pub block_for_ns: u64,
}

impl PrefixLimits {
    /// The defaults for a per-source rate.
    pub fn defaults(per_source_pps: u64) -> PrefixLimits {
        PrefixLimits {
            pps: DEFAULT_MULTIPLES.map(|m| m.saturating_mul(per_source_pps)),
            block_for_ns: DEFAULT_BLOCK_FOR_NS,
        }
    }

    pub fn is_off(&self) -> bool {
        self.pps.iter().all(|&p| p == 0)
    }

    pub fn of_config(config: &Config) -> PrefixLimits {
        PrefixLimits {
            pps: config.hhh_pps,
            block_for_ns: config.hhh_block_for_ns,
        }
    }

    /// Each level's count per CPU and window above which a prefix trips (fw_config.hhh_limit).
    pub fn thresholds(&self, rl: &RateLimit, cpus: u32, shift: u32) -> [u32; LEVELS] {
        let floor = 2 * single_source_bound(rl, shift, cpus);
        self.pps.map(|pps| {
            if pps == 0 {
                return 0;
            }
            let per_cpu = packets_in_window(pps, shift).div_ceil(u64::from(cpus.max(1)));
            per_cpu.max(floor).min(u64::from(u32::MAX)) as u32
        })
    }

    /// Writes these limits into fw_config for a rate limit and a number of CPUs. `seed` keys
    /// the sketches (a config without one gets it).
    pub fn write_to(&self, config: &mut Config, rl: &RateLimit, cpus: u32, seed: u32) {
        let off = self.is_off();
        hhh::PrefixConfig {
            thresholds: self.thresholds(rl, cpus, WINDOW_SHIFT),
            window_shift: if off { 0 } else { WINDOW_SHIFT },
            seed,
            block_for_ns: self.block_for_ns,
        }
        .write_to(config);
        config.hhh_pps = self.pps;
    }
}

/// Packets a rate sends in one window, rounded up.
fn packets_in_window(pps: u64, shift: u32) -> u64 {
    let window_ns = 1u128 << shift;
    (u128::from(pps) * window_ns).div_ceil(1_000_000_000) as u64
}

/// The most packets one source can pass through its bucket in one window: its burst, its
/// refill over the window, its first packet (only noted), and what the CPUs' leases may hold
/// beyond its bucket (RateLimit::lease_max).
pub fn single_source_bound(rl: &RateLimit, shift: u32, cpus: u32) -> u64 {
    let leased = u64::from(cpus.max(1)) * u64::from(rl.lease_max(cpus) - 1);
    rl.burst
        .saturating_add(1)
        .saturating_add(packets_in_window(rl.pps, shift))
        .saturating_add(leased)
}

/// A prefix the program noted as heavy, with its count summed over CPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct HeavyPrefix {
    pub prefix: IpNet,
    pub level: usize,
    /// Packets counted in `window` (an estimate: count-min never counts less).
    pub packets: u64,
    /// Packets per second over the part of the window that has passed.
    pub pps: f64,
    /// The level's threshold per CPU and window.
    pub threshold: u32,
}

/// Reads every CPU's heavy prefixes of the current and the previous window, and their counts.
pub fn heavy_prefixes(maps: &FirewallMaps, now_ns: u64) -> Result<Vec<HeavyPrefix>> {
    let config = maps.config()?;
    let shift = config.hhh_window_shift;
    if shift == 0 {
        return Ok(Vec::new());
    }
    let current = hhh::window_of(now_ns, shift);
    // Each prefix once, whichever CPUs and windows noted it: its count is read below.
    let mut wanted = std::collections::BTreeSet::new();
    for cpu in read_heavy(maps)? {
        for c in cpu.prefix.iter() {
            let recent = c.window == current || c.window == current.wrapping_sub(1);
            let written = c.window != 0 || c.key != 0;
            if recent && written && (c.level as usize) < LEVELS {
                wanted.insert((c.key, c.level));
            }
        }
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let chunks = read_chunks(maps)?;
    let window_ns = 1u64 << shift;
    let mut found = Vec::new();
    for (key, level) in wanted {
        let h = hhh::hash(config.hhh_seed, key, level);
        let cells = hhh::cells_of(h, level);
        let level = level as usize;
        // Its count in the latest window its cells hold: the candidate may be from the last
        // window while its cells already count this one.
        let count_in = |window: u32| -> u64 {
            chunks
                .iter()
                .map(|cpu| {
                    let count = |(chunk, cell): (u32, u32)| {
                        let c = cpu[chunk as usize].cell[cell as usize];
                        if c.window == window {
                            c.count
                        } else {
                            0
                        }
                    };
                    u64::from(count(cells[0]).min(count(cells[1])))
                })
                .sum()
        };
        let (packets, elapsed) = match count_in(current) {
            0 => (count_in(current.wrapping_sub(1)), window_ns),
            now => (now, (now_ns & (window_ns - 1)).max(1)),
        };
        found.push(HeavyPrefix {
            prefix: hhh::prefix_of(key, level),
            level,
            packets,
            pps: packets as f64 * 1e9 / elapsed as f64,
            threshold: config.hhh_limit[level],
        });
    }
    found.sort_by(|a, b| b.pps.total_cmp(&a.pps));
    Ok(found)
}

/// One CPU's cells in use and heavy prefixes noted, as the model keeps them (tests compare).
pub fn cpu_counts(maps: &FirewallMaps, cpu: usize) -> Result<hhh::PrefixCounts> {
    let mut counts = hhh::PrefixCounts {
        config: hhh::PrefixConfig::of_config(&maps.config()?),
        ..hhh::PrefixCounts::default()
    };
    let chunks = read_chunks(maps)?;
    let chunks = chunks.get(cpu).context("no such CPU")?;
    for (c, chunk) in chunks.iter().enumerate() {
        for (i, cell) in chunk.cell.iter().enumerate() {
            if cell.window != 0 || cell.count != 0 {
                counts
                    .cells
                    .insert((c as u32, i as u32), (cell.window, cell.count));
            }
        }
    }
    let heavy = read_heavy(maps)?;
    let noted = heavy.get(cpu).context("no such CPU")?;
    for (slot, c) in noted.prefix.iter().enumerate() {
        if c.window != 0 || c.key != 0 || c.level != 0 {
            let candidate = Candidate {
                key: c.key,
                level: c.level,
                window: c.window,
            };
            counts.heavy.insert(slot as u32, candidate);
        }
    }
    Ok(counts)
}

/// Every CPU's heavy prefixes (hhh_heavy).
fn read_heavy(maps: &FirewallMaps) -> Result<Vec<Box<HhhHeavy>>> {
    map_io::per_cpu_values(&maps.hhh_heavy, 0, "hhh_heavy")?
        .iter()
        .map(|bytes| {
            let mut cpu: Box<HhhHeavy> = Box::default();
            plain::copy_from_bytes(&mut *cpu, bytes)
                .map_err(|_| anyhow::anyhow!("hhh_heavy size"))?;
            Ok(cpu)
        })
        .collect()
}

/// Every CPU's sketch chunks.
fn read_chunks(maps: &FirewallMaps) -> Result<Vec<Vec<Box<HhhChunk>>>> {
    let chunks: u32 = crate::abi::FW_HHH_LEVELS * crate::abi::FW_HHH_ROWS;
    let mut per_cpu: Vec<Vec<Box<HhhChunk>>> = Vec::new();
    for chunk in 0..chunks {
        let values = map_io::per_cpu_values(&maps.hhh_counts, chunk, "hhh_counts")?;
        per_cpu.resize_with(values.len(), Vec::new);
        for (cpu, bytes) in values.iter().enumerate() {
            let mut value: Box<HhhChunk> = Box::default();
            plain::copy_from_bytes(&mut *value, bytes)
                .map_err(|_| anyhow::anyhow!("hhh_counts size"))?;
            per_cpu[cpu].push(value);
        }
    }
    Ok(per_cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(pps: u64, burst: u64) -> RateLimit {
        RateLimit {
            enabled: true,
            pps,
            burst,
            ..RateLimit::default()
        }
    }

    #[test]
    fn defaults_are_multiples_of_the_per_source_rate() {
        let limits = PrefixLimits::defaults(1000);
        assert_eq!(
            limits.pps,
            [256_000, 64_000, 16_000, 256_000, 64_000, 16_000]
        );
        assert_eq!(limits.block_for_ns, 60_000_000_000);
        assert!(!limits.is_off());
        assert!(PrefixLimits::default().is_off());
    }

    #[test]
    fn a_threshold_is_the_rate_per_window_and_cpu_but_never_below_twice_one_source() {
        // 1000 pps, burst 1000: one source passes at most 1000 + 1 + 269 packets a window,
        // and on two CPUs 2 * 31 more from their leases of 32.
        let rl = rl(1000, 1000);
        assert_eq!(single_source_bound(&rl, 28, 1), 1270 + 31);
        assert_eq!(single_source_bound(&rl, 28, 2), 1270 + 62);
        let limits = PrefixLimits::defaults(1000);
        let t = limits.thresholds(&rl, 2, 28);
        // /8: 256,000 pps is 68,720 a window, 34,360 per CPU; /24: 16,000 is 4,295, 2,148 per
        // CPU, raised to the floor of 2,664.
        assert_eq!(t, [34_360, 8_590, 2_664, 34_360, 8_590, 2_664]);
        let one_level = PrefixLimits {
            pps: [0, 0, 1, 0, 0, 0],
            block_for_ns: 0,
        };
        assert_eq!(one_level.thresholds(&rl, 1, 28), [0, 0, 2602, 0, 0, 0]);
    }

    #[test]
    fn huge_rates_saturate() {
        let rl = rl(1_000_000_000, 1_000_000_000);
        let limits = PrefixLimits::defaults(u64::MAX);
        assert!(limits.thresholds(&rl, 1, 28).iter().all(|&t| t == u32::MAX));
    }

    #[test]
    fn levels_are_named_by_their_length() {
        assert_eq!(level_of_length(24), Some(2));
        assert_eq!(level_of_length(48), Some(4));
        assert_eq!(level_of_length(32), Some(3));
        assert_eq!(level_of_length(20), None);
        assert_eq!(level_name(2), "/24");
        assert_eq!(level_name(5), "/64 (IPv6)");
    }
}
