//! `xdpctl flood`: a flood out of a veth, for testing mitigations in a lab.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::cli::FloodArgs;
use crate::lab::flood::{self, Plan, Until};
use crate::output::numbers::thousands;
use crate::sys::privileges;

pub fn run(args: &FloodArgs) -> Result<ExitCode> {
    privileges::require("flood")?;
    flood::require_veth(&args.interface)?;
    let ifindex = crate::sys::attach::ifindex(&args.interface)?;
    let (source, destination, source_mac, destination_mac) =
        flood::resolve(&args.interface, args.src, args.dst, args.dst_mac)?;
    let plan = Plan {
        ifname: args.interface.clone(),
        ifindex,
        proto: args.proto,
        source,
        destination,
        source_mac,
        destination_mac,
        size: args.size,
        pps: if args.max {
            None
        } else {
            Some(args.pps.unwrap_or(100_000))
        },
        until: match args.count {
            Some(count) => Until::Count(count),
            None => Until::Duration(Duration::from_secs_f64(args.duration.unwrap_or(5.0))),
        },
    };
    let report = flood::run(&plan, super::stop_requested())?;
    let random = source.prefix_len() < source.max_prefix_len();
    if args.json {
        let value = json!({
            "interface": plan.ifname,
            "packets": report.packets,
            "bytes": report.bytes,
            "refused": report.refused,
            "seconds": report.seconds,
            "pps": report.pps(),
            "proto": format!("{:?}", plan.proto).to_lowercase(),
            "size": plan.size,
            "src": source.to_string(),
            "dst": destination.to_string(),
        });
        println!("{value}");
    } else {
        let mac: Vec<String> = destination_mac.iter().map(|b| format!("{b:02x}")).collect();
        println!(
            "Sent {} packets ({} bytes) in {:.2} s: {} pps, {} {}-byte frames from {}{} to {} \
             ({}) on {}",
            thousands(report.packets),
            thousands(report.bytes),
            report.seconds,
            thousands(report.pps().round() as u64),
            format!("{:?}", plan.proto).to_uppercase(),
            plan.size,
            source,
            if random { " (random sources)" } else { "" },
            destination,
            mac.join(":"),
            plan.ifname
        );
        if report.refused > 0 {
            println!(
                "The veth refused {} more frames: its peer's XDP ring (256 frames) was full, or \
                 the peer stopped taking XDP frames.",
                thousands(report.refused)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
