//! Where xdpctl keeps its state: pins in bpffs (which outlive the CLI) and small run records
//! under /run for the foreground `xdpctl run`. Also decides who owns an attached program.
//!
//! ```text
//! /sys/fs/bpf/xdpctl/rules/                    the firewall's global maps (src/firewall/)
//! /sys/fs/bpf/xdpctl/if/<ifname>/link          pinned bpf_link: the program stays attached
//! /sys/fs/bpf/xdpctl/if/<ifname>:ns<inode>/    the same, for an interface in another network
//!                                              namespace (bpffs is shared by all of them)
//! /run/xdpctl/run/<ifname>[:ns<inode>]         "<pid> <link id> <pin root>" while `xdpctl run`
//!                                              holds it
//! ```
//!
//! `<ifname>` is written with '%' for '.', which bpffs refuses ([`names`] knows how).
//! Every path here is built from a name that [`crate::sys::ifname`] accepts (so it stays one
//! directory below `if/`), under a pin root that is inside bpffs, and only pins in bpffs are
//! ever removed.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::sys::attach::{self, Attachment};

mod elsewhere;
mod gone;
mod names;
mod root;
mod run_record;

use elsewhere::OtherRoots;
use root::is_bpffs;

pub use gone::{pinned_link, pinned_links, vanished, PinnedLink};
pub use gone::{remove_defunct_pins_of_other_namespaces, remove_stale_pins};
pub use names::StateName;
pub use root::{checked_root, normal_form, root};
#[cfg(test)]
use run_record::run_record_path;
pub use run_record::RunRecord;
pub use run_record::{live_run_records, read_run_record, remove_run_record, write_run_record};

pub const BPFFS: &str = "/sys/fs/bpf";

/// The inode of this process's network namespace when it is not the initial one, so that
/// `veth0` in two labs gets two pin directories.
fn own_netns() -> Option<u64> {
    static OWN: OnceLock<Option<u64>> = OnceLock::new();
    // The kernel gives the initial network namespace a fixed inode (PROC_NET_INIT_INO).
    // Comparing with /proc/1/ns/net instead fails: from another namespace it is unreadable.
    const INIT_NETNS_INODE: u64 = 0xefff_fff9;
    *OWN.get_or_init(
        || match fs::metadata("/proc/self/ns/net").map(|m| m.ino()) {
            Ok(own) if own != INIT_NETNS_INODE => Some(own),
            _ => None,
        },
    )
}

/// The name of an interface's pin directory (and run record) in this network namespace. The
/// name is checked as the kernel would check it, so the path it ends stays one directory below
/// the one it is joined to.
fn state_name(ifname: &str) -> Result<String> {
    Ok(StateName::new(ifname, own_netns())?.encoded())
}

/// The pin root's layout: the maps every interface shares, the interfaces' directories, and
/// a shared set being put together (`rules-staging-<pid>`: bpffs refuses names with a dot).
pub const SHARED_DIR: &str = "rules";
pub const INTERFACES_DIR: &str = "if";
pub const STAGING_PREFIX: &str = "rules-staging-";

/// Where the interfaces' pin directories live.
fn interfaces_root() -> PathBuf {
    root().join(INTERFACES_DIR)
}

/// The pin directory of one interface of this network namespace.
pub fn interface_dir(ifname: &str) -> Result<PathBuf> {
    Ok(interfaces_root().join(state_name(ifname)?))
}

/// Removes the interfaces' directory and xdpctl's root once they are empty (and in bpffs).
fn remove_empty_parents() {
    if checked_root().is_err() {
        return;
    }
    let _ = fs::remove_dir(interfaces_root());
    let _ = fs::remove_dir(root());
}

/// The pinned bpf_link that keeps xdpctl's program on `ifname`.
pub fn link_path(ifname: &str) -> Result<PathBuf> {
    Ok(interface_dir(ifname)?.join("link"))
}

