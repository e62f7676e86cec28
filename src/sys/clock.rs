//! The clocks xdpctl compares with the programs': CLOCK_MONOTONIC_COARSE (what the BPF side
//! reads, bpf/lib/clock.h), and Unix time for labels.

use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC_COARSE, the clock the program reads.
pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .expect("CLOCK_MONOTONIC_COARSE is always available");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Unix time minus CLOCK_MONOTONIC, in ns, read now (the precise clocks: the coarse one would
/// add up to a tick of error, and could label a second differently from one call to the next).
pub fn unix_offset_ns() -> i128 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let monotonic = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
        .unwrap_or(0);
    unix - monotonic
}
