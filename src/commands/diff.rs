//! `xdpctl diff FILE`: what `apply FILE` would change, with diff(1)'s exit codes, so config
//! management can report drift.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::config::apply::prepare;
use crate::output::config::{text, to_json};
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The config file.
    #[arg(value_name = "FILE", default_value = crate::config::DEFAULT_PATH)]
    pub file: PathBuf,

    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit codes, as diff(1)'s.
const SAME: u8 = 0;
const DIFFERENT: u8 = 1;
const TROUBLE: u8 = 2;

pub fn run(args: &DiffArgs) -> Result<ExitCode> {
    report(&args.file, args.json)
}

/// Prints what applying `file` would change: exit 0 if nothing, 1 if something, 2 on trouble.
pub fn report(file: &Path, json: bool) -> Result<ExitCode> {
    let result = privileges::require("diff")
        .and_then(|()| crate::sys::pins::ensure_bpffs())
        .and_then(|()| prepare(file));
    let prepared = match result {
        Ok(prepared) => prepared,
        Err(err) => {
            eprintln!("xdpctl: error: {err:#}");
            return Ok(ExitCode::from(TROUBLE));
        }
    };
    let plan = &prepared.plan;
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json(plan))?);
    } else {
        print!("{}", text(plan));
    }
    Ok(ExitCode::from(if plan.is_empty() {
        SAME
    } else {
        DIFFERENT
    }))
}
