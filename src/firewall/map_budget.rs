//! How big the firewall's global maps are, from the size flags of `load` (--max-rules,
//! --max-sources): each map's entries for a flag's value, the bytes the kernel allocates for them
//! up front, and the most a flag may ask for on this machine. Pure arithmetic, checked: no flag
//! value wraps to a small table, and none asks the kernel for more memory than it can give.

use anyhow::{bail, Result};
use libbpf_rs::{libbpf_sys, MapType};

use crate::abi::{FW_DEFAULT_MAX_RULES, FW_DEFAULT_MAX_SOURCES};
use crate::firewall::{EXACT_MAPS, SOURCE_WAYS, TRIE_MAPS};

/// The largest --max-rules: the exact tables' arrays stay far below u32 entries (5/4 lanes per
/// rule), and the range tries' max_entries is the flag itself.
pub const MAX_RULES: u32 = 1 << 30;
/// The largest --max-sources: a power of two, so rounding up to whole sets cannot overflow.
pub const MAX_SOURCES: u32 = 1 << 31;
/// Of MemTotal, the share the maps created by one `load` may take up front.
pub const MEMORY_SHARE_DIVISOR: u64 = 4;

/// A size flag of `load`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    MaxRules,
    MaxSources,
}

impl Flag {
    pub fn name(self) -> &'static str {
        match self {
            Flag::MaxRules => "--max-rules",
            Flag::MaxSources => "--max-sources",
        }
    }

    /// The values the flag accepts.
    pub fn range(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Flag::MaxRules => 1..=MAX_RULES,
            Flag::MaxSources => 1..=MAX_SOURCES,
        }
    }

    pub fn default_value(self) -> u32 {
        match self {
            Flag::MaxRules => FW_DEFAULT_MAX_RULES,
            Flag::MaxSources => FW_DEFAULT_MAX_SOURCES,
        }
    }

    /// Rejects a value outside the flag's range, naming both.
    pub fn check(self, value: u32) -> Result<()> {
        let range = self.range();
        if !range.contains(&value) {
            bail!(
                "{} {value} is out of range: it must be {}..={}",
                self.name(),
                range.start(),
                range.end()
            );
        }
        Ok(())
    }
}

/// The sets the source table needs for `sources` sources: a power of two, at least one. None
/// when rounding up to a power of two overflows (above 2^31 sources).
pub fn source_sets(sources: u32) -> Option<u32> {
    let slots = sources
        .max(SOURCE_WAYS as u32)
        .checked_next_power_of_two()?;
    Some((slots / SOURCE_WAYS as u32).max(1))
}

/// Which flag sizes a global map of the firewall; None for a map of fixed size.
pub fn sized_by(map: &str) -> Option<Flag> {
    if TRIE_MAPS.contains(&map) || EXACT_MAPS.iter().flatten().any(|name| *name == map) {
        Some(Flag::MaxRules)
    } else if crate::firewall::SOURCE_TABLE_MAPS.contains(&map) {
        Some(Flag::MaxSources)
    } else {
        None
    }
}

/// The entries of a global map for the flag that sizes it set to `value` (None: the map has a
/// fixed size, or `value` is beyond the flag's range).
pub fn entries_for(map: &str, value: u32) -> Option<u32> {
    let flag = sized_by(map)?;
    if !flag.range().contains(&value) {
        return None;
    }
    if flag == Flag::MaxSources {
        return source_sets(value);
    }
    match EXACT_MAPS
        .iter()
        .find_map(|arrays| arrays.iter().position(|name| *name == map))
    {
        Some(array) => Some(crate::firewall::exact::array_entries(value)[array]),
        None => Some(value),
    }
}

/// A map as its definition describes it, for the memory it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapShape {
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub map_flags: u32,
    /// max_entries, before the size flags apply.
    pub entries: u32,
}

const PAGE: u64 = 4096;

