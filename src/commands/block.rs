//! `xdpctl block` and `xdpctl unblock`: the blocklist (sources) and port rules.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use ipnet::IpNet;

use super::parsers::duration;
use crate::firewall::rules;
use crate::firewall::{FirewallMaps, List};
use crate::input;
use crate::input::PortSpec;
use crate::output::numbers::counted;
use crate::sys::privileges;

/// Addresses and prefixes, from the command line and/or a file.
#[derive(Debug, Args)]
pub struct PrefixInput {
    /// IPv4/IPv6 addresses or CIDR prefixes, e.g. 203.0.113.7 198.51.100.0/24 2001:db8::/32.
    #[arg(value_name = "ADDR|CIDR")]
    pub targets: Vec<String>,

    /// Read more from a file (one a line, # comments), or from stdin with '-'.
    #[arg(long, value_name = "FILE|-")]
    pub file: Option<PathBuf>,
}

impl PrefixInput {
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.file.is_none()
    }
}

#[derive(Debug, Args)]
pub struct BlockArgs {
    #[command(flatten)]
    pub input: PrefixInput,

    /// Block a destination port, e.g. 53/udp or 22/tcp (repeatable).
    #[arg(long, value_name = "PORT/PROTO")]
    pub port: Vec<String>,

    /// Let the address blocks expire after this long, e.g. 90s, 10m, 1h30m, 1d (at most 3650d).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub ttl: Option<std::time::Duration>,

    /// Block a prefix shorter than /8 (IPv4) or /16 (IPv6) too: such a prefix blocks a large
    /// part of the Internet (0.0.0.0/0 and ::/0 all of it), so it is refused without this.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct UnblockArgs {
    #[command(flatten)]
    pub input: PrefixInput,

    /// Unblock a destination port, e.g. 53/udp (repeatable).
    #[arg(long, value_name = "PORT/PROTO")]
    pub port: Vec<String>,

    /// Remove every block: addresses, prefixes and ports.
    #[arg(long, conflicts_with_all = ["targets", "file", "port"])]
    pub all: bool,
}

pub fn block(args: &BlockArgs) -> Result<ExitCode> {
    privileges::require("block")?;
    if args.input.is_empty() && args.port.is_empty() {
        bail!("nothing to block: give addresses or prefixes, --file FILE, or --port PORT/PROTO");
    }
    let prefixes = input::gather_prefixes(
        &args.input.targets,
        args.input.file.as_deref(),
        rules::entry_limit(),
    )?
    .prefixes;
    let ports = parse_ports(&args.port)?;
    if args.ttl.is_some() && prefixes.is_empty() {
        bail!("--ttl applies to address blocks, and this command blocks none");
    }
    if !args.force {
        refuse_broad(&prefixes)?;
    }
    let maps = FirewallMaps::open_or_create()?;
    let now = maps.now_ns()?;
    let expires = args
        .ttl
        .map(|ttl| now.saturating_add(input::duration_ns(ttl)))
        .unwrap_or(0);
    if !prefixes.is_empty() {
        let report = rules::add_prefixes(
            &maps,
            List::Block,
            &prefixes,
            expires,
            crate::abi::FW_REASON_MANUAL,
        )?;
        let ttl = args
            .ttl
            .map(|t| format!(" for {}s", t.as_secs()))
            .unwrap_or_default();
        // Counted once each: an entry given twice (or as 192.0.2.1 and ::ffff:192.0.2.1) is one.
        println!(
            "Blocked {}{ttl} ({} new, {} refreshed).",
            counted(report.added + report.updated, "prefix", "prefixes"),
            report.added,
            report.updated
        );
    }
    if !ports.is_empty() {
        rules::set_ports(&maps, &ports, true)?;
        println!("Blocked destination port {}.", join(&ports));
    }
    super::note_if_firewall_not_loaded();
    Ok(ExitCode::SUCCESS)
}

pub fn unblock(args: &UnblockArgs) -> Result<ExitCode> {
    privileges::require("unblock")?;
    let maps = FirewallMaps::open_or_create()?;
    if args.all {
        let prefixes = rules::clear(&maps, List::Block)?;
        let ports = rules::clear_ports(&maps)?;
        println!(
            "Removed every block: {}, {}.",
            counted(prefixes, "prefix", "prefixes"),
            counted(ports, "port", "ports")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.input.is_empty() && args.port.is_empty() {
        bail!("nothing to unblock: give addresses or prefixes, --file FILE, --port PORT/PROTO, or --all");
    }
    let typed = input::gather_prefixes(
        &args.input.targets,
        args.input.file.as_deref(),
        rules::entry_limit(),
    )?;
    let ports = parse_ports(&args.port)?;
    // Check both kinds before removing either, so a mistake in one leaves everything as it was.
    let not_blocked = rules::ports_not_blocked(&maps, &ports)?;
    if !not_blocked.is_empty() {
        bail!(
            "not blocked: port {}; nothing was removed",
            join(&not_blocked)
        );
    }
    if !typed.prefixes.is_empty() {
        let removed = rules::remove_typed(&maps, List::Block, &typed)?;
        println!("Unblocked {}.", counted(removed, "prefix", "prefixes"));
    }
    if !ports.is_empty() {
        rules::set_ports(&maps, &ports, false)?;
        println!("Unblocked destination port {}.", join(&ports));
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses prefixes that block a large part of the Internet (0.0.0.0/0 and ::/0: all of it),
/// unless --force says they are meant.
fn refuse_broad(prefixes: &[IpNet]) -> Result<()> {
    let broad: Vec<&IpNet> = prefixes.iter().filter(|p| input::is_broad(p)).collect();
    if broad.is_empty() {
        return Ok(());
    }
    let mut said: Vec<String> = broad
        .iter()
        .take(5)
        .map(|prefix| {
            let family = if prefix.addr().is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            };
            let share = input::share_of_addresses(prefix.prefix_len());
            format!("{prefix} would block {share} {family} sources")
        })
        .collect();
    if broad.len() > 5 {
        said.push(format!("and {} more such prefixes", broad.len() - 5));
    }
    bail!(
        "{}: a prefix shorter than /{} (IPv4) or /{} (IPv6) needs --force; nothing was applied",
        said.join("; "),
        input::BROAD_V4,
        input::BROAD_V6,
    )
}

fn parse_ports(texts: &[String]) -> Result<Vec<PortSpec>> {
    let (ok, bad): (Vec<_>, Vec<_>) = texts
        .iter()
        .map(|t| input::parse_port(t))
        .partition(Result::is_ok);
    if !bad.is_empty() {
        let errors: Vec<String> = bad.into_iter().filter_map(Result::err).collect();
        bail!("bad --port; nothing was applied:\n{}", errors.join("\n"));
    }
    Ok(ok.into_iter().filter_map(Result::ok).collect())
}

fn join(ports: &[PortSpec]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
