//! Prometheus metrics: a snapshot of what the kernel holds (the counters of every interface that
//! runs xdpctl's program, rule counts, rate-limited and auto-blocked sources), collected in one
//! pass. output/prometheus.rs renders it in the text exposition format; `xdpctl exporter`
//! (src/commands/exporter.rs) serves it over HTTP.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::Instant;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapHandle, ProgramInput};

use crate::counters::stats::{self, Counters, FwCounters, StatsMaps};
use crate::firewall::{FirewallMaps, List, RateLimit, Rule};
use crate::skel::map_counts::MapCountsSkelBuilder;
use crate::sys::{attach, map_io};

/// A source whose bucket was empty at its last packet counts as rate-limited while that packet
/// is this recent. The kernel only updates a bucket when a packet arrives, so "empty at the last
/// packet, and that packet was recent" is what the table can tell; a second spans several
/// ticks of the coarse clock the program reads.
pub const RECENT_NS: u64 = 1_000_000_000;

/// One interface that runs xdpctl's program.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InterfaceMetrics {
    pub interface: String,
    pub program: String,
    pub program_id: u32,
    pub mode: String,
    /// None for a program without an xdp_stats_map in the tutorial's layout.
    pub actions: Option<Counters>,
    /// The firewall's own counters; None for other programs.
    pub firewall: Option<FwCounters>,
}

/// How many live rules a list holds, per family, and how many of them the rate limiter made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixCounts {
    pub ipv4: u64,
    pub ipv6: u64,
    /// Live rules with reason FW_REASON_RATELIMIT: sources auto-blocked right now.
    pub rate_limited: u64,
    /// Live rules with reason FW_REASON_PREFIX: prefixes auto-blocked right now.
    pub prefix_limited: u64,
}

/// How many port rules are on, per protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounts {
    pub tcp: u64,
    pub udp: u64,
}

/// The firewall's global state: its rules and its source table (shared by every interface).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleMetrics {
    pub allow: PrefixCounts,
    pub block: PrefixCounts,
    pub ports: PortCounts,
    pub rate_limited_sources: u64,
}

/// Everything one scrape shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub interfaces: Vec<InterfaceMetrics>,
    pub rules: RuleMetrics,
    /// How long collecting this snapshot took.
    pub scrape_seconds: f64,
}

/// Counts the firewall's rules and rate-limited sources. Port rules and sources are counted in
/// the kernel with bpf/map_counts.bpf.c: loaded for this one count with its maps pointed at the
/// pinned maps of `maps`, run once, and dropped, so it never holds a map that was unpinned since.
/// The exact tables are mapped into this process and counted here; LPM tries have no in-kernel
/// walk, so their ranges are read out and counted here too.
pub fn count_rules(maps: &FirewallMaps, now_ns: u64) -> Result<RuleMetrics> {
    let config = maps.config()?;
    let rate_limit = RateLimit::of_config(&config);
    let mut storage = MaybeUninit::uninit();
    let mut open = MapCountsSkelBuilder::default()
        .open(&mut storage)
        .context("opening the map counting program")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the map counting program has no .rodata")?;
    rodata.now_ns = now_ns;
    rodata.recent_ns = RECENT_NS;
    // Without a limit the buckets mean nothing (new slots even start empty).
    rodata.count_sources = (rate_limit.enabled && rate_limit.pps > 0) as u8;
    for mut map in open.open_object_mut().maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        let pinned = match name.as_str() {
            "ports" => &maps.ports,
            "sources" => &maps.sources,
            // .rodata and .bss are the program's own.
            _ => continue,
        };
        map.reuse_fd(pinned.as_fd())
            .with_context(|| format!("pointing the map counting program at {name}"))?;
    }
    let skel = open
        .load()
        .context("loading the map counting program (bpf_for_each_map_elem, Linux >= 5.14)")?;
    skel.progs
        .xdpctl_counts
        .test_run(ProgramInput::default())
        .context("running the map counting program")?;
    let bss = skel
        .maps
        .bss_data
        .as_deref()
        .context("the map counting program has no .bss")?;

    let mut allow = PrefixCounts::default();
    let mut block = PrefixCounts::default();
    for (counts, list) in [(&mut allow, List::Allow), (&mut block, List::Block)] {
        // An empty map's bit in maps_in_use is clear.
        if config.maps_in_use & FirewallMaps::rule_bit(list, None) != 0 {
            maps.exact_table(list)?.for_each(|_, entry| {
                if entry.expires_ns == 0 || now_ns < entry.expires_ns {
                    match entry.key.addr() {
                        std::net::IpAddr::V4(_) => counts.ipv4 += 1,
                        std::net::IpAddr::V6(_) => counts.ipv6 += 1,
                    }
                    counts.rate_limited += (entry.reason == crate::abi::FW_REASON_RATELIMIT) as u64;
                }
            });
        }
        for ipv6 in [false, true] {
            if config.maps_in_use & FirewallMaps::rule_bit(list, Some(ipv6)) == 0 {
                continue;
            }
            let trie = maps.trie(list, ipv6);
            let trie_counts = count_trie(trie, now_ns)?;
            if ipv6 {
                counts.ipv6 += trie_counts.ipv4;
            } else {
                counts.ipv4 += trie_counts.ipv4;
            }
            counts.rate_limited += trie_counts.rate_limited;
            counts.prefix_limited += trie_counts.prefix_limited;
        }
    }
    Ok(RuleMetrics {
        allow,
        block,
        ports: PortCounts {
            tcp: bss.port_rules.tcp,
            udp: bss.port_rules.udp,
        },
        rate_limited_sources: bss.rate_limited_sources,
    })
}

