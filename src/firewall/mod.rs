//! The firewall: its ABI types (the structs of include/xdpctl.h, from the skeleton) and the
//! names of its global maps. The maps are pinned under `<pin root>/rules/`, shared by every
//! interface that runs the firewall, created at the first `load` or rule edit, and reused
//! (never recreated) after that, so rules survive xdpctl exiting and a program replace.
//!
//! - [`FirewallMaps`] (maps.rs): the handle to them, and every invariant it keeps
//! - [`load`]: loading with the pin set in place; [`attachments`]: attaching and detaching
//!   through pinned links; [`pinset`]: making, repairing and removing it;
//!   [`map_budget`]: their sizes and memory
//! - [`rules`]: the block and allow lists and port rules; [`exact`]: the exact-address tables;
//!   [`range_filter`]: which ranges' tries are worth a lookup
//! - [`RateLimit`] (rate_limit.rs); [`prefix_limits`]: the limits per source prefix, and the
//!   heavy prefixes; [`talkers`]: the busiest sources, from the source table
//! - [`model`]: the reference model the program is tested against

pub mod attachments;
pub mod exact;
pub mod hit_cache;
pub mod load;
pub mod map_budget;
mod maps;
pub mod model;
pub mod pinset;
pub mod prefix_limits;
pub mod range_filter;
mod rate_limit;
pub mod rules;
pub mod talkers;

use std::path::PathBuf;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapHandle, OpenObject};

pub(crate) use maps::lock_name;
pub use maps::FirewallMaps;
pub use rate_limit::{RateLimit, RateLimitProto};

use crate::skel::firewall::types as abi;
use crate::sys::pins;

pub type Config = abi::fw_config;
pub type Rule = abi::fw_rule;
pub type PortRule = abi::fw_port_rule;
pub type Source = abi::fw_source;
pub type SourceSet = abi::fw_source_set;
pub type SourceIndex = abi::fw_source_index;
pub type FwStats = abi::fw_stats;
pub type ExactSlot = abi::fw_exact_slot;
pub type ExactBucket = abi::fw_exact_bucket;
pub type ExactV4 = abi::fw_exact_v4;
pub type HhhChunk = abi::fw_hhh_chunk;
pub type HhhHeavy = abi::fw_hhh_heavy;
pub type HitEntry = abi::fw_hit_entry;
pub type Lease = abi::fw_lease;

// SAFETY: plain-old-data structs of integers: any bytes are a valid value.
unsafe impl plain::Plain for Config {}
unsafe impl plain::Plain for Rule {}
unsafe impl plain::Plain for PortRule {}
unsafe impl plain::Plain for Source {}
unsafe impl plain::Plain for SourceSet {}
unsafe impl plain::Plain for SourceIndex {}
unsafe impl plain::Plain for FwStats {}
unsafe impl plain::Plain for HhhChunk {}
unsafe impl plain::Plain for HhhHeavy {}
unsafe impl plain::Plain for HitEntry {}
unsafe impl plain::Plain for Lease {}

/// enum fw_proto: the protocol counters, in order (named by the header, build.rs).
pub const PROTOCOLS: [&str; crate::abi::FW_PROTO_MAX as usize] = crate::abi::names::FW_PROTO_NAMES;
/// enum fw_drop_reason: why packets were dropped, in order (named by the header, build.rs).
pub const DROP_REASONS: [&str; crate::abi::FW_DROP_MAX as usize] =
    crate::abi::names::FW_DROP_REASON_NAMES;
// The header's values (src/abi.rs) that the Rust side uses as sizes and counts.
/// FW_TOKEN: nano-tokens per packet.
pub const TOKEN: u64 = crate::abi::FW_TOKEN as u64;
/// FW_SOURCE_WAYS: slots per set of the source table.
pub const SOURCE_WAYS: usize = crate::abi::FW_SOURCE_WAYS as usize;

/// The range tries, in the order `FirewallMaps::trie` indexes them.
pub const TRIE_MAPS: [&str; 4] = [
    "allow_v4_lpm",
    "allow_v6_lpm",
    "block_v4_lpm",
    "block_v6_lpm",
];
/// The exact tables' arrays, in (list, array) order: Allow then Block; tags, slots, filter,
/// and the buckets' IPv4 elements.
pub const EXACT_MAPS: [[&str; 4]; 2] = [
    ["allow_tags", "allow_slots", "allow_filter", "allow_v4"],
    ["block_tags", "block_slots", "block_filter", "block_v4"],
];
/// The other global (pinned, shared) maps of the firewall.
pub const OTHER_GLOBAL_MAPS: [&str; 9] = [
    "ports",
    "fw_config",
    "sources",
    "source_index",
    "range_bits",
    "hhh_counts",
    "hhh_heavy",
    "hit_cache",
    "source_leases",
];
/// The source table's two arrays, an entry per set each: the slots, and their index.
pub const SOURCE_TABLE_MAPS: [&str; 2] = ["sources", "source_index"];

