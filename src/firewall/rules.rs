//! Rules: applying what users typed (parsed in src/input.rs) to the firewall's maps. Every
//! edit is checked in full before anything is written, and rolled back if the kernel refuses
//! part of it, so a command applies all of its rules or none. Port rules are in
//! src/rules/port_rules.rs.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::firewall::exact;
use crate::firewall::hit_cache::PendingHits;
use crate::firewall::{self, FirewallMaps, List, Rule};
use crate::input::{self, Gathered};
use crate::sys::map_io;

/// What a full rule map's error tells the user to do.
const WHEN_FULL: &str = "load the firewall with a larger --max-rules";

mod port_rules;
pub use port_rules::{clear_ports, list_ports, ports_not_blocked, set_ports};

// --- Limits --------------------------------------------------------------------------------

/// The most entries one command may carry: every map of a list full (addresses, IPv4 ranges,
/// IPv6 ranges: --max-rules each), at the size of this instance's maps, or the size they will
/// be made. It bounds what a rule file may make xdpctl hold in memory.
pub fn entry_limit() -> usize {
    let trie = firewall::rules_dir().join(firewall::TRIE_MAPS[2]);
    let pinned = trie
        .exists()
        .then(|| MapHandle::from_pinned_path(&trie).ok())
        .flatten();
    let per_kind = pinned.map_or(crate::abi::FW_DEFAULT_MAX_RULES, |map| map.max_entries());
    3 * per_kind as usize
}

// --- Map keys ----------------------------------------------------------------------------

/// Which of a list's maps holds a prefix: exact addresses go to the list's exact table
/// (src/firewall/exact.rs), ranges to the trie of their family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Target {
    ipv6: bool,
    exact: bool,
}

fn target_of(prefix: &IpNet) -> Target {
    Target {
        ipv6: matches!(prefix, IpNet::V6(_)),
        exact: prefix.prefix_len() == prefix.max_prefix_len(),
    }
}

/// The trie key of a range (see the key structs in include/xdpctl.h).
fn key_of(prefix: &IpNet) -> Vec<u8> {
    let mut key = (prefix.prefix_len() as u32).to_ne_bytes().to_vec();
    match prefix.addr() {
        IpAddr::V4(a) => key.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => key.extend_from_slice(&a.octets()),
    }
    key
}

fn prefix_of(ipv6: bool, key: &[u8]) -> Option<IpNet> {
    let len = u32::from_ne_bytes(key.get(..4)?.try_into().ok()?) as u8;
    let addr = &key[4..];
    Some(if ipv6 {
        let octets: [u8; 16] = addr.try_into().ok()?;
        IpNet::V6(Ipv6Net::new(octets.into(), len).ok()?)
    } else {
        let octets: [u8; 4] = addr.try_into().ok()?;
        IpNet::V4(Ipv4Net::new(octets.into(), len).ok()?)
    })
}

fn rule_of(bytes: &[u8]) -> Rule {
    let mut rule = Rule::default();
    let _ = plain::copy_from_bytes(&mut rule, bytes);
    rule
}

fn rule_bytes(rule: &Rule) -> Vec<u8> {
    // SAFETY: Rule is plain old data.
    unsafe { plain::as_bytes(rule) }.to_vec()
}

// --- Prefix rules --------------------------------------------------------------------------

/// What an add did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddReport {
    pub added: usize,
    pub updated: usize,
}

/// The additions for one range trie: keys flat (`key_size` bytes each), sorted and distinct,
/// with the prefix length of each.
struct Plan {
    /// Which family's trie (of the list being edited).
    ipv6: bool,
    key_size: usize,
    keys: Vec<u8>,
    prefixlens: Vec<u32>,
    /// Entries already in the map that this add overwrites (key -> old value), for hit counts
    /// and for rollback.
    existing: HashMap<Vec<u8>, Vec<u8>>,
}

