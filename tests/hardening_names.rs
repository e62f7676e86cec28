//! Hardening (issue 12): every path built from user text (interface and lab names, the pin
//! root). Root tests use a private pin root, their own labs, and (where a path must be able to
//! reach out of bpffs) a bpffs of their own mounted in a temporary directory. The locks, the
//! capabilities and the messages are in tests/hardening_locks.rs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Names no interface can have: paths, the pins' namespace separator, whitespace, a template,
/// too long, empty.
const BAD_NAMES: &[&str] = &[
    "..",
    ".",
    "../rules",
    "../../../x",
    "a/b",
    "eth0:1",
    "a b",
    "tab\tx",
    "eth%d",
    "a234567890abcdef",
    "",
];

/// A temporary directory (made with mkdtemp) with a fresh bpffs mounted at `bpf/` in it;
/// unmounted and removed when dropped, even if the mount failed.
struct FreshBpffs {
    dir: tempfile::TempDir,
}

impl FreshBpffs {
    fn new() -> FreshBpffs {
        let fresh = FreshBpffs { dir: temp_dir() };
        fs::create_dir(fresh.bpffs()).unwrap();
        nix::mount::mount(
            Some("bpf"),
            &fresh.bpffs(),
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .expect("mounting a bpffs");
        fresh
    }

    fn bpffs(&self) -> PathBuf {
        self.dir.path().join("bpf")
    }
}

impl Drop for FreshBpffs {
    fn drop(&mut self) {
        // Then the TempDir removes the directory.
        let _ = nix::mount::umount2(&self.bpffs(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A plain temporary directory (not bpffs), made with mkdtemp, removed when dropped.
fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("xdpctl-hn-")
        .tempdir()
        .unwrap()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_interface_argument_refuses_a_bad_name_and_states_the_rule() {
    // A private, absent pin root: whatever happens, nothing real is in reach.
    let root = format!("/sys/fs/bpf/xdpctl-hn-absent-{}", std::process::id());
    let interface_commands: &[&[&str]] = &[
        &["load", "@"],
        &["unload", "@"],
        &["status", "@"],
        &["stats", "@"],
        &["run", "@"],
        &["top", "@"],
        &["history", "@"],
        &["graph", "@", "-o", "/nonexistent/never.svg"],
        &["watch", "@"],
        &["ports", "@"],
        &["flood", "@"],
        &["trace", "--iface", "@"],
    ];
    let lab_commands: &[&[&str]] = &[
        &["testenv", "setup", "--name", "@"],
        &["testenv", "teardown", "--name", "@"],
        &["testenv", "status", "--name", "@"],
        &["testenv", "exec", "--name", "@", "--", "true"],
        &["testenv", "enter", "--name", "@"],
        &["testenv", "ping", "--name", "@"],
    ];
    for (commands, rule) in [
        (
            interface_commands,
            "1 to 15 bytes, without '/', ':', '%' or whitespace",
        ),
        (lab_commands, "1-15 characters of letters, digits"),
    ] {
        for template in commands {
            for bad in BAD_NAMES {
                let args: Vec<&str> = template
                    .iter()
                    .map(|arg| if *arg == "@" { *bad } else { *arg })
                    .collect();
                let out = Command::new(xdpctl_path())
                    .args(&args)
                    .env("XDPCTL_PIN_ROOT", &root)
                    .output()
                    .unwrap();
                let stderr = stderr_of(&out);
                assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
                assert!(stderr.contains(rule), "{args:?}: {stderr}");
                assert!(
                    stderr.contains(&xdpctl::input::shown(bad)),
                    "{args:?} does not name {bad:?}: {stderr}"
                );
            }
        }
    }
    assert!(!Path::new(&root).exists());
}

#[test]
fn unload_of_a_path_instead_of_a_name_touches_nothing() {
    require_root!();
    // The pin root sits three levels below the temporary directory, so "../../../victim" from
    // its `if/` directory reaches a real directory outside bpffs.
    let fresh = FreshBpffs::new();
    let victim = fresh.dir.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("keep"), "must survive").unwrap();
    let inst = Instance {
        root: fresh.bpffs().join("r"),
    };
    let lab = lab();
    let ifname = lab.outer_ifname();
    inst.ok(&["load", ifname]);
    inst.ok(&["block", "192.0.2.7"]);
    let link_pin = inst.root.join("if").join(ifname).join("link");
    assert!(link_pin.exists());
    for bad in ["../../../victim", "..", ".", "../rules"] {
        let out = inst.run(&["unload", bad]);
        let stderr = stderr_of(&out);
        assert!(
            victim.join("keep").exists(),
            "unload {bad} removed {victim:?}"
        );
        assert!(link_pin.exists(), "unload {bad} removed the link pin");
        assert!(
            inst.root.join("rules/fw_config").exists(),
            "unload {bad} removed the rules"
        );
        assert_eq!(out.status.code(), Some(2), "unload {bad}: {stderr}");
        assert!(stderr.contains("not an interface name"), "{stderr}");
        let status = inst.json(&["status", ifname, "--json"]);
        assert_eq!(status[0]["program"], "firewall", "{status}");
        assert_eq!(status[0]["owner"], "xdpctl", "{status}");
        let list = inst.json(&["list", "--json"]);
        assert_eq!(list["block"][0]["prefix"], "192.0.2.7/32", "{list}");
    }
    inst.ok(&["unload", ifname]);
}

#[test]
fn a_pin_root_outside_bpffs_is_refused_and_left_alone() {
    require_root!();
    let plain = temp_dir();
    let plain = plain.path();
    fs::create_dir_all(plain.join("rules")).unwrap();
    fs::write(plain.join("rules/keep"), "not a pin").unwrap();
    let lab = lab();
    // Each of these reaches `plain` (relative: from there) if it is not refused.
    let climbing = format!("/sys/fs/bpf/../../..{}", plain.display());
    for (root, why) in [
        (plain.to_str().unwrap(), "is not inside a bpffs mount"),
        (".", "is not an absolute path"),
        (climbing.as_str(), "has '.' or '..' in it"),
    ] {
        for args in [
            &["unload", "--all"][..],
            &["block", "192.0.2.1"],
            &["load", lab.outer_ifname()],
        ] {
            assert_pin_root_refused(root, why, args, plain);
            assert!(plain.join("rules/keep").exists(), "{args:?} removed it");
        }
    }
    assert!(attached(lab.outer_ifname()).is_empty());
}

/// Runs xdpctl with `XDPCTL_PIN_ROOT=root` from `cwd`: it must fail with exit 1, saying why the
/// root was refused.
fn assert_pin_root_refused(root: &str, why: &str, args: &[&str], cwd: &Path) {
    let out = Command::new(xdpctl_path())
        .args(args)
        .env("XDPCTL_PIN_ROOT", root)
        .current_dir(cwd)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{root} {args:?}: {stderr}");
    assert!(
        stderr.contains(&format!("XDPCTL_PIN_ROOT={root} {why}")),
        "{root} {args:?}: {stderr}"
    );
}

#[test]
fn a_bpffs_mount_or_another_tools_directory_is_no_pin_root() {
    require_root!();
    // A bpffs whose top looks like xdpctl's layout (another tool's rules and if/), and a
    // directory in it that holds another tool's pins beside a `rules`.
    let fresh = FreshBpffs::new();
    let mount = fresh.bpffs();
    let tool = mount.join("tool");
    let theirs = [
        mount.join("rules"),
        mount.join("if/eth9"),
        tool.join("rules"),
        tool.join("maps"),
    ];
    for dir in &theirs {
        fs::create_dir_all(dir).unwrap();
    }
    let spelled = format!("{}/", mount.display());
    for (root, why) in [
        (mount.to_str().unwrap(), "is a mount point itself"),
        (spelled.as_str(), "is a mount point itself"),
        (
            tool.to_str().unwrap(),
            "holds 'maps', which xdpctl does not make",
        ),
    ] {
        for args in [&["unload", "--all"][..], &["block", "192.0.2.1"]] {
            assert_pin_root_refused(root, why, args, &std::env::current_dir().unwrap());
            for dir in &theirs {
                assert!(dir.is_dir(), "{root} {args:?} removed {dir:?}");
            }
            assert!(
                !mount.join("rules/fw_config").exists() && !tool.join("rules/fw_config").exists()
            );
        }
    }
}

#[test]
fn a_huge_argument_is_echoed_cut_short() {
    // Below the kernel's limit for one argument (128 KiB).
    let huge = "x".repeat(100_000);
    let huge_number = "9".repeat(100_000);
    let fw = Instance::new();
    for args in [
        &["unload", &huge][..],
        &["status", &huge],
        &["testenv", "setup", "--name", &huge],
        &["list", "--lock-timeout", &huge_number],
    ] {
        let out = fw.run(args);
        let stderr = stderr_of(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            &stderr[..stderr.len().min(300)]
        );
        assert!(
            stderr.len() < 2000 && stderr.contains("…"),
            "{} bytes: {}",
            stderr.len(),
            &stderr[..stderr.len().min(300)]
        );
    }
}

#[test]
fn a_program_pinned_by_another_instance_is_xdpctls_not_another_tools() {
    require_root!();
    let fresh = FreshBpffs::new();
    let here = Instance {
        root: fresh.bpffs().join("r"),
    };
    let there = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    there.ok(&["load", ifname]);
    let status = here.json(&["status", ifname, "--json"]);
    assert_eq!(
        status[0]["owner"],
        format!("xdpctl {}", there.root.display()),
        "{status}"
    );
    let hint = format!(
        "XDPCTL_PIN_ROOT={} xdpctl unload {ifname}",
        there.root.display()
    );
    for args in [
        &["load", ifname][..],
        &["load", ifname, "--force"],
        &["unload", ifname],
    ] {
        let err = here.err(args);
        assert!(
            err.contains("another xdpctl instance") && err.contains(&hint),
            "{args:?}: {err}"
        );
        assert!(!err.contains("another tool"), "{args:?}: {err}");
    }
    assert_eq!(
        there.json(&["status", ifname, "--json"])[0]["owner"],
        "xdpctl"
    );
    there.ok(&["unload", ifname]);

    // The other way round: loaded from the fresh bpffs, seen from /sys/fs/bpf.
    here.ok(&["load", ifname, "-p", "xdp_pass"]);
    let status = there.json(&["status", ifname, "--json"]);
    assert_eq!(
        status[0]["owner"],
        format!("xdpctl {}", here.root.display()),
        "{status}"
    );
    here.ok(&["unload", ifname]);
    assert!(attached(ifname).is_empty());
}

#[test]
fn the_name_rule_is_the_kernels() {
    require_root!();
    let lab = lab();
    let mut names: Vec<String> = (1u8..0x80)
        .map(|byte| format!("a{}b", byte as char))
        .collect();
    names.extend(
        [
            ".",
            "..",
            "...",
            "a234567890abcde",
            "a234567890abcdef",
            "à",
            "é",
            "\u{feff}ab",
            "ab%d",
            "\u{a0}x",
        ]
        .map(String::from),
    );
    let ip = |args: &[&str]| {
        lab.command("ip")
            .unwrap()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let mut disagree = Vec::new();
    for name in &names {
        // The kernel accepts a name when an interface of exactly that name can exist.
        let made = ip(&[
            "link", "add", name, "type", "veth", "peer", "name", "hnpeer",
        ]);
        let exists = made && ip(&["link", "show", "dev", name]);
        if made {
            ip(&["link", "del", "hnpeer"]);
        }
        if exists != xdpctl::sys::ifname::check(name).is_ok() {
            disagree.push(format!("{name:?}: kernel {exists}"));
        }
    }
    assert!(disagree.is_empty(), "{disagree:?}");
}

#[test]
fn lab_teardown_deletes_only_a_veth() {
    require_root!();
    // A lab record naming a bridge (a stray file in /run/xdpctl/testenv): in a network
    // namespace of this thread's own, so nothing else sees the bridge.
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let name = format!("hnbr{:x}", std::process::id() & 0xffff);
        let made = Command::new("ip")
            .args(["link", "add", &name, "type", "bridge"])
            .status()
            .unwrap();
        assert!(made.success());
        let lab = xdpctl::lab::testenv::Lab {
            name: name.clone(),
            index: 250,
        };
        let err = lab.teardown().unwrap_err().to_string();
        assert!(err.contains("not the lab's veth"), "{err}");
        assert!(
            nix::net::if_::if_nametoindex(name.as_str()).is_ok(),
            "bridge deleted"
        );
    })
    .join()
    .unwrap();
}

/// Runs `ip ARGS` in this (the root) network namespace; true if it succeeded.
fn ip_ok(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A child of `parent` named like a VLAN (`PARENT.7`), deleted when dropped, and by the kernel
/// with its parent anyway. A macvlan stands in for the VLAN: 802.1Q is optional in kernels
/// (this VM's has none), and the dot in the name is what bpffs refuses.
struct DottedChild(String);

impl DottedChild {
    fn new(parent: &str, mac: &str) -> DottedChild {
        let child = DottedChild(format!("{parent}.7"));
        assert!(child.0.len() <= 15, "{} is too long", child.0);
        let made = ip_ok(&[
            "link", "add", "link", parent, "name", &child.0, "address", mac, "type", "macvlan",
        ]) && ip_ok(&["link", "set", &child.0, "up"]);
        assert!(made, "making the macvlan {}", child.0);
        child
    }
}

impl Drop for DottedChild {
    fn drop(&mut self) {
        ip_ok(&["link", "del", "dev", &self.0]);
    }
}

/// The packets of one action on `ifname` after `send` ran.
fn more_packets(ifname: &str, action: &str, send: impl FnOnce()) -> u64 {
    let before = counters(ifname).action(action).packets;
    send();
    counters(ifname).action(action).packets - before
}

#[test]
fn a_vlan_interface_with_a_dot_loads_lists_and_unloads() {
    require_root!();
    let lab = lab();
    let mac = format!("02:58:44:51:{:02x}:07", lab.index);
    let vlan = DottedChild::new(lab.outer_ifname(), &mac);
    let inst = Instance::new();
    let ifname = vlan.0.as_str();
    // Frames from inside the lab to this address go to the macvlan, and through its program.
    let target = format!("10.11.{}.7", lab.index);
    let inner = lab.inner_ipv4().to_string();
    let neigh = lab
        .command("ip")
        .unwrap()
        .args(["neigh", "replace", &target, "lladdr", &mac, "dev", "veth0"])
        .status()
        .unwrap();
    assert!(neigh.success());
    let send = || {
        let target: std::net::SocketAddr = format!("{target}:9").parse().unwrap();
        in_lab(&lab, move || {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..5 {
                socket.send_to(b"xdpctl test", target).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(100));
    };

    for unload in [&["unload", ifname][..], &["unload", "--all"]] {
        inst.ok(&["load", ifname, "--mode", "generic"]);
        let pins: Vec<String> = fs::read_dir(inst.root.join("if"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(pins, [ifname.replace('.', "%")]);
        let status = inst.json(&["status", ifname, "--json"]);
        assert_eq!(status[0]["interface"], ifname, "{status}");
        assert_eq!(status[0]["owner"], "xdpctl", "{status}");
        assert!(more_packets(ifname, "XDP_PASS", send) >= 5);

        inst.ok(&["block", &inner]);
        assert!(more_packets(ifname, "XDP_DROP", send) >= 5);
        let rules = inst.json(&["list", "--json"]);
        assert_eq!(
            rules["block"][0]["prefix"],
            format!("{inner}/32"),
            "{rules}"
        );
        assert!(rules["block"][0]["hits"].as_u64() >= Some(5), "{rules}");
        inst.ok(&["unblock", &inner]);

        let out = inst.ok(unload);
        assert!(out.contains(&format!("from {ifname}")), "{unload:?}: {out}");
        assert!(attached(ifname).is_empty(), "{unload:?}");
        assert!(!inst.root.join("if").exists(), "{unload:?} left pins");
    }
    inst.ok(&["unload", "--all"]);
    assert!(!inst.root.exists(), "pins left in {}", inst.root.display());

    // Inside a network namespace the pin directory gets the namespace's suffix as well.
    let inside_ip = |args: &[&str]| {
        lab.command("ip")
            .unwrap()
            .args(args)
            .status()
            .unwrap()
            .success()
    };
    assert!(
        inside_ip(&["link", "add", "link", "veth0", "name", "veth0.7", "type", "macvlan"])
            && inside_ip(&["link", "set", "veth0.7", "up"])
    );
    inst.inside(&lab, &["load", "veth0.7", "--mode", "generic"]);
    let status: Value =
        serde_json::from_str(&inst.inside(&lab, &["status", "veth0.7", "--json"])).unwrap();
    assert_eq!(status[0]["owner"], "xdpctl", "{status}");
    // From outside, the rules stay while it uses them, and the refusal names it as it is named.
    let err = inst.err(&["unload", "--all"]);
    let fix = format!(
        "nsenter --net=/run/netns/{} xdpctl unload veth0.7",
        lab.outer_ifname()
    );
    assert!(
        err.contains("on veth0.7 in network namespace") && err.contains(&fix),
        "{err}"
    );
    let out = inst.inside(&lab, &["unload", "--all"]);
    assert!(out.contains("from veth0.7"), "{out}");
    assert!(!inst.root.exists(), "pins left in {}", inst.root.display());
}

#[test]
fn a_pin_root_with_a_dot_is_refused_with_the_fix_before_anything_is_made() {
    require_root!();
    let lab = lab();
    let plain = Instance::new();
    let dotted = Instance {
        root: PathBuf::from(format!("{}.d", plain.root.display())),
    };
    for args in [&["block", "192.0.2.1"][..], &["load", lab.outer_ifname()]] {
        let err = dotted.err(args);
        assert!(
            err.contains("refuses a '.' in a name")
                && err.contains("set XDPCTL_PIN_ROOT to a new or empty directory"),
            "{args:?}: {err}"
        );
    }
    assert!(!dotted.root.exists());
    assert!(attached(lab.outer_ifname()).is_empty());
}
