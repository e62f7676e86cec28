//! The screen drawn on ratatui's TestBackend, at the sizes a terminal has.

use super::chart::{nice_ceiling, plot_points, series, Shape};
use super::panels::cut;
use super::*;
use crate::counters::dashboard::{FirewallView, RuleCounts};
use crate::counters::history::Second;
use crate::counters::stats::{ActionRate, CounterRate, FwReport, Report};
use crate::firewall::talkers::Talker;
use crate::firewall::{RateLimit, RateLimitProto};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyEventKind;
use ratatui::Terminal;

/// Draws a snapshot on a TestBackend of the given size.
fn draw(snapshot: &Snapshot, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render(frame, snapshot)).unwrap();
    terminal.backend().buffer().clone()
}

fn rows(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| (0..area.width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

fn is_braille(symbol: &str) -> bool {
    symbol
        .chars()
        .any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
}

/// The cells of the plot drawn in a colour.
fn braille_cells_in(buffer: &Buffer, color: Color) -> usize {
    buffer
        .content
        .iter()
        .filter(|cell| is_braille(cell.symbol()) && cell.fg == color)
        .count()
}

fn action(packets: u64, pps: f64) -> ActionRate {
    ActionRate {
        packets,
        bytes: packets * 60,
        pps,
        bps: pps * 480.0,
    }
}

fn rate(packets: u64, pps: f64) -> CounterRate {
    CounterRate {
        packets,
        bytes: packets.saturating_mul(60),
        pps,
    }
}

fn talker(source: &str, blocked: bool, pps: f64) -> Talker {
    Talker {
        source: source.to_owned(),
        blocked,
        pps,
        bps: if blocked { 0.0 } else { pps * 480.0 },
        packets: pps as u64,
        bytes: 0,
    }
}

/// A firewall under a flood that is blocked after 20 s: the three series part ways.
fn flood_snapshot(talkers: usize) -> Snapshot {
    let history = (0..60u64)
        .map(|i| {
            let received = if i < 20 { 5_000 } else { 300_070 };
            let dropped = if i < 20 { 0 } else { 299_568 };
            Second {
                monotonic: 10_000 + i,
                time: 1_700_000_000 + i as i64,
                received,
                passed: received - dropped,
                dropped,
                ..Default::default()
            }
        })
        .collect();
    let mut list = vec![
        talker("10.11.1.2/32", true, 299_568.0),
        talker("10.11.1.3", false, 502.0),
        talker("2001:db8:1234:5678:9abc:def0:1234:5678", false, 20.0),
    ];
    list.extend(
        (0..talkers.saturating_sub(3))
            .map(|i| talker(&format!("192.0.2.{i}"), false, 10.0 - i as f64 * 0.1)),
    );
    Snapshot {
        interface: "lab1".into(),
        program: "firewall".into(),
        program_id: 42,
        interval: 1.0,
        unix_time: 1_700_000_060,
        problem: None,
        history,
        counters: Some(Report {
            unix_time: 1_700_000_060.0,
            period: 1.0,
            actions: [
                action(0, 0.0),
                action(12_345_678, 299_568.0),
                action(123_456, 502.0),
                action(0, 0.0),
                action(0, 0.0),
            ],
            firewall: Some(FwReport {
                protocols: [
                    rate(1_000, 2.0),
                    rate(12_468_000, 300_070.0),
                    rate(134, 0.0),
                    rate(0, 0.0),
                    rate(17, 0.0),
                ],
                drops: [
                    rate(12_345_000, 299_568.0),
                    rate(600, 0.0),
                    rate(78, 0.0),
                    rate(3, 0.0),
                    rate(0, 0.0),
                ],
                bytes_total: 748_000_000,
                bytes_dropped: 740_000_000,
            }),
        }),
        firewall: Some(FirewallView {
            talkers: Some(list),
            rules: RuleCounts {
                block_v4: 2,
                block_v6: 1,
                allow_v4: 1,
                allow_v6: 0,
                ports: vec![
                    crate::input::parse_port("23/tcp").unwrap(),
                    crate::input::parse_port("53/udp").unwrap(),
                ],
                rate_limit: RateLimit {
                    enabled: true,
                    pps: 1000,
                    burst: 1000,
                    block_for_ns: 60_000_000_000,
                    proto: RateLimitProto::All,
                },
                block_rules_ranked: true,
            },
        }),
    }
}

fn assert_contains(rows: &[String], texts: &[&str]) {
    let screen = rows.join("\n");
    for text in texts {
        assert!(
            screen.contains(text),
            "no {text:?} on the screen:\n{screen}"
        );
    }
}

#[test]
fn everything_shows_at_80x24() {
    let buffer = draw(&flood_snapshot(8), 80, 24);
    let rows = rows(&buffer);
    // The header: interface, program, interval, clock, and how to quit.
    assert!(
        rows[0].contains("xdpctl watch lab1  firewall (id 42)  every 1 s  22:14:20 UTC"),
        "{}",
        rows[0]
    );
    assert!(rows[0].trim_end().ends_with("q quit"), "{}", rows[0]);
    // The chart: its legend (with the newest second) in its top border, axes with units,
    // and the three series drawn in braille in their colours.
    assert!(rows[1].starts_with("┌ Last 60 s "), "{}", rows[1]);
    assert!(
        rows[1].contains("██ received 300,070  ━━ passed 502  ━━ dropped 299,568"),
        "{}",
        rows[1]
    );
    assert_contains(
        &rows[1..11],
        &["pkt/s", "500k", "250k", "-60s", "-30s", "0s"],
    );
    for (name, color, _, _) in series() {
        let cells = braille_cells_in(&buffer, color);
        assert!(cells >= 10, "{name} has {cells} braille cells");
    }
    // Counters: every action, drop reason and protocol, totals and rates.
    assert_contains(
        &rows[11..],
        &[
            "ACTION",
            "aborted",
            "redirect",
            "DROPPED BY",
            "blocklist",
            "malformed",
            "PROTOCOL",
            "tcp",
            "syn",
            "TRAFFIC",
            "received",
            "per s over 1.0 s",
        ],
    );
    assert!(rows[14].contains("drop       12.3M   300k"), "{}", rows[14]);
    assert!(rows[14].contains("udp        12.5M   300k"), "{}", rows[14]);
    assert!(rows[15].contains("pass        123k    502"), "{}", rows[15]);
    // Top sources: the blocked rule marked, a long address cut visibly, as many as fit.
    assert_contains(
        &rows[11..],
        &["Top sources", "✕ 10.11.1.2/32", "10.11.1.3", "192.0.2.1"],
    );
    assert!(
        rows[14].contains("  2001:db8:1234:5…      20"),
        "{}",
        rows[14]
    );
    assert!(
        !rows.join("").contains("192.0.2.2"),
        "more talkers than rows"
    );
    assert!(rows[17].contains("✕ blocked rule"), "{}", rows[17]);
    // Rules.
    assert_contains(
        &rows[18..],
        &[
            "Rules",
            "block v4 2  v6 1",
            "allow v4 1  v6 0",
            "ports 2: 23/tcp 53/udp",
            "limit 1,000/s, block 60s",
        ],
    );
    // Nothing runs past the bottom: the last row closes both panels.
    assert!(
        rows[23].starts_with('└') && rows[23].ends_with('┘'),
        "{}",
        rows[23]
    );
}

#[test]
fn a_larger_terminal_shows_exact_numbers_more_sources_and_whole_ipv6() {
    let buffer = draw(&flood_snapshot(30), 160, 48);
    let rows = rows(&buffer);
    assert_contains(
        &rows,
        &[
            "12,345,678",
            "299,568",
            "2001:db8:1234:5678:9abc:def0:1234:5678",
            "192.0.2.7",
            "limit 1,000/s, block 60s",
        ],
    );
    // The chart grew with the terminal.
    let plot_rows = rows
        .iter()
        .filter(|row| row.chars().any(|c| is_braille(&c.to_string())))
        .count();
    assert!(plot_rows >= 15, "the plot spans {plot_rows} rows");
}

#[test]
fn empty_data_and_other_programs_render() {
    let rows = rows(&draw(&Snapshot::default(), 80, 24));
    assert_contains(&rows, &["no completed second yet", "reading…", "q quit"]);
    // A program that is not the firewall: the firewall's panels say so.
    let mut snapshot = flood_snapshot(3);
    snapshot.program = "xdp_pass".into();
    snapshot.firewall = None;
    snapshot.counters.as_mut().unwrap().firewall = None;
    snapshot.counters.as_mut().unwrap().period = 0.0;
    let rows = self::rows(&draw(&snapshot, 80, 24));
    assert_contains(
        &rows,
        &[
            "xdp_pass (id 42)",
            "(the firewall's)",
            "only the firewall tracks",
            "rules are the firewall's;",
            "lab1 runs xdp_pass",
            "per s: measuring…",
        ],
    );
    assert!(rows[13].contains("aborted        0      …"), "{}", rows[13]);
    // A problem comes right after the interface, so it is never cut.
    snapshot.problem = Some("no XDP program any more: figures frozen".into());
    let rows = self::rows(&draw(&snapshot, 80, 24));
    assert!(
        rows[0].contains("xdpctl watch lab1  no XDP program any more: figures frozen"),
        "{}",
        rows[0]
    );
}

#[test]
fn huge_numbers_fit_their_columns() {
    let mut snapshot = flood_snapshot(3);
    for second in &mut snapshot.history {
        (second.received, second.passed, second.dropped) = (u64::MAX, u64::MAX / 2, u64::MAX / 2);
    }
    let report = snapshot.counters.as_mut().unwrap();
    for action in &mut report.actions {
        *action = ActionRate {
            packets: u64::MAX,
            bytes: u64::MAX,
            pps: f64::MAX,
            bps: f64::MAX,
        };
    }
    let fw = report.firewall.as_mut().unwrap();
    for counter in fw.drops.iter_mut().chain(fw.protocols.iter_mut()) {
        *counter = rate(u64::MAX, f64::MAX);
    }
    let rules = &mut snapshot.firewall.as_mut().unwrap().rules;
    rules.block_v4 = u64::MAX;
    rules.rate_limit.pps = u64::MAX;
    for (width, height) in [(80, 24), (120, 40)] {
        let rows = rows(&draw(&snapshot, width, height));
        assert_contains(
            &rows,
            &["received 18.4E", "20.0E", "block v4 18.4E", "limit 18.4E/s"],
        );
        assert!(
            rows.iter()
                .any(|row| row.contains("drop") && row.contains("18.4E")),
            "{}",
            rows.join("\n")
        );
        // The panels still close on the last row.
        let last = &rows[height as usize - 1];
        assert!(last.starts_with('└') && last.ends_with('┘'), "{last}");
    }
}

#[test]
fn small_and_odd_sizes_do_not_panic() {
    let snapshot = flood_snapshot(10);
    for (width, height) in [
        (1, 1),
        (10, 3),
        (39, 11),
        (40, 12),
        (60, 16),
        (79, 23),
        (81, 25),
        (250, 80),
    ] {
        draw(&snapshot, width, height);
        draw(&Snapshot::default(), width, height);
    }
    let rows = rows(&draw(&snapshot, 39, 11));
    let text = rows
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains("at least 80x24 (this one is 39x11)"),
        "{text}"
    );
}

#[test]
fn cutting() {
    assert_eq!(cut("2001:db8::1", 20), "2001:db8::1");
    assert_eq!(cut("2001:db8::1", 6), "2001:…");
}

#[test]
fn chart_tops_are_round() {
    assert_eq!(nice_ceiling(0.0), 10.0);
    assert_eq!(nice_ceiling(10.0), 10.0);
    assert_eq!(nice_ceiling(11.0), 20.0);
    assert_eq!(nice_ceiling(300_070.0), 500_000.0);
    assert_eq!(nice_ceiling(600_000.0), 1_000_000.0);
    assert_eq!(nice_ceiling(u64::MAX as f64), 2e19);
}

#[test]
fn seconds_are_plotted_where_they_happened() {
    let history: Vec<Second> = (0..3u64)
        .map(|i| Second {
            monotonic: 100 + i,
            received: 10 * (i + 1),
            ..Default::default()
        })
        .collect();
    let line = plot_points(&history, Shape::Line, |s| s.received);
    assert_eq!(line, [(-2.5, 10.0), (-1.5, 20.0), (-0.5, 30.0)]);
    // An area covers each whole second, newest ending at 0.
    let area = plot_points(&history, Shape::Area, |s| s.received);
    assert_eq!(area.len(), 3 * 8);
    assert!(area.iter().all(|&(x, _)| (-3.0..0.0).contains(&x)));
    assert_eq!(area[0], (-3.0 + 1.0 / 16.0, 10.0));
    assert_eq!(area[23].1, 30.0);
}

#[test]
fn quit_keys() {
    let key = |code, modifiers| KeyEvent {
        kind: KeyEventKind::Press,
        ..KeyEvent::new(code, modifiers)
    };
    assert!(is_quit_key(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
    assert!(is_quit_key(&key(KeyCode::Esc, KeyModifiers::NONE)));
    assert!(is_quit_key(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(!is_quit_key(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
    assert!(!is_quit_key(&key(KeyCode::Enter, KeyModifiers::NONE)));
}

#[test]
fn rate_limits_in_a_few_words() {
    let mut rl = RateLimit::default();
    assert_eq!(describe_rate_limit(&rl, 20), "off");
    rl = RateLimit {
        enabled: true,
        pps: 500,
        burst: 500,
        block_for_ns: 0,
        proto: RateLimitProto::Syn,
    };
    assert_eq!(describe_rate_limit(&rl, 30), "500 syn/s, drop excess");
    rl.pps = 250_000;
    rl.block_for_ns = 3_600_000_000_000;
    assert_eq!(describe_rate_limit(&rl, 30), "250,000 syn/s, block 3600s");
    assert_eq!(describe_rate_limit(&rl, 20), "250k syn/s, block 3600s");
}
