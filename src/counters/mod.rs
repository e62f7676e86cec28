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

#[cfg(test)]
mod tests {
    #[test]
    fn the_counter_maps_are_the_programs() {
        let firewall = crate::sys::programs::map_names_of("firewall").unwrap();
        for name in super::COUNTER_MAPS {
            assert!(
                firewall.iter().any(|d| d == name),
                "the firewall has no map {name}"
            );
        }
        // The tutorial programs keep the per-action counters and the history.
        for program in ["xdp_pass", "xdp_drop", "xdp_abort"] {
            let maps = crate::sys::programs::map_names_of(program).unwrap();
            for name in [
                super::stats::STATS_MAP_NAME,
                super::history::HISTORY_MAP_NAME,
            ] {
                assert!(
                    maps.iter().any(|d| d == name),
                    "{program} has no map {name}"
                );
            }
        }
    }
}
