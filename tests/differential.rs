//! The firewall against its reference model (src/firewall/model/): random rule sets, random and
//! mutated packets through the loaded program with BPF_PROG_TEST_RUN, and the verdict of every
//! packet compared. Every counter, rule hit, port hit and per-source bucket is compared too, at
//! checkpoints. The rules go in through the same code as `xdpctl block` (src/firewall/rules.rs).
//!
//! XDPCTL_DIFF_PACKETS sets the number of packets (default 40,000; `make difftest` runs
//! 1,000,000); XDPCTL_DIFF_SEED replays a run.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::mem::MaybeUninit;

use common::random_frames::{mutate, random_frame, Universe};
use ipnet::IpNet;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::ProgramInput;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use xdpctl::counters::stats;
use xdpctl::firewall::model::{self, Firewall, RateLimit, RuleState, Verdict};
use xdpctl::firewall::{self, FirewallMaps, List, RateLimitProto};
use xdpctl::firewall::{rules, talkers};
use xdpctl::input::{PortProto, PortSpec};
use xdpctl::packets::non_ip_frame;
use xdpctl::skel::firewall::FirewallSkelBuilder;
use xdpctl::sys::map_io;

const PACKETS_PER_RULE_SET: usize = 20_000;
const CHECKPOINT: usize = 2_500;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn say(text: &str) {
    let _ = std::io::stderr().write_all(format!("{text}\n").as_bytes());
}

/// A random prefix around an address of the universe.
fn random_prefix(rng: &mut StdRng, universe: &Universe) -> IpNet {
    let ipv6 = rng.gen_bool(0.4);
    let addr = universe.addr(rng, ipv6);
    let len = if rng.gen_bool(0.5) {
        if ipv6 {
            128
        } else {
            32
        }
    } else if ipv6 {
        *[0u8, 32, 40, 44, 46, 48, 120, 124, 127]
            .choose(rng)
            .unwrap()
    } else {
        *[0u8, 8, 12, 16, 22, 24, 28, 30, 31].choose(rng).unwrap()
    };
    IpNet::new(addr, len).unwrap().trunc()
}

/// Both sides of one run: the kernel's maps and the model, kept in step.
struct RuleSet {
    model: Firewall,
    now: u64,
    /// Prefix limits that a sure rule set turns on a quarter of the way in: before, nothing
    /// but the rate limit stands in a flooder's way, so its bucket surely empties (low
    /// thresholds from the start can trip its prefix before its burst is spent).
    later_prefix: Option<model::PrefixConfig>,
}

impl RuleSet {
    fn set_prefix_limits(&mut self, maps: &FirewallMaps, prefix: model::PrefixConfig) {
        let mut config = maps.config().unwrap();
        prefix.write_to(&mut config);
        config.maps_in_use |= FirewallMaps::rule_bit(List::Block, Some(false))
            | FirewallMaps::rule_bit(List::Block, Some(true));
        maps.set_config(&config).unwrap();
        self.model.prefix.config = prefix;
    }
}

