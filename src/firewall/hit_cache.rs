//! Rule hits the CPUs' hit caches hold (struct fw_hit_cache, bpf/firewall/hits.h): a rule's
//! hits are its own counter plus these. Readers add them; nothing here writes.
//!
//! Under traffic a reading may lack, for a moment, the hits of one entry per CPU (an entry
//! being handed to another rule); at rest it is exact. A range removed and added again may, once
//! in 32,768, meet a cached count of its earlier self (its generation is drawn anew); the
//! program's prefix blocks count theirs up from fw_config.next_block_generation.

use std::collections::HashMap;

use anyhow::Result;

use super::{exact, FirewallMaps, HitEntry, List};
use crate::abi;
use crate::sys::map_io;

/// A rule as a cache entry names it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct RuleId {
    kind: u8,
    list: u8,
    generation: u16,
    index: u32,
    addr: [u64; 2],
}

/// Cached hits, summed over the CPUs, by rule.
#[derive(Debug, Default)]
pub struct PendingHits(HashMap<RuleId, u64>);

impl PendingHits {
    /// Reads every CPU's cache.
    pub fn read(maps: &FirewallMaps) -> Result<PendingHits> {
        let mut pending = PendingHits::default();
        for bytes in &map_io::per_cpu_values(&maps.hit_cache, 0, "hit_cache")? {
            pending.add_cache(bytes)?;
        }
        Ok(pending)
    }

    /// Adds one CPU's cache, as the map's bytes.
    fn add_cache(&mut self, bytes: &[u8]) -> Result<()> {
        for raw in bytes.chunks_exact(std::mem::size_of::<HitEntry>()) {
            let entry: &HitEntry =
                plain::from_bytes(raw).map_err(|_| anyhow::anyhow!("a hit cache entry's size"))?;
            if entry.kind == abi::FW_HIT_FREE as u8 || entry.count == 0 {
                continue;
            }
            let id = RuleId {
                kind: entry.kind,
                list: entry.list,
                generation: entry.generation,
                index: entry.index,
                addr: entry.addr,
            };
            *self.0.entry(id).or_default() += u64::from(entry.count);
        }
        Ok(())
    }

    fn get(&self, id: RuleId) -> u64 {
        self.0.get(&id).copied().unwrap_or(0)
    }

    /// The cached hits of an exact rule, in its slot `index`.
    pub fn exact(&self, list: List, key: &exact::Key, index: usize, generation: u16) -> u64 {
        let kind = if key.is_v6() {
            abi::FW_HIT_EXACT_V6
        } else {
            abi::FW_HIT_EXACT_V4
        };
        self.get(RuleId {
            kind: kind as u8,
            list: list as u8,
            generation,
            index: index as u32,
            addr: key.words(),
        })
    }

    /// The cached hits of a range rule, from its trie key's address bytes (4 or 16).
    pub fn range(&self, list: List, addr: &[u8], prefixlen: u32, generation: u16) -> u64 {
        let mut bytes = [0u8; 16];
        bytes[..addr.len()].copy_from_slice(addr);
        let kind = if addr.len() == 16 {
            abi::FW_HIT_RANGE_V6
        } else {
            abi::FW_HIT_RANGE_V4
        };
        self.get(RuleId {
            kind: kind as u8,
            list: list as u8,
            generation,
            index: prefixlen,
            addr: [
                u64::from_ne_bytes(bytes[..8].try_into().unwrap()),
                u64::from_ne_bytes(bytes[8..].try_into().unwrap()),
            ],
        })
    }

    /// The cached hits of the port rule in `slot`.
    pub fn port(&self, slot: u32, generation: u16) -> u64 {
        self.get(RuleId {
            kind: abi::FW_HIT_PORT as u8,
            list: 0,
            generation,
            index: slot,
            addr: [0, 0],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        kind: u32,
        list: u8,
        generation: u16,
        index: u32,
        addr: [u64; 2],
        count: u64,
    ) -> Vec<u8> {
        let entry = HitEntry {
            count: count as u32,
            misses: 0,
            addr,
            kind: kind as u8,
            list,
            generation,
            index,
        };
        // SAFETY: HitEntry is plain old data.
        unsafe { plain::as_bytes(&entry) }.to_vec()
    }

    #[test]
    fn counts_are_summed_over_cpus_by_rule_and_generation() {
        let key = exact::Key::of("192.0.2.1".parse().unwrap());
        let mut pending = PendingHits::default();
        let words = key.words();
        let cpu0 = [
            entry(abi::FW_HIT_EXACT_V4, 1, 7, 42, words, 5),
            entry(abi::FW_HIT_PORT, 0, 2, 22, [0, 0], 3),
            entry(abi::FW_HIT_FREE, 0, 0, 0, [0, 0], 0),
        ]
        .concat();
        let cpu1 = [
            entry(abi::FW_HIT_EXACT_V4, 1, 7, 42, words, 4),
            // The slot's earlier rule: not this one's.
            entry(abi::FW_HIT_EXACT_V4, 1, 6, 42, words, 100),
        ]
        .concat();
        pending.add_cache(&cpu0).unwrap();
        pending.add_cache(&cpu1).unwrap();
        assert_eq!(pending.exact(List::Block, &key, 42, 7), 9);
        assert_eq!(pending.exact(List::Allow, &key, 42, 7), 0);
        assert_eq!(pending.exact(List::Block, &key, 43, 7), 0);
        assert_eq!(pending.port(22, 2), 3);
        assert_eq!(pending.port(22, 3), 0);
    }

    #[test]
    fn a_range_is_named_by_its_first_address_and_length() {
        let mut pending = PendingHits::default();
        let v4 = u32::from_ne_bytes([10, 1, 0, 0]) as u64;
        pending
            .add_cache(&entry(abi::FW_HIT_RANGE_V4, 1, 0, 16, [v4, 0], 8))
            .unwrap();
        assert_eq!(pending.range(List::Block, &[10, 1, 0, 0], 16, 0), 8);
        assert_eq!(pending.range(List::Block, &[10, 1, 0, 0], 24, 0), 0);
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        pending
            .add_cache(&entry(
                abi::FW_HIT_RANGE_V6,
                0,
                3,
                32,
                [u64::from_ne_bytes(v6[..8].try_into().unwrap()), 0],
                2,
            ))
            .unwrap();
        assert_eq!(pending.range(List::Allow, &v6, 32, 3), 2);
    }
}
