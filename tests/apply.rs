//! `xdpctl apply`, `diff`, `export` and `check` on a real lab: idempotence (no map written and
//! no link changed by a second apply), all or nothing (a bad file and a failed apply change
//! nothing), dynamic rules kept, and no blocked packet passing while a changed file is applied.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// The maps apply writes (the lists, the port rules, the range filter, fw_config), dumped by
/// bpftool: what the lab's own traffic may change (counters, sources) is left out.
fn rule_maps(fw: &Instance) -> String {
    let dir = fw.root.join("rules");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("block_")
                || n.starts_with("allow_")
                || ["ports", "range_bits", "fw_config"].contains(&n.as_str())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    let mut out = String::new();
    for name in names {
        let dump = Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(dir.join(&name))
            .output()
            .unwrap();
        assert!(dump.status.success(), "bpftool dump of {name}");
        out.push_str(&name);
        out.push_str(&String::from_utf8_lossy(&dump.stdout));
    }
    out
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn config(ifname: &str, block: &[String], pps: u32) -> String {
    let block: Vec<String> = block.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "version = 1\n[firewall]\nmax_rules = 4096\nmax_sources = 1024\n\
         [[interface]]\nname = \"{ifname}\"\nprogram = \"firewall\"\n\
         [block]\nprefixes = [{}]\nports = [\"53/udp\"]\n\
         [allow]\nprefixes = [\"198.51.100.7\"]\n[ratelimit]\npps = {pps}\n",
        block.join(", ")
    )
}

/// The logical state: what export writes, and the rules with their reasons.
fn logical(fw: &Instance) -> (String, Value) {
    let mut list = fw.json(&["list", "--json"]);
    for section in ["block", "allow"] {
        for entry in list[section].as_array_mut().unwrap() {
            entry.as_object_mut().unwrap().remove("hits");
            entry.as_object_mut().unwrap().remove("expires_in");
        }
    }
    (fw.ok(&["export"]), list)
}

#[test]
fn a_second_apply_changes_nothing_and_export_applies_as_a_no_op() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let dir = tempfile::tempdir().unwrap();
    let inner = lab.inner_ipv4().to_string();
    let file = write(
        dir.path(),
        "a.toml",
        &config(
            ifname,
            &[
                inner.clone(),
                "203.0.113.0/24".into(),
                "2001:db8::/48".into(),
            ],
            5000,
        ),
    );
    assert!(ping(&lab, 1), "the lab pings before the apply");
    let out = fw.ok(&["check", &file]);
    assert!(
        out.contains("valid") && out.contains("passed the verifier"),
        "{out}"
    );
    assert!(!fw.root.join("rules").exists(), "check pinned nothing");

    let diff = fw.run(&["diff", &file]);
    assert_eq!(diff.status.code(), Some(1), "diff says it differs");
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(text.contains(&format!("+ block {inner}/32")), "{text}");
    assert!(
        text.contains(&format!("+ attach {ifname}: firewall")),
        "{text}"
    );
    let dry = fw.run(&["apply", "--dry-run", &file]);
    assert_eq!(dry.status.code(), Some(1), "a dry run exits as diff does");
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(out.contains("+ block port 53/udp"), "{out}");
    assert!(
        fw.status(ifname).as_array().unwrap().is_empty(),
        "dry run attached nothing"
    );

    let out = fw.ok(&["apply", &file]);
    assert!(out.contains("changes made"), "{out}");
    assert!(
        !ping(&lab, 2),
        "the file's block of the lab's address holds in the kernel"
    );
    let list = fw.json(&["list", "--json"]);
    assert!(
        list["block"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["reason"] == "config"),
        "{list}"
    );

    let maps = rule_maps(&fw);
    let link = fw.pinned_link_id(ifname);
    let prog = attached(ifname)[0].prog_id;
    let out = fw.ok(&["apply", &file]);
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(rule_maps(&fw), maps, "the second apply wrote to a map");
    assert_eq!(fw.pinned_link_id(ifname), link);
    assert_eq!(
        attached(ifname)[0].prog_id,
        prog,
        "the second apply replaced the program"
    );
    assert_eq!(fw.run(&["diff", &file]).status.code(), Some(0));
    let json = fw.json(&["diff", "--json", &file]);
    assert_eq!(json["changes"], 0, "{json}");

    let exported = write(dir.path(), "exported.toml", &fw.ok(&["export"]));
    assert_eq!(fw.run(&["diff", &exported]).status.code(), Some(0));
    let out = fw.ok(&["apply", &exported]);
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(rule_maps(&fw), maps, "applying the export wrote to a map");
    assert_eq!(attached(ifname)[0].prog_id, prog);
}

