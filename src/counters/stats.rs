//! Per-action statistics from an `xdp_stats_map` (the xdp-tutorial's layout): finding the map of
//! an attached program, summing the per-CPU values, rates over a period, and the tutorial's text
//! format and NDJSON.

use std::time::Instant;

use crate::sys::clock::unix_now;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use serde_json::{json, Map, Value};

use crate::counters::history;
use crate::counters::ports;
use crate::firewall::{FwStats, DROP_REASONS, PROTOCOLS};
use crate::skel;
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
pub type DataRec = skel::xdp_pass::types::datarec;
// SAFETY: datarec is two u64s: any bytes are a valid value.
unsafe impl plain::Plain for DataRec {}

/// An action's short name: XDP_PASS -> pass (metric labels, the dashboard).
pub fn action_label(action: &str) -> String {
    action.trim_start_matches("XDP_").to_ascii_lowercase()
}

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

/// The firewall's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwCounters {
    pub proto_packets: [u64; 5],
    pub drop_packets: [u64; 4],
    pub drop_bytes: [u64; 4],
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
    pub protocols: [CounterRate; 5],
    /// In DROP_REASONS order.
    pub drops: [CounterRate; 4],
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

/// Groups digits in threes: 1234567 -> "1,234,567".
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant digits and an SI suffix: 950, 1.23k, 12.3k, 123k, 1.23M, ... 18.4E.
pub fn compact(value: f64) -> String {
    if value.is_nan() || value < 0.0 {
        return "?".into();
    }
    if value < 999.5 {
        return format!("{value:.0}");
    }
    const UNITS: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    let mut scaled = value / 1000.0;
    let mut unit = 0;
    while scaled >= 999.5 && unit + 1 < UNITS.len() {
        scaled /= 1000.0;
        unit += 1;
    }
    if scaled >= 999.5 {
        // Past what a u64 holds (or infinite): no counter gets here.
        return ">999E".into();
    }
    let decimals = if scaled < 9.995 {
        2
    } else if scaled < 99.95 {
        1
    } else {
        0
    };
    format!("{scaled:.decimals$}{}", UNITS[unit])
}

/// The xdp-tutorial's table: a header line, then one row per action.
pub fn format_table(title: &str, report: &Report) -> String {
    let mut out = format!("{:<12} {title}\n", "XDP-action");
    for (name, rate) in ACTIONS.iter().zip(report.actions.iter()) {
        out.push_str(&format!(
            "{:<12} {:>11} pkts ({:>10} pps) {:>11} Kbytes ({:>6} Mbits/s) period:{:.6}\n",
            name,
            thousands(rate.packets),
            thousands(rate.pps.round() as u64),
            thousands(rate.bytes / 1000),
            thousands((rate.bps / 1_000_000.0).round() as u64),
            report.period
        ));
    }
    if let Some(fw) = &report.firewall {
        out.push_str(&format!("{:<12}", "Protocols"));
        for (name, rate) in PROTOCOLS.iter().zip(&fw.protocols) {
            out.push_str(&format!(
                " {name} {} ({} pps)",
                thousands(rate.packets),
                thousands(rate.pps.round() as u64)
            ));
        }
        out.push_str(&format!("\n{:<12}", "Drops"));
        for (name, rate) in DROP_REASONS.iter().zip(&fw.drops) {
            out.push_str(&format!(
                " {name} {} ({} pps)",
                thousands(rate.packets),
                thousands(rate.pps.round() as u64)
            ));
        }
        out.push_str(&format!(
            "\n{:<12} total {} Kbytes, dropped {} Kbytes\n",
            "Bytes",
            thousands(fw.bytes_total / 1000),
            thousands(fw.bytes_dropped / 1000)
        ));
    }
    out
}

