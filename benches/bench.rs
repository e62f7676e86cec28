//! `make bench`: every figure of BENCHMARKS.md in one run, each as a ratio to yardsticks
//! measured in the same run (the machine is noisy): the trivial XDP_DROP program, Debian's
//! xdp-filter, iptables, nftables and ipset.
//!
//! `--quick` (run by `make test`) does every step on small sizes, so the harness never rots,
//! and fails only if a step fails: no figure is judged there. All traffic stays in veth labs,
//! and every netfilter/ipset change is made inside a lab's namespace, gone with it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use rand::{Rng, SeedableRng};
use xdpctl::firewall::{FirewallMaps, List, RateLimit, RateLimitProto};
use xdpctl::flood::{self, FloodProto, Generator, Plan, Until};
use xdpctl::programs::skel::firewall::{FirewallSkel, FirewallSkelBuilder};
use xdpctl::programs::skel::flood::FloodSkelBuilder;
use xdpctl::testenv::{unique_name, LabGuard};

const XDPCTL: &str = env!("CARGO_BIN_EXE_xdpctl");

/// How much of everything.
struct Scale {
    quick: bool,
    repeat: u32,
    runs: usize,
    /// Loads of each firewall configuration: a map's pages land elsewhere at each load, and
    /// random reads cost what they cost there.
    instances: usize,
    rule_counts: Vec<usize>,
    xdp_filter_ips: usize,
    e2e_seconds: f64,
    e2e_runs: usize,
    bulk: usize,
    bulk_runs: usize,
    stats_seconds: f64,
    load_runs: usize,
}

impl Scale {
    fn new(quick: bool) -> Scale {
        if quick {
            Scale {
                quick,
                repeat: 20_000,
                runs: 1,
                instances: 1,
                rule_counts: vec![1_000],
                xdp_filter_ips: 16,
                e2e_seconds: 0.3,
                e2e_runs: 1,
                bulk: 20_000,
                bulk_runs: 1,
                stats_seconds: 2.0,
                load_runs: 1,
            }
        } else {
            Scale {
                quick,
                repeat: 1_000_000,
                runs: 7,
                instances: 3,
                rule_counts: vec![1_000, 100_000, 1_000_000],
                xdp_filter_ips: 1_000,
                e2e_seconds: 3.0,
                e2e_runs: 3,
                bulk: 1_000_000,
                bulk_runs: 3,
                stats_seconds: 20.0,
                load_runs: 5,
            }
        }
    }
}

/// A markdown table.
struct Table {
    title: String,
    intro: String,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

/// A target of the issue, judged on this run.
struct Target {
    what: String,
    measured: String,
    goal: String,
    met: bool,
}

#[derive(Default)]
struct Report {
    tables: Vec<Table>,
    targets: Vec<Target>,
    notes: Vec<String>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn say(text: &str) {
    eprintln!("bench: {text}");
}

/// Runs a command, failing with its stderr.
fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn xdpctl(args: &[&str]) -> Result<String> {
    run(Command::new(XDPCTL).args(args))
}

/// A command inside the lab's namespace (through `xdpctl testenv exec`, which keeps bpffs).
fn in_lab(lab: &LabGuard, args: &[&str]) -> Result<String> {
    run(Command::new(XDPCTL)
        .args(["testenv", "exec", "--name", lab.outer_ifname(), "--"])
        .args(args))
}

// --- Per-packet cost ---------------------------------------------------------------------------

/// A 64-byte Ethernet/IPv4/UDP frame from `src`.
fn udp64(src: Ipv4Addr) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.octets(), [192, 0, 2, 1], 64)
        .udp(40000, 9);
    let mut frame = Vec::new();
    builder.write(&mut frame, &[0x5a; 22]).unwrap();
    frame
}

/// The rule sets: `exact` addresses from 100.64.0.0 up (contiguous, so a random pick within a
/// power-of-two block is always blocked) and `ranges` random CIDR ranges in 20.0.0.0/6, with
/// lengths as block lists have them (mostly /24, some /16-/23, a few /25-/30).
fn rule_set(exact: usize, ranges: usize) -> Vec<IpNet> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut rules = Vec::with_capacity(exact + ranges);
    for i in 0..exact as u32 {
        rules.push(IpNet::from(IpAddr::V4(Ipv4Addr::from(0x6440_0000 + i))));
    }
    // Distinct ranges, so every tool gets the same `exact + ranges` entries.
    let mut seen = std::collections::HashSet::new();
    while seen.len() < ranges {
        let len = match rng.gen_range(0..10) {
            0..=5 => 24,
            6..=8 => rng.gen_range(16..24),
            _ => rng.gen_range(25..31),
        };
        let addr = Ipv4Addr::from(0x1400_0000 | rng.gen_range(0..0x0400_0000u32));
        let range = IpNet::new(IpAddr::V4(addr), len).unwrap().trunc();
        if seen.insert(range) {
            rules.push(range);
        }
    }
    rules
}