#[test]
fn a_bad_file_and_a_failed_apply_change_nothing() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.toml",
        &config(ifname, &["192.0.2.1".into()], 100),
    );
    fw.ok(&["apply", &good]);
    fw.ok(&["block", "10.9.9.9", "--ttl", "10m"]);
    let maps = rule_maps(&fw);
    let before = logical(&fw);
    let link = fw.pinned_link_id(ifname);

    // Errors of the file itself: nothing is touched, and the line is named.
    let bad = write(
        dir.path(),
        "bad.toml",
        &config(ifname, &["192.0.2.1".into(), "192.0.2.300".into()], 100),
    );
    let err = fw.err(&["apply", &bad]);
    assert!(
        err.contains("bad.toml:9:") && err.contains("192.0.2.300"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    std::fs::write(dir.path().join("junk.o"), "not an object").unwrap();
    let obj = write(
        dir.path(),
        "obj.toml",
        &format!("version = 1\n[[interface]]\nname = \"{ifname}\"\nobj = \"junk.o\"\n"),
    );
    let err = fw.err(&["apply", &obj]);
    assert!(
        err.contains("junk.o") && err.contains("not a BPF object"),
        "{err}"
    );
    assert_eq!(fw.run(&["diff", &bad]).status.code(), Some(2));
    assert_eq!(rule_maps(&fw), maps, "a bad file wrote to a map");

    // A file the kernel refuses part-way (the allowlist overflows max_rules after the block
    // list's additions went in): rolled back to the state before.
    let overflow = config(ifname, &["192.0.2.2".into()], 300).replace(
        "[allow]\nprefixes = [\"198.51.100.7\"]",
        &format!(
            "[allow]\nprefixes = [{}]",
            (0..4100)
                .map(|i| format!("\"10.{}.{}.{}\"", 100 + i / 65536, (i / 256) % 256, i % 256))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let overflow = write(dir.path(), "overflow.toml", &overflow);
    let err = fw.err(&["apply", &overflow]);
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(logical(&fw), before, "the failed apply left changes behind");
    assert_eq!(fw.pinned_link_id(ifname), link);
    let list = fw.json(&["list", "--json"]);
    assert!(
        list.to_string().contains("10.9.9.9"),
        "the dynamic rule is kept: {list}"
    );
}

#[test]
fn dynamic_rules_survive_apply_and_manual_drift_is_removed() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "a.toml",
        &config(ifname, &["192.0.2.1".into()], 100),
    );
    fw.ok(&["apply", &file]);
    fw.ok(&["block", "10.9.9.9", "--ttl", "10m"]);
    fw.ok(&["block", "10.8.8.8"]);
    let out = fw.run(&["diff", &file]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("- block 10.8.8.8/32"), "{text}");
    assert!(
        text.contains("= kept: 1 dynamic rule") && text.contains("10.9.9.9/32 (manual"),
        "{text}"
    );
    fw.ok(&["apply", &file]);
    let blocked = fw.blocked();
    assert!(blocked.contains(&"10.9.9.9/32".to_owned()), "{blocked:?}");
    assert!(!blocked.contains(&"10.8.8.8/32".to_owned()), "{blocked:?}");
    // A file naming a dynamic rule makes it the file's.
    let file = write(
        dir.path(),
        "b.toml",
        &config(ifname, &["192.0.2.1".into(), "10.9.9.9".into()], 100),
    );
    fw.ok(&["apply", &file]);
    let list = fw.json(&["list", "--json"]);
    let entry = list["block"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["prefix"] == "10.9.9.9/32")
        .cloned()
        .unwrap();
    assert_eq!(entry["reason"], "config", "{entry}");
    assert!(entry["expires_in"].is_null(), "{entry}");
    // A file with no interface detaches xdpctl's program.
    let none = write(dir.path(), "none.toml", "version = 1\n");
    let out = fw.ok(&["apply", &none]);
    assert!(
        out.contains(&format!("- attach {ifname}: firewall")),
        "{out}"
    );
    assert!(attached(ifname).is_empty());
}

#[test]
fn no_blocked_packet_passes_while_a_changed_file_is_applied() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let flooder = "10.77.0.1".to_owned();
    let others: Vec<String> = (0..500)
        .map(|i| format!("203.0.{}.{}", i / 250, i % 250))
        .collect();
    let mut a = vec![flooder.clone()];
    a.extend(others[..250].iter().cloned());
    let mut b = vec![flooder.clone(), "10.77.0.0/16".into()];
    b.extend(others[250..].iter().cloned());
    let file_a = write(dir.path(), "a.toml", &config(&ifname, &a, 1000));
    let file_b = write(
        dir.path(),
        "b.toml",
        &config(&ifname, &b, 2000).replace("ports = [\"53/udp\"]", "ports = []"),
    );
    fw.ok(&["apply", &file_a]);
    let before = fw.stats_json(&ifname);
    let dropped_before = before["drops"]["blocklist"]["packets"]
        .as_u64()
        .unwrap_or(0);
    let flood = {
        let fw_root = fw.root.clone();
        let ifname = ifname.clone();
        std::thread::spawn(move || {
            let mut command = Command::new(xdpctl_path());
            command.env("XDPCTL_PIN_ROOT", &fw_root).args(inside_args(
                &ifname,
                &[
                    "flood",
                    "veth0",
                    "--json",
                    "--src",
                    "10.77.0.1",
                    "--duration",
                    "3",
                    "--pps",
                    "200000",
                ],
            ));
            let out = command.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    for _ in 0..3 {
        fw.ok(&["apply", &file_b]);
        fw.ok(&["apply", &file_a]);
    }
    let report = flood.join().unwrap();
    let sent = report["packets"].as_u64().unwrap();
    let after = fw.stats_json(&ifname);
    let dropped = after["drops"]["blocklist"]["packets"].as_u64().unwrap() - dropped_before;
    assert!(sent > 100_000, "{report}");
    assert_eq!(
        dropped, sent,
        "every flood packet is dropped as blocklisted: {after}"
    );
}
