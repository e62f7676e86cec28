//! Finding a program's counter maps and reading them: per-action stats, the per-second
//! history, packets per port, and the snapshot the exporter serves.

pub mod history;
pub mod metrics;
pub mod ports;
pub mod stats;