/// The bytes the kernel allocates when it creates a map of this shape with `entries`, before a
/// single element is written: an array's elements (8-byte aligned, page aligned if mmapable);
/// a preallocated hash's elements. A map made without preallocation (the LPM tries) takes
/// nothing up front; its elements come one by one as rules are added.
pub fn preallocated_bytes(shape: &MapShape, entries: u32, possible_cpus: u64) -> u64 {
    let entries = u64::from(entries);
    let value = u64::from(shape.value_size).div_ceil(8) * 8;
    let key = u64::from(shape.key_size).div_ceil(8) * 8;
    let no_prealloc = shape.map_flags & libbpf_sys::BPF_F_NO_PREALLOC != 0;
    match shape.map_type {
        MapType::Array if shape.map_flags & libbpf_sys::BPF_F_MMAPABLE != 0 => {
            (entries * value).div_ceil(PAGE) * PAGE
        }
        MapType::Array => entries * value,
        MapType::PercpuArray => entries * value * possible_cpus,
        MapType::LpmTrie => 0,
        MapType::Hash | MapType::LruHash if !no_prealloc => entries * (key + value + 48),
        MapType::PercpuHash | MapType::LruPercpuHash if !no_prealloc => {
            entries * (key + 48 + value * possible_cpus)
        }
        _ => 0,
    }
}

/// The flag values a load asks for (None: the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    pub max_rules: Option<u32>,
    pub max_sources: Option<u32>,
}

impl Asked {
    fn value(&self, flag: Flag) -> u32 {
        match flag {
            Flag::MaxRules => self.max_rules,
            Flag::MaxSources => self.max_sources,
        }
        .unwrap_or(flag.default_value())
    }

    fn with(mut self, flag: Flag, value: u32) -> Asked {
        match flag {
            Flag::MaxRules => self.max_rules = Some(value),
            Flag::MaxSources => self.max_sources = Some(value),
        }
        self
    }
}

/// The entries a map gets for these flags.
fn entries_of(shape: &MapShape, asked: Asked) -> u32 {
    sized_by(&shape.name)
        .and_then(|flag| entries_for(&shape.name, asked.value(flag)))
        .unwrap_or(shape.entries)
}

/// The bytes these maps take up front when created for these flags.
pub fn total_bytes(shapes: &[MapShape], asked: Asked, possible_cpus: u64) -> u64 {
    shapes
        .iter()
        .map(|shape| preallocated_bytes(shape, entries_of(shape, asked), possible_cpus))
        .sum()
}

/// The largest value of `flag` whose maps fit in `limit` bytes with the other flag as asked
/// (0 if not even 1 fits).
pub fn largest_fitting(
    shapes: &[MapShape],
    asked: Asked,
    flag: Flag,
    limit: u64,
    cpus: u64,
) -> u32 {
    let fits = |value: u32| total_bytes(shapes, asked.with(flag, value), cpus) <= limit;
    let (mut low, mut high) = (0u32, *flag.range().end());
    if fits(high) {
        return high;
    }
    // Invariant: low fits (or is 0), high does not. The bytes grow with the value.
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if fits(mid) {
            low = mid;
        } else {
            high = mid;
        }
    }
    low
}

/// Refuses flags whose maps would take more than `limit` bytes up front, before the kernel is
/// asked: the error names the flag, the bytes, and the values that fit.
pub fn check(shapes: &[MapShape], asked: Asked, limit: u64, cpus: u64) -> Result<()> {
    let total = total_bytes(shapes, asked, cpus);
    if total <= limit {
        return Ok(());
    }
    // Blame the flag asked for that costs the most.
    let cost = |flag: Flag| {
        shapes
            .iter()
            .filter(|shape| sized_by(&shape.name) == Some(flag))
            .map(|shape| preallocated_bytes(shape, entries_of(shape, asked), cpus))
            .sum::<u64>()
    };
    let flag = [Flag::MaxRules, Flag::MaxSources]
        .into_iter()
        .max_by_key(|&flag| cost(flag))
        .expect("two flags");
    let largest = largest_fitting(shapes, asked, flag, limit, cpus);
    let fits = if largest == 0 {
        "no value fits with the other flag as given".to_owned()
    } else {
        format!("{} can be 1..={largest} here", flag.name())
    };
    bail!(
        "{} {} would make the firewall's maps take {total} bytes ({}) of kernel memory up \
         front, more than the {limit} bytes ({}) xdpctl allows: 1/{MEMORY_SHARE_DIVISOR} of this \
         machine's memory (MemTotal). {fits}; load with a smaller {}",
        flag.name(),
        asked.value(flag),
        human(total),
        human(limit),
        flag.name()
    )
}

