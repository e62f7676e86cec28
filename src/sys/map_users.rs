//! Who uses a BPF map, kernel-wide: every loaded program (bpf_prog_get_next_id) with the ids of
//! its maps, and where each is attached, as far as xdpctl can see: its pinned links in any
//! network namespace, its `xdpctl run`s, other XDP links, and netlink attachments in this
//! namespace. Network namespaces do not hide programs from these ids, so a firewall running in
//! another namespace is found, which its interfaces (invisible from here) would not show.
//!
//! The answer decides whether the rules may be removed, so it never fails open: a list cut
//! short or an object that would not open (anything but ENOENT, "freed since it was listed") is
//! an error, not "no user".

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::query::{LinkInfo, LinkTypeInfo};

use crate::sys::attach::{self, LinkSummary, ProgramSummary};
use crate::sys::pins;

/// The ids the kernel lists through `next` (bpf_prog_get_next_id or bpf_link_get_next_id),
/// which returns 0 and the next id, or -errno. ENOENT ends the list; any other error (EPERM
/// without CAP_SYS_ADMIN in the initial user namespace, a seccomp or LSM denial) is one: a
/// list cut short would pass for "no program uses the maps".
pub fn kernel_ids(
    what: &str,
    mut next: impl FnMut(u32, &mut u32) -> libc::c_int,
) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut id = 0u32;
    loop {
        let mut found = 0u32;
        match next(id, &mut found) {
            0 if found > id => {
                ids.push(found);
                id = found;
            }
            0 => bail!("the kernel listed BPF {what} id {found} after id {id}"),
            ret if ret == -libc::ENOENT => return Ok(ids),
            ret => {
                return Err(io::Error::from_raw_os_error(ret.saturating_neg()))
                    .with_context(|| format!("listing the kernel's BPF {what} ids"))
            }
        }
    }
}

/// Each id opened with `open`, leaving out those freed since they were listed (ENOENT). Any
/// other failure is an error: the object may still be there.
pub fn open_each<T>(ids: &[u32], mut open: impl FnMut(u32) -> Result<T>) -> Result<Vec<T>> {
    let mut opened = Vec::with_capacity(ids.len());
    for &id in ids {
        match open(id) {
            Ok(found) => opened.push(found),
            Err(err) if pins::vanished(&err) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(opened)
}

/// Every program loaded in the kernel, whatever network namespace it runs in.
pub fn loaded_programs() -> Result<Vec<ProgramSummary>> {
    let ids = kernel_ids("program", |id, next| {
        // SAFETY: plain syscall wrapper writing one u32.
        unsafe { libbpf_sys::bpf_prog_get_next_id(id, next) }
    })?;
    open_each(&ids, attach::program_summary)
}

/// The XDP link with this id; None for a link of another kind.
fn xdp_link(id: u32) -> Result<Option<LinkSummary>> {
    // A link being made is listed before it has an id (EAGAIN) for a moment.
    let mut tries = 0;
    let fd = loop {
        match attach::link_fd_by_id(id) {
            Err(err) if again(&err) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            other => break other?,
        }
    };
    let info =
        LinkInfo::from_fd(fd.as_fd()).with_context(|| format!("reading bpf_link id {id}"))?;
    Ok(match info.info {
        LinkTypeInfo::Xdp(xdp) => Some(LinkSummary {
            id: info.id,
            prog_id: info.prog_id,
            ifindex: xdp.ifindex,
        }),
        _ => None,
    })
}

fn again(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|err| err.raw_os_error() == Some(libc::EAGAIN))
    })
}

/// The live `xdpctl run`s of this pin root, with their links. They pin no link, so their
/// firewalls are found only this way.
pub fn run_links() -> Result<Vec<(String, pins::RunRecord, LinkSummary)>> {
    let root = pins::root();
    let mut runs = Vec::new();
    for (name, record) in pins::live_run_records()? {
        if record.pin_root.as_deref() != Some(root.as_path()) {
            continue;
        }
        match xdp_link(record.link_id) {
            Ok(Some(link)) => runs.push((name, record, link)),
            Ok(None) => {}
            // The `run` detached since its record was read.
            Err(err) if pins::vanished(&err) => {}
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("opening the link of `xdpctl run` pid {}", record.pid)
                })
            }
        }
    }
    Ok(runs)
}

/// The programs behind this pin root's links: its pinned links (any namespace) and the links
/// of its live `xdpctl run`s.
pub fn programs_of_this_root() -> Result<HashSet<u32>> {
    let pinned = pins::pinned_links()?
        .into_iter()
        .map(|(_, link)| link.prog_id);
    let run = run_links()?.into_iter().map(|(_, _, link)| link.prog_id);
    Ok(pinned.chain(run).collect())
}

