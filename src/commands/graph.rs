//! `xdpctl graph`: the per-second history of an interface as an SVG or PNG graph.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::GraphArgs;
use crate::{counters::history, output::graph, sys::privileges};

pub fn run(args: &GraphArgs) -> Result<ExitCode> {
    // Check the file name before touching the kernel: a typo costs nothing.
    graph::Format::of_path(&args.output)?;
    privileges::require("graph")?;
    let map = super::history::history_map(&args.interface)?;
    let seconds = history::read_completed(&map, args.seconds.seconds)?;
    graph::write(&args.output, &args.interface, &seconds)?;
    eprintln!(
        "xdpctl: wrote {} ({} seconds of {})",
        args.output.display(),
        seconds.len(),
        args.interface
    );
    Ok(ExitCode::SUCCESS)
}
