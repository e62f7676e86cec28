//! What `xdpctl watch` shows, gathered from the kernel: a [`Snapshot`] of the program on an
//! interface (counters and rates, the per-second history, the firewall's sources and rules),
//! taken by a [`Collector`] that keeps the previous samples rates are computed from. The screen
//! that draws it is output/watch.

use anyhow::Result;
use libbpf_rs::MapHandle;

use crate::counters::history::{self, Second};
use crate::counters::metrics::{self, RuleMetrics};
use crate::counters::stats::{self, Report, Sample, StatsMaps};
use crate::firewall::rules;
use crate::firewall::talkers::{self, SourceSample, Talker};
use crate::firewall::{FirewallMaps, List, RateLimit};
use crate::input::PortSpec;
use crate::sys::attach::{self, ProgramSummary};

/// The chart's span.
pub const CHART_SECONDS: u64 = 60;
/// Talkers kept in a snapshot: more than fit at 80x24, as many as a tall terminal shows.
pub const TALKERS: usize = 40;

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
        snapshot.unix_time = crate::sys::clock::unix_now() as i64;
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
        snapshot.unix_time = crate::sys::clock::unix_now() as i64;
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

#[cfg(test)]
mod tests {
    use super::*;

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
