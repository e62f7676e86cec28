//! `xdpctl graph`: the per-second history of an interface as an SVG or PNG graph.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::history::SecondsArg;
use super::parsers::interface_name;
use crate::{counters::history, output::graph, sys::privileges};

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The interface whose program's history to plot.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub seconds: SecondsArg,

    /// The file to write: .svg or .png.
    #[arg(short, long, value_name = "FILE.svg|FILE.png")]
    pub output: PathBuf,
}

pub fn run(args: &GraphArgs) -> Result<ExitCode> {
    // Check the file name before touching the kernel: a typo costs nothing.
    graph::Format::of_path(&args.output)?;
    privileges::require("graph")?;
    let map = history::history_of_interface(&args.interface)?;
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
