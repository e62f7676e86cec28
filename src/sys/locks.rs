//! Named locks between xdpctl processes: open-file-description byte-range locks on a single
//! file, `/run/xdpctl/locks`. A name locks one byte of it, so there is no file per name to pile
//! up in /run (a file per pin root did). Two names that hash to the same byte only wait for
//! each other, which is harmless. The lock goes when its guard is dropped (the fd is closed),
//! and with the process, however it ends.
//!
//! Anyone who can open the file can lock a byte of it and so stall every xdpctl: the directory
//! is 0700 and the file 0600, made so from the start. One found open to others, or owned by
//! someone other than root (or this user), is not mended in place, since chmod and chown do not
//! take back a file descriptor already open: root (or its owner, for a too-wide one) replaces
//! it by a new file or directory, and whoever held the old one holds nothing xdpctl looks at.
//! (Nor does an xdpctl that held a lock on it at that moment: this happens once, when the old
//! one is found unsafe, typically left by an older xdpctl.)
//! A wait says what it waits for after a second, and gives up after the lock timeout
//! (`--lock-timeout`).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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
    /// Owned by us or root, but others may open it (or have opened it, and kept the fd, which a
    /// chmod would not take back): replace it.
    Narrow,
    /// Owned by someone else, who could open it again whatever its mode: replace it (root).
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

impl Verdict {
    /// Why a file or directory with this verdict is replaced, for the note that says so.
    fn why(&self, mode: u32) -> String {
        match self {
            Verdict::Fine => String::new(),
            Verdict::Narrow => format!("was open to other users (mode {:o})", mode & 0o7777),
            Verdict::Foreign(owner) => format!("belonged to uid {owner}"),
        }
    }
}

/// Fails unless this process may replace `path`, found with `verdict`: root may replace
/// anything; anyone else only what is theirs or root's (a too-wide one), if they can.
fn may_replace(path: &str, verdict: &Verdict) -> Result<()> {
    match verdict {
        Verdict::Foreign(owner) if !nix::unistd::geteuid().is_root() => bail!(
            "{path} belongs to uid {owner}, not root: that user could hold xdpctl's locks \
             forever. Remove it (`sudo rm -r {path}`), and xdpctl makes it anew"
        ),
        _ => Ok(()),
    }
}

/// The error of a replacement that failed, with the fix.
fn replacing_failed(path: &'static str, why: &str) -> impl FnOnce() -> String {
    let why = why.to_owned();
    move || {
        format!(
            "{path} {why}, and replacing it failed: run xdpctl as root once, or remove it \
             (`sudo rm -r {path}`) and xdpctl makes it anew"
        )
    }
}

/// Makes /run/xdpctl (mode 0700) if it is missing; replaces it if it is open to others or
/// someone else's.
pub fn ensure_state_dir() -> Result<()> {
    match DirBuilder::new().mode(0o700).create(STATE_DIR) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(|| format!("creating {STATE_DIR}")),
    }
    let meta = fs::symlink_metadata(STATE_DIR).with_context(|| format!("reading {STATE_DIR}"))?;
    if !meta.is_dir() {
        bail!(
            "{STATE_DIR} is not a directory (a symbolic link?): remove it, and xdpctl makes it \
             anew"
        );
    }
    let verdict = verdict(meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw());
    if verdict == Verdict::Fine {
        return Ok(());
    }
    may_replace(STATE_DIR, &verdict)?;
    let why = verdict.why(meta.mode());
    replace_state_dir(&meta, &verdict).with_context(replacing_failed(STATE_DIR, &why))?;
    eprintln!(
        "xdpctl: note: {STATE_DIR} {why}; it is replaced by a new, private one{}",
        match verdict {
            Verdict::Narrow => "",
            _ => " (what was in it is dropped: its owner could have put it there)",
        }
    );
    Ok(())
}

