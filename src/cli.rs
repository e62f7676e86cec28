//! The command line: every subcommand and flag, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::lab::testenv::DEFAULT_NAME;
use crate::sys::attach::RequestedMode;
pub use parsers::parse;
use parsers::*;

mod parsers;

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

/// Which program to load, and how.
#[derive(Debug, Args)]
pub struct ProgramArgs {
    /// The program: a built-in (xdp_pass, xdp_drop, xdp_abort), or a function in --obj.
    #[arg(short, long, value_name = "NAME")]
    pub program: Option<String>,

    /// Load your own compiled BPF object instead of a built-in program.
    #[arg(long, value_name = "FILE.o")]
    pub obj: Option<PathBuf>,

    /// native: in the driver; generic: in the stack (any interface); auto: native, else generic.
    #[arg(short, long, value_enum, default_value_t = RequestedMode::Native)]
    pub mode: RequestedMode,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The interface to attach to.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub program: ProgramArgs,

    /// Replace a program that is already attached (xdpctl's own is replaced atomically).
    #[arg(short, long)]
    pub force: bool,

    /// Entries per rule map when the firewall's maps are first created (1..=1073741824, and
    /// what fits in a quarter of the memory; default 1048576).
    #[arg(long, value_name = "N")]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=crate::firewall::map_budget::MAX_RULES as i64))]
    pub max_rules: Option<u32>,

    /// Sources the rate limiter tracks when its map is first created (1..=2147483648, and what
    /// fits in a quarter of the memory; default 262144).
    #[arg(long, value_name = "N")]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=crate::firewall::map_budget::MAX_SOURCES as i64))]
    pub max_sources: Option<u32>,
}

/// Addresses and prefixes, from the command line and/or a file.
#[derive(Debug, Args)]
pub struct PrefixInput {
    /// IPv4/IPv6 addresses or CIDR prefixes, e.g. 203.0.113.7 198.51.100.0/24 2001:db8::/32.
    #[arg(value_name = "ADDR|CIDR")]
    pub targets: Vec<String>,

    /// Read more from a file (one a line, # comments), or from stdin with '-'.
    #[arg(long, value_name = "FILE|-")]
    pub file: Option<PathBuf>,
}

impl PrefixInput {
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.file.is_none()
    }
}

#[derive(Debug, Args)]
pub struct BlockArgs {
    #[command(flatten)]
    pub input: PrefixInput,

    /// Block a destination port, e.g. 53/udp or 22/tcp (repeatable).
    #[arg(long, value_name = "PORT/PROTO")]
    pub port: Vec<String>,

    /// Let the address blocks expire after this long, e.g. 90s, 10m, 1h30m, 1d (at most 3650d).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub ttl: Option<std::time::Duration>,

    /// Block a prefix shorter than /8 (IPv4) or /16 (IPv6) too: such a prefix blocks a large
    /// part of the Internet (0.0.0.0/0 and ::/0 all of it), so it is refused without this.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct UnblockArgs {
    #[command(flatten)]
    pub input: PrefixInput,

    /// Unblock a destination port, e.g. 53/udp (repeatable).
    #[arg(long, value_name = "PORT/PROTO")]
    pub port: Vec<String>,

    /// Remove every block: addresses, prefixes and ports.
    #[arg(long, conflicts_with_all = ["targets", "file", "port"])]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct AllowArgs {
    #[command(flatten)]
    pub input: PrefixInput,
}

#[derive(Debug, Args)]
pub struct DisallowArgs {
    #[command(flatten)]
    pub input: PrefixInput,

    /// Empty the allowlist.
    #[arg(long, conflicts_with_all = ["targets", "file"])]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print {"block", "allow", "ports", "ratelimit"} as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RatelimitArgs {
    #[command(subcommand)]
    pub command: RatelimitCommand,
}

#[derive(Debug, Subcommand)]
pub enum RatelimitCommand {
    /// Limit every source to N packets per second (each source has its own token bucket).
    Set {
        /// Packets per second each source may send.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        pps: u64,
        /// Packets a source may send at once after being quiet (default: one second's worth).
        /// A source new to the table also gets its first packet, which is only noted.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        burst: Option<u64>,
        /// Also block a source that goes over the limit, for this long (e.g. 60s, 10m; at most
        /// 3650d).
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        block_for: Option<std::time::Duration>,
        /// Which packets count.
        #[arg(long, value_enum, default_value_t = crate::firewall::RateLimitProto::All)]
        proto: crate::firewall::RateLimitProto,
    },
    /// Turn rate limiting off.
    Off,
    /// Show the rate limit.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Only check that this interface runs the firewall (the source table is shared by all).
    #[arg(value_parser = interface_name)]
    pub interface: Option<String>,

    /// How many sources to show.
    #[arg(short = 'n', long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,

    /// Seconds to measure over.
    #[arg(short, long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub interval: f64,

    /// Print JSON: {"interval", "by_pps": [...], "by_bytes": [...]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to save the graph of the flood (.svg or .png).
    #[arg(long, value_name = "FILE", default_value = "xdpctl-demo.png")]
    pub graph: PathBuf,
}

