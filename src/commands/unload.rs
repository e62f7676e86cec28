//! `xdpctl unload`: detach xdpctl's programs and remove their pins.

use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::attach;
use crate::cli::UnloadArgs;
use crate::pins::{self, Owner};
use crate::pinset;
use crate::privileges;

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
    let link_path = pins::link_path(ifname);
    if link_path.exists() {
        let link = attach::open_pinned(&link_path)?;
        let info = attach::link_summary(link.as_fd())?;
        if info.ifindex != 0 {
            attach::detach_link(link.as_fd()).map_err(|err| {
                anyhow::anyhow!("detaching link id {} from {ifname}: {err}", info.id)
            })?;
        }
        pins::remove_interface_dir(ifname)?;
        return Ok(if info.ifindex == 0 {
            format!("Removed the pins of {ifname}, which no longer exists")
        } else {
            format!("Unloaded program id {} from {ifname}", info.prog_id)
        });
    }
    pins::remove_interface_dir(ifname)?;
    let ifindex = attach::ifindex(ifname)?;
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
        _ => bail!(
            "{ifname}'s XDP program (id {}, '{name}') was not loaded by xdpctl: remove it with \
             the tool that loaded it (e.g. `ip link set dev {ifname} xdp off`)",
            current.prog_id
        ),
    }
}
