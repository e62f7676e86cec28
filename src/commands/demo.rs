//! `xdpctl demo`: the main job, shown in a throwaway lab: a flood from one source is
//! auto-blocked while a second source's traffic keeps flowing, and the graph of the kernel's
//! per-second history shows it. It uses its own pin root, so a user's real rules are never
//! touched, and it removes the lab and its pins whatever happens.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::commands::{load, unload};
use crate::counters::stats::{self, Sample};
use crate::firewall::rules;
use crate::firewall::talkers::{self, SourceSample};
use crate::firewall::{self, FirewallMaps};
use crate::lab::testenv::{unique_name, Lab, LabGuard};
use crate::sys::attach::RequestedMode;
use crate::sys::programs::Source;
use crate::{counters::history, output, output::graph, sys::privileges};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to save the graph of the flood (.svg or .png).
    #[arg(long, value_name = "FILE", default_value = "xdpctl-demo.png")]
    pub graph: PathBuf,
}

const LIMIT_PPS: u64 = 1000;
/// The flood: paced, so the graph shows a steady rate on any machine.
const FLOOD_PPS: u64 = 200_000;
const FLOOD_SECONDS: u64 = 4;
/// Quiet seconds before and after the flood, so the graph shows it start and end.
const QUIET_SECONDS: u64 = 2;

