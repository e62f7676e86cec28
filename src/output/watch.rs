//! `xdpctl watch`'s dashboard: a [`Snapshot`] of everything it shows, gathered from the kernel
//! by a [`Collector`], and [`render`], a pure function of a snapshot, so tests draw it on
//! ratatui's TestBackend. The terminal loop lives in commands/watch.rs.

use anyhow::Result;
use libbpf_rs::MapHandle;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Padding, Paragraph, Wrap};
use ratatui::Frame;

use crate::counters::history::{self, Second};
use crate::counters::metrics::{self, RuleMetrics};
use crate::counters::stats::{self, Report, Sample, StatsMaps, ACTIONS};
use crate::firewall::rules;
use crate::firewall::talkers::{self, SourceSample, Talker};
use crate::firewall::{FirewallMaps, List, RateLimit, RateLimitProto, DROP_REASONS, PROTOCOLS};
use crate::input::PortSpec;
use crate::output::numbers::{compact, fit, thousands};
use crate::output::stats::action_label;
use crate::sys::attach::{self, ProgramSummary};

/// The chart's span.
pub const CHART_SECONDS: u64 = 60;
/// Talkers kept in a snapshot: more than fit at 80x24, as many as a tall terminal shows.
pub const TALKERS: usize = 40;
/// The terminal size the layout is made for: everything shows at this size and above.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// Below this, only a note saying what size is needed is drawn.
const TOO_SMALL: (u16, u16) = (40, 12);
/// Rows of the panels under the chart: the counters panel's 11 lines and its borders.
const PANEL_ROWS: u16 = 13;
/// The counters panel's width at 80 columns; the rest goes to sources and rules.
const COUNTERS_WIDTH: u16 = 52;
/// Rows of the rules panel: its 4 lines and its borders.
const RULES_ROWS: u16 = 6;
/// Width of the name column of the counters.
const NAME_WIDTH: usize = 9;

/// Everything the dashboard shows at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub interface: String,
    pub program: String,
    pub program_id: u32,
    /// Seconds between counter samples.
    pub interval: f64,
    /// Unix time when the snapshot was taken, for the clock.
    pub unix_time: i64,
    /// Something wrong to show in the header (the program went away, ...).
    pub problem: Option<String>,
    /// The last completed seconds, oldest first, at most CHART_SECONDS of them.
    pub history: Vec<Second>,
    /// Totals and rates. A report with a period of 0 has totals only (the first sample).
    pub counters: Option<Report>,
    /// The firewall's sources and rules; None for the other programs.
    pub firewall: Option<FirewallView>,
}

/// What only the firewall has: sources and rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FirewallView {
    /// Busiest first; None until two samples have been taken.
    pub talkers: Option<Vec<Talker>>,
    pub rules: RuleCounts,
}

/// How many rules of each kind the firewall holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleCounts {
    pub block_v4: u64,
    pub block_v6: u64,
    pub allow_v4: u64,
    pub allow_v6: u64,
    pub ports: Vec<PortSpec>,
    pub rate_limit: RateLimit,
    /// Whether block rules take part in the top sources (not with more than
    /// BLOCK_RULES_RANKED of them).
    pub block_rules_ranked: bool,
}

impl RuleCounts {
    pub fn of(counts: &RuleMetrics, ports: Vec<PortSpec>, rate_limit: RateLimit) -> RuleCounts {
        RuleCounts {
            block_v4: counts.block.ipv4,
            block_v6: counts.block.ipv6,
            allow_v4: counts.allow.ipv4,
            allow_v6: counts.allow.ipv6,
            ports,
            rate_limit,
            block_rules_ranked: block_rules(counts) <= BLOCK_RULES_RANKED,
        }
    }
}

/// Block rules whose hits `watch` reads each interval to rank blocked sources: reading a rule
/// costs about a microsecond, so a million would take a second per refresh.
pub const BLOCK_RULES_RANKED: u64 = 100_000;

fn block_rules(counts: &RuleMetrics) -> u64 {
    counts.block.ipv4 + counts.block.ipv6
}

