//! The exporter as a child process, and the raw TCP clients that attack it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::Deref;
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::exporter::ExporterProcess;
use crate::common::Instance;

/// A normal scrape must be answered this fast while an attack goes on (the median of
/// PROMPT_TRIES, after a settle of SETTLE). An idle exporter answers in a few ms here.
pub const SCRAPE_BOUND: Duration = Duration::from_millis(100);
pub const PROMPT_TRIES: usize = 5;
pub const SETTLE: Duration = Duration::from_millis(200);
/// How long a scrape may take at all before it counts as not answered.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// How much VmRSS may stay above its level before an attack, once the attack is over. It moves
/// by up to about 1.2 MiB on its own (the debug binary's code pages in as paths first run); the
/// old server kept about 100 MiB per connection that sent large headers.
pub const RSS_TOLERANCE_KIB: u64 = 4 * 1024;
/// How far VmRSS may rise while the large-request attacks go on.
pub const RSS_PEAK_TOLERANCE_KIB: u64 = 16 * 1024;
/// The exporter's connection cap (src/commands/exporter/server.rs, MAX_CONNECTIONS).
pub const MAX_CONNECTIONS: usize = 64;

/// A running exporter (killed when dropped, even on panic) and its fds and VmRSS before any
/// attack. Derefs to the process for port(), pid() and stderr().
pub struct Exporter {
    process: ExporterProcess,
    /// fds and VmRSS (KiB) after a few scrapes, before any attack.
    pub baseline_fds: usize,
    pub baseline_rss: u64,
}

impl Deref for Exporter {
    type Target = ExporterProcess;

    fn deref(&self) -> &ExporterProcess {
        &self.process
    }
}

impl Exporter {
    /// Starts the exporter of `fw` (see [`ExporterProcess::start`]), optionally with a lower
    /// RLIMIT_NOFILE, and takes the baseline after a few scrapes.
    pub fn start(fw: &Instance, fd_limit: Option<u64>) -> Exporter {
        let mut exporter = Exporter {
            process: ExporterProcess::start(fw, fd_limit),
            baseline_fds: 0,
            baseline_rss: 0,
        };
        for _ in 0..5 {
            exporter
                .scrape()
                .unwrap_or_else(|err| panic!("a scrape before any attack: {err}"));
        }
        exporter.baseline_fds = exporter.settled_fds(usize::MAX, Duration::from_secs(1));
        exporter.baseline_rss = exporter.rss_kib();
        exporter
    }

