//! The firewall's ABI (the structs and constants of include/xdpctl.h) and its global maps:
//! pinned under `<pin root>/rules/`, shared by every interface that runs the firewall, created
//! at the first `load` or rule edit, and reused (never recreated) after that, so rules survive
//! xdpctl exiting and a program replace.

pub mod exact;
pub mod load;
pub mod map_budget;
pub mod model;
pub mod pinset;
pub mod range_filter;
pub mod rules;
pub mod talkers;

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, OpenObject};

use crate::skel::firewall::types as abi;
use crate::sys::clock::monotonic_ns;
use crate::sys::locks::{self, NamedLock};
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

// SAFETY: plain-old-data structs of integers: any bytes are a valid value.
unsafe impl plain::Plain for Config {}
unsafe impl plain::Plain for Rule {}
unsafe impl plain::Plain for PortRule {}
unsafe impl plain::Plain for Source {}
unsafe impl plain::Plain for SourceSet {}
unsafe impl plain::Plain for SourceIndex {}
unsafe impl plain::Plain for FwStats {}

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

/// What the rate limit counts (enum fw_rl_proto).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitProto {
    /// Every packet.
    #[default]
    All,
    Udp,
    Tcp,
    /// ICMP and ICMPv6.
    Icmp,
    /// TCP SYNs without ACK: SYN floods.
    Syn,
}

impl RateLimitProto {
    pub fn to_abi(self) -> u32 {
        use crate::abi::*;
        match self {
            RateLimitProto::All => FW_RL_ALL,
            RateLimitProto::Udp => FW_RL_UDP,
            RateLimitProto::Tcp => FW_RL_TCP,
            RateLimitProto::Icmp => FW_RL_ICMP,
            RateLimitProto::Syn => FW_RL_SYN,
        }
    }

    pub fn from_abi(value: u32) -> RateLimitProto {
        use crate::abi::*;
        match value {
            FW_RL_UDP => RateLimitProto::Udp,
            FW_RL_TCP => RateLimitProto::Tcp,
            FW_RL_ICMP => RateLimitProto::Icmp,
            FW_RL_SYN => RateLimitProto::Syn,
            _ => RateLimitProto::All,
        }
    }
}

/// The rate limit settings (the rl_ fields of struct fw_config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub enabled: bool,
    /// Tokens (packets) per second.
    pub pps: u64,
    /// Bucket size, in packets.
    pub burst: u64,
    /// Auto-block an over-limit source this long; 0: only drop its excess.
    pub block_for_ns: u64,
    pub proto: RateLimitProto,
}

impl RateLimit {
    /// Nanoseconds for an empty bucket to fill (burst * TOKEN / pps), as the program reads it
    /// from fw_config.rl_full_ns; computed once here so the program never divides.
    /// In u128 and saturating: burst * TOKEN overflows u64 past 18 billion packets.
    pub fn full_ns(&self) -> u64 {
        if self.pps == 0 {
            return 0;
        }
        let full = u128::from(self.burst) * u128::from(TOKEN) / u128::from(self.pps);
        u64::try_from(full).unwrap_or(u64::MAX)
    }

    pub fn of_config(config: &Config) -> RateLimit {
        RateLimit {
            enabled: config.rl_enabled != 0,
            pps: config.rl_pps,
            burst: config.rl_burst,
            block_for_ns: config.rl_block_for_ns,
            proto: RateLimitProto::from_abi(config.rl_proto),
        }
    }
}

/// The range tries, in the order `FirewallMaps::trie` indexes them.
pub const TRIE_MAPS: [&str; 4] = [
    "allow_v4_lpm",
    "allow_v6_lpm",
    "block_v4_lpm",
    "block_v6_lpm",
];
/// The exact tables' arrays, in (list, array) order: Allow then Block; tags, slots, filter.
pub const EXACT_MAPS: [[&str; 3]; 2] = [
    ["allow_tags", "allow_slots", "allow_filter"],
    ["block_tags", "block_slots", "block_filter"],
];
/// The other global (pinned, shared) maps of the firewall.
pub const OTHER_GLOBAL_MAPS: [&str; 5] = [
    "ports",
    "fw_config",
    "sources",
    "source_index",
    "range_bits",
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
#[derive(Clone, Copy, Debug, Default)]
pub struct Sizes {
    pub max_rules: Option<u32>,
    pub max_sources: Option<u32>,
}

/// Which list a prefix rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum List {
    Allow = 0,
    Block = 1,
}

