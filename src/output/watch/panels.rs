//! The panels under the chart: counters and rates, the top sources, and the rules.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Padding, Paragraph, Wrap};
use ratatui::Frame;

use super::{dim, heading, rgb};
use crate::counters::dashboard::Snapshot;
use crate::counters::stats::{Report, ACTIONS};
use crate::firewall::{RateLimit, RateLimitProto, DROP_REASONS, PROTOCOLS};
use crate::input::PortSpec;
use crate::output::numbers::{compact, fit, thousands};
use crate::output::stats::action_label;

/// Width of the name column of the counters.
const NAME_WIDTH: usize = 9;

/// A row of the counters: a name, then a total and a rate right-aligned in `number` columns.
fn counter_line(name: &str, total: String, rate: String, number: usize) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{name:<NAME_WIDTH$}"), dim()),
        Span::raw(format!(" {total:>number$} {rate:>number$}")),
    ])
}

fn heading_line(name: &str, total: &str, rate: &str, number: usize) -> Line<'static> {
    Line::styled(
        format!("{name:<NAME_WIDTH$} {total:>number$} {rate:>number$}"),
        heading(),
    )
}

pub(super) fn render_counters(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let period = snapshot.counters.as_ref().map_or(0.0, |r| r.period);
    let rates_title = if period > 0.0 {
        format!(" per s over {period:.1} s ")
    } else {
        " per s: measuring… ".to_owned()
    };
    let block = Block::bordered()
        .title_top(Line::styled(" Counters ", heading()).left_aligned())
        .title_top(Line::styled(rates_title, dim()).right_aligned())
        .padding(Padding::horizontal(1));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let column = inner.width.saturating_sub(2) / 2;
    let [left, _, right] = Layout::horizontal([
        Constraint::Length(column),
        Constraint::Length(2),
        Constraint::Length(column),
    ])
    .areas(inner);
    let number = (column as usize).saturating_sub(NAME_WIDTH + 2) / 2;
    let rate = |pps: f64| {
        if period > 0.0 {
            fit(pps.round() as u64, number)
        } else {
            "…".to_owned()
        }
    };

    let mut actions = vec![heading_line("ACTION", "total", "per s", number)];
    let mut protocols = vec![heading_line("PROTOCOL", "total", "per s", number)];
    match &snapshot.counters {
        Some(report) => {
            for (name, action) in ACTIONS.iter().zip(&report.actions) {
                let name = action_label(name);
                actions.push(counter_line(
                    &name,
                    fit(action.packets, number),
                    rate(action.pps),
                    number,
                ));
            }
            actions.push(heading_line("DROPPED BY", "", "", number));
            protocols_and_drops(report, &mut actions, &mut protocols, number, &rate);
        }
        None => actions.push(Line::styled("reading…", dim())),
    }
    frame.render_widget(Paragraph::new(actions), left);
    frame.render_widget(Paragraph::new(protocols), right);
}

/// The firewall's drop reasons (under the actions), its protocols, and bytes in and dropped.
fn protocols_and_drops(
    report: &Report,
    actions: &mut Vec<Line<'static>>,
    protocols: &mut Vec<Line<'static>>,
    number: usize,
    rate: &dyn Fn(f64) -> String,
) {
    match &report.firewall {
        Some(fw) => {
            for (name, drop) in DROP_REASONS.iter().zip(&fw.drops) {
                actions.push(counter_line(
                    name,
                    fit(drop.packets, number),
                    rate(drop.pps),
                    number,
                ));
            }
            for (name, proto) in PROTOCOLS.iter().zip(&fw.protocols) {
                protocols.push(counter_line(
                    name,
                    fit(proto.packets, number),
                    rate(proto.pps),
                    number,
                ));
            }
        }
        None => {
            actions.push(Line::styled("(the firewall's)", dim()));
            protocols.push(Line::styled("(the firewall's)", dim()));
        }
    }
    // Bytes of every action, and of the dropping ones, with their bit rates.
    let dropping = |i: usize| ACTIONS[i] == "XDP_DROP" || ACTIONS[i] == "XDP_ABORTED";
    let sum = |only_dropped: bool| {
        report
            .actions
            .iter()
            .enumerate()
            .filter(|(i, _)| !only_dropped || dropping(*i))
            .fold((0u64, 0f64), |(bytes, bps), (_, a)| {
                (bytes.wrapping_add(a.bytes), bps + a.bps)
            })
    };
    protocols.push(heading_line("TRAFFIC", "bytes", "bit/s", number));
    for (name, only_dropped) in [("received", false), ("dropped", true)] {
        let (bytes, bps) = sum(only_dropped);
        let bits = if report.period > 0.0 {
            compact(bps)
        } else {
            "…".to_owned()
        };
        protocols.push(counter_line(name, fit(bytes, number), bits, number));
    }
}

