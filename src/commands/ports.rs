//! `xdpctl ports`: packets per destination port, from the firewall's per-CPU port counters.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::parsers::interface_name;
use crate::{counters::ports, counters::stats, output, sys::privileges};

#[derive(Debug, Args)]
pub struct PortsArgs {
    /// The interface whose firewall's port counters to read.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    /// Only this protocol.
    #[arg(long, value_enum)]
    pub proto: Option<crate::input::PortProto>,

    /// How many ports to show, busiest first.
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub top: u64,

    /// Print a JSON array of {"port", "proto", "packets"}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &PortsArgs) -> Result<ExitCode> {
    privileges::require("ports")?;
    let (maps, program) = stats::stats_maps_of_interface(&args.interface)?;
    let map = maps.port_counts.with_context(|| {
        format!(
            "the program on {} ('{}') keeps no port counters: the firewall does (`xdpctl load {} \
             --force`)",
            args.interface, program.name, args.interface
        )
    })?;
    let ranking = ports::rank(ports::read(&map)?, args.proto, args.top as usize);
    let text = if args.json {
        format!("{}\n", output::ports::to_json(&ranking.ports))
    } else {
        output::ports::format_table(&ranking)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(ExitCode::SUCCESS)
}