/// A random 64-bit number, for hash seeds.
fn random_u64() -> Result<u64> {
    let mut seed = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .context("reading a seed from /dev/urandom")?;
    Ok(u64::from_ne_bytes(seed))
}

/// Handles to the global maps, however they were found (pins, or a loaded object in tests).
pub struct FirewallMaps {
    /// In TRIE_MAPS order: per list (allow, block), IPv4 then IPv6.
    tries: Vec<MapHandle>,
    /// Per list (Allow, Block): the exact table's tags, slots and filter.
    exact: [[MapHandle; 3]; 2],
    pub ports: MapHandle,
    pub config: MapHandle,
    pub sources: MapHandle,
    /// The source table's index (struct fw_source_index), an entry per set of `sources`.
    pub source_index: MapHandle,
    range_bits: MapHandle,
    /// The name of the lock that serialises rule edits (None: maps opened only for reading).
    edit_lock: Option<String>,
}

impl FirewallMaps {
    /// Gathers the global maps from a lookup by name.
    fn gather(
        mut find: impl FnMut(&str) -> Result<MapHandle>,
        edit_lock: Option<String>,
    ) -> Result<FirewallMaps> {
        let mut arrays = |names: [&str; 3]| -> Result<[MapHandle; 3]> {
            Ok([find(names[0])?, find(names[1])?, find(names[2])?])
        };
        let exact = [arrays(EXACT_MAPS[0])?, arrays(EXACT_MAPS[1])?];
        Ok(FirewallMaps {
            tries: TRIE_MAPS
                .iter()
                .map(|name| find(name))
                .collect::<Result<_>>()?,
            exact,
            ports: find("ports")?,
            config: find("fw_config")?,
            sources: find("sources")?,
            source_index: find("source_index")?,
            range_bits: find("range_bits")?,
            edit_lock,
        })
    }

    /// The pinned maps, if the firewall's maps exist yet.
    pub fn open_pinned() -> Result<Option<FirewallMaps>> {
        FirewallMaps::open_pinned_at(&rules_dir())
    }

    /// The maps pinned in `dir` (a pin root's `rules`), if they exist. A partial set is an
    /// error that says how to repair it.
    pub fn open_pinned_at(dir: &std::path::Path) -> Result<Option<FirewallMaps>> {
        match crate::firewall::pinset::state(dir) {
            crate::firewall::pinset::PinState::Absent => return Ok(None),
            crate::firewall::pinset::PinState::Partial(missing) => {
                return Err(crate::firewall::pinset::incomplete_error(dir, &missing))
            }
            crate::firewall::pinset::PinState::Complete => {}
        }
        let open = |name: &str| {
            MapHandle::from_pinned_path(dir.join(name))
                .with_context(|| format!("opening the pinned map {}", dir.join(name).display()))
        };
        FirewallMaps::gather(open, Some(lock_name("edit"))).map(Some)
    }

    /// The pinned maps, creating them (by loading the firewall once, unattached) if needed, so
    /// rules can be set before the firewall is loaded anywhere. Missing pins of a firewall that
    /// runs are pinned again from it first: never an empty set beside a running one.
    pub fn open_or_create() -> Result<FirewallMaps> {
        pins::ensure_bpffs()?;
        if let Some(note) = crate::firewall::pinset::repair(&rules_dir())? {
            eprintln!("xdpctl: {note}");
        }
        if let Some(maps) = FirewallMaps::open_pinned()? {
            return Ok(maps);
        }
        let source = crate::sys::programs::Source::from_args(Some("firewall"), None)?;
        drop(load::load_program(&source, None, Sizes::default())?);
        FirewallMaps::open_pinned()?.context("the firewall's maps were not pinned")
    }

