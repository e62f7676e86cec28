//! Named locks between xdpctl processes: open-file-description byte-range locks on a single
//! file, `/run/xdpctl/locks`. A name locks one byte of it, so there is no file per name to pile
//! up in /run (a file per pin root did). Two names that hash to the same byte only wait for
//! each other, which is harmless. The lock goes when its guard is dropped (the fd is closed),
//! and with the process, however it ends.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};

const LOCK_FILE: &str = "/run/xdpctl/locks";

/// Bytes that names are spread over.
const SLOTS: u64 = 1 << 20;

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

/// Waits for and takes the lock called `name`.
pub fn lock(name: &str) -> Result<NamedLock> {
    fs::create_dir_all("/run/xdpctl").context("creating /run/xdpctl")?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    let range = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: slot(name) as libc::off_t,
        l_len: 1,
        l_pid: 0,
    };
    loop {
        // SAFETY: fcntl on our own fd with a valid struct flock.
        let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &range) };
        if ret == 0 {
            return Ok(NamedLock { _file: file });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("taking the lock '{name}' in {LOCK_FILE}"));
        }
    }
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
