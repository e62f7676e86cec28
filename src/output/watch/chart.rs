//! The chart of the last seconds: received as an area, passed and dropped as lines over it.

use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType};
use ratatui::Frame;

use super::{dim, heading, rgb};
use crate::counters::dashboard::{Snapshot, CHART_SECONDS};
use crate::counters::history::Second;
use crate::output::numbers::{compact, fit};

/// The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 10): a chart's
/// top that gives round labels.
pub(super) fn nice_ceiling(value: f64) -> f64 {
    let value = value.max(10.0);
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|&top| top >= value)
        .unwrap_or(10.0 * magnitude)
}

/// How a series is drawn: received as the area under it, passed and dropped as lines over that
/// area. Received equals passed plus dropped (plus TX and redirect), so as three lines one
/// would always hide another; as an area with lines on it, all three stay visible.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Area,
    Line,
}

/// A series: its name, colour, shape, and its value in a second.
pub(super) type Series = (&'static str, Color, Shape, fn(&Second) -> u64);

/// The chart's series, in drawing order (later ones are drawn over earlier ones).
pub(super) fn series() -> [Series; 3] {
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
pub(super) fn plot_points(
    history: &[Second],
    shape: Shape,
    pick: fn(&Second) -> u64,
) -> Vec<(f64, f64)> {
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

pub(super) fn render_chart(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
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
