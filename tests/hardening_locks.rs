//! Hardening (issue 12): the locks between xdpctl processes (the lock file nobody else may open,
//! waiting that says what it waits for and gives up), and messages that say what a concurrent
//! xdpctl did. Root tests use a private pin root; the tests that change /run/xdpctl do it in a
//! mount namespace of their own, on a tmpfs no other test sees. The capabilities xdpctl needs
//! are in hardening_privileges.rs, and how bad rules are shown in hardening_input.rs.

mod common;

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A child that is killed if the test fails before it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running command whose stderr lines arrive, each with the time since the spawn.
struct Running {
    child: Reaped,
    lines: mpsc::Receiver<(Duration, String)>,
    started: Instant,
}

impl Running {
    /// Spawns `command` with stdout discarded and stderr read line by line.
    fn spawn(command: &mut Command) -> Running {
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map(Reaped)
            .unwrap();
        let (send, lines) = mpsc::channel();
        let stderr = child.0.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|line| line.ok()) {
                if send.send((started.elapsed(), line)).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            started,
        }
    }

    /// The first line that contains `needle` (others, such as notes, are passed over), and
    /// when it came; fails if none came within `limit`.
    fn line_with(&self, needle: &str, limit: Duration) -> (Duration, String) {
        let deadline = Instant::now() + limit;
        let mut passed = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if line.contains(needle) => return (at, line),
                Ok((_, line)) => passed.push(line),
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?} within {limit:?}; got {passed:?}");
    }

    /// Waits for the child up to `limit` (killing it, and failing, after that), and returns
    /// how it ended with the rest of its stderr.
    fn finish(&mut self, limit: Duration, what: &str) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                panic!("{what} was still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = Vec::new();
        while let Ok((_, line)) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push(line);
        }
        (status, rest.join("\n"))
    }
}

/// A mount namespace of its own with an empty tmpfs on /run, kept alive by a sleeping process:
/// what a test does to /run/xdpctl there, no other test's xdpctl sees.
struct PrivateRun {
    holder: Reaped,
    ns: File,
}

impl PrivateRun {
    fn new() -> PrivateRun {
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs -o mode=755 tmpfs /run && echo ready && exec sleep 600")
            .stdout(Stdio::piped())
            .spawn()
            .map(Reaped)
            .unwrap();
        let mut ready = String::new();
        BufReader::new(holder.0.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "making the private /run");
        let ns = File::open(format!("/proc/{}/ns/mnt", holder.0.id())).unwrap();
        PrivateRun { holder, ns }
    }

    /// `path` of the namespace, as this process (outside it) reaches it.
    fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.holder.0.id()))
    }

    /// `program`, to be run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        let ns = self.ns.as_raw_fd();
        // SAFETY: only a system call between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(ns, libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }

    /// xdpctl with `inst`'s pin root, inside the namespace.
    fn xdpctl(&self, inst: &Instance) -> Command {
        let mut command = self.command(xdpctl_path());
        command.env("XDPCTL_PIN_ROOT", &inst.root);
        command
    }

    /// A process of `nobody` (no groups, no capabilities) that opened /run/xdpctl/locks as it
    /// was (for writing if `write`) and holds a lock on byte `slot` of it, until it is dropped.
    fn hold_as_nobody(&self, slot: u64, write: bool) -> Reaped {
        let path = CString::new("/run/xdpctl/locks").unwrap();
        let mut command = self.command("sleep");
        command.arg("600");
        // SAFETY: only system calls between fork and exec; `path` was allocated before.
        unsafe {
            command.pre_exec(move || {
                let failed = || Err(std::io::Error::last_os_error());
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return failed();
                }
                let mode = if write { libc::O_RDWR } else { libc::O_RDONLY };
                // Not close-on-exec: `sleep` keeps the fd, and with it the lock.
                let fd = libc::open(path.as_ptr(), mode);
                let kind = if write { libc::F_WRLCK } else { libc::F_RDLCK };
                let range = libc::flock {
                    l_type: kind as libc::c_short,
                    l_whence: libc::SEEK_SET as libc::c_short,
                    l_start: slot as libc::off_t,
                    l_len: 1,
                    l_pid: 0,
                };
                if fd < 0 || libc::fcntl(fd, libc::F_OFD_SETLK, &range) != 0 {
                    return failed();
                }
                Ok(())
            });
        }
        command
            .spawn()
            .map(Reaped)
            .expect("nobody locks the old file")
    }
}

/// Whether some open file description holds a lock on byte `slot` of the file at `path`.
fn byte_is_locked(path: &PathBuf, slot: u64) -> bool {
    let file = File::open(path).unwrap();
    let mut range = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: slot as libc::off_t,
        l_len: 1,
        l_pid: 0,
    };
    // SAFETY: F_OFD_GETLK on our own fd with a valid struct flock.
    assert_eq!(
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut range) },
        0
    );
    range.l_type != libc::F_UNLCK as libc::c_short
}

