//! `xdpctl apply FILE`: make the live state match a config file, all or nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::config::apply::{apply, prepare};
use crate::output::config::text;
use crate::output::numbers::counted;
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The config file.
    #[arg(value_name = "FILE", default_value = crate::config::DEFAULT_PATH)]
    pub file: PathBuf,

    /// Print what would change and change nothing; the exit code is 0 if nothing would, 1 if
    /// something would, 2 on trouble (as `xdpctl diff`).
    #[arg(long, short = 'n')]
    pub dry_run: bool,

    /// With --dry-run: print the changes as JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

pub fn run(args: &ApplyArgs) -> Result<ExitCode> {
    if args.dry_run {
        return super::diff::report(&args.file, args.json);
    }
    privileges::require("apply")?;
    crate::sys::pins::ensure_bpffs()?;
    let prepared = prepare(&args.file)?;
    if prepared.plan.is_empty() {
        println!(
            "{}: nothing to change{}",
            args.file.display(),
            kept_note(prepared.plan.kept.len())
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", text(&prepared.plan));
    let done = apply(&prepared)?;
    println!(
        "Applied {}: {} made.",
        args.file.display(),
        counted(done.len(), "change", "changes")
    );
    Ok(ExitCode::SUCCESS)
}

fn kept_note(kept: usize) -> String {
    match kept {
        0 => String::new(),
        n => format!(" ({} kept)", counted(n, "dynamic rule", "dynamic rules")),
    }
}
