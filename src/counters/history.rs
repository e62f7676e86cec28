//! The per-second history every built-in program keeps (bpf/lib/history.h): reading the per-CPU ring,
//! summing the CPUs' counts of each completed second. Their table, JSON and CSV are in
//! output/history.rs.

use crate::sys::clock::unix_offset_ns;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapHandle, MapType};

use crate::sys::clock::monotonic_ns;
use crate::sys::map_io;

pub const HISTORY_MAP_NAME: &str = "xdp_history";

/// Seconds the ring holds (XDPCTL_HISTORY_SLOTS).
pub const SLOTS: u64 = crate::abi::XDPCTL_HISTORY_SLOTS as u64;

/// Completed seconds a reader can ask for. Of the ring's slots, one is the second in progress,
/// and for the settling time after a second ends, the slot of the next one is being reset while
/// the newest readable second is two back: so two slots are never read.
pub const READABLE: u64 = SLOTS - 2;

/// Why dropped packets were dropped, in the ring's order (enum fw_drop_reason, then
/// enum history_drop).
pub const DROP_REASONS: [&str; crate::abi::HISTORY_DROP_MAX as usize] = {
    use crate::abi::names::{FW_DROP_REASON_NAMES, HISTORY_DROP_NAMES};
    let mut all = [""; crate::abi::HISTORY_DROP_MAX as usize];
    let mut i = 0;
    while i < all.len() {
        all[i] = if i < FW_DROP_REASON_NAMES.len() {
            FW_DROP_REASON_NAMES[i]
        } else {
            HISTORY_DROP_NAMES[i - FW_DROP_REASON_NAMES.len()]
        };
        i += 1;
    }
    all
};
/// A second counts as complete this long after it ended. Each CPU caches the coarse clock per
/// jiffy, so a packet can still land in a second up to about a tick (1-10 ms) after it ended.
const SETTLE_NS: u64 = 50_000_000;

const NS_PER_SEC: u64 = 1_000_000_000;

/// `struct history_second` from include/xdpctl.h, as the skeleton generated it from BTF.
pub type RawSecond = crate::abi::history_second;
// SAFETY: history_second is u64s only: any bytes are a valid value.
unsafe impl plain::Plain for RawSecond {}

/// A program's history ring (from its StatsMaps), or an error that says why it has none.
pub fn history_of(history: Option<MapHandle>, ifname: &str, program: &str) -> Result<MapHandle> {
    history.with_context(|| {
        format!(
            "the program on {ifname} ('{program}') keeps no per-second history: xdpctl's built-in \
             programs do (`xdpctl load {ifname} --force`, or --program xdp_pass)"
        )
    })
}

/// The history ring of the program on an interface, or an error that says why it has none.
pub fn history_of_interface(ifname: &str) -> Result<MapHandle> {
    let (maps, program) = crate::counters::stats::stats_maps_of_interface(ifname)?;
    history_of(maps.history, ifname, &program.name)
}

/// Whether a map is the history ring in the layout this xdpctl knows.
pub fn is_history_map(map: &MapHandle) -> bool {
    map.name() == HISTORY_MAP_NAME
        && map.map_type() == MapType::PercpuArray
        && map.value_size() as usize == std::mem::size_of::<RawSecond>()
        && u64::from(map.max_entries()) == SLOTS
}

/// One completed second, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Second {
    /// CLOCK_MONOTONIC second (the ring's key).
    pub monotonic: u64,
    /// Unix time of the second's start.
    pub time: i64,
    pub received: u64,
    pub passed: u64,
    pub dropped: u64,
    /// XDP_TX and XDP_REDIRECT.
    pub other: u64,
    pub bytes: u64,
    /// In DROP_REASONS order.
    pub drops: [u64; crate::abi::HISTORY_DROP_MAX as usize],
}

