//! `xdpctl trace` end to end: real programs in real labs raise real exceptions and bpf_printk
//! lines, and the xdpctl binary runs as a child process, the way a user runs it.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use xdpctl::lab::testenv::LabGuard;

/// trace_pipe is one stream for the whole machine, and reading it consumes it: two traces at
/// once would split its lines between them. The tests that run a trace take turns.
static TRACE_PIPE: Mutex<()> = Mutex::new(());

fn take_turn() -> MutexGuard<'static, ()> {
    TRACE_PIPE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a trace may take to stop after Ctrl-C or SIGTERM: it looks every 100 ms, so this is
/// only for a loaded machine.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `xdpctl trace`, its stdout and stderr read line by line on threads. Killed when
/// dropped, so a failing test leaves no trace (and no tracepoint link) running.
struct TraceChild {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
}

impl TraceChild {
    /// Starts `command` (an xdpctl trace) and waits for its ready line on stderr.
    fn start(mut command: Command) -> TraceChild {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xdpctl trace starts");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        let mut trace = TraceChild {
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match trace.stderr.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.starts_with("tracing ") && line.ends_with("(Ctrl-C to stop)");
                    trace.stderr_seen.push(line);
                    if ready {
                        return trace;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no ready line in {READY_TIMEOUT:?}: {:?}",
                        trace.stderr_seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "xdpctl trace exited before it was ready ({:?}): {:?}",
                    trace.child.wait(),
                    trace.stderr_seen
                ),
            }
        }
    }

    /// The next line on stdout, or None if none comes in `timeout` or the trace ended.
    fn next_line(&self, timeout: Duration) -> Option<String> {
        self.stdout.recv_timeout(timeout).ok()
    }

    /// The first stdout line within EVENT_TIMEOUT that `wanted` accepts, as JSON.
    fn wait_for_json(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let mut seen = Vec::new();
        while let Some(line) = self.next_line(deadline.saturating_duration_since(Instant::now())) {
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
            if wanted(&value) {
                return value;
            }
            seen.push(line);
        }
        panic!("the expected event did not come in {EVENT_TIMEOUT:?}; got {seen:?}");
    }

    /// Waits for the trace to exit by itself; the rest of its stderr goes into stderr_seen.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.stderr_seen.extend(self.stderr.try_iter());
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "xdpctl trace did not exit in {EVENT_TIMEOUT:?}: {:?}",
                self.stderr_seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// After a Ctrl-C or SIGTERM: the trace caught it (an uncaught one kills it, which is no
    /// success), stopped within STOP_TIMEOUT (it looks at its stop flag every 100 ms), and
    /// said nothing after its ready line but warnings of lost lines or events.
    fn assert_stops_cleanly(&mut self, how: &str) {
        let asked = Instant::now();
        let status = self.wait_exit();
        let took = asked.elapsed();
        assert_eq!(
            status.code(),
            Some(0),
            "{how}: {status}: {:?}",
            self.stderr_seen
        );
        assert!(
            took < STOP_TIMEOUT,
            "{how}: the trace took {took:?} to stop: {:?}",
            self.stderr_seen
        );
        // The rest of stderr, up to its end (the process is gone, so the pipe closes).
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(line) = self
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.stderr_seen.push(line);
        }
        let ready = self
            .stderr_seen
            .iter()
            .position(|line| line.starts_with("tracing "))
            .expect("the ready line");
        let after: Vec<&String> = self.stderr_seen[ready + 1..]
            .iter()
            // Losses are warnings, and other tracers on the machine can cause them.
            .filter(|line| !(line.starts_with("xdpctl: ") && line.contains(" lost")))
            .collect();
        assert!(
            after.is_empty(),
            "{how}: the trace said more on stderr after its ready line: {after:?}"
        );
        assert!(
            !self
                .stderr_seen
                .iter()
                .any(|line| line.contains("cannot catch Ctrl-C")),
            "{:?}",
            self.stderr_seen
        );
    }
}

impl Drop for TraceChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The id of the program attached to the lab's veth0.
fn inner_program_id(fw: &Instance, lab: &LabGuard) -> u64 {
    let status: Value =
        serde_json::from_str(&fw.inside(lab, &["status", "veth0", "--json"])).unwrap();
    status[0]["id"].as_u64().expect("a program on veth0")
}

/// `xdpctl trace ARGS` started inside the lab: the trace child itself enters the namespace
/// (setns, as `testenv exec` does), so there is no `testenv exec` in between that a kill would
/// miss it behind.
fn trace_inside(fw: &Instance, lab: &LabGuard, args: &[&str]) -> TraceChild {
    let mut command = fw.with_root(lab.command(xdpctl_path()).unwrap());
    command.arg("trace").args(args);
    TraceChild::start(command)
}

/// The bpf_links of xdpctl trace's tracepoint programs, now.
fn trace_links() -> HashSet<u32> {
    libbpf_rs::query::LinkInfoIter::default()
        .filter(|link| {
            xdpctl::sys::attach::program_summary(link.prog_id)
                .is_ok_and(|prog| prog.name.starts_with("trace_xdp_exc"))
        })
        .map(|link| link.id)
        .collect()
}

