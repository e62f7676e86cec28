//! `xdpctl status`: which interfaces carry an XDP program, and whose it is.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::parsers::interface_name;
use crate::output::status::{format_table, to_json, Attachment};
use crate::sys::pins::{attached_programs, Row};
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this interface.
    #[arg(value_parser = interface_name)]
    pub interface: Option<String>,

    /// Print a JSON array of {interface, ifindex, program, id, mode, owner}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &StatusArgs) -> Result<ExitCode> {
    privileges::require("status")?;
    let found = attached_programs(args.interface.as_deref())?;
    let rows: Vec<Attachment> = found.iter().map(attachment).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&rows))?);
    } else if rows.is_empty() {
        match &args.interface {
            Some(ifname) => println!("{ifname}: no XDP program"),
            None => println!("No interface has an XDP program."),
        }
    } else {
        print!("{}", format_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// A row read in sys::pins, as output::status renders it.
pub fn attachment(row: &Row) -> Attachment<'_> {
    Attachment {
        interface: &row.interface,
        ifindex: row.ifindex,
        program: &row.program,
        id: row.id,
        mode: &row.mode,
        owner: &row.owner,
    }
}