/// The rules of an LPM trie that have not expired at `now_ns` (in `ipv4`, whatever the trie's
/// family), and those of them the rate limiter and the prefix limits made (as count_rule in
/// bpf/map_counts.bpf.c does for the hashes).
fn count_trie(trie: &MapHandle, now_ns: u64) -> Result<PrefixCounts> {
    let mut counts = PrefixCounts::default();
    map_io::for_each_entry(trie, |_, value| {
        let mut rule = Rule::default();
        let _ = plain::copy_from_bytes(&mut rule, value);
        if rule.expires_ns == 0 || now_ns < rule.expires_ns {
            counts.ipv4 += 1;
            counts.rate_limited +=
                (u32::from(rule.reason) == crate::abi::FW_REASON_RATELIMIT) as u64;
            counts.prefix_limited +=
                (u32::from(rule.reason) == crate::abi::FW_REASON_PREFIX) as u64;
        }
    })?;
    Ok(counts)
}

/// Reads everything from the kernel. Map fds are opened here and closed on return, so nothing is
/// held between scrapes while interfaces and programs come and go. Only reads: unlike `list`,
/// it sweeps no expired rule.
pub fn collect() -> Result<Snapshot> {
    let started = Instant::now();
    let interfaces = collect_interfaces()?;
    // No pinned maps yet (no load or rule edit so far): no rules, and nothing to create.
    let rules = match FirewallMaps::open_pinned()? {
        Some(maps) => count_rules(&maps, maps.now_ns()?)?,
        None => RuleMetrics::default(),
    };
    Ok(Snapshot {
        interfaces,
        rules,
        scrape_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The interfaces that `status` shows as xdpctl's (a pinned load or a live `run`), with their
/// counters. One whose program was replaced or that vanished since the listing is left out of
/// this scrape: it is gone, which is not an error.
fn collect_interfaces() -> Result<Vec<InterfaceMetrics>> {
    let mut out = Vec::new();
    for row in crate::sys::pins::attached_programs(None)? {
        if row.owner != "xdpctl" {
            continue;
        }
        let Ok(program) = attach::program_summary(row.id) else {
            continue;
        };
        let (actions, firewall) = match StatsMaps::of_program(&program) {
            Some(maps) => (
                Some(stats::read_counters(&maps.actions)?),
                maps.firewall
                    .as_ref()
                    .map(stats::read_fw_counters)
                    .transpose()?,
            ),
            None => (None, None),
        };
        out.push(InterfaceMetrics {
            interface: row.interface,
            program: row.program,
            program_id: row.id,
            mode: row.mode,
            actions,
            firewall,
        });
    }
    Ok(out)
}
