//! Attaching programs to interfaces through pinned bpf_links, and detaching them: what `load`,
//! `unload` and `apply` do. A link is pinned under the interface's pin directory, so the program
//! stays attached after xdpctl exits; replacing xdpctl's own program is atomic.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{bail, Context, Result};

use crate::firewall::load::load_program;
use crate::firewall::{pinset, Sizes};
use crate::sys::attach::{self, Attachment, RequestedMode};
use crate::sys::pins::{self, Owner};
use crate::sys::programs::{CarryOver, Loaded, Source};

/// Loads `source` onto `ifname` and pins its link; returns what happened, for the user. A
/// replace carries the maps named in `carried` (the counters) over from the program replaced.
pub fn load(
    ifname: &str,
    source: &Source,
    mode: RequestedMode,
    force: bool,
    sizes: Sizes,
    carried: &[&str],
) -> Result<String> {
    pins::ensure_bpffs()?;
    let ifindex = attach::ifindex(ifname)?;
    pins::remove_stale_pins(ifname, Some(ifindex))?;
    let attached = attach::query(ifindex)?;
    let Some(current) = attached.first() else {
        return attach_new(ifname, ifindex, source, mode, sizes);
    };
    let owner = pins::owner(ifname, ifindex, current);
    if !force {
        bail!("{}", already_attached(ifname, current, &owner));
    }
    match owner {
        Owner::Pinned { .. } => replace_own(ifname, current, source, mode, sizes, carried),
        Owner::Foreground { pid, .. } => {
            bail!("{ifname} is held by `xdpctl run` (pid {pid}): stop it (Ctrl-C) before loading")
        }
        Owner::OtherInstance { root, .. } => bail!(
            "{ifname}'s program {} cannot be replaced from here: {}",
            describe(current),
            pins::other_instance_hint(ifname, &root)
        ),
        Owner::Other => replace_other(ifname, ifindex, current, source, mode, sizes),
    }
}

fn describe(current: &Attachment) -> String {
    let name = attach::program_summary(current.prog_id)
        .map(|p| p.name)
        .unwrap_or_else(|_| "?".into());
    format!("id {} '{name}' ({} mode)", current.prog_id, current.mode)
}

fn already_attached(ifname: &str, current: &Attachment, owner: &Owner) -> String {
    let program = describe(current);
    match owner {
        Owner::Pinned { .. } => format!(
            "{ifname} already has xdpctl's XDP program {program}: replace it with --force, \
             or remove it with `xdpctl unload {ifname}`"
        ),
        Owner::Foreground { pid, .. } => format!(
            "{ifname} already has XDP program {program}, held by `xdpctl run` (pid {pid}): \
             stop that first"
        ),
        Owner::OtherInstance { root, .. } => format!(
            "{ifname} already has xdpctl's XDP program {program}, but {}",
            pins::other_instance_hint(ifname, root)
        ),
        Owner::Other => format!(
            "{ifname} already has an XDP program from another tool: {program}. Replace it with \
             --force, or remove it with the tool that loaded it (e.g. `ip link set dev {ifname} xdp off`)"
        ),
    }
}

fn attach_new(
    ifname: &str,
    ifindex: u32,
    source: &Source,
    mode: RequestedMode,
    sizes: Sizes,
) -> Result<String> {
    let loaded = load_program(source, None, sizes)?;
    attach_loaded(ifname, ifindex, &loaded, mode)
}

fn attach_loaded(
    ifname: &str,
    ifindex: u32,
    loaded: &Loaded,
    mode: RequestedMode,
) -> Result<String> {
    let (mode, link_id) = attach_pinned(ifname, ifindex, loaded.fd(), mode)?;
    Ok(format!(
        "Loaded {} on {ifname} in {mode} mode: program id {}, link id {link_id}, pinned at {}",
        loaded.name(),
        loaded.id()?,
        pins::link_path(ifname)?.display()
    ))
}

