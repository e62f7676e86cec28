//! The flood generator: what it says it sent arrives; it refuses anything but a veth; its
//! random sources are random, and its frames valid enough for the kernel stack's netfilter.

mod common;

use std::process::Stdio;
use std::thread::sleep;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn the_lab_receives_what_the_generator_says_it_sent() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname, "-p", "xdp_pass"]);
    let before = counters(ifname).action("XDP_PASS").packets;
    // `--count` counts frames the peer took: any the veth refused (its peer's XDP ring full)
    // are reported, and made again.
    let report = fw.flood(ifname, &["--count", "200000", "--max"]);
    assert_eq!(report["packets"], 200_000, "{report}");
    assert_eq!(report["bytes"], 200_000 * 64, "{report}");
    assert!(report["refused"].is_u64(), "{report}");
    assert!(report["pps"].as_f64().unwrap() > 10_000.0, "{report}");
    let received = counters(ifname).action("XDP_PASS").packets - before;
    // The lab's own IPv6 chatter may add a few.
    assert!(
        (200_000..200_050).contains(&received),
        "sent 200000, the peer's xdp_pass counted {received}"
    );

    // Paced: the rate is what was asked for.
    let report = fw.flood(
        ifname,
        &["--pps", "20000", "--duration", "1", "--proto", "icmp"],
    );
    let pps = report["pps"].as_f64().unwrap();
    assert!((18_000.0..22_000.0).contains(&pps), "{report}");
    fw.ok(&["unload", ifname]);
}

#[test]
fn only_a_veth_may_be_flooded() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    // The lab namespace's own loopback: refused before anything is sent.
    let out = fw.run(&[
        "testenv",
        "exec",
        "--name",
        lab.outer_ifname(),
        "--",
        xdpctl_path(),
        "flood",
        "lo",
        "--count",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to flood lo") && stderr.contains("veth"),
        "{stderr}"
    );
    let err = fw.err(&["flood", "nosuchif0", "--count", "1"]);
    assert!(err.contains("nosuchif0"), "{err}");
    let err = fw.err(&["flood", lab.outer_ifname(), "--count", "1", "--size", "20"]);
    assert!(err.contains("too small"), "{err}");
}

#[test]
fn a_peer_that_takes_no_xdp_frames_is_an_error_that_says_why() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    // No XDP program on the outer end, and GRO off: veth drops every XDP frame sent to it.
    let ethtool = std::process::Command::new("ethtool")
        .args(["-K", ifname, "gro", "off"])
        .output()
        .expect("ethtool");
    assert!(ethtool.status.success(), "{ethtool:?}");
    let out = fw.run(&inside_args(ifname, &["flood", "veth0", "--count", "1000"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the peer of veth0 took none") && stderr.contains("gro on"),
        "{stderr}"
    );
    // With an XDP program, the same flood arrives.
    fw.ok(&["load", ifname, "-p", "xdp_pass"]);
    assert_eq!(fw.flood_packets(ifname, &["--count", "1000"]), 1000);
    fw.ok(&["unload", ifname]);
}

#[test]
fn random_sources_are_random_and_frames_pass_netfilter() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ns = lab.outer_ifname().to_owned();
    let exec = |args: &[&str]| {
        let mut full = vec!["testenv", "exec", "--name", ns.as_str(), "--"];
        full.extend_from_slice(args);
        fw.ok(&full)
    };
    // netfilter inside the lab's namespace (gone with it): it only sees frames with the right
    // MAC and a valid IPv4 header checksum.
    exec(&[
        "iptables",
        "-t",
        "raw",
        "-A",
        "PREROUTING",
        "-i",
        "veth0",
        "-s",
        "198.18.0.0/16",
        "-j",
        "DROP",
    ]);
    // From the outer end into the lab: random sources in 198.18.0.0/16.
    let out = fw.ok(&[
        "flood",
        lab.outer_ifname(),
        "--dst",
        &lab.inner_ipv4().to_string(),
        "--src",
        "198.18.0.0/16",
        "--count",
        "20000",
        "--pps",
        "200000",
        "--json",
    ]);
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["packets"], 20_000);
    let rules = exec(&[
        "iptables",
        "-t",
        "raw",
        "-L",
        "PREROUTING",
        "-v",
        "-x",
        "-n",
    ]);
    let dropped: u64 = rules
        .lines()
        .find(|l| l.contains("198.18.0.0/16"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule counter in:\n{rules}"));
    assert_eq!(
        dropped, 20_000,
        "netfilter saw {dropped} of 20000 frames:\n{rules}"
    );

    // The firewall's source table, inside the lab: many distinct sources.
    fw.inside(&lab, &["load", "veth0"]);
    let mut flood = fw
        .command()
        .args([
            "flood",
            lab.outer_ifname(),
            "--dst",
            &lab.inner_ipv4().to_string(),
        ])
        .args(["--src", "10.99.0.0/24", "--pps", "20000", "--duration", "3"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(500));
    let top: Value =
        serde_json::from_str(&fw.inside(&lab, &["top", "-n", "1000", "--interval", "1", "--json"]))
            .unwrap();
    let _ = flood.kill();
    let _ = flood.wait();
    let sources: Vec<&str> = top["by_pps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["source"].as_str())
        .filter(|s| s.starts_with("10.99.0."))
        .collect();
    assert!(
        sources.len() > 200,
        "only {} distinct sources: {top}",
        sources.len()
    );
    fw.inside(&lab, &["unload", "--all"]);
}
