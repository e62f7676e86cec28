//! Hardening of the firewall's global pin set (issue 12): it is never removed while a firewall
//! runs on it (whatever network namespace `unload --all` runs in), missing pins are pinned again
//! from the running firewall rather than made empty, size flags are checked against their range
//! and the machine's memory, and a load that fails or is killed leaves no partial set. Each test
//! has its own lab and pin root (Instance).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use xdpctl::pinset::{self, PinState};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rules_dir(fw: &Instance) -> PathBuf {
    fw.root.join("rules")
}

/// The staging directories of unfinished loads under the pin root.
fn staging_dirs(fw: &Instance) -> Vec<PathBuf> {
    std::fs::read_dir(&fw.root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy() != "rules")
                .filter(|p| p.file_name().unwrap().to_string_lossy() != "if")
                .collect()
        })
        .unwrap_or_default()
}

/// Global-map pins in `dir`.
fn pins_in(dir: &Path) -> usize {
    pinset::global_map_names()
        .iter()
        .filter(|name| dir.join(name).exists())
        .count()
}

#[test]
fn unload_all_from_another_namespace_keeps_the_rules_of_a_running_firewall() {
    if !have_root("unload_all_from_another_namespace_keeps_the_rules_of_a_running_firewall") {
        return;
    }
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname]);
    let prog_id = attached(ifname)[0].prog_id;
    let inner = lab.inner_ipv4().to_string();
    fw.ok(&["block", &inner]);
    assert!(!ping(&lab, 2), "the block does not apply");

    // From inside the lab (setns, so bpffs is the same), with the same pin root: no interface
    // of that namespace has xdpctl's program, but the firewall outside runs on the rules.
    let out = fw.run(&inside_args(ifname, &["unload", "--all"]));
    let err = stderr(&out);
    assert!(!out.status.success(), "unload --all succeeded: {err}");
    assert!(
        err.contains(&format!("program id {prog_id} 'firewall'")) && err.contains(ifname),
        "the refusal does not name the program and where it runs: {err}"
    );
    assert!(
        err.contains("initial network namespace") && err.contains(&format!("unload {ifname}")),
        "the refusal does not say how to unload it: {err}"
    );
    assert_eq!(pinset::state(&rules_dir(&fw)), PinState::Complete);
    assert_eq!(fw.blocked(), [format!("{inner}/32")]);
    assert!(!ping(&lab, 2), "the block stopped applying");
    // Rule edits still reach the running firewall.
    fw.ok(&["unblock", &inner]);
    assert!(ping(&lab, 2), "unblock did not reach the running firewall");

    // Once nothing runs on them, unload --all from anywhere removes the rules.
    fw.ok(&["unload", ifname]);
    fw.inside(&lab, &["unload", "--all"]);
    assert!(!rules_dir(&fw).exists(), "unload --all left the rules");
}

#[test]
fn removed_pins_are_pinned_again_from_the_running_firewall() {
    if !have_root("removed_pins_are_pinned_again_from_the_running_firewall") {
        return;
    }
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let inner = lab.inner_ipv4();
    let second = lab.second_inner_ipv4();
    fw.ok(&["load", ifname]);
    fw.ok(&["block", &inner.to_string()]);
    assert!(!ping(&lab, 2) && ping_from(&lab, second.into(), 2));

    // One pin: the exact table that holds the /32.
    std::fs::remove_file(rules_dir(&fw).join("block_slots")).unwrap();
    let out = fw.run(&["load", ifname, "--force"]);
    assert!(out.status.success(), "load --force: {}", stderr(&out));
    assert_eq!(
        fw.blocked(),
        [format!("{inner}/32")],
        "the rule was lost with its pin"
    );
    assert!(!ping(&lab, 2), "the block was lost with its pin");
    assert_eq!(pinset::state(&rules_dir(&fw)), PinState::Complete);
    assert!(
        stderr(&out).contains("block_slots")
            && stderr(&out).contains("pinned again from the firewall"),
        "{}",
        stderr(&out)
    );

    // The whole directory, then a rule edit: it reaches the running firewall.
    std::fs::remove_dir_all(rules_dir(&fw)).unwrap();
    let out = fw.run(&["block", &second.to_string()]);
    assert!(out.status.success(), "block: {}", stderr(&out));
    assert!(
        !ping_from(&lab, second.into(), 2),
        "the new block missed the running firewall"
    );
    assert!(!ping(&lab, 2), "the old block was lost");
    assert_eq!(fw.blocked().len(), 2, "{:?}", fw.blocked());
    assert!(
        stderr(&out).contains("pinned again from the firewall"),
        "{}",
        stderr(&out)
    );

    // And the whole directory before a load --force.
    std::fs::remove_dir_all(rules_dir(&fw)).unwrap();
    fw.ok(&["load", ifname, "--force"]);
    assert_eq!(fw.blocked().len(), 2, "{:?}", fw.blocked());
    assert!(!ping(&lab, 2) && !ping_from(&lab, second.into(), 2));

    // With no firewall running, a partial set cannot be repaired: commands say what to do,
    // and create nothing.
    fw.ok(&["unload", ifname]);
    std::fs::remove_file(rules_dir(&fw).join("fw_config")).unwrap();
    let err = fw.err(&["list"]);
    assert!(
        err.contains("incomplete") && err.contains("fw_config") && err.contains("unload --all"),
        "{err}"
    );
    assert!(!rules_dir(&fw).join("fw_config").exists());
    fw.ok(&["unload", "--all"]);
    fw.ok(&["load", ifname]);
    assert!(fw.blocked().is_empty());
}