/// Why the pin set stays, naming each program that uses it, where it runs, and the fix.
pub fn refusal(dir: &Path, users: &[ProgramSummary]) -> String {
    // Where they run only makes the message better: not knowing does not change the refusal.
    let (places, unknown) = match places() {
        Ok(places) => (places, String::new()),
        Err(err) => (
            Vec::new(),
            format!(" (where they run could not be told: {err:#})"),
        ),
    };
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
        "kept the firewall's rules and maps in {}: {} still {} them{unknown}, and would go on \
         filtering with rules no xdpctl command could see or change. Unload {} first ({}), then \
         run `xdpctl unload --all` again",
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

/// The attachments xdpctl can see: its pinned links (all namespaces), its `xdpctl run`s, any
/// other XDP link, and netlink attachments in this namespace.
fn places() -> Result<Vec<Place>> {
    let own_netns = fs::metadata("/proc/self/ns/net")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .ok();
    let mut places = Vec::new();
    let mut seen_links = HashSet::new();
    for (dir, link) in pins::pinned_links()? {
        // A directory xdpctl did not name: its link is described below, as any other.
        let Some(pins::StateName { ifname, netns }) = pins::StateName::decode(&dir) else {
            continue;
        };
        seen_links.insert(link.id);
        let (namespace, here) = namespace(netns, own_netns);
        let fix = match netns {
            _ if here => format!("`xdpctl unload {ifname}`"),
            None => format!("`nsenter --net=/proc/1/ns/net xdpctl unload {ifname}`"),
            Some(inode) => match named_netns(inode) {
                Some(name) => format!("`nsenter --net=/run/netns/{name} xdpctl unload {ifname}`"),
                None => format!("`xdpctl unload {ifname}` inside that namespace"),
            },
        };
        places.push(Place {
            prog_id: link.prog_id,
            description: format!(
                "on {ifname} in {namespace}{}, through link id {}{}",
                if here { " (this one)" } else { "" },
                link.id,
                if link.ifindex == 0 {
                    ", whose interface is gone"
                } else {
                    ""
                }
            ),
            fix,
        });
    }
    for (file, record, link) in run_links()? {
        seen_links.insert(link.id);
        let on = match pins::StateName::decode(&file) {
            Some(pins::StateName { ifname, netns }) => {
                format!(" on {ifname} in {}", namespace(netns, own_netns).0)
            }
            None => String::new(),
        };
        places.push(Place {
            prog_id: link.prog_id,
            description: format!(
                "held by `xdpctl run` (pid {}){on}, through link id {}",
                record.pid, link.id
            ),
            fix: format!(
                "stop that `xdpctl run` (Ctrl-C where it runs, or `kill {}`)",
                record.pid
            ),
        });
    }
    for link in other_xdp_links(&seen_links)? {
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
    Ok(places)
}

/// A network namespace (None: the initial one) for people, and whether it is this process's.
fn namespace(netns: Option<u64>, own: Option<u64>) -> (String, bool) {
    let here = own == Some(netns.unwrap_or(INIT_NETNS_INODE));
    let description = match netns {
        None => "the initial network namespace".to_owned(),
        Some(inode) => match named_netns(inode) {
            Some(name) => format!("network namespace {name}"),
            None => format!("the network namespace with inode {inode}"),
        },
    };
    (description, here)
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

/// The kernel's XDP links other than `skip` that still attach to an interface.
fn other_xdp_links(skip: &HashSet<u32>) -> Result<Vec<LinkSummary>> {
    let ids: Vec<u32> = kernel_ids("link", |id, next| {
        // SAFETY: plain syscall wrapper writing one u32.
        unsafe { libbpf_sys::bpf_link_get_next_id(id, next) }
    })?
    .into_iter()
    .filter(|id| !skip.contains(id))
    .collect();
    Ok(open_each(&ids, xdp_link)?
        .into_iter()
        .flatten()
        .filter(|link| link.ifindex != 0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel list of these ids, then `end` (an errno) where it stops.
    fn listing(ids: &[u32], end: i32) -> impl FnMut(u32, &mut u32) -> libc::c_int + '_ {
        move |after, next| match ids.iter().find(|&&id| id > after) {
            Some(&id) => {
                *next = id;
                0
            }
            None => -end,
        }
    }

    #[test]
    fn a_listing_ends_only_at_enoent() {
        assert_eq!(
            kernel_ids("program", listing(&[3, 7, 9], libc::ENOENT)).unwrap(),
            [3, 7, 9]
        );
        assert!(kernel_ids("program", listing(&[], libc::ENOENT))
            .unwrap()
            .is_empty());
        for errno in [libc::EPERM, libc::EACCES, libc::ENOMEM, libc::EINVAL] {
            let err = kernel_ids("program", listing(&[3], errno)).unwrap_err();
            let io = err.downcast_ref::<io::Error>().expect("the errno is kept");
            assert_eq!(io.raw_os_error(), Some(errno));
            assert!(format!("{err:#}").contains("listing the kernel's BPF program ids"));
        }
        // A kernel that went backwards would loop forever: an error instead.
        let mut again = |_: u32, next: &mut u32| {
            *next = 5;
            0
        };
        assert!(kernel_ids("link", &mut again).is_err());
    }

    #[test]
    fn only_ids_that_vanished_are_skipped() {
        let open = |id: u32| -> Result<u32> {
            match id {
                2 => Err(io::Error::from_raw_os_error(libc::ENOENT))
                    .context("opening BPF program id 2"),
                4 => Err(io::Error::from_raw_os_error(libc::EPERM))
                    .context("opening BPF program id 4"),
                id => Ok(id * 10),
            }
        };
        assert_eq!(open_each(&[1, 2, 3], open).unwrap(), [10, 30]);
        let err = open_each(&[1, 2, 3, 4, 5], open).unwrap_err();
        assert!(format!("{err:#}").contains("id 4"), "{err:#}");
    }
}
