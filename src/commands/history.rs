//! `xdpctl history`: the completed seconds of the kernel's per-second history.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use libbpf_rs::MapHandle;

use crate::cli::HistoryArgs;
use crate::counters::stats;
use crate::{counters::history, output, sys::privileges};

pub fn run(args: &HistoryArgs) -> Result<ExitCode> {
    privileges::require("history")?;
    let map = history_map(&args.interface)?;
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

/// The history ring of the program on an interface, or an error that says why it has none.
pub fn history_map(ifname: &str) -> Result<MapHandle> {
    let (maps, program) = stats::stats_maps_of_interface(ifname)?;
    history::history_of(maps.history, ifname, &program.name)
}