/// Reads what a snapshot shows from the program on an interface, keeping the previous samples
/// that rates are computed from.
pub struct Collector {
    interface: String,
    interval: f64,
    program: ProgramSummary,
    stats: StatsMaps,
    history: MapHandle,
    firewall: Option<FirewallMaps>,
    last_counters: Option<Sample>,
    last_sources: Option<SourceSample>,
}

impl Collector {
    /// The maps of the program on `interface`, or an error that says why it cannot be watched
    /// (no program, or one that keeps no per-action stats or history).
    pub fn open(interface: &str, interval: f64) -> Result<Collector> {
        let (mut stats, program) = stats::stats_maps_of_interface(interface)?;
        let history = history::history_of(stats.history.take(), interface, &program.name)?;
        let firewall = stats
            .firewall
            .as_ref()
            .and_then(|_| FirewallMaps::of_program(&program));
        Ok(Collector {
            interface: interface.to_owned(),
            interval,
            program,
            stats,
            history,
            firewall,
            last_counters: None,
            last_sources: None,
        })
    }

    /// A full snapshot: the history, and totals (rates follow from the next refresh on).
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let mut snapshot = Snapshot {
            interface: self.interface.clone(),
            interval: self.interval,
            ..Default::default()
        };
        self.refresh_counters(&mut snapshot)?;
        self.refresh_history(&mut snapshot)?;
        Ok(snapshot)
    }

    /// Rereads the history ring (its newest completed second moves on each second).
    pub fn refresh_history(&self, snapshot: &mut Snapshot) -> Result<()> {
        snapshot.history = history::read_completed(&self.history, CHART_SECONDS)?;
        snapshot.unix_time = stats::unix_now() as i64;
        Ok(())
    }

    /// Takes a new sample of the counters, sources and rules, with rates since the last one.
    /// If another program replaced the watched one, it watches the new one from now on.
    pub fn refresh_counters(&mut self, snapshot: &mut Snapshot) -> Result<()> {
        snapshot.problem = self.follow_attachment();
        snapshot.program = self.program.name.clone();
        snapshot.program_id = self.program.id;
        let current = Sample::take(&self.stats)?;
        let previous = self.last_counters.replace(current);
        snapshot.counters = Some(stats::report(
            previous.as_ref().unwrap_or(&current),
            &current,
        ));
        snapshot.firewall = match &self.firewall {
            Some(maps) => {
                // Rules are counted in the kernel (as the exporter does); their hits are read
                // only while that stays cheap. Nothing is swept: watch only reads.
                let now = maps.now_ns()?;
                let counts = metrics::count_rules(maps, now)?;
                let block = if block_rules(&counts) <= BLOCK_RULES_RANKED {
                    rules::read_prefixes(maps, List::Block, now)?
                } else {
                    Vec::new()
                };
                let sources = SourceSample::take_with_block_rules(maps, &block)?;
                let talkers = self.last_sources.take().map(|before| {
                    let mut talkers = talkers::talkers_between(&before, &sources);
                    talkers.truncate(TALKERS);
                    talkers
                });
                self.last_sources = Some(sources);
                let rules = RuleCounts::of(
                    &counts,
                    rules::list_ports(maps)?
                        .into_iter()
                        .map(|(p, _)| p)
                        .collect(),
                    maps.rate_limit()?,
                );
                Some(FirewallView { talkers, rules })
            }
            None => None,
        };
        snapshot.unix_time = stats::unix_now() as i64;
        Ok(())
    }

    /// Checks that the watched program is still attached; switches to a program that replaced
    /// it. Returns the problem to show, if any.
    fn follow_attachment(&mut self) -> Option<String> {
        let ifname = &self.interface;
        let attached = attach::ifindex(ifname).and_then(attach::query);
        match attached {
            // Short: the header names the interface already, and has one row.
            Err(_) => Some("the interface is gone: figures frozen".to_owned()),
            Ok(found) if found.iter().any(|a| a.prog_id == self.program.id) => None,
            Ok(found) if found.is_empty() => {
                Some("no XDP program any more: figures frozen".to_owned())
            }
            Ok(_) => match Collector::open(ifname, self.interval) {
                Ok(replacement) => {
                    *self = replacement;
                    None
                }
                Err(err) => Some(format!("{err:#}")),
            },
        }
    }
}

