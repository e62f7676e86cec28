//! `xdpctl ratelimit set|off|show`: the per-source token bucket.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::parsers::duration;
use crate::firewall::{FirewallMaps, RateLimit};
use crate::output::ratelimit::{describe, to_json};
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct RatelimitArgs {
    #[command(subcommand)]
    pub command: RatelimitCommand,
}

#[derive(Debug, Subcommand)]
pub enum RatelimitCommand {
    /// Limit every source to N packets per second (each source has its own token bucket).
    Set {
        /// Packets per second each source may send.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        pps: u64,
        /// Packets a source may send at once after being quiet (default: one second's worth).
        /// A source new to the table also gets its first packet, which is only noted.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        burst: Option<u64>,
        /// Also block a source that goes over the limit, for this long (e.g. 60s, 10m; at most
        /// 3650d).
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        block_for: Option<std::time::Duration>,
        /// Which packets count.
        #[arg(long, value_enum, default_value_t = crate::firewall::RateLimitProto::All)]
        proto: crate::firewall::RateLimitProto,
    },
    /// Turn rate limiting off.
    Off,
    /// Show the rate limit.
    Show {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: &RatelimitArgs) -> Result<ExitCode> {
    privileges::require("ratelimit")?;
    let maps = FirewallMaps::open_or_create()?;
    match &args.command {
        RatelimitCommand::Set {
            pps,
            burst,
            block_for,
            proto,
        } => {
            maps.set_rate_limit(&RateLimit {
                enabled: true,
                pps: *pps,
                burst: burst.unwrap_or(*pps),
                block_for_ns: block_for.map(crate::input::duration_ns).unwrap_or(0),
                proto: *proto,
            })?;
            println!("Rate limit: {}", describe(&maps.config()?));
            super::note_if_firewall_not_loaded();
        }
        RatelimitCommand::Off => {
            let rl = maps.rate_limit()?;
            maps.set_rate_limit(&RateLimit {
                enabled: false,
                ..rl
            })?;
            println!("Rate limit: off");
        }
        RatelimitCommand::Show { json } => {
            let config = maps.config()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&to_json(&config))?);
            } else {
                println!("Rate limit: {}", describe(&config));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
