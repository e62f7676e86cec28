//! The report: the tables, targets and notes the sections fill in, rendered as BENCHMARKS.md
//! with the machine it ran on and the analysis of what limits the figures.

use std::fmt::Write as _;
use std::process::Command;

use crate::harness::run;

/// A markdown table.
pub struct Table {
    pub title: String,
    pub intro: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// A target of the issue, judged on this run.
pub struct Target {
    pub what: String,
    pub measured: String,
    pub goal: String,
    pub met: bool,
}

#[derive(Default)]
pub struct Report {
    pub tables: Vec<Table>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = run(Command::new("uname").args(["-r"])).unwrap_or_default();
    let date = run(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    // Debian's package versions: what a reader needs to install the same yardsticks.
    let version = |package: &str, _: &str| {
        run(Command::new("dpkg-query").args(["-W", "-f=${Version}", package]))
            .map(|v| format!("Debian package {package} {v}"))
            .unwrap_or_else(|_| "?".into())
    };
    let clocksource =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default();
    vec![
        ("date".into(), date.trim().to_owned()),
        (
            "CPU".into(),
            format!(
                "{cpu}, {cores} cores (a VM; clocksource {})",
                clocksource.trim()
            ),
        ),
        ("kernel".into(), kernel.trim().to_owned()),
        ("mitigations".into(), mitigations()),
        (
            "xdpctl".into(),
            format!("{} ({})", env!("CARGO_PKG_VERSION"), git_rev()),
        ),
        ("xdp-filter".into(), version("xdp-tools", "")),
        ("iptables".into(), version("iptables", "")),
        ("nftables".into(), version("nftables", "")),
        ("ipset".into(), version("ipset", "")),
    ]
}

/// The CPU's vulnerabilities and the kernel's mitigations of them, as `lscpu` lists them: the
/// ones that are not "Not affected", since they set what calls, returns and misses cost.
fn mitigations() -> String {
    let dir = "/sys/devices/system/cpu/vulnerabilities";
    let mut lines: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let state = std::fs::read_to_string(e.path()).ok()?;
                    let state = state.trim();
                    (state != "Not affected")
                        .then(|| format!("{}: {state}", e.file_name().to_string_lossy()))
                })
                .collect()
        })
        .unwrap_or_default();
    lines.sort();
    if lines.is_empty() {
        "none listed".into()
    } else {
        lines.join("; ")
    }
}

fn git_rev() -> String {
    run(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "no git".into())
}

pub fn render(report: &Report) -> String {
    let mut md = String::from("# Benchmarks\n\nMeasured by `make bench` (benches/bench.rs) in one run; every figure is compared with \
         yardsticks measured in the same run, because this machine is noisy. Reproduce with \
         `make bench` as root: it rewrites this file.\n\n");
    for (key, value) in machine() {
        let _ = writeln!(md, "- **{key}:** {value}");
    }
    md.push_str("\n## Targets\n\n| target | measured | goal | met |\n|---|---|---|---|\n");
    for t in &report.targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.what,
            t.measured,
            t.goal,
            if t.met { "yes" } else { "**no**" }
        );
    }
    for table in &report.tables {
        let _ = write!(
            md,
            "\n## {}\n\n{}\n\n| {} |\n|",
            table.title,
            table.intro,
            table.header.join(" | ")
        );
        for _ in &table.header {
            md.push_str("---|");
        }
        md.push('\n');
        for row in &table.rows {
            let _ = writeln!(md, "| {} |", row.join(" | "));
        }
    }
    md.push_str(ANALYSIS);
    if !report.notes.is_empty() {
        md.push_str("\n## Notes from this run\n\n");
        for note in &report.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    md
}

/// What limits the figures: measured with variants of the programs on this machine
/// (2026-11-28), kept here so `make bench` rewrites the file whole. The notes after it are
/// computed from the run itself.
const ANALYSIS: &str = "
## What limits the figures

