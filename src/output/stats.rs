//! `xdpctl stats`'s output: the xdp-tutorial's text table and NDJSON, of a counters::stats
//! Report.

use serde_json::{json, Map, Value};

use crate::counters::stats::{Report, ACTIONS};
use crate::firewall::{DROP_REASONS, PROTOCOLS};
use crate::output::numbers::thousands;

/// An action's short name: XDP_PASS -> pass (metric labels, the dashboard).
pub fn action_label(action: &str) -> String {
    action.trim_start_matches("XDP_").to_ascii_lowercase()
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
    use crate::counters::stats::tests::sample;
    use crate::counters::stats::{report, Counter, FwCounters};
    use std::time::{Duration, Instant};

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
            drop_packets: [8, 0, 2, 0, 0],
            drop_bytes: [800, 0, 200, 0, 0],
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
}