impl Plan {
    fn key(&self, i: usize) -> &[u8] {
        &self.keys[i * self.key_size..(i + 1) * self.key_size]
    }

    fn len(&self) -> usize {
        self.prefixlens.len()
    }
}

/// Groups ranges by the trie they go to, as flat sorted distinct keys: no allocation per entry.
fn plan_ranges(ranges: &[IpNet]) -> Vec<Plan> {
    let mut by_family: HashMap<bool, Vec<([u8; 20], u32)>> = HashMap::new();
    for prefix in ranges {
        let key = key_of(prefix);
        let mut fixed = [0u8; 20];
        fixed[..key.len()].copy_from_slice(&key);
        by_family
            .entry(target_of(prefix).ipv6)
            .or_default()
            .push((fixed, prefix.prefix_len() as u32));
    }
    by_family
        .into_iter()
        .map(|(ipv6, mut entries)| {
            entries.sort_unstable();
            entries.dedup_by(|a, b| a.0 == b.0);
            let key_size = if ipv6 { 20 } else { 8 };
            let mut keys = Vec::with_capacity(entries.len() * key_size);
            let mut prefixlens = Vec::with_capacity(entries.len());
            for (key, len) in &entries {
                keys.extend_from_slice(&key[..key_size]);
                prefixlens.push(*len);
            }
            Plan {
                ipv6,
                key_size,
                keys,
                prefixlens,
                existing: HashMap::new(),
            }
        })
        .collect()
}

/// The room a list's maps have for `new` more entries of one kind, or the error that refuses the
/// whole command. A list holds up to --max-rules of each kind (the size of its tries).
fn check_room(list: List, used: usize, new: usize, max: usize) -> Result<()> {
    if used + new <= max {
        return Ok(());
    }
    let room = max.saturating_sub(used);
    bail!(
        "the {} has room for {room} more entr{} of this kind ({used} of {max} used) but this \
         command adds {new}; nothing was applied. Load the firewall with a larger --max-rules",
        list_name(list),
        if room == 1 { "y" } else { "ies" },
    )
}

/// Undoes the trie writes of plans: new keys go, old values come back.
fn undo_plans(maps: &FirewallMaps, list: List, plans: &[Plan]) {
    for plan in plans {
        let map = maps.trie(list, plan.ipv6);
        let new: Vec<Vec<u8>> = (0..plan.len())
            .map(|i| plan.key(i))
            .filter(|k| !plan.existing.contains_key(*k))
            .map(<[u8]>::to_vec)
            .collect();
        let _ = map_io::delete_many(map, &new);
        let old: Vec<(Vec<u8>, Vec<u8>)> = plan
            .existing
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let _ = map_io::update_many(map, &old, WHEN_FULL);
    }
}

