//! `xdpctl run`: the foreground mode. Attach without a pin, print stats until Ctrl-C or
//! SIGTERM, then detach. Even if xdpctl is killed outright, the kernel detaches the program when
//! the link's last fd closes, so nothing is left behind.

use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use super::load::ProgramArgs;
use super::parsers::interface_name;
use super::stats::SamplingArgs;
use crate::counters::stats;
use crate::firewall::load::load_program;
use crate::sys::attach;
use crate::sys::pins::{self, RunRecord};
use crate::sys::privileges;
use crate::sys::programs::Source;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The interface to attach to while running.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub program: ProgramArgs,

    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Detaches and forgets the run record however `run` ends.
struct Attached {
    ifname: String,
    link: OwnedFd,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Err(err) = attach::detach_link(self.link.as_fd()) {
            eprintln!(
                "xdpctl: detaching from {}: {}",
                self.ifname,
                attach::link_error(&err)
            );
        }
        pins::remove_run_record(&self.ifname);
    }
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    privileges::require("run")?;
    let ifname = args.interface.as_str();
    let source = Source::from_args(args.program.program.as_deref(), args.program.obj.as_deref())?;
    let ifindex = attach::ifindex(ifname)?;
    if let Some(current) = attach::query(ifindex)?.first() {
        bail!(
            "{ifname} already has an XDP program (id {}, {} mode): `xdpctl run` needs an \
             interface without one (see `xdpctl status {ifname}`)",
            current.prog_id,
            current.mode
        );
    }
    // Catch Ctrl-C from here on, so it ends the loop below instead of killing us mid-attach.
    super::stop_requested();
    let loaded = load_program(&source, None, Default::default())?;
    let (link, mode) = attach::attach(loaded.fd(), ifindex, ifname, args.program.mode)?;
    let link_id = attach::link_summary(link.as_fd())?.id;
    let attached = Attached {
        ifname: ifname.to_owned(),
        link,
    };
    pins::write_run_record(
        ifname,
        &RunRecord {
            pid: std::process::id(),
            link_id,
            pin_root: Some(pins::root()),
        },
    )?;
    let prog_id = loaded.id()?;
    eprintln!(
        "Attached {} to {ifname} in {mode} mode (program id {prog_id}, link id {link_id}); \
         Ctrl-C detaches it.",
        loaded.name()
    );
    match stats::StatsMaps::of_program(&crate::sys::attach::program_summary(prog_id)?) {
        Some(maps) => {
            let title = format!("{ifname} (program '{}', id {prog_id})", loaded.name());
            super::stats::print_samples(&maps, ifname, &title, &args.sampling)?;
        }
        None => {
            eprintln!("{} has no xdp_stats_map: no stats to show.", loaded.name());
            while super::sleep_unless_stopped(std::time::Duration::from_secs(3600)) {}
        }
    }
    drop(attached);
    eprintln!("Detached {} from {ifname}.", loaded.name());
    Ok(ExitCode::SUCCESS)
}
