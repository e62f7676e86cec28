//! Checks up front that we may load BPF programs and touch interfaces, so a user gets one clear
//! message instead of an EPERM from deep inside libbpf.
//!
//! What is really needed, found by running each command as `nobody` with only some
//! capabilities (`setpriv --reuid=nobody --inh-caps=... --ambient-caps=...`):
//! - CAP_SYS_ADMIN: the kernel allows BPF_PROG_GET_FD_BY_ID (and the map and link versions)
//!   only with it, and xdpctl opens attached programs by id to name them, to find their
//!   counters (stats, history, ports, watch, top, exporter) and to tell who owns them. It also
//!   covers CAP_BPF and CAP_PERFMON (the firewall calls bpf_ktime_get_coarse_ns, which the
//!   verifier grants only with CAP_PERFMON).
//! - CAP_NET_ADMIN: attaching XDP programs to interfaces.
//! - CAP_DAC_OVERRIDE, unless running as uid 0: bpffs is mounted mode 0700, and the pins and
//!   /run/xdpctl (the lock file) belong to root, mode 0600/0700.

use anyhow::{bail, Result};

const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// The sentence every refusal and the README use.
pub const NEEDED: &str = "root, or the capabilities CAP_SYS_ADMIN, CAP_NET_ADMIN and \
                          CAP_DAC_OVERRIDE (CAP_BPF and CAP_NET_ADMIN alone are not enough: \
                          opening attached programs by id needs CAP_SYS_ADMIN, and the pins and \
                          lock file are root's)";

/// The effective capability set from the text of /proc/self/status.
fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Whether these capabilities, for this effective uid, let xdpctl work.
fn sufficient(caps: u64, euid: u32) -> bool {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) && has(CAP_NET_ADMIN) && (euid == 0 || has(CAP_DAC_OVERRIDE))
}

/// Fails with a message naming the missing privileges when `command` cannot work.
pub fn require(command: &str) -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = nix::unistd::geteuid().as_raw();
    match effective_capabilities(&status) {
        Some(caps) if sufficient(caps, euid) => Ok(()),
        _ => bail!("`xdpctl {command}` needs {NEEDED}: run it with sudo"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP_BPF: u32 = 39;
    const CAP_PERFMON: u32 = 38;

    #[test]
    fn reads_capeff_from_proc_status() {
        let status = "Name:\txdpctl\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_capabilities(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities("Name: x\n"), None);
    }

    #[test]
    fn needs_sys_admin_net_admin_and_dac_override_unless_uid_0() {
        let documented = (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN) | (1 << CAP_DAC_OVERRIDE);
        assert!(sufficient(0x1ff_ffff_ffff, 65534));
        assert!(sufficient(documented, 65534));
        assert!(sufficient(documented & !(1 << CAP_DAC_OVERRIDE), 0));
        assert!(!sufficient(documented & !(1 << CAP_DAC_OVERRIDE), 65534));
        assert!(!sufficient(documented & !(1 << CAP_SYS_ADMIN), 65534));
        assert!(!sufficient(documented & !(1 << CAP_NET_ADMIN), 0));
        let bpf_only = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_NET_ADMIN);
        assert!(!sufficient(bpf_only | (1 << CAP_DAC_OVERRIDE), 65534));
        assert!(!sufficient(0, 0));
    }
}
