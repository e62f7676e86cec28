//! The firewall's global pin set, `<pin root>/rules/`: one pin per global map. It is whole or
//! absent, never half made: a first load pins its new maps into a staging directory beside it
//! and renames that into place once the load is done, so a load killed part-way leaves only a
//! staging directory, which the next load removes. When pins go missing (`rm`, a bad `unload`)
//! while a firewall still runs on the maps, they are pinned again from that program instead of
//! being created empty. And the set is removed only once no loaded program, in any network
//! namespace, uses its maps (the running programs are found through the kernel's ids, not
//! through this namespace's interfaces).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapHandle, OpenObject};

use crate::firewall::map_budget::{self, Asked, Flag, MapShape};
use crate::firewall::{self, Sizes};
use crate::sys::attach::{self, ProgramSummary};
use crate::sys::locks::{self, NamedLock};
use crate::sys::map_users;
use crate::sys::pins;

mod removal;

pub use removal::remove_global_pins;

use crate::sys::pins::STAGING_PREFIX;

/// Every global map, in pin order.
pub fn global_map_names() -> Vec<&'static str> {
    firewall::TRIE_MAPS
        .iter()
        .chain(firewall::EXACT_MAPS.iter().flatten())
        .chain(firewall::OTHER_GLOBAL_MAPS.iter())
        .copied()
        .collect()
}

/// What a pin set directory holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinState {
    /// None of the pins (the directory may not exist).
    Absent,
    Complete,
    /// Some pins, not all: these are missing.
    Partial(Vec<&'static str>),
}

pub fn state(dir: &Path) -> PinState {
    let names = global_map_names();
    let missing: Vec<&'static str> = names
        .iter()
        .copied()
        .filter(|name| !dir.join(name).exists())
        .collect();
    if missing.is_empty() {
        PinState::Complete
    } else if missing.len() == names.len() {
        PinState::Absent
    } else {
        PinState::Partial(missing)
    }
}

/// What a reader that does not repair (it takes no lock) says about a partial set: it may be
/// a repair half-way, so retrying is the first advice.
pub fn incomplete_error(dir: &Path, missing: &[&str]) -> anyhow::Error {
    anyhow::anyhow!(
        "the firewall's pin set {} is incomplete: {} missing. Another xdpctl may be pinning them \
         again right now: retry. If it stays so (a load was interrupted, a pin was removed, or \
         another version of xdpctl made it), `xdpctl list` pins them again from the firewall \
         that runs on these maps, or says what to do when none does",
        dir.display(),
        missing.join(", ")
    )
}

/// What repair says about a partial set when no loaded firewall uses the maps that are left,
/// so there is nothing to pin the missing ones from.
fn unrepairable_error(
    dir: &Path,
    missing: &[&str],
    remaining: &HashMap<&str, u32>,
) -> anyhow::Error {
    let mut ids: Vec<u32> = remaining.values().copied().collect();
    ids.sort_unstable();
    anyhow::anyhow!(
        "the firewall's pin set {} is incomplete: {} missing (a load was interrupted, a pin was \
         removed, or another version of xdpctl made it), and no loaded firewall uses the \
         remaining maps (ids {}) to pin them again from: run `xdpctl unload --all` (the \
         remaining rules are lost) and load again",
        dir.display(),
        missing.join(", "),
        ids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn lock_creation() -> Result<NamedLock> {
    locks::lock(&firewall::lock_name("maps")).context("locking the map creation")
}

/// The staging directories of killed loads under `root`. Only call with the creation lock held:
/// a load that is still running holds it until its staging directory is gone.
/// One that is already gone is no error (its load removed it as it failed).
fn remove_stale_staging(root: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = fs::read_dir(root) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            let path = entry.path();
            match fs::remove_dir_all(&path) {
                Ok(()) => removed.push(path),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("removing {}", path.display()))
                }
            }
        }
    }
    Ok(removed)
}

fn note_stale_staging(root: &Path) -> Result<()> {
    for path in remove_stale_staging(root)? {
        eprintln!(
            "xdpctl: removed {}, the unfinished pins of a load that was interrupted",
            path.display()
        );
    }
    Ok(())
}

