//! Captures libbpf's log so a verifier rejection can be reported as the tail of the verifier log
//! instead of libbpf's wall of text on stderr. `--verbose` echoes everything as it comes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use libbpf_rs::PrintLevel;

static CAPTURED: Mutex<String> = Mutex::new(String::new());
static ECHO: AtomicBool = AtomicBool::new(false);

fn capture(level: PrintLevel, message: String) {
    if ECHO.load(Ordering::Relaxed) || level == PrintLevel::Warn && is_user_facing(&message) {
        eprint!("{message}");
    }
    if let Ok(mut log) = CAPTURED.lock() {
        log.push_str(&message);
    }
}

/// libbpf warnings that stand on their own and are worth showing even without --verbose.
fn is_user_facing(message: &str) -> bool {
    message.contains("legacy map definitions") || message.contains("BTF is required")
}

/// Routes libbpf's output through the capture buffer. With `verbose`, it is echoed to stderr too.
pub fn install(verbose: bool) {
    ECHO.store(verbose, Ordering::Relaxed);
    let level = if verbose {
        PrintLevel::Debug
    } else {
        PrintLevel::Info
    };
    libbpf_rs::set_print(Some((level, capture)));
}

/// Takes everything captured so far.
pub fn take() -> String {
    CAPTURED
        .lock()
        .map(|mut log| std::mem::take(&mut *log))
        .unwrap_or_default()
}

/// The last `lines` lines of the verifier log within libbpf's output, if there is one.
pub fn verifier_tail(log: &str, lines: usize) -> Option<String> {
    let start = log.rfind("-- BEGIN PROG LOAD LOG --")?;
    let body = &log[start..];
    let body = body.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
    let body = body.split("-- END PROG LOAD LOG --").next().unwrap_or(body);
    let all: Vec<&str> = body
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    if all.is_empty() {
        return None;
    }
    Some(all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_tail_of_the_last_verifier_log() {
        let log = "libbpf: prog 'x': BPF program load failed: Permission denied\n\
                   libbpf: prog 'x': -- BEGIN PROG LOAD LOG --\n\
                   0: R1=ctx() R10=fp0\n\
                   ; return *(__u8 *)data;\n\
                   1: (71) r0 = *(u8 *)(r2 +0)\n\
                   invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)\n\
                   processed 2 insns (limit 1000000)\n\
                   -- END PROG LOAD LOG --\n\
                   libbpf: failed to load object\n";
        let tail = verifier_tail(log, 2).unwrap();
        assert_eq!(
            tail,
            "invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)\nprocessed 2 insns (limit 1000000)"
        );
        assert!(verifier_tail(log, 100).unwrap().starts_with("0: R1=ctx()"));
    }

    #[test]
    fn no_verifier_log_means_none() {
        assert_eq!(verifier_tail("libbpf: failed to open object\n", 5), None);
    }
}
