//! Processes the pin tests run and constrain: a child that is always reaped, frozen at a
//! chosen moment, or denied one bpf(2) command.

use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A child xdpctl that is killed and reaped however the test ends, before the Instance and
/// the lab it uses are torn down (declare it after them).
pub struct Reaped(pub Child);

impl Reaped {
    pub fn spawn(command: &mut Command) -> Reaped {
        Reaped(command.spawn().expect("xdpctl starts"))
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }

    pub fn exited(&mut self) -> bool {
        self.0.try_wait().unwrap().is_some()
    }

    /// The process's state letter in /proc/PID/stat ('T' once a SIGSTOP took hold).
    pub fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).ok()?;
        stat.rsplit_once(") ")?.1.chars().next()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Freezes `child` with SIGSTOP, and waits until it is stopped (no syscall of it in progress).
/// False if it ended first.
pub fn freeze(child: &mut Reaped) -> bool {
    // A reaped child's pid may be anyone's by now: it gets no signal.
    if child.exited() {
        return false;
    }
    kill(child.pid(), Signal::SIGSTOP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.state() {
            Some('T') => return true,
            Some('Z') | None => return false,
            _ => {}
        }
        assert!(Instant::now() < deadline, "SIGSTOP did not stop the load");
        sleep(Duration::from_millis(1));
    }
}

/// Makes `command`'s process (and what it runs) fail bpf(2) command `bpf_cmd` with EPERM, as a
/// container's seccomp profile or an LSM may; every other system call works.
pub fn deny_bpf_command(command: &mut Command, bpf_cmd: u32) {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: 0,
        jf,
        k,
    };
    let load = |offset: u32| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low half, little-endian).
    let filter = [
        load(4),
        jeq(AUDIT_ARCH, 5),
        load(0),
        jeq(libc::SYS_bpf as u32, 3),
        load(16),
        jeq(bpf_cmd, 1),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: only prctl(2) between fork and exec, on a filter made before the fork, which
    // the closure owns.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}
