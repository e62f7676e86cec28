//! The command line, and one module per subcommand. Each subcommand's module owns its clap
//! arguments; its `run` returns the process exit code or an error that says what went wrong
//! and how to fix it.

pub mod allow;
pub mod apply;
pub mod block;
pub mod check;
pub mod demo;
pub mod diff;
pub mod export;
pub mod exporter;
pub mod flood;
pub mod graph;
pub mod history;
pub mod list;
pub mod load;
mod parsers;
pub mod ports;
pub mod ratelimit;
pub mod run;
pub mod stats;
pub mod status;
pub mod testenv;
pub mod top;
pub mod trace;
pub mod unload;
pub mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use parsers::lock_seconds;
pub use parsers::parse;

use allow::{AllowArgs, DisallowArgs};
use apply::ApplyArgs;
use block::{BlockArgs, UnblockArgs};
use check::CheckArgs;
use demo::DemoArgs;
use diff::DiffArgs;
use export::ExportArgs;
use exporter::ExporterArgs;
use flood::FloodArgs;
use graph::GraphArgs;
use history::HistoryArgs;
use list::ListArgs;
use load::LoadArgs;
use ports::PortsArgs;
use ratelimit::RatelimitArgs;
use run::RunArgs;
use stats::StatsArgs;
use status::StatusArgs;
use testenv::TestenvArgs;
use top::TopArgs;
use trace::TraceArgs;
use unload::UnloadArgs;
use watch::WatchArgs;

#[derive(Debug, Parser)]
#[command(
    name = "xdpctl",
    version,
    about = "Load, attach and watch XDP programs; filter floods at the driver",
    propagate_version = true
)]
pub struct Cli {
    /// Show libbpf's log (including the whole verifier log) as it happens.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Seconds to wait for a lock that another xdpctl holds (rule edits, map creation).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30.0, value_parser = lock_seconds)]
    pub lock_timeout: f64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load an XDP program and attach it to an interface; it stays attached after xdpctl exits.
    Load(LoadArgs),
    /// Detach xdpctl's program from an interface (or all of them) and remove its pins.
    Unload(UnloadArgs),
    /// List the interfaces that carry an XDP program.
    Status(StatusArgs),
    /// Show per-action packet and byte counters and rates, in the xdp-tutorial's format.
    Stats(StatsArgs),
    /// Attach in the foreground, print stats until Ctrl-C or SIGTERM, then detach.
    Run(RunArgs),
    /// Block source addresses or prefixes (IPv4/IPv6), or destination ports.
    Block(BlockArgs),
    /// Remove blocks.
    Unblock(UnblockArgs),
    /// Allowlist sources: they bypass every block and rate limit.
    Allow(AllowArgs),
    /// Remove sources from the allowlist.
    Disallow(DisallowArgs),
    /// Show every rule with its hit counter, and the time left for rules that expire.
    List(ListArgs),
    /// Per-source rate limits (token buckets), with optional auto-block.
    Ratelimit(RatelimitArgs),
    /// Make the live state match a config file (default /etc/xdpctl/xdpctl.toml), all or
    /// nothing: attachments, rules that never expire, port rules and the rate limit.
    ///
    /// The file owns every rule that never expires, manual ones too: one typed by hand and not
    /// in the file is removed. Rules that expire and auto-blocks are never touched. A file
    /// with any error changes nothing; an apply that fails part-way is rolled back. Applying
    /// the same file again changes nothing.
    Apply(ApplyArgs),
    /// Show what `apply FILE` would change; exit 0 if nothing, 1 if something, 2 on trouble.
    Diff(DiffArgs),
    /// Print the live state as a config file that `apply` takes (applying it changes nothing).
    Export(ExportArgs),
    /// Check a config file and load its programs through the verifier, attaching nothing.
    Check(CheckArgs),
    /// The current top sources by packets and by bytes per second.
    Top(TopArgs),
    /// Received, passed and dropped packets of each past second, from the kernel's history.
    History(HistoryArgs),
    /// Plot received vs passed vs dropped packets per second into an SVG or PNG file.
    Graph(GraphArgs),
    /// Packets per destination port (TCP/UDP), as the firewall counted them.
    Ports(PortsArgs),
    /// Serve Prometheus metrics (counters, rules, rate-limited sources) over HTTP at /metrics.
    Exporter(ExporterArgs),
    /// A live dashboard in the terminal: packets per second over the last minute, counters,
    /// top sources and rules. q, Esc or Ctrl-C quits.
    ///
    /// The chart comes from the kernel's per-second history, so it starts with the last 60 s
    /// already filled in, and moves on each second. Counters, rates and top sources are
    /// sampled every --interval. It needs a terminal of at least 80x24; for output to pipe or
    /// save, use `xdpctl stats` or `xdpctl history`.
    Watch(WatchArgs),
    /// Send a flood out of a veth (inside a lab) at millions of packets per second.
    Flood(FloodArgs),
    /// Stream XDP exceptions and bpf_printk output until Ctrl-C or SIGTERM.
    ///
    /// Exceptions come from the kernel's xdp:xdp_exception tracepoint, through a BPF program
    /// that xdpctl attaches for as long as it runs (nothing is pinned or left behind). The
    /// kernel raises one when an XDP program returns XDP_ABORTED or a number that is no XDP
    /// action, and when a driver fails to carry out XDP_TX or XDP_REDIRECT.
    ///
    /// bpf_printk lines are read from tracefs's trace_pipe (tracefs is mounted at
    /// /sys/kernel/tracing if it is not mounted). Reading trace_pipe consumes it, as `bpftool
    /// prog tracelog` does: a line xdpctl reads is gone for any other reader (a second `xdpctl
    /// trace`, bpftool, `cat trace_pipe`), and a line such a reader takes first never shows
    /// here. Lines already waiting in trace_pipe when the trace starts are skipped.
    ///
    /// One line per event, exceptions and bpf_printk lines interleaved as they arrive. Once
    /// attached, "tracing ... (Ctrl-C to stop)" is printed on stderr.
    Trace(TraceArgs),
    /// A veth lab in a network namespace to test programs on (after the xdp-tutorial's testenv).
    Testenv(TestenvArgs),
    /// Run the tour end to end in a throwaway lab: a flood is auto-blocked, and graphed.
    Demo(DemoArgs),
}

