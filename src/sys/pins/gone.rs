//! When a pin, link or program counts as gone. Only what the kernel says is gone is: ENOENT (a
//! pin removed, an id freed since it was listed), or a link whose interface went (ifindex 0).
//! Any other failure (EPERM in a container, an LSM's denial, EMFILE, ENOMEM) says nothing about
//! whether the thing is still in use, so it is an error, and nothing is removed on its account:
//! treating it as "gone" would remove the pins of a live link, or the rules of a running
//! firewall.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::{interface_dir, interfaces_root, own_netns, pin_dirs, remove_empty_parents};
use super::{remove_interface_dir, remove_pin_tree, StateName};
use crate::sys::attach::{self, LinkSummary};

/// How old a pin directory without a link must be before it counts as left over: a load makes
/// the directory a moment before it pins the link into it.
const LINKLESS_GRACE: Duration = Duration::from_secs(10);

/// Whether an error says that what was looked up no longer exists (ENOENT): a pin that was
/// removed, or an id that was freed since it was listed.
pub fn vanished(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|err| err.raw_os_error() == Some(libc::ENOENT))
            || cause
                .downcast_ref::<libbpf_rs::Error>()
                .is_some_and(|err| err.kind() == libbpf_rs::ErrorKind::NotFound)
    })
}

/// What the link pinned in an interface's pin directory says.
#[derive(Debug)]
pub enum PinnedLink {
    /// Attached to the interface with this index.
    Live(LinkSummary),
    /// Its interface (or the interface's namespace) is gone; the link still holds its program.
    Defunct(LinkSummary),
    /// No link file (a load that is making the directory, or one that died before pinning).
    Missing,
}

/// The link pinned in the pin directory `dir`; an error for anything but a link, present or
/// not (ENOENT).
pub fn pinned_link(dir: &Path) -> Result<PinnedLink> {
    let path = dir.join("link");
    let link = match attach::open_pinned(&path) {
        Ok(link) => link,
        Err(err) if vanished(&err) => return Ok(PinnedLink::Missing),
        Err(err) => return Err(err),
    };
    let info = attach::link_summary(link.as_fd())
        .with_context(|| format!("reading the link pinned at {}", path.display()))?;
    Ok(if info.ifindex == 0 {
        PinnedLink::Defunct(info)
    } else {
        PinnedLink::Live(info)
    })
}

/// The pin directories of this pin root's interfaces, of every network namespace, with the
/// link each holds: (directory name, link). A directory without a link is left out; one whose
/// link cannot be read is an error.
pub fn pinned_links() -> Result<Vec<(String, LinkSummary)>> {
    let mut links = Vec::new();
    for dir in pin_dirs()? {
        match pinned_link(&interfaces_root().join(&dir))? {
            PinnedLink::Live(link) | PinnedLink::Defunct(link) => links.push((dir, link)),
            PinnedLink::Missing => {}
        }
    }
    Ok(links)
}

/// Whether a directory without a link is old enough to be a leftover rather than a load that
/// is about to pin into it. None when the directory is gone.
fn linkless_leftover(dir: &Path) -> Result<Option<bool>> {
    let modified = match fs::metadata(dir).and_then(|meta| meta.modified()) {
        Ok(modified) => modified,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
    };
    Ok(Some(old_enough(modified, SystemTime::now())))
}

/// A clock stepped back makes a directory look young: it is then kept, which is harmless.
fn old_enough(modified: SystemTime, now: SystemTime) -> bool {
    now.duration_since(modified)
        .is_ok_and(|age| age >= LINKLESS_GRACE)
}

/// Removes the pins of other network namespaces whose links are defunct (their interface or
/// namespace is gone), and directories without a link that are not being made. Returns the
/// directories removed. If any directory's link cannot be read, removes nothing and says which.
pub fn remove_defunct_pins_of_other_namespaces() -> Result<Vec<String>> {
    let own = own_netns();
    let mut defunct = Vec::new();
    let mut unknown = Vec::new();
    for dir in pin_dirs()? {
        // A directory this xdpctl cannot read is no namespace's: it goes once its link does.
        if StateName::decode(&dir).is_some_and(|state| state.netns == own) {
            continue;
        }
        let path = interfaces_root().join(&dir);
        let gone = match pinned_link(&path) {
            Ok(PinnedLink::Live(_)) => Ok(false),
            Ok(PinnedLink::Defunct(_)) => Ok(true),
            Ok(PinnedLink::Missing) => linkless_leftover(&path).map(|old| old.unwrap_or(false)),
            Err(err) => Err(err),
        };
        match gone {
            Ok(true) => defunct.push(dir),
            Ok(false) => {}
            Err(err) => unknown.push(format!("{}: {err:#}", path.display())),
        }
    }
    if !unknown.is_empty() {
        anyhow::bail!(
            "could not tell whether the pins of other network namespaces are still in use ({}); \
             removed none of them. Retry; if it persists, run `xdpctl unload --all` where xdpctl \
             may open every pin (as root, outside a container that restricts bpf)",
            unknown.join("; ")
        );
    }
    for dir in &defunct {
        remove_pin_tree(&interfaces_root().join(dir))?;
    }
    remove_empty_parents();
    Ok(defunct)
}

/// A pin directory whose link no longer attaches anything to this interface (the interface
/// was deleted, or re-created under the same name) is stale: remove it so it cannot confuse
/// ownership. So is an old one without a link. Returns whether it removed something; a link
/// that cannot be read is an error, and nothing is removed.
pub fn remove_stale_pins(ifname: &str, ifindex: Option<u32>) -> Result<bool> {
    let dir = interface_dir(ifname)?;
    if !dir.exists() {
        return Ok(false);
    }
    let stale = match pinned_link(&dir).with_context(|| {
        format!(
            "could not tell whether the pins in {} are still in use; removed nothing",
            dir.display()
        )
    })? {
        PinnedLink::Live(info) => Some(info.ifindex) != ifindex,
        PinnedLink::Defunct(_) => true,
        PinnedLink::Missing => linkless_leftover(&dir)?.unwrap_or(false),
    };
    if stale {
        remove_interface_dir(ifname)?;
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enoent_means_gone() {
        let enoent = anyhow::Error::new(io::Error::from_raw_os_error(libc::ENOENT));
        assert!(vanished(&enoent.context("opening BPF program id 7")));
        let libbpf = anyhow::Error::new(libbpf_rs::Error::from_raw_os_error(libc::ENOENT));
        assert!(vanished(&libbpf.context("opening the pinned map")));
        for errno in [
            libc::EPERM,
            libc::EACCES,
            libc::EMFILE,
            libc::ENOMEM,
            libc::EINVAL,
        ] {
            let err = anyhow::Error::new(io::Error::from_raw_os_error(errno)).context("x");
            assert!(!vanished(&err), "errno {errno}");
            let err = anyhow::Error::new(libbpf_rs::Error::from_raw_os_error(errno));
            assert!(!vanished(&err), "libbpf errno {errno}");
        }
        assert!(!vanished(&anyhow::anyhow!("bpf_link 3 is not an XDP link")));
    }

    #[test]
    fn a_directory_without_a_link_is_a_leftover_only_once_it_is_old() {
        let now = SystemTime::now();
        assert!(!old_enough(now, now));
        assert!(!old_enough(now - Duration::from_secs(1), now));
        assert!(old_enough(now - LINKLESS_GRACE, now));
        assert!(old_enough(now - Duration::from_secs(3600), now));
        // Made "in the future" (the clock went back): kept.
        assert!(!old_enough(now + Duration::from_secs(60), now));
    }
}
