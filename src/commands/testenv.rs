//! `xdpctl testenv`: set up, use and tear down veth labs.

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::parsers::lab_name;
use crate::lab::testenv::{Lab, DEFAULT_NAME, INNER_IFNAME};
use crate::output;
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct TestenvArgs {
    #[command(subcommand)]
    pub command: TestenvCommand,
}

#[derive(Debug, Args)]
pub struct LabName {
    /// The lab's name: also the name of its outer interface and of its namespace.
    #[arg(short, long, default_value = DEFAULT_NAME, value_parser = lab_name)]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum TestenvCommand {
    /// Create a lab: a veth pair, the inner end in its own namespace, addresses and neighbours.
    Setup(LabName),
    /// Remove a lab and anything xdpctl attached to it.
    Teardown(LabName),
    /// Show the labs (or one), their addresses and what is attached.
    Status {
        /// Only this lab.
        #[arg(short, long, value_parser = lab_name)]
        name: Option<String>,
    },
    /// Run a command inside the lab's namespace (bpffs stays visible).
    Exec {
        #[command(flatten)]
        lab: LabName,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Start a shell inside the lab's namespace.
    Enter(LabName),
    /// Ping the outer interface from inside the lab, through whatever is attached to it.
    Ping {
        #[command(flatten)]
        lab: LabName,
        /// Number of echo requests.
        #[arg(short, long, default_value_t = 4)]
        count: u32,
        /// Ping over IPv6 instead of IPv4.
        #[arg(short = '6', long)]
        ipv6: bool,
    },
}

pub fn run(args: &TestenvArgs) -> Result<ExitCode> {
    privileges::require("testenv")?;
    match &args.command {
        TestenvCommand::Setup(lab) => {
            let lab = Lab::setup(&lab.name)?;
            println!("{}", describe(&lab));
            println!(
                "Try:  xdpctl load {0} --program xdp_pass && xdpctl testenv ping --name {0} && \
                 xdpctl stats {0} --count 1",
                lab.name
            );
            Ok(ExitCode::SUCCESS)
        }
        TestenvCommand::Teardown(lab) => {
            let found = Lab::list()?.into_iter().find(|l| l.name == lab.name);
            let lab = found.with_context(|| format!("no lab named '{}'", lab.name))?;
            lab.teardown()?;
            println!("Lab '{}' is gone.", lab.name);
            Ok(ExitCode::SUCCESS)
        }
        TestenvCommand::Status { name } => {
            let labs: Vec<Lab> = Lab::list()?
                .into_iter()
                .filter(|lab| name.as_ref().is_none_or(|n| *n == lab.name))
                .collect();
            if labs.is_empty() {
                println!("No labs. Create one with `xdpctl testenv setup`.");
            }
            for lab in labs {
                println!("{}", describe(&lab));
            }
            Ok(ExitCode::SUCCESS)
        }
        TestenvCommand::Exec { lab, command } => {
            let lab = Lab::open(&lab.name)?;
            let mut child = lab.command(&command[0])?;
            child.args(&command[1..]);
            wait(child, &command[0])
        }
        TestenvCommand::Enter(lab) => {
            let lab = Lab::open(&lab.name)?;
            let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
            let mut child = lab.command(&shell)?;
            child
                .env("XDPCTL_LAB", &lab.name)
                .env("PS1", format!("(lab {}) # ", lab.name));
            eprintln!("Inside lab '{}' ({INNER_IFNAME}); `exit` leaves.", lab.name);
            wait(child, &shell)
        }
        TestenvCommand::Ping { lab, count, ipv6 } => {
            let lab = Lab::open(&lab.name)?;
            wait(lab.ping_command(*count, *ipv6, 0.2)?, "ping")
        }
    }
}

fn describe(lab: &Lab) -> String {
    let alive = lab.is_alive();
    let attached = crate::sys::pins::attached_programs(Some(lab.outer_ifname()))
        .ok()
        .and_then(|rows| rows.into_iter().next());
    let xdp = attached.as_ref().map(super::status::attachment);
    output::testenv::describe(lab, alive, xdp.as_ref())
}

/// Runs a child to completion and passes its exit code on.
fn wait(mut child: Command, what: &str) -> Result<ExitCode> {
    let status = child
        .status()
        .with_context(|| format!("running {what} inside the lab"))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(code.clamp(0, 255) as u8),
        None => ExitCode::FAILURE,
    })
}
