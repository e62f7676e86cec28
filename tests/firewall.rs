//! The firewall end to end: labs with real ping, UDP and TCP from inside the namespace, rules
//! edited with the xdpctl binary. Each test has its own lab and its own pin root (Instance),
//! so they run in parallel without seeing each other's rules.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The prefixes of one list in `list --json`.
fn prefixes(list: &Value, which: &str) -> Vec<String> {
    list[which]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["prefix"].as_str().unwrap().to_owned())
        .collect()
}

fn find<'a>(list: &'a Value, which: &str, prefix: &str) -> &'a Value {
    list[which]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["prefix"] == prefix)
        .unwrap_or_else(|| panic!("{prefix} not in {which}: {list}"))
}

#[test]
fn block_and_unblock_a_source_with_exact_hit_counts() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let inner = format!("{}/32", lab.inner_ipv4());
    let out = fw.ok(&["load", lab.outer_ifname()]);
    assert!(out.contains("Loaded firewall"), "{out}");
    assert!(ping(&lab, 2), "the firewall passes clean traffic");

    fw.ok(&["block", &lab.inner_ipv4().to_string()]);
    assert!(!ping(&lab, 3), "ping went through a block");
    // Exactly the 3 echo requests hit the rule (the neighbours are static: no ARP; IPv6 noise
    // comes from another address).
    let list = fw.json(&["list", "--json"]);
    let rule = find(&list, "block", &inner);
    assert_eq!(rule["hits"], 3, "{list}");
    assert_eq!(rule["reason"], "manual");
    assert!(rule["expires_in"].is_null());

    let stats = fw.stats_json(lab.outer_ifname());
    assert_eq!(stats["drops"]["blocklist"]["packets"], 3, "{stats}");
    assert!(
        stats["protocols"]["icmp"]["packets"].as_u64().unwrap() >= 5,
        "{stats}"
    );
    assert!(
        stats["bytes"]["dropped"].as_u64().unwrap() >= 3 * 98,
        "{stats}"
    );

    fw.ok(&["unblock", &lab.inner_ipv4().to_string()]);
    assert!(ping(&lab, 2), "unblock did not restore traffic");
    assert!(prefixes(&fw.json(&["list", "--json"]), "block").is_empty());
    let err = fw.err(&["unblock", &lab.inner_ipv4().to_string()]);
    assert!(err.contains("not on the blocklist"), "{err}");
}

#[test]
fn cidr_and_ipv6_blocks_apply_per_family() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname()]);
    fw.ok(&["block", "10.11.0.0/16"]);
    assert!(!ping(&lab, 2), "a /16 around the lab did not block it");
    assert!(ping6(&lab, 2), "an IPv4 block must not touch IPv6");
    fw.ok(&["unblock", "10.11.0.0/16"]);

    fw.ok(&["block", "fc00:dead:cafe::/48"]);
    assert!(!ping6(&lab, 2), "an IPv6 /48 did not block the lab");
    assert!(ping(&lab, 2), "an IPv6 block must not touch IPv4");
    let list = fw.json(&["list", "--json"]);
    assert!(
        find(&list, "block", "fc00:dead:cafe::/48")["hits"]
            .as_u64()
            .unwrap()
            >= 2
    );
}

#[test]
fn allow_overrides_block_until_disallowed() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname()]);
    fw.ok(&["block", "10.11.0.0/16"]);
    fw.ok(&["allow", &lab.inner_ipv4().to_string()]);
    assert!(ping(&lab, 2), "the allowlist did not override the block");
    let list = fw.json(&["list", "--json"]);
    assert_eq!(
        find(&list, "allow", &format!("{}/32", lab.inner_ipv4()))["hits"],
        2
    );
    fw.ok(&["disallow", &lab.inner_ipv4().to_string()]);
    assert!(!ping(&lab, 2), "disallow did not bring the block back");
}

#[test]
fn port_rules_drop_only_that_port_and_protocol() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname()]);
    let (blocked, open) = (free_port(), free_port());
    fw.ok(&[
        "block",
        "--port",
        &format!("{blocked}/udp"),
        "--port",
        &format!("{blocked}/tcp"),
    ]);
    assert!(
        !udp_reaches(&lab, blocked, false),
        "UDP to a blocked port got through"
    );
    assert!(
        !udp_reaches(&lab, blocked, true),
        "UDP over IPv6 to a blocked port got through"
    );
    assert!(
        udp_reaches(&lab, open, false),
        "UDP to another port was dropped"
    );
    assert!(
        !tcp_connects(&lab, blocked),
        "TCP to a blocked port connected"
    );
    assert!(tcp_connects(&lab, open), "TCP to another port failed");
    assert!(ping(&lab, 1), "ICMP was affected by port rules");

    let list = fw.json(&["list", "--json"]);
    let ports = list["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2, "{list}");
    assert!(
        ports
            .iter()
            .all(|p| p["port"] == blocked && p["hits"].as_u64().unwrap() >= 1),
        "{list}"
    );
    fw.ok(&["unblock", "--port", &format!("{blocked}/udp")]);
    assert!(
        udp_reaches(&lab, blocked, false),
        "unblock --port did not restore UDP"
    );
    assert!(
        !tcp_connects(&lab, blocked),
        "the TCP rule went with the UDP one"
    );
}

