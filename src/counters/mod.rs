//! Finding a program's counter maps and reading them: per-action stats, the per-second
//! history, packets per port, the snapshot the exporter serves and the one `watch` shows.

pub mod dashboard;
pub mod history;
pub mod metrics;
pub mod ports;
pub mod stats;
