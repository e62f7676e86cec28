//! Named locks between xdpctl processes: open-file-description byte-range locks on a single
//! file, `/run/xdpctl/locks`. A name locks one byte of it, so there is no file per name to pile
//! up in /run (a file per pin root did). Two names that hash to the same byte only wait for
//! each other, which is harmless. The lock goes when its guard is dropped (the fd is closed),
//! and with the process, however it ends.
//!
//! Anyone who can open the file can lock a byte of it and so stall every xdpctl: the directory
//! is 0700 and the file 0600, made so from the start, mended if found wider, and if someone
//! other than root (or this user) owns them, taken back by root or refused to anyone else. A wait says what it waits for after a
//! second, and gives up after the lock timeout (`--lock-timeout`).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// xdpctl's private directory in /run: the lock file, `run` records, the labs' state.
pub const STATE_DIR: &str = "/run/xdpctl";
const LOCK_FILE: &str = "/run/xdpctl/locks";

/// Bytes that names are spread over.
const SLOTS: u64 = 1 << 20;

/// How long a wait lasts before it says what it waits for.
const QUIET_WAIT: Duration = Duration::from_secs(1);

/// The lock timeout in milliseconds (set from `--lock-timeout`).
static TIMEOUT_MS: AtomicU64 = AtomicU64::new(30_000);

/// Sets how long [`lock`] waits before it fails.
pub fn set_timeout(timeout: Duration) {
    TIMEOUT_MS.store(timeout.as_millis() as u64, Ordering::Relaxed);
}

fn timeout() -> Duration {
    Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed))
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct NamedLock {
    _file: File,
}

/// The byte a name locks (FNV-1a: stable across processes and builds).
pub fn slot(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % SLOTS
}

/// A lock's name for people: names are "<kind><pin root>", e.g. "edit/sys/fs/bpf/xdpctl".
pub fn describe(name: &str) -> String {
    match name.find('/') {
        Some(at) if at > 0 => format!("the '{}' lock of the pin root {}", &name[..at], &name[at..]),
        _ => format!("the lock '{name}'"),
    }
}

/// What to do about an existing file or directory of ours, from its owner and mode.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    /// Owned by us or root, but others may open it: narrow its mode.
    Narrow,
    /// Owned by someone else, who could open it again whatever its mode.
    Foreign(u32),
}

fn verdict(owner: u32, mode: u32, euid: u32) -> Verdict {
    if owner != 0 && owner != euid {
        Verdict::Foreign(owner)
    } else if mode & 0o077 != 0 {
        Verdict::Narrow
    } else {
        Verdict::Fine
    }
}

/// Checks (and if need be narrows) an existing file or directory of ours.
fn secure(path: &Path, file: Option<&File>, private_mode: u32) -> Result<()> {
    let meta = match file {
        Some(file) => file.metadata(),
        None => fs::symlink_metadata(path),
    }
    .with_context(|| format!("reading {}", path.display()))?;
    if file.is_none() && !meta.is_dir() {
        bail!(
            "{} is not a directory (a symbolic link?): remove it, and xdpctl makes it anew",
            path.display()
        );
    }
    match verdict(meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw()) {
        Verdict::Fine => Ok(()),
        Verdict::Narrow => {
            let mode = fs::Permissions::from_mode(private_mode);
            match file {
                Some(file) => file.set_permissions(mode),
                None => fs::set_permissions(path, mode),
            }
            .with_context(|| {
                format!(
                    "{} is open to other users (mode {:o}) and making it {private_mode:o} \
                     failed: run xdpctl as root once, or `chmod {private_mode:o} {}`",
                    path.display(),
                    meta.mode() & 0o7777,
                    path.display()
                )
            })
        }
        // Root takes it back (a user with capabilities may have made it first); anyone else
        // cannot, and says how.
        Verdict::Foreign(owner) if nix::unistd::geteuid().is_root() => {
            let root = Some(nix::unistd::Uid::from_raw(0));
            let group = Some(nix::unistd::Gid::from_raw(0));
            match file {
                Some(file) => nix::unistd::fchown(file.as_raw_fd(), root, group),
                None => nix::unistd::fchownat(
                    None,
                    path,
                    root,
                    group,
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                ),
            }
            .with_context(|| format!("making {} root's", path.display()))?;
            eprintln!(
                "xdpctl: note: {} belonged to uid {owner}; it is root's now",
                path.display()
            );
            secure(path, file, private_mode)
        }
        Verdict::Foreign(owner) => bail!(
            "{} belongs to uid {owner}, not root: that user could hold xdpctl's locks forever. \
             Remove it (`sudo rm -r {}`), and xdpctl makes it anew",
            path.display(),
            path.display()
        ),
    }
}