pub fn run(args: &DemoArgs) -> Result<ExitCode> {
    graph::Format::of_path(&args.graph)?;
    privileges::require("demo")?;
    let started = Instant::now();
    let root = format!("/sys/fs/bpf/xdpctl-demo-{}", std::process::id());
    // SAFETY: set before any thread exists; everything below reads the pin root from it.
    unsafe { std::env::set_var("XDPCTL_PIN_ROOT", &root) };
    let result = tour(&args.graph);
    let _ = unload::unload_everything();
    let _ = std::fs::remove_dir_all(&root);
    result?;
    println!(
        "\nDone in {:.1} s; the lab and its pins are gone.",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn tour(graph_path: &Path) -> Result<()> {
    let lab = LabGuard::setup(&unique_name("demo"))?;
    let ifname = lab.outer_ifname().to_owned();
    step(&format!(
        "A lab: {ifname} ({}) here; inside, a flooder ({}) and a good host ({})",
        lab.outer_ipv4(),
        lab.inner_ipv4(),
        lab.second_inner_ipv4()
    ));

    step(&format!(
        "xdpctl load {ifname}      # the firewall is the default program"
    ));
    let firewall = Source::from_args(None, None)?;
    println!(
        "{}",
        load::load(
            &ifname,
            &firewall,
            RequestedMode::Native,
            false,
            Default::default(),
            &crate::counters::COUNTER_MAPS
        )?
    );

    step(&format!(
        "xdpctl ratelimit set --pps {LIMIT_PPS} --block-for 60s   # per source; over it: blocked"
    ));
    let maps = FirewallMaps::open_or_create()?;
    maps.set_rate_limit(&firewall::RateLimit {
        enabled: true,
        pps: LIMIT_PPS,
        burst: LIMIT_PPS,
        block_for_ns: 60_000_000_000,
        proto: firewall::RateLimitProto::All,
    })?;
    println!(
        "Rate limit: {}",
        output::ratelimit::describe(&maps.config()?)
    );

    let (stats_maps, _) = stats::stats_maps_of_interface(&ifname)?;
    let before = Sample::take(&stats_maps)?;
    let sources_before = SourceSample::take(&maps)?;

    let loaded_at = Instant::now();
    let pings = (QUIET_SECONDS * 2 + FLOOD_SECONDS) * 10;
    step(&format!(
        "The good host pings {} {pings} times (10/s); after {QUIET_SECONDS} s the flooder sends \
         {} UDP packets/s for {FLOOD_SECONDS} s",
        lab.outer_ipv4(),
        crate::output::numbers::thousands(FLOOD_PPS)
    ));
    let good = lab
        .ping_command_from(
            Some(IpAddr::V4(lab.second_inner_ipv4())),
            pings as u32,
            false,
            0.1,
        )?
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the good host's ping")?;
    std::thread::sleep(Duration::from_secs(QUIET_SECONDS));
    let flood_started = Instant::now();
    flood(&lab)?;
    let flood_seconds = flood_started.elapsed().as_secs_f64();
    let good = good.wait_with_output()?;
    let good_summary = String::from_utf8_lossy(&good.stdout);
    let good_line = good_summary
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("(no summary)");
    println!("good host: {good_line}");

    step("xdpctl top   # over the flood");
    // Rates over the flood alone: the samples also span the good host's ping around it.
    let talkers =
        talkers::talkers_over(&sources_before, &SourceSample::take(&maps)?, flood_seconds);
    for t in talkers.iter().take(3) {
        let note = if t.blocked { "  (blocked)" } else { "" };
        println!(
            "{:<24} {:>10} pps{note}",
            t.source,
            crate::output::numbers::thousands(t.pps.round() as u64)
        );
    }

    step("xdpctl list   # the flooder was blocked automatically");
    let now = maps.now_ns()?;
    for entry in rules::list_prefixes(&maps, firewall::List::Block, now)? {
        println!(
            "{:<20} hits {:>10}  expires in {:>3.0}s  reason {}",
            entry.prefix.to_string(),
            crate::output::numbers::thousands(entry.hits),
            entry.expires_in.unwrap_or(0.0),
            output::rules::reason(&entry)
        );
    }

    step(&format!("xdpctl stats {ifname}"));
    let report = stats::report(&before, &Sample::take(&stats_maps)?);
    print!("{}", output::stats::format_table(&ifname, &report));

    // Let the last second end, so the history has it.
    std::thread::sleep(Duration::from_millis(1100));
    let history_map = stats_maps
        .history
        .as_ref()
        .context("the firewall keeps no history")?;
    let seconds = history::read_completed(history_map, loaded_at.elapsed().as_secs() + 1)?;
    step(&format!(
        "xdpctl history {ifname}   # every second since the load, exact"
    ));
    print!("{}", output::history::format_table(&seconds));
    step(&format!(
        "xdpctl graph {ifname} --output {}",
        graph_path.display()
    ));
    graph::write(graph_path, &ifname, &seconds)?;
    println!(
        "Wrote {}: received rises to the flood's rate while passed stays flat.",
        graph_path.display()
    );

    if !good.status.success() || !good_line.contains(&format!(" {pings} received")) {
        bail!("the good host lost traffic while the flooder was blocked: {good_line}");
    }
    let blocked = rules::list_prefixes(&maps, firewall::List::Block, now)?
        .iter()
        .any(|e| e.prefix.addr() == IpAddr::V4(lab.inner_ipv4()));
    if !blocked {
        bail!("the flooder was not auto-blocked");
    }
    let peak = |pick: fn(&history::Second) -> u64| seconds.iter().map(pick).max().unwrap_or(0);
    if peak(|s| s.received) < FLOOD_PPS / 4 || peak(|s| s.passed) > 2 * LIMIT_PPS + 100 {
        bail!(
            "the history does not show the flood cut off: received peaked at {}/s, passed at {}/s",
            peak(|s| s.received),
            peak(|s| s.passed)
        );
    }
    println!("\nThe flooder was cut off at the driver; the good host got every reply.");
    step(&format!(
        "xdpctl unload --all && xdpctl testenv teardown --name {ifname}"
    ));
    Ok(())
}

/// The flooder: `xdpctl flood` inside the lab, from its first inside address, paced.
fn flood(lab: &Lab) -> Result<()> {
    let exe = std::env::current_exe().context("finding xdpctl's own binary")?;
    let (pps, seconds) = (FLOOD_PPS.to_string(), FLOOD_SECONDS.to_string());
    let source = lab.inner_ipv4().to_string();
    let args = [
        "flood",
        "veth0",
        "--pps",
        &pps,
        "--duration",
        &seconds,
        "--src",
        &source,
    ];
    println!("flooder: xdpctl {}", args.join(" "));
    let output = lab
        .command(&exe.to_string_lossy())?
        .args(args)
        .output()
        .context("running xdpctl flood in the lab")?;
    if !output.status.success() {
        bail!(
            "the flood failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    print!("flooder: {}", String::from_utf8_lossy(&output.stdout));
    Ok(())
}

fn step(what: &str) {
    println!("\n==> {what}");
}
