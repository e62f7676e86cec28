//! xdpctl: load, attach and watch XDP programs. The binary (`main.rs`) only parses and
//! dispatches; everything else lives here so that tests can use it.
//!
//! - [`programs`]: the built-in BPF programs (skeletons) and loading any XDP object
//! - [`attach`]: interfaces, XDP modes, bpf_link create/update/detach, queries
//! - [`pins`]: xdpctl's state in bpffs and who owns an attached program; [`ifname`]: which
//!   interface names the kernel (and so xdpctl) accepts
//! - [`pinset`]: the firewall's global pin set: made whole, repaired, removed only when unused;
//!   [`map_budget`]: the size flags, the maps' entries and the memory they take;
//!   [`map_users`]: which loaded programs use a map, and where they run
//! - [`firewall`]: the firewall's ABI and global maps; [`input`]: parsing what users type;
//!   [`rules`]: editing its lists;
//!   [`exact`]: the exact-address tables, mapped into this process; [`range_filter`]: which
//!   ranges' tries are worth a lookup
//! - [`stats`]: per-CPU counters, rates, the tutorial's format, JSON
//! - [`history`]: the per-second history ring; [`ports`]: packets per destination port
//! - [`metrics`]: a snapshot for Prometheus and its text exposition format
//! - [`testenv`]: the veth lab
//! - [`top`]: the busiest sources between two samples of the firewall's source table
//! - [`watch`]: the live dashboard: what it shows (a snapshot) and how (a pure render)
//! - [`trace`]: XDP exceptions (a tracepoint program and its ring buffer) and bpf_printk lines
//! - [`commands`]: one module per subcommand

pub mod abi;
pub mod attach;
pub mod cli;
pub mod commands;
pub mod exact;
pub mod firewall;
pub mod flood;
pub mod graph;
pub mod history;
pub mod ifname;
pub mod input;
pub mod libbpf_log;
pub mod locks;
pub mod map_budget;
pub mod map_users;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod pins;
pub mod pinset;
pub mod ports;
pub mod privileges;
pub mod programs;
pub mod range_filter;
pub mod rules;
pub mod stats;
pub mod testenv;
pub mod top;
pub mod trace;
pub mod watch;
