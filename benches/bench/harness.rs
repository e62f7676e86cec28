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
    let mut rules = exact_rules(exact);
    ranges_where(&mut rules, ranges, &mut rng, |rng| {
        Ipv4Addr::from(0x1400_0000 | rng.gen_range(0..0x0400_0000u32))
    });
    rules
}

/// The same mix as `rule_set`, but with its ranges spread over the whole unicast space, as
/// real lists (country blocks, DROP lists) are: 1.0.0.0-223.255.255.255 but for 10/8,
/// 100.64/10 and 127/8 (the bench's own sources and the exact rules' block).
pub fn rule_set_spread(exact: usize, ranges: usize) -> Vec<IpNet> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(43);
    let mut rules = exact_rules(exact);
    ranges_where(&mut rules, ranges, &mut rng, |rng| loop {
        let addr = Ipv4Addr::from(rng.gen_range(0x0100_0000..0xe000_0000u32));
        let [a, b, ..] = addr.octets();
        if a != 10 && a != 127 && !(a == 100 && (64..128).contains(&b)) {
            break addr;
        }
    });
    rules
}

fn exact_rules(exact: usize) -> Vec<IpNet> {
    (0..exact as u32)
        .map(|i| IpNet::from(IpAddr::V4(Ipv4Addr::from(0x6440_0000 + i))))
        .collect()
}

/// Appends `ranges` distinct ranges at addresses `draw` picks: 60% /24s, 30% /16-/23, 10%
/// /25-/30 (so every tool gets the same number of entries).
fn ranges_where(
    rules: &mut Vec<IpNet>,
    ranges: usize,
    rng: &mut rand::rngs::StdRng,
    draw: impl Fn(&mut rand::rngs::StdRng) -> Ipv4Addr,
) {
    let mut seen = std::collections::HashSet::new();
    while seen.len() < ranges {
        let len = match rng.gen_range(0..10) {
            0..=5 => 24,
            6..=8 => rng.gen_range(16..24),
            _ => rng.gen_range(25..31),
        };
        let range = IpNet::new(IpAddr::V4(draw(rng)), len).unwrap().trunc();
        if seen.insert(range) {
            rules.push(range);
        }
    }
}

/// The share of the IPv4 space the ranges of a rule set cover (overlaps counted once).
pub fn v4_coverage(rules: &[IpNet]) -> f64 {
    let ranges: Vec<IpNet> = rules
        .iter()
        .filter(|r| r.prefix_len() < 32)
        .copied()
        .collect();
    IpNet::aggregate(&ranges)
        .iter()
        .map(|r| 2f64.powi(32 - i32::from(r.prefix_len())))
        .sum::<f64>()
        / 2f64.powi(32)
}
