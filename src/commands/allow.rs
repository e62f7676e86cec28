//! `xdpctl allow` and `xdpctl disallow`: sources that bypass every block and rate limit.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::block::PrefixInput;
use crate::firewall::rules;
use crate::firewall::{FirewallMaps, List};
use crate::output::numbers::counted;
use crate::sys::privileges;

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

pub fn allow(args: &AllowArgs) -> Result<ExitCode> {
    privileges::require("allow")?;
    if args.input.is_empty() {
        bail!("nothing to allow: give addresses or prefixes, or --file FILE");
    }
    let prefixes = crate::input::gather_prefixes(
        &args.input.targets,
        args.input.file.as_deref(),
        rules::entry_limit(),
    )?
    .prefixes;
    let maps = FirewallMaps::open_or_create()?;
    let report = rules::add_prefixes(
        &maps,
        List::Allow,
        &prefixes,
        0,
        crate::abi::FW_REASON_MANUAL,
    )?;
    println!(
        "Allowed {} ({} new, {} already there).",
        counted(report.added + report.updated, "prefix", "prefixes"),
        report.added,
        report.updated
    );
    super::note_if_firewall_not_loaded();
    Ok(ExitCode::SUCCESS)
}

pub fn disallow(args: &DisallowArgs) -> Result<ExitCode> {
    privileges::require("disallow")?;
    let maps = FirewallMaps::open_or_create()?;
    if args.all {
        let removed = rules::clear(&maps, List::Allow)?;
        println!(
            "Emptied the allowlist ({}).",
            counted(removed, "prefix", "prefixes")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.input.is_empty() {
        bail!("nothing to disallow: give addresses or prefixes, --file FILE, or --all");
    }
    let typed = crate::input::gather_prefixes(
        &args.input.targets,
        args.input.file.as_deref(),
        rules::entry_limit(),
    )?;
    let removed = rules::remove_typed(&maps, List::Allow, &typed)?;
    println!(
        "Removed {} from the allowlist.",
        counted(removed, "prefix", "prefixes")
    );
    Ok(ExitCode::SUCCESS)
}