Measured on 2026-11-28 on the AMD EPYC (Zen 4, \"Safe RET\") machine kind, not necessarily
the one the tables above come from: [docs/testing.md](docs/testing.md) says which costs depend
on the CPU, with figures from both kinds. Method: variants of the programs (BPF_PROG_RUN, same
method as above), and `perf record -e cpu-clock` during floods:

- **Calls cost more than work here.** The kernel runs this CPU (AMD EPYC, Zen 4) with the
  speculative-return-stack mitigation \"Safe RET\": every return goes through a thunk. A lookup
  in the kernel's hash map is a call (and a memcmp call inside it): in a program of its own,
  17 ns over the floor for an absent key, 24 ns for a present one. The firewall's exact
  addresses therefore live in a table of its own (bpf/firewall/exact.h): two mmapable arrays per list,
  buckets of sixteen 16-bit tags and a slot per lane, looked up with inlined loads and
  arithmetic, no branch per lane. The range tries are still kernel calls, made only while a
  trie holds rules.
- **Drop path (met on the AMD kind; 0.69-0.71x on the Intel kind, goal 0.5x).** 39 ns with the hash map, 28 ns with the table, 19 ns once each CPU
  remembers per list its last match and the slot (checked again on every use, so a removed or
  moved rule is never trusted). What is left is the parse, the per-protocol, per-port,
  per-reason and per-second counters and the hit count, each 1-2 ns by variants; on the Intel
  kind (2026-12-03, 1,000 rules) each of the hit count, the port count, the firewall's
  counters and the history cost 0-1 ns alone, of 17: no one piece holds the path up.
- **Pass path, same source (met on the AMD kind; 1.0-1.1x on the Intel kind, goal 0.8x).** The firewall runs its whole limiter on this path, which
  xdp-filter has no equivalent of: a clock read from a per-CPU cache refreshed once a jiffy
  (`bpf_ktime_get_ns` costs 30 ns in this VM), no division per packet, empty maps skipped from
  a bitmask, a set-associative source table instead of an LRU hash, and the range filter: a
  bit per value of the address's first 16 bits that says whether any range may cover it, which
  spares most packets the trie's lookup (40 -> 32 ns with a million mixed rules).
- **Random sources (not met on the Intel kind).** On the AMD kind of 2026-11-28 the budget
  was 0.8 of xdp-filter's 77-80 ns, and the pass path met it at 50-55 ns; xdp-filter costs
  about 27-45 ns on the Intel kind, a budget of 22-36 ns. Each new source costs random reads
  of per-source and per-rule state, and what they cost depends on the table's size and what
  else is in the cache (*Random reads by table size*).
  - The source table (262,144 sources by default): it used to read a set of 192 bytes in a
    12 MB array and write a slot per new source, 184-195 ns. Now a 1 MB index of tags and
    packet counts finds a source's way, and a source's first packet is only noted there; its
    slot is written at its second packet.
  - The exact table got a presence filter per list (include/xdpctl.h): one read in 1.3 MB
    rules out most absent addresses, and the tags are read only for the 2.3% it cannot (at a
    million rules): 73-79 ns to 50-55 ns on the AMD kind.
  - Loads differ: the same build measured 52-70 ns from one load to the next, so each
    configuration is loaded three times and the median load counts (the notes give each).
    With all 18 loads at once (2.3 GB of maps) random reads cost about 5 ns more than with one;
    a host holds one firewall's maps, so loads are measured one after another.
  - Runs of 20,000 repetitions (`--quick`) leave tables of a megabyte or more cold: a random
    read of a 1 MiB array cost 46-55 ns there and 3 ns in full runs. Figures of quick runs
    are for finding where time goes, not for the cost of a table.
  - The note below gives the same run's random-source cost with a source table small enough to
    stay in the cache (its index is 16 KB).
- **Random blocked sources.** A match reads the filter, the tags of two buckets and then its
  slot, whose place the tags give: two misses one after the other (2.6 MB of tags, 52 MB of
  40-byte slots), 3.3-3.7x one read of a 64 MB array, against a goal of 1.5x. Variants that
  stop the lookup at each step (2026-12-03, Intel kind, 1M rules, a million repetitions):
  parse and hash 10 ns, the filter +5, the tags +34, the slot and its check +214. Reading both
  buckets' tags before searching either changed nothing. On the AMD kind (2026-12-03, 100,000
  rules, 7 quick rounds): no hit counted at all changed nothing (336-351 ns, 328-334 as
  built); the filter and both buckets' tags without the slot cost 74-160 ns; the filter and a
  slot read placed by the hash alone 133-189. The floor is a read's latency there
  (`one_read_chained`, whose reads each wait for the last, costs the same). So it is the
  chain, a slot miss that waits for a tags miss, plus some 60 ns of work that is there even
  at 1,000 rules, when all of it is cached. *Since 2026-12-03* each bucket's IPv4 lanes are
  also held whole in a 128-byte element the hash places (docs/firewall.md, The exact table):
  both buckets' elements are read at once, and a manual rule that never expires needs no slot
  read. Same quick runs on the Intel kind, 1M rules: 316-360 ns before, 167-192 after; with
  no hit counted at all 168-201 (so counting is not the cost); at 1,000 rules, all cached,
  69-83. What is left is about 100 ns of misses in the 10 MB of elements and the 1.3 MB
  filter (and their pages), and some 60 ns of work that a cached table pays too.
