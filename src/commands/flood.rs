//! `xdpctl flood`: a flood out of a veth, for testing mitigations in a lab.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::parsers::{flood_source, interface_name, mac, positive_seconds};
use crate::lab::flood::{self, Plan, Until};
use crate::output;
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct FloodArgs {
    /// The veth to send from (other interfaces are refused).
    #[arg(value_parser = interface_name)]
    pub interface: String,

    /// Packets per second (default 100000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "max")]
    pub pps: Option<u64>,

    /// As fast as possible.
    #[arg(long)]
    pub max: bool,

    /// Seconds to send for (default 5).
    #[arg(long, value_parser = positive_seconds, conflicts_with = "count")]
    pub duration: Option<f64>,

    /// Packets to send.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// What to send.
    #[arg(long, value_enum, default_value_t = crate::lab::flood::FloodProto::Udp)]
    pub proto: crate::lab::flood::FloodProto,

    /// Source address, or a prefix to draw a random source from for every packet
    /// (default: the interface's address).
    #[arg(long, value_name = "ADDR|CIDR", value_parser = flood_source)]
    pub src: Option<ipnet::IpNet>,

    /// Destination address (default: the interface's neighbour).
    #[arg(long, value_name = "ADDR")]
    pub dst: Option<std::net::IpAddr>,

    /// Destination MAC (default: from the neighbour table).
    #[arg(long, value_name = "MAC", value_parser = mac)]
    pub dst_mac: Option<[u8; 6]>,

    /// Frame size in bytes, without the FCS.
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

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
    if args.json {
        println!("{}", output::flood::to_json(&plan, &report));
    } else {
        print!("{}", output::flood::format_report(&plan, &report));
    }
    Ok(ExitCode::SUCCESS)
}
