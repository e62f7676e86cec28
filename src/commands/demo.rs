//! `xdpctl demo`: the main job, shown in a throwaway lab: a flood from one source is
//! auto-blocked while a second source's traffic keeps flowing. It uses its own pin root, so a
//! user's real rules are never touched, and it removes the lab and its pins whatever happens.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::attach::RequestedMode;
use crate::commands::{load, unload};
use crate::firewall::{self, FirewallMaps};
use crate::privileges;
use crate::programs::Source;
use crate::rules;
use crate::stats::{self, Sample};
use crate::testenv::{unique_name, Lab, LabGuard};
use crate::top::{self, SourceSample};

const LIMIT_PPS: u64 = 1000;
const FLOOD_SECONDS: f64 = 2.0;

pub fn run() -> Result<ExitCode> {
    privileges::require("demo")?;
    let started = Instant::now();
    let root = format!("/sys/fs/bpf/xdpctl-demo-{}", std::process::id());
    // SAFETY: set before any thread exists; everything below reads the pin root from it.
    unsafe { std::env::set_var("XDPCTL_PIN_ROOT", &root) };
    let result = tour();
    let _ = unload::unload_everything();
    let _ = std::fs::remove_dir_all(&root);
    result?;
    println!(
        "\nDone in {:.1} s; the lab and its pins are gone.",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn tour() -> Result<()> {
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
            Default::default()
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
        super::ratelimit::describe(&maps.config()?)
    );

    let (stats_maps, _) = stats::stats_maps_of_interface(&ifname)?;
    let before = Sample::take(&stats_maps)?;
    let sources_before = SourceSample::take(&maps)?;

    step(&format!(
        "The good host pings {} 40 times (10/s) while the flooder sends UDP as fast as it can for {FLOOD_SECONDS} s",
        lab.outer_ipv4()
    ));
    let good = lab
        .ping_command_from(Some(IpAddr::V4(lab.second_inner_ipv4())), 40, false, 0.1)?
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the good host's ping")?;
    std::thread::sleep(Duration::from_millis(500));
    let flood_started = Instant::now();
    let sent = flood(&lab, Duration::from_secs_f64(FLOOD_SECONDS))?;
    let flood_seconds = flood_started.elapsed().as_secs_f64();
    let good = good.wait_with_output()?;
    let good_summary = String::from_utf8_lossy(&good.stdout);
    let good_line = good_summary
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("(no summary)");
    println!(
        "flooder: sent {} datagrams ({} per second)",
        crate::stats::thousands(sent),
        crate::stats::thousands((sent as f64 / flood_seconds) as u64)
    );
    println!("good host: {good_line}");

    step("xdpctl top   # over the flood");
    // Rates over the flood alone: the samples also span the good host's ping around it.
    let talkers = top::talkers_over(&sources_before, &SourceSample::take(&maps)?, flood_seconds);
    for t in talkers.iter().take(3) {
        let note = if t.blocked { "  (blocked)" } else { "" };
        println!(
            "{:<24} {:>10} pps{note}",
            t.source,
            crate::stats::thousands(t.pps.round() as u64)
        );
    }

    step("xdpctl list   # the flooder was blocked automatically");
    let now = maps.now_ns()?;
    for entry in rules::list_prefixes(&maps, firewall::List::Block, now)? {
        println!(
            "{:<20} hits {:>10}  expires in {:>3.0}s  reason {}",
            entry.prefix.to_string(),
            crate::stats::thousands(entry.hits),
            entry.expires_in.unwrap_or(0.0),
            if entry.reason == firewall::REASON_RATELIMIT {
                "ratelimit"
            } else {
                "manual"
            }
        );
    }

    step(&format!("xdpctl stats {ifname}"));
    let report = stats::report(&before, &Sample::take(&stats_maps)?);
    print!("{}", stats::format_table(&ifname, &report));

    if !good.status.success() || !good_line.contains(" 40 received") {
        bail!("the good host lost traffic while the flooder was blocked: {good_line}");
    }
    let blocked = rules::list_prefixes(&maps, firewall::List::Block, now)?
        .iter()
        .any(|e| e.prefix.addr() == IpAddr::V4(lab.inner_ipv4()));
    if !blocked {
        bail!("the flooder was not auto-blocked");
    }
    println!("\nThe flooder was cut off at the driver; the good host got every reply.");
    step(&format!(
        "xdpctl unload --all && xdpctl testenv teardown --name {ifname}"
    ));
    Ok(())
}

/// UDP from the lab's first inside address to the outer one, as fast as one thread can.
fn flood(lab: &Lab, duration: Duration) -> Result<u64> {
    let netns = std::fs::File::open(lab.netns_path())?;
    let source = SocketAddr::from((lab.inner_ipv4(), 0));
    let target = SocketAddr::from((lab.outer_ipv4(), 9));
    std::thread::spawn(move || -> Result<u64> {
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let socket = UdpSocket::bind(source)?;
        let payload = [0x5au8; 18];
        let deadline = Instant::now() + duration;
        let mut sent = 0u64;
        while Instant::now() < deadline {
            for _ in 0..64 {
                if socket.send_to(&payload, target).is_ok() {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?
}

fn step(what: &str) {
    println!("\n==> {what}");
}