    /// The global maps a loaded firewall program uses, found among its own maps: the rules of
    /// the firewall that really runs there, whatever pin root loaded it. None if the program
    /// lacks any of them (it is not the firewall), or they cannot be opened. For reading: edits
    /// take no lock here.
    pub fn of_program(program: &crate::sys::attach::ProgramSummary) -> Option<FirewallMaps> {
        let mut found = global_maps_of(program).ok()??;
        FirewallMaps::gather(|name| found.remove(name).context("missing"), None).ok()
    }

    /// The maps of a loaded firewall object (tests load it without pins).
    pub fn from_object(object: &Object) -> Result<FirewallMaps> {
        let find = |name: &str| -> Result<MapHandle> {
            let map = object
                .maps()
                .find(|map| map.name() == name)
                .with_context(|| format!("the object has no map {name}"))?;
            MapHandle::try_from(&map).with_context(|| format!("duplicating map {name}"))
        };
        let maps = FirewallMaps::gather(find, None)?;
        maps.init_tables()?;
        Ok(maps)
    }

    /// Gives new tables their sizes and random hash seeds, once: tables that have them keep
    /// them, or entries would move to other buckets and sets.
    pub fn init_tables(&self) -> Result<()> {
        let mut config = self.config()?;
        let mut changed = false;
        if config.source_set_mask == 0 && self.sources.max_entries() > 1 {
            config.source_set_mask = self.sources.max_entries() - 1;
            config.source_seed = random_u64()? as u32;
            changed = true;
        }
        if config.exact_buckets == 0 {
            config.exact_buckets = self.exact[0][0].max_entries();
            config.exact_seed = random_u64()?;
            changed = true;
        }
        if changed {
            self.set_config(&config)?;
        }
        Ok(())
    }

    /// The range trie of one list and family.
    pub fn trie(&self, list: List, ipv6: bool) -> &MapHandle {
        &self.tries[list as usize * 2 + ipv6 as usize]
    }

    /// A list's exact table, mapped into this process.
    pub fn exact_table(&self, list: List) -> Result<crate::firewall::exact::Table> {
        let config = self.config()?;
        let [tags, slots, filter] = &self.exact[list as usize];
        crate::firewall::exact::Table::open(
            [tags, slots, filter],
            config.exact_buckets,
            config.exact_seed,
        )
    }

    /// The half of a list's presence filter the program reads.
    pub fn exact_filter_half(&self, list: List) -> Result<usize> {
        Ok((self.config()?.exact_filter_half as usize >> list as usize) & 1)
    }

    /// Counts `removed` entries gone from a list's exact table (`table`, as `exact_table` maps
    /// it; their filter bits stay), and once they are an eighth of the table's lanes, or the
    /// table was emptied, rebuilds the filter's other half and switches the program to it.
    /// Callers hold the edit lock.
    pub fn note_exact_removals(
        &self,
        table: &crate::firewall::exact::Table,
        list: List,
        removed: usize,
        emptied: bool,
    ) -> Result<()> {
        if removed == 0 && !emptied {
            return Ok(());
        }
        let mut config = self.config()?;
        let stale = &mut config.exact_filter_stale[list as usize];
        *stale = stale.saturating_add(removed.min(u32::MAX as usize) as u32);
        if emptied || *stale as usize >= table.capacity() / 8 {
            let other = 1 - ((config.exact_filter_half as usize >> list as usize) & 1);
            table.build_filter(other);
            config.exact_filter_half ^= 1 << list as u32;
            config.exact_filter_stale[list as usize] = 0;
        }
        self.set_config(&config)
    }

    /// The range filter, mapped into this process.
    pub fn range_filter(&self) -> Result<crate::firewall::range_filter::RangeFilter> {
        crate::firewall::range_filter::RangeFilter::open(&self.range_bits)
    }

