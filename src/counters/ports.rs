//! Packets per destination port, which the firewall counts per CPU for every TCP/UDP packet it
//! parses a port from (whatever its verdict): reading and ranking them (output/ports.rs prints
//! them).

use anyhow::{bail, Result};
use libbpf_rs::{MapCore, MapHandle, MapType};

use crate::input::PortProto;
use crate::sys::map_io;

pub const PORT_MAP_NAME: &str = "port_packets";

/// Slots: FW_PROTO_TCP/UDP * 65536 + port.
const SLOTS: u32 = crate::abi::FW_PORT_SLOTS;

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Also the renderers' tests' (src/output).
    pub(crate) fn count(proto: PortProto, port: u16, packets: u64) -> PortCount {
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
        let udp = rank(counts, Some(PortProto::Udp), 1);
        assert_eq!(udp.ports, vec![count(PortProto::Udp, 9, 30)]);
        assert_eq!(udp.total, 40);
    }
}
