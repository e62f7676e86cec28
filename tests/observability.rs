//! Observability on a real lab: the per-second history counts what the interface received, the
//! graph files carry its series, and the port histogram counts real UDP datagrams.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::thread::sleep;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn sum(history: &Value, field: &str) -> u64 {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[field].as_u64().unwrap())
        .sum()
}

/// The program's total packets: received (every action), passed and dropped, as the kernel
/// counts them, to compare with the history's sums.
struct Totals {
    received: u64,
    passed: u64,
    dropped: u64,
}

fn totals(ifname: &str) -> Totals {
    let counters = counters(ifname);
    Totals {
        received: counters.0.iter().map(|action| action.packets).sum(),
        passed: counters.action("XDP_PASS").packets,
        dropped: counters.action("XDP_DROP").packets,
    }
}

#[test]
fn history_counts_each_second_exactly_and_the_graph_carries_it() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname]);
    fw.ok(&["block", &lab.second_inner_ipv4().to_string()]);

    // 3 s at 20,000 pps from a clean source, then 2 s at 10,000 pps from a blocked one.
    let passed_sent = fw.flood_packets(ifname, &["--pps", "20000", "--duration", "3"]);
    let blocked_sent = fw.flood_packets(
        ifname,
        &[
            "--pps",
            "10000",
            "--duration",
            "2",
            "--src",
            &lab.second_inner_ipv4().to_string(),
        ],
    );
    // Race-free and still exact: T1 is read once the floods are over; the second in progress
    // then ends and settles (history shows a second 50 ms after its end, so the second of T1 is
    // shown 1.05 s after T1 at the latest); then the history H, then T2. H holds every packet of
    // T1 and none after T2. Between T1 and T2 only the lab's own chatter (IPv6 ND and MLD, a few
    // packets) can come: the floods are over.
    let before = totals(ifname);
    sleep(Duration::from_millis(1200));
    let history = fw.json(&["history", ifname, "--seconds", "60", "--json"]);
    let after = totals(ifname);
    let seconds = history.as_array().unwrap();
    assert!(seconds.len() >= 5, "{history}");
    for (field, t1, t2) in [
        ("received", before.received, after.received),
        ("passed", before.passed, after.passed),
        ("dropped", before.dropped, after.dropped),
    ] {
        let h = sum(&history, field);
        assert!(
            t1 <= h && h <= t2,
            "history {field} {h} not within the kernel's totals {t1} (before) ..= {t2} (after): \
             {history}"
        );
        assert!(
            t2 - t1 < 50,
            "{field}: {} packets came between the readings, after the floods ended",
            t2 - t1
        );
    }
    // What the lab sent arrived, give or take the lab's own chatter (ND, ARP: under 50).
    let received = sum(&history, "received");
    let sent = passed_sent + blocked_sent;
    assert!(
        (sent..sent + 50).contains(&received),
        "sent {sent}, history received {received}"
    );
    let blocklisted: u64 = seconds
        .iter()
        .map(|s| s["drops"]["blocklist"].as_u64().unwrap())
        .sum();
    assert_eq!(blocklisted, blocked_sent, "{history}");
    // A full second of the paced flood is about 20,000 (its 100 ms bursts catch up after a stall).
    let busiest = seconds
        .iter()
        .map(|s| s["received"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        (16_000..=24_000).contains(&busiest),
        "busiest second {busiest}: {history}"
    );
    // Seconds are consecutive Unix times.
    for pair in seconds.windows(2) {
        assert_eq!(
            pair[1]["time"].as_i64().unwrap(),
            pair[0]["time"].as_i64().unwrap() + 1
        );
    }

    // CSV: the same seconds, one line each after the header.
    let csv = fw.ok(&["history", ifname, "--seconds", "60", "--csv"]);
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("time,received,passed,dropped"));
    let csv_received: u64 = lines
        .map(|line| line.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(csv_received >= received, "{csv}");

    // The graphs: SVG with the three series and the legend; PNG with their colours.
    let dir = std::env::temp_dir().join(format!("xdpctl-graph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg_path = dir.join("graph.svg");
    let png_path = dir.join("graph.png");
    fw.ok(&["graph", ifname, "-o", svg_path.to_str().unwrap()]);
    fw.ok(&["graph", ifname, "--output", png_path.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "not SVG"
    );
    assert!(svg.trim_end().ends_with("</svg>"), "SVG not closed");
    for (name, color) in [
        ("received", xdpctl::output::graph::RECEIVED),
        ("passed", xdpctl::output::graph::PASSED),
        ("dropped", xdpctl::output::graph::DROPPED),
    ] {
        // The series' line: the polyline in its colour with a point per second.
        let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
        let points = svg
            .split("<polyline")
            .filter(|element| element.contains(&stroke))
            .map(|element| {
                element
                    .split("points=\"")
                    .nth(1)
                    .unwrap_or("")
                    .split(' ')
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(
            points >= seconds.len(),
            "the {name} line has {points} points"
        );
    }
    for label in [
        "received",
        "passed",
        "dropped",
        "packets per second",
        ifname,
    ] {
        assert!(svg.contains(label), "SVG lacks {label}");
    }
    let png = image::open(&png_path).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (1000, 520));
    for (name, color) in [
        ("received", xdpctl::output::graph::RECEIVED),
        ("passed", xdpctl::output::graph::PASSED),
        ("dropped", xdpctl::output::graph::DROPPED),
    ] {
        let pixels = png
            .pixels()
            .filter(|p| p.0 == [color.0, color.1, color.2])
            .count();
        assert!(pixels > 100, "PNG has {pixels} pixels of the {name} series");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ports_counts_udp_datagrams_per_destination_port() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname]);
    let (quiet, busy) = (free_port(), free_port());
    let outer = lab.outer_ipv4();
    in_lab(&lab, move || {
        let client = UdpSocket::bind("0.0.0.0:0").unwrap();
        for (port, count) in [(busy, 7), (quiet, 3)] {
            let target: SocketAddr = (outer, port).into();
            for _ in 0..count {
                client.send_to(b"xdpctl ports", target).unwrap();
            }
        }
    });
    let ports = fw.json(&["ports", ifname, "--proto", "udp", "--json"]);
    let count_of = |port: u16| {
        ports
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == port)
            .map(|p| p["packets"].as_u64().unwrap())
    };
    assert_eq!(count_of(busy), Some(7), "{ports}");
    assert_eq!(count_of(quiet), Some(3), "{ports}");
    assert_eq!(ports[0]["proto"], "udp");
    // Busiest first, and --top limits.
    let top = fw.json(&["ports", ifname, "--proto", "udp", "--top", "1", "--json"]);
    assert_eq!(top.as_array().unwrap().len(), 1, "{top}");
    assert!(top[0]["packets"].as_u64().unwrap() >= 7, "{top}");
    // No TCP was sent to these ports.
    let tcp = fw.json(&["ports", ifname, "--proto", "tcp", "--json"]);
    assert!(
        !tcp.as_array().unwrap().iter().any(|p| p["port"] == busy),
        "{tcp}"
    );
    let table = fw.ok(&["ports", ifname]);
    assert!(table.contains(&format!("{busy:>5} udp")), "{table}");
}

#[test]
fn history_and_ports_explain_what_they_need() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    // A user's own program keeps neither.
    let object = user_object();
    fw.ok(&[
        "load",
        ifname,
        "--obj",
        object.to_str().unwrap(),
        "--program",
        "xdp_user_count",
    ]);
    let err = fw.err(&["history", ifname]);
    assert!(err.contains("keeps no per-second history"), "{err}");
    let err = fw.err(&["ports", ifname]);
    assert!(err.contains("keeps no port counters"), "{err}");
    fw.ok(&["unload", ifname]);
    // The built-ins keep history but only the firewall counts ports.
    fw.ok(&["load", ifname, "--program", "xdp_pass"]);
    assert!(ping(&lab, 2));
    let err = fw.err(&["ports", ifname]);
    assert!(err.contains("the firewall does"), "{err}");
    sleep(Duration::from_millis(1100));
    let history: Value = serde_json::from_str(&fw.ok(&["history", ifname, "--json"])).unwrap();
    assert!(sum(&history, "passed") >= 2, "{history}");
    fw.ok(&["unload", ifname]);
    // A file name that is neither .svg nor .png is refused before anything else.
    let err = fw.err(&["graph", ifname, "-o", "/tmp/graph.jpg"]);
    assert!(err.contains(".svg or .png"), "{err}");
}
