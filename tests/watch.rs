//! `xdpctl watch` as a user runs it: the real binary in an 80x24 pseudo-terminal, its screen
//! rebuilt from what it writes, keys sent to it, and the terminal checked after it exits.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags};

const WIDTH: usize = 80;
const HEIGHT: usize = 24;

/// What a terminal shows after a stream of output: the subset of VT100 that crossterm writes
/// (cursor moves, clears, the alternate screen), styles ignored.
struct Screen {
    cells: Vec<Vec<char>>,
    row: usize,
    col: usize,
}

impl Screen {
    fn of(output: &[u8]) -> Screen {
        let mut screen = Screen {
            cells: vec![vec![' '; WIDTH]; HEIGHT],
            row: 0,
            col: 0,
        };
        let text = String::from_utf8_lossy(output);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        let mut last = None;
                        for c in chars.by_ref() {
                            if ('\x40'..='\x7e').contains(&c) {
                                last = Some(c);
                                break;
                            }
                            params.push(c);
                        }
                        if let Some(command) = last {
                            screen.control(&params, command);
                        }
                    }
                    Some(']') => {
                        // An OSC string (a title): up to BEL or ESC \.
                        while let Some(c) = chars.next() {
                            if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    _ => {}
                },
                '\r' => screen.col = 0,
                '\n' => screen.line_feed(),
                '\x08' => screen.col = screen.col.saturating_sub(1),
                c if c >= ' ' => screen.put(c),
                _ => {}
            }
        }
        screen
    }

    fn control(&mut self, params: &str, command: char) {
        let numbers: Vec<usize> = params
            .trim_start_matches('?')
            .split(';')
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        let n = |i: usize| numbers.get(i).copied().unwrap_or(0);
        match command {
            'H' | 'f' => {
                self.row = n(0).clamp(1, HEIGHT) - 1;
                self.col = n(1).clamp(1, WIDTH) - 1;
            }
            'A' => self.row = self.row.saturating_sub(n(0).max(1)),
            'B' => self.row = (self.row + n(0).max(1)).min(HEIGHT - 1),
            'C' => self.col = (self.col + n(0).max(1)).min(WIDTH - 1),
            'D' => self.col = self.col.saturating_sub(n(0).max(1)),
            'G' => self.col = n(0).clamp(1, WIDTH) - 1,
            'J' if n(0) >= 2 => self.clear(),
            'J' => {
                self.cells[self.row][self.col..].fill(' ');
                for row in &mut self.cells[self.row + 1..] {
                    row.fill(' ');
                }
            }
            'K' => self.cells[self.row][self.col..].fill(' '),
            // Entering or leaving the alternate screen starts from a blank one here.
            'h' | 'l' if params == "?1049" => self.clear(),
            _ => {}
        }
    }

    fn clear(&mut self) {
        for row in &mut self.cells {
            row.fill(' ');
        }
    }

    fn line_feed(&mut self) {
        if self.row + 1 < HEIGHT {
            self.row += 1;
        } else {
            self.cells.remove(0);
            self.cells.push(vec![' '; WIDTH]);
        }
    }

    fn put(&mut self, c: char) {
        if self.col >= WIDTH {
            self.col = 0;
            self.line_feed();
        }
        self.cells[self.row][self.col] = c;
        self.col += 1;
    }

    fn rows(&self) -> Vec<String> {
        self.cells
            .iter()
            .map(|row| row.iter().collect::<String>().trim_end().to_owned())
            .collect()
    }
}

/// `xdpctl watch` (or any xdpctl command) running in its own 80x24 pseudo-terminal, killed on
/// drop if it is still running.
struct Terminal {
    child: Child,
    master: File,
    /// Kept open so the terminal's settings can be read after xdpctl exits.
    slave: OwnedFd,
    output: Vec<u8>,
}

impl Terminal {
    fn start(fw: &Instance, args: &[&str]) -> Terminal {
        let size = Winsize {
            ws_row: HEIGHT as u16,
            ws_col: WIDTH as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&size, None).expect("openpty");
        nix::fcntl::fcntl(
            pty.master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .expect("a non-blocking master");
        let stdio = || Stdio::from(pty.slave.try_clone().expect("dup the pty"));
        let mut command = fw.command();
        command
            .args(args)
            .env("TERM", "xterm-256color")
            .stdin(stdio())
            .stdout(stdio())
            .stderr(stdio());
        // SAFETY: setsid and ioctl are async-signal-safe. The pty becomes the controlling
        // terminal, so /dev/tty (where crossterm reads the size) is this 80x24 one, not the
        // terminal the tests were started from.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("xdpctl starts");
        Terminal {
            child,
            master: File::from(pty.master),
            slave: pty.slave,
            output: Vec::new(),
        }
    }

    /// Reads what xdpctl wrote so far.
    fn pump(&mut self) {
        let mut buf = [0u8; 65536];
        while let Ok(n) = nix::unistd::read(self.master.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            self.output.extend_from_slice(&buf[..n]);
        }
    }

    fn screen(&mut self) -> Vec<String> {
        self.pump();
        Screen::of(&self.output).rows()
    }

    /// Waits until the screen satisfies `ready`, or fails with what it shows.
    fn wait_for(&mut self, what: &str, timeout: Duration, ready: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self.screen();
            if ready(&rows) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "xdpctl exited ({status}) before {what}:\n{}",
                    rows.join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}; the screen:\n{}",
                rows.join("\n")
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, keys: &[u8]) {
        self.master.write_all(keys).expect("typing into the pty");
    }

