//! `xdpctl stats`: per-action counters and rates from the attached program's xdp_stats_map.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::parsers::{interface_name, positive_seconds};
use crate::counters::stats::{self, Sample, StatsMaps};
use crate::output;
use crate::sys::privileges;

/// How often and how many times to print stats.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Seconds between samples (fractions allowed).
    #[arg(short, long, default_value_t = 2.0, value_parser = positive_seconds)]
    pub interval: f64,

    /// Stop after this many samples (default: until Ctrl-C).
    #[arg(short, long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Print one JSON object per sample (NDJSON).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The interface whose program's xdp_stats_map to read.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(args: &StatsArgs) -> Result<ExitCode> {
    privileges::require("stats")?;
    let (maps, program) = stats::stats_maps_of_interface(&args.interface)?;
    let title = format!(
        "{} (program '{}', id {})",
        args.interface, program.name, program.id
    );
    print_samples(&maps, &args.interface, &title, &args.sampling)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a sample every interval until `count` samples, Ctrl-C or SIGTERM.
pub fn print_samples(
    maps: &StatsMaps,
    interface: &str,
    title: &str,
    sampling: &SamplingArgs,
) -> Result<()> {
    let interval = Duration::from_secs_f64(sampling.interval);
    let mut prev = Sample::take(maps)?;
    let mut printed = 0u64;
    while sampling.count.is_none_or(|count| printed < count) {
        if !super::sleep_unless_stopped(interval) {
            break;
        }
        let cur = Sample::take(maps)?;
        let report = stats::report(&prev, &cur);
        let mut out = std::io::stdout().lock();
        let written = if sampling.json {
            writeln!(out, "{}", output::stats::to_json(interface, &report))
        } else {
            writeln!(out, "{}", output::stats::format_table(title, &report))
        };
        // A closed pipe (`| head`) ends the output quietly.
        if written.and_then(|_| out.flush()).is_err() {
            break;
        }
        prev = cur;
        printed += 1;
    }
    Ok(())
}
