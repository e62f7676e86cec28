//! `xdpctl trace`'s two streams: XDP exceptions, which bpf/trace.bpf.c (a tp_btf program on
//! xdp:xdp_exception) sends through a ring buffer, and the bpf_printk lines of tracefs's
//! trace_pipe. Their text and JSON lines are in src/output/trace.rs.
//!
//! The streams are in `exceptions` and `printk`; here are what both share: the clock that dates
//! them, and waiting on both at once.

mod exceptions;
mod printk;

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use anyhow::{bail, Result};

pub use exceptions::{
    action_name, own_netns_inode, DeviceFilter, Exception, ExceptionEvent, ExceptionTracer, Namer,
};
pub use printk::{
    find_or_mount_tracefs, parse_trace_line, PrintkLine, PrintkReader, TraceLine, Tracefs,
};

/// The monotonic and real clocks read together, to turn bpf_ktime_get_ns() into Unix time.
pub struct ClockPair {
    /// Unix time minus CLOCK_MONOTONIC, in ns.
    unix_offset_ns: i128,
}

impl ClockPair {
    pub fn now() -> ClockPair {
        ClockPair {
            unix_offset_ns: crate::sys::clock::unix_offset_ns(),
        }
    }

    pub fn unix_time_of_monotonic(&self, monotonic_ns: u64) -> f64 {
        (i128::from(monotonic_ns) + self.unix_offset_ns) as f64 / 1e9
    }
}

/// Waits until one of `fds` is readable, a signal arrives, or `timeout` passes.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Result<()> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(fd),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: pollfds is a valid array of pollfd of the length given.
    let ret = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as _, timeout_ms) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            bail!("waiting for trace events: {err}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_timestamps_become_unix_time() {
        // Monotonic 10 s is Unix 1,000 s.
        let clock = ClockPair {
            unix_offset_ns: 990_000_000_000,
        };
        assert_eq!(clock.unix_time_of_monotonic(9_500_000_000), 999.5);
    }
}