    /// The fw_map_bit of a list's exact table, or of its trie for a family: per list (allow,
    /// then block), the exact table, the IPv4 trie, the IPv6 trie.
    pub fn rule_bit(list: List, trie_ipv6: Option<bool>) -> u32 {
        let list_base = list as usize * 3;
        1 << (list_base + trie_ipv6.map_or(0, |ipv6| 1 + ipv6 as usize))
    }

    /// Takes the lock that serialises rule and config edits between xdpctl processes (the
    /// kernel makes single updates atomic; this keeps multi-step edits, such as keeping
    /// maps_in_use true, whole).
    pub fn lock(&self) -> Result<Option<NamedLock>> {
        let Some(name) = &self.edit_lock else {
            return Ok(None);
        };
        locks::lock(name).map(Some).context("locking the rules")
    }

    /// Marks prefix maps as possibly holding entries (before inserting into them).
    pub fn mark_in_use(&self, bits: u32) -> Result<()> {
        let mut config = self.config()?;
        if config.maps_in_use & bits != bits {
            config.maps_in_use |= bits;
            self.set_config(&config)?;
        }
        Ok(())
    }

    /// Clears the in-use bit of every rule map that is empty, except the block list's exact
    /// table while auto-block may insert into it. Call with the edit lock held, after deleting.
    pub fn refresh_in_use(&self) -> Result<()> {
        let mut config = self.config()?;
        let auto_block = config.rl_enabled != 0 && config.rl_block_for_ns != 0;
        let mut in_use = 0;
        for list in [List::Allow, List::Block] {
            if !self.exact_table(list)?.is_empty() || (list == List::Block && auto_block) {
                in_use |= FirewallMaps::rule_bit(list, None);
            }
            for ipv6 in [false, true] {
                let trie = self.trie(list, ipv6);
                if trie.keys().next().is_some() {
                    in_use |= FirewallMaps::rule_bit(list, Some(ipv6));
                }
            }
        }
        if config.maps_in_use != in_use {
            config.maps_in_use = in_use;
            self.set_config(&config)?;
        }
        Ok(())
    }

    pub fn config(&self) -> Result<Config> {
        let bytes = self
            .config
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .context("reading fw_config")?
            .context("fw_config has no element")?;
        let mut config = Config::default();
        plain::copy_from_bytes(&mut config, &bytes)
            .map_err(|_| anyhow::anyhow!("fw_config size"))?;
        Ok(config)
    }

    pub fn set_config(&self, config: &Config) -> Result<()> {
        // SAFETY: Config is plain old data.
        let bytes = unsafe { plain::as_bytes(config) };
        self.config
            .update(&0u32.to_ne_bytes(), bytes, MapFlags::ANY)
            .context("writing fw_config")
    }

    pub fn rate_limit(&self) -> Result<RateLimit> {
        Ok(RateLimit::of_config(&self.config()?))
    }

    /// Writes the rate limit settings, leaving the rest of fw_config as it is.
    pub fn set_rate_limit(&self, rl: &RateLimit) -> Result<()> {
        let _lock = self.lock()?;
        let mut config = self.config()?;
        config.rl_enabled = rl.enabled as u32;
        config.rl_pps = rl.pps;
        config.rl_burst = rl.burst;
        config.rl_full_ns = rl.full_ns();
        config.rl_block_for_ns = rl.block_for_ns;
        config.rl_proto = rl.proto.to_abi();
        if rl.enabled && rl.block_for_ns != 0 {
            // Auto-block inserts into the block list's exact table: it must not be skipped.
            config.maps_in_use |= FirewallMaps::rule_bit(List::Block, None);
        }
        self.set_config(&config)
    }

    /// Fixes the firewall's clock at `now_ns` (tests only; 0 returns to the real clock).
    pub fn set_clock(&self, now_ns: u64) -> Result<()> {
        let mut config = self.config()?;
        config.now_override_ns = now_ns;
        self.set_config(&config)
    }

