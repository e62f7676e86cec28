//! Per-action statistics from an `xdp_stats_map` (the xdp-tutorial's layout): finding the map of
//! an attached program, summing the per-CPU values, and rates over a period. Their table and
//! NDJSON are in output/stats.rs.

use std::time::Instant;

use crate::sys::clock::unix_now;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use crate::counters::history;
use crate::counters::ports;
use crate::firewall::FwStats;
use crate::sys::attach;

pub const STATS_MAP_NAME: &str = "xdp_stats_map";

/// The names of the XDP actions, indexed by their value.
pub const ACTIONS: [&str; 5] = [
    "XDP_ABORTED",
    "XDP_DROP",
    "XDP_PASS",
    "XDP_TX",
    "XDP_REDIRECT",
];

/// `struct datarec` from include/xdpctl.h, as the skeleton generated it from BTF.
pub type DataRec = crate::abi::datarec;
// SAFETY: datarec is two u64s: any bytes are a valid value.
unsafe impl plain::Plain for DataRec {}

/// Whether a map has the tutorial's layout, so we can read it as per-action counters.
fn is_stats_map(map: &MapHandle) -> bool {
    map.map_type() == MapType::PercpuArray
        && map.key_size() == 4
        && map.value_size() as usize == std::mem::size_of::<DataRec>()
        && map.max_entries() as usize >= ACTIONS.len()
}

/// The counter maps of a program: per-action counters, and where the program keeps them, the
/// firewall's, the per-second history and the destination-port histogram.
pub struct StatsMaps {
    pub actions: MapHandle,
    pub firewall: Option<MapHandle>,
    pub history: Option<MapHandle>,
    /// Packets per destination port (`port_packets`; not the port rules).
    pub port_counts: Option<MapHandle>,
}

impl StatsMaps {
    /// The counter maps of a loaded program, found in one pass over its maps: None if it has no
    /// xdp_stats_map in the tutorial's layout.
    pub fn of_program(program: &attach::ProgramSummary) -> Option<StatsMaps> {
        let (mut actions, mut firewall, mut history, mut port_counts) = (None, None, None, None);
        for map in program
            .map_ids
            .iter()
            .filter_map(|&id| MapHandle::from_map_id(id).ok())
        {
            if map.name() == STATS_MAP_NAME && is_stats_map(&map) {
                actions = Some(map);
            } else if map.name() == "fw_stats"
                && map.map_type() == MapType::PercpuArray
                && map.value_size() as usize == std::mem::size_of::<FwStats>()
            {
                firewall = Some(map);
            } else if history::is_history_map(&map) {
                history = Some(map);
            } else if ports::is_port_map(&map) {
                port_counts = Some(map);
            }
        }
        actions.map(|actions| StatsMaps {
            actions,
            firewall,
            history,
            port_counts,
        })
    }
}

/// The program on an interface and its counter maps, or an error that says why there are none.
pub fn stats_maps_of_interface(ifname: &str) -> Result<(StatsMaps, attach::ProgramSummary)> {
    let ifindex = attach::ifindex(ifname)?;
    let attachments = attach::query(ifindex)?;
    let Some(first) = attachments.first() else {
        bail!("{ifname} has no XDP program: load one with `xdpctl load {ifname}`");
    };
    let program = attach::program_summary(first.prog_id)?;
    match StatsMaps::of_program(&program) {
        Some(maps) => Ok((maps, program)),
        None => bail!(
            "the XDP program on {ifname} (id {}, '{}') has no {STATS_MAP_NAME} in the \
             xdp-tutorial's layout (per-CPU array of struct datarec), so it keeps no per-action stats",
            program.id,
            program.name
        ),
    }
}

/// Packets and bytes of one action, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// All per-action counters of a map at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [Counter; 5]);

impl Counters {
    pub fn action(&self, name: &str) -> Counter {
        ACTIONS
            .iter()
            .position(|action| *action == name)
            .map(|index| self.0[index])
            .unwrap_or_default()
    }
}