/// Adds (or refreshes) prefixes on a list. `expires_ns` is on the firewall's clock, 0 for
/// never. All or nothing: a list that would overflow its maps is refused before anything is
/// written, and a failure part-way is rolled back.
pub fn add_prefixes(
    maps: &FirewallMaps,
    list: List,
    prefixes: &[IpNet],
    expires_ns: u64,
    reason: u32,
) -> Result<AddReport> {
    let _lock = maps.lock()?;
    // Exact addresses become table keys, without a copy of the prefixes between (a bulk load
    // is nearly all of them).
    let ranges: Vec<IpNet> = prefixes
        .iter()
        .filter(|prefix| !target_of(prefix).exact)
        .copied()
        .collect();
    let max = maps.trie(list, false).max_entries() as usize;
    let mut report = AddReport::default();

    // Check every map first, so a full one refuses the whole command.
    let mut keys: Vec<exact::Key> = prefixes
        .iter()
        .filter(|prefix| target_of(prefix).exact)
        .map(|prefix| exact::Key::of(prefix.addr()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let table = if keys.is_empty() {
        None
    } else {
        let table = maps.exact_table(list)?;
        let used = table.len();
        // A bulk load into an empty table (the common large case) needs no lookups first.
        let present = if used == 0 {
            0
        } else {
            keys.iter().filter(|key| table.get(key).is_some()).count()
        };
        check_room(list, used, keys.len() - present, max)?;
        report.added += keys.len() - present;
        report.updated += present;
        Some(table)
    };
    let mut plans = plan_ranges(&ranges);
    for plan in &mut plans {
        let map = maps.trie(list, plan.ipv6);
        // One pass over the map, copying only the entries this command updates. The set of
        // keys to look for is built at the first entry: a bulk load into an empty map needs none.
        let mut in_map = 0;
        let mut wanted: Option<HashSet<&[u8]>> = None;
        let mut existing = HashMap::new();
        map_io::for_each_entry(map, |key, value| {
            in_map += 1;
            let wanted =
                wanted.get_or_insert_with(|| (0..plan.len()).map(|i| plan.key(i)).collect());
            if wanted.contains(key) {
                existing.insert(key.to_vec(), value.to_vec());
            }
        })?;
        drop(wanted);
        plan.existing = existing;
        let new = plan.len() - plan.existing.len();
        check_room(list, in_map, new, max)?;
        report.added += new;
        report.updated += plan.existing.len();
    }

    // The program skips maps it believes empty: say they are not before filling them.
    let mut bits = plans.iter().fold(0, |bits, plan| {
        bits | FirewallMaps::rule_bit(list, Some(plan.ipv6))
    });
    if table.is_some() {
        bits |= FirewallMaps::rule_bit(list, None);
    }
    maps.mark_in_use(bits)?;
    if !ranges.is_empty() {
        maps.range_filter()?.mark(list, &ranges);
    }
    for (done, plan) in plans.iter().enumerate() {
        let map = maps.trie(list, plan.ipv6);
        let mut values = Vec::with_capacity(plan.len() * std::mem::size_of::<Rule>());
        for i in 0..plan.len() {
            // A rule there already keeps its hits, and so its generation (hits cached for it
            // stay its own); a new one draws a generation (hit_cache).
            let (hits, generation) = plan
                .existing
                .get(plan.key(i))
                .map(|v| (rule_of(v).hits, rule_of(v).generation))
                .unwrap_or_else(|| (0, new_generation()));
            let rule = Rule {
                hits,
                expires_ns,
                reason: reason as u16,
                generation,
                prefixlen: plan.prefixlens[i],
            };
            values.extend_from_slice(&rule_bytes(&rule));
        }
        if let Err(err) = map_io::update_flat_parallel(map, &plan.keys, &values, WHEN_FULL) {
            undo_plans(maps, list, &plans[..=done]);
            return Err(err.context("nothing was applied"));
        }
    }
    if let Some(table) = table {
        let (added, renewed, full) = table.insert_all(&keys, expires_ns, reason);
        if let Some(key) = full {
            for key in &added {
                table.remove(key);
            }
            // Failing already: stale filter bits cost speed only, so an error here can wait.
            let _ = maps.note_exact_removals(&table, list, added.len(), false);
            for old in &renewed {
                table.restore(old);
            }
            undo_plans(maps, list, &plans);
            bail!(
                "the {}'s table has no room left for {}: both of the places it may go are full. \
                 Nothing was applied. Load the firewall with a larger --max-rules",
                list_name(list),
                key.addr()
            );
        }
    }
    Ok(report)
}

/// A new range rule's generation: drawn, so that hits cached for a range removed before
/// (whose generation is not known any more) meet the new rule only once in 32,768. The top bit
/// is the program's (fw_config.next_block_generation).
fn new_generation() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos as u16 ^ (nanos >> 16) as u16).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
        & 0x7fff
}

fn list_name(list: List) -> &'static str {
    match list {
        List::Allow => "allowlist",
        List::Block => "blocklist",
    }
}

/// Removes prefixes from a list. If any is not on it, nothing is removed.
pub fn remove_prefixes(maps: &FirewallMaps, list: List, prefixes: &[IpNet]) -> Result<usize> {
    let _lock = maps.lock()?;
    remove_locked(maps, list, prefixes)
}

