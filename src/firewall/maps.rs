//! The handle to the firewall's global maps, and every invariant it keeps when they are
//! opened, created, seeded and edited.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use super::{
    global_maps_of, load, rules_dir, Config, List, RateLimit, Sizes, EXACT_MAPS, TRIE_MAPS,
};
use crate::sys::clock::monotonic_ns;
use crate::sys::locks::{self, NamedLock};
use crate::sys::pins;

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
    /// Per list (Allow, Block): the exact table's tags, slots, filter and IPv4 elements.
    exact: [[MapHandle; 4]; 2],
    pub ports: MapHandle,
    pub config: MapHandle,
    pub sources: MapHandle,
    /// The source table's index (struct fw_source_index), an entry per set of `sources`.
    pub source_index: MapHandle,
    range_bits: MapHandle,
    /// Prefix limits: each CPU's sketches (struct fw_hhh_chunk) and heavy prefixes.
    pub hhh_counts: MapHandle,
    pub hhh_heavy: MapHandle,
    /// Rule hits not yet in their rules' counters, per CPU (struct fw_hit_cache).
    pub hit_cache: MapHandle,
    /// Each CPU's leases of sources' tokens (struct fw_leases).
    pub source_leases: MapHandle,
    /// The name of the lock that serialises rule edits (None: maps opened only for reading).
    edit_lock: Option<String>,
}

impl FirewallMaps {
    /// Gathers the global maps from a lookup by name.
    fn gather(
        mut find: impl FnMut(&str) -> Result<MapHandle>,
        edit_lock: Option<String>,
    ) -> Result<FirewallMaps> {
        let mut arrays = |names: [&str; 4]| -> Result<[MapHandle; 4]> {
            Ok([
                find(names[0])?,
                find(names[1])?,
                find(names[2])?,
                find(names[3])?,
            ])
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
            hhh_counts: find("hhh_counts")?,
            hhh_heavy: find("hhh_heavy")?,
            hit_cache: find("hit_cache")?,
            source_leases: find("source_leases")?,
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
        let [tags, slots, filter, v4] = &self.exact[list as usize];
        crate::firewall::exact::Table::open(
            [tags, slots, filter, v4],
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
        let mut in_use = auto_block_bits(&config);
        for list in [List::Allow, List::Block] {
            if !self.exact_table(list)?.is_empty() {
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
        let cpus = crate::sys::cpus::online()?;
        write_rate_limit(&mut config, rl, cpus);
        // Limits per window follow the per-source rate they are bounded by.
        let prefixes = crate::firewall::prefix_limits::PrefixLimits::of_config(&config);
        let seed = config.hhh_seed;
        prefixes.write_to(&mut config, rl, cpus, seed);
        config.maps_in_use |= auto_block_bits(&config);
        self.set_config(&config)
    }

    /// Sets the rate limit and the prefix limits it bounds, in one write of fw_config.
    pub fn set_rate_limit_and_prefixes(
        &self,
        rl: &RateLimit,
        limits: &crate::firewall::prefix_limits::PrefixLimits,
    ) -> Result<()> {
        let _lock = self.lock()?;
        let mut config = self.config()?;
        let cpus = crate::sys::cpus::online()?;
        write_rate_limit(&mut config, rl, cpus);
        let seed = match config.hhh_seed {
            0 => (random_u64()? as u32).max(1),
            seed => seed,
        };
        limits.write_to(&mut config, rl, cpus, seed);
        config.maps_in_use |= auto_block_bits(&config);
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

fn write_rate_limit(config: &mut Config, rl: &RateLimit, cpus: u32) {
    config.rl_lease_max = rl.lease_max(cpus);
    config.rl_enabled = rl.enabled as u32;
    config.rl_pps = rl.pps;
    config.rl_burst = rl.burst;
    config.rl_full_ns = rl.full_ns();
    config.rl_block_for_ns = rl.block_for_ns;
    config.rl_proto = rl.proto.to_abi();
}

/// The block list's maps the program itself may insert into, so they must never be skipped:
/// the exact table while auto-block is on, both tries while prefix limits block.
fn auto_block_bits(config: &Config) -> u32 {
    let mut bits = 0;
    if config.rl_enabled != 0 && config.rl_block_for_ns != 0 {
        bits |= FirewallMaps::rule_bit(List::Block, None);
    }
    if config.rl_enabled != 0 && config.hhh_window_shift != 0 && config.hhh_block_for_ns != 0 {
        bits |= FirewallMaps::rule_bit(List::Block, Some(false));
        bits |= FirewallMaps::rule_bit(List::Block, Some(true));
    }
    bits
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
}
