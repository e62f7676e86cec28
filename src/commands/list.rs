//! `xdpctl list`: every rule with its hit counter.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};

use crate::cli::ListArgs;
use crate::firewall::{FirewallMaps, List, REASON_RATELIMIT};
use crate::privileges;
use crate::rules::{self, PrefixEntry};

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
            "allow": allow.iter().map(|e| json!({"prefix": e.prefix.to_string(), "hits": e.hits})).collect::<Vec<_>>(),
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
            "{:<43} {:>14}  {:>9}  {}",
            entry.prefix.to_string(),
            crate::stats::thousands(entry.hits),
            expires,
            reason(entry)
        )?;
    }
    writeln!(out, "\n{:<43} {:>14}", "ALLOW", "HITS")?;
    for entry in &allow {
        writeln!(
            out,
            "{:<43} {:>14}",
            entry.prefix.to_string(),
            crate::stats::thousands(entry.hits)
        )?;
    }
    writeln!(out, "\n{:<43} {:>14}", "PORT", "HITS")?;
    for (port, hits) in &ports {
        writeln!(
            out,
            "{:<43} {:>14}",
            port.to_string(),
            crate::stats::thousands(*hits)
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
    if entry.reason == REASON_RATELIMIT {
        "ratelimit"
    } else {
        "manual"
    }
}

fn block_json(entry: &PrefixEntry) -> Value {
    json!({
        "prefix": entry.prefix.to_string(),
        "hits": entry.hits,
        "expires_in": entry.expires_in,
        "reason": reason(entry),
    })
}
