//! The per-packet benchmark's probes: the programs under test, each path through them as a
//! BPF_PROG_RUN of one frame or of random sources, and the firewall configurations measured.

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::OpenObject;
use xdpctl::firewall::{FirewallMaps, List, RateLimit, RateLimitProto};
use xdpctl::lab::flood::{self, FloodProto, Generator, Plan, Until};
use xdpctl::packets;
use xdpctl::skel::firewall::{FirewallSkel, FirewallSkelBuilder};
use xdpctl::skel::flood::FloodSkelBuilder;

use crate::harness::{rule_set, rule_set_spread};

/// A 64-byte Ethernet/IPv4/UDP frame (without the FCS) from `src`.
pub(crate) fn udp64(src: Ipv4Addr) -> Vec<u8> {
    packets::udp(src.into(), [192, 0, 2, 1].into(), 9, &[0x5a; 22])
}

/// Largest power of two not above n: the random block within the exact addresses.
pub(crate) fn pow2_floor(n: usize) -> u32 {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// One path through one program: a frame from one source, or frames from random sources.
pub(crate) enum Probe {
    Same {
        fd: i32,
        frame: Vec<u8>,
        expect: u32,
    },
    Random {
        generator: Box<Generator>,
        /// `XDP_PASS_OR_DROP` for sources of which some are blocked.
        expect: u32,
    },
}

/// A random-source probe's `expect` when its sources may be blocked or not.
const XDP_PASS_OR_DROP: u32 = u32::MAX;

impl Probe {
    /// The kernel's mean ns per run over one BPF_PROG_RUN of `repeat`.
    pub(crate) fn once(&self, repeat: u32) -> Result<f64> {
        let (verdict, ns, expect) = match self {
            Probe::Same { fd, frame, expect } => {
                let (v, ns) = flood::test_run(*fd, frame, repeat)?;
                (v, ns, *expect)
            }
            Probe::Random { generator, expect } => {
                let (v, ns) = generator.spray(repeat)?;
                (v, ns, *expect)
            }
        };
        if verdict != expect && !(expect == XDP_PASS_OR_DROP && (verdict == 1 || verdict == 2)) {
            bail!("verdict {verdict}, expected {expect}");
        }
        Ok(ns)
    }
}

/// A spray generator: random sources from `source` (a prefix), then a tail call into `target`.
pub(crate) fn sprayer(source: &str, target: std::os::fd::BorrowedFd<'_>) -> Result<Generator> {
    let generator = Generator::new(&Plan {
        ifname: String::new(),
        ifindex: 0,
        proto: FloodProto::Udp,
        source: source.parse()?,
        destination: "192.0.2.1".parse()?,
        source_mac: [2, 0, 0, 0, 0, 1],
        destination_mac: [2, 0, 0, 0, 0, 2],
        size: 64,
        pps: None,
        until: Until::Count(0),
    })?;
    generator.set_spray_target(target)?;
    Ok(generator)
}

/// A program under test with its four paths: pass and drop, from one source and from random
/// sources.
pub(crate) struct Subject {
    pub(crate) name: String,
    pub(crate) rules: String,
    /// Counted in the targets (the realistic mixes of the firewall, and xdp-filter).
    pub(crate) rule_count: Option<usize>,
    /// The realistic mix of this many rules, but with a source table that fits in the cache.
    pub(crate) cached_sources_rules: Option<usize>,
    /// The firewall's rule mix (MIXED, SPREAD, EXACT_ONLY, ...).
    pub(crate) mix: Option<&'static str>,
    /// Emptied once measured, which lets the program go.
    pub(crate) probes: Vec<Probe>,
    pub(crate) best: [f64; 4],
    /// Each load's best, when the configuration was loaded more than once.
    pub(crate) loads: Vec<[f64; 4]>,
}

pub(crate) fn subject(
    name: &str,
    rules: String,
    rule_count: Option<usize>,
    fd: std::os::fd::BorrowedFd<'_>,
    blocked_block: &str,
    clean: CleanSources,
) -> Result<Subject> {
    let raw = fd.as_raw_fd();
    Ok(Subject {
        name: name.to_owned(),
        rules,
        rule_count,
        cached_sources_rules: None,
        mix: None,
        loads: Vec::new(),
        probes: vec![
            Probe::Same {
                fd: raw,
                frame: udp64(Ipv4Addr::new(10, 0, 0, 1)),
                expect: 2,
            },
            Probe::Same {
                fd: raw,
                frame: udp64(Ipv4Addr::new(100, 64, 0, 7)),
                expect: 1,
            },
            match clean {
                CleanSources::Unlisted => Probe::Random {
                    generator: Box::new(sprayer("10.0.0.0/8", fd)?),
                    expect: 2,
                },
                CleanSources::Anywhere => Probe::Random {
                    generator: Box::new(sprayer("0.0.0.0/0", fd)?),
                    expect: XDP_PASS_OR_DROP,
                },
            },
            Probe::Random {
                generator: Box::new(sprayer(blocked_block, fd)?),
                expect: 1,
            },
        ],
        best: [f64::MAX; 4],
    })
}

/// Where a subject's random clean sources come from.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum CleanSources {
    /// 10.0.0.0/8, where no rule lies.
    Unlisted,
    /// The whole IPv4 space, where spread ranges catch a share of them.
    Anywhere,
}

/// The block of exact addresses random drops draw from: a power of two within the list.
pub(crate) fn exact_block(exact: usize) -> String {
    format!("100.64.0.0/{}", 32 - pow2_floor(exact).trailing_zeros())
}

