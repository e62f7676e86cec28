//! `xdpctl exporter` as a child process on a loopback port the kernel picks, for the tests
//! that scrape it (tests/exporter.rs) and those that attack it (tests/hardening_exporter).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{xdpctl_path, Instance};

/// A running `xdpctl exporter`, killed when dropped (even on panic).
pub struct ExporterProcess {
    child: Child,
    port: u16,
    /// Everything it wrote to stderr so far (drained by a thread, so it never blocks on it).
    stderr: Arc<Mutex<String>>,
}

impl ExporterProcess {
    /// Starts the exporter of `fw` on 127.0.0.1:0, optionally with a lower RLIMIT_NOFILE, and
    /// waits for its ready line, which names the port it bound. XDPCTL_EXPORTER_BIN=/path/to/xdpctl
    /// runs another build (an older one, to see the hardening tests fail); the default is this
    /// crate's binary.
    pub fn start(fw: &Instance, fd_limit: Option<u64>) -> ExporterProcess {
        let binary =
            std::env::var("XDPCTL_EXPORTER_BIN").unwrap_or_else(|_| xdpctl_path().to_owned());
        let mut command = Command::new(binary);
        command
            .env("XDPCTL_PIN_ROOT", &fw.root)
            .args(["exporter", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(limit) = fd_limit {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("xdpctl exporter starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(port) = served_port(&line) {
                    let _ = ready_tx.send(port);
                }
            }
        });
        let mut exporter = ExporterProcess {
            child,
            port: 0,
            stderr,
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(port) => exporter.port = port,
            Err(_) => panic!(
                "the exporter did not say where it was serving:\n{}",
                exporter.stderr()
            ),
        }
        exporter
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends SIGTERM and waits (up to 5 s) for the exit status; returns it with the stderr.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.exited() {
                // Let the drain thread take the last lines.
                sleep(Duration::from_millis(50));
                return (status, self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "SIGTERM did not stop the exporter"
            );
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ExporterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of the exporter's ready line, `xdpctl exporter: serving
/// http://127.0.0.1:PORT/metrics`, which names the address it bound.
fn served_port(line: &str) -> Option<u16> {
    let address = line
        .strip_prefix("xdpctl exporter: serving http://")?
        .strip_suffix("/metrics")?;
    let address: std::net::SocketAddr = address.parse().ok()?;
    (address.port() != 0).then_some(address.port())
}
