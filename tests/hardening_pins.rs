//! Hardening of the firewall's global pin set (issue 12): it is never removed while a firewall
//! runs on it (whatever network namespace `unload --all` runs in, and also when the kernel will
//! not say who uses it), missing pins are pinned again from the running firewall (loaded, or run
//! in the foreground) rather than made empty, size flags are checked against their range and the
//! machine's memory, a load that fails or is killed leaves no partial set, and the pins of a
//! load in another namespace are not taken for leftovers. Each test has its own lab and pin root
//! (Instance).

mod common;
#[path = "hardening_pins/processes.rs"]
mod processes;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use nix::sys::signal::{kill, Signal};
use processes::{deny_bpf_command, freeze, Reaped};
use xdpctl::firewall::pinset::{self, PinState};

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
    require_root!();
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

/// Removes the whole rules directory while the lab's inner address is blocked by a running
/// firewall, then blocks `second`: both blocks must reach that firewall, through its maps pinned
/// again (not an empty set made beside it).
fn block_after_removing_the_rules(
    fw: &Instance,
    lab: &xdpctl::lab::testenv::LabGuard,
    second: std::net::Ipv4Addr,
) {
    std::fs::remove_dir_all(rules_dir(fw)).unwrap();
    let out = fw.run(&["block", &second.to_string()]);
    assert!(out.status.success(), "block: {}", stderr(&out));
    assert!(
        !ping_from(lab, second.into(), 2),
        "the new block missed the running firewall (an empty set was made beside it)"
    );
    assert!(!ping(lab, 2), "the old block was lost");
    assert_eq!(fw.blocked().len(), 2, "{:?}", fw.blocked());
    assert!(
        stderr(&out).contains("pinned again from the firewall"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn removed_pins_are_pinned_again_from_the_running_firewall() {
    require_root!();
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
    block_after_removing_the_rules(&fw, &lab, second);

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
        err.contains("incomplete")
            && err.contains("fw_config")
            && err.contains("no loaded firewall uses the remaining maps")
            && err.contains("unload --all"),
        "{err}"
    );
    // Not the advice that just failed (`list` repairs when it can).
    assert!(!err.contains("xdpctl list"), "{err}");
    assert!(!rules_dir(&fw).join("fw_config").exists());
    fw.ok(&["unload", "--all"]);
    fw.ok(&["load", ifname]);
    assert!(fw.blocked().is_empty());
}

#[test]
fn size_flags_are_checked_against_their_range_and_the_memory() {
    require_root!();
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
    // In range, but far more memory than a quarter of any machine's: refused before the
    // kernel is asked. The message is the budget check's (the kernel's would be an allocation
    // failure), and no staging directory was made (the maps are pinned there as created).
    let out = fw.run(&["load", ifname, "--max-rules", "1000000000"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "a billion rules were accepted");
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

/// A cgroup directory, removed when dropped (once its processes are gone).
struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs xdpctl in a memory cgroup of `limit` bytes (v2, or v1's memory controller), which the
/// maps it creates are charged to, and removes the cgroup after.
fn run_in_memory_cgroup(fw: &Instance, limit: u64, args: &[&str]) -> Output {
    let name = format!("xdpctl-test-{}", xdpctl::lab::testenv::unique_name("cg"));
    let (dir, limit_file) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        (PathBuf::from("/sys/fs/cgroup").join(&name), "memory.max")
    } else {
        (
            PathBuf::from("/sys/fs/cgroup/memory").join(&name),
            "memory.limit_in_bytes",
        )
    };
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    // From here on, however this ends (a panic included), the cgroup goes: after `command`,
    // whose process must have left it.
    let cgroup = Cgroup(dir);
    let write = |file: &str, text: &str| {
        std::fs::write(cgroup.0.join(file), text)
            .unwrap_or_else(|e| panic!("writing {} in {}: {e}", file, cgroup.0.display()))
    };
    write(limit_file, &limit.to_string());
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(cgroup.0.join("cgroup.procs"))
        .unwrap();
    let mut command = fw.command();
    command.args(args);
    // SAFETY: only async-signal-safe work between fork and exec: one write(2), to a file
    // opened before the fork, of "0" (the writing process) into cgroup.procs.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            use std::os::fd::AsRawFd;
            if libc::write(procs.as_raw_fd(), b"0\n".as_ptr().cast(), 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    command.output().unwrap()
}

#[test]
fn an_allocation_failure_names_the_size_flags_and_leaves_no_pins() {
    require_root!();
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

/// The staging directory of an unfinished load that holds some pins, if there is one.
fn staging_with_pins(fw: &Instance) -> Option<PathBuf> {
    staging_dirs(fw).into_iter().find(|dir| pins_in(dir) > 0)
}

#[test]
fn a_first_load_killed_while_it_pins_leaves_no_partial_set() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    // The kill must land after the load pinned something and before it put the set in place.
    // A load is frozen (SIGSTOP) once it has staged pins, and its state read while it cannot
    // move: if the set is not in place yet, SIGKILL ends it exactly there. One that got
    // further before it froze is let go and tried again.
    let mut killed_part_way = None;
    for _attempt in 0..10 {
        let mut load = Reaped::spawn(
            fw.command()
                .args(["load", ifname, "--max-rules", "10000"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while staging_with_pins(&fw).is_none() && !load.exited() {
            assert!(Instant::now() < deadline, "the load never pinned anything");
            sleep(Duration::from_micros(200));
        }
        if freeze(&mut load) && pinset::state(&rules_dir(&fw)) == PinState::Absent {
            if let Some(staging) = staging_with_pins(&fw) {
                load.0.kill().unwrap();
                load.0.wait().unwrap();
                killed_part_way = Some(staging);
                break;
            }
        }
        drop(load);
        fw.ok(&["unload", "--all"]);
    }
    let staging = killed_part_way
        .expect("no load was caught with pins staged and the set not yet in place, in 10 tries");

    // It died with pins staged: the set is absent, not partial, and the staging is left over.
    let state = pinset::state(&rules_dir(&fw));
    assert_eq!(state, PinState::Absent, "a killed load left {state:?}");
    assert!(pins_in(&staging) > 0, "the kill did not land part-way");
    // The next load cleans up, says so, and works, at the default size.
    let out = fw.run(&["load", ifname]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("removed {}", staging.display())),
        "{}",
        stderr(&out)
    );
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
    require_root!();
    use libbpf_rs::MapCore;
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname(), "--max-rules", "200000"]);
    let (mut charged, mut shapes) = (0u64, Vec::new());
    for name in pinset::global_map_names() {
        let map = libbpf_rs::MapHandle::from_pinned_path(rules_dir(&fw).join(name)).unwrap();
        let info = map.query_fdinfo().unwrap();
        charged += info.memlock.expect("memlock in fdinfo");
        shapes.push(xdpctl::firewall::map_budget::MapShape {
            name: name.to_string(),
            map_type: map.map_type(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            map_flags: info.map_flags.expect("map_flags in fdinfo"),
            entries: map.max_entries(),
        });
    }
    let asked = xdpctl::firewall::map_budget::Asked {
        max_rules: Some(200_000),
        max_sources: None,
    };
    let estimate = xdpctl::firewall::map_budget::total_bytes(&shapes, asked, 1);
    // The kernel adds its headers (and the empty tries a little); the arrays are the bulk.
    assert!(
        estimate <= charged && charged - estimate < charged / 20,
        "estimated {estimate} bytes, the kernel charged {charged}"
    );
}

#[test]
fn a_firewall_run_in_the_foreground_gets_its_removed_pins_back() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let inner = lab.inner_ipv4();
    let second = lab.second_inner_ipv4();
    let mut run = Reaped::spawn(
        fw.command()
            .args(["run", ifname, "-p", "firewall", "--interval", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // `run` pins no link: its record (written once it is attached) is all that leads to it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while xdpctl::sys::pins::read_run_record(ifname).map(|r| r.pid) != Some(run.0.id()) {
        assert!(!run.exited(), "xdpctl run ended");
        assert!(Instant::now() < deadline, "xdpctl run never attached");
        sleep(Duration::from_millis(20));
    }
    fw.ok(&["block", &inner.to_string()]);
    assert!(!ping(&lab, 2), "the block does not apply");

    block_after_removing_the_rules(&fw, &lab, second);

    // While it runs, unload --all keeps the rules and says who holds them: even when no pin
    // leads to its maps any more (the set's directory emptied), its record does.
    for name in pinset::global_map_names() {
        std::fs::remove_file(rules_dir(&fw).join(name)).unwrap();
    }
    let err = fw.err(&["unload", "--all"]);
    assert!(
        err.contains(&format!("held by `xdpctl run` (pid {})", run.0.id()))
            && err.contains("kept the firewall's rules"),
        "{err}"
    );
    assert!(rules_dir(&fw).exists());
    fw.ok(&["list"]);
    assert_eq!(fw.blocked().len(), 2, "{:?}", fw.blocked());

    // Ctrl-C detaches it; then the rules go.
    kill(run.pid(), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "xdpctl run did not stop on SIGINT"
        );
        sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "xdpctl run: {status}");
    assert!(attached(ifname).is_empty());
    fw.ok(&["unload", "--all"]);
    assert!(!rules_dir(&fw).exists());
}

#[test]
fn unload_all_keeps_another_namespaces_pins_while_a_load_makes_them() {
    require_root!();
    let fw = Instance::new();
    // What a load in another namespace has made so far: its directory, not yet its link.
    let dir = fw.root.join("if").join("veth-new:ns4026530001");
    std::fs::create_dir_all(&dir).unwrap();
    fw.ok(&["unload", "--all"]);
    assert!(
        dir.exists(),
        "unload --all removed the pins a load was making"
    );

    // Left like that for long (the load died before it pinned the link), it is a leftover.
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(&dir)
        .and_then(|d| d.set_modified(long_ago))
        .unwrap();
    let out = fw.ok(&["unload", "--all"]);
    assert!(!dir.exists(), "a leftover without a link stayed: {out}");
    assert!(out.contains("veth-new:ns4026530001"), "{out}");
}

#[test]
fn unload_all_removes_nothing_when_the_kernel_will_not_say_who_uses_the_maps() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let inner = lab.inner_ipv4().to_string();
    fw.ok(&["load", ifname]);
    fw.ok(&["block", &inner]);
    let link = fw.root.join("if").join(ifname).join("link");
    assert!(link.exists());
    // From inside the lab, where this namespace has no program of its own to unload: what is
    // left to decide is whether the firewall outside still uses the rules.
    const BPF_OBJ_GET: u32 = 7;
    const BPF_PROG_GET_NEXT_ID: u32 = 11;
    const BPF_PROG_GET_FD_BY_ID: u32 = 13;
    for (denied, what) in [
        (BPF_PROG_GET_NEXT_ID, "listing the kernel's BPF program ids"),
        (BPF_PROG_GET_FD_BY_ID, "opening BPF program id"),
        (BPF_OBJ_GET, "opening the pinned map"),
    ] {
        let mut command = fw.command();
        command.args(inside_args(ifname, &["unload", "--all"]));
        deny_bpf_command(&mut command, denied);
        let out = command.output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "bpf command {denied} denied: {err}");
        assert!(
            err.contains("could not tell who uses the maps")
                && err.contains(what)
                && err.contains("Operation not permitted")
                && err.contains("nothing removed"),
            "bpf command {denied} denied: {err}"
        );
        assert_eq!(pinset::state(&rules_dir(&fw)), PinState::Complete);
        assert!(
            link.exists(),
            "bpf command {denied} denied: the link's pin went"
        );
        assert_eq!(attached(ifname).len(), 1);
        assert!(
            !ping(&lab, 2),
            "bpf command {denied} denied: the block went"
        );
        if denied == BPF_OBJ_GET {
            // The link pin of the initial namespace cannot be opened: not taken for defunct.
            assert!(
                err.contains("could not tell whether the pins of other network namespaces"),
                "{err}"
            );
        }
    }
    assert_eq!(fw.blocked(), [format!("{inner}/32")]);
}

#[test]
fn a_replace_that_cannot_open_the_old_counters_fails_instead_of_resetting_them() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname, "-p", "xdp_pass"]);
    assert!(ping(&lab, 3));
    let running = attached(ifname)[0].prog_id;
    const BPF_MAP_GET_FD_BY_ID: u32 = 14;
    let mut command = fw.command();
    command.args(["load", ifname, "--force", "-p", "xdp_pass"]);
    deny_bpf_command(&mut command, BPF_MAP_GET_FD_BY_ID);
    let out = command.output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "the counters were silently reset");
    assert!(
        err.contains("opening BPF map id") && err.contains("Operation not permitted"),
        "{err}"
    );
    assert_eq!(attached(ifname)[0].prog_id, running);
    assert!(counters(ifname).action("XDP_PASS").packets >= 3);
}