/// 8-byte words in the one-miss floor's array: 64 MB, far larger than any cache here.
pub(crate) const FLOOR_WORDS: u32 = 8 << 20;
/// The smaller arrays of the random-read table: 32 KiB, 256 KiB, 1 MiB, 8 MiB.
pub(crate) const READ_LADDER: [u32; 4] = [4 << 10, 32 << 10, 128 << 10, 1 << 20];

/// An array of `words` 8-byte words, in KiB or MiB.
pub(crate) fn size_of_words(words: u32) -> String {
    match words as u64 * 8 {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    }
}

/// One random 8-byte read per packet in an array of `words` (bpf/flood.bpf.c's `one_read`),
/// or, `chained`, each read waiting for the last (`one_read_chained`).
pub(crate) fn one_read_probe(words: u32, chained: bool) -> Result<Probe> {
    let storage = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = FloodSkelBuilder::default().open(storage)?;
    open.maps.floor_words.set_max_entries(words)?;
    open.maps
        .rodata_data
        .as_deref_mut()
        .context("the flood program has no .rodata")?
        .floor_mask = words - 1;
    // Leaked with its storage: the probe's generator tail-calls the program for the whole run.
    let skel = Box::leak(Box::new(open.load()?));
    let program = if chained {
        &skel.progs.one_read_chained
    } else {
        &skel.progs.one_read
    };
    Ok(Probe::Random {
        generator: Box::new(sprayer("10.0.0.0/8", program.as_fd())?),
        expect: 1,
    })
}

/// The rule mix block lists have.
const MIXED: &str = "mixed: 99% addresses, 1% ranges";
/// The same mix with its ranges spread over the whole IPv4 space (harness::rule_set_spread).
pub(crate) const SPREAD: &str =
    "99% addresses, 1% ranges spread over the IPv4 space; sources anywhere";
/// Its twin without the ranges.
pub(crate) const EXACT_ONLY: &str = "addresses only; sources anywhere";
/// A source table that fits in the cache (the default holds 262,144 sources, 12 MB).
pub(crate) const SMALL_SOURCE_TABLE: u32 = 4096;

/// The firewall loaded (not attached) with `rules` as block rules and the rate limit on at a
/// rate no source reaches, so its pass path runs the whole limiter; `sources` sizes its source
/// table, else the default.
pub(crate) fn armed_firewall<'a>(
    storage: &'a mut MaybeUninit<OpenObject>,
    rules: &[IpNet],
    sources: Option<u32>,
) -> Result<FirewallSkel<'a>> {
    let mut open = FirewallSkelBuilder::default().open(storage)?;
    if let Some(sources) = sources {
        xdpctl::firewall::set_source_table_size(open.open_object_mut(), sources)?;
    }
    let skel = open.load()?;
    let maps = FirewallMaps::from_object(skel.object())?;
    xdpctl::firewall::rules::add_prefixes(&maps, List::Block, rules, 0, 0)?;
    // The rate limit at a rate no source reaches, with its default prefix limits: the pass
    // path runs the whole limiter and counts every packet's prefixes.
    let rl = RateLimit {
        enabled: true,
        pps: 1_000_000_000,
        burst: 1_000_000_000,
        block_for_ns: 0,
        proto: RateLimitProto::All,
    };
    let prefixes = xdpctl::firewall::prefix_limits::PrefixLimits::defaults(rl.pps);
    maps.set_rate_limit_and_prefixes(&rl, &prefixes)?;
    Ok(skel)
}

/// A firewall configuration of the per-packet table.
pub(crate) struct Config {
    pub(crate) rules: usize,
    pub(crate) ranges: usize,
    pub(crate) mix: &'static str,
    /// The source table's size, if not the default.
    pub(crate) sources: Option<u32>,
    pub(crate) clean: CleanSources,
}

impl Config {
    pub(crate) fn mixed(rules: usize) -> Config {
        Config {
            rules,
            ranges: (rules / 100).max(1),
            mix: MIXED,
            sources: None,
            clean: CleanSources::Unlisted,
        }
    }

    pub(crate) fn rule_set(&self) -> Vec<IpNet> {
        match self.mix {
            SPREAD | EXACT_ONLY => rule_set_spread(self.rules - self.ranges, self.ranges),
            _ => rule_set(self.rules - self.ranges, self.ranges),
        }
    }
}

/// One loaded firewall as a subject of the per-packet table.
pub(crate) fn firewall_subject(skel: &FirewallSkel<'_>, config: &Config) -> Result<Subject> {
    let Config {
        rules: n,
        ranges,
        mix,
        sources,
        clean,
    } = *config;
    let realistic = mix == MIXED && sources.is_none();
    let cached_sources = mix == MIXED && sources.is_some();
    let table = match sources {
        Some(sources) => format!(
            ", a source table of {}",
            xdpctl::output::numbers::thousands(u64::from(sources))
        ),
        None => String::new(),
    };
    let mut subject = subject(
        "firewall, rate limit on",
        format!(
            "{} ({mix}){table}",
            xdpctl::output::numbers::thousands(n as u64)
        ),
        realistic.then_some(n),
        skel.progs.firewall.as_fd(),
        &exact_block(n - ranges),
        clean,
    )?;
    subject.mix = Some(mix);
    subject.cached_sources_rules = cached_sources.then_some(n);
    Ok(subject)
}