    /// Panics, with its stderr, if the exporter is no longer running.
    pub fn assert_alive(&mut self, during: &str) {
        if let Some(status) = self.process.exited() {
            sleep(Duration::from_millis(100));
            panic!(
                "the exporter exited ({status}) during {during}:\n{}",
                self.stderr()
            );
        }
    }

    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The fd count once it is at most `target` (or stops changing, for usize::MAX), polled
    /// for up to `within`: the server closes its end of a connection a moment after the client.
    pub fn settled_fds(&self, target: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        let mut last = self.fds();
        loop {
            sleep(Duration::from_millis(50));
            let now = self.fds();
            let settled = if target == usize::MAX {
                now == last
            } else {
                now <= target
            };
            if settled || Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }

    /// One GET /metrics on a new connection: how long until the whole 200 answer came.
    pub fn scrape(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port())),
            SCRAPE_TIMEOUT,
        )
        .map_err(|err| format!("connect: {err}"))?;
        stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(SCRAPE_TIMEOUT)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .map_err(|err| format!("send: {err}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .map_err(|err| format!("no whole answer in {SCRAPE_TIMEOUT:?}: {err}"))?;
        let took = started.elapsed();
        let answer = String::from_utf8_lossy(&answer);
        if !answer.starts_with("HTTP/1.1 200") || !answer.contains("xdpctl_rules{") {
            return Err(format!("not a scrape's answer: {answer:.200}"));
        }
        Ok(took)
    }

    /// While an attack goes on: after SETTLE, PROMPT_TRIES scrapes must all be answered and
    /// their median must be under SCRAPE_BOUND. Returns (fastest, median, slowest).
    pub fn assert_prompt(&mut self, attack: &str) -> (Duration, Duration, Duration) {
        self.assert_prompt_within(attack, SCRAPE_BOUND)
    }

    pub fn assert_prompt_within(
        &mut self,
        attack: &str,
        bound: Duration,
    ) -> (Duration, Duration, Duration) {
        sleep(SETTLE);
        self.assert_alive(attack);
        let mut took = Vec::new();
        for _ in 0..PROMPT_TRIES {
            match self.scrape() {
                Ok(one) => took.push(one),
                Err(err) => panic!("during {attack}, a scrape failed: {err}\n{}", self.stderr()),
            }
        }
        took.sort();
        let (fastest, median, slowest) = (took[0], took[took.len() / 2], took[took.len() - 1]);
        eprintln!("during {attack}: scrapes took {fastest:?} / {median:?} / {slowest:?} (min / median / max)");
        assert!(
            median < bound,
            "during {attack}, scrapes took {took:?}: the median is over {bound:?}"
        );
        (fastest, median, slowest)
    }

    /// After an attack whose connections are all closed: fds back to the baseline within a few
    /// seconds, VmRSS within RSS_TOLERANCE_KIB of it, and a prompt scrape.
    pub fn assert_recovered(&mut self, attack: &str) {
        self.assert_alive(attack);
        let fds = self.settled_fds(self.baseline_fds, Duration::from_secs(5));
        let rss = self.rss_kib();
        eprintln!(
            "after {attack}: fds {} -> {fds}, VmRSS {} -> {rss} KiB",
            self.baseline_fds, self.baseline_rss
        );
        assert!(
            fds <= self.baseline_fds,
            "after {attack}, the exporter holds {fds} fds (before: {})",
            self.baseline_fds
        );
        assert!(
            rss <= self.baseline_rss + RSS_TOLERANCE_KIB,
            "after {attack}, VmRSS is {rss} KiB (before: {} KiB)",
            self.baseline_rss
        );
        self.scrape()
            .unwrap_or_else(|err| panic!("after {attack}, a scrape failed: {err}"));
    }

    /// SIGTERM still stops it cleanly.
    pub fn terminate(self) {
        let (status, stderr) = self.process.terminate();
        assert!(status.success(), "{status}: {stderr}");
        assert!(stderr.contains("stopped"), "{stderr}");
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port())).expect("connect");
        stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(SCRAPE_TIMEOUT)).unwrap();
        stream
    }
}

/// What the server sent before it closed the connection, or before `within` passed
/// (Err: it kept the connection open that long).
pub fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(String::from_utf8_lossy(&got).into_owned())
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => return Err(format!("reading: {err}")),
        }
    }
    Err(format!(
        "still open after {within:?}, having sent {:.200}",
        String::from_utf8_lossy(&got)
    ))
}

/// Writes `head` then `filler` over and over, up to `total` bytes, in a thread, until the
/// server stops taking them (it closes, or a write makes no progress for SCRAPE_TIMEOUT).
/// Returns the stream and the bytes written.
pub fn flood_writer(
    mut stream: TcpStream,
    head: Vec<u8>,
    filler: Vec<u8>,
    total: usize,
) -> JoinHandle<(TcpStream, usize)> {
    std::thread::spawn(move || {
        let mut written = 0;
        let mut chunks = std::iter::once(&head[..]).chain(std::iter::repeat(&filler[..]));
        while written < total {
            let chunk = chunks.next().unwrap_or_default();
            if chunk.is_empty() {
                break;
            }
            match stream.write(chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n,
            }
        }
        (stream, written)
    })
}

/// Reads one whole answer of a kept-alive connection: its head, then Content-Length bytes.
pub fn read_one_answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("an answer's head");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("an answer's body");
    head + &String::from_utf8_lossy(&body)
}