/// How /run/xdpctl was left by an older xdpctl, or by someone else.
struct Before {
    what: &'static str,
    dir_mode: u32,
    dir_owner: u32,
    /// The lock file's mode and owner; None: no lock file yet.
    file: Option<(u32, u32)>,
    /// Whether nobody opens it for writing (only its owner can) or for reading.
    write: bool,
    /// Whether a run record in the old directory is carried over.
    kept: bool,
}

#[test]
fn a_lock_file_others_could_open_is_replaced_and_an_fd_kept_on_it_stalls_nothing() {
    require_root!();
    let cases = [
        Before {
            what: "a lock file open to all (older xdpctl)",
            dir_mode: 0o700,
            dir_owner: 0,
            file: Some((0o644, 0)),
            write: false,
            kept: true,
        },
        Before {
            what: "both open to all (older xdpctl)",
            dir_mode: 0o755,
            dir_owner: 0,
            file: Some((0o644, 0)),
            write: false,
            kept: true,
        },
        Before {
            what: "both made by a user with capabilities, before root ran xdpctl",
            dir_mode: 0o700,
            dir_owner: 65534,
            file: Some((0o600, 65534)),
            write: true,
            kept: false,
        },
        Before {
            what: "nothing yet",
            dir_mode: 0,
            dir_owner: 0,
            file: None,
            write: false,
            kept: false,
        },
    ];
    for before in cases {
        let what = before.what;
        let private = PrivateRun::new();
        let inst = Instance::new();
        let (dir, file) = (
            private.path("/run/xdpctl"),
            private.path("/run/xdpctl/locks"),
        );
        let slot = xdpctl::sys::locks::slot(&format!("edit{}", inst.root.display()));
        let mut holder = None;
        if let Some((mode, owner)) = before.file {
            fs::create_dir_all(dir.join("run")).unwrap();
            fs::write(dir.join("run/kept"), "1 2\n").unwrap();
            fs::write(&file, "").unwrap();
            fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
            std::os::unix::fs::chown(&file, Some(owner), Some(owner)).unwrap();
            // nobody needs to reach the file to open it.
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
            holder = Some(private.hold_as_nobody(slot, before.write));
            assert!(byte_is_locked(&file, slot), "{what}: nobody holds no lock");
            fs::set_permissions(&dir, fs::Permissions::from_mode(before.dir_mode)).unwrap();
            std::os::unix::fs::chown(&dir, Some(before.dir_owner), Some(before.dir_owner)).unwrap();
        }
        let old_inode = fs::metadata(&file).map(|meta| meta.ino()).ok();

        let started = Instant::now();
        let out = private
            .xdpctl(&inst)
            .args(["block", "192.0.2.1", "--lock-timeout", "5"])
            .output()
            .unwrap();
        let stderr = stderr_of(&out);
        assert!(out.status.success(), "{what}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: stalled"
        );
        assert!(!stderr.contains("waiting for"), "{what}: {stderr}");
        if before.file.is_some() {
            assert!(
                stderr.contains("replaced by a new, private one"),
                "{what}: {stderr}"
            );
        }

        let (dir_meta, file_meta) = (fs::metadata(&dir).unwrap(), fs::metadata(&file).unwrap());
        assert_eq!(dir_meta.mode() & 0o7777, 0o700, "{what}: /run/xdpctl");
        assert_eq!(file_meta.mode() & 0o7777, 0o600, "{what}: its lock file");
        assert_eq!(
            (dir_meta.uid(), file_meta.uid(), file_meta.gid()),
            (0, 0, 0)
        );
        assert_ne!(Some(file_meta.ino()), old_inode, "{what}: mended in place");
        assert_eq!(
            dir.join("run/kept").exists(),
            before.kept,
            "{what}: run record"
        );
        if let Some(holder) = &mut holder {
            assert!(
                holder.0.try_wait().unwrap().is_none(),
                "{what}: the holder let go"
            );
        }
        // And nobody can open the new one, let alone lock a byte of it.
        let out = private
            .command("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["--inh-caps=-all", "cat", "/run/xdpctl/locks"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}: nobody opened the lock file");
        assert!(stderr_of(&out).contains("Permission denied"), "{what}");
        assert_eq!(inst.blocked(), ["192.0.2.1/32"], "{what}");
    }
}

#[test]
fn block_says_what_it_waits_for_and_gives_up_after_the_lock_timeout() {
    require_root!();
    let inst = Instance::new();
    inst.ok(&["block", "192.0.2.1"]);
    // Another process (this one) holds the instance's edit lock.
    let held = xdpctl::sys::locks::lock(&format!("edit{}", inst.root.display())).unwrap();
    let mut block =
        Running::spawn(
            inst.command()
                .args(["block", "192.0.2.2", "--lock-timeout", "6"]),
        );
    let lock = format!("the 'edit' lock of the pin root {}", inst.root.display());
    let (at, line) = block.line_with("waiting for", Duration::from_secs(10));
    // It waits a second before it says so; the rest is startup on a busy machine.
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(5)).contains(&at),
        "the waiting message came after {at:?}"
    );
    assert!(line.contains(&format!("waiting for {lock}")), "{line}");
    assert!(
        line.contains(&format!("held by pid {}", std::process::id())),
        "{line}"
    );
    let (status, rest) = block.finish(Duration::from_secs(20), "block");
    let elapsed = block.started.elapsed();
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(
        elapsed >= Duration::from_secs(6),
        "gave up after {elapsed:?}"
    );
    assert!(
        rest.contains("gave up after") && rest.contains(&lock) && rest.contains("--lock-timeout"),
        "{rest}"
    );
    drop(held);
    inst.ok(&["block", "192.0.2.2"]);
    assert_eq!(inst.blocked().len(), 2);
}

