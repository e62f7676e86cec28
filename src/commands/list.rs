//! `xdpctl list`: every rule with its hit counter.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::firewall::rules;
use crate::firewall::{FirewallMaps, List};
use crate::output;
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print {"block", "allow", "ports", "ratelimit"} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ListArgs) -> Result<ExitCode> {
    privileges::require("list")?;
    let maps = FirewallMaps::open_or_create()?;
    let now = maps.now_ns()?;
    let block = rules::list_prefixes(&maps, List::Block, now)?;
    let allow = rules::list_prefixes(&maps, List::Allow, now)?;
    let ports = rules::list_ports(&maps)?;
    let config = maps.config()?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if args.json {
        let value = output::rules::to_json(&block, &allow, &ports, &config);
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        out.write_all(output::rules::format_table(&block, &allow, &ports, &config).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