fn install_rules(
    rng: &mut StdRng,
    universe: &Universe,
    maps: &FirewallMaps,
    set: usize,
) -> RuleSet {
    let now = 1_000_000_000_000u64 + rng.gen_range(0..1_000_000_000);
    let config = maps.config().unwrap();
    let mut model = Firewall {
        source_set_mask: config.source_set_mask,
        source_seed: config.source_seed,
        ..Default::default()
    };
    for (list, count) in [
        (List::Allow, rng.gen_range(0..4)),
        (List::Block, rng.gen_range(0..16)),
    ] {
        for _ in 0..count {
            let prefix = random_prefix(rng, universe);
            // In even rule sets the flooders are left to the rate limit.
            if set % 2 == 0 && universe.hot.iter().any(|hot| prefix.contains(hot)) {
                continue;
            }
            let expires_ns = if rng.gen_bool(0.2) {
                now + rng.gen_range(0..3_000_000_000)
            } else {
                0
            };
            rules::add_prefixes(
                maps,
                list,
                &[prefix],
                expires_ns,
                xdpctl::abi::FW_REASON_MANUAL,
            )
            .unwrap();
            let table = match list {
                List::Allow => &mut model.allow,
                List::Block => &mut model.block,
            };
            // Re-adding keeps the hit count (0 here) and takes the new expiry.
            table.insert(
                prefix,
                RuleState {
                    hits: 0,
                    expires_ns,
                    reason: xdpctl::abi::FW_REASON_MANUAL,
                },
            );
        }
    }
    for _ in 0..rng.gen_range(1..4) {
        let spec = PortSpec {
            port: *[22u16, 53, 80, 443, 8080, 12345].choose(rng).unwrap(),
            proto: if rng.gen_bool(0.5) {
                PortProto::Tcp
            } else {
                PortProto::Udp
            },
        };
        rules::set_ports(maps, &[spec], true).unwrap();
        model.ports.insert(spec, 0);
    }
    // Even rule sets get a limiter that surely acts (every packet counts, a low rate, a small
    // burst that a flooder empties before its prefix trips, the flooders neither blocked nor
    // allowed); odd ones anything at all.
    let sure = set % 2 == 0;
    let rl = RateLimit {
        enabled: sure || rng.gen_bool(0.5),
        pps: rng.gen_range(1..if sure { 30 } else { 100 }),
        burst: rng.gen_range(if sure { 2..6 } else { 1..20 }),
        block_for_ns: if rng.gen_bool(0.5) {
            rng.gen_range(1..2_000_000_000)
        } else {
            0
        },
        proto: if sure {
            RateLimitProto::All
        } else {
            *[
                RateLimitProto::All,
                RateLimitProto::Udp,
                RateLimitProto::Tcp,
                RateLimitProto::Icmp,
                RateLimitProto::Syn,
            ]
            .choose(rng)
            .unwrap()
        },
    };
    model.rate_limit = rl;
    maps.set_rate_limit(&rl).unwrap();
    // Leases of 0-5 tokens (0 and 1: none; the sure sets always have some), whatever the
    // burst: `ratelimit set` gives the sure sets' small bursts none.
    model.lease_max = rng.gen_range(if sure { 2 } else { 0 }..6);
    let mut config = maps.config().unwrap();
    config.rl_lease_max = model.lease_max;
    maps.set_config(&config).unwrap();
    // Prefix limits in every sure rule set (from a quarter of the way in) and half the
    // others, with thresholds past what `ratelimit set` allows (so the universe's few /24s
    // and /48s trip), windows of 4-268 ms that the clock crosses (33-268 ms in the sure sets,
    // so that a prefix surely trips once the limits are on).
    maps.set_clock(now).unwrap();
    let mut rules = RuleSet {
        model,
        now,
        later_prefix: None,
    };
    if sure || rng.gen_bool(0.5) {
        let prefix = model::PrefixConfig {
            thresholds: std::array::from_fn(|_| {
                if sure {
                    rng.gen_range(2..8)
                } else if rng.gen_bool(0.8) {
                    rng.gen_range(3..60)
                } else {
                    0
                }
            }),
            window_shift: rng.gen_range(if sure { 25 } else { 22 }..29),
            seed: rng.gen(),
            block_for_ns: if rng.gen_bool(0.7) {
                rng.gen_range(1..500_000_000)
            } else {
                0
            },
        };
        if sure {
            rules.later_prefix = Some(prefix);
        } else {
            rules.set_prefix_limits(maps, prefix);
        }
    }
    rules
}