    /// Waits for xdpctl to exit, reading its output meanwhile.
    fn exit_status(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump();
            if let Some(status) = self.child.try_wait().expect("waiting for xdpctl") {
                self.pump();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "xdpctl still runs {timeout:?} after it was told to quit:\n{}",
                self.screen().join("\n")
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Checks that xdpctl gave the terminal back as it found it: the main screen, the cursor,
    /// and line editing and echo (raw mode off).
    fn assert_restored(&self) {
        let output = String::from_utf8_lossy(&self.output);
        let left = output
            .rfind("\x1b[?1049l")
            .expect("left the alternate screen");
        let entered = output
            .rfind("\x1b[?1049h")
            .expect("entered the alternate screen");
        assert!(left > entered, "the alternate screen was entered last");
        assert!(
            output[left..].contains("\x1b[?25h"),
            "the cursor was not shown again"
        );
        let modes = tcgetattr(self.slave.as_fd()).expect("the pty's settings");
        assert!(
            modes
                .local_flags
                .contains(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG),
            "the terminal was left in raw mode: {:?}",
            modes.local_flags
        );
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends paced packets from inside a lab for `seconds`, from `source` if given; returns how
/// many were sent.
fn flood_from(fw: &Instance, lab: &str, pps: u32, seconds: u32, source: Option<&str>) -> u64 {
    let (pps, seconds) = (pps.to_string(), seconds.to_string());
    let mut args = vec!["--pps", &pps, "--duration", &seconds];
    if let Some(source) = source {
        args.extend(["--src", source]);
    }
    fw.flood_packets(lab, &args)
}

/// Floods from the lab's clean source and its second (blocked) source at once, 5,000 pps each
/// for 2 s; returns the packets the blocked source sent.
fn flood_both(fw: &Instance, lab: &str, blocked: &str) -> u64 {
    std::thread::scope(|scope| {
        let floods = [None, Some(blocked)]
            .map(|source| scope.spawn(move || flood_from(fw, lab, 5000, 2, source)));
        let [_, from_blocked] = floods.map(|flood| flood.join().expect("the flood"));
        from_blocked
    })
}

fn has_braille(row: &str) -> bool {
    row.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
}

#[test]
fn watch_shows_the_firewall_under_traffic_at_80x24_and_quits_on_q() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname().to_owned();
    let (clean, blocked) = (
        lab.inner_ipv4().to_string(),
        lab.second_inner_ipv4().to_string(),
    );
    fw.ok(&["load", &ifname]);
    fw.ok(&["block", &blocked]);
    fw.ok(&["block", "--port", "53/udp"]);
    fw.ok(&["ratelimit", "set", "--pps", "100000", "--block-for", "60s"]);

    // Traffic before it starts: the chart shows it at once, from the kernel's history.
    let mut blocked_sent = flood_both(&fw, &ifname, &blocked);
    let mut term = Terminal::start(&fw, &["watch", &ifname, "--interval", "0.5"]);
    term.wait_for(
        "the flood on the first frames",
        Duration::from_secs(10),
        |rows| {
            // The chart's top label is in thousands, and the plot has points above its bottom row.
            rows[0].contains("xdpctl watch")
                && rows[2].contains("k│")
                && rows[2..7].iter().any(|row| has_braille(row))
        },
    );

    // Traffic while it watches: both sources show among the top sources, the blocked one as
    // its rule, and the blocklist's total is exact once the flood is over.
    let blocked_rule = format!("✕ {blocked}/32");
    blocked_sent += std::thread::scope(|scope| {
        let flooding = scope.spawn(|| flood_both(&fw, &ifname, &blocked));
        term.wait_for("both sources", Duration::from_secs(8), |rows| {
            let screen = rows.join("\n");
            screen.contains(&blocked_rule) && screen.contains(&format!("  {clean} "))
        });
        flooding.join().expect("the flood")
    });
    let blocklist_total = xdpctl::output::numbers::thousands(blocked_sent);
    term.wait_for(
        "the blocklist's exact total",
        Duration::from_secs(10),
        |rows| {
            rows.iter().any(|row| {
                row.starts_with("│ blocklist")
                    && row.split_whitespace().nth(2) == Some(blocklist_total.as_str())
            })
        },
    );

    let rows = term.screen();
    let screen = rows.join("\n");
    // The header names the interface and program, and how to quit, within 80 columns.
    assert!(
        rows[0].contains(&format!("xdpctl watch {ifname}  firewall (id ")),
        "{screen}"
    );
    assert!(rows[0].ends_with("q quit"), "{screen}");
    // The chart: the legend in its top border, the axes with their units.
    for text in ["Last 60 s", "██ received", "━━ passed", "━━ dropped"] {
        assert!(rows[1].contains(text), "no {text} in the legend:\n{screen}");
    }
    assert!(rows[2].contains("pkt/s"), "{screen}");
    assert!(
        rows[9].contains("-60s") && rows[9].contains("-30s"),
        "{screen}"
    );
    assert!(rows[9].ends_with("0s│"), "{screen}");
    // Counters, drop reasons, protocols, traffic, rules: all of them, none cut off.
    for text in [
        "ACTION",
        "aborted",
        "drop",
        "pass",
        "redirect",
        "DROPPED BY",
        "blocklist",
        "port",
        "ratelimit",
        "malformed",
        "PROTOCOL",
        "udp",
        "syn",
        "TRAFFIC",
        "received",
        "Top sources",
        "block v4 1  v6 0",
        "ports 1: 53/udp",
        "limit 100,000/s, block 60s",
    ] {
        assert!(screen.contains(text), "no {text}:\n{screen}");
    }
    // The panels close on the last row, the right one at the last column.
    assert!(rows[HEIGHT - 1].starts_with('└') && rows[HEIGHT - 1].ends_with('┘'));
    assert!(rows.iter().all(|row| row.chars().count() <= WIDTH));

    term.send(b"q");
    let status = term.exit_status(Duration::from_secs(10));
    assert!(status.success(), "q: {status}");
    term.assert_restored();
}

#[test]
fn watch_follows_the_program_and_quits_on_esc_ctrl_c_and_sigterm_restoring_the_terminal() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname().to_owned();
    fw.ok(&["load", &ifname, "--program", "xdp_pass"]);
    for way in ["Esc", "Ctrl-C", "SIGTERM"] {
        let mut term = Terminal::start(&fw, &["watch", &ifname]);
        term.wait_for("the dashboard", Duration::from_secs(10), |rows| {
            rows[0].contains(&format!("xdpctl watch {ifname}  xdp_pass"))
                && rows.join("\n").contains("only the firewall tracks")
        });
        if way == "Esc" {
            // It follows a program that replaces the watched one, and says when none is left.
            fw.ok(&["load", &ifname, "--force"]);
            term.wait_for("the replacing firewall", Duration::from_secs(5), |rows| {
                rows[0].contains(&format!("xdpctl watch {ifname}  firewall (id "))
                    && rows.join("\n").contains("limit off")
            });
            fw.ok(&["unload", &ifname]);
            term.wait_for("the unload", Duration::from_secs(5), |rows| {
                rows[0].contains(&format!(
                    "xdpctl watch {ifname}  no XDP program any more: figures frozen"
                ))
            });
            fw.ok(&["load", &ifname, "--program", "xdp_pass"]);
        }
        match way {
            "Esc" => term.send(b"\x1b"),
            "Ctrl-C" => term.send(b"\x03"),
            _ => nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(term.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap(),
        }
        let status = term.exit_status(Duration::from_secs(10));
        assert!(status.success(), "{way}: {status}");
        term.assert_restored();
    }
}

#[test]
fn watch_refuses_before_touching_the_terminal() {
    require_root!();
    let fw = Instance::new();
    let lab = lab();
    let ifname = lab.outer_ifname().to_owned();
    // No program: said on the terminal, which is left alone.
    let mut term = Terminal::start(&fw, &["watch", &ifname]);
    let status = term.exit_status(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1));
    let output = String::from_utf8_lossy(&term.output).into_owned();
    assert!(
        output.contains(&format!(
            "{ifname} has no XDP program: load one with `xdpctl load {ifname}`"
        )),
        "{output}"
    );
    assert!(
        !output.contains("\x1b[?1049h"),
        "it entered the alternate screen"
    );
    let modes = tcgetattr(term.slave.as_fd()).unwrap();
    assert!(modes
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO));

    // A program without the history ring (a user's own).
    let object = user_object();
    fw.ok(&[
        "load",
        &ifname,
        "--obj",
        object.to_str().unwrap(),
        "--program",
        "xdp_user_count",
    ]);
    let err = fw.err(&["watch", &ifname]);
    assert!(err.contains("keeps no per-second history"), "{err}");
    fw.ok(&["unload", &ifname]);

    // Output that is not a terminal: pointed to the commands that print text.
    fw.ok(&["load", &ifname]);
    let err = fw.err(&["watch", &ifname]);
    assert!(err.contains("its output is not a terminal"), "{err}");
    assert!(
        err.contains(&format!("`xdpctl stats {ifname}`"))
            && err.contains(&format!("`xdpctl history {ifname}`")),
        "{err}"
    );
    let err = fw.err(&["watch", "xdpctl-nosuch0"]);
    assert!(err.contains("no such interface: 'xdpctl-nosuch0'"), "{err}");
}