/// One NDJSON object: `{"interface","time","period","actions":{NAME:{packets,bytes,pps,bps}}}`.
pub fn to_json(interface: &str, report: &Report) -> Value {
    let mut actions = Map::new();
    for (name, rate) in ACTIONS.iter().zip(report.actions.iter()) {
        actions.insert(
            (*name).to_owned(),
            json!({"packets": rate.packets, "bytes": rate.bytes, "pps": rate.pps, "bps": rate.bps}),
        );
    }
    let mut value = json!({
        "interface": interface,
        "time": report.unix_time,
        "period": report.period,
        "actions": actions,
    });
    if let Some(fw) = &report.firewall {
        let protocols: Map<String, Value> = PROTOCOLS
            .iter()
            .zip(&fw.protocols)
            .map(|(name, r)| {
                (
                    (*name).to_owned(),
                    json!({"packets": r.packets, "pps": r.pps}),
                )
            })
            .collect();
        let drops: Map<String, Value> = DROP_REASONS
            .iter()
            .zip(&fw.drops)
            .map(|(name, r)| {
                (
                    (*name).to_owned(),
                    json!({"packets": r.packets, "bytes": r.bytes, "pps": r.pps}),
                )
            })
            .collect();
        value["protocols"] = Value::Object(protocols);
        value["drops"] = Value::Object(drops);
        value["bytes"] = json!({"total": fw.bytes_total, "dropped": fw.bytes_dropped});
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(at: Instant, pass: (u64, u64)) -> Sample {
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
    fn datarec_matches_the_c_layout() {
        assert_eq!(std::mem::size_of::<DataRec>(), 16);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
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

    #[test]
    fn table_has_a_header_and_a_row_per_action_in_the_tutorial_format() {
        let t0 = Instant::now();
        let r = report(
            &sample(t0, (0, 0)),
            &sample(t0 + Duration::from_secs(2), (2_000_000, 128_000_000)),
        );
        let table = format_table("veth1", &r);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6);
        assert!(lines[0].starts_with("XDP-action") && lines[0].contains("veth1"));
        assert_eq!(
            lines[3],
            "XDP_PASS       2,000,000 pkts ( 1,000,000 pps)     128,000 Kbytes (   512 Mbits/s) period:2.000000"
        );
        for (line, action) in lines[1..].iter().zip(ACTIONS) {
            assert!(line.starts_with(action), "{line}");
        }
    }

    #[test]
    fn json_has_every_action_with_totals_and_rates() {
        let t0 = Instant::now();
        let r = report(
            &sample(t0, (0, 0)),
            &sample(t0 + Duration::from_secs(1), (7, 700)),
        );
        let v = to_json("veth1", &r);
        assert_eq!(v["interface"], "veth1");
        assert_eq!(v["period"], 1.0);
        assert_eq!(v["time"], 1_700_000_000.5);
        assert_eq!(v["actions"]["XDP_PASS"]["packets"], 7);
        assert_eq!(v["actions"]["XDP_PASS"]["bytes"], 700);
        assert_eq!(v["actions"]["XDP_PASS"]["pps"], 7.0);
        assert_eq!(v["actions"]["XDP_PASS"]["bps"], 5600.0);
        assert_eq!(v["actions"].as_object().unwrap().len(), 5);
        assert!(
            v.get("protocols").is_none(),
            "only the firewall has protocols"
        );
    }

    #[test]
    fn firewall_counters_add_protocols_drops_and_bytes() {
        let t0 = Instant::now();
        let mut a = sample(t0, (0, 0));
        let mut b = sample(t0 + Duration::from_secs(2), (10, 1000));
        a.firewall = Some(FwCounters::default());
        // The 10 drops, under XDP_DROP beside the 10 passed packets.
        b.counters.0[1] = Counter {
            packets: 10,
            bytes: 1000,
        };
        b.firewall = Some(FwCounters {
            proto_packets: [4, 6, 0, 0, 2],
            drop_packets: [8, 0, 2, 0],
            drop_bytes: [800, 0, 200, 0],
        });
        let r = report(&a, &b);
        let v = to_json("fw0", &r);
        assert_eq!(v["protocols"]["udp"]["packets"], 6);
        assert_eq!(v["protocols"]["syn"]["pps"], 1.0);
        assert_eq!(v["drops"]["blocklist"]["packets"], 8);
        assert_eq!(v["drops"]["blocklist"]["bytes"], 800);
        assert_eq!(v["drops"]["ratelimit"]["pps"], 1.0);
        assert_eq!(v["bytes"]["total"], 2000);
        assert_eq!(v["bytes"]["dropped"], 1000);
        let table = format_table("fw0", &r);
        assert!(
            table.contains("Protocols    tcp 4 (2 pps) udp 6 (3 pps)"),
            "{table}"
        );
        assert!(
            table.contains("Drops        blocklist 8 (4 pps)"),
            "{table}"
        );
        assert!(
            table.contains("Bytes        total 2 Kbytes, dropped 1 Kbytes"),
            "{table}"
        );
    }

    #[test]
    fn compact_numbers() {
        let cases = [
            (0.0, "0"),
            (950.0, "950"),
            (999.4, "999"),
            (999.6, "1.00k"),
            (1_234.0, "1.23k"),
            (12_345.0, "12.3k"),
            (123_456.0, "123k"),
            (999_999.0, "1.00M"),
            (1_250_000.0, "1.25M"),
            (u64::MAX as f64, "18.4E"),
            (f64::MAX, ">999E"),
            (f64::INFINITY, ">999E"),
            (f64::NAN, "?"),
            (-1.0, "?"),
        ];
        for (value, text) in cases {
            assert_eq!(compact(value), text, "{value}");
        }
    }
}
