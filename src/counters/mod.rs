//! Finding a program's counter maps and reading them: per-action stats, the per-second
//! history, packets per port, the snapshot the exporter serves and the one `watch` shows.

pub mod dashboard;
pub mod history;
pub mod metrics;
pub mod ports;
pub mod stats;

/// The per-interface counter maps that carry over when a program is replaced
/// (`sys::programs::CarryOver`).
pub const COUNTER_MAPS: [&str; 4] = [
    stats::STATS_MAP_NAME,
    "fw_stats",
    history::HISTORY_MAP_NAME,
    ports::PORT_MAP_NAME,
];