/// Reads and sums the per-CPU values of every action.
pub fn read_counters<M: MapCore>(map: &M) -> Result<Counters> {
    let mut counters = Counters::default();
    for (action, slot) in counters.0.iter_mut().enumerate() {
        let key = (action as u32).to_ne_bytes();
        let per_cpu = map
            .lookup_percpu(&key, MapFlags::ANY)
            .with_context(|| format!("reading {} from {STATS_MAP_NAME}", ACTIONS[action]))?
            .unwrap_or_default();
        for bytes in per_cpu {
            let mut rec = DataRec::default();
            plain::copy_from_bytes(&mut rec, &bytes)
                .map_err(|_| anyhow::anyhow!("{STATS_MAP_NAME} value has the wrong size"))?;
            slot.packets = slot.packets.wrapping_add(rec.rx_packets);
            slot.bytes = slot.bytes.wrapping_add(rec.rx_bytes);
        }
    }
    Ok(counters)
}

/// enum fw_proto's and enum fw_drop_reason's counters: the firewall's counter arrays' lengths.
pub const PROTO_COUNT: usize = crate::abi::FW_PROTO_MAX as usize;
pub const DROP_COUNT: usize = crate::abi::FW_DROP_MAX as usize;

/// The firewall's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwCounters {
    pub proto_packets: [u64; PROTO_COUNT],
    pub drop_packets: [u64; DROP_COUNT],
    pub drop_bytes: [u64; DROP_COUNT],
}

pub fn read_fw_counters<M: MapCore>(map: &M) -> Result<FwCounters> {
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading fw_stats")?
        .unwrap_or_default();
    let mut sum = FwCounters::default();
    for bytes in per_cpu {
        let mut cpu = FwStats::default();
        plain::copy_from_bytes(&mut cpu, &bytes)
            .map_err(|_| anyhow::anyhow!("fw_stats value has the wrong size"))?;
        for (total, n) in sum.proto_packets.iter_mut().zip(cpu.proto_packets) {
            *total = total.wrapping_add(n);
        }
        for (total, n) in sum.drop_packets.iter_mut().zip(cpu.drop_packets) {
            *total = total.wrapping_add(n);
        }
        for (total, n) in sum.drop_bytes.iter_mut().zip(cpu.drop_bytes) {
            *total = total.wrapping_add(n);
        }
    }
    Ok(sum)
}

/// Counters with the moment they were read.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub counters: Counters,
    pub firewall: Option<FwCounters>,
    pub at: Instant,
    pub unix_time: f64,
}

impl Sample {
    pub fn take(maps: &StatsMaps) -> Result<Sample> {
        let counters = read_counters(&maps.actions)?;
        let firewall = maps.firewall.as_ref().map(read_fw_counters).transpose()?;
        Ok(Sample {
            counters,
            firewall,
            at: Instant::now(),
            unix_time: unix_now(),
        })
    }
}

/// One action's totals and rates over a period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActionRate {
    pub packets: u64,
    pub bytes: u64,
    pub pps: f64,
    /// Bits per second.
    pub bps: f64,
}

/// A firewall counter over a period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CounterRate {
    pub packets: u64,
    pub bytes: u64,
    pub pps: f64,
}

/// The firewall's part of a report.
#[derive(Clone, Debug, PartialEq)]
pub struct FwReport {
    /// In PROTOCOLS order (bytes are not counted per protocol: 0).
    pub protocols: [CounterRate; PROTO_COUNT],
    /// In DROP_REASONS order.
    pub drops: [CounterRate; DROP_COUNT],
    pub bytes_total: u64,
    pub bytes_dropped: u64,
}

/// What one stats line-up shows: every action over one period.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub unix_time: f64,
    pub period: f64,
    pub actions: [ActionRate; 5],
    pub firewall: Option<FwReport>,
}

/// A counter's growth, from zero if it went backwards (a replaced map).
fn delta(old: u64, new: u64) -> u64 {
    if new >= old {
        new - old
    } else {
        new
    }
}

