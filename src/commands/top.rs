//! `xdpctl top`: the busiest sources right now, from the firewall's per-source table, and the
//! heavy source prefixes, from the prefix limits' counts.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::parsers::{interface_name, positive_seconds};
use crate::firewall::prefix_limits;
use crate::firewall::talkers::{self, SourceSample};
use crate::firewall::FirewallMaps;
use crate::output;
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Only check that this interface runs the firewall (the source table is shared by all).
    #[arg(value_parser = interface_name)]
    pub interface: Option<String>,

    /// How many sources to show.
    #[arg(short = 'n', long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,

    /// Seconds to measure over.
    #[arg(short, long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub interval: f64,

    /// Print JSON: {"interval", "by_pps": [...], "by_bytes": [...], "heavy_prefixes": [...]}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &TopArgs) -> Result<ExitCode> {
    privileges::require("top")?;
    // With an interface: the maps its firewall really uses (as `watch` reads them), whatever pin
    // root loaded it. Without: this instance's pinned maps.
    let maps = match &args.interface {
        Some(ifname) => {
            let (_, program) = crate::counters::stats::stats_maps_of_interface(ifname)?;
            match FirewallMaps::of_program(&program) {
                Some(maps) => maps,
                None => bail!(
                    "{ifname} does not run the firewall ('{}' is attached): `xdpctl load {ifname}` \
                     first",
                    program.name
                ),
            }
        }
        None => FirewallMaps::open_or_create()?,
    };
    let before = SourceSample::take(&maps)?;
    if !super::sleep_unless_stopped(Duration::from_secs_f64(args.interval)) {
        return Ok(ExitCode::SUCCESS);
    }
    let after = SourceSample::take(&maps)?;
    let ranking = talkers::rank(&before, &after, args.count as usize);
    let heavy = prefix_limits::heavy_prefixes(&maps, maps.now_ns()?)?;
    if args.json {
        let mut value = output::talkers::to_json(args.interval, &ranking);
        value["heavy_prefixes"] = output::prefixes::to_json(&heavy);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", output::talkers::format_table(&ranking));
        print!(
            "\n{}",
            output::prefixes::format_table(&heavy, args.count as usize)
        );
    }
    Ok(ExitCode::SUCCESS)
}
