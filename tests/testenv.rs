//! The veth lab as a user drives it: `xdpctl testenv` sets a lab up, pings through it and
//! tears it down, and firewalls loaded inside two labs on same-named interfaces keep apart.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

#[test]
fn testenv_cli_sets_up_runs_pings_and_tears_down() {
    require_root!();
    let fw = Instance::new();
    let name = xdpctl::lab::testenv::unique_name("xc");
    let guard = scopeguard(&name);
    let out = fw.ok(&["testenv", "setup", "--name", &name]);
    assert!(out.contains("[up]") && out.contains("10.11."), "{out}");
    let err = fw.err(&["testenv", "setup", "--name", &name]);
    assert!(err.contains("already exists"), "{err}");

    let addrs = fw.ok(&[
        "testenv", "exec", "--name", &name, "--", "ip", "-br", "addr", "show", "dev", "veth0",
    ]);
    let lab = xdpctl::lab::testenv::Lab::open(&name).unwrap();
    assert!(addrs.contains(&lab.inner_ipv4().to_string()), "{addrs}");
    // exec passes the exit code on.
    let out = fw.run(&[
        "testenv", "exec", "--name", &name, "--", "sh", "-c", "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    // bpffs pins stay visible inside (setns, not `ip netns exec`).
    fw.ok(&["load", &name, "-p", "xdp_pass"]);
    let out = fw.ok(&[
        "testenv",
        "exec",
        "--name",
        &name,
        "--",
        "ls",
        &fw.interface_dir(&name).to_string_lossy(),
    ]);
    assert!(out.contains("link"), "{out}");

    // enter: a shell inside the lab, here fed from a pipe.
    let mut shell = fw
        .command()
        .args(["testenv", "enter", "--name", &name])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        shell.stdin.as_mut().unwrap(),
        b"echo lab=$XDPCTL_LAB; ip -br link show dev veth0\n",
    )
    .unwrap();
    let out = shell.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("lab={name}")) && text.contains("veth0"),
        "{text}"
    );

    fw.ok(&["testenv", "ping", "--name", &name, "--count", "2"]);
    fw.ok(&["testenv", "ping", "--name", &name, "--count", "2", "-6"]);
    let status = fw.ok(&["testenv", "status", "--name", &name]);
    assert!(status.contains("xdp_pass"), "{status}");

    fw.ok(&["testenv", "teardown", "--name", &name]);
    assert!(
        nix::net::if_::if_nametoindex(name.as_str()).is_err(),
        "veth left behind"
    );
    assert!(
        !std::path::Path::new("/run/netns").join(&name).exists(),
        "netns left behind"
    );
    assert!(!fw.interface_dir(&name).exists(), "pins left behind");
    let err = fw.err(&["testenv", "ping", "--name", &name]);
    assert!(err.contains("no lab named"), "{err}");
    drop(guard);
}

/// Tears the CLI-made lab down if the test fails before its own teardown.
fn scopeguard(name: &str) -> impl Drop {
    struct Teardown(String);
    impl Drop for Teardown {
        fn drop(&mut self) {
            if let Some(lab) = xdpctl::lab::testenv::Lab::list()
                .unwrap_or_default()
                .into_iter()
                .find(|lab| lab.name == self.0)
            {
                let _ = lab.teardown();
            }
        }
    }
    Teardown(name.to_owned())
}

#[test]
fn loads_inside_two_labs_on_same_named_interfaces_do_not_collide() {
    require_root!();
    let fw = Instance::new();
    let (a, b) = (lab(), lab());
    // Both labs' inner interface is called veth0; each gets its own pins.
    fw.inside(&a, &["load", "veth0", "--program", "xdp_drop"]);
    fw.inside(&b, &["load", "veth0", "--program", "xdp_drop"]);
    for lab in [&a, &b] {
        let status = fw.inside(lab, &["status", "veth0", "--json"]);
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status[0]["owner"], "xdpctl", "{status}");
        assert_eq!(status[0]["program"], "xdp_drop", "{status}");
        // Packets to the inner address are dropped on veth0.
        let reached = Command::new("ping")
            .args(["-c", "1", "-W", "1", &lab.inner_ipv4().to_string()])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(
            !reached,
            "ping reached {} through xdp_drop",
            lab.inner_ipv4()
        );
    }
    // The root namespace sees none of them as its own.
    assert!(
        !fw.pin_dirs().contains(&"veth0".to_owned()),
        "{:?}",
        fw.pin_dirs()
    );
    let out = fw.inside(&a, &["unload", "veth0"]);
    assert!(out.contains("Unloaded"), "{out}");
    let status: Value =
        serde_json::from_str(&fw.inside(&b, &["status", "veth0", "--json"])).unwrap();
    assert_eq!(
        status[0]["program"], "xdp_drop",
        "unloading lab a touched lab b: {status}"
    );
    // Tearing lab b down removes the pins made inside it. With `testenv teardown` of this
    // instance: the guard's own teardown, in this process, knows only the global pin root.
    let netns_inode =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(b.netns_path()).unwrap());
    let made_inside = format!("veth0:ns{netns_inode}");
    assert!(fw.pin_dirs().contains(&made_inside), "{:?}", fw.pin_dirs());
    fw.ok(&["testenv", "teardown", "--name", b.outer_ifname()]);
    drop(b);
    assert!(
        !fw.pin_dirs().contains(&made_inside),
        "lab teardown left the pins made inside it: {:?}",
        fw.pin_dirs()
    );
}