/// Removes prefixes as typed ([`remove_prefixes`]), where an entry typed IPv4-mapped
/// (`::ffff:a.b.c.d`, in `typed.mapped`) whose IPv4 prefix is not on the list removes the
/// IPv6 rule within ::ffff:0:0/96 an older version made of it, if that one is.
pub fn remove_typed(maps: &FirewallMaps, list: List, typed: &Gathered) -> Result<usize> {
    let _lock = maps.lock()?;
    if typed.mapped.is_empty() {
        return remove_locked(maps, list, &typed.prefixes);
    }
    let table = maps.exact_table(list)?;
    let mapped: HashSet<IpNet> = typed.mapped.iter().map(|&v4| IpNet::V4(v4)).collect();
    let mut prefixes = typed.prefixes.clone();
    for prefix in &mut prefixes {
        if let (true, IpNet::V4(v4)) = (mapped.contains(prefix), *prefix) {
            let legacy = input::mapped_form(v4);
            if !is_on(maps, &table, list, prefix)? && is_on(maps, &table, list, &legacy)? {
                *prefix = legacy;
            }
        }
    }
    remove_locked(maps, list, &prefixes)
}

/// Whether a prefix is on a list (`table` is the list's exact table).
fn is_on(maps: &FirewallMaps, table: &exact::Table, list: List, prefix: &IpNet) -> Result<bool> {
    let target = target_of(prefix);
    if target.exact {
        return Ok(table.get(&exact::Key::of(prefix.addr())).is_some());
    }
    trie_holds(maps.trie(list, target.ipv6), &key_of(prefix))
}

/// Whether a trie holds exactly this key. A lookup finds the longest prefix that covers it,
/// maybe a shorter one (10.0.0.0/8 for 10.1.0.0/16); get_next_key tells them apart: after a
/// key the map does not hold comes its first key (bpf(2)), after one it holds a later key or
/// none. Only xdpctl edits tries, under the edit lock, so the two calls see one map.
fn trie_holds(map: &MapHandle, key: &[u8]) -> Result<bool> {
    let covered = map.lookup(key, MapFlags::ANY);
    if covered.context("reading a range trie")?.is_none() {
        return Ok(false);
    }
    let next = |after: Option<&[u8]>| -> Result<Option<Vec<u8>>> {
        map_io::next_key(map, after).map_err(|err| anyhow::anyhow!("reading a range trie: {err}"))
    };
    Ok(next(Some(key))? != next(None)?)
}

fn remove_locked(maps: &FirewallMaps, list: List, prefixes: &[IpNet]) -> Result<usize> {
    let (exact, ranges): (Vec<IpNet>, Vec<IpNet>) =
        prefixes.iter().partition(|prefix| target_of(prefix).exact);
    let mut missing = Vec::new();
    let table = maps.exact_table(list)?;
    let mut keys: Vec<exact::Key> = Vec::new();
    for prefix in &exact {
        let key = exact::Key::of(prefix.addr());
        if table.get(&key).is_none() {
            missing.push(prefix.to_string());
        }
        keys.push(key);
    }
    let mut by_family: HashMap<bool, Vec<(IpNet, Vec<u8>)>> = HashMap::new();
    for prefix in &ranges {
        by_family
            .entry(target_of(prefix).ipv6)
            .or_default()
            .push((*prefix, key_of(prefix)));
    }
    for (ipv6, wanted) in &by_family {
        let map = maps.trie(list, *ipv6);
        let present: HashSet<Vec<u8>> = if wanted.len() > 64 {
            map_io::keys(map)?.into_iter().collect()
        } else {
            let mut present = HashSet::new();
            for (_, key) in wanted {
                if trie_holds(map, key)? {
                    present.insert(key.clone());
                }
            }
            present
        };
        missing.extend(
            wanted
                .iter()
                .filter(|(_, key)| !present.contains(key))
                .map(|(prefix, _)| prefix.to_string()),
        );
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        bail!(
            "not on the {}: {}; nothing was removed",
            list_name(list),
            missing.join(", ")
        );
    }
    keys.sort_unstable();
    keys.dedup();
    let mut removed = 0;
    for key in &keys {
        removed += table.remove(key) as usize;
    }
    maps.note_exact_removals(&table, list, removed, false)?;
    for (ipv6, wanted) in by_family {
        let mut keys: Vec<Vec<u8>> = wanted.into_iter().map(|(_, key)| key).collect();
        // A range named twice is removed (and counted) once.
        keys.sort_unstable();
        keys.dedup();
        removed += keys.len();
        map_io::delete_many(maps.trie(list, ipv6), &keys)?;
        refresh_range_filter(maps, list, ipv6)?;
    }
    maps.refresh_in_use()?;
    Ok(removed)
}