pub(super) fn render_talkers(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let mut block = Block::bordered()
        .title_top(Line::styled(" Top sources ", heading()).left_aligned())
        .title_top(Line::styled(" pkt/s ", dim()).right_aligned());
    let inner_width = area.width.saturating_sub(2) as usize;
    let number = 7.min(inner_width / 3);
    let lines: Vec<Line> = match snapshot.firewall.as_ref().map(|fw| &fw.talkers) {
        None => vec![Line::styled("only the firewall tracks sources", dim())],
        Some(None) => vec![Line::styled("measuring…", dim())],
        Some(Some(talkers)) if talkers.is_empty() => vec![Line::styled("no traffic", dim())],
        Some(Some(talkers)) => {
            if talkers.iter().any(|t| t.blocked) {
                block = block.title_bottom(Line::styled(" ✕ blocked rule ", dim()).right_aligned());
            } else if snapshot
                .firewall
                .as_ref()
                .is_some_and(|fw| !fw.rules.block_rules_ranked)
            {
                // Too many block rules to read every interval: blocked sources are not ranked.
                block =
                    block.title_bottom(Line::styled(" blocked: see top ", dim()).right_aligned());
            }
            let source_width = inner_width.saturating_sub(number + 3);
            talkers
                .iter()
                .map(|t| {
                    let (mark, style) = if t.blocked {
                        (
                            "✕ ",
                            Style::default().fg(rgb(crate::output::graph::DROPPED)),
                        )
                    } else {
                        ("  ", Style::default())
                    };
                    let source = cut(&t.source, source_width);
                    Line::styled(
                        format!(
                            "{mark}{source:<source_width$} {:>number$}",
                            fit(t.pps.round() as u64, number)
                        ),
                        style,
                    )
                })
                .collect()
        }
    };
    // Notes wrap; talker lines are as wide as the panel, so they never do.
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    frame.render_widget(paragraph.block(block), area);
}

/// `text` in at most `width` columns, ending in … where it was cut.
pub(super) fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(width.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

pub(super) fn render_rules(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let block = Block::bordered().title_top(Line::styled(" Rules ", heading()).left_aligned());
    let Some(fw) = &snapshot.firewall else {
        let note = format!(
            "rules are the firewall's; {} runs {}",
            snapshot.interface, snapshot.program
        );
        frame.render_widget(
            Paragraph::new(Line::styled(note, dim()))
                .wrap(Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    };
    let rules = &fw.rules;
    const NAME: usize = 6;
    let line = |name: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{name:<NAME$}"), dim()),
            Span::raw(value),
        ])
    };
    let width = (area.width as usize).saturating_sub(2 + NAME);
    let ports = if rules.ports.is_empty() {
        "none".to_owned()
    } else {
        let names: Vec<String> = rules.ports.iter().map(PortSpec::to_string).collect();
        format!("{}: {}", rules.ports.len(), names.join(" "))
    };
    let lines = vec![
        line(
            "block",
            format!(
                "v4 {}  v6 {}",
                fit(rules.block_v4, 9),
                fit(rules.block_v6, 9)
            ),
        ),
        line(
            "allow",
            format!(
                "v4 {}  v6 {}",
                fit(rules.allow_v4, 9),
                fit(rules.allow_v6, 9)
            ),
        ),
        line("ports", ports),
        line("limit", describe_rate_limit(&rules.rate_limit, width)),
    ];
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The rate limit in at most about `width` columns: "1,000/s, block 60s", "500 syn/s, drop
/// excess", "off"; large rates shorten to 100k.
pub fn describe_rate_limit(rl: &RateLimit, width: usize) -> String {
    if !rl.enabled {
        return "off".into();
    }
    let proto = match rl.proto {
        RateLimitProto::All => "",
        RateLimitProto::Udp => " udp",
        RateLimitProto::Tcp => " tcp",
        RateLimitProto::Icmp => " icmp",
        RateLimitProto::Syn => " syn",
    };
    let action = if rl.block_for_ns == 0 {
        "drop excess".to_owned()
    } else {
        format!("block {}s", rl.block_for_ns / 1_000_000_000)
    };
    let exact = format!("{}{proto}/s, {action}", thousands(rl.pps));
    if exact.chars().count() <= width {
        exact
    } else {
        format!("{}{proto}/s, {action}", compact(rl.pps as f64))
    }
}