/// Largest power of two not above n: the random block within the exact addresses.
fn pow2_floor(n: usize) -> u32 {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// One path through one program: a frame from one source, or frames from random sources.
enum Probe {
    Same {
        fd: i32,
        frame: Vec<u8>,
        expect: u32,
    },
    Random {
        generator: Box<Generator>,
        expect: u32,
    },
}

impl Probe {
    /// The kernel's mean ns per run over one BPF_PROG_RUN of `repeat`.
    fn once(&self, repeat: u32) -> Result<f64> {
        let (verdict, ns, expect) = match self {
            Probe::Same { fd, frame, expect } => {
                let (v, ns) = flood::test_run(*fd, frame, repeat)?;
                (v, ns, *expect)
            }
            Probe::Random { generator, expect } => {
                let (v, ns) = generator.spray(repeat)?;
                (v, ns, *expect)
            }
        };
        if verdict != expect {
            bail!("verdict {verdict}, expected {expect}");
        }
        Ok(ns)
    }
}

/// A spray generator: random sources from `source` (a prefix), then a tail call into `target`.
fn sprayer(source: &str, target: std::os::fd::BorrowedFd<'_>) -> Result<Generator> {
    let generator = Generator::new(&Plan {
        ifname: String::new(),
        ifindex: 0,
        proto: FloodProto::Udp,
        source: source.parse()?,
        destination: "192.0.2.1".parse()?,
        source_mac: [2, 0, 0, 0, 0, 1],
        destination_mac: [2, 0, 0, 0, 0, 2],
        size: 64,
        pps: None,
        until: Until::Count(0),
    })?;
    generator.set_spray_target(target)?;
    Ok(generator)
}

/// A program under test with its four paths: pass and drop, from one source and from random
/// sources.
struct Subject {
    name: String,
    rules: String,
    /// Counted in the targets (the realistic mixes of the firewall, and xdp-filter).
    rule_count: Option<usize>,
    /// The realistic mix of this many rules, but with a source table that fits in the cache.
    cached_sources_rules: Option<usize>,
    /// Emptied once measured, which lets the program go.
    probes: Vec<Probe>,
    best: [f64; 4],
    /// Each load's best, when the configuration was loaded more than once.
    loads: Vec<[f64; 4]>,
}

fn subject(
    name: &str,
    rules: String,
    rule_count: Option<usize>,
    fd: std::os::fd::BorrowedFd<'_>,
    blocked_block: &str,
) -> Result<Subject> {
    let raw = fd.as_raw_fd();
    Ok(Subject {
        name: name.to_owned(),
        rules,
        rule_count,
        cached_sources_rules: None,
        loads: Vec::new(),
        probes: vec![
            Probe::Same {
                fd: raw,
                frame: udp64(Ipv4Addr::new(10, 0, 0, 1)),
                expect: 2,
            },
            Probe::Same {
                fd: raw,
                frame: udp64(Ipv4Addr::new(100, 64, 0, 7)),
                expect: 1,
            },
            Probe::Random {
                generator: Box::new(sprayer("10.0.0.0/8", fd)?),
                expect: 2,
            },
            Probe::Random {
                generator: Box::new(sprayer(blocked_block, fd)?),
                expect: 1,
            },
        ],
        best: [f64::MAX; 4],
    })
}

/// The block of exact addresses random drops draw from: a power of two within the list.
fn exact_block(exact: usize) -> String {
    format!("100.64.0.0/{}", 32 - pow2_floor(exact).trailing_zeros())
}

/// The rule mix block lists have.
const MIXED: &str = "mixed: 99% addresses, 1% ranges";
/// A source table that fits in the cache (the default holds 262,144 sources, 12 MB).
const SMALL_SOURCE_TABLE: u32 = 4096;

/// One loaded firewall as a subject of the per-packet table.
fn firewall_subject(
    skel: &FirewallSkel<'_>,
    n: usize,
    ranges: usize,
    mix: &str,
    sources: Option<u32>,
) -> Result<Subject> {
    let realistic = mix == MIXED && sources.is_none();
    let cached_sources = mix == MIXED && sources.is_some();
    let table = match sources {
        Some(sources) => format!(
            ", a source table of {}",
            xdpctl::stats::thousands(u64::from(sources))
        ),
        None => String::new(),
    };
    let mut subject = subject(
        "firewall, rate limit on",
        format!("{} ({mix}){table}", xdpctl::stats::thousands(n as u64)),
        realistic.then_some(n),
        skel.progs.firewall.as_fd(),
        &exact_block(n - ranges),
    )?;
    subject.cached_sources_rules = cached_sources.then_some(n);
    Ok(subject)
}

fn per_packet(scale: &Scale, report: &mut Report) -> Result<()> {
    say("per-packet cost (BPF_PROG_RUN)");
    let drop_storage = Box::leak(Box::new(MaybeUninit::uninit()));
    // The floor: a bare XDP_DROP (bpf/flood.bpf.c's bare_drop), with no counters at all.
    let trivial = FloodSkelBuilder::default().open(drop_storage)?.load()?;
    let trivial_fd = trivial.progs.bare_drop.as_fd();
    let floor_same = Probe::Same {
        fd: trivial_fd.as_raw_fd(),
        frame: udp64(Ipv4Addr::new(10, 0, 0, 1)),
        expect: 1,
    };
    let floor_random = Probe::Random {
        generator: Box::new(sprayer("10.0.0.0/8", trivial_fd)?),
        expect: 1,
    };

    // xdp-filter, as deployed: its libxdp dispatcher on a lab interface, for the whole run.
    let xdp_filter_lab = LabGuard::setup(&unique_name("bx"))?;
    let xf_ifname = xdp_filter_lab.outer_ifname().to_owned();
    let mut keep_fds = Vec::new();
    let xdp_filter = (|| -> Result<Subject> {
        run(Command::new("xdp-filter").args(["load", &xf_ifname, "-f", "ipv4,ipv6,tcp,udp"]))?;
        let block = pow2_floor(scale.xdp_filter_ips);
        for i in 0..block {
            let addr = Ipv4Addr::from(0x6440_0000 + i).to_string();
            run(Command::new("xdp-filter").args(["ip", &addr, "-m", "src"]))?;
        }
        run(Command::new("xdp-filter").args(["port", "53", "-p", "udp", "-m", "dst"]))?;
        let ifindex = xdpctl::attach::ifindex(&xf_ifname)?;
        let prog_id = xdpctl::attach::query(ifindex)?
            .first()
            .context("xdp-filter attached nothing")?
            .prog_id;
        let fd = xdpctl::attach::program_fd(prog_id)?;
        let subject = subject(
            "xdp-filter (ipv4,ipv6,tcp,udp)",
            format!("{block} addresses, 1 port"),
            Some(0),
            fd.as_fd(),
            &exact_block(block as usize),
        )?;
        keep_fds.push(fd);
        Ok(subject)
    })();
    let mut xdp_filter = match xdp_filter {
        Ok(s) => Some(s),
        Err(err) => {
            report
                .notes
                .push(format!("xdp-filter could not be measured: {err:#}"));
            None
        }
    };

    // (rules, of which ranges, the mix, a source table smaller than the default). The small
    // tables are not targets: they show what the random-source cost is made of.
    let mut configs: Vec<(usize, usize, &str, Option<u32>)> = scale
        .rule_counts
        .iter()
        .map(|&n| (n, (n / 100).max(1), MIXED, None))
        .collect();
    if !scale.quick {
        configs.push((1_000_000, 500_000, "dense: 50% ranges", None));
        configs.push((1_000, 10, MIXED, Some(SMALL_SOURCE_TABLE)));
        configs.push((1_000_000, 10_000, MIXED, Some(SMALL_SOURCE_TABLE)));
    }
    // Each load of a firewall configuration is measured in rounds of its own, each running every
    // path of it, of xdp-filter and of the floor once, so a burst of noise on this machine hits
    // one round of everything rather than all of one program. A load is unloaded before the
    // next: a host holds one firewall's maps, and many sets of them at once (18 here, 2.3 GB)
    // slowed random reads by about 5 ns.
    let (mut best_floor, mut best_floor_random) = (f64::MAX, f64::MAX);
    let mut round = |subjects: &mut [&mut Subject]| -> Result<()> {
        best_floor = best_floor.min(floor_same.once(scale.repeat)?);
        best_floor_random = best_floor_random.min(floor_random.once(scale.repeat)?);
        for subject in subjects.iter_mut() {
            for (best, probe) in subject.best.iter_mut().zip(&subject.probes) {
                *best = best.min(probe.once(scale.repeat)?);
            }
        }
        Ok(())
    };
    let mut subjects = Vec::new();
    for (n, ranges, mix, sources) in configs {
        let rules = rule_set(n - ranges, ranges);
        let mut first: Option<Subject> = None;
        let mut loads = Vec::new();
        for load in 0..scale.instances {
            say(&format!(
                "firewall with {n} rules ({mix}), load {} of {}: {} rounds",
                load + 1,
                scale.instances,
                scale.runs
            ));
            let mut storage = MaybeUninit::uninit();
            let mut open = FirewallSkelBuilder::default().open(&mut storage)?;
            if let Some(sources) = sources {
                xdpctl::firewall::set_source_table_size(open.open_object_mut(), sources)?;
            }
            let skel = open.load()?;
            let maps = FirewallMaps::from_object(skel.object())?;
            xdpctl::rules::add_prefixes(&maps, List::Block, &rules, 0, 0)?;
            maps.set_rate_limit(&RateLimit {
                enabled: true,
                pps: 1_000_000_000,
                burst: 1_000_000_000,
                block_for_ns: 0,
                proto: RateLimitProto::All,
            })?;
            let mut firewall = firewall_subject(&skel, n, ranges, mix, sources)?;
            for _ in 0..scale.runs {
                match xdp_filter.as_mut() {
                    Some(xdp_filter) => round(&mut [xdp_filter, &mut firewall])?,
                    None => round(&mut [&mut firewall])?,
                }
            }
            firewall.probes.clear();
            loads.push(firewall.best);
            first.get_or_insert(firewall);
        }
        // The configuration's row: per path, the median load's best round.
        if let Some(mut firewall) = first {
            firewall.best =
                std::array::from_fn(|path| median(loads.iter().map(|best| best[path]).collect()));
            firewall.loads = loads;
            subjects.push(firewall);
        }
    }
    let subjects: Vec<Subject> = xdp_filter.into_iter().chain(subjects).collect();
    let _ = Command::new("xdp-filter")
        .args(["unload", &xf_ifname])
        .output();
    let _ = std::fs::remove_dir("/sys/fs/bpf/xdp");
    drop(xdp_filter_lab);

    // Program cost: the best measurement minus the best floor of the same kind.
    let program_cost = |s: &Subject, path: usize| {
        s.best[path]
            - if path < 2 {
                best_floor
            } else {
                best_floor_random
            }
    };
    let xf = subjects.iter().find(|s| s.name.starts_with("xdp-filter"));
    let xf_costs: Option<[f64; 4]> = xf.map(|s| std::array::from_fn(|p| program_cost(s, p)));
    let mut rows = vec![vec![
        "trivial XDP_DROP, no counters (the floor)".to_owned(),
        "-".into(),
        format!("{best_floor:.0} / {best_floor:.0}"),
        format!("{best_floor_random:.0} / {best_floor_random:.0}"),
        "0 / 0".into(),
        "0 / 0".into(),
    ]];
    for s in &subjects {
        let cost: [f64; 4] = std::array::from_fn(|p| program_cost(s, p));
        let ratio = |p: usize| match (&xf_costs, s.name.starts_with("xdp-filter")) {
            (Some(x), false) => format!(" ({:.2}x)", cost[p] / x[p]),
            _ => String::new(),
        };
        rows.push(vec![
            s.name.clone(),
            s.rules.clone(),
            format!("{:.0} / {:.0}", s.best[0], s.best[1]),
            format!("{:.0} / {:.0}", s.best[2], s.best[3]),
            format!("{:.0}{} / {:.0}{}", cost[0], ratio(0), cost[1], ratio(1)),
            format!("{:.0}{} / {:.0}{}", cost[2], ratio(2), cost[3], ratio(3)),
        ]);
    }
    report.tables.push(Table {
        title: "Per-packet cost".into(),
        intro: format!(
            "BPF_PROG_RUN of a 64-byte UDP frame, {} repetitions a run; {} rounds, each running \
             every path of every program once (and the floor), and the best round counts. Each \
             firewall configuration is loaded {} times, as a map's pages land elsewhere at each \
             load and random reads cost what they cost there: its cells are the median load's. \
             Each cell is *pass / drop* (a clean source / a blocked one) in ns. *Same source*: the \
             kernel's mean over the repetitions of one frame. *Random sources*: every \
             repetition first draws a new source (bpf/flood.bpf.c's `spray`, which then \
             tail-calls the program). *Program cost* = measured minus the floor of the same \
             kind; in brackets, its ratio to xdp-filter's for the same path. Rules are block \
             rules; the rate limit is on at a rate no source reaches, so the pass path runs the \
             whole limiter. xdp-filter holds at most 10,000 addresses (its maps' size).",
            xdpctl::stats::thousands(scale.repeat as u64),
            scale.runs,
            scale.instances
        ),
        header: vec![
            "program",
            "rules",
            "ns, same source",
            "ns, random sources",
            "program cost, same source",
            "program cost, random sources",
        ],
        rows,
    });

    let firewall: Vec<&Subject> = subjects
        .iter()
        .filter(|s| s.name.starts_with("firewall"))
        .collect();
    let realistic = |n: usize| firewall.iter().find(|s| s.rule_count == Some(n));
    let largest = *scale.rule_counts.iter().max().unwrap();
    let smallest = *scale.rule_counts.iter().min().unwrap();
    if let (Some(x), Some(big)) = (&xf_costs, realistic(largest)) {
        let n = xdpctl::stats::thousands(largest as u64);
        for (path, what, goal) in [
            (
                0,
                format!("pass path, {n} mixed rules, rate limit on, same source, vs xdp-filter"),
                0.8,
            ),
            (
                2,
                format!("pass path, {n} mixed rules, rate limit on, random sources, vs xdp-filter"),
                0.8,
            ),
            (
                1,
                format!("drop path (blocked source), {n} mixed rules, same source, vs xdp-filter"),
                0.5,
            ),
        ] {
            let ours = program_cost(big, path);
            report.targets.push(Target {
                what,
                measured: format!("{ours:.0} ns vs {:.0} ns = {:.2}x", x[path], ours / x[path]),
                goal: format!("≤ {goal}x"),
                met: ours / x[path] <= goal,
            });
        }
        if big.loads.len() > 1 {
            let each: Vec<String> = big
                .loads
                .iter()
                .map(|best| format!("{:.0}", best[2] - best_floor_random))
                .collect();
            report.notes.push(format!(
                "Random sources, pass path, {n} rules: the {} loads measured {} ns (the table \
                 gives the median).",
                big.loads.len(),
                each.join(", ")
            ));
        }
        // What a per-source limiter costs at best: the same rules with every source's state in
        // the cache.
        if let Some(cached) = firewall
            .iter()
            .find(|s| s.cached_sources_rules == Some(largest))
        {
            let cost = program_cost(cached, 2);
            let budget = 0.8 * x[2];
            report.notes.push(format!(
                "Random sources, pass path, {n} rules, with a source table small enough to stay in \
                 the cache ({}): {cost:.0} ns, against the target's budget of {budget:.0} ns \
                 (0.8 × xdp-filter's {:.0} ns): {} it, with every per-source access a cache hit.",
                cached.rules,
                x[2],
                if cost > budget { "over" } else { "within" }
            ));
        }
    }
    if let (Some(small), Some(big)) = (realistic(smallest), realistic(largest)) {
        if largest != smallest {
            let (a, b) = (program_cost(small, 0), program_cost(big, 0));
            report.targets.push(Target {
                what: format!(
                    "cost growth from {} to {} rules, pass path, same source",
                    xdpctl::stats::thousands(smallest as u64),
                    xdpctl::stats::thousands(largest as u64)
                ),
                measured: format!("{a:.0} → {b:.0} ns = {:.2}x", b / a),
                goal: "≤ 1.3x".into(),
                met: b / a <= 1.3,
            });
        }
    }
    Ok(())
}

// --- End to end --------------------------------------------------------------------------------

/// A receiver configuration inside the lab, and how to read how many packets it dropped.
struct Receiver {
    name: &'static str,
    setup: Vec<Vec<String>>,
    teardown: Vec<Vec<String>>,
    counter: fn(&LabGuard) -> Result<u64>,
    random_sources: bool,
}

fn xdp_drops(lab: &LabGuard) -> Result<u64> {
    let status: serde_json::Value =
        serde_json::from_str(&in_lab(lab, &[XDPCTL, "status", "veth0", "--json"])?)?;
    let id = status[0]["id"]
        .as_u64()
        .context("no XDP program on veth0")? as u32;
    let program = xdpctl::attach::program_summary(id)?;
    let maps = xdpctl::stats::StatsMaps::of_program(&program).context("no stats map")?;
    Ok(xdpctl::stats::read_counters(&maps.actions)?
        .action("XDP_DROP")
        .packets)
}

fn xdp_filter_drops(lab: &LabGuard) -> Result<u64> {
    let status = in_lab(lab, &["xdp-filter", "status"])?;
    status
        .lines()
        .find(|l| l.trim_start().starts_with("XDP_DROP"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .context("no XDP_DROP line in `xdp-filter status`")
}

fn iptables_drops(lab: &LabGuard) -> Result<u64> {
    let rules = in_lab(
        lab,
        &[
            "iptables",
            "-t",
            "raw",
            "-L",
            "PREROUTING",
            "-v",
            "-x",
            "-n",
        ],
    )?;
    rules
        .lines()
        .find(|l| l.contains("198.18.0.1"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no counter in iptables -L")
}

fn nft_drops(lab: &LabGuard) -> Result<u64> {
    let table: serde_json::Value = serde_json::from_str(&in_lab(
        lab,
        &["nft", "-j", "list", "table", "netdev", "xb"],
    )?)?;
    let text = table.to_string();
    let at = text.find("\"packets\":").context("no nft counter")?;
    let digits: String = text[at + 10..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Ok(digits.parse()?)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The end-to-end receiver that shows the firewall's cheapest drop.
const PORT_RECEIVER: &str = "firewall, flood port blocked (its cheapest drop: no address lookup)";

fn end_to_end(scale: &Scale, report: &mut Report) -> Result<()> {
    say("end-to-end drop rates (xdpctl flood into a lab)");
    let lab = LabGuard::setup(&unique_name("be"))?;
    let x = XDPCTL;
    let receivers = vec![
        Receiver {
            name: "trivial XDP_DROP (xdp_drop)",
            setup: vec![strings(&[x, "load", "veth0", "-p", "xdp_drop"])],
            teardown: vec![strings(&[x, "unload", "veth0"])],
            counter: xdp_drops,
            random_sources: false,
        },
        Receiver {
            name: "firewall, flood source blocklisted",
            setup: vec![
                strings(&[x, "load", "veth0"]),
                strings(&[x, "block", "198.18.0.1"]),
            ],
            teardown: vec![
                strings(&[x, "unblock", "--all"]),
                strings(&[x, "unload", "veth0"]),
            ],
            counter: xdp_drops,
            random_sources: false,
        },
        Receiver {
            name: PORT_RECEIVER,
            setup: vec![
                strings(&[x, "load", "veth0"]),
                strings(&[x, "block", "--port", "9/udp"]),
            ],
            teardown: vec![
                strings(&[x, "unblock", "--all"]),
                strings(&[x, "unload", "veth0"]),
            ],
            counter: xdp_drops,
            random_sources: false,
        },
        Receiver {
            name: "firewall, rate limit on a random-source flood (/16)",
            setup: vec![
                strings(&[x, "load", "veth0"]),
                strings(&[
                    x,
                    "ratelimit",
                    "set",
                    "--pps",
                    "2",
                    "--burst",
                    "2",
                    "--block-for",
                    "60s",
                ]),
            ],
            teardown: vec![
                strings(&[x, "ratelimit", "off"]),
                strings(&[x, "unblock", "--all"]),
                strings(&[x, "unload", "veth0"]),
            ],
            counter: xdp_drops,
            random_sources: true,
        },
        Receiver {
            name: "xdp-filter, flood source filtered",
            setup: vec![
                strings(&["xdp-filter", "load", "veth0", "-f", "ipv4"]),
                strings(&["xdp-filter", "ip", "198.18.0.1", "-m", "src"]),
            ],
            teardown: vec![strings(&["xdp-filter", "unload", "veth0"])],
            counter: xdp_filter_drops,
            random_sources: false,
        },
        Receiver {
            name: "iptables raw PREROUTING DROP",
            setup: vec![strings(&[
                "iptables",
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-i",
                "veth0",
                "-s",
                "198.18.0.1",
                "-j",
                "DROP",
            ])],
            teardown: vec![strings(&["iptables", "-t", "raw", "-F", "PREROUTING"])],
            counter: iptables_drops,
            random_sources: false,
        },
        Receiver {
            name: "nftables netdev ingress drop",
            setup: vec![
                strings(&["nft", "add", "table", "netdev", "xb"]),
                strings(&[
                    "nft",
                    "add",
                    "chain",
                    "netdev",
                    "xb",
                    "in",
                    "{ type filter hook ingress device veth0 priority -500; }",
                ]),
                strings(&[
                    "nft",
                    "add",
                    "rule",
                    "netdev",
                    "xb",
                    "in",
                    "ip",
                    "saddr",
                    "198.18.0.1",
                    "counter",
                    "drop",
                ]),
            ],
            teardown: vec![strings(&["nft", "delete", "table", "netdev", "xb"])],
            counter: nft_drops,
            random_sources: false,
        },
    ];
    let stop = AtomicBool::new(false);
    let mut measured: HashMap<&str, (Vec<f64>, Vec<f64>)> = HashMap::new();
    // Rounds, each running every receiver once, so a burst of noise hits a round of all of them.
    for round in 0..scale.e2e_runs {
        say(&format!("round {} of {}", round + 1, scale.e2e_runs));
        for receiver in &receivers {
            for command in &receiver.setup {
                let args: Vec<&str> = command.iter().map(String::as_str).collect();
                in_lab(&lab, &args)?;
            }
            let plan = |seconds: f64| Plan {
                ifname: lab.outer_ifname().to_owned(),
                ifindex: xdpctl::attach::ifindex(lab.outer_ifname()).unwrap(),
                proto: FloodProto::Udp,
                source: if receiver.random_sources {
                    "198.18.0.0/16"
                } else {
                    "198.18.0.1/32"
                }
                .parse()
                .unwrap(),
                destination: IpAddr::V4(lab.inner_ipv4()),
                source_mac: lab.outer_mac(),
                destination_mac: lab.inner_mac(),
                size: 64,
                pps: None,
                until: Until::Duration(Duration::from_secs_f64(seconds)),
            };
            // Warm up (and let the rate limiter block its sources), then measure.
            flood::run(&plan(0.5), &stop)?;
            let before = (receiver.counter)(&lab)?;
            let flood = flood::run(&plan(scale.e2e_seconds), &stop)?;
            let dropped = (receiver.counter)(&lab)? - before;
            let entry = measured.entry(receiver.name).or_default();
            entry.0.push(dropped as f64 / flood.seconds);
            entry.1.push(flood.pps());
            for command in &receiver.teardown {
                let args: Vec<&str> = command.iter().map(String::as_str).collect();
                in_lab(&lab, &args)?;
            }
        }
    }
    let mut rates: HashMap<&str, f64> = HashMap::new();
    let mut rows = Vec::new();
    for receiver in &receivers {
        let (dropped, sent) = measured.remove(receiver.name).unwrap_or_default();
        let rate = median(dropped);
        rates.insert(receiver.name, rate);
        rows.push((receiver.name, rate, median(sent)));
    }
    let floor = rates[receivers[0].name];
    let table_rows = rows
        .iter()
        .map(|(name, rate, sent)| {
            vec![
                (*name).to_owned(),
                format!("{:.2}", rate / 1e6),
                format!("{:.2}", sent / 1e6),
                format!("{:.2}", rate / floor),
            ]
        })
        .collect();
    report.tables.push(Table {
        title: "End-to-end drop rate".into(),
        intro: format!(
            "`xdpctl flood --max` (64-byte UDP, BPF_PROG_RUN live frames) from a lab's outer veth \
             into its namespace, where the receiver runs on veth0 (native XDP, or the stack with \
             GRO on for netfilter). Rate = packets the receiver's own counter dropped / seconds; \
             median of {} rounds, each running every receiver for {} s after a 0.5 s warm-up. Sent = \
             frames the veth took, as the flood reports them. Sender and receiver share the \
             machine's 2 cores.",
            scale.e2e_runs, scale.e2e_seconds
        ),
        header: vec!["receiver", "dropped, Mpps", "sent, Mpps", "ratio to trivial XDP_DROP"],
        rows: table_rows,
    });
    let fw = rates["firewall, flood source blocklisted"];
    let nft = rates["nftables netdev ingress drop"];
    let ipt = rates["iptables raw PREROUTING DROP"];
    // The firewall can at most match a program that does nothing: what the targets ask of it,
    // and what its cheapest drop (a port rule: no address lookup at all) reaches.
    report.notes.push(format!(
        "End to end, trivial XDP_DROP dropped {:.2}x as fast as nftables and {:.2}x as fast as \
         iptables, so 2.5x of them needs the firewall at ≥ {:.2} and ≥ {:.2} of trivial's rate. \
         It ran at {:.2} dropping the blocklisted source, and at {:.2} on its cheapest drop, a \
         port rule, which skips the address lookup.",
        floor / nft,
        floor / ipt,
        2.5 / (floor / nft),
        2.5 / (floor / ipt),
        fw / floor,
        rates[PORT_RECEIVER] / floor
    ));
    for (what, other, goal, better) in [
        ("trivial XDP_DROP", floor, 0.8, "≥ 0.8x"),
        ("nftables netdev ingress", nft, 2.5, "≥ 2.5x"),
        ("iptables raw", ipt, 2.5, "≥ 2.5x"),
    ] {
        report.targets.push(Target {
            what: format!("end to end: blocklisted flood vs {what}"),
            measured: format!(
                "{:.2} vs {:.2} Mpps = {:.2}x",
                fw / 1e6,
                other / 1e6,
                fw / other
            ),
            goal: better.into(),
            met: fw / other >= goal,
        });
    }
    Ok(())
}

// --- Bulk rules, memory, control plane ------------------------------------------------------------

/// Runs a child and returns (seconds, peak RSS in KiB).
fn timed(command: &mut Command) -> Result<(f64, u64)> {
    let started = Instant::now();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage are valid out-pointers.
    let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if ret < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{command:?} failed");
    }
    Ok((seconds, usage.ru_maxrss as u64))
}

fn bulk_and_memory(scale: &Scale, report: &mut Report) -> Result<()> {
    say("bulk rule loads and memory");
    let n = scale.bulk;
    let rules = rule_set(n - n / 100, n / 100);
    let dir = std::env::temp_dir();
    let list = dir.join(format!("xdpctl-bench-{}.txt", std::process::id()));
    // ipset twice: as commonly set up (default hashsize, room raised with maxelem), and
    // presized for the list (its best case).
    let restore = dir.join(format!("xdpctl-bench-{}.ipset", std::process::id()));
    let presized = dir.join(format!(
        "xdpctl-bench-{}-presized.ipset",
        std::process::id()
    ));
    {
        let mut f = std::io::BufWriter::new(File::create(&list)?);
        let mut r = std::io::BufWriter::new(File::create(&restore)?);
        let mut p = std::io::BufWriter::new(File::create(&presized)?);
        writeln!(r, "create xb hash:net family inet maxelem {}", 2 * n)?;
        writeln!(
            p,
            "create xb hash:net family inet hashsize {} maxelem {}",
            n.next_power_of_two(),
            2 * n
        )?;
        for rule in &rules {
            writeln!(f, "{rule}")?;
            writeln!(r, "add xb {rule}")?;
            writeln!(p, "add xb {rule}")?;
        }
    }
    let lab = LabGuard::setup(&unique_name("bb"))?;
    let base_root = std::env::var("XDPCTL_PIN_ROOT")?;
    let mut loads = Vec::new();
    let mut unloads = Vec::new();
    let mut rss = Vec::new();
    let mut ipsets = Vec::new();
    let mut ipsets_presized = Vec::new();
    let mut memlock_empty = 0;
    let mut memlock_full = 0;
    for i in 0..scale.bulk_runs {
        // A fresh instance each time, its firewall loaded (maps created) before the timed block.
        let root = format!("{base_root}-bulk{i}");
        let env = |c: &mut Command| {
            c.env("XDPCTL_PIN_ROOT", &root);
        };
        let mut load = Command::new(XDPCTL);
        env(&mut load);
        load.args(["load", lab.outer_ifname()]);
        run(&mut load)?;
        if i == 0 {
            memlock_empty = memlock(lab.outer_ifname())?;
        }
        let mut block = Command::new(XDPCTL);
        env(&mut block);
        let (seconds, peak) = timed(block.args(["block", "--file", list.to_str().unwrap()]))?;
        loads.push(seconds);
        rss.push(peak as f64);
        if i == 0 {
            memlock_full = memlock(lab.outer_ifname())?;
        }
        let mut unblock = Command::new(XDPCTL);
        env(&mut unblock);
        unloads.push(timed(unblock.args(["unblock", "--all"]))?.0);
        let mut unload = Command::new(XDPCTL);
        env(&mut unload);
        run(unload.args(["unload", "--all"]))?;

        for (file, times) in [(&restore, &mut ipsets), (&presized, &mut ipsets_presized)] {
            let started = Instant::now();
            run(Command::new(XDPCTL)
                .args([
                    "testenv",
                    "exec",
                    "--name",
                    lab.outer_ifname(),
                    "--",
                    "ipset",
                    "-exist",
                    "restore",
                ])
                .stdin(File::open(file)?))?;
            times.push(started.elapsed().as_secs_f64());
            in_lab(&lab, &["ipset", "destroy", "xb"])?;
        }
    }
    for file in [&list, &restore, &presized] {
        std::fs::remove_file(file)?;
    }
    let (load, unload) = (median(loads), median(unloads));
    let n_text = xdpctl::stats::thousands(n as u64);
    // The two ipset set-ups, each a table row and a target.
    let ipsets = [
        ("default hashsize", "as commonly set up", median(ipsets)),
        (
            "presized hashsize",
            "presized (its best case)",
            median(ipsets_presized),
        ),
    ];
    let mut rows = vec![vec![
        format!("xdpctl block --file ({n_text})"),
        format!("{load:.2}"),
        "1.00".into(),
    ]];
    for (setup, _, seconds) in ipsets {
        rows.push(vec![
            format!("ipset restore ({n_text}), {setup}"),
            format!("{seconds:.2}"),
            format!("{:.2}", seconds / load),
        ]);
    }
    rows.push(vec![
        format!("xdpctl unblock --all ({n_text})"),
        format!("{unload:.2}"),
        "-".into(),
    ]);
    report.tables.push(Table {
        title: "Bulk rules".into(),
        intro: format!(
            "{n_text} prefixes (99% addresses, 1% ranges). xdpctl: `block --file` into an \
             instance where the firewall is loaded (its maps exist, empty), then `unblock --all`. ipset: \
                          `ipset restore` of the same list into a `hash:net` set created by the restore \
             file, with the default hashsize (maxelem raised to fit) and presized, inside a \
             lab's namespace. Median of {} runs.",
            scale.bulk_runs
        ),
        header: vec!["operation", "seconds", "ratio"],
        rows,
    });
    for (_, setup, seconds) in ipsets {
        report.targets.push(Target {
            what: format!("loading {n_text} prefixes, vs ipset restore {setup}"),
            measured: format!(
                "{load:.2} s; ipset {seconds:.2} s = {:.1}x faster",
                seconds / load
            ),
            goal: "≤ 2 s and ≥ 4x faster".into(),
            met: load <= 2.0 && seconds / load >= 4.0,
        });
    }
    report.tables.push(Table {
        title: "Memory".into(),
        intro: "Kernel memory of every map the firewall uses (bpftool's memlock, global rule maps \
                and per-interface counters), and the peak RSS of `xdpctl block --file`."
            .into(),
        header: vec!["what", "MiB"],
        rows: vec![
            vec![
                "firewall maps at default sizes, no rules".into(),
                format!("{:.1}", memlock_empty as f64 / 1048576.0),
            ],
            vec![
                format!("firewall maps with {n_text} rules"),
                format!("{:.1}", memlock_full as f64 / 1048576.0),
            ],
            vec![
                format!("xdpctl peak RSS loading {n_text} rules"),
                format!("{:.1}", median(rss) / 1024.0),
            ],
        ],
    });
    Ok(())
}

/// The summed memlock of the maps of the XDP program on `ifname`.
fn memlock(ifname: &str) -> Result<u64> {
    let ifindex = xdpctl::attach::ifindex(ifname)?;
    let prog = xdpctl::attach::query(ifindex)?
        .first()
        .context("nothing attached")?
        .prog_id;
    let mut total = 0;
    for id in xdpctl::attach::program_summary(prog)?.map_ids {
        let out = run(Command::new("bpftool").args(["-j", "map", "show", "id", &id.to_string()]))?;
        let map: serde_json::Value = serde_json::from_str(&out)?;
        total += map["bytes_memlock"].as_u64().unwrap_or(0);
    }
    Ok(total)
}

fn control_plane(scale: &Scale, report: &mut Report) -> Result<()> {
    say("control plane");
    let lab = LabGuard::setup(&unique_name("bc"))?;
    let ifname = lab.outer_ifname();
    let mut loads = Vec::new();
    for _ in 0..scale.load_runs {
        let started = Instant::now();
        xdpctl(&["load", ifname])?;
        loads.push(started.elapsed().as_secs_f64());
        xdpctl(&["unload", ifname])?;
    }
    xdpctl(&["load", ifname])?;
    let mut stats = Command::new(XDPCTL)
        .args(["stats", ifname, "--interval", "1"])
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(1));
    let ticks = |pid: u32| -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
    };
    let t0 = ticks(stats.id())?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(scale.stats_seconds));
    let t1 = ticks(stats.id())?;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stats.kill();
    let _ = stats.wait();
    xdpctl(&["unload", "--all"])?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (t1 - t0) as f64 / hz / elapsed * 100.0;
    let load = median(loads);
    report.tables.push(Table {
        title: "Control plane".into(),
        intro: format!(
            "`xdpctl load` of the firewall (verification included), median of {}; the CPU \
             `xdpctl stats --interval 1` uses, over {} s (/proc utime + stime, {} Hz ticks).",
            scale.load_runs, scale.stats_seconds, hz
        ),
        header: vec!["what", "figure"],
        rows: vec![
            vec![
                "xdpctl load (firewall)".into(),
                format!("{:.0} ms", load * 1000.0),
            ],
            vec![
                "xdpctl stats --interval 1".into(),
                format!("{cpu:.2}% of a core"),
            ],
        ],
    });
    report.targets.push(Target {
        what: "`xdpctl stats` at a 1 s interval".into(),
        measured: format!("{cpu:.2}% of a core"),
        goal: "< 1%".into(),
        met: cpu < 1.0,
    });
    Ok(())
}

// --- The report --------------------------------------------------------------------------------

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

fn git_rev() -> String {
    run(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "no git".into())
}

fn render(report: &Report) -> String {
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

Measured on this machine with variants of the programs (BPF_PROG_RUN, same method as above),
and with `perf record -e cpu-clock` during floods:

- **Calls cost more than work here.** The kernel runs this CPU (AMD EPYC, Zen 4) with the
  speculative-return-stack mitigation \"Safe RET\": every return goes through a thunk. A lookup
  in the kernel's hash map is a call (and a memcmp call inside it): in a program of its own,
  17 ns over the floor for an absent key, 24 ns for a present one. The firewall's exact
  addresses therefore live in a table of its own (bpf/exact.h): two mmapable arrays per list,
  buckets of sixteen 16-bit tags and a slot per lane, looked up with inlined loads and
  arithmetic, no branch per lane. The range tries are still kernel calls, made only while a
  trie holds rules.
- **Drop path (met).** 39 ns with the hash map, 28 ns with the table, 19 ns once each CPU
  remembers per list its last match and the slot (checked again on every use, so a removed or
  moved rule is never trusted). What is left is the parse, the per-protocol, per-port,
  per-reason and per-second counters and the atomic hit count, each 1-2 ns by variants.
- **Pass path, same source (met).** The firewall runs its whole limiter on this path, which
  xdp-filter has no equivalent of: a clock read from a per-CPU cache refreshed once a jiffy
  (`bpf_ktime_get_ns` costs 30 ns in this VM), no division per packet, empty maps skipped from
  a bitmask, a set-associative source table instead of an LRU hash, and the range filter: a
  bit per value of the address's first 16 bits that says whether any range may cover it, which
  spares most packets the trie's lookup (40 -> 32 ns with a million mixed rules).
- **Random sources (met since the presence filter).** The budget is 0.8 of xdp-filter's cost,
  about 63-65 ns. Each new source costs random reads of per-source and per-rule state, and
  what they cost depends on what else is in the cache: one random read in an array costs (over
  a cached one) 1 MB +1 ns, 8 MB +23 ns, 16 MB +39 ns, 32 MB +48 ns, 64 MB +52 ns, 256 MB +63
  ns, alone in a program.
  - The source table (262,144 sources by default): it used to read a set of 192 bytes in a
    12 MB array and write a slot per new source, 184-195 ns. Now a 1 MB index of tags and
    packet counts finds a source's way, and a source's first packet is only noted there; its
    slot is written at its second packet: 64-90 ns between runs, 0.8-1.1x xdp-filter.
  - What was left, found with variants of the program loaded side by side and measured in
    alternating rounds (a flag in .rodata, so each variant is a program of its own): without
    the exact table's lookup the pass path cost 37-42 ns; without the source table 41 ns; with
    both, 72-85 ns. Each alone fitted the cache, together (2.6 MB of tags, 1 MB of index) they
    did not. Skipping the second bucket changed nothing (its read overlaps the first). Exact
    tables sized for 262,144 rules (650 KB of tags) cost 54-57 ns against 78-80 in the same
    rounds; a smaller source table (131,072 sources or fewer) only 6 ns less.
  - So the exact table got a presence filter per list (include/xdpctl.h): one read in 1.3 MB
    rules out most absent addresses, and the tags are read only for the 2.3% it cannot (at a
    million rules). Single loads measured 50-55 ns, 0.63-0.69x, from 73-79 ns before.
  - Loads differ: the same build measured 52-70 ns from one load to the next, so each
    configuration is now loaded three times and the median load counts (the notes give each).
    With all 18 loads at once (2.3 GB of maps) random reads cost about 5 ns more than with one;
    a host holds one firewall's maps, so loads are measured one after another.
  - What is left, by variants in alternating rounds: the tags read for the filter's false
    positives, 4 ns; noting a new source in the index (a store that dirties a line of 1 MB per
    packet), 10-13 ns. Reading the index early, to overlap its miss, gained nothing.
  - The note below gives the same run's random-source cost with a source table small enough to
    stay in the cache (its index is 16 KB).
- **Random blocked sources (no target).** A match must read its 40-byte slot in a 52 MB array
  to confirm the address and the expiry (a 16-bit tag alone would block innocent sources), a
  miss in the cache and the TLB: 250-330 ns. The end-to-end row of a rate-limited /16 flood is
  bound by it, as its sources are auto-blocked within a second.
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

/// The sections of the benchmark, for `--only`.
const SECTIONS: [&str; 4] = ["per-packet", "e2e", "bulk", "control"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let output = args
        .iter()
        .position(|a| a == "--output")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    if !nix::unistd::geteuid().is_root() {
        bail!("the benchmarks load BPF programs and build labs: run them as root");
    }
    let scale = Scale::new(quick);
    let root = format!("/sys/fs/bpf/xdpctl-bench-{}", std::process::id());
    // SAFETY: set before any thread starts; children and the library read it.
    unsafe { std::env::set_var("XDPCTL_PIN_ROOT", &root) };
    let started = Instant::now();
    let mut report = Report::default();
    // `--only SECTION[,SECTION]` runs some sections (per-packet, e2e, bulk, control), for
    // working on one figure; `make bench` runs them all.
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect());
    if let Some(unknown) = only
        .iter()
        .flatten()
        .find(|s| !SECTIONS.contains(&s.as_str()))
    {
        bail!(
            "unknown section '{unknown}' for --only: one of {}",
            SECTIONS.join(", ")
        );
    }
    let wanted = |section: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == section));
    let mut result = Ok(());
    type Section = fn(&Scale, &mut Report) -> Result<()>;
    let sections: [(&str, Section); 4] = [
        ("per-packet", per_packet),
        ("e2e", end_to_end),
        ("bulk", bulk_and_memory),
        ("control", control_plane),
    ];
    for (name, section) in sections {
        if result.is_ok() && wanted(name) {
            result = section(&scale, &mut report);
        }
    }
    let _ = Command::new(XDPCTL).args(["unload", "--all"]).output();
    let _ = std::fs::remove_dir_all(&root);
    // libxdp (xdp-filter) leaves its pin directory behind: remove it if it is empty.
    let _ = std::fs::remove_dir("/sys/fs/bpf/xdp");
    result?;
    let md = render(&report);
    match &output {
        Some(path) => {
            std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{md}"),
    }
    say(&format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    for t in &report.targets {
        say(&format!(
            "{} {}: {} (goal {})",
            if t.met { "MET   " } else { "MISSED" },
            t.what,
            t.measured,
            t.goal
        ));
    }
    if quick && only.is_none() && report.tables.len() < 5 {
        bail!(
            "the quick run produced {} tables, expected 5",
            report.tables.len()
        );
    }
    Ok(())
}
