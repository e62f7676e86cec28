//! `xdpctl ratelimit set|off|show`: the per-source token bucket.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::parsers::{duration, prefix_limit, PrefixLimitArg};
use crate::firewall::prefix_limits::{PrefixLimits, DEFAULT_BLOCK_FOR_NS};
use crate::firewall::{FirewallMaps, RateLimit};
use crate::output::ratelimit::{describe, describe_prefixes, to_json};
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
        /// The packets per second a whole source prefix may send, host-wide: LEN=PPS for IPv4
        /// /8, /16, /24 and IPv6 /32, /48, /64 (e.g. /24=20000, /48=off), or `off`. Repeat it
        /// for several lengths. A spoofed flood spread over many sources, each under its own
        /// limit, trips its prefix. Default: /24 and /64 16 times --pps, /16 and /48 64
        /// times, /8 and /32 256 times. A limit is never below twice what one source may pass.
        #[arg(long, value_name = "LEN=PPS|off", value_parser = prefix_limit)]
        prefix_limit: Vec<PrefixLimitArg>,
        /// Block a prefix over its limit for this long (default 60s).
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        prefix_block_for: Option<std::time::Duration>,
    },
    /// Turn rate limiting off.
    Off,
    /// Show the rate limit.
    Show {
        #[arg(long)]
        json: bool,
    },
}

/// The prefix limits `set` asks for: the defaults for the per-source rate, changed by each
/// `--prefix-limit` in order.
fn prefix_limits_of(
    pps: u64,
    args: &[PrefixLimitArg],
    block_for: Option<std::time::Duration>,
) -> PrefixLimits {
    let mut limits = PrefixLimits::defaults(pps);
    for arg in args {
        match *arg {
            PrefixLimitArg::Off => limits.pps = [0; crate::firewall::model::hhh::LEVELS],
            PrefixLimitArg::Level { level, pps } => limits.pps[level] = pps,
        }
    }
    limits.block_for_ns = block_for.map_or(DEFAULT_BLOCK_FOR_NS, crate::input::duration_ns);
    limits
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
            prefix_limit,
            prefix_block_for,
        } => {
            let prefixes = prefix_limits_of(*pps, prefix_limit, *prefix_block_for);
            maps.set_rate_limit_and_prefixes(
                &RateLimit {
                    enabled: true,
                    pps: *pps,
                    burst: burst.unwrap_or(*pps),
                    block_for_ns: block_for.map(crate::input::duration_ns).unwrap_or(0),
                    proto: *proto,
                },
                &prefixes,
            )?;
            let config = maps.config()?;
            println!("Rate limit: {}", describe(&config));
            println!("Prefix limits: {}", describe_prefixes(&config));
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
                println!("Prefix limits: {}", describe_prefixes(&config));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
