//! `xdpctl top`'s heavy prefixes: the source prefixes closest to their prefix limits.

use serde_json::{json, Value};

use crate::firewall::prefix_limits::HeavyPrefix;
use crate::output::numbers::thousands;

/// `[{"prefix", "packets", "pps", "per_cpu_window"}]`, heaviest first.
pub fn to_json(heavy: &[HeavyPrefix]) -> Value {
    heavy
        .iter()
        .map(|h| {
            json!({
                "prefix": h.prefix.to_string(),
                "packets": h.packets,
                "pps": h.pps.round(),
                "per_cpu_window": h.threshold,
            })
        })
        .collect()
}

/// A table of the heavy prefixes; a line saying there are none.
pub fn format_table(heavy: &[HeavyPrefix], count: usize) -> String {
    if heavy.is_empty() {
        return "No prefix is near its prefix limit.\n".into();
    }
    let mut out = format!(
        "{:<43} {:>14} {:>12} {:>16}\n",
        "HEAVY PREFIX", "PPS", "PACKETS", "LIMIT/CPU/WINDOW"
    );
    for h in heavy.iter().take(count) {
        out.push_str(&format!(
            "{:<43} {:>14} {:>12} {:>16}\n",
            h.prefix.to_string(),
            thousands(h.pps.round() as u64),
            thousands(h.packets),
            thousands(u64::from(h.threshold))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_prefixes_show_rate_count_and_limit() {
        let heavy = [HeavyPrefix {
            prefix: "100.64.0.0/16".parse().unwrap(),
            level: 1,
            packets: 9000,
            pps: 33_554.4,
            threshold: 8590,
        }];
        let table = format_table(&heavy, 10);
        assert!(table.starts_with("HEAVY PREFIX"), "{table}");
        assert!(
            table.contains("100.64.0.0/16") && table.contains("33,554"),
            "{table}"
        );
        assert_eq!(to_json(&heavy)[0]["pps"], 33_554.0);
        assert_eq!(
            format_table(&[], 10),
            "No prefix is near its prefix limit.\n"
        );
    }
}
