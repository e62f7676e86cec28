//! `xdpctl unload`: detach xdpctl's programs and remove their pins.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::parsers::interface_name;
pub use crate::firewall::attachments::{unload, unload_everything};
use crate::sys::pins;
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct UnloadArgs {
    /// The interface to detach from.
    #[arg(required_unless_present = "all", conflicts_with = "all", value_parser = interface_name)]
    pub interface: Option<String>,

    /// Detach from every interface xdpctl has pins for.
    #[arg(short, long)]
    pub all: bool,
}

pub fn run(args: &UnloadArgs) -> Result<ExitCode> {
    privileges::require("unload")?;
    pins::ensure_bpffs()?;
    let Some(ifname) = &args.interface else {
        return unload_all();
    };
    println!("{}", unload(ifname)?);
    Ok(ExitCode::SUCCESS)
}

fn unload_all() -> Result<ExitCode> {
    let (messages, errors) = unload_everything();
    for message in &messages {
        println!("{message}");
    }
    for err in &errors {
        eprintln!("xdpctl: error: {err:#}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
