//! `xdpctl watch IFACE`: the live dashboard's terminal loop. What it shows is gathered by
//! counters/dashboard.rs and drawn by output/watch.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::DefaultTerminal;

use super::parsers::{interface_name, positive_seconds};
use crate::counters::dashboard::Collector;
use crate::output::watch;
use crate::sys::clock::monotonic_ns;
use crate::{counters::history, sys::privileges};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The interface whose program to watch (any of xdpctl's built-in programs; the firewall
    /// adds drop reasons, protocols, top sources and rules).
    #[arg(value_parser = interface_name)]
    pub interface: String,

    /// Seconds between updates of the counters, rates and top sources (fractions allowed).
    #[arg(short, long, default_value_t = 1.0, value_parser = positive_seconds)]
    pub interval: f64,
}

/// How long to wait for a key before checking the clock, the interval and signals again.
const TICK: Duration = Duration::from_millis(100);

pub fn run(args: &WatchArgs) -> Result<ExitCode> {
    privileges::require("watch")?;
    // Everything that can be refused is checked before the terminal changes.
    let mut collector = Collector::open(&args.interface, args.interval)?;
    if !std::io::stdout().is_terminal() {
        bail!(
            "xdpctl watch draws a dashboard, and its output is not a terminal: for text to pipe \
             or save, use `xdpctl stats {0}` (counters and rates) or `xdpctl history {0}` \
             (packets of each second)",
            args.interface
        );
    }
    let mut shown_second = history::last_completed(monotonic_ns());
    let mut snapshot = collector.snapshot()?;
    // SIGTERM (and SIGINT sent with kill) end the loop like q does.
    let stop = super::stop_requested();
    let mut screen = Screen::enter()?;
    let interval = Duration::from_secs_f64(args.interval);
    let mut next_sample = Instant::now() + interval;
    let mut redraw = true;
    while !stop.load(Ordering::SeqCst) {
        if redraw {
            screen
                .terminal
                .draw(|frame| watch::render(frame, &snapshot))
                .context("drawing the dashboard")?;
            redraw = false;
        }
        let wait = next_sample
            .saturating_duration_since(Instant::now())
            .min(TICK);
        if event::poll(wait).context("reading the keyboard")? {
            match event::read().context("reading the keyboard")? {
                Event::Key(key) if key.kind == KeyEventKind::Press && watch::is_quit_key(&key) => {
                    break
                }
                Event::Resize(..) => redraw = true,
                _ => {}
            }
        }
        let now = Instant::now();
        if now >= next_sample {
            // On a fixed cadence, so each period is the interval; after a stall, start afresh.
            next_sample += interval;
            if next_sample <= now {
                next_sample = now + interval;
            }
            collector.refresh_counters(&mut snapshot)?;
            redraw = true;
        }
        let newest = history::last_completed(monotonic_ns());
        if newest != shown_second {
            shown_second = newest;
            collector.refresh_history(&mut snapshot)?;
            redraw = true;
        }
    }
    drop(screen);
    Ok(ExitCode::SUCCESS)
}

/// The terminal in raw mode on the alternate screen; dropping it restores the terminal, on
/// every way out: quitting, an error (before main prints it), or a panic (ratatui's panic hook
/// restores it first, then unwinding drops this).
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> Result<Screen> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(err) => {
                // It may have got as far as raw mode.
                ratatui::restore();
                Err(err).context("setting up the terminal")
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}
