//! Loading a program with the firewall's global maps in place: the firewall's own program gets
//! the pinned set (created at the sizes asked, inside a staging directory, or reused), any
//! other program loads as it is.

use anyhow::Result;
use libbpf_rs::{Object, OpenObject};

use crate::firewall::pinset::{self, Prepared};
use crate::firewall::{FirewallMaps, Sizes};
use crate::sys::programs::{self, CarryOver, Loaded, Preparation, Source};

/// Loads `source`; when it is the built-in firewall, with the global maps of this pin root.
pub fn load_program(
    source: &Source,
    carry_over: Option<CarryOver>,
    sizes: Sizes,
) -> Result<Loaded> {
    let is_firewall = matches!(source, Source::Builtin(b) if b.name == "firewall");
    programs::load_prepared(source, carry_over, |open: &mut OpenObject, _name: &str| {
        if !is_firewall {
            return Ok(None);
        }
        // Holds the creation lock until the maps it created are pinned in place.
        let prepared = pinset::prepare_global_maps(open, sizes)?;
        Ok(Some(Box::new(prepared) as Box<dyn Preparation>))
    })
}

impl Preparation for Prepared {
    fn hint(&self, err: &libbpf_rs::Error, log: &str) -> Option<String> {
        self.allocation_hint(err, log)
    }

    fn finish(self: Box<Self>, object: &Object) -> Result<()> {
        // Seeds first: a pin set is put in place whole, tables initialised.
        FirewallMaps::from_object(object)?;
        Prepared::finish(*self)
    }
}

/// The sizes a program is verified with by [`verify_program`]: small, as the verifier's
/// verdict does not depend on them.
const VERIFY_SIZE: u32 = 64;

/// Loads `source` through the verifier and unloads it again, attaching and pinning nothing:
/// the built-in firewall gets small maps of its own instead of the pinned set. Returns the
/// program's name and tag.
pub fn verify_program(source: &Source) -> Result<(String, [u8; 8])> {
    let is_firewall = matches!(source, Source::Builtin(b) if b.name == "firewall");
    let loaded = programs::load_prepared(source, None, |open: &mut OpenObject, _name: &str| {
        if is_firewall {
            for mut map in open.maps_mut() {
                let name = map.name().to_string_lossy().into_owned();
                if let Some(entries) = crate::firewall::map_budget::entries_for(&name, VERIFY_SIZE)
                {
                    map.set_max_entries(entries)?;
                }
            }
        }
        Ok(None)
    })?;
    let tag = crate::sys::attach::program_summary_by_fd(loaded.fd())?.tag;
    Ok((loaded.name().to_owned(), tag))
}