/// Makes sure bpffs is mounted at /sys/fs/bpf, mounting it as bpftool does when it is not, and
/// that the pin root is inside bpffs.
pub fn ensure_bpffs() -> Result<()> {
    if !is_bpffs(Path::new(BPFFS)) {
        fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
        nix::mount::mount(
            Some("bpf"),
            BPFFS,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .with_context(|| format!("bpffs is not mounted and mounting it at {BPFFS} failed"))?;
    }
    checked_root().map(|_| ())
}

/// Removes a directory of pins: the global rules (`ROOT/rules`) or one interface's
/// (`ROOT/if/NAME`), refusing any other path, and anything not in bpffs. One that is already
/// gone (a concurrent unload) is no error.
pub fn remove_pin_tree(path: &Path) -> Result<()> {
    let root = checked_root()?;
    if !removable(&root, path) {
        bail!(
            "refusing to remove {}: it is neither the rules nor an interface's pins under the \
             pin root {}",
            path.display(),
            root.display()
        );
    }
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if !is_bpffs(path) {
        bail!("refusing to remove {}: it is not in bpffs", path.display());
    }
    match fs::remove_dir_all(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Whether `path` is one of the trees [`remove_pin_tree`] may remove under the pin root
/// `root`: `ROOT/rules` or `ROOT/if/NAME`, as written (no '.' or '..' standing in for a
/// directory). Pure: decides on the text alone.
fn removable(root: &Path, path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let plain = !path
        .as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .any(|part| part == b"." || part == b"..");
    let parent = path.parent();
    plain
        && (parent == Some(root) && path.file_name() == Some(SHARED_DIR.as_ref())
            || parent == Some(root.join(INTERFACES_DIR).as_path()))
}

/// Creates the pin directory of an interface.
pub fn create_interface_dir(ifname: &str) -> Result<PathBuf> {
    checked_root()?;
    let dir = interface_dir(ifname)?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Removes an interface's pins, and xdpctl's root once it is empty.
pub fn remove_interface_dir(ifname: &str) -> Result<()> {
    remove_pin_tree(&interface_dir(ifname)?)?;
    // Fails harmlessly while other interfaces still have pins.
    remove_empty_parents();
    Ok(())
}

/// Every pin directory name, of every network namespace, as written.
fn pin_dirs() -> Result<Vec<String>> {
    let root = interfaces_root();
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The interfaces of this network namespace that have pins, whether or not they still exist.
pub fn pinned_interfaces() -> Result<Vec<String>> {
    let own = own_netns();
    Ok(pin_dirs()?
        .iter()
        .filter_map(|dir| StateName::decode(dir))
        .filter(|state| state.netns == own)
        .map(|state| state.ifname)
        .collect())
}

/// Who holds an attached program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// xdpctl's pinned link (`xdpctl load`).
    Pinned { link_id: u32 },
    /// A running `xdpctl run` process.
    Foreground { pid: u32, link_id: u32 },
    /// Another xdpctl instance: a link pinned under another pin root (another XDPCTL_PIN_ROOT,
    /// or another bpffs mount).
    OtherInstance { root: PathBuf, link_id: u32 },
    /// Anything else: another tool, `ip link set ... xdp`, a libxdp dispatcher.
    Other,
}

impl Owner {
    /// The owner as `status` shows it: "xdpctl" (this instance), "xdpctl ROOT" (another
    /// instance, pinned under ROOT) or "other".
    pub fn label(&self) -> String {
        match self {
            Owner::Pinned { .. } | Owner::Foreground { .. } => "xdpctl".to_owned(),
            Owner::OtherInstance { root, .. } => format!("xdpctl {}", root.display()),
            Owner::Other => "other".to_owned(),
        }
    }
}

/// What to tell a user about a program another xdpctl instance pinned.
pub fn other_instance_hint(ifname: &str, root: &Path) -> String {
    format!(
        "it is pinned by another xdpctl instance, under {root} (this one's pin root is {mine}): \
         manage it from there, e.g. `XDPCTL_PIN_ROOT={root} xdpctl unload {ifname}`",
        root = root.display(),
        mine = self::root().display()
    )
}

/// Decides who owns `attachment` on the interface `ifname`/`ifindex`.
pub fn owner(ifname: &str, ifindex: u32, attachment: &Attachment) -> Owner {
    owner_among(ifname, ifindex, attachment, &OtherRoots::default())
}

/// [`owner`], looking for other instances' pins among `others` (one list for a whole scan).
fn owner_among(ifname: &str, ifindex: u32, attachment: &Attachment, others: &OtherRoots) -> Owner {
    let Ok(pin) = link_path(ifname) else {
        return Owner::Other;
    };
    if let Ok(link) = attach::open_pinned(&pin) {
        if let Ok(info) = attach::link_summary(link.as_fd()) {
            if info.ifindex == ifindex && info.prog_id == attachment.prog_id {
                return Owner::Pinned { link_id: info.id };
            }
        }
    }
    if let Some(record) = read_run_record(ifname) {
        if Path::new(&format!("/proc/{}", record.pid)).exists() {
            if let Ok(link) = attach::link_fd_by_id(record.link_id) {
                if let Ok(info) = attach::link_summary(link.as_fd()) {
                    if info.ifindex == ifindex && info.prog_id == attachment.prog_id {
                        return Owner::Foreground {
                            pid: record.pid,
                            link_id: record.link_id,
                        };
                    }
                }
            }
        }
    }
    // Ownership follows the pin, and this instance's pin root has none: another instance's
    // (another XDPCTL_PIN_ROOT, or a bpffs mounted elsewhere) may.
    match others.pinned_elsewhere(ifname, ifindex, attachment.prog_id) {
        Some((root, link_id)) => Owner::OtherInstance { root, link_id },
        None => Owner::Other,
    }
}

/// Removes every pin made inside the network namespace with this inode (for a lab that is
/// being torn down).
pub fn remove_namespace_pins(netns_inode: u64) -> Result<()> {
    for dir in pin_dirs()? {
        if StateName::decode(&dir).is_some_and(|state| state.netns == Some(netns_inode)) {
            remove_pin_tree(&interfaces_root().join(&dir))?;
        }
    }
    remove_empty_parents();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_per_interface_under_xdpctl() {
        if std::env::var_os("XDPCTL_PIN_ROOT").is_some() {
            return;
        }
        assert_eq!(
            link_path("veth1").unwrap(),
            Path::new("/sys/fs/bpf/xdpctl/if/veth1/link")
        );
        // bpffs refuses a '.' in a name.
        assert_eq!(
            link_path("eth0.100").unwrap(),
            Path::new("/sys/fs/bpf/xdpctl/if/eth0%100/link")
        );
    }

    #[test]
    fn no_path_leaves_the_interfaces_directory() {
        for bad in [
            "..",
            ".",
            "../rules",
            "../../../../tmp/x",
            "a/b",
            "",
            "x:ns1",
        ] {
            let err = interface_dir(bad).unwrap_err().to_string();
            assert!(err.contains("not an interface name"), "{bad}: {err}");
            assert!(link_path(bad).is_err() && run_record_path(bad).is_err());
        }
        for dotted in ["..x", "x..", "eth0.100"] {
            let dir = interface_dir(dotted).unwrap();
            assert_eq!(dir.parent().unwrap(), interfaces_root());
        }
    }

    #[test]
    fn only_the_rules_and_interface_directories_may_be_removed() {
        // A made-up root: this decides on paths alone and removes nothing.
        let root = Path::new("/fake/bpffs/root");
        for good in ["rules", "if/eth0", "if/eth0%100:ns4026532000", "if/eth0/"] {
            assert!(removable(root, &root.join(good)), "{good}");
        }
        for bad in [
            root.to_path_buf(),
            root.join("if"),
            root.join("if/.."),
            root.join("if/."),
            root.join("if/../rules"),
            root.join("if/../rules/x"),
            root.join("if/a/b"),
            root.join("rules/x"),
            root.join("other"),
            root.join("./rules"),
            PathBuf::from("/fake/bpffs/rules"),
            PathBuf::from("/tmp/x"),
            PathBuf::from("rules"),
        ] {
            assert!(!removable(root, &bad), "{bad:?}");
        }
    }
}

/// One attached XDP program and whose it is (`status` shows it through src/output/status.rs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub interface: String,
    pub ifindex: u32,
    pub program: String,
    pub id: u32,
    pub mode: String,
    /// "xdpctl", "xdpctl ROOT" (another instance's) or "other": [`Owner::label`].
    pub owner: String,
}

/// Every XDP attachment on the given interface, or on all interfaces.
pub fn attached_programs(only: Option<&str>) -> Result<Vec<Row>> {
    let interfaces = match only {
        Some(ifname) => vec![(attach::ifindex(ifname)?, ifname.to_owned())],
        None => attach::interfaces()?,
    };
    let mut rows = Vec::new();
    let others = OtherRoots::default();
    for (ifindex, ifname) in interfaces {
        let attachments = match attach::query(ifindex) {
            Ok(found) => found,
            // The interface vanished while we listed: nothing attached there any more.
            Err(_) if only.is_none() => continue,
            Err(err) => return Err(err),
        };
        for attachment in attachments {
            let program = attach::program_summary(attachment.prog_id)
                .map(|p| p.name)
                .unwrap_or_else(|_| "?".into());
            let owner = owner_among(&ifname, ifindex, &attachment, &others).label();
            rows.push(Row {
                interface: ifname.clone(),
                ifindex,
                program,
                id: attachment.prog_id,
                mode: attachment.mode.to_string(),
                owner,
            });
        }
    }
    Ok(rows)
}
