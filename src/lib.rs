//! xdpctl: load, attach and watch XDP programs. The binary (`main.rs`) only parses and
//! dispatches; everything else lives here so that tests can use it.
//!
//! - [`programs`]: the built-in BPF programs (skeletons) and loading any XDP object
//! - [`attach`]: interfaces, XDP modes, bpf_link create/update/detach, queries
//! - [`pins`]: xdpctl's state in bpffs and who owns an attached program
//! - [`stats`]: per-CPU counters, rates, the tutorial's format, JSON
//! - [`metrics`]: a snapshot for Prometheus and its text exposition format
//! - [`testenv`]: the veth lab
//! - [`commands`]: one module per subcommand

pub mod attach;
pub mod cli;
pub mod commands;
pub mod firewall;
pub mod flood;
pub mod libbpf_log;
pub mod metrics;
pub mod model;
pub mod pins;
pub mod privileges;
pub mod programs;
pub mod rules;
pub mod stats;
pub mod testenv;
