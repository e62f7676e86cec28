//! Top talkers: the busiest sources between two samples of the firewall's per-source table.
//! A blocked source stops at the blocklist, before that table, so it shows as its block rule,
//! whose hits count packets but not bytes. Used by `top`, `watch` and the demo.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::firewall::rules::{self, PrefixEntry};
use crate::firewall::{FirewallMaps, List, SourceSet};
use crate::sys::map_io;

/// One CPU's leases that hold anything (struct fw_leases), by index: packets they passed are
/// in the source table's counts only once they go back to it.
pub fn cpu_leases(
    maps: &FirewallMaps,
    cpu: usize,
) -> Result<HashMap<usize, crate::firewall::model::leases::Lease>> {
    let values = map_io::per_cpu_values(&maps.source_leases, 0, "source_leases")?;
    let bytes = values.get(cpu).context("no such CPU")?;
    let mut out = HashMap::new();
    for (at, raw) in bytes
        .chunks_exact(std::mem::size_of::<crate::firewall::Lease>())
        .enumerate()
    {
        let lease: &crate::firewall::Lease =
            plain::from_bytes(raw).map_err(|_| anyhow::anyhow!("a lease's size"))?;
        let mut addr = [0u8; 16];
        addr[..8].copy_from_slice(&lease.addr[0].to_ne_bytes());
        addr[8..].copy_from_slice(&lease.addr[1].to_ne_bytes());
        let lease = crate::firewall::model::leases::Lease {
            addr,
            granted_ns: lease.granted_ns,
            left: lease.left,
            packets: lease.packets,
            bytes: lease.bytes,
            set: lease.set,
            way: lease.way,
            is_v6: lease.is_v6 != 0,
        };
        if lease != Default::default() {
            out.insert(at, lease);
        }
    }
    Ok(out)
}

/// One source's traffic between two samples.
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

/// The per-source and per-block-rule counters at one moment.
#[derive(Clone, Debug)]
pub struct SourceSample {
    /// Packets and bytes per source (IPv4 in its IPv4-mapped form).
    pub sources: HashMap<[u8; 16], (u64, u64)>,
    /// Hits per block rule, by prefix.
    pub block_hits: HashMap<String, u64>,
    pub at: Instant,
}

impl SourceSample {
    /// Reads the source table and the block rules' hits.
    pub fn take(maps: &FirewallMaps) -> Result<SourceSample> {
        let block = rules::read_prefixes(maps, List::Block, maps.now_ns()?)?;
        SourceSample::take_with_block_rules(maps, &block)
    }

    /// Reads the source table, with block rules the caller has just listed (so a caller that
    /// needs the list anyway reads the rule maps once).
    pub fn take_with_block_rules(
        maps: &FirewallMaps,
        block: &[PrefixEntry],
    ) -> Result<SourceSample> {
        Ok(SourceSample {
            sources: source_counts(maps)?,
            block_hits: block
                .iter()
                .map(|entry| (entry.prefix.to_string(), entry.hits))
                .collect(),
            at: Instant::now(),
        })
    }
}

/// The busiest talkers between two samples: by packets (block rules included), and by bytes
/// (block rules count packets only, so they cannot rank there).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranking {
    pub by_pps: Vec<Talker>,
    pub by_bytes: Vec<Talker>,
}

/// Ranks the talkers between two samples, keeping the `count` busiest of each list.
pub fn rank(before: &SourceSample, after: &SourceSample, count: usize) -> Ranking {
    let all = talkers_between(before, after);
    let mut by_bytes: Vec<Talker> = all.iter().filter(|t| !t.blocked).cloned().collect();
    by_bytes.sort_by(|a, b| b.bps.total_cmp(&a.bps).then(a.source.cmp(&b.source)));
    by_bytes.truncate(count);
    let mut by_pps = all;
    by_pps.truncate(count);
    Ranking { by_pps, by_bytes }
}

/// Every source and block rule that saw traffic between two samples, busiest (in packets per
/// second) first; ties by name, so the order is stable.
pub fn talkers_between(before: &SourceSample, after: &SourceSample) -> Vec<Talker> {
    let seconds = after.at.saturating_duration_since(before.at).as_secs_f64();
    talkers_over(before, after, seconds)
}

