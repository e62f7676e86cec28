//! Packets per destination port, which the firewall counts per CPU for every TCP/UDP packet it
//! parses a port from (whatever its verdict): reading, ranking and printing them.

use anyhow::{bail, Result};
use libbpf_rs::{MapCore, MapHandle, MapType};
use serde_json::{json, Value};

use crate::counters::stats::thousands;
use crate::input::PortProto;
use crate::sys::map_io;

pub const PORT_MAP_NAME: &str = "port_packets";

/// Slots: FW_PORT_TCP/UDP * 65536 + port.
/// FW_PORT_SLOTS (bindgen cannot evaluate a macro over an enum value).
const SLOTS: u32 = crate::abi::FW_PORT_PROTO_MAX * 65536;

pub fn is_port_map(map: &MapHandle) -> bool {
    map.name() == PORT_MAP_NAME
        && map.map_type() == MapType::PercpuArray
        && map.value_size() == 8
        && map.max_entries() == SLOTS
}

/// One destination port's packets, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortCount {
    pub proto: PortProto,
    pub port: u16,
    pub packets: u64,
}

/// Every port with packets, from the map.
pub fn read(map: &MapHandle) -> Result<Vec<PortCount>> {
    if !is_port_map(map) {
        bail!(
            "map {} is not a port histogram this xdpctl can read (made by another version?)",
            map.name().to_string_lossy()
        );
    }
    let mut counts = Vec::new();
    map_io::for_each_entry(map, |key, value| {
        let slot = u32::from_ne_bytes(key[..4].try_into().unwrap());
        // Each CPU's u64 in turn.
        let packets = value
            .chunks_exact(8)
            .map(|cpu| u64::from_ne_bytes(cpu.try_into().unwrap()))
            .sum();
        if packets > 0 {
            counts.push(PortCount {
                proto: if slot >> 16 == 0 {
                    PortProto::Tcp
                } else {
                    PortProto::Udp
                },
                port: slot as u16,
                packets,
            });
        }
    })?;
    Ok(counts)
}

/// The ports shown, and the packets of every port they were picked from (the share's base).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranking {
    pub ports: Vec<PortCount>,
    pub total: u64,
}

/// The busiest `top` ports (of one protocol, if given), busiest first, ties by port.
pub fn rank(mut counts: Vec<PortCount>, proto: Option<PortProto>, top: usize) -> Ranking {
    counts.retain(|c| proto.is_none_or(|p| c.proto == p));
    let total = counts.iter().map(|c| c.packets).sum();
    counts.sort_by(|a, b| {
        b.packets
            .cmp(&a.packets)
            .then(a.port.cmp(&b.port))
            .then(a.proto.cmp(&b.proto))
    });
    counts.truncate(top);
    Ranking {
        ports: counts,
        total,
    }
}

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

    fn count(proto: PortProto, port: u16, packets: u64) -> PortCount {
        PortCount {
            proto,
            port,
            packets,
        }
    }

    #[test]
    fn ranks_by_packets_then_port() {
        let counts = vec![
            count(PortProto::Udp, 53, 10),
            count(PortProto::Tcp, 22, 30),
            count(PortProto::Udp, 9, 30),
            count(PortProto::Tcp, 443, 1),
        ];
        let all = rank(counts.clone(), None, 10);
        let order: Vec<u16> = all.ports.iter().map(|c| c.port).collect();
        assert_eq!(order, [9, 22, 53, 443]);
        assert_eq!(all.total, 71);
        let udp = rank(counts.clone(), Some(PortProto::Udp), 1);
        assert_eq!(udp.ports, vec![count(PortProto::Udp, 9, 30)]);
        assert_eq!(udp.total, 40);
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