impl Second {
    fn add(&mut self, raw: &RawSecond) {
        self.received += raw.passed + raw.dropped + raw.other;
        self.passed += raw.passed;
        self.dropped += raw.dropped;
        self.other += raw.other;
        self.bytes += raw.bytes;
        for (sum, add) in self.drops.iter_mut().zip(raw.drops) {
            *sum += add;
        }
    }
}

/// Every slot of the ring, each with every CPU's copy: `slots[slot][cpu]`.
pub struct Ring {
    pub slots: Vec<Vec<RawSecond>>,
}

impl Ring {
    pub fn read(map: &MapHandle) -> Result<Ring> {
        if !is_history_map(map) {
            bail!(
                "map {} is not a history ring this xdpctl can read (made by another version?)",
                map.name().to_string_lossy()
            );
        }
        let stride = std::mem::size_of::<RawSecond>().next_multiple_of(8);
        let mut slots = vec![Vec::new(); SLOTS as usize];
        map_io::for_each_entry(map, |key, value| {
            let index = u32::from_ne_bytes(key[..4].try_into().unwrap()) as usize;
            let Some(slot) = slots.get_mut(index) else {
                return;
            };
            // Each CPU's copy in turn, padded to 8 bytes.
            for cpu in value.chunks_exact(stride) {
                let mut raw = RawSecond::default();
                plain::copy_from_bytes(&mut raw, cpu).expect("a slot's bytes fit a RawSecond");
                slot.push(raw);
            }
        })?;
        Ok(Ring { slots })
    }

    /// The sum over CPUs of one second; zeros where no CPU counted in it (or it was overwritten).
    pub fn second(&self, monotonic: u64) -> Second {
        let mut sum = Second {
            monotonic,
            ..Default::default()
        };
        for raw in &self.slots[(monotonic % SLOTS) as usize] {
            if raw.second == monotonic {
                sum.add(raw);
            }
        }
        sum
    }

    /// The oldest second still in the ring, if any CPU counted anything in the ring's span.
    pub fn oldest(&self, newest: u64) -> Option<u64> {
        self.slots
            .iter()
            .flatten()
            .map(|raw| raw.second)
            .filter(|&s| s <= newest && s + SLOTS > newest && s != 0)
            .min()
    }

    /// The last `count` completed seconds as of `now_ns` (CLOCK_MONOTONIC), oldest first, not
    /// reaching back past the oldest second in the ring (before it the program counted nothing).
    /// `unix_offset_ns` turns monotonic time into Unix time.
    pub fn completed(&self, now_ns: u64, count: u64, unix_offset_ns: i128) -> Vec<Second> {
        let Some(newest) = last_completed(now_ns) else {
            return Vec::new();
        };
        let Some(oldest) = self.oldest(newest) else {
            return Vec::new();
        };
        let count = count.min(READABLE);
        let first = newest.saturating_sub(count.saturating_sub(1)).max(oldest);
        (first..=newest)
            .map(|monotonic| {
                let mut second = self.second(monotonic);
                second.time = unix_second(monotonic, unix_offset_ns);
                second
            })
            .collect()
    }
}

/// The newest second that has ended (and settled) at `now_ns`.
pub fn last_completed(now_ns: u64) -> Option<u64> {
    (now_ns.checked_sub(SETTLE_NS)? / NS_PER_SEC).checked_sub(1)
}

/// The Unix second when a monotonic second began.
fn unix_second(monotonic: u64, unix_offset_ns: i128) -> i64 {
    let start = i128::from(monotonic) * i128::from(NS_PER_SEC) + unix_offset_ns;
    start.div_euclid(i128::from(NS_PER_SEC)) as i64
}

