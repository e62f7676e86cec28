//! Who uses a BPF map, kernel-wide: every loaded program (bpf_prog_get_next_id) with the ids of
//! its maps, and where each is attached, as far as xdpctl can see: its pinned links in any
//! network namespace, other XDP links, and netlink attachments in this namespace. Network
//! namespaces do not hide programs from these ids, so a firewall running in another namespace is
//! found, which its interfaces (invisible from here) would not show.

use std::collections::HashSet;
use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use libbpf_rs::libbpf_sys;

use crate::attach::{self, ProgramSummary};
use crate::pins;

/// Every program loaded in the kernel, whatever network namespace it runs in.
pub fn loaded_programs() -> Vec<ProgramSummary> {
    let mut programs = Vec::new();
    let mut id = 0u32;
    loop {
        let mut next = 0u32;
        // SAFETY: plain syscall wrapper writing one u32.
        if unsafe { libbpf_sys::bpf_prog_get_next_id(id, &mut next) } != 0 {
            break;
        }
        id = next;
        // A program freed since it was listed is simply not a user.
        if let Ok(program) = attach::program_summary(id) {
            programs.push(program);
        }
    }
    programs
}

/// The programs that use any of these maps.
pub fn users_of(ids: &HashSet<u32>) -> Vec<ProgramSummary> {
    loaded_programs()
        .into_iter()
        .filter(|program| program.map_ids.iter().any(|id| ids.contains(id)))
        .collect()
}

/// The pin directories of this pin root's interfaces, of every network namespace, with the
/// link each holds: (directory name, link).
pub fn pinned_links() -> Vec<(String, attach::LinkSummary)> {
    let Ok(entries) = fs::read_dir(pins::root().join("if")) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let link = attach::open_pinned(&entry.path().join("link")).ok()?;
            let summary = attach::link_summary(link.as_fd()).ok()?;
            Some((entry.file_name().to_string_lossy().into_owned(), summary))
        })
        .collect()
}

/// Why the pin set stays, naming each program that uses it, where it runs, and the fix.
pub fn refusal(dir: &Path, users: &[ProgramSummary]) -> String {
    let places = places();
    let mut lines = Vec::new();
    let mut fixes = Vec::new();
    for user in users {
        let found: Vec<&Place> = places.iter().filter(|p| p.prog_id == user.id).collect();
        let described = if found.is_empty() {
            fixes.push(format!(
                "stop what holds program id {} (`bpftool prog show id {}` names it)",
                user.id, user.id
            ));
            "attached nowhere xdpctl can see".to_owned()
        } else {
            fixes.extend(found.iter().map(|p| p.fix.clone()));
            found
                .iter()
                .map(|p| p.description.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        lines.push(format!(
            "program id {} '{}' ({described})",
            user.id, user.name
        ));
    }
    fixes.sort();
    fixes.dedup();
    format!(
        "kept the firewall's rules and maps in {}: {} still {} them, and would go on filtering \
         with rules no xdpctl command could see or change. Unload {} first ({}), then run \
         `xdpctl unload --all` again",
        dir.display(),
        lines.join("; "),
        if users.len() == 1 { "uses" } else { "use" },
        if users.len() == 1 { "it" } else { "them" },
        fixes.join("; ")
    )
}

/// Where a program is attached.
struct Place {
    prog_id: u32,
    description: String,
    /// How to unload it.
    fix: String,
}

/// The attachments xdpctl can see: its pinned links (all namespaces), any other XDP link, and
/// netlink attachments in this namespace.
fn places() -> Vec<Place> {
    let own_netns =
        fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let mut places = Vec::new();
    let mut seen_links = HashSet::new();
    for (dir, link) in pinned_links() {
        // A directory xdpctl did not name: its link is described below, as any other.
        let Some(pins::StateName { ifname, netns }) = pins::StateName::decode(&dir) else {
            continue;
        };
        seen_links.insert(link.id);
        let here = match netns {
            None => own_netns.as_ref().ok() == Some(&INIT_NETNS_INODE),
            Some(inode) => own_netns.as_ref().ok() == Some(&inode),
        };
        let (namespace, fix) = match netns {
            None => (
                "the initial network namespace".to_owned(),
                if here {
                    format!("`xdpctl unload {ifname}`")
                } else {
                    format!("`nsenter --net=/proc/1/ns/net xdpctl unload {ifname}`")
                },
            ),
            Some(inode) => match named_netns(inode) {
                Some(name) => (
                    format!("network namespace {name}"),
                    format!("`nsenter --net=/run/netns/{name} xdpctl unload {ifname}`"),
                ),
                None => (
                    format!("the network namespace with inode {inode}"),
                    format!("`xdpctl unload {ifname}` inside that namespace"),
                ),
            },
        };
        places.push(Place {
            prog_id: link.prog_id,
            description: format!(
                "on {ifname} in {namespace}{}, through link id {}",
                if here { " (this one)" } else { "" },
                link.id
            ),
            fix,
        });
    }
    for link in other_xdp_links(&seen_links) {
        places.push(Place {
            prog_id: link.prog_id,
            description: format!(
                "through XDP link id {} on ifindex {} of some network namespace",
                link.id, link.ifindex
            ),
            fix: format!(
                "stop the process that holds link id {} (`bpftool link show id {}`; an `xdpctl run` \
                 stops with Ctrl-C)",
                link.id, link.id
            ),
        });
    }
    for (ifindex, ifname) in attach::interfaces().unwrap_or_default() {
        for attachment in attach::query(ifindex).unwrap_or_default() {
            if !places.iter().any(|p| p.prog_id == attachment.prog_id) {
                places.push(Place {
                    prog_id: attachment.prog_id,
                    description: format!("on {ifname} in this network namespace"),
                    fix: format!("`xdpctl unload {ifname}`"),
                });
            }
        }
    }
    places
}

/// PROC_NET_INIT_INO: the initial network namespace's fixed inode.
const INIT_NETNS_INODE: u64 = 0xefff_fff9;

/// The name under /run/netns (`ip netns`) of the namespace with this inode.
fn named_netns(inode: u64) -> Option<String> {
    fs::read_dir("/run/netns").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(entry.path()).ok()?);
        (ino == inode).then(|| entry.file_name().to_string_lossy().into_owned())
    })
}

/// The kernel's XDP links other than `skip`.
fn other_xdp_links(skip: &HashSet<u32>) -> Vec<attach::LinkSummary> {
    let mut links = Vec::new();
    let mut id = 0u32;
    loop {
        let mut next = 0u32;
        // SAFETY: plain syscall wrapper writing one u32.
        if unsafe { libbpf_sys::bpf_link_get_next_id(id, &mut next) } != 0 {
            break;
        }
        id = next;
        if skip.contains(&id) {
            continue;
        }
        let summary = attach::link_fd_by_id(id)
            .ok()
            .and_then(|fd| attach::link_summary(fd.as_fd()).ok());
        if let Some(summary) = summary.filter(|s| s.ifindex != 0) {
            links.push(summary);
        }
    }
    links
}
