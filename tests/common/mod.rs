//! Shared by the integration tests: root gating, running the xdpctl binary, labs that clean up
//! after themselves, and compiling the user-side test object.
#![allow(dead_code)]

pub mod exporter;
pub mod random_frames;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use xdpctl::lab::testenv::{unique_name, LabGuard, LabPins};

/// True when the test may use BPF and network namespaces. Without root it skips with a message,
/// unless XDPCTL_REQUIRE_ROOT=1 (as in CI), where skipping would hide a failure: then it panics.
pub fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("XDPCTL_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test} needs root, and XDPCTL_REQUIRE_ROOT=1 forbids skipping it");
    }
    // Straight to fd 2, past libtest's capture, so the skip is seen.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {test}: needs root (XDPCTL_REQUIRE_ROOT=1 makes this a failure)\n")
            .as_bytes(),
    );
    false
}

/// `require_root!();` at the top of a test: [`have_root`] for the enclosing test, which returns
/// from it when it skips. The test's name comes from the path of a function declared in it, so
/// it is right however libtest runs the test (and in tests that macros generate).
macro_rules! require_root {
    () => {
        if !$crate::common::have_root($crate::common::test_name({
            fn here() {}
            std::any::type_name_of_val(&here)
        })) {
            return;
        }
    };
}
pub(crate) use require_root;