/// Compares every piece of state; returns the differences.
fn compare_state(
    maps: &FirewallMaps,
    skel: &xdpctl::skel::firewall::FirewallSkel,
    rs: &mut RuleSet,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let c = &rs.model.counters;
    let actions = stats::read_counters(&skel.maps.xdp_stats_map).unwrap();
    for (i, (packets, bytes)) in c.actions.iter().enumerate() {
        let got = actions.0[i];
        if (got.packets, got.bytes) != (*packets, *bytes) {
            diffs.push(format!(
                "action {i}: kernel {got:?}, model ({packets}, {bytes})"
            ));
        }
    }
    let fw = stats::read_fw_counters(&skel.maps.fw_stats).unwrap();
    let expected = stats::FwCounters {
        proto_packets: c.proto_packets,
        drop_packets: c.drop_packets,
        drop_bytes: c.drop_bytes,
    };
    if fw != expected {
        diffs.push(format!("fw_stats: kernel {fw:?}, model {expected:?}"));
    }
    // Rules: `list` sweeps expired rules out of the kernel; the model drops them the same way.
    for (list, table) in [
        (List::Allow, &mut rs.model.allow),
        (List::Block, &mut rs.model.block),
    ] {
        let now = rs.now;
        let kernel = rules::list_prefixes(maps, list, now).unwrap();
        table
            .exact
            .retain(|_, r| r.expires_ns == 0 || now < r.expires_ns);
        table
            .ranges
            .retain(|_, r| r.expires_ns == 0 || now < r.expires_ns);
        let mut model: Vec<(IpNet, u64, u32)> = table
            .exact
            .iter()
            .map(|(addr, r)| (IpNet::from(*addr), r.hits, r.reason))
            .chain(table.ranges.iter().map(|(net, r)| (*net, r.hits, r.reason)))
            .collect();
        model.sort();
        let kernel: Vec<(IpNet, u64, u32)> = kernel
            .iter()
            .map(|e| (e.prefix, e.hits, e.reason))
            .collect();
        if kernel != model {
            diffs.push(format!(
                "{list:?} rules: kernel {kernel:?}, model {model:?}"
            ));
        }
    }
    let ports: HashMap<PortSpec, u64> = rules::list_ports(maps).unwrap().into_iter().collect();
    if ports != rs.model.ports {
        diffs.push(format!(
            "ports: kernel {ports:?}, model {:?}",
            rs.model.ports
        ));
    }
    // Every used slot of the source table, by (set, way): the same slots, the same state.
    let mut kernel_slots = std::collections::BTreeMap::new();
    for (key, value) in map_io::entries(&maps.sources).unwrap() {
        let mut set = firewall::SourceSet::default();
        plain::copy_from_bytes(&mut set, &value).unwrap();
        let index = u32::from_ne_bytes(key.try_into().unwrap());
        for (way, slot) in set.way.iter().enumerate().filter(|(_, s)| s.packets > 0) {
            kernel_slots.insert(
                (index, way),
                model::SourceState {
                    addr: slot.addr,
                    tokens: slot.tokens,
                    last_ns: slot.last_ns,
                    packets: slot.packets,
                    bytes: slot.bytes,
                },
            );
        }
    }
    let mut model_slots = std::collections::BTreeMap::new();
    for (index, set) in &rs.model.sources {
        for (way, slot) in set.iter().enumerate().filter(|(_, s)| s.packets > 0) {
            model_slots.insert((*index, way), *slot);
        }
    }
    if kernel_slots != model_slots {
        let mut shown = 0;
        for (at, want) in &model_slots {
            if kernel_slots.get(at) != Some(want) && shown < 3 {
                diffs.push(format!(
                    "source slot {at:?}: kernel {:?}, model {want:?}",
                    kernel_slots.get(at)
                ));
                shown += 1;
            }
        }
        diffs.push(format!(
            "source slots: kernel has {}, model {}",
            kernel_slots.len(),
            model_slots.len()
        ));
    }
    // The index: every way in use, its tag and its packets counted up to 65,535.
    let mut kernel_ways = std::collections::BTreeMap::new();
    for (key, value) in map_io::entries(&maps.source_index).unwrap() {
        let mut entry = firewall::SourceIndex::default();
        plain::copy_from_bytes(&mut entry, &value).unwrap();
        let index = u32::from_ne_bytes(key.try_into().unwrap());
        for way in (0..firewall::SOURCE_WAYS).filter(|&w| entry.packets[w] > 0) {
            let (tag, packets) = (entry.tag[way], entry.packets[way]);
            kernel_ways.insert((index, way), model::IndexWay { tag, packets });
        }
    }
    let mut model_ways = std::collections::BTreeMap::new();
    for (index, ways) in &rs.model.source_index {
        for (way, entry) in ways.iter().enumerate().filter(|(_, w)| w.packets > 0) {
            model_ways.insert((*index, way), *entry);
        }
    }
    // The leases of the CPU this thread is pinned to.
    let leases = talkers::cpu_leases(maps, 0).unwrap();
    rs.model
        .leases
        .retain(|_, lease| *lease != Default::default());
    if leases != rs.model.leases {
        let differing = rs
            .model
            .leases
            .iter()
            .find(|(at, lease)| leases.get(at) != Some(lease));
        diffs.push(format!(
            "leases: kernel has {}, model {}; first difference: {differing:?}",
            leases.len(),
            rs.model.leases.len()
        ));
    }
    // Prefix counts: the sketch cells and heavy prefixes of the CPU this thread is pinned to.
    let counts = firewall::prefix_limits::cpu_counts(maps, 0).unwrap();
    if counts.cells != rs.model.prefix.cells {
        let differing = rs
            .model
            .prefix
            .cells
            .iter()
            .find(|(at, want)| counts.cells.get(at) != Some(want));
        diffs.push(format!(
            "prefix cells: kernel has {}, model {}; first difference: {differing:?}",
            counts.cells.len(),
            rs.model.prefix.cells.len()
        ));
    }
    if counts.heavy != rs.model.prefix.heavy {
        diffs.push(format!(
            "heavy prefixes: kernel {:?}, model {:?}",
            counts.heavy, rs.model.prefix.heavy
        ));
    }
    if kernel_ways != model_ways {
        diffs.push(format!(
            "source index: kernel has {} ways in use, model {}; first difference: {:?}",
            kernel_ways.len(),
            model_ways.len(),
            model_ways
                .iter()
                .find(|(at, want)| kernel_ways.get(at) != Some(want))
                .map(|(at, want)| (at, kernel_ways.get(at), want))
        ));
    }
    diffs
}

