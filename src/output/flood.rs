//! `xdpctl flood`'s report: what was sent, as a sentence or one line of JSON.

use serde_json::{json, Value};

use crate::lab::flood::{Plan, Report};
use crate::output::numbers::thousands;

/// `{"interface", "packets", "bytes", "refused", "seconds", "pps", "proto", "size", "src",
/// "dst"}`.
pub fn to_json(plan: &Plan, report: &Report) -> Value {
    json!({
        "interface": plan.ifname,
        "packets": report.packets,
        "bytes": report.bytes,
        "refused": report.refused,
        "seconds": report.seconds,
        "pps": report.pps(),
        "proto": format!("{:?}", plan.proto).to_lowercase(),
        "size": plan.size,
        "src": plan.source.to_string(),
        "dst": plan.destination.to_string(),
    })
}

/// "Sent N packets ..." and, when the veth refused frames, a line that says why it may have.
pub fn format_report(plan: &Plan, report: &Report) -> String {
    let random = plan.source.prefix_len() < plan.source.max_prefix_len();
    let mac: Vec<String> = plan
        .destination_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = format!(
        "Sent {} packets ({} bytes) in {:.2} s: {} pps, {} {}-byte frames from {}{} to {} ({}) \
         on {}\n",
        thousands(report.packets),
        thousands(report.bytes),
        report.seconds,
        thousands(report.pps().round() as u64),
        format!("{:?}", plan.proto).to_uppercase(),
        plan.size,
        plan.source,
        if random { " (random sources)" } else { "" },
        plan.destination,
        mac.join(":"),
        plan.ifname
    );
    if report.refused > 0 {
        out.push_str(&format!(
            "The veth refused {} more frames: its peer's XDP ring (256 frames) was full, or the \
             peer stopped taking XDP frames.\n",
            thousands(report.refused)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lab::flood::{FloodProto, Until};

    fn plan(source: &str) -> Plan {
        Plan {
            ifname: "veth0".into(),
            ifindex: 2,
            proto: FloodProto::Syn,
            source: source.parse().unwrap(),
            destination: "10.11.3.1".parse().unwrap(),
            source_mac: [2, 0x58, 0x44, 0x50, 3, 2],
            destination_mac: [2, 0x58, 0x44, 0x50, 3, 1],
            size: 64,
            pps: Some(100_000),
            until: Until::Duration(Duration::from_secs(5)),
        }
    }

    const REPORT: Report = Report {
        packets: 500_000,
        bytes: 32_000_000,
        refused: 0,
        seconds: 5.004,
    };

    #[test]
    fn one_source() {
        assert_eq!(
            format_report(&plan("10.11.3.2/32"), &REPORT),
            "Sent 500,000 packets (32,000,000 bytes) in 5.00 s: 99,920 pps, SYN 64-byte frames \
             from 10.11.3.2/32 to 10.11.3.1 (02:58:44:50:03:01) on veth0\n"
        );
    }

    #[test]
    fn random_sources_and_refused_frames() {
        let report = Report {
            refused: 1234,
            ..REPORT
        };
        assert_eq!(
            format_report(&plan("198.51.100.0/24"), &report),
            "Sent 500,000 packets (32,000,000 bytes) in 5.00 s: 99,920 pps, SYN 64-byte frames \
             from 198.51.100.0/24 (random sources) to 10.11.3.1 (02:58:44:50:03:01) on veth0\n\
             The veth refused 1,234 more frames: its peer's XDP ring (256 frames) was full, or \
             the peer stopped taking XDP frames.\n"
        );
    }

    #[test]
    fn json_is_one_object() {
        let report = Report {
            seconds: 5.0,
            ..REPORT
        };
        assert_eq!(
            to_json(&plan("10.11.3.2/32"), &report).to_string(),
            r#"{"interface":"veth0","packets":500000,"bytes":32000000,"refused":0,"seconds":5.0,"pps":100000.0,"proto":"syn","size":64,"src":"10.11.3.2/32","dst":"10.11.3.1"}"#
        );
    }
}
