//! `xdpctl history`: the completed seconds of the kernel's per-second history.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::parsers::interface_name;
use crate::{counters::history, output, sys::privileges};

/// The seconds of history to show.
#[derive(Debug, Args)]
pub struct SecondsArg {
    /// How many of the last completed seconds (up to 510: the kernel's ring has 512 slots).
    #[arg(short, long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=510))]
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The interface whose program's history to read (any built-in program keeps one).
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub seconds: SecondsArg,

    /// Print a JSON array of {"time", "received", "passed", "dropped", "drops": {...}, "bytes",
    /// ...}, time in Unix seconds.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,

    /// Print CSV with a header line.
    #[arg(long)]
    pub csv: bool,
}

pub fn run(args: &HistoryArgs) -> Result<ExitCode> {
    privileges::require("history")?;
    let map = history::history_of_interface(&args.interface)?;
    let seconds = history::read_completed(&map, args.seconds.seconds)?;
    let text = if args.json {
        format!("{}\n", output::history::to_json(&seconds))
    } else if args.csv {
        output::history::to_csv(&seconds)
    } else {
        output::history::format_table(&seconds)
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) ends the output quietly.
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(ExitCode::SUCCESS)
}
