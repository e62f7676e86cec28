//! Removing the pin set (`unload --all`): only once nothing uses its maps, and never on a
//! guess (see [`crate::sys::map_users`]).

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{lock_creation, pinned_ids, remove_stale_staging};
use crate::sys::attach::ProgramSummary;
use crate::{firewall, sys::map_users, sys::pins};

/// How long removal waits for programs that are going away (a detached link frees its program
/// from a kernel work queue, a moment after `unload` returns).
const USERS_GRACE: Duration = Duration::from_secs(1);

/// Removes the pin set (`unload --all`), unless a loaded program still uses its maps: removing
/// it then would leave that firewall running on maps no xdpctl command can reach. Returns
/// whether there was a set to remove.
pub fn remove_global_pins() -> Result<bool> {
    pins::ensure_bpffs()?;
    let _lock = lock_creation()?;
    let root = pins::root();
    let staged = !remove_stale_staging(&root)?.is_empty();
    let dir = firewall::rules_dir();
    if !dir.exists() {
        let _ = fs::remove_dir(&root);
        return Ok(staged);
    }
    let users = users_of_pin_set(&dir).map_err(|err| {
        anyhow::anyhow!(
            "could not tell who uses the maps in {}: {err:#}; nothing removed. Retry; if it \
             persists, run `xdpctl unload --all` where xdpctl may list every BPF program (as \
             root, outside a container or seccomp profile that restricts bpf)",
            dir.display()
        )
    })?;
    if !users.is_empty() {
        bail!("{}", map_users::refusal(&dir, &users));
    }
    pins::remove_pin_tree(&dir)?;
    let _ = fs::remove_dir(&root);
    Ok(true)
}

/// The loaded programs that use the maps pinned in `dir`, and the firewalls of this pin root's
/// `xdpctl run`s (whose maps may be pinned nowhere now), once programs that are going away had
/// a moment to go.
fn users_of_pin_set(dir: &Path) -> Result<Vec<ProgramSummary>> {
    let ids: HashSet<u32> = pinned_ids(dir)?.into_values().collect();
    let deadline = Instant::now() + USERS_GRACE;
    loop {
        let runs: HashSet<u32> = map_users::run_links()?
            .into_iter()
            .map(|(_, _, link)| link.prog_id)
            .collect();
        let mut users = Vec::new();
        for program in map_users::loaded_programs()? {
            let uses = program.map_ids.iter().any(|id| ids.contains(id));
            if uses || runs.contains(&program.id) && firewall::global_maps_of(&program)?.is_some() {
                users.push(program);
            }
        }
        if users.is_empty() || Instant::now() >= deadline {
            return Ok(users);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
