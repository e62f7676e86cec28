//! `xdpctl list`: every rule with its hit counter.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::firewall::rules::{self, PrefixEntry};
use crate::firewall::{FirewallMaps, List};
use crate::input;
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print {"block", "allow", "ports", "ratelimit"} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ListArgs) -> Result<ExitCode> {
    privileges::require("list")?;
    let maps = FirewallMaps::open_or_create()?;
    let now = maps.now_ns()?;
    let block = rules::list_prefixes(&maps, List::Block, now)?;
    let allow = rules::list_prefixes(&maps, List::Allow, now)?;
    let ports = rules::list_ports(&maps)?;
    let ratelimit = super::ratelimit::to_json(&maps.config()?);
    let mut out = BufWriter::new(std::io::stdout().lock());
    if args.json {
        let value = json!({
            "block": block.iter().map(block_json).collect::<Vec<_>>(),
            "allow": allow.iter().map(allow_json).collect::<Vec<_>>(),
            "ports": ports.iter().map(|(p, hits)| json!({"port": p.port, "proto": p.proto.as_str(), "hits": hits})).collect::<Vec<_>>(),
            "ratelimit": ratelimit,
        });
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<43} {:>14}  {:>9}  REASON",
        "BLOCK", "HITS", "EXPIRES"
    )?;
    for entry in &block {
        let expires = entry
            .expires_in
            .map(|s| format!("{:.0}s", s.ceil()))
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<43} {:>14}  {:>9}  {}{}",
            entry.prefix.to_string(),
            crate::output::numbers::thousands(entry.hits),
            expires,
            reason(entry),
            mapped_note(entry, "unblock").map_or(String::new(), |n| format!("; {n}"))
        )?;
    }
    writeln!(out, "\n{:<43} {:>14}", "ALLOW", "HITS")?;
    for entry in &allow {
        writeln!(
            out,
            "{:<43} {:>14}{}",
            entry.prefix.to_string(),
            crate::output::numbers::thousands(entry.hits),
            mapped_note(entry, "disallow").map_or(String::new(), |n| format!("  {n}"))
        )?;
    }
    writeln!(out, "\n{:<43} {:>14}", "PORT", "HITS")?;
    for (port, hits) in &ports {
        writeln!(
            out,
            "{:<43} {:>14}",
            port.to_string(),
            crate::output::numbers::thousands(*hits)
        )?;
    }
    writeln!(
        out,
        "\nRATELIMIT  {}",
        super::ratelimit::describe(&maps.config()?)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn reason(entry: &PrefixEntry) -> &'static str {
    if entry.reason == crate::abi::FW_REASON_RATELIMIT {
        "ratelimit"
    } else {
        "manual"
    }
}

/// The mark of a rule an older version made of an IPv4-mapped entry (an IPv6 prefix within
/// ::ffff:0:0/96), which never matches: IPv4 traffic carries IPv4 headers. `remove` is the
/// command that removes it by the name it was typed with.
fn mapped_note(entry: &PrefixEntry, remove: &str) -> Option<String> {
    input::is_mapped_rule(&entry.prefix).then(|| format!("IPv4-mapped: never matches; {remove} it"))
}

fn block_json(entry: &PrefixEntry) -> Value {
    let mut value = json!({
        "prefix": entry.prefix.to_string(),
        "hits": entry.hits,
        "expires_in": entry.expires_in,
        "reason": reason(entry),
    });
    if let Some(note) = mapped_note(entry, "unblock") {
        value["note"] = note.into();
    }
    value
}

fn allow_json(entry: &PrefixEntry) -> Value {
    let mut value = json!({"prefix": entry.prefix.to_string(), "hits": entry.hits});
    if let Some(note) = mapped_note(entry, "disallow") {
        value["note"] = note.into();
    }
    value
}
