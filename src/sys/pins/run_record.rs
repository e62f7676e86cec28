//! What `xdpctl run` records while it holds an interface: `/run/xdpctl/run/<state name>`,
//! "<pid> <link id> <pin root>". `run` pins no link, so this record is how other commands
//! find its program: `status` to name the owner, and the pin set's repair and `unload --all`
//! to see a firewall that runs on this pin root's maps. Records of older versions lack the pin
//! root; they are still read.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::state_name;

const RUN_DIR: &str = "/run/xdpctl/run";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub pid: u32,
    pub link_id: u32,
    /// The pin root the `run` used (its firewall's maps are pinned there); None in a record
    /// written by an older version.
    pub pin_root: Option<PathBuf>,
}

impl RunRecord {
    /// Whether the process that wrote it still runs.
    pub fn is_live(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

pub(super) fn run_record_path(ifname: &str) -> Result<PathBuf> {
    Ok(Path::new(RUN_DIR).join(state_name(ifname)?))
}

pub fn write_run_record(ifname: &str, record: &RunRecord) -> Result<()> {
    let path = run_record_path(ifname)?;
    crate::sys::locks::ensure_state_dir()?;
    fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    // Written aside and renamed into place, so a reader never sees half a record.
    let partial = path.with_extension("partial");
    fs::write(&partial, format_run_record(record))
        .and_then(|()| fs::rename(&partial, &path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&partial);
        })
        .with_context(|| format!("writing {}", path.display()))
}

pub fn read_run_record(ifname: &str) -> Option<RunRecord> {
    parse_run_record(&fs::read(run_record_path(ifname).ok()?).ok()?)
}

pub fn remove_run_record(ifname: &str) {
    if let Ok(path) = run_record_path(ifname) {
        let _ = fs::remove_file(path);
    }
}

/// The records of every `run` that still runs, in any network namespace, with the name of
/// the file each is in.
pub fn live_run_records() -> Result<Vec<(String, RunRecord)>> {
    let entries = match fs::read_dir(RUN_DIR) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {RUN_DIR}")),
    };
    let mut records = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {RUN_DIR}"))?;
        // A record being written (no state name has a '.').
        if entry.file_name().as_bytes().contains(&b'.') {
            continue;
        }
        let text = match fs::read(entry.path()) {
            Ok(text) => text,
            // Its `run` ended while we listed.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", entry.path().display()))
            }
        };
        if let Some(record) = parse_run_record(&text).filter(RunRecord::is_live) {
            records.push((entry.file_name().to_string_lossy().into_owned(), record));
        }
    }
    Ok(records)
}

fn format_run_record(record: &RunRecord) -> Vec<u8> {
    let mut text = format!("{} {}", record.pid, record.link_id).into_bytes();
    if let Some(root) = &record.pin_root {
        text.push(b' ');
        text.extend_from_slice(root.as_os_str().as_bytes());
    }
    text.push(b'\n');
    text
}

fn parse_run_record(text: &[u8]) -> Option<RunRecord> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut fields = text.splitn(3, |&b| b == b' ');
    let mut number = || {
        std::str::from_utf8(fields.next()?)
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let pid = number()?;
    let link_id = number()?;
    let pin_root = fields
        .next()
        .filter(|root| !root.is_empty())
        .map(|root| PathBuf::from(OsStr::from_bytes(root)));
    Some(RunRecord {
        pid,
        link_id,
        pin_root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_record_round_trips_and_rejects_garbage() {
        let record = RunRecord {
            pid: 123,
            link_id: 45,
            pin_root: Some(PathBuf::from("/sys/fs/bpf/my root")),
        };
        assert_eq!(format_run_record(&record), b"123 45 /sys/fs/bpf/my root\n");
        assert_eq!(parse_run_record(&format_run_record(&record)), Some(record));
        assert_eq!(parse_run_record(b"123"), None);
        assert_eq!(parse_run_record(b"x y"), None);
        assert_eq!(parse_run_record(b""), None);
    }

    #[test]
    fn records_of_older_versions_have_no_pin_root() {
        assert_eq!(
            parse_run_record(b"123 45\n"),
            Some(RunRecord {
                pid: 123,
                link_id: 45,
                pin_root: None
            })
        );
    }
}
