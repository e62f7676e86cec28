//! xdpctl: load, attach and watch XDP programs. The binary (`main.rs`) only parses and
//! dispatches; everything else lives here so that tests can use it.
//!
//! The modules are layers; each imports only the ones listed before it (docs/architecture.md):
//!
//! - [`abi`], [`skel`]: generated from `include/xdpctl.h` and `bpf/*.bpf.c` by `build.rs`
//! - [`input`]: what users type: prefixes, ports, durations, rule files
//! - [`sys`]: kernel plumbing that knows no feature: loading, attaching, pins, map I/O, locks
//! - [`firewall`]: the firewall's maps and every invariant they keep, and its reference model
//! - [`config`]: the declarative config file, and `apply`, `diff` and `export` of it
//! - [`counters`]: finding a program's counter maps and reading them: stats, history, ports
//! - [`trace`]: XDP exceptions and bpf_printk lines
//! - [`lab`]: the veth lab and the flood generator
//! - [`output`]: every table, JSON, CSV, graph, Prometheus text and the watch screen
//! - [`commands`]: the command line, and one module of glue per subcommand, each owning its
//!   arguments

pub mod abi;
pub mod commands;
pub mod config;
pub mod counters;
pub mod firewall;
pub mod input;
pub mod lab;
pub mod output;
pub mod packets;
pub mod skel;
pub mod sys;
pub mod trace;