- **Spread ranges.** Ranges spread over the whole IPv4 space set the /16 range-filter bit of
  one /16 in seven at 10,000 ranges, and a source that reaches the trie pays about 700 ns for
  its walk: random sources from anywhere cost 1.58x the same addresses without the ranges. A
  second filter level, a bit per /20 read only where the /16 bit is set, brought that to
  1.25x (quick runs, 2026-12-03).
- **End to end vs netfilter.** Sender and receiver share a core: the veth peer's NAPI runs on
  the CPU that sent the frames, so per packet the sender's cost S adds to every receiver's, and
  the ratio of two receivers is (S + N) / (S + F), not N / F. The note below gives what that
  leaves the firewall in this run: trivial XDP_DROP is only about 2.6x nftables and 2.8x
  iptables, so 2.5x needs the firewall within a few percent of a program that does nothing.
  - perf during a blocked flood: the firewall program took a quarter of the CPU, nearly half of
    that in the exact lookup's hash and tag search, which BPF_PROG_RUN had put at 8 ns (a flood
    runs the program between other code, not in a loop of its own). The per-CPU memo took
    the firewall from 0.84 to about 0.93 of trivial's rate.
  - Its cheapest drop is a port rule, which looks up no address (the port-rule row): what is
    left there is the parse and the counters every packet gets. Where that row too is below
    what 2.5x of nftables asks (the note), no address lookup, however fast, can meet it. A
    variant with the lookup replaced by a constant compare reached 0.94 of trivial.
  - The receiver on its own core (threaded NAPI on the lab's veth0) is no better a model:
    frames then cross cores, and the firewall dropped 2.3-2.5 Mpps, below its shared-core rate.
  - Live-frames batch sizes of 64, 128 and 256 were tried: larger batches were slower.
- **Scaling across cores (measured 2026-12-02 on the Intel Xeon kind).** Before issue 14 a
  blocked flood on both CPUs cost 4.1-5.5x its one-CPU cost, and the pass path 2.6-5.1x: every
  packet made an atomic add to its rule's hit counter, or wrote its source's slot (tokens,
  refill time, counts), and the two CPUs passed those lines back and forth. Hits now go through
  a per-CPU cache folded into the rule on eviction, and a CPU leases up to 32 of a source's
  tokens at a time, so neither path writes a shared line per packet: 1.04-1.09x and 1.06x in
  the quick runs of that day. What is left is the VM: the trivial program's own ratio.
- **Bulk rules.** xdpctl writes the exact table through its own mapping of it, with no syscall
  per address, from every core (writers claim slots by compare-and-swap and need no lock), and
  parses the file in parallel. A bucket is read as four words, compared as the program does.
  Reading each tag on its own and writing from one thread took 0.93 s for a million.
  `unblock --all` of a million takes under 0.1 s (1.3 s with the hash maps).
- **Memory.** The exact tables are allocated whole when the maps are created: 58 MB per list at
  the default --max-rules (2.6 MB of tags, 52 MB of slots, 2.6 MB for the two halves of the
  presence filter). The maps at default sizes take about 45 MB more than with hash maps, and
  about 35 MB less with a million rules. The peak RSS of `block --file` counts the table pages
  xdpctl maps to write them (about 57 MB of kernel memory, shared, not allocated by xdpctl).
";