/// Set once Ctrl-C or SIGTERM arrives. The handler is installed on first use (ctrlc allows one
/// per process).
pub fn stop_requested() -> &'static AtomicBool {
    static STOP: OnceLock<&'static AtomicBool> = OnceLock::new();
    STOP.get_or_init(|| {
        static FLAG: AtomicBool = AtomicBool::new(false);
        if let Err(err) = ctrlc::set_handler(|| FLAG.store(true, Ordering::SeqCst)) {
            eprintln!("xdpctl: cannot catch Ctrl-C ({err}); it will kill xdpctl outright");
        }
        &FLAG
    })
}

/// Sleeps up to `duration`, waking early when a stop is requested. Returns false if stopped.
pub fn sleep_unless_stopped(duration: Duration) -> bool {
    let stop = stop_requested();
    let deadline = Instant::now() + duration;
    while !stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

/// Rules do nothing until some interface runs the firewall: say so instead of letting a user
/// believe they are protected. Only this instance's interfaces (its pin root) count.
pub fn note_if_firewall_not_loaded() {
    let loaded = crate::sys::pins::pinned_interfaces()
        .unwrap_or_default()
        .iter()
        .any(|ifname| {
            crate::sys::pins::attached_programs(Some(ifname))
                .map(|rows| {
                    rows.iter()
                        .any(|r| r.program == "firewall" && r.owner == "xdpctl")
                })
                .unwrap_or(false)
        });
    if !loaded {
        eprintln!(
            "note: no interface runs the firewall yet, so rules have no effect until \
             `xdpctl load IFACE`"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;

    use super::testenv::TestenvCommand;
    use super::*;
    use crate::sys::attach::RequestedMode;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn load_defaults_to_native_without_force() {
        let cli = Cli::try_parse_from(["xdpctl", "load", "veth1"]).unwrap();
        let Command::Load(args) = cli.command else {
            panic!("not load")
        };
        assert_eq!(args.interface, "veth1");
        assert_eq!(args.program.mode, RequestedMode::Native);
        assert!(args.program.program.is_none() && !args.force);
    }

    #[test]
    fn load_takes_program_obj_mode_and_force() {
        let cli = Cli::try_parse_from([
            "xdpctl",
            "load",
            "veth1",
            "--program",
            "mine",
            "--obj",
            "x.o",
            "--mode",
            "auto",
            "-f",
        ])
        .unwrap();
        let Command::Load(args) = cli.command else {
            panic!("not load")
        };
        assert_eq!(args.program.program.as_deref(), Some("mine"));
        assert_eq!(args.program.obj, Some(PathBuf::from("x.o")));
        assert_eq!(args.program.mode, RequestedMode::Auto);
        assert!(args.force);
    }

    #[test]
    fn bad_flags_are_rejected() {
        assert!(Cli::try_parse_from(["xdpctl", "load"]).is_err());
        assert!(Cli::try_parse_from(["xdpctl", "load", "veth1", "--mode", "fast"]).is_err());
        assert!(Cli::try_parse_from(["xdpctl", "unload"]).is_err());
        assert!(Cli::try_parse_from(["xdpctl", "unload", "veth1", "--all"]).is_err());
        assert!(Cli::try_parse_from(["xdpctl", "stats", "veth1", "--interval", "0"]).is_err());
        assert!(Cli::try_parse_from(["xdpctl", "stats", "veth1", "--interval", "-1"]).is_err());
        assert!(Cli::try_parse_from(["xdpctl", "stats", "veth1", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["xdpctl", "testenv", "exec"]).is_err());
    }

    #[test]
    fn exporter_listens_on_loopback_unless_told_otherwise() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["xdpctl", "exporter"][..], args].concat())?;
            let Command::Exporter(args) = cli.command else {
                panic!("not exporter")
            };
            Ok::<_, clap::Error>(args.listen)
        };
        assert_eq!(parse(&[]).unwrap(), "127.0.0.1:9435".parse().unwrap());
        assert_eq!(
            parse(&["--listen", "[::1]:9100"]).unwrap(),
            "[::1]:9100".parse().unwrap()
        );
        for bad in ["localhost:9435", "127.0.0.1", "127.0.0.1:99999", ""] {
            let err = parse(&["--listen", bad]).unwrap_err().to_string();
            assert!(err.contains("e.g. 127.0.0.1:9435"), "{bad}: {err}");
        }
    }

    #[test]
    fn stats_sampling_flags() {
        let cli =
            Cli::try_parse_from(["xdpctl", "stats", "veth1", "-i", "0.5", "-c", "3", "--json"])
                .unwrap();
        let Command::Stats(args) = cli.command else {
            panic!("not stats")
        };
        assert_eq!(args.sampling.interval, 0.5);
        assert_eq!(args.sampling.count, Some(3));
        assert!(args.sampling.json);
    }

    #[test]
    fn testenv_exec_takes_the_command_after_dashes() {
        let cli = Cli::try_parse_from([
            "xdpctl", "testenv", "exec", "-n", "lab1", "--", "ip", "-br", "a",
        ])
        .unwrap();
        let Command::Testenv(TestenvArgs {
            command: TestenvCommand::Exec { lab, command },
        }) = cli.command
        else {
            panic!("not testenv exec")
        };
        assert_eq!(lab.name, "lab1");
        assert_eq!(command, ["ip", "-br", "a"]);
    }
}