#[test]
fn rate_limit_auto_blocks_a_flood_then_the_block_expires() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname()]);
    fw.ok(&[
        "ratelimit",
        "set",
        "--pps",
        "20",
        "--burst",
        "20",
        "--block-for",
        "2s",
    ]);
    let shown = fw.json(&["ratelimit", "show", "--json"]);
    assert_eq!(shown["pps"], 20);
    assert_eq!(shown["block_for"], 2.0);

    // 100 pings in ~1 s: 5 times the limit.
    let flood = lab
        .ping_command(100, false, 0.01)
        .unwrap()
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&flood.stdout);
    assert!(summary.contains("100 packets transmitted"), "{summary}");
    assert!(
        !summary.contains(" 100 received"),
        "nothing was limited: {summary}"
    );

    let list = fw.json(&["list", "--json"]);
    let rule = find(&list, "block", &format!("{}/32", lab.inner_ipv4()));
    assert_eq!(rule["reason"], "ratelimit", "{list}");
    let left = rule["expires_in"].as_f64().unwrap();
    assert!(left > 0.0 && left <= 2.0, "{list}");
    let stats = fw.stats_json(lab.outer_ifname());
    assert!(
        stats["drops"]["ratelimit"]["packets"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["drops"]["blocklist"]["packets"].as_u64().unwrap() >= 1,
        "{stats}"
    );

    // The block expires by itself.
    sleep(Duration::from_secs_f64(left + 0.3));
    assert!(prefixes(&fw.json(&["list", "--json"]), "block").is_empty());
    assert!(ping(&lab, 3), "traffic within the limit passes again");
    fw.ok(&["ratelimit", "off"]);
    assert_eq!(fw.json(&["ratelimit", "show", "--json"])["enabled"], false);
}

#[test]
fn top_names_the_busy_source() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname()]);
    let pinger = lab
        .ping_command(300, false, 0.01)
        .unwrap()
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(300));
    let top = fw.json(&[
        "top",
        lab.outer_ifname(),
        "-n",
        "3",
        "--interval",
        "1",
        "--json",
    ]);
    // Named by interface, top reads the maps that interface's firewall uses, whichever pin
    // root loaded it: here from another instance's pin root, which loaded nothing.
    let by_interface = Instance::new().json(&[
        "top",
        lab.outer_ifname(),
        "-n",
        "1",
        "--interval",
        "0.5",
        "--json",
    ]);
    let mut pinger = pinger;
    let _ = pinger.kill();
    let _ = pinger.wait();
    assert_eq!(
        by_interface["by_pps"][0]["source"],
        lab.inner_ipv4().to_string(),
        "{by_interface}"
    );
    let first = &top["by_pps"][0];
    assert_eq!(first["source"], lab.inner_ipv4().to_string(), "{top}");
    assert!(first["pps"].as_f64().unwrap() > 20.0, "{top}");
    assert_eq!(
        top["by_bytes"][0]["source"],
        lab.inner_ipv4().to_string(),
        "{top}"
    );
}

#[test]
fn rules_survive_the_cli_exiting_and_load_force() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    // Rules set before any load take effect at the load.
    fw.ok(&["block", &lab.inner_ipv4().to_string()]);
    fw.ok(&["load", ifname]);
    assert!(!ping(&lab, 2));
    // Replace the firewall with itself, then with something else and back: the rules stay.
    let out = fw.ok(&["load", ifname, "--force"]);
    assert!(out.contains("atomically"), "{out}");
    assert!(!ping(&lab, 2), "the block did not survive load --force");
    fw.ok(&["load", ifname, "--force", "-p", "xdp_pass"]);
    assert!(ping(&lab, 1));
    fw.ok(&["load", ifname, "--force"]);
    assert!(
        !ping(&lab, 2),
        "the block did not survive a round trip through xdp_pass"
    );
    let list = fw.json(&["list", "--json"]);
    assert_eq!(
        find(&list, "block", &format!("{}/32", lab.inner_ipv4()))["hits"],
        6,
        "{list}"
    );
    // Unloading the interface keeps the rules; unload --all removes them.
    fw.ok(&["unload", ifname]);
    assert_eq!(prefixes(&fw.json(&["list", "--json"]), "block").len(), 1);
    fw.ok(&["unload", "--all"]);
    assert!(
        !fw.root.join("rules").exists(),
        "unload --all left the rules"
    );
}

