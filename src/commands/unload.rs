//! `xdpctl unload`: detach xdpctl's programs and remove their pins.

use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::parsers::interface_name;
use crate::firewall::pinset;
use crate::sys::attach;
use crate::sys::pins::{self, Owner};
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct UnloadArgs {
    /// The interface to detach from.
    #[arg(required_unless_present = "all", conflicts_with = "all", value_parser = interface_name)]
    pub interface: Option<String>,

    /// Detach from every interface xdpctl has pins for.
    #[arg(short, long)]
    pub all: bool,
}

pub fn run(args: &UnloadArgs) -> Result<ExitCode> {
    privileges::require("unload")?;
    pins::ensure_bpffs()?;
    let Some(ifname) = &args.interface else {
        return unload_all();
    };
    println!("{}", unload(ifname)?);
    Ok(ExitCode::SUCCESS)
}

fn unload_all() -> Result<ExitCode> {
    let (messages, errors) = unload_everything();
    for message in &messages {
        println!("{message}");
    }
    for err in &errors {
        eprintln!("xdpctl: error: {err:#}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Detaches every program xdpctl pinned in this network namespace, drops stale pins of gone
/// namespaces, and removes the firewall's rules once no program uses them: `unload --all`. Returns what it did and what failed.
pub fn unload_everything() -> (Vec<String>, Vec<anyhow::Error>) {
    let mut messages = Vec::new();
    let mut errors = Vec::new();
    match pins::pinned_interfaces() {
        Ok(names) if names.is_empty() => messages
            .push("No interface has a program from xdpctl in this network namespace.".to_owned()),
        Ok(names) => {
            for ifname in names {
                match unload(&ifname) {
                    Ok(message) => messages.push(message),
                    Err(err) => errors.push(err),
                }
            }
        }
        Err(err) => errors.push(err),
    }
    match pins::remove_defunct_pins_of_other_namespaces() {
        Ok(removed) => messages.extend(removed.into_iter().map(|dir| {
            format!("Removed the stale pins {dir} of a network namespace that is gone")
        })),
        Err(err) => errors.push(err),
    }
    // The firewall's rules go too, unless a program still uses them (in any network
    // namespace): then they stay, and the error names it.
    match pinset::remove_global_pins() {
        Ok(true) => messages.push("Removed the firewall's rules and maps.".to_owned()),
        Ok(false) => {}
        Err(err) => errors.push(err),
    }
    (messages, errors)
}

/// Detaches xdpctl's pinned program from `ifname` and removes its pins.
pub fn unload(ifname: &str) -> Result<String> {
    // The name becomes a path: refuse one that is no interface name before touching anything.
    crate::sys::ifname::validate(ifname)?;
    let link_path = pins::link_path(ifname)?;
    // A pin whose interface is gone still leads to its link: that is how the pins of a deleted
    // interface get cleaned. Otherwise the interface must exist.
    if let Some(link) = open_link_pin(&link_path)? {
        return unload_pinned(ifname, &link);
    }
    let ifindex = match attach::ifindex(ifname) {
        Ok(ifindex) => ifindex,
        Err(_) if pins::interface_dir(ifname)?.exists() => {
            pins::remove_interface_dir(ifname)?;
            return Ok(format!(
                "Removed the leftover pins of {ifname}, which no longer exists"
            ));
        }
        Err(err) => return Err(err),
    };
    // A pin directory without a link (a load that died half-way) is of no use.
    pins::remove_interface_dir(ifname)?;
    let Some(current) = attach::query(ifindex)?.into_iter().next() else {
        bail!("{ifname} has no XDP program to unload");
    };
    let name = attach::program_summary(current.prog_id)
        .map(|p| p.name)
        .unwrap_or_else(|_| "?".into());
    match pins::owner(ifname, ifindex, &current) {
        Owner::Foreground { pid, .. } => bail!(
            "{ifname}'s program (id {}, '{name}') belongs to `xdpctl run` (pid {pid}): \
             stop that process (Ctrl-C) and it detaches",
            current.prog_id
        ),
        Owner::OtherInstance { root, .. } => bail!(
            "{ifname}'s XDP program (id {}, '{name}') is not this xdpctl's to unload: {}",
            current.prog_id,
            pins::other_instance_hint(ifname, &root)
        ),
        _ => bail!(
            "{ifname}'s XDP program (id {}, '{name}') was not loaded by xdpctl: remove it with \
             the tool that loaded it (e.g. `ip link set dev {ifname} xdp off`)",
            current.prog_id
        ),
    }
}

/// The pinned link, or None if there is no pin (or it went while we looked: a concurrent
/// unload).
fn open_link_pin(path: &std::path::Path) -> Result<Option<OwnedFd>> {
    if !path.exists() {
        return Ok(None);
    }
    match attach::open_pinned(path) {
        Ok(link) => Ok(Some(link)),
        Err(_) if !path.exists() => Ok(None),
        Err(err) => Err(err),
    }
}

/// Detaches the pinned link and removes the pins, saying what it found: a live link, one whose
/// interface is gone, or one another unload detached meanwhile.
fn unload_pinned(ifname: &str, link: &OwnedFd) -> Result<String> {
    let info = attach::link_summary(link.as_fd())?;
    if info.ifindex != 0 {
        attach::detach_link(link.as_fd()).map_err(|err| {
            anyhow::anyhow!(
                "detaching link id {} from {ifname}: {}",
                info.id,
                attach::link_error(&err)
            )
        })?;
        pins::remove_interface_dir(ifname)?;
        return Ok(format!(
            "Unloaded program id {} from {ifname}",
            info.prog_id
        ));
    }
    pins::remove_interface_dir(ifname)?;
    Ok(if attach::ifindex(ifname).is_err() {
        format!("Removed the pins of {ifname}, which no longer exists")
    } else {
        format!(
            "{ifname}'s program id {} had already been detached (by another unload, or {ifname} \
             was re-created since it was loaded): removed its pins",
            info.prog_id
        )
    })
}