/// As `talkers_between`, with rates over `seconds` instead of the span between the samples (for
/// a caller that knows when the traffic really flowed).
pub fn talkers_over(before: &SourceSample, after: &SourceSample, seconds: f64) -> Vec<Talker> {
    let mut all = talkers(&before.sources, &after.sources, seconds);
    all.extend(blocked_talkers(
        &before.block_hits,
        &after.block_hits,
        seconds,
    ));
    all.sort_by(|a, b| b.pps.total_cmp(&a.pps).then(a.source.cmp(&b.source)));
    all
}

/// Packets and bytes per source, now: every used slot of the source table.
fn source_counts(maps: &FirewallMaps) -> Result<HashMap<[u8; 16], (u64, u64)>> {
    let mut out = HashMap::new();
    // Visited in place: the table is 12 MB at its default size, and watch reads it each interval.
    map_io::for_each_entry(&maps.sources, |_, value| {
        let mut set = SourceSet::default();
        if plain::copy_from_bytes(&mut set, value).is_err() {
            return;
        }
        for slot in set.way.iter().filter(|slot| slot.packets > 0) {
            out.insert(slot.addr, (slot.packets, slot.bytes));
        }
    })?;
    Ok(out)
}

/// A count over a period as a rate; 0 for an empty period rather than infinity.
fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Block rules that dropped anything between two samples, as talkers.
fn blocked_talkers(
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
                pps: per_second(delta, seconds),
                bps: 0.0,
                packets: delta,
                bytes: 0,
            })
        })
        .collect()
}

/// Sources that sent anything between two samples, with their rates. A source new in `after`
/// counts from zero.
fn talkers(
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
                pps: per_second(dp, seconds),
                bps: per_second(db, seconds) * 8.0,
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
    use std::time::Duration;

    fn mapped(a: u16, b: u16) -> [u8; 16] {
        Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, a, b]).octets()
    }

    fn sample(
        at: Instant,
        sources: &[([u8; 16], (u64, u64))],
        block_hits: &[(&str, u64)],
    ) -> SourceSample {
        SourceSample {
            sources: sources.iter().copied().collect(),
            block_hits: block_hits
                .iter()
                .map(|(prefix, hits)| (prefix.to_string(), *hits))
                .collect(),
            at,
        }
    }

    #[test]
    fn talkers_are_deltas_and_mapped_addresses_show_as_ipv4() {
        let a = mapped(0x0a0b, 0x0102);
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

    #[test]
    fn ranks_by_packets_with_block_rules_and_by_bytes_without() {
        let t0 = Instant::now();
        let (small, big) = (mapped(0x0a00, 1), mapped(0x0a00, 2));
        let before = sample(t0, &[(small, (0, 0))], &[("10.0.0.9/32", 50)]);
        let after = sample(
            t0 + Duration::from_secs(2),
            // small: few large packets; big: many small ones.
            &[(small, (20, 30_000)), (big, (400, 24_000))],
            &[("10.0.0.9/32", 2050)],
        );
        let ranking = rank(&before, &after, 2);
        let names = |list: &[Talker]| list.iter().map(|t| t.source.clone()).collect::<Vec<_>>();
        assert_eq!(names(&ranking.by_pps), ["10.0.0.9/32", "10.0.0.2"]);
        assert_eq!(ranking.by_pps[0].pps, 1000.0);
        assert_eq!(names(&ranking.by_bytes), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ranking.by_bytes[0].bps, 120_000.0);
        // All of them, unranked by count.
        assert_eq!(talkers_between(&before, &after).len(), 3);
    }

    #[test]
    fn an_empty_period_gives_zero_rates_not_infinity() {
        let t0 = Instant::now();
        let source = mapped(0x0a00, 1);
        let before = sample(t0, &[], &[]);
        let after = sample(t0, &[(source, (5, 500))], &[]);
        let all = talkers_between(&before, &after);
        assert_eq!((all[0].packets, all[0].pps), (5, 0.0));
    }
}
