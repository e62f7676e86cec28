//! One module per subcommand. Each `run` returns the process exit code or an error that says
//! what went wrong and how to fix it.

pub mod allow;
pub mod block;
pub mod demo;
pub mod exporter;
pub mod flood;
pub mod graph;
pub mod history;
pub mod list;
pub mod load;
pub mod ports;
pub mod ratelimit;
pub mod run;
pub mod stats;
pub mod status;
pub mod testenv;
pub mod top;
pub mod trace;
pub mod unload;
pub mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set once Ctrl-C or SIGTERM arrives. The handler is installed on first use (ctrlc allows one
/// per process).
pub fn stop_requested() -> &'static AtomicBool {
    static STOP: OnceLock<&'static AtomicBool> = OnceLock::new();
    STOP.get_or_init(|| {
        static FLAG: AtomicBool = AtomicBool::new(false);
        if let Err(err) = ctrlc::set_handler(|| FLAG.store(true, Ordering::SeqCst)) {
            eprintln!("xdpctl: cannot catch Ctrl-C ({err}); it will kill xdpctl outright");
        }
        &FLAG
    })
}

/// Sleeps up to `duration`, waking early when a stop is requested. Returns false if stopped.
pub fn sleep_unless_stopped(duration: Duration) -> bool {
    let stop = stop_requested();
    let deadline = Instant::now() + duration;
    while !stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

/// Rules do nothing until some interface runs the firewall: say so instead of letting a user
/// believe they are protected. Only this instance's interfaces (its pin root) count.
pub fn note_if_firewall_not_loaded() {
    let loaded = crate::sys::pins::pinned_interfaces()
        .unwrap_or_default()
        .iter()
        .any(|ifname| {
            crate::sys::pins::attached_programs(Some(ifname))
                .map(|rows| {
                    rows.iter()
                        .any(|r| r.program == "firewall" && r.owner == "xdpctl")
                })
                .unwrap_or(false)
        });
    if !loaded {
        eprintln!(
            "note: no interface runs the firewall yet, so rules have no effect until \
             `xdpctl load IFACE`"
        );
    }
}
