//! Prefix limits in the kernel against the model: exact verdict sequences for spoofed sources
//! crossing a prefix's limit, the prefix block and its expiry, an allowlisted host inside a
//! flooded prefix, and IPv6; then every sketch cell and heavy prefix of the CPU the test ran on,
//! and the block list, compared with the model's.

mod common;

use std::net::IpAddr;

use ipnet::IpNet;
use xdpctl::firewall::model::{DropReason, Firewall, PrefixConfig, RateLimit, RuleState, Verdict};
use xdpctl::firewall::{prefix_limits, rules, FirewallMaps, List};
use xdpctl::skel::firewall::FirewallSkel;

const PASS: Verdict = Verdict::Pass;
const PREFIX: Verdict = Verdict::Drop(DropReason::Prefix);
const T0: u64 = 5_000_000_000_000;
const S: u64 = 1_000_000_000;

fn udp(src: &str) -> Vec<u8> {
    let src: IpAddr = src.parse().unwrap();
    let dst: IpAddr = if src.is_ipv6() {
        "2001:db8::1".parse().unwrap()
    } else {
        "192.0.2.1".parse().unwrap()
    };
    xdpctl::packets::udp(src, dst, 53, &[])
}

/// The firewall loaded (not attached) on this test's own maps, and a model of it, with a rate
/// limit of 1000 pps per source and the given thresholds per window of 2^28 ns.
fn setup(
    thresholds: [u32; 6],
    block_for_ns: u64,
) -> (FirewallSkel<'static>, FirewallMaps, Firewall) {
    common::pin_to_cpu(0);
    let (skel, maps) = common::loaded_firewall();
    let rl = RateLimit {
        enabled: true,
        pps: 1000,
        burst: 1000,
        ..RateLimit::default()
    };
    maps.set_rate_limit(&rl).unwrap();
    let prefix = PrefixConfig {
        thresholds,
        window_shift: 28,
        seed: 0x5eed,
        block_for_ns,
    };
    let mut config = maps.config().unwrap();
    prefix.write_to(&mut config);
    // What `ratelimit set` does for prefix blocks: the block tries are never skipped.
    config.maps_in_use |= FirewallMaps::rule_bit(List::Block, Some(false))
        | FirewallMaps::rule_bit(List::Block, Some(true));
    maps.set_config(&config).unwrap();
    let mut model = Firewall {
        source_set_mask: config.source_set_mask,
        source_seed: config.source_seed,
        rate_limit: rl,
        lease_max: config.rl_lease_max,
        ..Firewall::default()
    };
    model.prefix.config = prefix;
    (skel, maps, model)
}

/// Runs (time, packet, expected) steps through kernel and model; then compares their state.
fn sequence(
    skel: &FirewallSkel,
    maps: &FirewallMaps,
    model: &mut Firewall,
    steps: &[(u64, Vec<u8>, Verdict)],
) {
    for (i, (now, bytes, expected)) in steps.iter().enumerate() {
        maps.set_clock(*now).unwrap();
        let kernel = common::firewall_verdict(skel, bytes);
        let modeled = model.process(bytes, *now);
        assert_eq!(
            (kernel, modeled),
            (expected.xdp_action(), *expected),
            "step {i} at t={now}"
        );
    }
    compare_state(maps, model);
}

fn compare_state(maps: &FirewallMaps, model: &Firewall) {
    let kernel = prefix_limits::cpu_counts(maps, 0).unwrap();
    assert_eq!(kernel.cells, model.prefix.cells, "sketch cells of CPU 0");
    assert_eq!(kernel.heavy, model.prefix.heavy, "heavy prefixes of CPU 0");
    for cpu in 1..libbpf_rs::num_possible_cpus().unwrap() {
        let other = prefix_limits::cpu_counts(maps, cpu).unwrap();
        assert!(
            other.cells.is_empty() && other.heavy.is_empty(),
            "CPU {cpu} counted"
        );
    }
    let now = maps.now_ns().unwrap();
    let mut listed: Vec<(IpNet, u64, u32, u64)> = rules::list_prefixes(maps, List::Block, now)
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.prefix,
                e.hits,
                e.reason,
                e.expires_in.map_or(0, |s| (s * 1e9).round() as u64),
            )
        })
        .collect();
    listed.sort();
    let mut modeled: Vec<(IpNet, u64, u32, u64)> = model
        .block
        .ranges
        .iter()
        .filter(|(_, r)| r.expires_ns == 0 || now < r.expires_ns)
        .map(|(net, r)| (*net, r.hits, r.reason, r.expires_ns.saturating_sub(now)))
        .collect();
    modeled.sort();
    assert_eq!(listed, modeled, "block list");
}

/// n spoofed sources of a /24, from host `first` on, each sending one packet at `now`.
fn spoofed(
    net: &str,
    first: u32,
    n: u32,
    now: u64,
    verdict: Verdict,
) -> Vec<(u64, Vec<u8>, Verdict)> {
    (first..first + n)
        .map(|h| (now, udp(&format!("{net}.{h}")), verdict))
        .collect()
}

