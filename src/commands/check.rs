//! `xdpctl check FILE`: the file checked in full, and its programs loaded through the verifier,
//! with nothing attached, pinned or written.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::config::apply::source_of;
use crate::config::file;
use crate::firewall::load::verify_program;
use crate::output::numbers::counted;
use crate::sys::{attach, privileges};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file.
    #[arg(value_name = "FILE", default_value = crate::config::DEFAULT_PATH)]
    pub file: PathBuf,
}

pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    privileges::require("check")?;
    let state = file::read(&args.file, crate::firewall::rules::entry_limit())?;
    let missing: Vec<&String> = state
        .interfaces
        .keys()
        .filter(|ifname| attach::ifindex(ifname).is_err())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} names interfaces this host lacks: {} (`ip link` lists those it has)",
            args.file.display(),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut verified = Vec::new();
    for (ifname, iface) in &state.interfaces {
        if verified.contains(&iface.program) {
            continue;
        }
        verify_program(&source_of(&iface.program)?)
            .with_context(|| format!("{}: the program of {ifname}", args.file.display()))?;
        verified.push(iface.program.clone());
    }
    println!(
        "{}: valid; {}, {} blocked, {} allowed, {}, rate limit {}; {} passed the verifier",
        args.file.display(),
        counted(state.interfaces.len(), "interface", "interfaces"),
        counted(state.block.len(), "prefix", "prefixes"),
        counted(state.allow.len(), "prefix", "prefixes"),
        counted(state.ports.len(), "port rule", "port rules"),
        if state.limits.is_some() { "on" } else { "off" },
        counted(verified.len(), "program", "programs"),
    );
    Ok(ExitCode::SUCCESS)
}
