//! Finding a link that another xdpctl instance pinned: under another pin root of any bpffs
//! mount this process can see. Without this, xdpctl would call its own program "another
//! tool's" as soon as XDPCTL_PIN_ROOT differs from the one it was loaded with.

use std::cell::OnceCell;
use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::sys::attach;

/// Pin roots looked at per bpffs mount, at most: the mount itself and the directories in it.
const ROOTS_PER_MOUNT: usize = 4096;

/// The other pin roots this process can see, found on first use and then kept, so that one
/// scan (`status`, an exporter scrape) lists the bpffs mounts once, not once per attachment.
///
/// Only the mounts themselves and the directories directly in them are looked at: a pin root
/// two or more levels below a mount (`/sys/fs/bpf/a/b`) is not found, and its programs show
/// as another tool's. Going deeper would mean walking every tool's pins on every scan.
#[derive(Default)]
pub struct OtherRoots(OnceCell<Vec<PathBuf>>);

impl OtherRoots {
    fn get(&self) -> &[PathBuf] {
        self.0.get_or_init(|| {
            let mine = super::root();
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            mount_points(&mountinfo)
                .into_iter()
                .filter(|(_, fstype)| fstype == "bpf")
                .flat_map(|(mount, _)| candidate_roots(&mount))
                .filter(|root| *root != mine)
                .collect()
        })
    }

    /// The pin root (other than this instance's) whose link for `ifname` runs `prog_id` on
    /// `ifindex`, with the link's id.
    pub fn pinned_elsewhere(
        &self,
        ifname: &str,
        ifindex: u32,
        prog_id: u32,
    ) -> Option<(PathBuf, u32)> {
        let dir_name = super::state_name(ifname).ok()?;
        for root in self.get() {
            let pin = root
                .join(super::INTERFACES_DIR)
                .join(&dir_name)
                .join("link");
            let Ok(link) = attach::open_pinned(&pin) else {
                continue;
            };
            if let Ok(info) = attach::link_summary(link.as_fd()) {
                if info.ifindex == ifindex && info.prog_id == prog_id {
                    return Some((root.clone(), info.id));
                }
            }
        }
        None
    }
}

/// The mount itself, and each directory in it that has an `if` directory.
fn candidate_roots(mount: &Path) -> Vec<PathBuf> {
    let mut roots = vec![mount.to_path_buf()];
    if let Ok(entries) = fs::read_dir(mount) {
        roots.extend(
            entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
                .map(|entry| entry.path())
                .take(ROOTS_PER_MOUNT),
        );
    }
    roots.retain(|root| root.join(super::INTERFACES_DIR).is_dir());
    roots
}

/// Every mount point in /proc/self/mountinfo's text, with its file system type.
pub fn mount_points(mountinfo: &str) -> Vec<(PathBuf, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            let fstype = rest.split_whitespace().next()?;
            let mount_point = fields.split_whitespace().nth(4)?;
            Some((PathBuf::from(unescape(mount_point)), fstype.to_owned()))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes (\040).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bpffs_mounts_in_mountinfo() {
        let text = "36 25 0:31 / /sys/fs/bpf rw,relatime shared:12 - bpf bpf rw,mode=700\n\
                    40 25 0:33 / /tmp/my\\040bpf rw - bpf none rw\n\
                    41 25 0:34 / /tmp/x rw - tmpfs tmpfs rw\n";
        let bpffs: Vec<PathBuf> = mount_points(text)
            .into_iter()
            .filter(|(_, fstype)| fstype == "bpf")
            .map(|(point, _)| point)
            .collect();
        assert_eq!(
            bpffs,
            [PathBuf::from("/sys/fs/bpf"), PathBuf::from("/tmp/my bpf")]
        );
        assert_eq!(mount_points(text)[2], ("/tmp/x".into(), "tmpfs".into()));
    }
}
