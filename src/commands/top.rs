//! `xdpctl top`: the busiest sources right now, from the firewall's per-source table.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::json;

use crate::cli::TopArgs;
use crate::commands::status;
use crate::firewall::{FirewallMaps, SourceSet};
use crate::{privileges, rules};

/// One source's traffic over the interval. A blocked source stops at the blocklist before the
/// per-source table, so it shows as its block rule, whose hits count packets but not bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Talker {
    /// An address, or the prefix of a block rule.
    pub source: String,
    pub blocked: bool,
    pub pps: f64,
    pub bps: f64,
    pub packets: u64,
    pub bytes: u64,
}

pub fn run(args: &TopArgs) -> Result<ExitCode> {
    privileges::require("top")?;
    if let Some(ifname) = &args.interface {
        let rows = status::rows(Some(ifname))?;
        if !rows.iter().any(|row| row.program == "firewall") {
            bail!("{ifname} does not run the firewall: `xdpctl load {ifname}` first");
        }
    }
    let maps = FirewallMaps::open_or_create()?;
    let before = (sample(&maps)?, block_hits(&maps)?);
    let started = Instant::now();
    if !super::sleep_unless_stopped(Duration::from_secs_f64(args.interval)) {
        return Ok(ExitCode::SUCCESS);
    }
    let after = (sample(&maps)?, block_hits(&maps)?);
    let seconds = started.elapsed().as_secs_f64();
    let mut talkers = talkers(&before.0, &after.0, seconds);
    talkers.extend(blocked_talkers(&before.1, &after.1, seconds));
    let n = args.count as usize;
    let mut by_pps = talkers.clone();
    by_pps.sort_by(|a, b| b.pps.total_cmp(&a.pps).then(a.source.cmp(&b.source)));
    by_pps.truncate(n);
    // Block rules count packets only: they cannot rank by bytes.
    let mut by_bytes: Vec<Talker> = talkers.into_iter().filter(|t| !t.blocked).collect();
    by_bytes.sort_by(|a, b| b.bps.total_cmp(&a.bps).then(a.source.cmp(&b.source)));
    by_bytes.truncate(n);
    if args.json {
        let row = |t: &Talker| {
            if t.blocked {
                json!({"source": t.source, "blocked": true, "pps": t.pps, "packets": t.packets, "bps": null, "bytes": null})
            } else {
                json!({"source": t.source, "blocked": false, "pps": t.pps, "bps": t.bps, "packets": t.packets, "bytes": t.bytes})
            }
        };
        let value = json!({
            "interval": args.interval,
            "by_pps": by_pps.iter().map(row).collect::<Vec<_>>(),
            "by_bytes": by_bytes.iter().map(row).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (title, list) in [("TOP BY PACKETS", &by_pps), ("TOP BY BYTES", &by_bytes)] {
        println!("{title:<40} {:>12} {:>12}", "PPS", "MBIT/S");
        for t in list.iter() {
            let mbit = if t.blocked {
                "blocked".to_owned()
            } else {
                format!("{:.3}", t.bps / 1e6)
            };
            println!(
                "{:<40} {:>12} {:>12}",
                t.source,
                crate::stats::thousands(t.pps.round() as u64),
                mbit
            );
        }
        if list.is_empty() {
            println!("(no traffic)");
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// Packets and bytes per source, now: every used slot of the source table.
pub fn sample(maps: &FirewallMaps) -> Result<HashMap<[u8; 16], (u64, u64)>> {
    let mut out = HashMap::new();
    for (_, value) in rules::entries(&maps.sources)? {
        let mut set = SourceSet::default();
        if plain::copy_from_bytes(&mut set, &value).is_err() {
            continue;
        }
        for slot in set.way.iter().filter(|slot| slot.packets > 0) {
            out.insert(slot.addr, (slot.packets, slot.bytes));
        }
    }
    Ok(out)
}

/// Hits per block rule, now.
pub fn block_hits(maps: &FirewallMaps) -> Result<HashMap<String, u64>> {
    let now = maps.now_ns()?;
    Ok(
        rules::list_prefixes(maps, crate::firewall::List::Block, now)?
            .into_iter()
            .map(|entry| (entry.prefix.to_string(), entry.hits))
            .collect(),
    )
}

/// Block rules that dropped anything between two samples, as talkers.
pub fn blocked_talkers(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    seconds: f64,
) -> Vec<Talker> {
    after
        .iter()
        .filter_map(|(prefix, &hits)| {
            let delta = hits.saturating_sub(before.get(prefix).copied().unwrap_or(0));
            (delta > 0).then(|| Talker {
                source: prefix.clone(),
                blocked: true,
                pps: delta as f64 / seconds,
                bps: 0.0,
                packets: delta,
                bytes: 0,
            })
        })
        .collect()
}

/// Sources that sent anything between two samples, with their rates. A source new in `after`
/// counts from zero.
pub fn talkers(
    before: &HashMap<[u8; 16], (u64, u64)>,
    after: &HashMap<[u8; 16], (u64, u64)>,
    seconds: f64,
) -> Vec<Talker> {
    after
        .iter()
        .filter_map(|(key, &(packets, bytes))| {
            let (p0, b0) = before.get(key).copied().unwrap_or((0, 0));
            let (dp, db) = (packets.saturating_sub(p0), bytes.saturating_sub(b0));
            (dp > 0).then(|| Talker {
                source: display_addr(key).to_string(),
                blocked: false,
                pps: dp as f64 / seconds,
                bps: db as f64 * 8.0 / seconds,
                packets: dp,
                bytes: db,
            })
        })
        .collect()
}

/// IPv4 sources are keyed in their IPv4-mapped form; show them as IPv4.
fn display_addr(key: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*key);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talkers_are_deltas_and_mapped_addresses_show_as_ipv4() {
        let a: [u8; 16] = Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0x0a0b, 0x0102]).octets();
        let b: [u8; 16] = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let before = HashMap::from([(a, (100, 10_000))]);
        let after = HashMap::from([(a, (300, 30_000)), (b, (10, 1000))]);
        let mut t = talkers(&before, &after, 2.0);
        t.sort_by(|x, y| y.pps.total_cmp(&x.pps));
        assert_eq!(t[0].source, "10.11.1.2");
        assert_eq!((t[0].pps, t[0].bps), (100.0, 80_000.0));
        assert_eq!(t[1].source, "2001:db8::1");
        assert_eq!(t[1].packets, 10);
        // Quiet sources are left out.
        assert!(talkers(&after, &after, 1.0).is_empty());
    }

    #[test]
    fn blocked_sources_show_as_their_rule_with_packet_rates() {
        let before = HashMap::from([("10.0.0.1/32".to_owned(), 100)]);
        let after = HashMap::from([
            ("10.0.0.1/32".to_owned(), 2100),
            ("10.9.0.0/16".to_owned(), 0),
        ]);
        let t = blocked_talkers(&before, &after, 2.0);
        assert_eq!(t.len(), 1);
        assert!(t[0].blocked);
        assert_eq!(
            (t[0].source.as_str(), t[0].pps, t[0].packets),
            ("10.0.0.1/32", 1000.0, 2000)
        );
    }
}
