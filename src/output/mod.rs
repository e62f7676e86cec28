//! Every table, JSON document, CSV, graph, Prometheus text and the watch screen. Nothing here
//! touches a map: it renders what the lower layers read.

pub mod config;
pub mod flood;
pub mod graph;
pub mod history;
pub mod numbers;
pub mod ports;
pub mod prefixes;
pub mod prometheus;
pub mod ratelimit;
pub mod rules;
pub mod stats;
pub mod status;
pub mod talkers;
pub mod testenv;
pub mod trace;
pub mod watch;