#[test]
fn firewall_matches_its_model_on_random_and_mutated_packets() {
    common::require_root!();
    // Per-CPU prefix counts are compared on one CPU: BPF_PROG_RUN counts where it runs.
    common::pin_to_cpu(0);
    let total: usize = env_or("XDPCTL_DIFF_PACKETS", 40_000);
    let base_seed: u64 = env_or("XDPCTL_DIFF_SEED", rand::random::<u32>() as u64);
    let rule_sets = total.div_ceil(PACKETS_PER_RULE_SET);
    let mut verdicts: HashMap<Verdict, usize> = HashMap::new();
    let mut run = 0usize;
    let mut mismatches = Vec::new();

    let mut leased = 0;
    for set in 0..rule_sets {
        let seed = base_seed + set as u64;
        let mut rng = StdRng::seed_from_u64(seed);
        let universe = Universe::new(&mut rng);
        let mut object = MaybeUninit::uninit();
        let mut open = FirewallSkelBuilder::default().open(&mut object).unwrap();
        // Odd rule sets get a tiny source table (8 sets of 4), so sources fight over slots
        // and the eviction rule is compared too.
        if set % 2 == 1 {
            xdpctl::firewall::set_source_table_size(open.open_object_mut(), 32).unwrap();
        }
        let skel = open.load().unwrap();
        let maps = FirewallMaps::from_object(skel.object()).unwrap();
        let mut rs = install_rules(&mut rng, &universe, &maps, set);
        let packets = PACKETS_PER_RULE_SET.min(total - run);

        for i in 0..packets {
            if i == packets / 4 {
                if let Some(prefix) = rs.later_prefix.take() {
                    rs.set_prefix_limits(&maps, prefix);
                }
            }
            // The clock: mostly still or forward; now and then backwards (an edge the bucket
            // must survive without underflow).
            let old = rs.now;
            if rng.gen_bool(0.3) {
                rs.now += rng.gen_range(0..4_000_000);
            } else if rng.gen_bool(0.002) {
                rs.now -= rng.gen_range(0..50_000_000);
            }
            if rs.now != old {
                maps.set_clock(rs.now).unwrap();
            }
            let bytes = if rng.gen_bool(0.03) {
                non_ip_frame()
            } else {
                let frame = random_frame(&mut rng, &universe).bytes();
                mutate(&mut rng, frame)
            };
            let expected = rs.model.process(&bytes, rs.now);
            let output = skel
                .progs
                .firewall
                .test_run(ProgramInput {
                    data_in: Some(&bytes),
                    ..Default::default()
                })
                .expect("BPF_PROG_TEST_RUN");
            *verdicts.entry(expected).or_default() += 1;
            if output.return_value != expected.xdp_action() {
                mismatches.push(format!(
                    "seed {seed} packet {i}: kernel {} model {expected:?}\n  parsed {:?}\n  bytes {}",
                    output.return_value,
                    model::parse(&bytes),
                    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ));
                // Keep both sides comparable: the model's state already moved; stop here.
                break;
            }
            if (i + 1) % CHECKPOINT == 0 || i + 1 == packets {
                let diffs = compare_state(&maps, &skel, &mut rs);
                if !diffs.is_empty() {
                    mismatches.push(format!(
                        "seed {seed} after packet {i}: state differs:\n  {}",
                        diffs.join("\n  ")
                    ));
                    break;
                }
            }
        }
        run += packets;
        leased += rs.model.leased_passes;
        if !mismatches.is_empty() {
            break;
        }
    }
    let mut summary: Vec<String> = verdicts
        .iter()
        .map(|(v, n)| format!("{v:?}: {n}"))
        .collect();
    summary.sort();
    say(&format!(
        "differential: {run} packets under {rule_sets} rule sets (seeds {base_seed}..), {} mismatches; {}; {leased} passed from leases",
        mismatches.len(),
        summary.join(", ")
    ));
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(run, total);
    // The run must have exercised every outcome, or it proves little.
    for reason in [
        model::DropReason::Blocklist,
        model::DropReason::Port,
        model::DropReason::RateLimit,
        model::DropReason::Malformed,
        model::DropReason::Prefix,
    ] {
        assert!(
            verdicts.get(&Verdict::Drop(reason)).copied().unwrap_or(0) > 0,
            "no {reason:?} drops"
        );
    }
    assert!(verdicts.get(&Verdict::Pass).copied().unwrap_or(0) > 0);
}