/// Rates between two samples. A counter that went backwards (the map was replaced) counts from
/// zero rather than underflowing.
pub fn report(prev: &Sample, cur: &Sample) -> Report {
    let period = cur.at.saturating_duration_since(prev.at).as_secs_f64();
    let rate = |delta: u64| {
        if period > 0.0 {
            delta as f64 / period
        } else {
            0.0
        }
    };
    let actions = std::array::from_fn(|i| {
        let (old, new) = (prev.counters.0[i], cur.counters.0[i]);
        ActionRate {
            packets: new.packets,
            bytes: new.bytes,
            pps: rate(delta(old.packets, new.packets)),
            bps: rate(delta(old.bytes, new.bytes)) * 8.0,
        }
    });
    let firewall = cur.firewall.map(|new| {
        let old = prev.firewall.unwrap_or_default();
        FwReport {
            protocols: std::array::from_fn(|i| CounterRate {
                packets: new.proto_packets[i],
                bytes: 0,
                pps: rate(delta(old.proto_packets[i], new.proto_packets[i])),
            }),
            drops: std::array::from_fn(|i| CounterRate {
                packets: new.drop_packets[i],
                bytes: new.drop_bytes[i],
                pps: rate(delta(old.drop_packets[i], new.drop_packets[i])),
            }),
            // Every packet the firewall sees is counted under its action, every drop under its
            // reason: the byte totals follow from those.
            bytes_total: cur
                .counters
                .0
                .iter()
                .fold(0u64, |sum, action| sum.wrapping_add(action.bytes)),
            bytes_dropped: new
                .drop_bytes
                .iter()
                .fold(0u64, |sum, &bytes| sum.wrapping_add(bytes)),
        }
    });
    Report {
        unix_time: cur.unix_time,
        period,
        actions,
        firewall,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// Also the renderers' tests' (src/output).
    pub(crate) fn sample(at: Instant, pass: (u64, u64)) -> Sample {
        let mut counters = Counters::default();
        counters.0[2] = Counter {
            packets: pass.0,
            bytes: pass.1,
        };
        Sample {
            counters,
            firewall: None,
            at,
            unix_time: 1_700_000_000.5,
        }
    }

    #[test]
    fn the_shared_counters_match_every_programs_layout() {
        use std::mem::size_of;
        assert_eq!(size_of::<DataRec>(), 16);
        // bindgen and the programs' BTF read the same header: each program's skeleton agrees.
        assert_eq!(
            size_of::<DataRec>(),
            size_of::<crate::skel::xdp_pass::types::datarec>()
        );
        assert_eq!(
            size_of::<DataRec>(),
            size_of::<crate::skel::firewall::types::datarec>()
        );
        let second = size_of::<crate::abi::history_second>();
        assert_eq!(
            second,
            size_of::<crate::skel::xdp_drop::types::history_second>()
        );
        assert_eq!(
            second,
            size_of::<crate::skel::firewall::types::history_second>()
        );
    }

    #[test]
    fn rates_are_deltas_over_the_period() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let r = report(&sample(t0, (100, 10_000)), &sample(t1, (300, 1_010_000)));
        assert_eq!(r.period, 2.0);
        let pass = r.actions[2];
        assert_eq!((pass.packets, pass.bytes), (300, 1_010_000));
        assert_eq!(pass.pps, 100.0);
        assert_eq!(pass.bps, 4_000_000.0);
        assert_eq!(r.actions[1].pps, 0.0);
    }

    #[test]
    fn a_counter_reset_does_not_underflow() {
        let t0 = Instant::now();
        let r = report(
            &sample(t0, (1000, 0)),
            &sample(t0 + Duration::from_secs(1), (10, 0)),
        );
        assert_eq!(r.actions[2].pps, 10.0);
    }

    #[test]
    fn zero_period_gives_zero_rates() {
        let t0 = Instant::now();
        let r = report(&sample(t0, (0, 0)), &sample(t0, (5, 5)));
        assert_eq!(r.actions[2].pps, 0.0);
    }
}