    /// The firewall's clock: CLOCK_MONOTONIC_COARSE (bpf_ktime_get_coarse_ns), or the tests'
    /// fixed clock.
    pub fn now_ns(&self) -> Result<u64> {
        let config = self.config()?;
        if config.now_override_ns != 0 {
            return Ok(config.now_override_ns);
        }
        Ok(monotonic_ns())
    }
}

/// The name of one of this instance's locks (`what`: "edit" or "maps"), per pin root.
pub(crate) fn lock_name(what: &str) -> String {
    lock_name_of(what, &pins::root())
}

fn lock_name_of(what: &str, root: &Path) -> String {
    format!("{what}{}", root.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_pin_root_locks_the_same_byte() {
        let lock = |what, root: &str| {
            locks::slot(&lock_name_of(what, &pins::normal_form(Path::new(root))))
        };
        for what in ["edit", "maps"] {
            for spelling in ["/sys/fs/bpf/x/", "/sys/fs/bpf//x", "/sys/fs/bpf/./x"] {
                assert_eq!(
                    lock(what, spelling),
                    lock(what, "/sys/fs/bpf/x"),
                    "{spelling}"
                );
            }
        }
        assert_ne!(lock("edit", "/sys/fs/bpf/x"), lock("edit", "/sys/fs/bpf/y"));
    }

    #[test]
    fn abi_sizes_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<Rule>(), 24);
        assert_eq!(std::mem::size_of::<PortRule>(), 16);
        assert_eq!(std::mem::size_of::<Config>(), 88);
        assert_eq!(std::mem::size_of::<ExactSlot>(), 40);
        assert_eq!(
            std::mem::size_of::<ExactBucket>(),
            2 * crate::firewall::exact::LANES
        );
        assert_eq!(std::mem::size_of::<Source>(), 48);
        assert_eq!(std::mem::size_of::<SourceSet>(), 48 * SOURCE_WAYS);
        assert_eq!(std::mem::size_of::<SourceIndex>(), 4 * SOURCE_WAYS);
        assert_eq!(std::mem::size_of::<FwStats>(), (5 + 4 + 4) * 8);
    }

    #[test]
    fn rule_bits_are_the_programs() {
        // enum fw_map_bit in include/xdpctl.h, through bindgen.
        let bits = [
            FirewallMaps::rule_bit(List::Allow, None),
            FirewallMaps::rule_bit(List::Allow, Some(false)),
            FirewallMaps::rule_bit(List::Allow, Some(true)),
            FirewallMaps::rule_bit(List::Block, None),
            FirewallMaps::rule_bit(List::Block, Some(false)),
            FirewallMaps::rule_bit(List::Block, Some(true)),
        ];
        use crate::abi::*;
        assert_eq!(
            bits,
            [
                FW_ALLOW_EXACT,
                FW_ALLOW_V4_LPM,
                FW_ALLOW_V6_LPM,
                FW_BLOCK_EXACT,
                FW_BLOCK_V4_LPM,
                FW_BLOCK_V6_LPM
            ]
        );
    }

    #[test]
    fn a_bucket_fill_time_saturates_rather_than_wrapping() {
        let rl = |burst, pps| {
            RateLimit {
                burst,
                pps,
                ..RateLimit::default()
            }
            .full_ns()
        };
        assert_eq!(rl(20, 10), 2 * TOKEN);
        assert_eq!(rl(20_000_000_000, 1_000_000_000), 20 * TOKEN);
        assert_eq!(rl(u64::MAX, 1), u64::MAX);
        assert_eq!(rl(5, 0), 0);
    }

    #[test]
    fn rate_limit_proto_round_trips() {
        for proto in [
            RateLimitProto::All,
            RateLimitProto::Udp,
            RateLimitProto::Tcp,
            RateLimitProto::Icmp,
            RateLimitProto::Syn,
        ] {
            assert_eq!(RateLimitProto::from_abi(proto.to_abi()), proto);
        }
    }
}