/// A pin set being made: pins go into a staging directory, renamed into place by `commit`.
/// Dropped uncommitted, it removes the staging directory and whatever was pinned in it.
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    pub fn new(target: &Path) -> Result<Staging> {
        let root = target
            .parent()
            .context("the pin set has no parent directory")?;
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let dir = root.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging {
            dir,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Renames the staging directory into place, once it holds every pin.
    pub fn commit(mut self) -> Result<()> {
        let missing = match state(&self.dir) {
            PinState::Complete => Vec::new(),
            PinState::Absent => global_map_names(),
            PinState::Partial(missing) => missing,
        };
        if !missing.is_empty() {
            bail!(
                "the new pin set in {} lacks {}: not putting it in place",
                self.dir.display(),
                missing.join(", ")
            );
        }
        // rename(2) replaces an empty directory (a leftover of older versions) in one step.
        fs::rename(&self.dir, &self.target).with_context(|| {
            format!(
                "renaming {} to {} ({} must be absent or empty)",
                self.dir.display(),
                self.target.display(),
                self.target.display()
            )
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
            if let Some(root) = self.dir.parent() {
                let _ = fs::remove_dir(root);
            }
        }
    }
}

/// A firewall object whose global maps are set up for load: the creation lock, held until the
/// load is done, and the staging directory of maps being created. Dropped, it removes the
/// staging directory before it lets go of the lock: a load waiting for the lock would
/// otherwise find the directory and remove it too, under this one's hands.
pub struct Prepared {
    staging: Option<Staging>,
    /// The flags and bytes of the maps being created, for an allocation error.
    creating: Option<(Asked, u64)>,
    _lock: NamedLock,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Fields drop after this, the lock among them.
        drop(self.staging.take());
    }
}

impl Prepared {
    /// Puts newly created pins in place (after the load, and after the tables got their seeds).
    pub fn finish(mut self) -> Result<()> {
        match self.staging.take() {
            Some(staging) => staging.commit(),
            None => Ok(()),
        }
    }

    /// What to add to a failed load's error when the kernel could not allocate the maps.
    pub fn allocation_hint(&self, err: &libbpf_rs::Error, log: &str) -> Option<String> {
        let (asked, bytes) = self.creating?;
        let out_of_memory = err.kind() == libbpf_rs::ErrorKind::OutOfMemory
            || log.contains("Cannot allocate memory")
            || log.contains("Argument list too long");
        out_of_memory.then(|| {
            format!(
                "\nthe kernel could not allocate the firewall's maps (--max-rules {}, \
                 --max-sources {}: {bytes} bytes up front, {}): load with a smaller \
                 --max-rules or --max-sources",
                asked.max_rules.unwrap_or(crate::abi::FW_DEFAULT_MAX_RULES),
                asked
                    .max_sources
                    .unwrap_or(crate::abi::FW_DEFAULT_MAX_SOURCES),
                map_budget::human(bytes)
            )
        })
    }
}

/// Prepares a firewall object before load: each global map reuses its pin, or, for a first
/// load, is created at the requested size and pinned into a staging directory.
pub fn prepare_global_maps(open: &mut OpenObject, sizes: Sizes) -> Result<Prepared> {
    pins::ensure_bpffs()?;
    for (flag, value) in [
        (Flag::MaxRules, sizes.max_rules),
        (Flag::MaxSources, sizes.max_sources),
    ] {
        if let Some(value) = value {
            flag.check(value)?;
        }
    }
    let lock = lock_creation()?;
    let dir = firewall::rules_dir();
    note_stale_staging(&pins::root())?;
    if let Some(note) = repair_locked(&dir)? {
        eprintln!("xdpctl: {note}");
    }
    let asked = Asked {
        max_rules: sizes.max_rules,
        max_sources: sizes.max_sources,
    };
    match state(&dir) {
        PinState::Partial(missing) => Err(incomplete_error(&dir, &missing)),
        PinState::Complete => {
            reuse_pins(open, &dir, asked)?;
            Ok(Prepared {
                staging: None,
                creating: None,
                _lock: lock,
            })
        }
        PinState::Absent => {
            let shapes = global_shapes(open);
            let cpus = map_budget::possible_cpus();
            map_budget::check(&shapes, asked, map_budget::memory_limit()?, cpus)?;
            let staging = Staging::new(&dir)?;
            for mut map in open.maps_mut() {
                let name = map.name().to_string_lossy().into_owned();
                if !firewall::is_global_map(&name) {
                    continue;
                }
                let value = map_budget::sized_by(&name).and_then(|flag| match flag {
                    Flag::MaxRules => sizes.max_rules,
                    Flag::MaxSources => sizes.max_sources,
                });
                if let Some(value) = value {
                    let entries = map_budget::entries_for(&name, value)
                        .with_context(|| format!("no size for {name} at {value}"))?;
                    map.set_max_entries(entries)?;
                }
                map.set_pin_path(staging.path().join(&name))?;
            }
            Ok(Prepared {
                staging: Some(staging),
                creating: Some((asked, map_budget::total_bytes(&shapes, asked, cpus))),
                _lock: lock,
            })
        }
    }
}

/// The global maps of an object as it defines them.
fn global_shapes(open: &OpenObject) -> Vec<MapShape> {
    open.maps()
        .filter(|map| firewall::is_global_map(&map.name().to_string_lossy()))
        .map(|map| MapShape {
            name: map.name().to_string_lossy().into_owned(),
            map_type: map.map_type(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            map_flags: map.map_flags(),
            entries: map.max_entries(),
        })
        .collect()
}

/// Points the object's global maps at the complete pin set in `dir`, refusing other layouts and
/// sizes other than those asked for.
fn reuse_pins(open: &mut OpenObject, dir: &Path, asked: Asked) -> Result<()> {
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if !firewall::is_global_map(&name) {
            continue;
        }
        let path = dir.join(&name);
        let pinned = MapHandle::from_pinned_path(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // A map of a fixed size that differs (range_bits grew a level) is a layout of its own.
        let fixed_size_differs =
            map_budget::sized_by(&name).is_none() && pinned.max_entries() != map.max_entries();
        if pinned.map_type() != map.map_type()
            || pinned.key_size() != map.key_size()
            || pinned.value_size() != map.value_size()
            || fixed_size_differs
        {
            bail!(
                "the pinned map {} was made by another version of xdpctl (a different layout): \
                 save the rules (`xdpctl list --json`), run `xdpctl unload --all`, and load again",
                path.display()
            );
        }
        if let Some(flag) = map_budget::sized_by(&name) {
            let value = match flag {
                Flag::MaxRules => asked.max_rules,
                Flag::MaxSources => asked.max_sources,
            };
            let differs = value
                .is_some_and(|v| map_budget::entries_for(&name, v) != Some(pinned.max_entries()));
            if let Some(value) = value.filter(|_| differs) {
                // The size in the user's units: the rule maps are sized like the range tries.
                let current = match flag {
                    Flag::MaxSources => {
                        u64::from(pinned.max_entries()) * firewall::SOURCE_WAYS as u64
                    }
                    Flag::MaxRules => MapHandle::from_pinned_path(dir.join("block_v4_lpm"))
                        .map_or(0, |trie| u64::from(trie.max_entries())),
                };
                let flag = flag.name();
                bail!(
                    "the firewall's maps already exist for {flag} {current}, not {value}: they \
                     keep the size they were created with. To resize, save the rules (`xdpctl \
                     list --json`), run `xdpctl unload --all`, and load again with {flag} {value}"
                );
            }
        }
        map.set_max_entries(pinned.max_entries())?;
        map.reuse_fd(pinned.as_fd())
            .with_context(|| format!("reusing the pinned map {}", path.display()))?;
    }
    Ok(())
}

/// The ids of the maps pinned in `dir`, by name. A pin that is not there (ENOENT) is left out;
/// one that is there but will not open is an error: leaving it out could hide the firewall
/// that uses it.
fn pinned_ids(dir: &Path) -> Result<HashMap<&'static str, u32>> {
    let mut ids = HashMap::new();
    for name in global_map_names() {
        let path = dir.join(name);
        let opened = MapHandle::from_pinned_path(&path)
            .and_then(|map| map.info())
            .with_context(|| format!("opening the pinned map {}", path.display()));
        match opened {
            Ok(info) => {
                ids.insert(name, info.info.id);
            }
            Err(err) if pins::vanished(&err) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(ids)
}

/// Re-pins what is missing from the pin set in `dir` from the firewall that runs on it (found
/// by the ids of the pins that are left, or behind this pin root's pinned links and the links
/// of its live `xdpctl run`s). Returns what
/// it did; None when nothing was missing, or the set is absent and no firewall of this pin root
/// runs (the maps are then created as new). A partial set with no firewall to repair it from is
/// an error. Takes the creation lock.
pub fn repair(dir: &Path) -> Result<Option<String>> {
    if state(dir) == PinState::Complete {
        return Ok(None);
    }
    let _lock = lock_creation()?;
    note_stale_staging(&pins::root())?;
    repair_locked(dir)
}

fn repair_locked(dir: &Path) -> Result<Option<String>> {
    let missing = match state(dir) {
        PinState::Complete => return Ok(None),
        PinState::Absent => global_map_names(),
        PinState::Partial(missing) => missing,
    };
    let pinned = pinned_ids(dir)?;
    let pinned_set: HashSet<u32> = pinned.values().copied().collect();
    // This pin root's links: pinned by `load`, or held by a live `xdpctl run`.
    let linked = map_users::programs_of_this_root()?;
    if pinned_set.is_empty() && linked.is_empty() {
        // Nothing of this pin root left to find a firewall by: a first creation.
        return Ok(None);
    }
    let mut firewalls: Vec<(ProgramSummary, HashMap<String, MapHandle>)> = Vec::new();
    for program in map_users::loaded_programs()? {
        if !linked.contains(&program.id)
            && !program.map_ids.iter().any(|id| pinned_set.contains(id))
        {
            continue;
        }
        if let Some(maps) = firewall::global_maps_of(&program)? {
            firewalls.push((program, maps));
        }
    }
    if firewalls.is_empty() {
        if pinned.is_empty() {
            return Ok(None);
        }
        return Err(unrepairable_error(dir, &missing, &pinned));
    }
    // Every firewall found, and the pins left, must agree on each map: a firewall on other maps
    // is a split the user must resolve, not one to paper over.
    let mut ids: HashMap<&str, u32> = pinned.clone();
    for (program, maps) in &firewalls {
        for name in global_map_names() {
            let id = maps[name].info()?.info.id;
            if let Some(&other) = ids.get(name).filter(|&&other| other != id) {
                bail!(
                    "the firewall program id {} '{}' uses map {name} id {id}, but the pin set {} \
                     has id {other}: two firewalls run on different maps. Unload one (`xdpctl \
                     status` shows where each runs), then load again",
                    program.id,
                    program.name,
                    dir.display()
                );
            }
            ids.insert(name, id);
        }
    }
    let (program, maps) = firewalls.swap_remove(0);
    let pin_all = |into: &Path| -> Result<()> {
        for name in &missing {
            attach::pin_fd(maps[*name].as_fd(), &into.join(name))?;
        }
        Ok(())
    };
    if pinned.is_empty() {
        let staging = Staging::new(dir)?;
        pin_all(staging.path())?;
        staging.commit()?;
    } else {
        pin_all(dir)?;
    }
    Ok(Some(format!(
        "the firewall's pin set {} lacked {}: pinned again from the firewall that runs on the \
         maps (program id {} '{}'), rather than made empty",
        dir.display(),
        missing.join(", "),
        program.id,
        program.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_set_is_every_global_map_once() {
        let names = global_map_names();
        assert_eq!(names.len(), 21);
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names.iter().all(|name| firewall::is_global_map(name)));
    }

    #[test]
    fn a_missing_directory_is_absent_and_a_partial_one_names_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rules");
        assert_eq!(state(&dir), PinState::Absent);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(state(&dir), PinState::Absent);
        fs::write(dir.join("fw_config"), b"").unwrap();
        let PinState::Partial(missing) = state(&dir) else {
            panic!("one pin of 21 is partial");
        };
        assert_eq!(missing.len(), 20);
        assert!(!missing.contains(&"fw_config"));
        let err = incomplete_error(&dir, &missing).to_string();
        assert!(
            err.contains("block_v4_lpm") && err.contains("retry") && err.contains("xdpctl list"),
            "{err}"
        );
        let remaining = HashMap::from([("fw_config", 41)]);
        let err = unrepairable_error(&dir, &missing, &remaining).to_string();
        assert!(
            err.contains("block_v4_lpm")
                && err.contains("no loaded firewall uses the remaining maps (ids 41)")
                && err.contains("unload --all")
                && !err.contains("xdpctl list"),
            "{err}"
        );
        for name in global_map_names() {
            fs::write(dir.join(name), b"").unwrap();
        }
        assert_eq!(state(&dir), PinState::Complete);
    }

    #[test]
    fn a_failed_load_removes_its_staging_before_it_lets_go_of_the_lock() {
        // /run needs root; CI (XDPCTL_REQUIRE_ROOT) runs this as root.
        if !nix::unistd::geteuid().is_root() && std::env::var_os("XDPCTL_REQUIRE_ROOT").is_none() {
            eprintln!("skipped: needs root for /run/xdpctl");
            return;
        }
        let name = format!("test-prepared-{}", std::process::id());
        let tmp = tempfile::tempdir().unwrap();
        let staging = Staging::new(&tmp.path().join("rules")).unwrap();
        // Enough entries that removing them takes far longer than a lock waiter's naps.
        for n in 0..5000 {
            fs::write(staging.path().join(format!("pin{n}")), b"").unwrap();
        }
        let staged = staging.path().to_path_buf();
        let prepared = Prepared {
            staging: Some(staging),
            creating: None,
            _lock: locks::lock(&name).unwrap(),
        };
        let waiter = std::thread::spawn(move || {
            let _held = locks::lock(&name).unwrap();
            staged.exists()
        });
        // The waiter is waiting; the failed load ends.
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(prepared);
        assert!(
            !waiter.join().unwrap(),
            "the next load got the lock while the staging directory was still there"
        );
    }
}
