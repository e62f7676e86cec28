//! `xdpctl demo`: the five-minute tour, run for you in a throwaway lab that is removed at the end
//! whatever happens.

use std::process::{ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::attach::RequestedMode;
use crate::commands::{load, unload};
use crate::privileges;
use crate::programs::{self, Source};
use crate::stats::{self, Sample};
use crate::testenv::{unique_name, LabGuard};

pub fn run() -> Result<ExitCode> {
    privileges::require("demo")?;
    let started = Instant::now();
    let lab = LabGuard::setup(&unique_name("demo"))?;
    let ifname = lab.outer_ifname().to_owned();
    step(&format!(
        "A lab: {ifname} ({}) here, veth0 ({}) in namespace {ifname}",
        lab.outer_ipv4(),
        lab.inner_ipv4()
    ));

    let pass = Source::Builtin(programs::builtin("xdp_pass").expect("built in"));
    step(&format!("xdpctl load {ifname} --program xdp_pass"));
    println!(
        "{}",
        load::load(
            &ifname,
            &pass,
            RequestedMode::Native,
            false,
            Default::default()
        )?
    );
    let (map, program) = stats::stats_map_of_interface(&ifname)?;
    let maps = stats::StatsMaps {
        actions: map,
        firewall: stats::fw_stats_map_of_program(program.id)?,
    };
    let before = Sample::take(&maps)?;

    step(&format!(
        "xdpctl testenv ping --name {ifname} --count 5   (through xdp_pass)"
    ));
    let ok = lab
        .ping_command(5, false, 0.2)?
        .stdout(Stdio::null())
        .status()?
        .success();
    println!(
        "ping: {}",
        if ok { "all replies received" } else { "FAILED" }
    );
    if !ok {
        bail!("ping through xdp_pass failed: the lab or the kernel is not working as expected");
    }
    show_stats(&ifname, &maps, &before)?;

    let drop = Source::Builtin(programs::builtin("xdp_drop").expect("built in"));
    step(&format!(
        "xdpctl load {ifname} --program xdp_drop --force   (atomic replace)"
    ));
    println!(
        "{}",
        load::load(
            &ifname,
            &drop,
            RequestedMode::Native,
            true,
            Default::default()
        )?
    );
    step(&format!(
        "xdpctl testenv ping --name {ifname} --count 3   (through xdp_drop)"
    ));
    let ok = lab
        .ping_command(3, false, 0.2)?
        .stdout(Stdio::null())
        .status()?
        .success();
    println!(
        "ping: {}",
        if ok {
            "replies received (unexpected!)"
        } else {
            "no replies: dropped at XDP"
        }
    );
    show_stats(&ifname, &maps, &before)?;

    step(&format!("xdpctl unload {ifname}"));
    println!("{}", unload::unload(&ifname)?);
    step(&format!("xdpctl testenv teardown --name {ifname}"));
    drop_lab(lab);
    println!(
        "\nDone in {:.1} s; nothing is left behind.",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn step(what: &str) {
    println!("\n==> {what}");
}

fn show_stats(ifname: &str, maps: &stats::StatsMaps, since: &Sample) -> Result<()> {
    step(&format!("xdpctl stats {ifname}"));
    let report = stats::report(since, &Sample::take(maps)?);
    print!("{}", stats::format_table(ifname, &report));
    Ok(())
}

fn drop_lab(lab: LabGuard) {
    let name = lab.name.clone();
    drop(lab);
    println!("Lab '{name}' is gone.");
}
