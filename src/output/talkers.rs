//! `xdpctl top`'s output: the busiest sources by packets and by bytes, as tables or JSON.

use serde_json::{json, Value};

use crate::firewall::talkers::{Ranking, Talker};
use crate::output::numbers::thousands;

/// One source; a blocked one has no byte counts (its rule counts packets only).
fn talker_json(t: &Talker) -> Value {
    if t.blocked {
        json!({"source": t.source, "blocked": true, "pps": t.pps, "packets": t.packets, "bps": null, "bytes": null})
    } else {
        json!({"source": t.source, "blocked": false, "pps": t.pps, "bps": t.bps, "packets": t.packets, "bytes": t.bytes})
    }
}

/// `{"interval", "by_pps": [...], "by_bytes": [...]}`, the interval in seconds.
pub fn to_json(interval: f64, ranking: &Ranking) -> Value {
    json!({
        "interval": interval,
        "by_pps": ranking.by_pps.iter().map(talker_json).collect::<Vec<_>>(),
        "by_bytes": ranking.by_bytes.iter().map(talker_json).collect::<Vec<_>>(),
    })
}

/// Two tables, by packets then by bytes, each followed by an empty line.
pub fn format_table(ranking: &Ranking) -> String {
    let mut out = String::new();
    for (title, list) in [
        ("TOP BY PACKETS", &ranking.by_pps),
        ("TOP BY BYTES", &ranking.by_bytes),
    ] {
        out.push_str(&format!("{title:<40} {:>12} {:>12}\n", "PPS", "MBIT/S"));
        for t in list.iter() {
            let mbit = if t.blocked {
                "blocked".to_owned()
            } else {
                format!("{:.3}", t.bps / 1e6)
            };
            out.push_str(&format!(
                "{:<40} {:>12} {:>12}\n",
                t.source,
                thousands(t.pps.round() as u64),
                mbit
            ));
        }
        if list.is_empty() {
            out.push_str("(no traffic)\n");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talker(source: &str, blocked: bool, pps: f64, bps: f64) -> Talker {
        Talker {
            source: source.into(),
            blocked,
            pps,
            bps,
            packets: pps as u64 * 2,
            bytes: bps as u64 / 4,
        }
    }

    fn ranking() -> Ranking {
        let open = talker("192.0.2.7", false, 12345.6, 98_765_432.0);
        Ranking {
            by_pps: vec![talker("203.0.113.0/24", true, 200000.0, 0.0), open.clone()],
            by_bytes: vec![open],
        }
    }

    #[test]
    fn tables_by_packets_and_by_bytes() {
        let expected = [
            "TOP BY PACKETS                                    PPS       MBIT/S",
            "203.0.113.0/24                                200,000      blocked",
            "192.0.2.7                                      12,346       98.765",
            "",
            "TOP BY BYTES                                      PPS       MBIT/S",
            "192.0.2.7                                      12,346       98.765",
            "",
            "",
        ]
        .join("\n");
        assert_eq!(format_table(&ranking()), expected);
    }

    #[test]
    fn no_traffic_is_said() {
        let empty = Ranking {
            by_pps: vec![],
            by_bytes: vec![],
        };
        assert_eq!(
            format_table(&empty),
            format!(
                "{:<40} {:>12} {:>12}\n(no traffic)\n\n{:<40} {:>12} {:>12}\n(no traffic)\n\n",
                "TOP BY PACKETS", "PPS", "MBIT/S", "TOP BY BYTES", "PPS", "MBIT/S"
            )
        );
    }

    #[test]
    fn blocked_sources_have_no_bytes() {
        assert_eq!(
            to_json(1.5, &ranking()).to_string(),
            concat!(
                r#"{"interval":1.5,"by_pps":["#,
                r#"{"source":"203.0.113.0/24","blocked":true,"pps":200000.0,"packets":400000,"bps":null,"bytes":null},"#,
                r#"{"source":"192.0.2.7","blocked":false,"pps":12345.6,"bps":98765432.0,"packets":24690,"bytes":24691358}],"#,
                r#""by_bytes":[{"source":"192.0.2.7","blocked":false,"pps":12345.6,"bps":98765432.0,"packets":24690,"bytes":24691358}]}"#
            )
        );
    }
}
