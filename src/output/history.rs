//! `xdpctl history`'s output: the completed seconds of counters::history as a table, JSON or
//! CSV, and the UTC clock time every view of time uses.

use serde_json::{json, Value};

use crate::counters::history::{Second, DROP_REASONS};
use crate::output::numbers::thousands;

/// HH:MM:SS (UTC) of a Unix second.
pub fn clock_time(unix: i64) -> String {
    let day = unix.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", day / 3600, day / 60 % 60, day % 60)
}

/// A table: one row per second, the drop reasons that occurred as columns.
pub fn format_table(seconds: &[Second]) -> String {
    let reasons: Vec<usize> = (0..DROP_REASONS.len())
        .filter(|&r| seconds.iter().any(|s| s.drops[r] > 0))
        .collect();
    let mut out = format!(
        "{:<8} {:>12} {:>12} {:>12}",
        "UTC", "received", "passed", "dropped"
    );
    for &r in &reasons {
        out.push_str(&format!(" {:>12}", DROP_REASONS[r]));
    }
    out.push_str(&format!(" {:>12} {:>9}\n", "tx/redirect", "Mbit/s"));
    for s in seconds {
        out.push_str(&format!(
            "{:<8} {:>12} {:>12} {:>12}",
            clock_time(s.time),
            thousands(s.received),
            thousands(s.passed),
            thousands(s.dropped)
        ));
        for &r in &reasons {
            out.push_str(&format!(" {:>12}", thousands(s.drops[r])));
        }
        out.push_str(&format!(
            " {:>12} {:>9.1}\n",
            thousands(s.other),
            s.bytes as f64 * 8.0 / 1e6
        ));
    }
    out
}

/// One second as JSON: its counts, then its drops by reason (not its monotonic second).
pub fn second_to_json(second: &Second) -> Value {
    let drops: serde_json::Map<String, Value> = DROP_REASONS
        .iter()
        .zip(second.drops)
        .map(|(name, count)| (name.to_string(), json!(count)))
        .collect();
    json!({
        "time": second.time,
        "received": second.received,
        "passed": second.passed,
        "dropped": second.dropped,
        "other": second.other,
        "bytes": second.bytes,
        "drops": drops,
    })
}

/// A JSON array of the seconds.
pub fn to_json(seconds: &[Second]) -> Value {
    Value::Array(seconds.iter().map(second_to_json).collect())
}

/// CSV with a header line; drop reasons as `drops_<reason>` columns.
pub fn to_csv(seconds: &[Second]) -> String {
    let mut out = String::from("time,received,passed,dropped,other,bytes");
    for reason in DROP_REASONS {
        out.push_str(&format!(",drops_{reason}"));
    }
    out.push('\n');
    for s in seconds {
        out.push_str(&format!(
            "{},{},{},{},{},{}",
            s.time, s.received, s.passed, s.dropped, s.other, s.bytes
        ));
        for count in s.drops {
            out.push_str(&format!(",{count}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_time_is_utc() {
        assert_eq!(clock_time(1_700_000_010), "22:13:30");
    }

    #[test]
    fn formats() {
        // 10 packets received, 4 passed, 6 dropped by the blocklist, 64 bytes each.
        let s = Second {
            time: 1_700_000_010,
            received: 10,
            passed: 4,
            dropped: 6,
            bytes: 640,
            drops: [6, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        let json = to_json(std::slice::from_ref(&s));
        assert_eq!(json[0]["received"], 10);
        assert_eq!(json[0]["drops"]["blocklist"], 6);
        assert_eq!(json[0]["time"], 1_700_000_010);
        assert_eq!(
            json[0].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["time", "received", "passed", "dropped", "other", "bytes", "drops"]
        );
        let csv = to_csv(std::slice::from_ref(&s));
        let mut lines = csv.lines();
        assert!(lines
            .next()
            .unwrap()
            .starts_with("time,received,passed,dropped"));
        assert_eq!(
            lines.next().unwrap(),
            "1700000010,10,4,6,0,640,6,0,0,0,0,0,0"
        );
        let table = format_table(&[s]);
        assert!(table.contains("blocklist"), "{table}");
        assert!(!table.contains("ratelimit"), "{table}");
        assert!(table.contains("22:13:30"), "{table}");
    }
}