#[test]
fn a_spoofed_slash_24_crosses_its_limit_is_blocked_then_expires() {
    common::require_root!();
    let (skel, maps, mut model) = setup([0, 0, 40, 0, 0, 0], 3 * S);
    let mut steps = spoofed("100.64.7", 1, 40, T0, PASS);
    // The 41st packet of the window trips the /24: dropped, and the /24 blocked for 3 s.
    steps.extend(spoofed("100.64.7", 41, 1, T0, PREFIX));
    // Blocked: any source of it, a second later, in another window; a neighbour passes.
    steps.extend(spoofed("100.64.7", 1, 3, T0 + S, PREFIX));
    steps.push((T0 + S, udp("100.64.8.1"), PASS));
    steps.push((T0 + 3 * S - 1, udp("100.64.7.200"), PREFIX));
    // Expired: it passes, and counts from zero in its new window.
    steps.extend(spoofed("100.64.7", 100, 40, T0 + 3 * S, PASS));
    sequence(&skel, &maps, &mut model, &steps);
    let blocked = model.block.ranges[&"100.64.7.0/24".parse().unwrap()];
    assert_eq!(blocked.reason, xdpctl::abi::FW_REASON_PREFIX);
    let fw = xdpctl::counters::stats::read_fw_counters(&skel.maps.fw_stats).unwrap();
    assert_eq!(fw.drop_packets[DropReason::Prefix as usize], 5);
    assert_eq!(fw.drop_packets, model.counters.drop_packets);
}

#[test]
fn an_allowlisted_host_inside_a_flooded_prefix_still_passes() {
    common::require_root!();
    let (skel, maps, mut model) = setup([0, 30, 20, 0, 0, 0], 60 * S);
    let friend: IpNet = "198.51.100.7/32".parse().unwrap();
    rules::add_prefixes(
        &maps,
        List::Allow,
        &[friend],
        0,
        xdpctl::abi::FW_REASON_MANUAL,
    )
    .unwrap();
    let live = RuleState {
        hits: 0,
        expires_ns: 0,
        reason: xdpctl::abi::FW_REASON_MANUAL,
    };
    model.allow.insert(friend, live);
    let mut steps = spoofed("198.51.100", 100, 20, T0, PASS);
    steps.extend(spoofed("198.51.100", 120, 1, T0, PREFIX));
    // The friend passes while its /24 is blocked, and never counted towards it.
    for _ in 0..30 {
        steps.push((T0, udp("198.51.100.7"), PASS));
    }
    // The /16 trips at its own limit, over /24s that each stay under theirs.
    steps.extend(spoofed("198.51.101", 1, 9, T0, PASS));
    steps.extend(spoofed("198.51.101", 10, 1, T0, PREFIX));
    steps.push((T0 + 1, udp("198.51.100.7"), PASS));
    steps.push((T0 + 1, udp("198.51.103.1"), PREFIX));
    sequence(&skel, &maps, &mut model, &steps);
    assert!(model
        .block
        .ranges
        .contains_key(&"198.51.0.0/16".parse().unwrap()));
}

#[test]
fn ipv6_prefixes_trip_at_their_slash_64_and_slash_48() {
    common::require_root!();
    let (skel, maps, mut model) = setup([0, 0, 0, 0, 25, 15], 10 * S);
    let host = |net: u32, h: u32| udp(&format!("2001:db8:77:{net:x}::{h:x}"));
    let mut steps: Vec<(u64, Vec<u8>, Verdict)> =
        (1..=15).map(|h| (T0, host(1, h), PASS)).collect();
    steps.push((T0, host(1, 16), PREFIX));
    steps.push((T0 + 1, host(1, 99), PREFIX));
    // Other /64s of the /48: the /48 reaches 25 with 9 more, trips at the 10th.
    steps.extend((2..=10).map(|n| (T0 + 2, host(n, 1), PASS)));
    steps.push((T0 + 2, host(11, 1), PREFIX));
    steps.push((T0 + 3, host(0xbeef, 5), PREFIX));
    steps.push((T0 + 3, udp("2001:db8:78::1"), PASS));
    sequence(&skel, &maps, &mut model, &steps);
    assert!(model
        .block
        .ranges
        .contains_key(&"2001:db8:77:1::/64".parse().unwrap()));
    assert!(model
        .block
        .ranges
        .contains_key(&"2001:db8:77::/48".parse().unwrap()));
}

#[test]
fn a_single_flooder_is_the_rate_limits_and_never_trips_its_prefix() {
    common::require_root!();
    // Thresholds far below the source's own bucket: the bucket passes 1001 packets, but only
    // packets that pass the bucket count, and the floor `ratelimit set` keeps (twice the
    // source's most per window) is what makes the defaults safe; here the limit is 2000.
    let (skel, maps, mut model) = setup([0, 0, 2000, 0, 0, 0], 60 * S);
    let mut steps: Vec<(u64, Vec<u8>, Verdict)> =
        (0..1001).map(|_| (T0, udp("203.0.113.9"), PASS)).collect();
    steps.extend((0..50).map(|_| (T0, udp("203.0.113.9"), Verdict::Drop(DropReason::RateLimit))));
    sequence(&skel, &maps, &mut model, &steps);
    assert!(model.block.ranges.is_empty());
}
