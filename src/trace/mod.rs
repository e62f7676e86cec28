//! `xdpctl trace`'s two streams: XDP exceptions, which bpf/trace.bpf.c (a tp_btf program on
//! xdp:xdp_exception) sends through a ring buffer, and the bpf_printk lines of tracefs's
//! trace_pipe. Plus turning both into one line of text or JSON each.
//!
//! The streams are in `exceptions` and `printk`; here are what both share: the clock that dates
//! them, waiting on both at once, and their text and JSON.

mod exceptions;
mod printk;

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};

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
            unix_offset_ns: crate::counters::history::unix_offset_ns(),
        }
    }

    pub fn unix_time_of_monotonic(&self, monotonic_ns: u64) -> f64 {
        (i128::from(monotonic_ns) + self.unix_offset_ns) as f64 / 1e9
    }
}

/// Round to microseconds: the clocks are no more precise than that here.
fn micros(time: f64) -> f64 {
    (time * 1e6).round() / 1e6
}

/// `HH:MM:SS.ffffff` in UTC, as `history`, `graph` and `watch` show time.
pub fn clock_text(unix_time: f64) -> String {
    let seconds = unix_time.floor();
    let micros = ((unix_time - seconds) * 1e6).round().min(999_999.0) as u32;
    format!(
        "{}.{micros:06}",
        crate::counters::history::clock_time(seconds as i64)
    )
}

impl Exception {
    pub fn action_text(&self) -> String {
        match action_name(self.action) {
            "invalid" => format!("invalid action {}", self.action),
            name => name.to_owned(),
        }
    }

    /// `12:00:01.123456 exception XDP_ABORTED program xdp_abort (id 7) on veth0 (ifindex 2)`
    pub fn to_text(&self) -> String {
        let program = match &self.program {
            Some(name) => format!("program {name} (id {})", self.program_id),
            None => format!("program id {} (unloaded)", self.program_id),
        };
        let device = match &self.interface {
            Some(name) => format!("{name} (ifindex {})", self.ifindex),
            None => format!("ifindex {} in netns {}", self.ifindex, self.netns_inode),
        };
        format!(
            "{} exception {} {program} on {device}",
            clock_text(self.time),
            self.action_text()
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": "exception",
            "time": micros(self.time),
            "action": action_name(self.action),
            "action_code": self.action,
            "program": self.program,
            "program_id": self.program_id,
            "interface": self.interface,
            "ifindex": self.ifindex,
            "netns": self.netns_inode,
        })
    }
}

impl PrintkLine {
    /// `12:00:01.123456 printk    ping-1234 [001] the message`, `time` being when it was read.
    pub fn to_text(&self, time: f64) -> String {
        format!(
            "{} printk    {}-{} [{:03}] {}",
            clock_text(time),
            self.task,
            self.pid,
            self.cpu,
            self.message
        )
    }

    pub fn to_json(&self, time: f64) -> Value {
        json!({
            "type": "printk",
            "time": micros(time),
            "task": self.task,
            "pid": self.pid,
            "cpu": self.cpu,
            "message": self.message,
        })
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
    fn actions_are_named_and_invalid_ones_keep_their_number() {
        assert_eq!(action_name(0), "XDP_ABORTED");
        assert_eq!(action_name(4), "XDP_REDIRECT");
        assert_eq!(action_name(7), "invalid");
        let mut exception = Exception {
            time: 1_700_000_000.25,
            program_id: 7,
            program: Some("xdp_abort".into()),
            action: 0,
            ifindex: 2,
            netns_inode: 4026531840,
            interface: Some("veth0".into()),
        };
        let text = exception.to_text();
        assert!(
            text.ends_with(" exception XDP_ABORTED program xdp_abort (id 7) on veth0 (ifindex 2)"),
            "{text}"
        );
        let json = exception.to_json();
        assert_eq!(json["type"], "exception");
        assert_eq!(json["action"], "XDP_ABORTED");
        assert_eq!(json["program"], "xdp_abort");
        assert_eq!(json["interface"], "veth0");
        assert_eq!(json["time"], 1_700_000_000.25);

        exception.action = 7;
        exception.program = None;
        exception.interface = None;
        let text = exception.to_text();
        assert!(
            text.ends_with(
                " exception invalid action 7 program id 7 (unloaded) on ifindex 2 in netns \
                 4026531840"
            ),
            "{text}"
        );
        let json = exception.to_json();
        assert_eq!(
            (json["action"].as_str(), json["action_code"].as_u64()),
            (Some("invalid"), Some(7))
        );
        assert!(json["program"].is_null() && json["interface"].is_null());
        assert_eq!(json["netns"], 4026531840u32);
    }

    #[test]
    fn printk_json_and_text_carry_every_field() {
        let line = PrintkLine {
            task: "ping".into(),
            pid: 5,
            cpu: 1,
            message: "hello".into(),
        };
        let json = line.to_json(10.5);
        assert_eq!(json["type"], "printk");
        assert_eq!(
            (json["pid"].as_u64(), json["cpu"].as_u64()),
            (Some(5), Some(1))
        );
        assert_eq!(json["message"], "hello");
        assert!(line
            .to_text(10.5)
            .ends_with(" printk    ping-5 [001] hello"));
    }

    #[test]
    fn monotonic_timestamps_become_unix_time() {
        // Monotonic 10 s is Unix 1,000 s.
        let clock = ClockPair {
            unix_offset_ns: 990_000_000_000,
        };
        assert_eq!(clock.unix_time_of_monotonic(9_500_000_000), 999.5);
        let text = clock_text(1_000.000_25);
        assert!(text.ends_with(".000250") && text.len() == 15, "{text}");
    }
}