/// Recomputes a trie's range filter from the ranges left in it (after removing some). The
/// program inserts prefix blocks meanwhile, and marks their bits after inserting: one it
/// inserted after the first walk may have lost its bit to the store, so a second walk marks
/// what the trie holds then (whatever it inserts later marks its own bits after the store).
fn refresh_range_filter(maps: &FirewallMaps, list: List, ipv6: bool) -> Result<()> {
    let ranges_now = || -> Result<Vec<IpNet>> {
        let mut ranges = Vec::new();
        map_io::for_each_entry(maps.trie(list, ipv6), |key, _| {
            ranges.extend(prefix_of(ipv6, key));
        })?;
        Ok(ranges)
    };
    let filter = maps.range_filter()?;
    filter.set(list, ipv6, &ranges_now()?);
    if list == List::Block {
        filter.mark(list, &ranges_now()?);
    }
    Ok(())
}

/// Empties a list. Returns how many entries went.
pub fn clear(maps: &FirewallMaps, list: List) -> Result<usize> {
    let _lock = maps.lock()?;
    let table = maps.exact_table(list)?;
    let mut removed = table.clear();
    maps.note_exact_removals(&table, list, removed, true)?;
    for ipv6 in [false, true] {
        let map = maps.trie(list, ipv6);
        let keys = map_io::keys(map)?;
        removed += keys.len();
        map_io::delete_many(map, &keys)?;
        refresh_range_filter(maps, list, ipv6)?;
    }
    maps.refresh_in_use()?;
    Ok(removed)
}

/// One rule as `list` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct PrefixEntry {
    pub prefix: IpNet,
    pub hits: u64,
    /// Seconds left, for rules that expire.
    pub expires_in: Option<f64>,
    pub reason: u32,
}

impl PrefixEntry {
    fn new(prefix: IpNet, hits: u64, expires_ns: u64, reason: u32, now_ns: u64) -> PrefixEntry {
        PrefixEntry {
            prefix,
            hits,
            expires_in: (expires_ns != 0).then(|| (expires_ns - now_ns) as f64 / 1e9),
            reason,
        }
    }
}

fn is_expired(expires_ns: u64, now_ns: u64) -> bool {
    expires_ns != 0 && now_ns >= expires_ns
}

/// Every live rule of a list, sorted. Expired rules are swept out on the way, under the edit
/// lock, so a rule re-added meanwhile is not the one deleted.
pub fn list_prefixes(maps: &FirewallMaps, list: List, now_ns: u64) -> Result<Vec<PrefixEntry>> {
    let _lock = maps.lock()?;
    let mut out = Vec::new();
    let table = maps.exact_table(list)?;
    let pending = PendingHits::read(maps)?;
    let mut expired = Vec::new();
    collect_exact(&table, list, &pending, now_ns, &mut out, |index, key| {
        expired.push((index, key))
    });
    let swept = expired.len();
    for (index, key) in expired {
        table.remove_expired(index, &key, now_ns);
    }
    maps.note_exact_removals(&table, list, swept, false)?;
    for ipv6 in [false, true] {
        let map = maps.trie(list, ipv6);
        let mut expired = Vec::new();
        collect_ranges(map, list, &pending, ipv6, now_ns, &mut out, |key| {
            expired.push(key.to_vec())
        })?;
        if !expired.is_empty() {
            map_io::delete_many(map, &expired)?;
            refresh_range_filter(maps, list, ipv6)?;
        }
    }
    out.sort_by_key(|entry| entry.prefix);
    Ok(out)
}

