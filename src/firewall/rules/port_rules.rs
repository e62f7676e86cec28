//! Port rules: the firewall's `ports` array, one slot per protocol and destination port.

use std::collections::HashSet;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use crate::firewall::hit_cache::PendingHits;
use crate::firewall::{FirewallMaps, PortRule};
use crate::input::{PortProto, PortSpec};
use crate::sys::map_io::entries;

/// The index of a port rule in the `ports` array (proto * 65536 + port).
fn port_slot(spec: PortSpec) -> u32 {
    let proto = match spec.proto {
        PortProto::Tcp => crate::abi::FW_PROTO_TCP,
        PortProto::Udp => crate::abi::FW_PROTO_UDP,
    };
    proto * 65536 + spec.port as u32
}

fn port_of_slot(slot: u32) -> PortSpec {
    PortSpec {
        port: (slot % 65536) as u16,
        proto: if slot / 65536 == crate::abi::FW_PROTO_TCP {
            PortProto::Tcp
        } else {
            PortProto::Udp
        },
    }
}

/// Turns port rules on (keeping hit counts of rules already on) or off. Turning off a rule that
/// is not on fails, and then nothing changes.
pub fn set_ports(maps: &FirewallMaps, specs: &[PortSpec], enabled: bool) -> Result<()> {
    let _lock = maps.lock()?;
    let mut current = Vec::new();
    for spec in specs {
        let value = maps
            .ports
            .lookup(&port_slot(*spec).to_ne_bytes(), MapFlags::ANY)?
            .context("reading the ports map")?;
        let mut rule = PortRule::default();
        let _ = plain::copy_from_bytes(&mut rule, &value);
        current.push(rule);
    }
    if !enabled {
        let off: Vec<String> = specs
            .iter()
            .zip(&current)
            .filter(|(_, rule)| rule.enabled == 0)
            .map(|(spec, _)| spec.to_string())
            .collect();
        if !off.is_empty() {
            bail!("not blocked: port {}; nothing was removed", off.join(", "));
        }
    }
    for (spec, rule) in specs.iter().zip(current) {
        // A rule turned on anew starts at 0 hits, in a new generation: hits cached for it
        // before it was off are not the new rule's.
        let keep = enabled && rule.enabled != 0;
        let rule = PortRule {
            hits: if keep { rule.hits } else { 0 },
            enabled: enabled as u32,
            generation: if enabled && !keep {
                rule.generation.wrapping_add(1)
            } else {
                rule.generation
            },
            _pad: 0,
        };
        // SAFETY: PortRule is plain old data.
        let bytes = unsafe { plain::as_bytes(&rule) };
        maps.ports
            .update(&port_slot(*spec).to_ne_bytes(), bytes, MapFlags::ANY)
            .context("writing the ports map")?;
    }
    Ok(())
}

/// Every port rule that is on, with its hits.
pub fn list_ports(maps: &FirewallMaps) -> Result<Vec<(PortSpec, u64)>> {
    let pending = PendingHits::read(maps)?;
    let mut out = Vec::new();
    for (key, value) in entries(&maps.ports)? {
        let mut rule = PortRule::default();
        let _ = plain::copy_from_bytes(&mut rule, &value);
        if rule.enabled != 0 {
            let slot = u32::from_ne_bytes(key[..4].try_into().unwrap());
            let hits = rule.hits + pending.port(slot, rule.generation);
            out.push((port_of_slot(slot), hits));
        }
    }
    out.sort();
    Ok(out)
}

/// The ports among `specs` that are not blocked.
pub fn ports_not_blocked(maps: &FirewallMaps, specs: &[PortSpec]) -> Result<Vec<PortSpec>> {
    let on: HashSet<PortSpec> = list_ports(maps)?
        .into_iter()
        .map(|(spec, _)| spec)
        .collect();
    Ok(specs.iter().filter(|s| !on.contains(s)).copied().collect())
}

/// Turns every port rule off. Returns how many were on.
pub fn clear_ports(maps: &FirewallMaps) -> Result<usize> {
    let on: Vec<PortSpec> = list_ports(maps)?
        .into_iter()
        .map(|(spec, _)| spec)
        .collect();
    set_ports(maps, &on, false)?;
    Ok(on.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_slots_round_trip() {
        for text in ["0/tcp", "22/tcp", "53/udp", "65535/udp"] {
            let spec = crate::input::parse_port(text).unwrap();
            assert_eq!(port_of_slot(port_slot(spec)), spec, "{text}");
        }
        assert_eq!(port_slot(crate::input::parse_port("22/tcp").unwrap()), 22);
        assert_eq!(
            port_slot(crate::input::parse_port("53/udp").unwrap()),
            65536 + 53
        );
    }
}