/// The seconds of history to show.
#[derive(Debug, Args)]
pub struct SecondsArg {
    /// How many of the last completed seconds (up to 510: the kernel's ring has 512 slots).
    #[arg(short, long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=510))]
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The interface whose program's history to read (any built-in program keeps one).
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub seconds: SecondsArg,

    /// Print a JSON array of {"time", "received", "passed", "dropped", "drops": {...}, "bytes",
    /// ...}, time in Unix seconds.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,

    /// Print CSV with a header line.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The interface whose program's history to plot.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub seconds: SecondsArg,

    /// The file to write: .svg or .png.
    #[arg(short, long, value_name = "FILE.svg|FILE.png")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The interface whose program to watch (any of xdpctl's built-in programs; the firewall
    /// adds drop reasons, protocols, top sources and rules).
    #[arg(value_parser = interface_name)]
    pub interface: String,

    /// Seconds between updates of the counters, rates and top sources (fractions allowed).
    #[arg(short, long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub interval: f64,
}

#[derive(Debug, Args)]
pub struct PortsArgs {
    /// The interface whose firewall's port counters to read.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    /// Only this protocol.
    #[arg(long, value_enum)]
    pub proto: Option<crate::input::PortProto>,

    /// How many ports to show, busiest first.
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub top: u64,

    /// Print a JSON array of {"port", "proto", "packets"}.
    #[arg(long)]
    pub json: bool,
}

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

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// The address and port to serve on. Loopback by default: the metrics name interfaces and
    /// rule counts, so expose them wider only on purpose.
    #[arg(long, value_name = "ADDRESS:PORT", default_value = "127.0.0.1:9435", value_parser = listen_address)]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct UnloadArgs {
    /// The interface to detach from.
    #[arg(required_unless_present = "all", conflicts_with = "all", value_parser = interface_name)]
    pub interface: Option<String>,

    /// Detach from every interface xdpctl has pins for.
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this interface.
    #[arg(value_parser = interface_name)]
    pub interface: Option<String>,

    /// Print a JSON array of {interface, ifindex, program, id, mode, owner}.
    #[arg(long)]
    pub json: bool,
}

/// How often and how many times to print stats.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Seconds between samples (fractions allowed).
    #[arg(short, long, default_value_t = 2.0, value_parser = positive_seconds)]
    pub interval: f64,

    /// Stop after this many samples (default: until Ctrl-C).
    #[arg(short, long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Print one JSON object per sample (NDJSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The interface whose program's xdp_stats_map to read.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The interface to attach to while running.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub program: ProgramArgs,

    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Debug, Args)]
pub struct FloodArgs {
    /// The veth to send from (other interfaces are refused).
    #[arg(value_parser = interface_name)]
    pub interface: String,

    /// Packets per second (default 100000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "max")]
    pub pps: Option<u64>,

    /// As fast as possible.
    #[arg(long)]
    pub max: bool,

    /// Seconds to send for (default 5).
    #[arg(long, value_parser = positive_seconds, conflicts_with = "count")]
    pub duration: Option<f64>,

    /// Packets to send.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// What to send.
    #[arg(long, value_enum, default_value_t = crate::lab::flood::FloodProto::Udp)]
    pub proto: crate::lab::flood::FloodProto,

    /// Source address, or a prefix to draw a random source from for every packet
    /// (default: the interface's address).
    #[arg(long, value_name = "ADDR|CIDR", value_parser = flood_source)]
    pub src: Option<ipnet::IpNet>,

    /// Destination address (default: the interface's neighbour).
    #[arg(long, value_name = "ADDR")]
    pub dst: Option<std::net::IpAddr>,

    /// Destination MAC (default: from the neighbour table).
    #[arg(long, value_name = "MAC", value_parser = mac)]
    pub dst_mac: Option<[u8; 6]>,

    /// Frame size in bytes, without the FCS.
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TestenvArgs {
    #[command(subcommand)]
    pub command: TestenvCommand,
}

#[derive(Debug, Args)]
pub struct LabName {
    /// The lab's name: also the name of its outer interface and of its namespace.
    #[arg(short, long, default_value = DEFAULT_NAME, value_parser = lab_name)]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum TestenvCommand {
    /// Create a lab: a veth pair, the inner end in its own namespace, addresses and neighbours.
    Setup(LabName),
    /// Remove a lab and anything xdpctl attached to it.
    Teardown(LabName),
    /// Show the labs (or one), their addresses and what is attached.
    Status {
        /// Only this lab.
        #[arg(short, long, value_parser = lab_name)]
        name: Option<String>,
    },
    /// Run a command inside the lab's namespace (bpffs stays visible).
    Exec {
        #[command(flatten)]
        lab: LabName,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Start a shell inside the lab's namespace.
    Enter(LabName),
    /// Ping the outer interface from inside the lab, through whatever is attached to it.
    Ping {
        #[command(flatten)]
        lab: LabName,
        /// Number of echo requests.
        #[arg(short, long, default_value_t = 4)]
        count: u32,
        /// Ping over IPv6 instead of IPv4.
        #[arg(short = '6', long)]
        ipv6: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