/// Every live rule of a list, unsorted, leaving the maps as they are: for readers that may run
/// often or without the edit lock (`top`, `watch`).
pub fn read_prefixes(maps: &FirewallMaps, list: List, now_ns: u64) -> Result<Vec<PrefixEntry>> {
    let mut out = Vec::new();
    let pending = PendingHits::read(maps)?;
    let table = maps.exact_table(list)?;
    collect_exact(&table, list, &pending, now_ns, &mut out, |_, _| {});
    for ipv6 in [false, true] {
        let map = maps.trie(list, ipv6);
        collect_ranges(map, list, &pending, ipv6, now_ns, &mut out, |_| {})?;
    }
    Ok(out)
}

/// Appends the live rules of an exact table to `out`, and hands each expired one (slot and key)
/// to `expired`. An address twice in the table (an insert raced the program's) shows once.
fn collect_exact(
    table: &exact::Table,
    list: List,
    pending: &PendingHits,
    now_ns: u64,
    out: &mut Vec<PrefixEntry>,
    mut expired: impl FnMut(usize, exact::Key),
) {
    let mut seen = HashSet::new();
    table.for_each(|index, entry| {
        if is_expired(entry.expires_ns, now_ns) {
            expired(index, entry.key);
        } else if seen.insert(entry.key) {
            let prefix = IpNet::from(entry.key.addr());
            let cached = pending.exact(list, &entry.key, index, entry.generation);
            out.push(PrefixEntry::new(
                prefix,
                entry.hits + cached,
                entry.expires_ns,
                entry.reason,
                now_ns,
            ));
        }
    });
}

/// Appends the live rules of a trie to `out`, and hands each expired key to `expired`.
fn collect_ranges(
    map: &MapHandle,
    list: List,
    pending: &PendingHits,
    ipv6: bool,
    now_ns: u64,
    out: &mut Vec<PrefixEntry>,
    mut expired: impl FnMut(&[u8]),
) -> Result<()> {
    map_io::for_each_entry(map, |key, value| {
        let rule = rule_of(value);
        if is_expired(rule.expires_ns, now_ns) {
            expired(key);
            return;
        }
        if let Some(prefix) = prefix_of(ipv6, key) {
            let addr = &key[4..if ipv6 { 20 } else { 8 }];
            let cached = pending.range(list, addr, rule.prefixlen, rule.generation);
            out.push(PrefixEntry::new(
                prefix,
                rule.hits + cached,
                rule.expires_ns,
                u32::from(rule.reason),
                now_ns,
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_prefix;

    #[test]
    fn keys_round_trip_and_route_exact_addresses_to_the_table() {
        for text in [
            "198.51.100.0/24",
            "2001:db8::/32",
            "0.0.0.0/0",
            "10.0.0.0/31",
        ] {
            let prefix = parse_prefix(text).unwrap();
            let target = target_of(&prefix);
            assert!(!target.exact);
            assert_eq!(
                prefix_of(target.ipv6, &key_of(&prefix)),
                Some(prefix),
                "{text}"
            );
        }
        for text in ["203.0.113.7", "2001:db8::1"] {
            assert!(target_of(&parse_prefix(text).unwrap()).exact, "{text}");
        }
        let lpm = key_of(&parse_prefix("10.0.0.0/8").unwrap());
        assert_eq!(lpm.len(), 8);
        assert_eq!(&lpm[4..], &[10, 0, 0, 0]);
    }
}