/// Bytes for people: 1.5 GiB.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// MemTotal of /proc/meminfo, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The bytes one load's new maps may take: a share of MemTotal.
pub fn memory_limit() -> Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|err| anyhow::anyhow!("reading /proc/meminfo: {err}"))?;
    let total = parse_mem_total(&meminfo)
        .ok_or_else(|| anyhow::anyhow!("/proc/meminfo has no MemTotal line"))?;
    Ok(total / MEMORY_SHARE_DIVISOR)
}

/// The kernel's possible CPUs (per-CPU maps take a copy for each).
pub fn possible_cpus() -> u64 {
    libbpf_rs::num_possible_cpus().map_or(1, |n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{ExactBucket, ExactSlot, ExactV4, SourceIndex, SourceSet};

    fn array(name: &str, value_size: usize, entries: u32, mmapable: bool) -> MapShape {
        MapShape {
            name: name.to_owned(),
            map_type: MapType::Array,
            key_size: 4,
            value_size: value_size as u32,
            map_flags: if mmapable {
                libbpf_sys::BPF_F_MMAPABLE
            } else {
                0
            },
            entries,
        }
    }

    /// The firewall's global maps as bpf/firewall.bpf.c defines them (the root tests check
    /// these against the object).
    fn firewall_shapes() -> Vec<MapShape> {
        let mut shapes = Vec::new();
        for name in TRIE_MAPS {
            shapes.push(MapShape {
                name: name.to_owned(),
                map_type: MapType::LpmTrie,
                key_size: 20,
                value_size: 24,
                map_flags: libbpf_sys::BPF_F_NO_PREALLOC,
                entries: FW_DEFAULT_MAX_RULES,
            });
        }
        for arrays in EXACT_MAPS {
            let sizes = [
                std::mem::size_of::<ExactBucket>(),
                std::mem::size_of::<ExactSlot>(),
                8,
                std::mem::size_of::<ExactV4>(),
            ];
            for (name, size) in arrays.into_iter().zip(sizes) {
                shapes.push(array(name, size, 1, true));
            }
        }
        shapes.push(array("sources", std::mem::size_of::<SourceSet>(), 1, false));
        shapes.push(array(
            "source_index",
            std::mem::size_of::<SourceIndex>(),
            1,
            false,
        ));
        shapes.push(array("ports", 16, 2 * 65536, false));
        shapes.push(array("fw_config", 184, 1, false));
        shapes.push(array("range_bits", 8, crate::abi::FW_RANGE_ALL_WORDS, true));
        let per_cpu = [
            ("hhh_counts", 32768, 12),
            ("hhh_heavy", 8192, 1),
            ("hit_cache", 32768, 1),
            ("source_leases", 12288, 1),
        ];
        for (name, size, entries) in per_cpu {
            shapes.push(MapShape {
                map_type: MapType::PercpuArray,
                ..array(name, size, entries, false)
            });
        }
        shapes
    }

    #[test]
    fn source_sets_round_up_without_wrapping() {
        assert_eq!(source_sets(262_144), Some(65_536));
        assert_eq!(source_sets(1000), Some(256));
        assert_eq!(source_sets(1), Some(1));
        assert_eq!(source_sets(MAX_SOURCES), Some(MAX_SOURCES / 4));
        // 2^31 + 1 rounds up to 2^32: it used to wrap to a table of one set.
        assert_eq!(source_sets(MAX_SOURCES + 1), None);
        assert_eq!(source_sets(u32::MAX), None);
    }

    #[test]
    fn every_flag_value_in_range_has_entries_and_none_beyond() {
        for map in ["sources", "block_slots", "allow_v4_lpm", "allow_filter"] {
            let flag = sized_by(map).unwrap();
            let end = *flag.range().end();
            assert!(entries_for(map, end).is_some_and(|n| n > 0), "{map}");
            assert!(entries_for(map, 1).is_some_and(|n| n > 0), "{map}");
            assert_eq!(entries_for(map, 0), None, "{map}");
            if end < u32::MAX {
                assert_eq!(entries_for(map, end + 1), None, "{map}");
            }
        }
        // Fixed-size maps do not follow --max-rules (range_bits used to).
        for map in ["range_bits", "ports", "fw_config"] {
            assert_eq!(sized_by(map), None, "{map}");
        }
        let err = Flag::MaxSources.check(u32::MAX).unwrap_err().to_string();
        assert!(
            err.contains("--max-sources") && err.contains("1..=2147483648"),
            "{err}"
        );
        let err = Flag::MaxRules.check(0).unwrap_err().to_string();
        assert!(
            err.contains("--max-rules") && err.contains("1..=1073741824"),
            "{err}"
        );
    }

    #[test]
    fn preallocated_bytes_follow_the_kernels_layout() {
        // Values are 8-byte aligned; mmapable arrays take whole pages.
        assert_eq!(
            preallocated_bytes(&array("a", 20, 10, false), 10, 4),
            10 * 24
        );
        assert_eq!(preallocated_bytes(&array("a", 8, 1, true), 1, 4), 4096);
        let percpu = MapShape {
            map_type: MapType::PercpuArray,
            ..array("p", 8, 2, false)
        };
        assert_eq!(preallocated_bytes(&percpu, 2, 4), 2 * 8 * 4);
        let trie = &firewall_shapes()[0];
        assert_eq!(preallocated_bytes(trie, u32::MAX, 4), 0);
    }

    #[test]
    fn the_default_firewall_takes_about_150_mib_and_grows_with_the_flags() {
        let shapes = firewall_shapes();
        let default = total_bytes(&shapes, Asked::default(), 2);
        // About 130 bytes per rule (both lists' slots, tags, filter and IPv4 elements) and 52
        // per source.
        let rules = 2 * (81_920 * 32 + 81_920 * 16 * 40 + 81_920 * 4 * 8 + 81_920 * 128);
        let sources = 65_536 * (192 + 16);
        let per_cpu = 2 * (12 * 32768 + 8192 + 32768 + 12288);
        let fixed = 2 * 65536 * 16 + 184 + (4096 + 2 * 16384) * 8 + per_cpu;
        assert_eq!(default, (rules + sources + fixed) as u64);
        assert!((130 << 20..160 << 20).contains(&default), "{default}");
        // 300 million rules: the 13 GB the kernel ground through before failing, and more.
        let huge = Asked {
            max_rules: Some(300_000_000),
            ..Asked::default()
        };
        assert!(total_bytes(&shapes, huge, 2) > 30_000_000_000);
        // The largest values do not overflow u64.
        let largest = Asked {
            max_rules: Some(MAX_RULES),
            max_sources: Some(MAX_SOURCES),
        };
        assert!(total_bytes(&shapes, largest, 2) > total_bytes(&shapes, huge, 2));
    }

    #[test]
    fn a_flag_too_big_for_the_memory_is_named_with_its_bytes_and_what_fits() {
        let shapes = firewall_shapes();
        let limit = 4 << 30;
        let asked = Asked {
            max_rules: Some(300_000_000),
            ..Asked::default()
        };
        let err = check(&shapes, asked, limit, 2).unwrap_err().to_string();
        assert!(err.contains("--max-rules 300000000"), "{err}");
        assert!(err.contains("bytes") && err.contains("MemTotal"), "{err}");
        let largest = largest_fitting(&shapes, asked, Flag::MaxRules, limit, 2);
        assert!(err.contains(&format!("1..={largest}")), "{err}");
        assert!(total_bytes(&shapes, asked.with(Flag::MaxRules, largest), 2) <= limit);
        assert!(total_bytes(&shapes, asked.with(Flag::MaxRules, largest + 1), 2) > limit);
        // About 4 GiB / 110 bytes.
        assert!((30_000_000..45_000_000).contains(&largest), "{largest}");

        let sources = Asked {
            max_sources: Some(MAX_SOURCES),
            ..Asked::default()
        };
        let err = check(&shapes, sources, limit, 2).unwrap_err().to_string();
        assert!(err.contains("--max-sources 2147483648"), "{err}");
        assert!(check(&shapes, Asked::default(), limit, 2).is_ok());
    }

    #[test]
    fn mem_total_parses_in_bytes() {
        let meminfo = "MemTotal:       24683584 kB\nMemFree:        1 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24_683_584 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(human(1536 << 20), "1.5 GiB");
        assert_eq!(human(12), "12 bytes");
    }
}