/// Makes /run/xdpctl (mode 0700) if it is missing, and checks it if it is there.
pub fn ensure_state_dir() -> Result<()> {
    match DirBuilder::new().mode(0o700).create(STATE_DIR) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            secure(Path::new(STATE_DIR), None, 0o700)
        }
        Err(err) => Err(err).with_context(|| format!("creating {STATE_DIR}")),
    }
}

/// Opens the lock file, made 0600 if new, checked if not.
fn open_lock_file() -> Result<File> {
    ensure_state_dir()?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    secure(Path::new(LOCK_FILE), Some(&file), 0o600)?;
    Ok(file)
}

/// Takes the lock called `name`, waiting for it up to the lock timeout; after a second of
/// waiting it says what it waits for.
pub fn lock(name: &str) -> Result<NamedLock> {
    let file = open_lock_file()?;
    let range = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: slot(name) as libc::off_t,
        l_len: 1,
        l_pid: 0,
    };
    let started = Instant::now();
    let mut said = false;
    // Short naps first: most waits are for an edit that ends within milliseconds.
    let mut nap = Duration::from_millis(1);
    loop {
        // SAFETY: fcntl on our own fd with a valid struct flock.
        let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &range) };
        if ret == 0 {
            return Ok(NamedLock { _file: file });
        }
        let err = io::Error::last_os_error();
        if !matches!(
            err.raw_os_error(),
            Some(libc::EAGAIN) | Some(libc::EACCES) | Some(libc::EINTR)
        ) {
            return Err(err).with_context(|| format!("taking {} in {LOCK_FILE}", describe(name)));
        }
        let waited = started.elapsed();
        let holder = || holder(&file, slot(name));
        if waited >= timeout() {
            bail!(
                "gave up after {:.1} s waiting for {}{}: another xdpctl is editing or loading \
                 (wait for it to finish, or stop it), or some process holds {LOCK_FILE} open \
                 (find it with `fuser -v {LOCK_FILE}`); --lock-timeout SECONDS waits longer",
                waited.as_secs_f64(),
                describe(name),
                holder()
            );
        }
        if !said && waited >= QUIET_WAIT {
            eprintln!(
                "xdpctl: waiting for {}{} (--lock-timeout {} s)",
                describe(name),
                holder(),
                timeout().as_secs_f64()
            );
            said = true;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// ", held by pid N (COMMAND)" for the process holding byte `start` of the lock file, or ""
/// if it cannot be told. /proc/locks shows no pid for OFD locks; a holder's fdinfo lists them.
fn holder(file: &File, start: u64) -> String {
    let Ok(meta) = file.metadata() else {
        return String::new();
    };
    let dev = meta.dev();
    let inode = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let me = std::process::id().to_string();
    let Ok(processes) = fs::read_dir("/proc") else {
        return String::new();
    };
    for process in processes.filter_map(|entry| entry.ok()) {
        let pid = process.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(process.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.filter_map(|entry| entry.ok()) {
            let info = fs::read_to_string(fd.path()).unwrap_or_default();
            if info.lines().any(|line| holds(line, &inode, start)) {
                let command = fs::read_to_string(process.path().join("comm")).unwrap_or_default();
                return format!(", held by pid {pid} ({})", command.trim());
            }
        }
    }
    String::new()
}

/// Whether an fdinfo line ("lock:\t1: OFDLCK ADVISORY WRITE -1 fe:00:123 5 5") is a granted
/// lock on `inode` that covers byte `start`.
fn holds(line: &str, inode: &str, start: u64) -> bool {
    let Some(lock) = line.strip_prefix("lock:") else {
        return false;
    };
    let fields: Vec<&str> = lock.split_whitespace().collect();
    let Some(at) = fields.iter().position(|field| *field == inode) else {
        return false;
    };
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let end = fields.get(at + 2).and_then(|f| match *f {
        "EOF" => Some(u64::MAX),
        f => f.parse().ok(),
    });
    fields.get(1) != Some(&"->")
        && matches!((number(at + 1), end), (Some(first), Some(last)) if first <= start && start <= last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_spread_and_stay_put() {
        assert_eq!(
            slot("edit/sys/fs/bpf/xdpctl"),
            slot("edit/sys/fs/bpf/xdpctl")
        );
        assert_ne!(
            slot("edit/sys/fs/bpf/xdpctl"),
            slot("maps/sys/fs/bpf/xdpctl")
        );
        assert!(slot("x") < SLOTS);
    }

    #[test]
    fn a_holder_is_found_in_fdinfo_lock_lines() {
        let line = "lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:123 5 5";
        assert!(holds(line, "fe:00:123", 5));
        assert!(!holds(line, "fe:00:123", 6));
        assert!(!holds(line, "fe:00:1234", 5));
        assert!(holds(
            "lock:\t1: POSIX ADVISORY READ 7 fe:00:123 0 EOF",
            "fe:00:123",
            9
        ));
        assert!(!holds(
            "lock:\t1: -> OFDLCK ADVISORY WRITE -1 fe:00:123 5 5",
            "fe:00:123",
            5
        ));
        assert!(!holds("pos:\t0", "fe:00:123", 5));
    }

    #[test]
    fn lock_names_read_as_kind_and_pin_root() {
        assert_eq!(
            describe("edit/sys/fs/bpf/xdpctl"),
            "the 'edit' lock of the pin root /sys/fs/bpf/xdpctl"
        );
        assert_eq!(describe("test-lock"), "the lock 'test-lock'");
    }

    #[test]
    fn only_root_or_this_user_may_own_the_lock_and_nobody_else_may_open_it() {
        assert_eq!(verdict(0, 0o100600, 0), Verdict::Fine);
        assert_eq!(verdict(0, 0o040700, 1000), Verdict::Fine);
        assert_eq!(verdict(1000, 0o100600, 1000), Verdict::Fine);
        assert_eq!(verdict(0, 0o100644, 0), Verdict::Narrow);
        assert_eq!(verdict(0, 0o040755, 0), Verdict::Narrow);
        assert_eq!(verdict(65534, 0o100600, 0), Verdict::Foreign(65534));
        assert_eq!(verdict(65534, 0o100644, 1000), Verdict::Foreign(65534));
    }

    #[test]
    fn a_second_taker_waits_until_the_first_lets_go() {
        // /run needs root; CI (XDPCTL_REQUIRE_ROOT) runs this as root.
        if !nix::unistd::geteuid().is_root() && std::env::var_os("XDPCTL_REQUIRE_ROOT").is_none() {
            eprintln!("skipped: needs root for /run/xdpctl");
            return;
        }
        let name = format!("test-lock-{}", std::process::id());
        let first = lock(&name).unwrap();
        let (taken, waiter) = std::sync::mpsc::channel();
        let second = std::thread::spawn({
            let name = name.clone();
            move || {
                let held = lock(&name).unwrap();
                taken.send(()).unwrap();
                drop(held);
            }
        });
        // Open file description locks conflict even within one process.
        assert!(waiter
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err());
        drop(first);
        waiter
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the second taker got the lock once the first let go");
        second.join().unwrap();
    }
}