/// Reads the completed seconds of a ring now.
pub fn read_completed(map: &MapHandle, count: u64) -> Result<Vec<Second>> {
    let ring = Ring::read(map)?;
    Ok(ring.completed(monotonic_ns(), count, unix_offset_ns()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(second: u64, received: u64, passed: u64) -> RawSecond {
        let mut drops = [0; crate::abi::HISTORY_DROP_MAX as usize];
        drops[0] = received - passed;
        RawSecond {
            second,
            passed,
            dropped: received - passed,
            bytes: received * 64,
            drops,
            ..Default::default()
        }
    }

    /// A two-CPU ring with the given slots filled.
    fn ring(filled: &[(u64, [RawSecond; 2])]) -> Ring {
        let mut slots = vec![vec![RawSecond::default(); 2]; SLOTS as usize];
        for (second, cpus) in filled {
            slots[(*second % SLOTS) as usize] = cpus.to_vec();
        }
        Ring { slots }
    }

    #[test]
    fn drop_reasons_continue_the_firewalls() {
        // include/xdpctl.h asserts HISTORY_DROP_PROGRAM == FW_DROP_MAX; the names follow.
        let firewall = crate::firewall::DROP_REASONS;
        assert_eq!(DROP_REASONS[..firewall.len()], firewall);
        assert_eq!(DROP_REASONS.len(), firewall.len() + 2);
    }

    #[test]
    fn sums_cpus_and_skips_stale_copies() {
        // CPU 1's copy of slot 1000 % 512 is from 512 s earlier: stale, not counted.
        let ring = ring(&[(1000, [raw(1000, 10, 4), raw(488, 99, 99)])]);
        let s = ring.second(1000);
        assert_eq!((s.received, s.passed, s.dropped, s.drops[0]), (10, 4, 6, 6));
        assert_eq!(ring.second(488).received, 99);
    }

    #[test]
    fn only_completed_seconds_and_no_earlier_than_the_ring() {
        let ring = ring(&[
            (100, [raw(100, 5, 5), raw(100, 1, 0)]),
            (102, [raw(102, 7, 7), RawSecond::default()]),
            (103, [raw(103, 3, 3), raw(103, 3, 3)]),
        ]);
        // At 103.9 s, 102 is the last complete second; 103 is in progress.
        let seconds = ring.completed(103_900_000_000, 60, 0);
        let got: Vec<(u64, u64)> = seconds.iter().map(|s| (s.monotonic, s.received)).collect();
        assert_eq!(got, vec![(100, 6), (101, 0), (102, 7)]);
        // Just after 103 ended, it has not settled yet.
        assert_eq!(ring.completed(104_010_000_000, 60, 0).len(), 3);
        assert_eq!(ring.completed(104_060_000_000, 60, 0).len(), 4);
        // A count limits from the newest.
        let last_two = ring.completed(103_900_000_000, 2, 0);
        assert_eq!(
            last_two.iter().map(|s| s.monotonic).collect::<Vec<_>>(),
            [101, 102]
        );
    }

    #[test]
    fn never_reads_the_slot_being_reset() {
        // 50 ms into second 1000: 998 is the newest readable second, and 1000's slot (that of
        // 488) is being reset. The oldest second read must be after 488.
        let ring = ring(&[(998, [raw(998, 1, 1), RawSecond::default()])]);
        let mut filled = ring;
        for s in 489..998 {
            filled.slots[(s % SLOTS) as usize] = vec![raw(s, 1, 1), RawSecond::default()];
        }
        filled.slots[(488 % SLOTS) as usize] = vec![raw(488, 1, 1), RawSecond::default()];
        let seconds = filled.completed(1_000_040_000_000, 1000, 0);
        assert_eq!(seconds.len() as u64, READABLE);
        assert_eq!(seconds[0].monotonic, 489);
        assert_eq!(seconds.last().unwrap().monotonic, 998);
    }

    #[test]
    fn unix_time_of_a_second() {
        let ring = ring(&[(10, [raw(10, 1, 1), RawSecond::default()])]);
        let offset = 1_700_000_000_250_000_000i128;
        let seconds = ring.completed(11_500_000_000, 5, offset);
        assert_eq!(seconds[0].time, 1_700_000_010);
    }
}
