//! `xdpctl trace`'s two streams: XDP exceptions, which bpf/trace.bpf.c (a tp_btf program on
//! xdp:xdp_exception) sends through a ring buffer, and the bpf_printk lines of tracefs's
//! trace_pipe. output/trace.rs turns both into one line of text or JSON each.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, RingBuffer, RingBufferBuilder};

use crate::counters::stats::ACTIONS;
use crate::skel::trace::{types, TraceSkel, TraceSkelBuilder};
use crate::sys::attach;

/// `struct trace_exception_event` from include/xdpctl.h, as the skeleton generated it from BTF.
pub type ExceptionEvent = types::trace_exception_event;
// SAFETY: a struct of integers: any bytes are a valid value.
unsafe impl plain::Plain for ExceptionEvent {}

/// The network namespace xdpctl runs in, as its nsfs inode (what the kernel calls ns.inum).
pub fn own_netns_inode() -> Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")
        .context("reading /proc/self/ns/net")?
        .ino())
}

/// Exceptions of one device only: its ifindex within a network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceFilter {
    pub ifindex: u32,
    pub netns_inode: u32,
}

impl DeviceFilter {
    /// The interface `ifname` of the caller's network namespace.
    pub fn interface(ifname: &str) -> Result<DeviceFilter> {
        let ifindex = attach::ifindex(ifname)?;
        let netns_inode = u32::try_from(own_netns_inode()?)
            .context("this network namespace's inode does not fit the kernel's 32 bits")?;
        Ok(DeviceFilter {
            ifindex,
            netns_inode,
        })
    }
}

/// The tracepoint program, attached, and the ring buffer it fills. Dropping it detaches the
/// program (its link is not pinned) and unloads it.
pub struct ExceptionTracer {
    // Declared first so it is freed before the map it reads.
    ring: RingBuffer<'static>,
    received: Rc<RefCell<VecDeque<ExceptionEvent>>>,
    _link: Link,
    skel: TraceSkel<'static>,
}

impl ExceptionTracer {
    /// Loads bpf/trace.bpf.c and attaches it to xdp:xdp_exception.
    ///
    /// The filter is applied in the kernel, not here: a program that aborts under a flood raises
    /// an exception per packet, millions a second. Filtered in the kernel, other devices'
    /// exceptions never take room in the ring buffer, so they can neither crowd out (and lose)
    /// the ones asked for nor cost a copy and a wake-up each.
    pub fn start(filter: Option<DeviceFilter>) -> Result<ExceptionTracer> {
        // The skeleton borrows its object storage for its whole life; a tracer lives as long
        // as the trace, so the storage is leaked (one small allocation per tracer).
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = TraceSkelBuilder::default()
            .open(storage)
            .context("opening the xdp_exception tracing program")?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("the tracing program has no .rodata")?;
        if let Some(filter) = filter {
            rodata.filter_ifindex = filter.ifindex;
            rodata.filter_netns_inode = filter.netns_inode;
        }
        let skel = open.load().context(
            "loading the xdp_exception tracing program (it needs the kernel's BTF, \
             /sys/kernel/btf/vmlinux)",
        )?;
        let link = skel.progs.trace_xdp_exception.attach().context(
            "attaching to the tracepoint xdp:xdp_exception (it needs Linux >= 5.5 with BTF)",
        )?;
        let received = Rc::new(RefCell::new(VecDeque::new()));
        let sink = Rc::clone(&received);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&skel.maps.exception_events, move |bytes: &[u8]| {
                let mut event = ExceptionEvent::default();
                if plain::copy_from_bytes(&mut event, bytes).is_ok() {
                    sink.borrow_mut().push_back(event);
                }
                0
            })
            .context("reading the exception ring buffer")?;
        let ring = builder
            .build()
            .context("setting up the exception ring buffer")?;
        Ok(ExceptionTracer {
            ring,
            received,
            _link: link,
            skel,
        })
    }

    /// Readable when the ring buffer has events (an epoll fd, which poll(2) takes).
    pub fn wait_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the epoll fd belongs to self.ring, which outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.ring.epoll_fd()) }
    }

    /// Every event that arrived since the last call, oldest first. Does not block.
    pub fn take_events(&self) -> Result<Vec<ExceptionEvent>> {
        self.ring
            .consume()
            .context("reading the exception ring buffer")?;
        Ok(self.received.borrow_mut().drain(..).collect())
    }

    /// Exceptions the kernel could not send because the ring buffer was full.
    pub fn lost(&self) -> u64 {
        self.skel.maps.bss_data.as_deref().map_or(0, |bss| {
            // SAFETY: the kernel bumps this counter in shared memory: read it afresh each time.
            unsafe { std::ptr::read_volatile(&bss.lost_events) }
        })
    }
}

/// The name of an action number: an XDP action's, or "invalid" for any other number.
pub fn action_name(action: u32) -> &'static str {
    ACTIONS.get(action as usize).copied().unwrap_or("invalid")
}

/// An exception, with the names xdpctl could find for its program and interface.
#[derive(Clone, Debug, PartialEq)]
pub struct Exception {
    /// Unix time, in seconds.
    pub time: f64,
    pub program_id: u32,
    /// None once the program is unloaded.
    pub program: Option<String>,
    pub action: u32,
    pub ifindex: u32,
    pub netns_inode: u32,
    /// Only for a device in xdpctl's own network namespace (an ifindex means nothing elsewhere).
    pub interface: Option<String>,
}

/// Names the programs and interfaces of exceptions. Program names are cached: ids are not
/// reused while the program lives, and an exception flood names the same program each time.
pub struct Namer {
    own_netns_inode: u64,
    programs: HashMap<u32, Option<String>>,
}

impl Namer {
    pub fn new() -> Result<Namer> {
        Ok(Namer {
            own_netns_inode: own_netns_inode()?,
            programs: HashMap::new(),
        })
    }

    pub fn name(&mut self, event: &ExceptionEvent, clock: &ClockPair) -> Exception {
        let program = self
            .programs
            .entry(event.prog_id)
            .or_insert_with(|| {
                attach::program_summary(event.prog_id)
                    .ok()
                    .map(|summary| summary.name)
            })
            .clone();
        let interface = if u64::from(event.netns_inode) == self.own_netns_inode {
            nix::net::if_::if_indextoname(event.ifindex)
                .ok()
                .map(|name| name.to_string_lossy().into_owned())
        } else {
            None
        };
        Exception {
            time: clock.unix_time_of_monotonic(event.timestamp_ns),
            program_id: event.prog_id,
            program,
            action: event.action,
            ifindex: event.ifindex,
            netns_inode: event.netns_inode,
            interface,
        }
    }
}

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

    #[test]
    fn actions_are_named_and_invalid_ones_are_invalid() {
        assert_eq!(action_name(0), "XDP_ABORTED");
        assert_eq!(action_name(4), "XDP_REDIRECT");
        assert_eq!(action_name(7), "invalid");
    }

    #[test]
    fn monotonic_timestamps_become_unix_time() {
        // Monotonic 10 s is Unix 1,000 s.
        let clock = ClockPair {
            unix_offset_ns: 990_000_000_000,
        };
        assert_eq!(clock.unix_time_of_monotonic(9_500_000_000), 999.5);
    }
}
