//! `xdpctl export`: the live state as a config file that `apply` takes, changing nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::{file, live, ProgramSpec};
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write the file here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &ExportArgs) -> Result<ExitCode> {
    privileges::require("export")?;
    crate::sys::pins::ensure_bpffs()?;
    let live = live::read(std::iter::empty())?;
    for (ifname, iface) in &live.state.interfaces {
        if let ProgramSpec::Object { program, .. } = &iface.program {
            eprintln!(
                "xdpctl: warning: {ifname} runs '{}' from an object file whose path xdpctl does \
                 not record: set `obj` for it in the exported file",
                program.as_deref().unwrap_or("?")
            );
        }
    }
    let text = file::render(&live.state);
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
