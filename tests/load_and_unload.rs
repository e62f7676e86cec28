//! End to end: real programs on real veth labs, real packets from inside the namespace, and the
//! xdpctl binary as a user runs it. Every test builds its own lab (unique names, so they run in
//! parallel) and tears it down even when it fails.

mod common;

use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use xdpctl::sys::attach::AttachedMode;
use xdpctl::sys::pins;

#[test]
fn xdp_drop_makes_ping_fail_and_stats_count_the_drops() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname, "--program", "xdp_drop"]);
    assert!(!ping(&lab, 3), "ping went through xdp_drop");
    let counters = counters(ifname);
    assert!(counters.action("XDP_DROP").packets >= 3, "{counters:?}");
    assert_eq!(counters.action("XDP_PASS").packets, 0, "{counters:?}");

    // The CLI reports the same through its JSON.
    let out = fw.ok(&[
        "stats",
        ifname,
        "--interval",
        "0.1",
        "--count",
        "2",
        "--json",
    ]);
    let samples: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 2, "{out}");
    let last = &samples[1];
    assert_eq!(last["interface"], ifname);
    assert!(last["period"].as_f64().unwrap() > 0.05);
    assert!(
        last["actions"]["XDP_DROP"]["packets"].as_u64().unwrap() >= 3,
        "{last}"
    );
    assert!(
        last["actions"]["XDP_DROP"]["bytes"].as_u64().unwrap() >= 3 * 98,
        "{last}"
    );
    fw.ok(&["unload", ifname]);
}

#[test]
fn xdp_pass_lets_ping_through_and_counts() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let out = fw.ok(&["load", ifname, "--program", "xdp_pass"]);
    assert!(out.contains("native mode"), "{out}");
    assert!(fw.link_path(ifname).exists(), "the link is pinned");
    assert!(ping(&lab, 3), "ping failed through xdp_pass");
    let counters = counters(ifname);
    assert!(counters.action("XDP_PASS").packets >= 3, "{counters:?}");
    assert_eq!(counters.action("XDP_DROP").packets, 0, "{counters:?}");

    let table = fw.ok(&["stats", ifname, "--interval", "0.1", "--count", "1"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("XDP-action"), "{table}");
    assert!(
        lines[3].starts_with("XDP_PASS") && lines[3].contains("pkts"),
        "{table}"
    );

    let status = fw.status(ifname);
    assert_eq!(status.as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status[0]["program"], "xdp_pass");
    assert_eq!(status[0]["mode"], "native");
    assert_eq!(status[0]["owner"], "xdpctl");
    assert_eq!(status[0]["interface"], ifname);
    fw.ok(&["unload", ifname]);
}

#[test]
fn force_replaces_the_program_atomically_under_traffic() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname, "--program", "xdp_pass"]);
    let link_before = fw.pinned_link_id(ifname);
    let prog_before = attached(ifname)[0].prog_id;

    // 300 pings over ~3 s; the replace lands in the middle of them.
    let pinger = lab
        .ping_command(300, false, 0.01)
        .unwrap()
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(700));
    let out = fw.ok(&["load", ifname, "--program", "xdp_drop", "--force"]);
    assert!(out.contains("atomically"), "{out}");
    let ping_out = pinger.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&ping_out.stdout);

    // The same link now runs a new program: the swap happened in place.
    assert_eq!(fw.pinned_link_id(ifname), link_before);
    let now = attached(ifname);
    assert_eq!(now.len(), 1);
    assert_ne!(now[0].prog_id, prog_before);
    // Counters carried over: passes from before the swap, drops after it.
    let counters = counters(ifname);
    assert!(counters.action("XDP_PASS").packets >= 10, "{counters:?}");
    assert!(counters.action("XDP_DROP").packets >= 10, "{counters:?}");
    // Replies came back before the swap and stopped after it.
    let received: u32 = summary
        .lines()
        .find_map(|line| {
            line.split(", ")
                .find_map(|part| part.strip_suffix(" received"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {summary}"));
    assert!(
        received > 0 && received < 300,
        "{received} of 300 replies: {summary}"
    );
    fw.ok(&["unload", ifname]);
}

#[test]
fn a_second_load_without_force_is_refused_and_changes_nothing() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname, "--program", "xdp_pass"]);
    let prog = attached(ifname)[0].prog_id;
    let err = fw.err(&["load", ifname, "--program", "xdp_drop"]);
    assert!(err.contains("already has xdpctl's XDP program"), "{err}");
    assert!(
        err.contains(&format!("id {prog}")) && err.contains("xdp_pass"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(attached(ifname)[0].prog_id, prog);
    assert!(ping(&lab, 1));
    fw.ok(&["unload", ifname]);
}

#[test]
fn unload_leaves_no_pin_and_no_attachment() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname, "--program", "xdp_drop"]);
    assert!(fw.interface_dir(ifname).exists());
    let out = fw.ok(&["unload", ifname]);
    assert!(out.contains("Unloaded"), "{out}");
    assert!(!fw.interface_dir(ifname).exists(), "pins left behind");
    assert!(attached(ifname).is_empty(), "still attached");
    assert!(ping(&lab, 1), "traffic flows again");
    let err = fw.err(&["unload", ifname]);
    assert!(err.contains("no XDP program"), "{err}");
}