#[test]
fn an_aborting_program_shows_as_an_exception_on_its_interface() {
    require_root!();
    let _turn = take_turn();
    let fw = Instance::new();
    let lab = lab();
    fw.inside(&lab, &["load", "veth0", "--program", "xdp_abort"]);
    let program_id = inner_program_id(&fw, &lab);

    let mut trace = trace_inside(&fw, &lab, &["--iface", "veth0", "--count", "1", "--json"]);
    // The replies arrive on veth0, where xdp_abort aborts them.
    assert!(!ping(&lab, 3), "ping got through xdp_abort");
    let status = trace.wait_exit();
    assert!(status.success(), "{status}: {:?}", trace.stderr_seen);
    let line = trace.next_line(Duration::from_secs(1)).expect("one event");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["type"], "exception", "{event}");
    assert_eq!(event["program"], "xdp_abort", "{event}");
    assert_eq!(event["program_id"], program_id, "{event}");
    assert_eq!(event["action"], "XDP_ABORTED", "{event}");
    assert_eq!(event["action_code"], 0, "{event}");
    assert_eq!(event["interface"], "veth0", "{event}");
    let netns_inode =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(lab.netns_path()).unwrap());
    assert_eq!(event["netns"], netns_inode, "{event}");
    // --count 1: exactly one line.
    assert_eq!(trace.next_line(Duration::from_millis(200)), None);
}

#[test]
fn an_invalid_action_shows_its_number_and_other_namespaces_show_their_inode() {
    require_root!();
    let _turn = take_turn();
    let fw = Instance::new();
    let object = user_object();
    let lab = lab();
    fw.inside(
        &lab,
        &[
            "load",
            "veth0",
            "--obj",
            object.to_str().unwrap(),
            "--program",
            "xdp_bad_action",
        ],
    );
    let program_id = inner_program_id(&fw, &lab);
    // From the root namespace, without --iface: veth0 of the lab is not ours to name.
    let mut command = fw.command();
    command.args(["trace", "--json"]);
    let mut trace = TraceChild::start(command);
    assert!(!ping(&lab, 3), "ping got through a program returning 7");
    let event = trace.wait_for_json(|event| event["program_id"] == program_id);
    assert_eq!(event["program"], "xdp_bad_action", "{event}");
    assert_eq!(event["action"], "invalid", "{event}");
    assert_eq!(event["action_code"], 7, "{event}");
    assert!(event["interface"].is_null(), "{event}");
    let netns_inode =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(lab.netns_path()).unwrap());
    assert_eq!(event["netns"], netns_inode, "{event}");

    // SIGTERM ends it cleanly: caught, so the loop ends and it exits 0 (not killed by the
    // signal), at once, without an error.
    trace.signal(Signal::SIGTERM);
    trace.assert_stops_cleanly("SIGTERM");
}

#[test]
fn bpf_printk_lines_show_and_ctrl_c_stops_the_trace_cleanly() {
    require_root!();
    let _turn = take_turn();
    let fw = Instance::new();
    let object = user_object();
    let lab = lab();
    fw.inside(
        &lab,
        &[
            "load",
            "veth0",
            "--obj",
            object.to_str().unwrap(),
            "--program",
            "xdp_user_printk",
        ],
    );
    let links_before = trace_links();
    let mut trace = trace_inside(&fw, &lab, &["--iface", "veth0"]);
    let ours: HashSet<u32> = trace_links().difference(&links_before).copied().collect();
    assert!(!ours.is_empty(), "no tracepoint link while tracing");
    assert!(ping(&lab, 3), "xdp_user_printk passes packets");

    // Text lines: the time, "printk", the task, the cpu, then the message. A ping reply is
    // 98 bytes (14 Ethernet + 20 IPv4 + 8 ICMP + 56 data).
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let mut seen = Vec::new();
    let line = loop {
        let line = trace
            .next_line(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|| panic!("no bpf_printk line of ours; got {seen:?}"));
        if line.contains("xdpctl-trace-test: a packet of 98 bytes") {
            break line;
        }
        seen.push(line);
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1], "printk", "{line}");
    assert!(
        fields[3].starts_with('[') && fields[3].ends_with(']'),
        "{line}"
    );

    // Ctrl-C ends it cleanly. (Its tracepoint link is not pinned, so the kernel drops it when
    // the process exits, however it exits: there is no leftover to look for.)
    trace.signal(Signal::SIGINT);
    trace.assert_stops_cleanly("Ctrl-C");
}

#[test]
fn an_unknown_interface_is_a_clear_error() {
    require_root!();
    let fw = Instance::new();
    let err = fw.err(&["trace", "--iface", "nosuch0"]);
    assert!(err.contains("no such interface: 'nosuch0'"), "{err}");
    assert!(err.contains("ip link show"), "{err}");
}