#[test]
fn size_flags_are_checked_against_their_range_and_the_memory() {
    if !have_root("size_flags_are_checked_against_their_range_and_the_memory") {
        return;
    }
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    for (flag, value, range) in [
        ("--max-sources", "4294967295", "1..=2147483648"),
        ("--max-sources", "0", "1..=2147483648"),
        ("--max-rules", "0", "1..=1073741824"),
        ("--max-rules", "4294967295", "1..=1073741824"),
    ] {
        let out = fw.run(&["load", ifname, flag, value]);
        let err = stderr(&out);
        assert!(!out.status.success(), "load {flag} {value} succeeded");
        assert!(err.contains(flag) && err.contains(range), "{err}");
        assert!(!rules_dir(&fw).exists(), "load {flag} {value} left {err}");
    }
    // In range, but far more memory than a quarter of any machine's: refused at once.
    let started = Instant::now();
    let out = fw.run(&["load", ifname, "--max-rules", "1000000000"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "a billion rules were accepted");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the kernel was asked first"
    );
    assert!(
        err.contains("--max-rules 1000000000")
            && err.contains("bytes")
            && err.contains("MemTotal")
            && err.contains("--max-rules can be 1..="),
        "{err}"
    );
    assert!(
        !fw.root.exists(),
        "a refused load left {:?}",
        staging_dirs(&fw)
    );
    assert!(attached(ifname).is_empty());

    // A small table is whole: the range filter keeps its fixed size, so ranges work.
    fw.ok(&["load", ifname, "--max-rules", "1000", "--max-sources", "1"]);
    fw.ok(&["block", "10.11.0.0/16"]);
    assert!(!ping(&lab, 2), "the range block does not apply");
    fw.ok(&["unload", "--all"]);
    // Asking again for the size the maps have (the default, here) is no conflict.
    fw.ok(&["load", ifname]);
    fw.ok(&["load", ifname, "--force", "--max-rules", "1048576"]);
}

/// Runs xdpctl in a memory cgroup of `limit` bytes (v2, or v1's memory controller), which the
/// maps it creates are charged to, and removes the cgroup after.
fn run_in_memory_cgroup(fw: &Instance, limit: u64, args: &[&str]) -> Output {
    let name = format!("xdpctl-test-{}", xdpctl::testenv::unique_name("cg"));
    let (dir, limit_file) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        (PathBuf::from("/sys/fs/cgroup").join(&name), "memory.max")
    } else {
        (
            PathBuf::from("/sys/fs/cgroup/memory").join(&name),
            "memory.limit_in_bytes",
        )
    };
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let out = std::fs::write(dir.join(limit_file), limit.to_string()).map(|()| {
        let procs = dir.join("cgroup.procs");
        let mut command = fw.command();
        command.args(args);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs)
            .unwrap();
        // SAFETY: only async-signal-safe work between fork and exec: one write(2), to a file
        // opened before the fork, of "0" (the writing process) into cgroup.procs.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                use std::os::fd::AsRawFd;
                if libc::write(file.as_raw_fd(), b"0\n".as_ptr().cast(), 2) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        command.output().unwrap()
    });
    let _ = std::fs::remove_dir(&dir);
    out.unwrap_or_else(|e| panic!("limiting {}: {e}", dir.display()))
}

