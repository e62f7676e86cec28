//! `xdpctl watch`'s screen: [`render`], a pure function of a counters::dashboard [`Snapshot`],
//! so tests draw it on ratatui's TestBackend. The chart is in chart.rs, the counters, sources
//! and rules panels in panels.rs; the terminal loop lives in commands/watch.rs.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::counters::dashboard::Snapshot;
use crate::output::history::clock_time;

mod chart;
mod panels;
#[cfg(test)]
mod tests;

use chart::render_chart;
pub use panels::describe_rate_limit;
use panels::{render_counters, render_rules, render_talkers};

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

/// Whether a key quits: q, Esc, or Ctrl-C (which raw mode delivers as a key, not a signal).
pub fn is_quit_key(key: &KeyEvent) -> bool {
    match key.code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
        KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

fn rgb(color: plotters::style::RGBColor) -> Color {
    Color::Rgb(color.0, color.1, color.2)
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
                format!("{} UTC", clock_time(snapshot.unix_time)),
                dim(),
            ));
        }
    }
    frame.render_widget(Line::from(spans), left);
    frame.render_widget(Line::styled(quit, dim()).right_aligned(), right);
}
