//! What every section shares: how much to measure, running commands (xdpctl, inside a lab),
//! the rule sets, and the median that turns runs into a figure.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use rand::{Rng, SeedableRng};
use xdpctl::lab::testenv::LabGuard;

pub const XDPCTL: &str = env!("CARGO_BIN_EXE_xdpctl");

/// How much of everything.
pub struct Scale {
    pub quick: bool,
    pub repeat: u32,
    pub runs: usize,
    /// Loads of each firewall configuration: a map's pages land elsewhere at each load, and
    /// random reads cost what they cost there.
    pub instances: usize,
    pub rule_counts: Vec<usize>,
    pub xdp_filter_ips: usize,
    pub e2e_seconds: f64,
    pub e2e_runs: usize,
    pub bulk: usize,
    pub bulk_runs: usize,
    pub stats_seconds: f64,
    pub load_runs: usize,
}

impl Scale {
    pub fn new(quick: bool) -> Scale {
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

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn say(text: &str) {
    eprintln!("bench: {text}");
}

/// Runs a command, failing with its stderr.
pub fn run(command: &mut Command) -> Result<String> {
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

pub fn xdpctl(args: &[&str]) -> Result<String> {
    run(Command::new(XDPCTL).args(args))
}

/// A command inside the lab's namespace (through `xdpctl testenv exec`, which keeps bpffs).
pub fn in_lab(lab: &LabGuard, args: &[&str]) -> Result<String> {
    run(Command::new(XDPCTL)
        .args(["testenv", "exec", "--name", lab.outer_ifname(), "--"])
        .args(args))
}

/// The rule sets: `exact` addresses from 100.64.0.0 up (contiguous, so a random pick within a
/// power-of-two block is always blocked) and `ranges` random CIDR ranges in 20.0.0.0/6, with
/// lengths as block lists have them (mostly /24, some /16-/23, a few /25-/30).
pub fn rule_set(exact: usize, ranges: usize) -> Vec<IpNet> {
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
