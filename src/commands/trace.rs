//! `xdpctl trace`: XDP exceptions and bpf_printk lines, one line each, until Ctrl-C, SIGTERM or
//! `--count` events.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::parsers::interface_name;
use crate::output::trace as text;
use crate::sys::privileges;
use crate::trace::{
    self, ClockPair, DeviceFilter, ExceptionTracer, Namer, PrintkReader, TraceLine,
};

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Only exceptions on this interface of the current network namespace. bpf_printk lines
    /// carry no interface, so they all show.
    #[arg(long, value_name = "IFACE", value_parser = interface_name)]
    pub iface: Option<String>,

    /// Stop after N events (exceptions and bpf_printk lines together).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// One JSON object per line (NDJSON). Exceptions: {"type": "exception", "time", "action"
    /// (XDP_* or "invalid"), "action_code", "program" (null once unloaded), "program_id",
    /// "interface" (null outside this network namespace), "ifindex", "netns" (the device's
    /// namespace inode)}. bpf_printk lines: {"type": "printk", "time" (when read), "task",
    /// "pid", "cpu", "message"}. Times are Unix seconds.
    #[arg(long)]
    pub json: bool,
}

/// How long a stop request or a trace_pipe that poll(2) did not report waits at most.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Writes one event a line, flushed, and counts them against `--count`.
struct Output {
    json: bool,
    limit: Option<u64>,
    printed: u64,
}

enum Next {
    Continue,
    /// `--count` reached, or stdout closed (a reader such as `head` went away).
    Done,
}

impl Output {
    fn emit(&mut self, text: impl FnOnce() -> String, json: impl FnOnce() -> String) -> Next {
        let line = if self.json { json() } else { text() };
        let mut stdout = io::stdout().lock();
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Next::Done;
        }
        self.printed += 1;
        if self.limit.is_some_and(|limit| self.printed >= limit) {
            Next::Done
        } else {
            Next::Continue
        }
    }
}

pub fn run(args: &TraceArgs) -> Result<ExitCode> {
    privileges::require("trace")?;
    // Resolved before anything is loaded or mounted, so a bad name leaves nothing behind.
    let filter = args
        .iface
        .as_deref()
        .map(DeviceFilter::interface)
        .transpose()?;
    // Catch Ctrl-C from here on, so it ends the loop below and the link is dropped.
    let stop = super::stop_requested();
    let mut printk = PrintkReader::open()?;
    if printk.tracefs.mounted {
        eprintln!(
            "note: mounted tracefs at {} (it was not mounted)",
            printk.tracefs.dir.display()
        );
    }
    let tracer = ExceptionTracer::start(filter)?;
    let mut namer = Namer::new()?;
    let skipped = printk.skip_backlog(Duration::from_millis(250))?;
    if skipped > 0 {
        eprintln!("note: skipped {skipped} bpf_printk line(s) written before the trace began");
    }
    if !printk.tracing_on() {
        eprintln!(
            "note: tracing is off ({} is 0), so no bpf_printk line will show until it is 1",
            printk.tracefs.dir.join("tracing_on").display()
        );
    }
    let scope = match &args.iface {
        Some(ifname) => format!("on {ifname}"),
        None => "on every interface".to_owned(),
    };
    eprintln!(
        "tracing XDP exceptions {scope} and bpf_printk output from {} (Ctrl-C to stop)",
        printk.tracefs.dir.join("trace_pipe").display()
    );

    let mut output = Output {
        json: args.json,
        limit: args.count,
        printed: 0,
    };
    let mut lost_reported = 0;
    'tracing: while !stop.load(Ordering::SeqCst) {
        trace::wait_readable(&[tracer.wait_fd(), printk.wait_fd()], POLL_INTERVAL)?;
        let clock = ClockPair::now();
        for event in tracer.take_events()? {
            let exception = namer.name(&event, &clock);
            if let Next::Done = output.emit(
                || text::exception_text(&exception),
                || text::exception_json(&exception).to_string(),
            ) {
                break 'tracing;
            }
        }
        let read_at = crate::sys::clock::unix_now();
        for line in printk.read_lines().context("reading bpf_printk output")? {
            match line {
                TraceLine::Printk(printk) => {
                    if let Next::Done = output.emit(
                        || text::printk_text(&printk, read_at),
                        || text::printk_json(&printk, read_at).to_string(),
                    ) {
                        break 'tracing;
                    }
                }
                TraceLine::Lost(marker) => {
                    eprintln!("xdpctl: trace_pipe lost bpf_printk lines: {marker}")
                }
                TraceLine::Other => {}
            }
        }
        let lost = tracer.lost();
        if lost > lost_reported {
            eprintln!(
                "xdpctl: {} exception(s) lost: the ring buffer was full ({lost} so far)",
                lost - lost_reported
            );
            lost_reported = lost;
        }
    }
    Ok(ExitCode::SUCCESS)
}