#[test]
fn bad_entries_are_named_and_nothing_is_applied() {
    require_root!();
    let fw = Instance::new();
    let err = fw.err(&["block", "203.0.113.7", "198.51.100.7/24", "nonsense"]);
    assert!(
        err.contains("198.51.100.0/24") && err.contains("'nonsense'"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    let file = std::env::temp_dir().join(format!("xdpctl-bad-{}.txt", std::process::id()));
    std::fs::write(
        &file,
        "# list\n203.0.113.1\n203.0.113.300\n\n2001:db8::/32 # ok\nfoo\n",
    )
    .unwrap();
    let err = fw.err(&["block", "--file", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert!(err.contains("line 3") && err.contains("line 6"), "{err}");
    let err = fw.err(&["block", "--port", "53"]);
    assert!(err.contains("53/udp"), "{err}");
    assert!(prefixes(&fw.json(&["list", "--json"]), "block").is_empty());
    // From stdin too.
    let mut child = fw
        .command()
        .args(["block", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"203.0.113.0/24\n2001:db8::1\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        prefixes(&fw.json(&["list", "--json"]), "block"),
        ["203.0.113.0/24", "2001:db8::1/128"]
    );
}

#[test]
fn a_full_map_names_the_flag_and_applies_nothing() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname(), "--max-rules", "100"]);
    let entries: String = (0..150)
        .map(|i| format!("203.0.{}.{}\n", i / 256, i % 256))
        .collect();
    let file = std::env::temp_dir().join(format!("xdpctl-full-{}.txt", std::process::id()));
    std::fs::write(&file, entries).unwrap();
    let err = fw.err(&["block", "--file", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    assert!(
        err.contains("--max-rules") && err.contains("nothing was applied"),
        "{err}"
    );
    assert!(prefixes(&fw.json(&["list", "--json"]), "block").is_empty());
    // The size is fixed once the maps exist.
    let err = fw.err(&["load", lab.outer_ifname(), "--force", "--max-rules", "200"]);
    assert!(
        err.contains("100") && err.contains("--max-rules 200"),
        "{err}"
    );
}

/// Loads and unloads a firewall, lets `tamper` leave its rules' pins as another version of
/// xdpctl would have, and returns the error of the next load, checked to name the way out and
/// to have attached nothing; `unload --all` has then removed the pins.
fn load_refused_after(fw: &Instance, ifname: &str, tamper: impl FnOnce(&Path)) -> String {
    fw.ok(&["load", ifname]);
    fw.ok(&["unload", ifname]);
    tamper(&fw.root.join("rules"));
    let err = fw.err(&["load", ifname]);
    assert!(
        err.contains("another version") && err.contains("unload --all"),
        "{err}"
    );
    assert!(common::attached(ifname).is_empty());
    fw.ok(&["unload", "--all"]);
    err
}

#[test]
fn a_source_table_without_its_index_is_refused_and_nothing_is_attached() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    // Maps as an xdpctl without the index left them.
    load_refused_after(&fw, ifname, |rules| {
        std::fs::remove_file(rules.join("source_index")).unwrap()
    });
    fw.ok(&["load", ifname]);
    assert!(fw.root.join("rules/source_index").exists());
}

/// A pin set made by an xdpctl whose fixed-size map had another size (range_bits before its
/// /20 level: 4,096 words) is refused: the program would read past the end of the old array
/// and skip the trie.
#[test]
fn a_pinned_fixed_size_map_of_another_size_is_refused() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let path = fw.root.join("rules/range_bits");
    let err = load_refused_after(&fw, lab.outer_ifname(), |rules| {
        std::fs::remove_file(rules.join("range_bits")).unwrap();
        let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: libbpf_rs::libbpf_sys::BPF_F_MMAPABLE,
            ..Default::default()
        };
        let mut old = libbpf_rs::MapHandle::create(
            libbpf_rs::MapType::Array,
            Some("range_bits"),
            4,
            8,
            4096,
            &opts,
        )
        .unwrap();
        old.pin(rules.join("range_bits")).unwrap();
    });
    assert!(err.contains("range_bits"), "{err}");
    assert!(!path.exists());
}

/// Writes `count` distinct /32s (from `base`) to a temporary file.
fn address_file(tag: &str, base: u32, count: u32) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("xdpctl-{tag}-{}-{base}.txt", std::process::id()));
    let mut text = String::with_capacity(count as usize * 16);
    for i in 0..count {
        text.push_str(&std::net::Ipv4Addr::from(base + i).to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn eight_concurrent_block_files_lose_no_entry() {
    require_root!();
    let fw = Instance::new();
    fw.ok(&["block", "192.0.2.1"]); // create the maps first, as a running firewall would have
    let files: Vec<_> = (0..8u32)
        .map(|i| address_file("conc", 0x0a00_0000 + i * 0x0001_0000, 10_000))
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            fw.command()
                .args(["block", "--file", f.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for file in &files {
        std::fs::remove_file(file).unwrap();
    }
    let list = fw.json(&["list", "--json"]);
    let blocked: std::collections::HashSet<String> = prefixes(&list, "block").into_iter().collect();
    assert_eq!(blocked.len(), 80_001);
    for i in 0..8u32 {
        for j in 0..10_000u32 {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i * 0x0001_0000 + j);
            assert!(blocked.contains(&format!("{addr}/32")), "{addr} is missing");
        }
    }
}

#[test]
fn a_block_killed_mid_batch_leaves_consistent_maps_and_the_program_attached() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname()]);
    let file = address_file("kill", 0x6400_0000, 1_000_000);
    let mut child = fw
        .command()
        .args(["block", "--file", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while it writes: as soon as the first batch (of ~62) is in the map.
    let rules = fw.root.join("rules");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written = xdpctl::firewall::FirewallMaps::open_pinned_at(&rules)
            .ok()
            .flatten()
            .and_then(|maps| maps.exact_table(xdpctl::firewall::List::Block).ok())
            .is_some_and(|table| !table.is_empty());
        if written {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "block --file never wrote anything"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "block --file ended before it was killed"
        );
        sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(&file).unwrap();

    let status = fw.json(&["status", lab.outer_ifname(), "--json"]);
    assert_eq!(status[0]["program"], "firewall", "{status}");
    // Every entry that made it is whole and listed; the maps still work both ways.
    let list = fw.json(&["list", "--json"]);
    let blocked = list["block"].as_array().unwrap();
    eprintln!("killed with {} of 1,000,000 entries written", blocked.len());
    assert!(
        !blocked.is_empty() && blocked.len() < 1_000_000,
        "{} entries",
        blocked.len()
    );
    assert!(blocked
        .iter()
        .all(|e| e["prefix"].as_str().unwrap().starts_with("100.") && e["hits"] == 0));
    assert!(ping(&lab, 1), "the firewall stopped passing clean traffic");
    fw.ok(&["block", &lab.inner_ipv4().to_string()]);
    assert!(!ping(&lab, 1));
    fw.ok(&["unblock", "--all"]);
    assert!(ping(&lab, 1));
    assert!(prefixes(&fw.json(&["list", "--json"]), "block").is_empty());
}

#[test]
fn status_lists_the_firewall_and_list_works_before_any_load() {
    require_root!();
    let fw = Instance::new();
    let list = fw.json(&["list", "--json"]);
    assert_eq!(list["block"], serde_json::json!([]));
    assert_eq!(list["ratelimit"]["enabled"], false);
    let out = fw.command().args(["block", "192.0.2.1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface runs the firewall"));
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname()]);
    let out = fw.command().args(["block", "192.0.2.2"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("no interface runs"));
    let status = fw.json(&["status", lab.outer_ifname(), "--json"]);
    assert_eq!(status[0]["program"], "firewall");
    assert_eq!(status[0]["owner"], "xdpctl");
}

/// The verifier checks at most a million instructions of a program. The firewall once took
/// 92% of that, so that small changes failed to load; the stages it explored again on every
/// path are now global functions it checks once (bpf/firewall/lists.h, hhh.h). This keeps the
/// headroom: a change that eats it fails here, with the count.
#[test]
fn the_firewall_leaves_the_verifier_half_its_budget() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname]);
    let id = attached(ifname)[0].prog_id;
    let info = libbpf_rs::query::ProgInfoIter::default()
        .find(|prog| prog.id == id)
        .expect("the attached program's info");
    fw.ok(&["unload", ifname]);
    assert_eq!(info.name.to_str(), Some("firewall"));
    assert!(
        info.verified_insns < 500_000,
        "the verifier processed {} instructions of the firewall, of its limit of 1,000,000",
        info.verified_insns
    );
}
