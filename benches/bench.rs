//! `make bench`: every figure of BENCHMARKS.md in one run, each as a ratio to yardsticks
//! measured in the same run (the machine is noisy): the trivial XDP_DROP program, Debian's
//! xdp-filter, iptables, nftables and ipset.
//!
//! `--quick` (run by `make test`) does every step on small sizes, so the harness never rots,
//! and fails only if a step fails: no figure is judged there. All traffic stays in veth labs,
//! and every netfilter/ipset change is made inside a lab's namespace, gone with it.

// The sections live in benches/bench/, beside this file: `#[path]` keeps them out of cargo's
// bench discovery (which would take benches/*.rs each as a bench of its own) while this file
// stays benches/bench.rs, the name the report cites.
#[path = "bench/bulk.rs"]
mod bulk;
#[path = "bench/control.rs"]
mod control;
#[path = "bench/cores.rs"]
mod cores;
#[path = "bench/end_to_end.rs"]
mod end_to_end;
#[path = "bench/harness.rs"]
mod harness;
#[path = "bench/per_packet.rs"]
mod per_packet;
#[path = "bench/probes.rs"]
mod probes;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/spoofed.rs"]
mod spoofed;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use bulk::bulk_and_memory;
use control::control_plane;
use cores::cores;
use end_to_end::end_to_end;
use harness::{say, Scale, XDPCTL};
use per_packet::per_packet;
use report::{render, Report};
use spoofed::spoofed;

/// The sections of the benchmark, for `--only`.
const SECTIONS: [&str; 6] = ["per-packet", "cores", "e2e", "spoofed", "bulk", "control"];

/// The value after `flag`, if the flag is given.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Result<Option<&'a str>> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => match args.get(i + 1) {
            Some(value) => Ok(Some(value)),
            None => bail!("{flag} needs a value"),
        },
    }
}

/// `text` as a whole number of at least `min`.
fn count_at_least(text: &str, min: u64, flag: &str, what: &str) -> Result<u64> {
    match text.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => bail!("{flag}: '{text}' is not {what} of {min} or more"),
    }
}

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
    let mut scale = Scale::new(quick);
    // `--rules N[,N]` measures the per-packet table's mixed and spread sets at these rule
    // counts (a full run adds its fixed extra sets), for working on one figure:
    // `--quick --only per-packet --rules 1000000 --repeat 1000000`.
    if let Some(list) = flag_value(&args, "--rules")? {
        scale.rule_counts = list
            .split(',')
            .map(|n| Ok(count_at_least(n, 2, "--rules", "a rule count")? as usize))
            .collect::<Result<_>>()?;
    }
    // `--repeat N`: repetitions of each BPF_PROG_RUN (quick: 20,000, which leaves tables of a
    // megabyte or more cold; full: 1,000,000).
    if let Some(repeat) = flag_value(&args, "--repeat")? {
        scale.repeat = count_at_least(repeat, 1, "--repeat", "a number of repetitions")?
            .try_into()
            .context("--repeat: at most 4294967295")?;
    }
    // `--runs N`: rounds of each per-packet measurement (quick: 1, full: 7).
    if let Some(runs) = flag_value(&args, "--runs")? {
        scale.runs = count_at_least(runs, 1, "--runs", "a number of rounds")? as usize;
    }
    let root = format!("/sys/fs/bpf/xdpctl-bench-{}", std::process::id());
    // SAFETY: set before any thread starts; children and the library read it.
    unsafe { std::env::set_var("XDPCTL_PIN_ROOT", &root) };
    // Before any section: xdp-filter (libxdp) needs bpffs and, unlike xdpctl, does not mount
    // it, and a fresh machine may boot without it.
    xdpctl::sys::pins::ensure_bpffs()?;
    let started = Instant::now();
    let mut report = Report::default();
    // `--only SECTION[,SECTION]` runs some sections (per-packet, cores, e2e, spoofed, bulk,
    // control), for
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
    let sections: [(&str, Section); 6] = [
        ("per-packet", per_packet),
        ("cores", cores),
        ("e2e", end_to_end),
        ("spoofed", spoofed),
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
    // Every section makes a table, but `cores` only where there are two CPUs to compare.
    let expected = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        7
    } else {
        6
    };
    if quick && only.is_none() && report.tables.len() < expected {
        bail!(
            "the quick run produced {} tables, expected {expected}",
            report.tables.len()
        );
    }
    Ok(())
}