#[test]
fn unload_all_detaches_every_xdpctl_program() {
    require_root!();
    let (a, b) = (lab(), lab());
    let (a, b) = (a.outer_ifname(), b.outer_ifname());
    // A private mount namespace with a bpffs of its own: `--all` must not see (and unload) the
    // programs of the tests running beside this one. No Instance on purpose: this and
    // bpffs_is_mounted_when_missing are the tests of the default pin root, /sys/fs/bpf/xdpctl,
    // which is private here (in a bpffs that dies with the namespace).
    let script = format!(
        "set -e; umount /sys/fs/bpf 2>/dev/null || true; umount /sys/fs/bpf 2>/dev/null || true; \
         x={x}; $x load {a} --program xdp_drop; $x load {b} -p xdp_pass --mode generic; \
         $x unload --all; echo status-a; $x status {a} --json; echo status-b; $x status {b} --json; \
         echo pins; ls /sys/fs/bpf; $x unload --all",
        x = xdpctl_path()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (unloaded, rest) = stdout.split_once("status-a").unwrap();
    assert!(
        unloaded.contains(&format!("from {a}")) && unloaded.contains(&format!("from {b}")),
        "{stdout}"
    );
    let (status_a, rest) = rest.split_once("status-b").unwrap();
    let (status_b, rest) = rest.split_once("pins").unwrap();
    assert_eq!(status_a.trim(), "[]", "{stdout}");
    assert_eq!(status_b.trim(), "[]", "{stdout}");
    assert!(
        !rest.lines().any(|line| line.trim() == "xdpctl"),
        "pins left: {stdout}"
    );
    assert!(
        rest.contains("No interface has a program from xdpctl"),
        "{stdout}"
    );
    assert!(attached(a).is_empty() && attached(b).is_empty());
}

#[test]
fn run_attaches_until_a_signal_then_detaches_and_leaves_nothing() {
    require_root!();
    let fw = Instance::new();
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let lab = lab();
        let ifname = lab.outer_ifname();
        let child = fw
            .command()
            .args([
                "run",
                ifname,
                "--program",
                "xdp_pass",
                "--interval",
                "0.2",
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while attached(ifname).is_empty() {
            assert!(Instant::now() < deadline, "run never attached");
            sleep(Duration::from_millis(50));
        }
        let status = fw.status(ifname);
        assert_eq!(status[0]["owner"], "xdpctl", "{status}");
        assert!(!fw.interface_dir(ifname).exists(), "run must not pin");
        assert!(ping(&lab, 3));
        sleep(Duration::from_millis(500));
        // A load over it is refused and names the run.
        let err = fw.err(&["load", ifname, "--force"]);
        assert!(err.contains("xdpctl run"), "{err}");

        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{signal}: {stderr}");
        assert!(stderr.contains("Detached"), "{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let passed = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["actions"]["XDP_PASS"]["packets"].as_u64())
            .max()
            .unwrap_or(0);
        assert!(passed >= 3, "run printed the passes: {stdout}");
        assert!(attached(ifname).is_empty(), "{signal}: still attached");
        assert!(
            pins::read_run_record(ifname).is_none(),
            "run record left behind"
        );
    }
}

#[test]
fn a_users_own_object_loads_through_obj_and_has_stats() {
    require_root!();
    let fw = Instance::new();
    let object = user_object();
    let object = object.to_str().unwrap();
    let lab = lab();
    let ifname = lab.outer_ifname();

    // Several XDP programs in the object: the user must choose.
    let err = fw.err(&["load", ifname, "--obj", object]);
    assert!(
        err.contains("several XDP programs") && err.contains("xdp_user_count"),
        "{err}"
    );
    let err = fw.err(&["load", ifname, "--obj", object, "--program", "nope"]);
    assert!(err.contains("no program named 'nope'"), "{err}");

    // The unverifiable program in the same object does not stop the good one from loading.
    fw.ok(&[
        "load",
        ifname,
        "--obj",
        object,
        "--program",
        "xdp_user_count",
    ]);
    let status = fw.status(ifname);
    assert_eq!(status[0]["program"], "xdp_user_count", "{status}");
    // A name longer than the kernel's 15 characters shows whole (from the program's BTF).
    fw.ok(&[
        "load",
        ifname,
        "--obj",
        object,
        "--program",
        "xdp_user_with_a_long_name",
        "--force",
    ]);
    let status = fw.status(ifname);
    assert_eq!(
        status[0]["program"], "xdp_user_with_a_long_name",
        "{status}"
    );
    fw.ok(&[
        "load",
        ifname,
        "--obj",
        object,
        "--program",
        "xdp_user_count",
        "--force",
    ]);
    assert!(ping(&lab, 3));
    assert!(counters(ifname).action("XDP_PASS").packets >= 3);

    // A program without an xdp_stats_map: stats says why there is nothing to show.
    fw.ok(&[
        "load",
        ifname,
        "--obj",
        object,
        "--program",
        "xdp_user_plain",
        "--force",
    ]);
    let err = fw.err(&["stats", ifname, "--count", "1"]);
    assert!(err.contains("no xdp_stats_map"), "{err}");
    fw.ok(&["unload", ifname]);
}

#[test]
fn a_verifier_rejection_shows_the_log_tail_and_leaves_nothing() {
    require_root!();
    let fw = Instance::new();
    let object = user_object();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let err = fw.err(&[
        "load",
        ifname,
        "--obj",
        object.to_str().unwrap(),
        "--program",
        "xdp_unchecked",
    ]);
    assert!(
        err.contains("verifier rejected program 'xdp_unchecked'"),
        "{err}"
    );
    assert!(err.contains("invalid access to packet"), "{err}");
    assert!(attached(ifname).is_empty());
    assert!(!fw.interface_dir(ifname).exists());
}

#[test]
fn modes_generic_and_auto_and_no_mode_switch_on_replace() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    fw.ok(&["load", ifname, "-p", "xdp_pass", "--mode", "generic"]);
    assert_eq!(attached(ifname)[0].mode, AttachedMode::Generic);
    assert!(ping(&lab, 1));
    let err = fw.err(&[
        "load",
        ifname,
        "--program",
        "xdp_drop",
        "--force",
        "--mode",
        "native",
    ]);
    assert!(
        err.contains("generic mode") && err.contains("unload"),
        "{err}"
    );
    // auto is satisfied by the generic link: replaced in place.
    fw.ok(&[
        "load",
        ifname,
        "--program",
        "xdp_drop",
        "--force",
        "--mode",
        "auto",
    ]);
    assert_eq!(attached(ifname)[0].mode, AttachedMode::Generic);
    assert!(!ping(&lab, 1));
    fw.ok(&["unload", ifname]);
    // veth supports native XDP, so auto picks native.
    fw.ok(&["load", ifname, "-p", "xdp_pass", "--mode", "auto"]);
    assert_eq!(attached(ifname)[0].mode, AttachedMode::Native);
    fw.ok(&["unload", ifname]);
}

#[test]
fn another_tools_program_is_named_refused_and_replaced_only_with_force() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let ifindex = xdpctl::sys::attach::ifindex(ifname).unwrap();
    // Another tool: a netlink attachment, as `ip link set dev X xdp ...` makes.
    let source = xdpctl::sys::programs::Source::from_args(Some("xdp_pass"), None).unwrap();
    let theirs = xdpctl::sys::programs::load(&source, None).unwrap();
    libbpf_rs::Xdp::new(theirs.fd())
        .attach(ifindex as i32, libbpf_rs::XdpFlags::DRV_MODE)
        .unwrap();
    let their_id = theirs.id().unwrap();
    drop(theirs);

    let status = fw.status(ifname);
    assert_eq!(status[0]["owner"], "other", "{status}");
    assert_eq!(status[0]["id"], their_id);
    let err = fw.err(&["load", ifname]);
    assert!(
        err.contains("another tool") && err.contains(&format!("id {their_id}")),
        "{err}"
    );
    let err = fw.err(&["unload", ifname]);
    assert!(err.contains("not loaded by xdpctl"), "{err}");

    fw.ok(&["load", ifname, "--program", "xdp_drop", "--force"]);
    let status = fw.status(ifname);
    assert_eq!(status[0]["owner"], "xdpctl", "{status}");
    assert_eq!(status[0]["program"], "xdp_drop");
    assert!(!ping(&lab, 1));
    fw.ok(&["unload", ifname]);
    assert!(attached(ifname).is_empty());
}

#[test]
fn a_stale_pin_of_a_deleted_interface_is_cleaned_up() {
    require_root!();
    let fw = Instance::new();
    let name = {
        let lab = lab();
        fw.ok(&["load", lab.outer_ifname(), "-p", "xdp_pass"]);
        // Delete the interface behind xdpctl's back; the pinned link becomes defunct.
        let status = Command::new("ip")
            .args(["link", "del", "dev", lab.outer_ifname()])
            .status()
            .unwrap();
        assert!(status.success());
        let link = xdpctl::sys::attach::open_pinned(&fw.link_path(lab.outer_ifname())).unwrap();
        assert_eq!(
            xdpctl::sys::attach::link_summary(link.as_fd())
                .unwrap()
                .ifindex,
            0
        );
        let out = fw.ok(&["unload", lab.outer_ifname()]);
        assert!(out.contains("no longer exists"), "{out}");
        lab.outer_ifname().to_owned()
    };
    assert!(!fw.interface_dir(&name).exists());
}

#[test]
fn bpffs_is_mounted_when_missing() {
    require_root!();
    let lab = lab();
    let ifname = lab.outer_ifname();
    // In a private mount namespace, so the host's bpffs and other tests' pins are untouched.
    // No Instance on purpose: the default pin root, in a bpffs of its own (see
    // unload_all_detaches_every_xdpctl_program).
    let script = format!(
        "umount /sys/fs/bpf 2>/dev/null; umount /sys/fs/bpf 2>/dev/null; \
         if grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then echo still-mounted; exit 3; fi; \
         {} load {ifname} -p xdp_pass && grep ' /sys/fs/bpf bpf ' /proc/mounts",
        xdpctl_path()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Loaded xdp_pass"), "{stdout}");
    assert!(stdout.contains("/sys/fs/bpf bpf"), "{stdout}");
    // That bpffs died with its namespace, and the pinned link with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !attached(ifname).is_empty() {
        assert!(Instant::now() < deadline, "the link outlived its bpffs");
        sleep(Duration::from_millis(50));
    }
}

#[test]
fn errors_name_the_problem() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    let err = fw.err(&["load", "nosuchif0"]);
    assert!(err.contains("no such interface: 'nosuchif0'"), "{err}");
    let err = fw.err(&["stats", "nosuchif0"]);
    assert!(err.contains("nosuchif0"), "{err}");
    let err = fw.err(&["load", ifname, "--program", "xdp_bogus"]);
    assert!(err.contains("unknown program 'xdp_bogus'"), "{err}");
    let err = fw.err(&["load", ifname, "--obj", "/nonexistent/prog.o"]);
    assert!(err.contains("no such BPF object file"), "{err}");
    assert!(attached(ifname).is_empty());
    assert!(!fw.interface_dir(ifname).exists());

    // Without privileges: one clear message naming the capabilities.
    let out = fw
        .with_root(Command::new("setpriv"))
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(xdpctl_path())
        .args(["load", ifname])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CAP_SYS_ADMIN") && stderr.contains("CAP_NET_ADMIN"),
        "{stderr}"
    );
    assert!(attached(ifname).is_empty());
}
