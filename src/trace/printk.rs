//! The bpf_printk lines of tracefs's trace_pipe: finding (or mounting) tracefs, reading the
//! pipe without blocking, and parsing its lines.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// One bpf_trace_printk line of trace_pipe.
#[derive(Clone, Debug, PartialEq)]
pub struct PrintkLine {
    /// The task that was running (for XDP, whoever's softirq it was); `<...>` when unknown.
    pub task: String,
    pub pid: u32,
    pub cpu: u32,
    pub message: String,
}

/// What one line of trace_pipe holds.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceLine {
    Printk(PrintkLine),
    /// `CPU:N [LOST M EVENTS]`: the trace buffer overflowed before anyone read it.
    Lost(String),
    /// Output of other tracers or events: not ours to show.
    Other,
}

/// Parses a line of trace_pipe, whose format is
/// `TASK-PID [(TGID)] [CPU] FLAGS TIMESTAMP: EVENT: TEXT`.
pub fn parse_trace_line(line: &str) -> TraceLine {
    if line.starts_with("CPU:") && line.contains("[LOST ") {
        return TraceLine::Lost(line.trim().to_owned());
    }
    parse_printk(line).map_or(TraceLine::Other, TraceLine::Printk)
}

fn parse_printk(line: &str) -> Option<PrintkLine> {
    let (head, message) = line.split_once(": bpf_trace_printk: ")?;
    // Drop the timestamp and the flags; what is left ends in `[CPU]`.
    let head = head.trim_end();
    let head = head[..head.rfind(' ')?].trim_end();
    let head = head[..head.rfind(' ')?].trim_end();
    let cpu = head.strip_suffix(']')?;
    let open = cpu.rfind('[')?;
    let (task_pid, cpu) = (cpu[..open].trim_end(), cpu[open + 1..].trim());
    // With the record-tgid option, `(TGID)` comes between the pid and the cpu.
    let task_pid = match task_pid.strip_suffix(')') {
        Some(rest) => rest[..rest.rfind('(')?].trim_end(),
        None => task_pid,
    };
    let (task, pid) = task_pid.trim_start().rsplit_once('-')?;
    Some(PrintkLine {
        task: task.to_owned(),
        pid: pid.parse().ok()?,
        cpu: cpu.parse().ok()?,
        message: message.trim_end_matches('\n').to_owned(),
    })
}

/// Where tracefs is, mounting it as bpftool does when it is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracefs {
    pub dir: PathBuf,
    /// True when xdpctl had to mount it.
    pub mounted: bool,
}

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

pub fn find_or_mount_tracefs() -> Result<Tracefs> {
    for dir in [TRACEFS, DEBUGFS_TRACING] {
        if Path::new(dir).join("trace_pipe").exists() {
            return Ok(Tracefs {
                dir: dir.into(),
                mounted: false,
            });
        }
    }
    nix::mount::mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| {
        format!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed; mount it with \
             `mount -t tracefs tracefs {TRACEFS}`"
        )
    })?;
    Ok(Tracefs {
        dir: TRACEFS.into(),
        mounted: true,
    })
}

/// Reads trace_pipe without blocking. Reading consumes: a line read here is gone for every
/// other reader of trace_pipe.
pub struct PrintkReader {
    pipe: File,
    /// The start of a line whose end has not been read yet.
    partial: Vec<u8>,
    pub tracefs: Tracefs,
}

/// How much one `read_lines` takes at most, so a busy trace_pipe cannot starve the exceptions.
const READ_BUDGET: usize = 256 * 1024;

impl PrintkReader {
    pub fn open() -> Result<PrintkReader> {
        let tracefs = find_or_mount_tracefs()?;
        let path = tracefs.dir.join("trace_pipe");
        let pipe = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(PrintkReader {
            pipe,
            partial: Vec::new(),
            tracefs,
        })
    }

    /// False when tracing is switched off globally (tracing_on is 0): then no bpf_printk line
    /// reaches trace_pipe. xdpctl leaves that switch alone; it belongs to whoever turned it off.
    pub fn tracing_on(&self) -> bool {
        std::fs::read_to_string(self.tracefs.dir.join("tracing_on"))
            .map(|text| text.trim() != "0")
            .unwrap_or(true)
    }

    /// Readable when trace_pipe has data.
    pub fn wait_fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// The complete lines waiting in trace_pipe now. Does not block.
    pub fn read_lines(&mut self) -> Result<Vec<TraceLine>> {
        let mut buf = [0u8; 16 * 1024];
        let mut taken = 0;
        while taken < READ_BUDGET {
            match self.pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    taken += n;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err).context("reading trace_pipe"),
            }
        }
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        Ok(String::from_utf8_lossy(&complete)
            .lines()
            .map(parse_trace_line)
            .collect())
    }

    /// Reads and throws away what trace_pipe held before the trace began (for at most
    /// `limit`), and returns how many bpf_printk lines that was. Those lines would otherwise
    /// come out stamped with the time they were read, which may be long after they were
    /// written.
    pub fn skip_backlog(&mut self, limit: Duration) -> Result<usize> {
        let deadline = Instant::now() + limit;
        let mut skipped = 0;
        loop {
            let lines = self.read_lines()?;
            if lines.is_empty() || Instant::now() >= deadline {
                return Ok(skipped);
            }
            skipped += lines
                .iter()
                .filter(|line| matches!(line, TraceLine::Printk(_)))
                .count();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printk_lines_are_parsed_into_task_pid_cpu_and_message() {
        let line = "            ping-4711    [001] ..s21  5067.123456: bpf_trace_printk: \
                    xdpctl-trace-test: 98 bytes";
        assert_eq!(
            parse_trace_line(line),
            TraceLine::Printk(PrintkLine {
                task: "ping".into(),
                pid: 4711,
                cpu: 1,
                message: "xdpctl-trace-test: 98 bytes".into(),
            })
        );
        // Task names may hold dashes and spaces; record-tgid adds a (TGID) column.
        let line = " kworker/0:1-events-12 (   12) [000] b..1. 1.000001: bpf_trace_printk: a: b";
        let TraceLine::Printk(printk) = parse_trace_line(line) else {
            panic!("not parsed: {line}");
        };
        assert_eq!(
            (printk.task.as_str(), printk.pid, printk.cpu),
            ("kworker/0:1-events", 12, 0)
        );
        assert_eq!(printk.message, "a: b");
        let line = "  <...>-33   [1] d.... 9.5: bpf_trace_printk: ";
        let TraceLine::Printk(printk) = parse_trace_line(line) else {
            panic!("not parsed: {line}");
        };
        assert_eq!(
            (printk.task.as_str(), printk.message.as_str()),
            ("<...>", "")
        );
    }

    #[test]
    fn other_events_and_lost_markers_are_told_apart() {
        let other = "  ping-1 [000] ..... 1.0: xdp_exception: prog_id=3 action=ABORTED ifindex=2";
        assert_eq!(parse_trace_line(other), TraceLine::Other);
        assert_eq!(parse_trace_line("garbage"), TraceLine::Other);
        assert_eq!(
            parse_trace_line("CPU:1 [LOST 17 EVENTS]"),
            TraceLine::Lost("CPU:1 [LOST 17 EVENTS]".into())
        );
    }
}
