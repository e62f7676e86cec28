//! Hardening (issue 12): the capabilities xdpctl really needs. Run as `nobody` with the
//! documented set, every command works; with fewer, each is refused with the documented message
//! and applies nothing.

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs xdpctl as `nobody` with exactly `caps` (setpriv syntax, e.g. "+sys_admin").
fn as_nobody(inst: &Instance, caps: &str, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps=-all,{caps}"),
            &format!("--ambient-caps=-all,{caps}"),
        ])
        .arg(xdpctl_path())
        .args(args)
        .env("XDPCTL_PIN_ROOT", &inst.root)
        .output()
        .unwrap()
}

#[test]
fn the_documented_capabilities_suffice_and_fewer_are_refused_with_the_documented_message() {
    require_root!();
    let inst = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    inst.ok(&["load", ifname]);
    // The README's set: CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_DAC_OVERRIDE.
    let documented = "+sys_admin,+net_admin,+dac_override";
    let out = as_nobody(&inst, documented, &["status", ifname, "--json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["program"], "firewall", "{status}");
    assert_eq!(status[0]["owner"], "xdpctl", "{status}");
    let out = as_nobody(
        &inst,
        documented,
        &["stats", ifname, "-c", "1", "-i", "0.1"],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = as_nobody(&inst, documented, &["block", "192.0.2.44"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = as_nobody(&inst, documented, &["list", "--json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["block"][0]["prefix"], "192.0.2.44/32", "{list}");

    // Fewer: what the README used to promise, that plus CAP_PERFMON and CAP_DAC_OVERRIDE, and
    // the documented set without CAP_DAC_OVERRIDE.
    for fewer in [
        "+bpf,+net_admin",
        "+bpf,+perfmon,+net_admin,+dac_override",
        "+sys_admin,+net_admin",
    ] {
        for args in [&["status", ifname][..], &["block", "192.0.2.45"]] {
            let out = as_nobody(&inst, fewer, args);
            let stderr = stderr_of(&out);
            assert_eq!(out.status.code(), Some(1), "{fewer} {args:?}: {stderr}");
            assert!(
                stderr.contains(xdpctl::sys::privileges::NEEDED),
                "{fewer} {args:?}: {stderr}"
            );
        }
    }
    let list = inst.json(&["list", "--json"]);
    assert_eq!(list["block"].as_array().unwrap().len(), 1, "{list}");
    inst.ok(&["unload", ifname]);
}