#[test]
fn every_spelling_of_a_pin_root_takes_the_same_lock() {
    require_root!();
    let inst = Instance::new();
    inst.ok(&["block", "192.0.2.1"]);
    let root = inst.root.to_str().unwrap().to_owned();
    let held = xdpctl::sys::locks::lock(&format!("edit{root}")).unwrap();
    let spellings = [
        format!("{root}/"),
        format!("/{root}"),
        root.replacen("/sys/fs/bpf/", "/sys/fs/bpf//", 1),
    ];
    let mut blocks: Vec<(&String, Running)> = spellings
        .iter()
        .map(|spelling| {
            let mut command = Command::new(xdpctl_path());
            command.env("XDPCTL_PIN_ROOT", spelling).args([
                "block",
                "192.0.2.2",
                "--lock-timeout",
                "2",
            ]);
            (spelling, Running::spawn(&mut command))
        })
        .collect();
    for (spelling, block) in &mut blocks {
        let (status, rest) = block.finish(Duration::from_secs(20), "block");
        assert_eq!(status.code(), Some(1), "{spelling}: {rest}");
        // The root as the lock names it, up to the ", held by" or ":" that follows it.
        let named = rest
            .split_once("the 'edit' lock of the pin root ")
            .map(|(_, after)| after.split([',', ':']).next().unwrap());
        assert!(rest.contains("gave up after"), "{spelling}: {rest}");
        assert_eq!(named, Some(root.as_str()), "{spelling}: {rest}");
    }
    drop(held);
    assert_eq!(inst.blocked(), ["192.0.2.1/32"]);
}

/// `xdpctl testenv teardown` of a lab name when dropped: for a test whose lab must not be made.
struct TeardownOnDrop<'a>(&'a Instance, String);

impl Drop for TeardownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["testenv", "teardown", "--name", &self.1]);
    }
}

#[test]
fn a_lab_setup_waits_for_the_lab_lock_and_gives_up() {
    require_root!();
    let fw = Instance::new();
    let name = TeardownOnDrop(&fw, xdpctl::lab::testenv::unique_name("hl"));
    // Other tests' labs wait meanwhile: hold it briefly.
    let held = xdpctl::sys::locks::lock(xdpctl::lab::testenv::LAB_LOCK).unwrap();
    let out = fw.run(&[
        "testenv",
        "setup",
        "--name",
        &name.1,
        "--lock-timeout",
        "1.5",
    ]);
    drop(held);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("waiting for the lock 'testenv'"),
        "{stderr}"
    );
    assert!(stderr.contains("gave up after"), "{stderr}");
    assert!(nix::net::if_::if_nametoindex(name.1.as_str()).is_err());
}

#[test]
fn a_forced_load_racing_an_unload_says_what_happened() {
    require_root!();
    let inst = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    inst.ok(&["load", ifname]);
    // Stall `load --force` after it has found xdpctl's link and before it swaps the program:
    // the firewall's load waits for the map-creation lock, which this process holds.
    let held = xdpctl::sys::locks::lock(&format!("maps{}", inst.root.display())).unwrap();
    let mut load = Running::spawn(inst.command().args(["load", ifname, "--force"]));
    let (_, line) = load.line_with("waiting for", Duration::from_secs(10));
    assert!(line.contains("waiting for the 'maps' lock"), "{line}");
    inst.ok(&["unload", ifname]);
    drop(held);
    let (status, rest) = load.finish(Duration::from_secs(30), "load --force");
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(rest.contains("it was unloaded meanwhile"), "{rest}");
    assert!(
        !rest.contains("os error") && !rest.contains("severed"),
        "{rest}"
    );
    assert!(attached(ifname).is_empty());
    assert!(!inst.root.join("if").join(ifname).exists());
}

#[test]
fn a_link_detached_behind_unloads_back_is_not_called_a_gone_interface() {
    require_root!();
    let inst = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname();
    inst.ok(&["load", ifname, "-p", "xdp_pass"]);
    // What a concurrent unload does first.
    let pin = inst.root.join("if").join(ifname).join("link");
    let link = xdpctl::sys::attach::open_pinned(&pin).unwrap();
    xdpctl::sys::attach::detach_link(std::os::fd::AsFd::as_fd(&link)).unwrap();
    let out = inst.ok(&["unload", ifname]);
    assert!(out.contains("had already been detached"), "{out}");
    assert!(!out.contains("no longer exists"), "{out}");
    assert!(!pin.exists());
}
