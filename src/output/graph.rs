//! Plots the per-second history (received vs passed vs dropped packets per second) into an SVG
//! or PNG file with plotters.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::counters::history::Second;
use crate::output::history::clock_time;
use crate::output::numbers::compact;

/// Fonts plotters may render text with (it embeds none): the first that exists is used.
const FONT_FILES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const FONT: &str = "sans-serif";

pub const RECEIVED: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
pub const PASSED: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
pub const DROPPED: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Registers a system font with plotters, once.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let Some(bytes) = FONT_FILES.iter().find_map(|path| std::fs::read(path).ok()) else {
                return Err(format!(
                    "no font to label the graph with (looked for {}): install fonts-dejavu-core",
                    FONT_FILES.join(", ")
                ));
            };
            plotters::style::register_font(FONT, FontStyle::Normal, Box::leak(bytes.into()))
                .map_err(|_| "the font file is not a valid TrueType font".to_owned())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A series: its name, colour, line width, and its value in a second.
type Line = (&'static str, RGBColor, u32, fn(&Second) -> u64);

/// The file formats a graph can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn of_path(path: &Path) -> Result<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => bail!(
                "{}: the graph is written as SVG or PNG: name the file .svg or .png",
                path.display()
            ),
        }
    }
}

/// The title: interface and the time span (UTC).
pub fn title(interface: &str, seconds: &[Second]) -> String {
    match (seconds.first(), seconds.last()) {
        (Some(first), Some(last)) => format!(
            "{interface}: packets per second, {} - {} UTC",
            clock_time(first.time),
            clock_time(last.time + 1)
        ),
        _ => format!("{interface}: packets per second"),
    }
}

/// Writes the graph of `seconds` to `path` (format from its extension).
pub fn write(path: &Path, interface: &str, seconds: &[Second]) -> Result<()> {
    let format = Format::of_path(path)?;
    if seconds.is_empty() {
        bail!(
            "{interface} has no completed second of history yet: send traffic, wait a second, \
             and try again"
        );
    }
    ensure_font()?;
    let size = (1000, 520);
    let result = match format {
        Format::Svg => draw(
            SVGBackend::new(path, size).into_drawing_area(),
            interface,
            seconds,
        ),
        Format::Png => draw(
            BitMapBackend::new(path, size).into_drawing_area(),
            interface,
            seconds,
        ),
    };
    result.with_context(|| format!("writing the graph to {}", path.display()))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    interface: &str,
    seconds: &[Second],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let start = seconds[0].time;
    let end = seconds[seconds.len() - 1].time + 1;
    let peak = seconds
        .iter()
        .map(|s| s.received.max(s.passed).max(s.dropped))
        .max()
        .unwrap_or(0)
        .max(10) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title(interface, seconds), (FONT, 22))
        .margin(12)
        .margin_right(36)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(start as f64..end as f64, 0f64..peak * 1.3)?;
    chart
        .configure_mesh()
        .x_desc("time (UTC)")
        .y_desc("packets per second")
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|t| clock_time(*t as i64))
        .y_label_formatter(&|v| compact(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()?;
    // Each second's count is a point in the middle of that second.
    let series = |pick: fn(&Second) -> u64| {
        seconds
            .iter()
            .map(move |s| (s.time as f64 + 0.5, pick(s) as f64))
            .collect::<Vec<_>>()
    };
    // Received is drawn first and widest: where passed or dropped equals it, it shows around them.
    let lines: [Line; 3] = [
        ("received", RECEIVED, 6, |s| s.received),
        ("passed", PASSED, 2, |s| s.passed),
        ("dropped", DROPPED, 2, |s| s.dropped),
    ];
    for (name, color, width, pick) in lines {
        chart
            .draw_series(LineSeries::new(series(pick), color.stroke_width(width)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(width.min(4)))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of_path(Path::new("a.svg")).unwrap(), Format::Svg);
        assert_eq!(Format::of_path(Path::new("a.PNG")).unwrap(), Format::Png);
        let err = Format::of_path(Path::new("a.jpg")).unwrap_err().to_string();
        assert!(err.contains(".svg or .png"), "{err}");
    }

    #[test]
    fn title_names_the_interface_and_span() {
        let seconds = [
            Second {
                time: 3600,
                ..Default::default()
            },
            Second {
                time: 3659,
                ..Default::default()
            },
        ];
        assert_eq!(
            title("veth0", &seconds),
            "veth0: packets per second, 01:00:00 - 01:01:00 UTC"
        );
    }
}
