//! `xdpctl ports`'s output: a counters::ports ranking as a table or JSON.

use serde_json::{json, Value};

use crate::counters::ports::{PortCount, Ranking};
use crate::output::numbers::thousands;

/// A table with each port's share of all the packets ranked (not only of those shown).
pub fn format_table(ranking: &Ranking) -> String {
    let (counts, total) = (&ranking.ports, ranking.total);
    let mut out = format!(
        "{:>5} {:<5} {:>14} {:>7}\n",
        "PORT", "PROTO", "PACKETS", "SHARE"
    );
    for c in counts {
        out.push_str(&format!(
            "{:>5} {:<5} {:>14} {:>6.1}%\n",
            c.port,
            c.proto.as_str(),
            thousands(c.packets),
            c.packets as f64 * 100.0 / total.max(1) as f64
        ));
    }
    out
}

pub fn to_json(counts: &[PortCount]) -> Value {
    Value::Array(
        counts
            .iter()
            .map(|c| json!({"port": c.port, "proto": c.proto.as_str(), "packets": c.packets}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::ports::rank;
    use crate::counters::ports::tests::count;
    use crate::input::PortProto;

    #[test]
    fn shares_are_of_every_port_ranked() {
        let counts = vec![
            count(PortProto::Udp, 53, 10),
            count(PortProto::Tcp, 22, 30),
            count(PortProto::Udp, 9, 30),
            count(PortProto::Tcp, 443, 1),
        ];
        let table = format_table(&rank(counts.clone(), Some(PortProto::Tcp), 10));
        assert!(table.contains("   22 tcp"), "{table}");
        assert!(table.contains("96.8%"), "{table}");
        // The share is of every port ranked, not of the ones shown.
        let table = format_table(&rank(counts, Some(PortProto::Udp), 1));
        assert!(table.contains("75.0%"), "{table}");
    }

    #[test]
    fn json_names_the_protocol() {
        let json = to_json(&[count(PortProto::Udp, 53, 7)]);
        assert_eq!(json, json!([{"port": 53, "proto": "udp", "packets": 7}]));
    }
}