#[test]
fn an_allocation_failure_names_the_size_flags_and_leaves_no_pins() {
    if !have_root("an_allocation_failure_names_the_size_flags_and_leaves_no_pins") {
        return;
    }
    let fw = Instance::new();
    let lab = lab();
    // 3 million rules take 330 MiB of maps; the cgroup allows 96 MiB.
    let out = run_in_memory_cgroup(
        &fw,
        96 << 20,
        &["load", lab.outer_ifname(), "--max-rules", "3000000"],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "the load fit in 96 MiB");
    assert!(
        err.contains("Cannot allocate memory")
            && err.contains("--max-rules 3000000")
            && err.contains("smaller --max-rules"),
        "{err}"
    );
    assert!(!rules_dir(&fw).exists(), "the failed load left {}", err);
    assert!(staging_dirs(&fw).is_empty(), "{:?}", staging_dirs(&fw));
    // Nothing half made stands in the way of the next load.
    fw.ok(&["load", lab.outer_ifname()]);
    assert_eq!(pinset::state(&rules_dir(&fw)), PinState::Complete);
}

#[test]
fn a_first_load_killed_while_it_pins_leaves_no_partial_set() {
    if !have_root("a_first_load_killed_while_it_pins_leaves_no_partial_set") {
        return;
    }
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    // Big tables (about 440 MiB), so creating them takes a second: time to kill it part-way.
    let mut child = fw
        .command()
        .args(["load", ifname, "--max-rules", "4000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Any directory of the pin root with some of the pins, not all: the load is part-way.
        let partial = std::fs::read_dir(&fw.root)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .any(|e| (1..pinset::global_map_names().len()).contains(&pins_in(&e.path())))
            })
            .unwrap_or(false);
        if partial {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended before it could be killed part-way"
        );
        assert!(Instant::now() < deadline, "the load never pinned anything");
        sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let state = pinset::state(&rules_dir(&fw));
    assert!(
        matches!(state, PinState::Absent),
        "a killed load left {state:?} in {}",
        rules_dir(&fw).display()
    );
    // The next load cleans up and works, at the default size.
    let out = fw.run(&["load", ifname]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(staging_dirs(&fw).is_empty(), "{:?}", staging_dirs(&fw));
    assert_eq!(pinset::state(&rules_dir(&fw)), PinState::Complete);
    fw.ok(&["block", &lab.inner_ipv4().to_string()]);
    assert!(!ping(&lab, 2), "the block does not apply");
    // An empty rules directory (what an older xdpctl's failed load left) is no obstacle.
    fw.ok(&["unload", "--all"]);
    std::fs::create_dir_all(rules_dir(&fw)).unwrap();
    fw.ok(&["load", ifname]);
    assert!(fw.blocked().is_empty());
}

/// The memory estimate matches what the kernel charges for the maps (its fdinfo memlock).
#[test]
fn the_memory_estimate_matches_the_kernels_accounting() {
    if !have_root("the_memory_estimate_matches_the_kernels_accounting") {
        return;
    }
    use libbpf_rs::MapCore;
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname(), "--max-rules", "200000"]);
    let (mut charged, mut shapes) = (0u64, Vec::new());
    for name in pinset::global_map_names() {
        let map = libbpf_rs::MapHandle::from_pinned_path(rules_dir(&fw).join(name)).unwrap();
        let info = map.query_fdinfo().unwrap();
        charged += info.memlock.expect("memlock in fdinfo");
        shapes.push(xdpctl::map_budget::MapShape {
            name: name.to_string(),
            map_type: map.map_type(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            map_flags: info.map_flags.expect("map_flags in fdinfo"),
            entries: map.max_entries(),
        });
    }
    let asked = xdpctl::map_budget::Asked {
        max_rules: Some(200_000),
        max_sources: None,
    };
    let estimate = xdpctl::map_budget::total_bytes(&shapes, asked, 1);
    // The kernel adds its headers (and the empty tries a little); the arrays are the bulk.
    assert!(
        estimate <= charged && charged - estimate < charged / 20,
        "estimated {estimate} bytes, the kernel charged {charged}"
    );
}
