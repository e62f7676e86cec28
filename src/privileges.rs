//! Checks up front that we may load BPF programs and touch interfaces, so a user gets one clear
//! message instead of an EPERM from deep inside libbpf.

use anyhow::{bail, Result};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The effective capability set from the text of /proc/self/status.
fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// BPF needs CAP_BPF (or, on older kernels, CAP_SYS_ADMIN); attaching to interfaces needs
/// CAP_NET_ADMIN.
fn sufficient(caps: u64) -> bool {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN))
}

/// Fails with a message naming the missing privileges when `command` cannot work.
pub fn require(command: &str) -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match effective_capabilities(&status) {
        Some(caps) if sufficient(caps) => Ok(()),
        _ => bail!(
            "`xdpctl {command}` needs root, or the capabilities CAP_BPF and CAP_NET_ADMIN: \
             run it with sudo"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_capeff_from_proc_status() {
        let status = "Name:\txdpctl\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_capabilities(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities("Name: x\n"), None);
    }

    #[test]
    fn needs_net_admin_and_bpf_or_sys_admin() {
        assert!(sufficient(0x1ff_ffff_ffff));
        assert!(sufficient((1 << CAP_NET_ADMIN) | (1 << CAP_BPF)));
        assert!(sufficient((1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN)));
        assert!(!sufficient(1 << CAP_BPF));
        assert!(!sufficient(1 << CAP_NET_ADMIN));
        assert!(!sufficient(0));
    }
}