/// Swaps a new 0700 directory in for the old one (`old`), carries over what root wrote in the
/// old one (run records, lab records) when it is root's, and removes the old one with its
/// lock file.
fn replace_state_dir(old: &fs::Metadata, verdict: &Verdict) -> Result<()> {
    let aside = format!("{STATE_DIR}.new-{}", std::process::id());
    // Only root (or a user with capabilities) can write /run: a leftover is a killed run's.
    let _ = fs::remove_dir_all(&aside);
    DirBuilder::new()
        .mode(0o700)
        .create(&aside)
        .with_context(|| format!("creating {aside}"))?;
    swap_with_state_dir(&aside)?;
    // `aside` is now the old directory, unless another xdpctl replaced it first: then it is
    // that one's new directory, and goes back.
    let swapped_out = fs::symlink_metadata(&aside)?;
    if (swapped_out.dev(), swapped_out.ino()) != (old.dev(), old.ino()) {
        swap_with_state_dir(&aside)?;
        let _ = fs::remove_dir(&aside);
        return Ok(());
    }
    if *verdict == Verdict::Narrow {
        for entry in fs::read_dir(&aside)?.filter_map(|entry| entry.ok()) {
            let name = entry.file_name();
            // Never the lock file: its inode is what must not live on.
            if name.to_string_lossy().starts_with("locks") {
                continue;
            }
            let _ = fs::rename(entry.path(), Path::new(STATE_DIR).join(&name));
        }
    }
    fs::remove_dir_all(&aside).with_context(|| format!("removing the old {STATE_DIR} ({aside})"))
}

/// Opens the lock file, made 0600 if new; one that is open to others or someone else's is
/// replaced by a new one first.
fn open_lock_file() -> Result<File> {
    ensure_state_dir()?;
    // A second round only if another xdpctl replaced the file between our open and check.
    for _ in 0..3 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(LOCK_FILE)
            .with_context(|| format!("opening {LOCK_FILE}"))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading {LOCK_FILE}"))?;
        let verdict = verdict(meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw());
        if verdict == Verdict::Fine {
            return Ok(file);
        }
        may_replace(LOCK_FILE, &verdict)?;
        let why = verdict.why(meta.mode());
        if replace_lock_file(&meta).with_context(replacing_failed(LOCK_FILE, &why))? {
            eprintln!(
                "xdpctl: note: {LOCK_FILE} {why}; it is replaced by a new, private one, so \
                 that nothing opened on the old one can hold xdpctl's locks"
            );
        }
    }
    bail!("{LOCK_FILE} kept changing while xdpctl opened it: run it again")
}

/// Puts a new 0600 file in place of the lock file `old`, made under another name with
/// O_EXCL and renamed over it (a new inode: an fd open on the old one locks nothing that
/// xdpctl looks at). False if another xdpctl replaced it first.
fn replace_lock_file(old: &fs::Metadata) -> Result<bool> {
    let fresh = format!("{LOCK_FILE}.new-{}", std::process::id());
    // The directory is private by now: a leftover is a killed run's.
    let _ = fs::remove_file(&fresh);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&fresh)
        .with_context(|| format!("creating {fresh}"))?;
    // Replace only the file that was looked at. (Two xdpctls that both found the old one can
    // still replace each other's new one, once: the check after locking in [`lock`] then
    // sends the loser to the file in place.)
    let same = fs::symlink_metadata(LOCK_FILE)
        .is_ok_and(|now| (now.dev(), now.ino()) == (old.dev(), old.ino()));
    if !same {
        let _ = fs::remove_file(&fresh);
        return Ok(false);
    }
    fs::rename(&fresh, LOCK_FILE).with_context(|| format!("renaming {fresh} to {LOCK_FILE}"))?;
    Ok(true)
}

/// Whether `file` is still the one at [`LOCK_FILE`] (not replaced since it was opened).
fn is_in_place(file: &File) -> bool {
    match (file.metadata(), fs::symlink_metadata(LOCK_FILE)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

/// Takes the lock called `name`, waiting for it up to the lock timeout; after a second of
/// waiting it says what it waits for.
pub fn lock(name: &str) -> Result<NamedLock> {
    let mut file = open_lock_file()?;
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
            if is_in_place(&file) {
                return Ok(NamedLock { _file: file });
            }
            // Replaced since it was opened: a lock on it keeps nobody out. Take the new one.
            file = open_lock_file()?;
            continue;
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

/// Atomically exchanges `dir` and the state directory (both must exist).
fn swap_with_state_dir(dir: &str) -> Result<()> {
    use nix::fcntl::{renameat2, RenameFlags};
    renameat2(None, dir, None, STATE_DIR, RenameFlags::RENAME_EXCHANGE)
        .with_context(|| format!("swapping {dir} with {STATE_DIR}"))
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