/// The test's path in its crate ("name" or "module::name") from the type name of a function
/// declared in it ("crate::module::name::here").
/// The firewall's verdict for one frame, by BPF_PROG_TEST_RUN.
pub fn firewall_verdict(skel: &xdpctl::skel::firewall::FirewallSkel, bytes: &[u8]) -> u32 {
    skel.progs
        .firewall
        .test_run(libbpf_rs::ProgramInput {
            data_in: Some(bytes),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

/// The firewall loaded (not attached) on maps of its own, for BPF_PROG_RUN. Leaked: a test
/// keeps it to its end.
pub fn loaded_firewall() -> (
    xdpctl::skel::firewall::FirewallSkel<'static>,
    xdpctl::firewall::FirewallMaps,
) {
    use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
    let object = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let skel = xdpctl::skel::firewall::FirewallSkelBuilder::default()
        .open(object)
        .expect("opening the firewall")
        .load()
        .expect("loading the firewall");
    let maps = xdpctl::firewall::FirewallMaps::from_object(skel.object()).unwrap();
    (skel, maps)
}

/// Pins this thread to one CPU, so BPF_PROG_RUN counts in that CPU's per-CPU maps only.
pub fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).expect("a CPU number");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("pinning to a CPU");
}

pub fn test_name(here: &'static str) -> &'static str {
    let in_crate = here.split_once("::").map_or(here, |(_, rest)| rest);
    in_crate.strip_suffix("::here").unwrap_or(in_crate)
}

/// The xdpctl binary. Run it through an [`Instance`] ([`Instance::command`], or
/// [`Instance::with_root`] for a command that runs it), so that it gets a private pin root:
/// spawned bare, it uses the global /sys/fs/bpf/xdpctl that other tests and the host share.
pub fn xdpctl_path() -> &'static str {
    env!("CARGO_BIN_EXE_xdpctl")
}

/// Fails the test, with the output, unless xdpctl succeeded. Returns stdout.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "xdpctl {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Fails the test, with the output, unless xdpctl failed with exit code 1. Returns stderr.
pub fn failed(args: &[&str], out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "xdpctl {args:?} should fail with 1:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// A fresh lab with a unique name, torn down when dropped, even on panic. Its teardown runs in
/// this process, whose pin root is the global one: so it touches no pins. Those of an
/// [`Instance`] go when the instance is dropped (or with its `testenv teardown`).
pub fn lab() -> LabGuard {
    LabGuard::setup_with(&unique_name("xt"), LabPins::Leave).expect("lab setup")
}

/// Pings the lab's outer interface from inside; true if every reply came back.
pub fn ping(lab: &LabGuard, count: u32) -> bool {
    replied(lab.ping_command(count, false, 0.05))
}

/// [`ping`] over IPv6.
pub fn ping6(lab: &LabGuard, count: u32) -> bool {
    replied(lab.ping_command(count, true, 0.05))
}

/// [`ping`] from another source address of the lab's inner end.
pub fn ping_from(lab: &LabGuard, source: std::net::IpAddr, count: u32) -> bool {
    replied(lab.ping_command_from(Some(source), count, false, 0.05))
}

fn replied(ping: anyhow::Result<Command>) -> bool {
    ping.unwrap().output().unwrap().status.success()
}

/// The per-action counters of the program on `ifname`.
pub fn counters(ifname: &str) -> xdpctl::counters::stats::Counters {
    let (maps, _) = xdpctl::counters::stats::stats_maps_of_interface(ifname).expect("stats map");
    xdpctl::counters::stats::read_counters(&maps.actions).expect("counters")
}

/// The XDP programs attached to `ifname`.
pub fn attached(ifname: &str) -> Vec<xdpctl::sys::attach::Attachment> {
    xdpctl::sys::attach::query(xdpctl::sys::attach::ifindex(ifname).unwrap()).unwrap()
}

/// tests/bpf/user_progs.bpf.c compiled with clang, as a user would, once per test binary.
pub fn user_object() -> PathBuf {
    static OBJECT: OnceLock<PathBuf> = OnceLock::new();
    OBJECT
        .get_or_init(|| {
            let root = env!("CARGO_MANIFEST_DIR");
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("user_progs-{}.bpf.o", std::process::id()));
            let status = Command::new("clang")
                .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
                .arg(format!("-I{root}/include"))
                .arg("-c")
                .arg(format!("{root}/tests/bpf/user_progs.bpf.c"))
                .arg("-o")
                .arg(&out)
                .status()
                .expect("clang runs (make deps installs it)");
            assert!(
                status.success(),
                "compiling tests/bpf/user_progs.bpf.c failed"
            );
            out
        })
        .clone()
}

/// A private xdpctl instance: its own pin root (XDPCTL_PIN_ROOT), hence its own rules and
/// interface pins, so tests run in parallel without seeing each other's, and none touches the
/// global /sys/fs/bpf/xdpctl. Only its children get XDPCTL_PIN_ROOT (the test threads share
/// one environment): paths in the test itself come from its methods, never from xdpctl::sys::pins.
/// Dropping it unloads everything it loaded and removes its pins.
pub struct Instance {
    pub root: PathBuf,
}

impl Instance {
    pub fn new() -> Instance {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Instance {
            root: PathBuf::from(format!(
                "/sys/fs/bpf/xdpctl-test-{}-{n}",
                std::process::id()
            )),
        }
    }

    pub fn command(&self) -> Command {
        self.with_root(Command::new(xdpctl_path()))
    }

    /// `command` (one that runs xdpctl: setpriv, a lab's setns...) with this pin root.
    pub fn with_root(&self, mut command: Command) -> Command {
        command.env("XDPCTL_PIN_ROOT", &self.root);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("xdpctl runs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    pub fn err(&self, args: &[&str]) -> String {
        failed(args, self.run(args))
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("JSON")
    }

    /// One `stats IFACE --json` sample over 0.1 s.
    pub fn stats_json(&self, ifname: &str) -> serde_json::Value {
        self.json(&["stats", ifname, "-i", "0.1", "-c", "1", "--json"])
    }

    /// The prefixes of the blocklist, as `list --json` shows them.
    pub fn blocked(&self) -> Vec<String> {
        self.json(&["list", "--json"])["block"]
            .as_array()
            .expect("a block list")
            .iter()
            .map(|e| e["prefix"].as_str().expect("a prefix").to_owned())
            .collect()
    }

    /// `xdpctl status IFACE --json`, parsed.
    pub fn status(&self, ifname: &str) -> serde_json::Value {
        self.json(&["status", ifname, "--json"])
    }

    /// xdpctl run inside the lab through `testenv exec`, which must succeed. Returns stdout.
    pub fn inside(&self, lab: &LabGuard, args: &[&str]) -> String {
        self.ok(&inside_args(lab.outer_ifname(), args))
    }

    /// Floods the lab's outer interface from veth0 inside it, with `xdpctl flood veth0 --json
    /// ARGS` (paced or not, as ARGS say), and returns its JSON report once the flood is over.
    /// `lab` is the lab's name (that of its outer interface), so threads can take it along.
    pub fn flood(&self, lab: &str, args: &[&str]) -> serde_json::Value {
        let mut flood_args = vec!["flood", "veth0", "--json"];
        flood_args.extend_from_slice(args);
        let out = self.ok(&inside_args(lab, &flood_args));
        serde_json::from_str(out.trim()).expect("the flood's JSON report")
    }

    /// [`Instance::flood`], and only the packets it says it sent.
    pub fn flood_packets(&self, lab: &str, args: &[&str]) -> u64 {
        let report = self.flood(lab, args);
        report["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no packet count in the flood's report: {report}"))
    }

    /// The pin directory of `ifname` (of the root network namespace, where tests run), as
    /// xdpctl lays it out under this pin root.
    pub fn interface_dir(&self, ifname: &str) -> PathBuf {
        let name = xdpctl::sys::pins::StateName::new(ifname, None).expect("an interface name");
        self.interfaces_dir().join(name.encoded())
    }

    /// Where the interfaces' pin directories are.
    pub fn interfaces_dir(&self) -> PathBuf {
        self.root.join("if")
    }

    /// The bpf_link pinned for `ifname`.
    pub fn link_path(&self, ifname: &str) -> PathBuf {
        self.interface_dir(ifname).join("link")
    }

    /// The id of the link pinned for `ifname`.
    pub fn pinned_link_id(&self, ifname: &str) -> u32 {
        let link = xdpctl::sys::attach::open_pinned(&self.link_path(ifname)).unwrap();
        xdpctl::sys::attach::link_summary(link.as_fd()).unwrap().id
    }

    /// The names of the pin directories of the interfaces, as written (`veth0:ns<inode>` for
    /// one inside a lab).
    pub fn pin_dirs(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.interfaces_dir()) else {
            return Vec::new();
        };
        dir.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.run(&["unload", "--all"]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `xdpctl testenv exec --name LAB -- xdpctl ARGS`: xdpctl run inside a lab's namespace, the
/// way a user runs it there. `lab` is the lab's name (that of its outer interface).
pub fn inside_args<'a>(lab: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["testenv", "exec", "--name", lab, "--", xdpctl_path()];
    full.extend_from_slice(args);
    full
}

/// Runs `f` on a thread inside the lab's network namespace.
pub fn in_lab<T: Send + 'static>(lab: &LabGuard, f: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = std::fs::File::open(lab.netns_path()).expect("lab netns");
    std::thread::spawn(move || {
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("lab thread")
}

/// Sends UDP datagrams from inside the lab to the outer address; true if one arrived.
pub fn udp_reaches(lab: &LabGuard, port: u16, ipv6: bool) -> bool {
    use std::net::{SocketAddr, UdpSocket};
    let target: SocketAddr = if ipv6 {
        (lab.outer_ipv6(), port).into()
    } else {
        (lab.outer_ipv4(), port).into()
    };
    let server = UdpSocket::bind(target).expect("bind on the lab's outer address");
    server
        .set_read_timeout(Some(std::time::Duration::from_millis(700)))
        .unwrap();
    in_lab(lab, move || {
        let local: SocketAddr = if ipv6 { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap();
        let client = UdpSocket::bind(local).unwrap();
        for _ in 0..3 {
            client.send_to(b"xdpctl test", target).unwrap();
        }
    });
    let mut buf = [0u8; 64];
    server.recv_from(&mut buf).is_ok()
}

/// Connects over TCP from inside the lab to the outer address; true if it connected.
pub fn tcp_connects(lab: &LabGuard, port: u16) -> bool {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    let target: SocketAddr = (lab.outer_ipv4(), port).into();
    let _listener = TcpListener::bind(target).expect("listen on the lab's outer address");
    in_lab(lab, move || {
        TcpStream::connect_timeout(&target, std::time::Duration::from_millis(1500)).is_ok()
    })
}

/// A free port for a test listener on the lab's outer address.
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