/// Whether a key quits: q, Esc, or Ctrl-C (which raw mode delivers as a key, not a signal).
pub fn is_quit_key(key: &KeyEvent) -> bool {
    match key.code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
        KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 10): a chart's
/// top that gives round labels.
pub fn nice_ceiling(value: f64) -> f64 {
    let value = value.max(10.0);
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|&top| top >= value)
        .unwrap_or(10.0 * magnitude)
}

// --- Drawing ---------------------------------------------------------------------------------

fn rgb(color: plotters::style::RGBColor) -> Color {
    Color::Rgb(color.0, color.1, color.2)
}

/// How a series is drawn: received as the area under it, passed and dropped as lines over that
/// area. Received equals passed plus dropped (plus TX and redirect), so as three lines one
/// would always hide another; as an area with lines on it, all three stay visible.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Area,
    Line,
}

/// A series: its name, colour, shape, and its value in a second.
type Series = (&'static str, Color, Shape, fn(&Second) -> u64);

/// The chart's series, in drawing order (later ones are drawn over earlier ones).
fn series() -> [Series; 3] {
    [
        (
            "received",
            rgb(crate::output::graph::RECEIVED),
            Shape::Area,
            |s| s.received,
        ),
        (
            "passed",
            rgb(crate::output::graph::PASSED),
            Shape::Line,
            |s| s.passed,
        ),
        (
            "dropped",
            rgb(crate::output::graph::DROPPED),
            Shape::Line,
            |s| s.dropped,
        ),
    ]
}

/// Points to plot: second `s` spans x in [s - newest - 1, s - newest], so the newest ends at 0.
/// A line has a point in the middle of each second; an area has bars across the whole second,
/// close enough together to fill it at any width the terminal has.
fn plot_points(history: &[Second], shape: Shape, pick: fn(&Second) -> u64) -> Vec<(f64, f64)> {
    const BARS_PER_SECOND: usize = 8;
    let newest = history.last().map_or(0, |s| s.monotonic as i64);
    let mut points = Vec::new();
    for second in history {
        let end = (second.monotonic as i64 - newest) as f64;
        let value = pick(second) as f64;
        match shape {
            Shape::Line => points.push((end - 0.5, value)),
            Shape::Area => points.extend((0..BARS_PER_SECOND).map(|bar| {
                (
                    end - 1.0 + (bar as f64 + 0.5) / BARS_PER_SECOND as f64,
                    value,
                )
            })),
        }
    }
    points
}

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

fn heading() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// Draws the whole dashboard from a snapshot.
pub fn render(frame: &mut Frame, snapshot: &Snapshot) {
    let area = frame.area();
    if area.width < TOO_SMALL.0 || area.height < TOO_SMALL.1 {
        let note = format!(
            "xdpctl watch needs a terminal of at least {MIN_WIDTH}x{MIN_HEIGHT} (this one is \
             {}x{}). q quits.",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(note).wrap(Wrap { trim: true }), area);
        return;
    }
    let panel_rows = PANEL_ROWS.max(area.height * 2 / 5);
    let [header, chart, panels] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(panel_rows),
    ])
    .areas(area);
    render_header(frame, header, snapshot);
    render_chart(frame, chart, snapshot);
    let counters_width = (panels.width * 62 / 100)
        .max(COUNTERS_WIDTH)
        .min(panels.width);
    let [counters, side] =
        Layout::horizontal([Constraint::Length(counters_width), Constraint::Min(0)]).areas(panels);
    render_counters(frame, counters, snapshot);
    let [talkers, rules] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(RULES_ROWS)]).areas(side);
    render_talkers(frame, talkers, snapshot);
    render_rules(frame, rules, snapshot);
}

fn render_header(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let quit = " q quit ";
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(quit.len() as u16)]).areas(area);
    let mut spans = vec![
        Span::styled(" xdpctl watch ", heading()),
        Span::styled(
            snapshot.interface.clone(),
            heading().add_modifier(Modifier::REVERSED),
        ),
        Span::raw("  "),
    ];
    match &snapshot.problem {
        // A problem comes first: it matters more than the program's name, and must not be cut.
        Some(problem) => spans.push(Span::styled(
            problem.clone(),
            Style::default()
                .fg(rgb(crate::output::graph::DROPPED))
                .add_modifier(Modifier::BOLD),
        )),
        None => {
            spans.push(Span::raw(format!(
                "{} (id {})  every {} s  ",
                snapshot.program, snapshot.program_id, snapshot.interval
            )));
            spans.push(Span::styled(
                format!(
                    "{} UTC",
                    crate::output::history::clock_time(snapshot.unix_time)
                ),
                dim(),
            ));
        }
    }
    frame.render_widget(Line::from(spans), left);
    frame.render_widget(Line::styled(quit, dim()).right_aligned(), right);
}

