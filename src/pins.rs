//! Where xdpctl keeps its state: pins in bpffs (which outlive the CLI) and small run records
//! under /run for the foreground `xdpctl run`. Also decides who owns an attached program.
//!
//! ```text
//! /sys/fs/bpf/xdpctl/<ifname>/link   pinned bpf_link: the program stays attached after exit
//! /run/xdpctl/run/<ifname>           "<pid> <link id>" while `xdpctl run` holds the interface
//! ```

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::attach::{self, Attachment};

pub const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const RUN_DIR: &str = "/run/xdpctl/run";

/// The root of xdpctl's pins.
pub fn root() -> PathBuf {
    Path::new(BPFFS).join("xdpctl")
}

/// The pin directory of one interface.
pub fn interface_dir(ifname: &str) -> PathBuf {
    root().join(ifname)
}

/// The pinned bpf_link that keeps xdpctl's program on `ifname`.
pub fn link_path(ifname: &str) -> PathBuf {
    interface_dir(ifname).join("link")
}

/// Makes sure bpffs is mounted at /sys/fs/bpf, mounting it as bpftool does when it is not.
pub fn ensure_bpffs() -> Result<()> {
    if is_bpffs(Path::new(BPFFS)) {
        return Ok(());
    }
    fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    nix::mount::mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .with_context(|| format!("bpffs is not mounted and mounting it at {BPFFS} failed"))?;
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|fs| fs.filesystem_type() == nix::sys::statfs::FsType(BPF_FS_MAGIC as _))
        .unwrap_or(false)
}

/// Creates the pin directory of an interface.
pub fn create_interface_dir(ifname: &str) -> Result<PathBuf> {
    let dir = interface_dir(ifname);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Removes an interface's pins, and xdpctl's root once it is empty.
pub fn remove_interface_dir(ifname: &str) -> Result<()> {
    let dir = interface_dir(ifname);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    // Fails harmlessly while other interfaces still have pins.
    let _ = fs::remove_dir(root());
    Ok(())
}

/// The interfaces that have a pin directory, whether or not they still exist.
pub fn pinned_interfaces() -> Result<Vec<String>> {
    let root = root();
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

/// Who holds an attached program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// xdpctl's pinned link (`xdpctl load`).
    Pinned { link_id: u32 },
    /// A running `xdpctl run` process.
    Foreground { pid: u32, link_id: u32 },
    /// Anything else: another tool, `ip link set ... xdp`, a libxdp dispatcher.
    Other,
}

/// Decides who owns `attachment` on the interface `ifname`/`ifindex`.
pub fn owner(ifname: &str, ifindex: u32, attachment: &Attachment) -> Owner {
    if let Ok(link) = attach::open_pinned(&link_path(ifname)) {
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
    Owner::Other
}

/// A pin directory whose link no longer attaches anything to this interface (the interface
/// was deleted, or re-created under the same name) is stale: remove it so it cannot confuse
/// ownership. Returns whether it removed something.
pub fn remove_stale_pins(ifname: &str, ifindex: Option<u32>) -> Result<bool> {
    let dir = interface_dir(ifname);
    if !dir.exists() {
        return Ok(false);
    }
    let live = attach::open_pinned(&link_path(ifname))
        .and_then(|link| attach::link_summary(link.as_fd()))
        .map(|info| info.ifindex != 0 && Some(info.ifindex) == ifindex)
        .unwrap_or(false);
    if live {
        return Ok(false);
    }
    remove_interface_dir(ifname)?;
    Ok(true)
}

/// What `xdpctl run` records while it holds an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub pid: u32,
    pub link_id: u32,
}

fn run_record_path(ifname: &str) -> PathBuf {
    Path::new(RUN_DIR).join(ifname)
}

pub fn write_run_record(ifname: &str, record: RunRecord) -> Result<()> {
    fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    let path = run_record_path(ifname);
    fs::write(&path, format!("{} {}\n", record.pid, record.link_id))
        .with_context(|| format!("writing {}", path.display()))
}

pub fn read_run_record(ifname: &str) -> Option<RunRecord> {
    parse_run_record(&fs::read_to_string(run_record_path(ifname)).ok()?)
}

fn parse_run_record(text: &str) -> Option<RunRecord> {
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let link_id = fields.next()?.parse().ok()?;
    Some(RunRecord { pid, link_id })
}

pub fn remove_run_record(ifname: &str) {
    let _ = fs::remove_file(run_record_path(ifname));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_per_interface_under_xdpctl() {
        assert_eq!(
            link_path("veth1"),
            Path::new("/sys/fs/bpf/xdpctl/veth1/link")
        );
    }

    #[test]
    fn run_record_round_trips_and_rejects_garbage() {
        assert_eq!(
            parse_run_record("123 45\n"),
            Some(RunRecord {
                pid: 123,
                link_id: 45
            })
        );
        assert_eq!(parse_run_record("123"), None);
        assert_eq!(parse_run_record("x y"), None);
    }
}