/// Attaches the program `prog` to `ifname` through a link pinned in the interface's pin
/// directory; returns the mode it got and the link's id.
pub fn attach_pinned(
    ifname: &str,
    ifindex: u32,
    prog: BorrowedFd<'_>,
    mode: RequestedMode,
) -> Result<(attach::AttachedMode, u32)> {
    let (link, mode) = attach::attach(prog, ifindex, ifname, mode)?;
    let link_path = pins::link_path(ifname)?;
    // If pinning fails, `link` is dropped on return and the kernel detaches the program: no
    // half-attached state is left behind.
    pins::create_interface_dir(ifname)
        .and_then(|_| attach::pin_fd(link.as_fd(), &link_path))
        .inspect_err(|_| {
            let _ = pins::remove_interface_dir(ifname);
        })?;
    Ok((mode, attach::link_summary(link.as_fd())?.id))
}

/// Swaps the program on xdpctl's pinned link of `ifname` from `old` to `new`, atomically: the
/// kernel refuses if `old` is not what the link runs.
pub fn swap_pinned(ifname: &str, old: BorrowedFd<'_>, new: BorrowedFd<'_>) -> Result<()> {
    let link = attach::open_pinned(&pins::link_path(ifname)?)?;
    attach::update_link(link.as_fd(), new, old)
}

fn replace_own(
    ifname: &str,
    current: &Attachment,
    source: &Source,
    mode: RequestedMode,
    sizes: Sizes,
    carried: &[&str],
) -> Result<String> {
    if !current.mode.satisfies(mode) {
        bail!(
            "{ifname} runs xdpctl's program in {} mode, and --force replaces it atomically only \
             within that mode: to switch modes, `xdpctl unload {ifname}` and load again",
            current.mode
        );
    }
    let link = attach::open_pinned(&pins::link_path(ifname)?)?;
    let link_id = attach::link_summary(link.as_fd())?.id;
    let old_prog = attach::program_fd(current.prog_id)?;
    let loaded = load_program(
        source,
        Some(CarryOver {
            from_prog_id: current.prog_id,
            maps: carried,
        }),
        sizes,
    )?;
    attach::update_link(link.as_fd(), loaded.fd(), old_prog.as_fd())?;
    Ok(format!(
        "Replaced program id {} on {ifname} with {} (program id {}) atomically, in {} mode \
         (link id {link_id})",
        current.prog_id,
        loaded.name(),
        loaded.id()?,
        current.mode
    ))
}

/// Another tool's program was attached through netlink: remove it, then attach ours. Netlink
/// and bpf_link attachments cannot be swapped atomically, so there is a brief gap; if our attach
/// fails, theirs is put back.
fn replace_other(
    ifname: &str,
    ifindex: u32,
    current: &Attachment,
    source: &Source,
    mode: RequestedMode,
    sizes: Sizes,
) -> Result<String> {
    let program = describe(current);
    let old_prog = attach::program_fd(current.prog_id)?;
    // Load (and verify) first, so a rejected program leaves the other tool's program alone.
    let loaded = load_program(source, None, sizes)?;
    attach::detach_netlink(ifindex, current.mode, old_prog.as_fd()).map_err(|err| {
        if err.raw_os_error() == Some(libc::EBUSY) {
            anyhow::anyhow!(
                "{ifname}'s program {program} is held by another tool's bpf_link, which only \
                 that tool can detach"
            )
        } else {
            anyhow::anyhow!("detaching {ifname}'s program {program}: {err}")
        }
    })?;
    eprintln!(
        "xdpctl: warning: removed another tool's program {program} from {ifname}; \
         replacing it is not atomic"
    );
    match attach_loaded(ifname, ifindex, &loaded, mode) {
        Ok(message) => Ok(message),
        Err(err) => {
            let restore = libbpf_rs::Xdp::new(old_prog.as_fd()).attach(
                ifindex as i32,
                match current.mode {
                    attach::AttachedMode::Generic => libbpf_rs::XdpFlags::SKB_MODE,
                    _ => libbpf_rs::XdpFlags::DRV_MODE,
                },
            );
            let note = match restore {
                Ok(()) => "the previous program was put back".to_owned(),
                Err(restore_err) => {
                    format!("putting the previous program back failed too: {restore_err}")
                }
            };
            Err(err).context(note)
        }
    }
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