/// Sizes the source table of a firewall object before load, to `sources` sources.
pub fn set_source_table_size(open: &mut OpenObject, sources: u32) -> Result<()> {
    for mut map in open.maps_mut() {
        if SOURCE_TABLE_MAPS.iter().any(|name| map.name() == *name) {
            let sets = crate::firewall::map_budget::source_sets(sources)
                .with_context(|| format!("{sources} sources is more than a table can hold"))?;
            map.set_max_entries(sets)?;
        }
    }
    Ok(())
}

/// Sizes both lists' exact tables of a firewall object before load, for `rules` addresses each.
pub fn set_exact_table_size(open: &mut OpenObject, rules: u32) -> Result<()> {
    let entries = crate::firewall::exact::array_entries(rules);
    for mut map in open.maps_mut() {
        let array = EXACT_MAPS
            .iter()
            .find_map(|arrays| arrays.iter().position(|name| map.name() == *name));
        if let Some(array) = array {
            map.set_max_entries(entries[array])?;
        }
    }
    Ok(())
}

/// Whether a map of the firewall object is one of its global (pinned, shared) maps.
pub fn is_global_map(name: &str) -> bool {
    TRIE_MAPS.contains(&name)
        || EXACT_MAPS.iter().flatten().any(|m| *m == name)
        || OTHER_GLOBAL_MAPS.contains(&name)
}

/// Where the global maps are pinned.
pub fn rules_dir() -> PathBuf {
    pins::root().join(pins::SHARED_DIR)
}

/// A loaded program's global maps, by name, if it has every one (it is a firewall). A map
/// freed since the program was looked up counts as missing; one that exists but cannot be
/// opened is an error, not a sign that the program is no firewall.
pub fn global_maps_of(
    program: &crate::sys::attach::ProgramSummary,
) -> Result<Option<std::collections::HashMap<String, MapHandle>>> {
    let maps = crate::sys::map_users::open_each(&program.map_ids, |id| {
        MapHandle::from_map_id(id).with_context(|| format!("opening BPF map id {id}"))
    })?;
    let global: std::collections::HashMap<String, MapHandle> = maps
        .into_iter()
        .map(|map| (map.name().to_string_lossy().into_owned(), map))
        .filter(|(name, _)| is_global_map(name))
        .collect();
    Ok((global.len() == crate::firewall::pinset::global_map_names().len()).then_some(global))
}

/// Map sizes asked for at load. `None` keeps what exists (or the default for a new map).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    pub max_rules: Option<u32>,
    pub max_sources: Option<u32>,
}

/// Which list a prefix rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum List {
    Allow = 0,
    Block = 1,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_map_name_here_is_a_map_of_the_program() {
        let defined = crate::sys::programs::map_names_of("firewall").unwrap();
        let named = TRIE_MAPS
            .iter()
            .chain(EXACT_MAPS.iter().flatten())
            .chain(&OTHER_GLOBAL_MAPS)
            .chain(&SOURCE_TABLE_MAPS);
        for name in named {
            assert!(
                defined.iter().any(|d| d == name),
                "no map {name} in bpf/firewall/maps.h"
            );
        }
    }

    #[test]
    fn abi_sizes_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<Rule>(), 24);
        assert_eq!(std::mem::size_of::<PortRule>(), 16);
        assert_eq!(std::mem::size_of::<Config>(), 184);
        assert_eq!(std::mem::size_of::<ExactSlot>(), 40);
        assert_eq!(
            std::mem::size_of::<ExactBucket>(),
            2 * crate::firewall::exact::LANES
        );
        assert_eq!(
            std::mem::size_of::<ExactV4>(),
            8 * crate::firewall::exact::LANES
        );
        assert_eq!(std::mem::size_of::<Source>(), 48);
        assert_eq!(std::mem::size_of::<SourceSet>(), 48 * SOURCE_WAYS);
        assert_eq!(std::mem::size_of::<SourceIndex>(), 4 * SOURCE_WAYS);
        assert_eq!(std::mem::size_of::<FwStats>(), (5 + 5 + 5) * 8);
        assert_eq!(std::mem::size_of::<HhhChunk>(), 32768);
        assert_eq!(std::mem::size_of::<HhhHeavy>(), 8192);
    }
}
