//! `xdpctl block` and `xdpctl unblock`: the blocklist (sources) and port rules.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{BlockArgs, UnblockArgs};
use crate::firewall::{FirewallMaps, List, REASON_MANUAL};
use crate::privileges;
use crate::rules::{self, PortSpec};

pub fn block(args: &BlockArgs) -> Result<ExitCode> {
    privileges::require("block")?;
    if args.input.is_empty() && args.port.is_empty() {
        bail!("nothing to block: give addresses or prefixes, --file FILE, or --port PORT/PROTO");
    }
    let prefixes = rules::gather_prefixes(&args.input.targets, args.input.file.as_deref())?;
    let ports = parse_ports(&args.port)?;
    if args.ttl.is_some() && prefixes.is_empty() {
        bail!("--ttl applies to address blocks, and this command blocks none");
    }
    let maps = FirewallMaps::open_or_create()?;
    let now = maps.now_ns()?;
    let expires = args
        .ttl
        .map(|ttl| now.saturating_add(ttl.as_nanos() as u64))
        .unwrap_or(0);
    if !prefixes.is_empty() {
        let report = rules::add_prefixes(&maps, List::Block, &prefixes, expires, REASON_MANUAL)?;
        let ttl = args
            .ttl
            .map(|t| format!(" for {}s", t.as_secs()))
            .unwrap_or_default();
        println!(
            "Blocked {} prefix{}{ttl} ({} new, {} refreshed).",
            prefixes.len(),
            if prefixes.len() == 1 { "" } else { "es" },
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
        println!("Removed every block: {prefixes} prefixes, {ports} ports.");
        return Ok(ExitCode::SUCCESS);
    }
    if args.input.is_empty() && args.port.is_empty() {
        bail!("nothing to unblock: give addresses or prefixes, --file FILE, --port PORT/PROTO, or --all");
    }
    let prefixes = rules::gather_prefixes(&args.input.targets, args.input.file.as_deref())?;
    let ports = parse_ports(&args.port)?;
    // Check both kinds before removing either, so a mistake in one leaves everything as it was.
    let not_blocked = rules::ports_not_blocked(&maps, &ports)?;
    if !not_blocked.is_empty() {
        bail!(
            "not blocked: port {}; nothing was removed",
            join(&not_blocked)
        );
    }
    if !prefixes.is_empty() {
        let removed = rules::remove_prefixes(&maps, List::Block, &prefixes)?;
        println!(
            "Unblocked {removed} prefix{}.",
            if removed == 1 { "" } else { "es" }
        );
    }
    if !ports.is_empty() {
        rules::set_ports(&maps, &ports, false)?;
        println!("Unblocked destination port {}.", join(&ports));
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_ports(texts: &[String]) -> Result<Vec<PortSpec>> {
    let (ok, bad): (Vec<_>, Vec<_>) = texts
        .iter()
        .map(|t| rules::parse_port(t))
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
