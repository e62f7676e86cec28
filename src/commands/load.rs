//! `xdpctl load`: load a program and attach it through a pinned bpf_link.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::parsers::interface_name;
pub use crate::firewall::attachments::load;
use crate::firewall::Sizes;
use crate::sys::attach::RequestedMode;
use crate::sys::privileges;
use crate::sys::programs::Source;

/// Which program to load, and how.
#[derive(Debug, Args)]
pub struct ProgramArgs {
    /// The program: a built-in (xdp_pass, xdp_drop, xdp_abort), or a function in --obj.
    #[arg(short, long, value_name = "NAME")]
    pub program: Option<String>,

    /// Load your own compiled BPF object instead of a built-in program.
    #[arg(long, value_name = "FILE.o")]
    pub obj: Option<PathBuf>,

    /// native: in the driver; generic: in the stack (any interface); auto: native, else generic.
    #[arg(short, long, value_enum, default_value_t = RequestedMode::Native)]
    pub mode: RequestedMode,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The interface to attach to.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub program: ProgramArgs,

    /// Replace a program that is already attached (xdpctl's own is replaced atomically).
    #[arg(short, long)]
    pub force: bool,

    /// Entries per rule map when the firewall's maps are first created (1..=1073741824, and
    /// what fits in a quarter of the memory; default 1048576).
    #[arg(long, value_name = "N")]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=crate::firewall::map_budget::MAX_RULES as i64))]
    pub max_rules: Option<u32>,

    /// Sources the rate limiter tracks when its map is first created (1..=2147483648, and what
    /// fits in a quarter of the memory; default 262144).
    #[arg(long, value_name = "N")]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=crate::firewall::map_budget::MAX_SOURCES as i64))]
    pub max_sources: Option<u32>,
}

pub fn run(args: &LoadArgs) -> Result<ExitCode> {
    privileges::require("load")?;
    let source = Source::from_args(args.program.program.as_deref(), args.program.obj.as_deref())?;
    let sizes = Sizes {
        max_rules: args.max_rules,
        max_sources: args.max_sources,
    };
    let message = load(
        &args.interface,
        &source,
        args.program.mode,
        args.force,
        sizes,
        &crate::counters::COUNTER_MAPS,
    )?;
    println!("{message}");
    Ok(ExitCode::SUCCESS)
}