fn render_chart(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let newest = snapshot.history.last();
    // The legend, with the newest second's counts, in the top border: inside the plot it would
    // hide the newest seconds.
    let mut legend = Vec::new();
    for (name, color, shape, pick) in series() {
        let swatch = if shape == Shape::Area {
            "██ "
        } else {
            "━━ "
        };
        legend.push(Span::styled(swatch, Style::default().fg(color)));
        let value = newest.map(|s| format!(" {}", fit(pick(s), 9)));
        legend.push(Span::raw(format!("{name}{}  ", value.unwrap_or_default())));
    }
    let legend = Line::from(legend).right_aligned();
    let title = format!(" Last {CHART_SECONDS} s ");
    let mut block = Block::bordered().title_top(legend.clone());
    if title.len() + legend.width() + 2 <= area.width as usize {
        block = block.title_top(Line::styled(title, heading()).left_aligned());
    }

    let points: Vec<Vec<(f64, f64)>> = series()
        .iter()
        .map(|&(_, _, shape, pick)| plot_points(&snapshot.history, shape, pick))
        .collect();
    let datasets = series()
        .iter()
        .zip(&points)
        .map(|(&(_, color, shape, _), data)| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(match shape {
                    Shape::Area => GraphType::Bar,
                    Shape::Line => GraphType::Line,
                })
                .style(Style::default().fg(color))
                .data(data)
        })
        .collect();
    let peak = snapshot
        .history
        .iter()
        .map(|s| s.received.max(s.passed).max(s.dropped))
        .max()
        .unwrap_or(0);
    let top = nice_ceiling(peak as f64);
    let span = CHART_SECONDS as f64;
    let chart = Chart::new(datasets)
        .block(block)
        .legend_position(None)
        .x_axis(
            Axis::default()
                .bounds([-span, 0.0])
                .labels([
                    format!("-{}s", CHART_SECONDS),
                    format!("-{}s", CHART_SECONDS / 2),
                    "0s".to_owned(),
                ])
                .style(dim()),
        )
        .y_axis(
            Axis::default()
                .title(Span::styled("pkt/s", dim()))
                .bounds([0.0, top])
                .labels([compact(0.0), compact(top / 2.0), compact(top)])
                .labels_alignment(Alignment::Right)
                .style(dim()),
        );
    frame.render_widget(chart, area);
    if snapshot.history.is_empty() && area.height > 4 {
        let middle = Rect::new(area.x + 1, area.y + area.height / 2, area.width - 2, 1);
        frame.render_widget(
            Line::styled("no completed second yet", dim()).centered(),
            middle,
        );
    }
}

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

fn render_counters(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
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

fn render_talkers(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
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
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(width.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

fn render_rules(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::stats::{ActionRate, CounterRate, FwReport};
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
            (second.received, second.passed, second.dropped) =
                (u64::MAX, u64::MAX / 2, u64::MAX / 2);
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

    #[test]
    fn rule_counts_by_family_and_whether_block_rules_are_ranked() {
        let mut metrics = RuleMetrics::default();
        metrics.block.ipv4 = 2;
        metrics.block.ipv6 = 1;
        metrics.allow.ipv6 = 1;
        let counts = RuleCounts::of(&metrics, Vec::new(), RateLimit::default());
        assert_eq!(
            (
                counts.block_v4,
                counts.block_v6,
                counts.allow_v4,
                counts.allow_v6
            ),
            (2, 1, 0, 1)
        );
        assert!(counts.block_rules_ranked);
        metrics.block.ipv4 = BLOCK_RULES_RANKED;
        assert!(!RuleCounts::of(&metrics, Vec::new(), RateLimit::default()).block_rules_ranked);
    }
}
