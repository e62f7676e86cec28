//! Named edge-case packets, each with its exact expected verdict, run through the loaded
//! firewall (BPF_PROG_TEST_RUN) and through the reference model: both must give the expected
//! verdict. Then rate-limiter sequences that pin down the clock arithmetic.

mod common;

use std::io::Write;
use std::mem::MaybeUninit;
use std::net::IpAddr;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xdpctl::firewall::model::{DropReason, Firewall, RateLimit, RuleState, Verdict};
use xdpctl::firewall::rules;
use xdpctl::firewall::{self, FirewallMaps, List, RateLimitProto};
use xdpctl::input::{PortProto, PortSpec};
use xdpctl::packets::{non_ip_frame, Ext, Frame, L4};
use xdpctl::skel::firewall::{FirewallSkel, FirewallSkelBuilder};

const PASS: Verdict = Verdict::Pass;
const BLOCKLIST: Verdict = Verdict::Drop(DropReason::Blocklist);
const PORT: Verdict = Verdict::Drop(DropReason::Port);
const RATELIMIT: Verdict = Verdict::Drop(DropReason::RateLimit);
const MALFORMED: Verdict = Verdict::Drop(DropReason::Malformed);

const CLEAN4: &str = "192.0.2.1";
const BLOCKED4: &str = "192.0.2.66"; // exact
const IN_RANGE4: &str = "198.51.100.7"; // in 198.51.100.0/24
const ALLOWED4: &str = "198.51.100.10"; // allowed inside the blocked range
const CLEAN6: &str = "2001:db8::1";
const BLOCKED6: &str = "2001:db8::66"; // exact
const IN_RANGE6: &str = "2001:db8:bad::7"; // in 2001:db8:bad::/48
const ALLOWED6: &str = "2001:db8:bad::10";

const T0: u64 = 5_000_000_000_000;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn udp(src: &str, dport: u16) -> Frame {
    Frame::new(ip(src), L4::Udp { dport })
}

fn tcp(src: &str, dport: u16, flags: u8) -> Frame {
    Frame::new(
        ip(src),
        L4::Tcp {
            dport,
            flags,
            doff: 5,
        },
    )
}

fn with(mut frame: Frame, change: impl FnOnce(&mut Frame)) -> Frame {
    change(&mut frame);
    frame
}

fn truncated(frame: Frame, len: usize) -> Vec<u8> {
    let mut bytes = frame.bytes();
    bytes.truncate(len);
    bytes
}

/// Ethernet (14) + n VLAN tags (4 each): where the IP header starts.
fn l3(vlans: usize) -> usize {
    14 + 4 * vlans
}

fn exts(n: usize) -> Vec<Ext> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                Ext::DstOpts(0)
            } else {
                Ext::HopByHop(1)
            }
        })
        .collect()
}

fn fixtures() -> Vec<(&'static str, Vec<u8>, Verdict)> {
    let vlan = |n: usize| vec![0x8100u16; n];
    vec![
        ("v4_udp_clean", udp(CLEAN4, 1234).bytes(), PASS),
        (
            "v4_udp_blocked_exact",
            udp(BLOCKED4, 1234).bytes(),
            BLOCKLIST,
        ),
        (
            "v4_udp_blocked_range",
            udp(IN_RANGE4, 1234).bytes(),
            BLOCKLIST,
        ),
        (
            "v4_allowed_inside_blocked_range",
            udp(ALLOWED4, 1234).bytes(),
            PASS,
        ),
        (
            "v4_allowed_to_blocked_port",
            udp(ALLOWED4, 53).bytes(),
            PASS,
        ),
        ("v4_tcp_to_blocked_22", tcp(CLEAN4, 22, 0x02).bytes(), PORT),
        ("v4_udp_to_blocked_53", udp(CLEAN4, 53).bytes(), PORT),
        (
            "v4_tcp_to_53_only_udp_blocked",
            tcp(CLEAN4, 53, 0x10).bytes(),
            PASS,
        ),
        (
            "v4_udp_to_22_only_tcp_blocked",
            udp(CLEAN4, 22).bytes(),
            PASS,
        ),
        (
            "vlan1_blocked_source",
            with(udp(BLOCKED4, 1), |f| f.vlans = vlan(1)).bytes(),
            BLOCKLIST,
        ),
        (
            "qinq_88a8_8100_to_blocked_port",
            with(udp(CLEAN4, 53), |f| f.vlans = vec![0x88a8, 0x8100]).bytes(),
            PORT,
        ),
        (
            "vlan4_clean",
            with(udp(CLEAN4, 1), |f| f.vlans = vlan(4)).bytes(),
            PASS,
        ),
        (
            "vlan4_blocked_source",
            with(udp(IN_RANGE4, 1), |f| f.vlans = vlan(4)).bytes(),
            BLOCKLIST,
        ),
        (
            "vlan4_9100_to_blocked_port",
            with(udp(CLEAN4, 53), |f| f.vlans = vec![0x9100; 4]).bytes(),
            PORT,
        ),
        (
            "vlan5_too_deep",
            with(udp(CLEAN4, 1), |f| f.vlans = vlan(5)).bytes(),
            MALFORMED,
        ),
        (
            "vlan_tag_truncated",
            truncated(with(udp(CLEAN4, 1), |f| f.vlans = vlan(1)), 16),
            MALFORMED,
        ),
        (
            "v4_fixed_header_19_bytes",
            truncated(udp(BLOCKED4, 1), l3(0) + 19),
            MALFORMED,
        ),
        (
            "v4_ihl_4",
            with(udp(CLEAN4, 1), |f| f.ihl = 4).bytes(),
            MALFORMED,
        ),
        (
            "v4_ihl_4_blocked_source",
            with(udp(BLOCKED4, 1), |f| f.ihl = 4).bytes(),
            BLOCKLIST,
        ),
        (
            "v4_ihl_0_blocked_range",
            with(udp(IN_RANGE4, 1), |f| f.ihl = 0).bytes(),
            BLOCKLIST,
        ),
        (
            "v4_options_ihl15_to_blocked_port",
            with(udp(CLEAN4, 53), |f| f.ihl = 15).bytes(),
            PORT,
        ),
        (
            "v4_options_ihl15_clean",
            with(udp(CLEAN4, 1), |f| f.ihl = 15).bytes(),
            PASS,
        ),
        (
            "v4_options_truncated",
            truncated(with(udp(CLEAN4, 1), |f| f.ihl = 15), l3(0) + 40),
            MALFORMED,
        ),
        (
            "v4_options_truncated_blocked_source",
            truncated(with(udp(BLOCKED4, 1), |f| f.ihl = 15), l3(0) + 40),
            BLOCKLIST,
        ),
        (
            "v4_version_6_in_ipv4_frame",
            with(udp(CLEAN4, 1), |f| f.version = Some(6)).bytes(),
            MALFORMED,
        ),
        (
            "v4_first_fragment_to_blocked_port",
            with(udp(CLEAN4, 53), |f| f.frag = (0, true)).bytes(),
            PORT,
        ),
        (
            "v4_nonfirst_fragment_payload_looks_like_port_53",
            with(udp(CLEAN4, 53), |f| f.frag = (100, true)).bytes(),
            PASS,
        ),
        (
            "v4_nonfirst_fragment_blocked_source",
            with(udp(BLOCKED4, 53), |f| f.frag = (7, false)).bytes(),
            BLOCKLIST,
        ),
        (
            "v4_nonfirst_fragment_no_payload",
            truncated(
                with(tcp(CLEAN4, 22, 2), |f| f.frag = (1, false)),
                l3(0) + 20,
            ),
            PASS,
        ),
        (
            "v4_udp_header_7_bytes",
            truncated(udp(CLEAN4, 53), l3(0) + 20 + 7),
            MALFORMED,
        ),
        (
            "v4_udp_header_truncated_blocked",
            truncated(udp(IN_RANGE4, 53), l3(0) + 20 + 4),
            BLOCKLIST,
        ),
        (
            "v4_tcp_header_19_bytes",
            truncated(tcp(CLEAN4, 80, 2), l3(0) + 20 + 19),
            MALFORMED,
        ),
        (
            "v4_tcp_doff_4",
            Frame::new(
                ip(CLEAN4),
                L4::Tcp {
                    dport: 80,
                    flags: 2,
                    doff: 4,
                },
            )
            .bytes(),
            MALFORMED,
        ),
        (
            "v4_tcp_options_truncated",
            truncated(
                Frame::new(
                    ip(CLEAN4),
                    L4::Tcp {
                        dport: 80,
                        flags: 2,
                        doff: 15,
                    },
                ),
                l3(0) + 20 + 40,
            ),
            MALFORMED,
        ),
        (
            "v4_icmp_echo",
            Frame::new(ip(CLEAN4), L4::Icmp).bytes(),
            PASS,
        ),
        (
            "v4_icmp_4_bytes",
            truncated(Frame::new(ip(CLEAN4), L4::Icmp), l3(0) + 20 + 4),
            MALFORMED,
        ),
        (
            "v4_gre",
            Frame::new(ip(CLEAN4), L4::Other(47, vec![0; 4])).bytes(),
            PASS,
        ),
        (
            "v4_proto_58_is_not_icmp",
            Frame::new(ip(CLEAN4), L4::Other(58, vec![0; 2])).bytes(),
            PASS,
        ),
        ("v6_udp_clean", udp(CLEAN6, 1234).bytes(), PASS),
        ("v6_blocked_range", udp(IN_RANGE6, 1234).bytes(), BLOCKLIST),
        ("v6_blocked_exact", udp(BLOCKED6, 1234).bytes(), BLOCKLIST),
        (
            "v6_allowed_inside_blocked_range",
            udp(ALLOWED6, 53).bytes(),
            PASS,
        ),
        (
            "v6_hopbyhop_dstopts_to_blocked_port",
            with(udp(CLEAN6, 53), |f| {
                f.exts = vec![Ext::HopByHop(0), Ext::DstOpts(2)]
            })
            .bytes(),
            PORT,
        ),
        (
            "v6_routing_to_blocked_tcp_22",
            with(tcp(CLEAN6, 22, 2), |f| f.exts = vec![Ext::Routing(1)]).bytes(),
            PORT,
        ),
        (
            "v6_first_fragment_to_blocked_port",
            with(udp(CLEAN6, 53), |f| f.exts = vec![Ext::Fragment(0, true)]).bytes(),
            PORT,
        ),
        (
            "v6_nonfirst_fragment_payload_looks_like_port_53",
            with(udp(CLEAN6, 53), |f| f.exts = vec![Ext::Fragment(64, true)]).bytes(),
            PASS,
        ),
        (
            "v6_nonfirst_fragment_blocked_source",
            with(udp(IN_RANGE6, 53), |f| {
                f.exts = vec![Ext::Fragment(8, false)]
            })
            .bytes(),
            BLOCKLIST,
        ),
        (
            "v6_ah_to_blocked_port",
            with(udp(CLEAN6, 53), |f| f.exts = vec![Ext::Auth(1)]).bytes(),
            PORT,
        ),
        (
            "v6_8_ext_headers_to_blocked_port",
            with(udp(CLEAN6, 53), |f| f.exts = exts(8)).bytes(),
            PORT,
        ),
        (
            "v6_9_ext_headers_too_deep",
            with(udp(CLEAN6, 1), |f| f.exts = exts(9)).bytes(),
            MALFORMED,
        ),
        (
            "v6_9_ext_headers_blocked_source",
            with(udp(BLOCKED6, 1), |f| f.exts = exts(9)).bytes(),
            BLOCKLIST,
        ),
        (
            "v6_ext_header_truncated",
            truncated(
                with(udp(CLEAN6, 1), |f| f.exts = vec![Ext::HopByHop(3)]),
                l3(0) + 40 + 16,
            ),
            MALFORMED,
        ),
        (
            "v6_fixed_header_39_bytes_even_if_blocked",
            truncated(udp(BLOCKED6, 1), l3(0) + 39),
            MALFORMED,
        ),
        (
            "v6_version_4_in_ipv6_frame",
            with(udp(CLEAN6, 1), |f| f.version = Some(4)).bytes(),
            MALFORMED,
        ),
        ("v6_icmpv6", Frame::new(ip(CLEAN6), L4::Icmp).bytes(), PASS),
        (
            "v6_malformed_but_allowed",
            truncated(
                with(udp(ALLOWED6, 1), |f| f.exts = vec![Ext::HopByHop(3)]),
                l3(0) + 44,
            ),
            PASS,
        ),
        ("arp_is_not_ip", non_ip_frame(), PASS),
        ("ethernet_header_only_unknown_type", vec![0xff; 14], PASS),
        (
            "vlan2_v4_nonfirst_fragment_blocked",
            with(udp(IN_RANGE4, 53), |f| {
                f.vlans = vlan(2);
                f.frag = (3, true)
            })
            .bytes(),
            BLOCKLIST,
        ),
    ]
}

/// A model with the kernel's source table layout (set mask and hash seed).
fn model_for(maps: &FirewallMaps) -> Firewall {
    let config = maps.config().unwrap();
    Firewall {
        source_set_mask: config.source_set_mask,
        source_seed: config.source_seed,
        ..Default::default()
    }
}

fn say(text: &str) {
    let _ = std::io::stderr().write_all(format!("{text}\n").as_bytes());
}

/// The firewall loaded (not attached), with its maps (unpinned: this test's own).
fn load_firewall() -> (FirewallSkel<'static>, FirewallMaps) {
    load_firewall_for(xdpctl::abi::FW_DEFAULT_MAX_RULES)
}

/// The fixtures' rule set, in the kernel (through src/firewall/rules.rs) and in a model.
fn install(maps: &FirewallMaps) -> Firewall {
    let mut model = model_for(maps);
    let rule = RuleState {
        hits: 0,
        expires_ns: 0,
        reason: xdpctl::abi::FW_REASON_MANUAL,
    };
    for (list, text) in [
        (List::Block, "192.0.2.66"),
        (List::Block, "198.51.100.0/24"),
        (List::Block, "2001:db8::66"),
        (List::Block, "2001:db8:bad::/48"),
        (List::Allow, "198.51.100.10"),
        (List::Allow, "2001:db8:bad::10"),
    ] {
        let prefix = xdpctl::input::parse_prefix(text).unwrap();
        rules::add_prefixes(maps, list, &[prefix], 0, xdpctl::abi::FW_REASON_MANUAL).unwrap();
        match list {
            List::Block => model.block.insert(prefix, rule),
            List::Allow => model.allow.insert(prefix, rule),
        }
    }
    for spec in [
        PortSpec {
            port: 53,
            proto: PortProto::Udp,
        },
        PortSpec {
            port: 22,
            proto: PortProto::Tcp,
        },
    ] {
        rules::set_ports(maps, &[spec], true).unwrap();
        model.ports.insert(spec, 0);
    }
    model
}

#[test]
fn every_fixture_gets_its_exact_verdict_from_kernel_and_model() {
    common::require_root!();
    let (skel, maps) = load_firewall();
    let mut model = install(&maps);
    maps.set_clock(T0).unwrap();

    let fixtures = fixtures();
    assert!(fixtures.len() >= 40, "only {} fixtures", fixtures.len());
    let mut failures = Vec::new();
    for (name, bytes, expected) in &fixtures {
        let kernel = common::firewall_verdict(&skel, bytes);
        let modeled = model.process(bytes, T0);
        if kernel != expected.xdp_action() || modeled != *expected {
            failures.push(format!(
                "{name}: expected {expected:?}, kernel returned {kernel}, model said {modeled:?}"
            ));
        }
        say(&format!("fixture {name:<52} {expected:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The counters agree too.
    let fw = xdpctl::counters::stats::read_fw_counters(&skel.maps.fw_stats).unwrap();
    assert_eq!(fw.drop_packets, model.counters.drop_packets);
    assert_eq!(fw.proto_packets, model.counters.proto_packets);
    assert_eq!(fw.drop_bytes, model.counters.drop_bytes);
    // Bytes in all: per action, in xdp_stats_map.
    let actions = xdpctl::counters::stats::read_counters(&skel.maps.xdp_stats_map).unwrap();
    let kernel_actions: Vec<(u64, u64)> = actions.0.iter().map(|a| (a.packets, a.bytes)).collect();
    assert_eq!(kernel_actions, model.counters.actions);
}

/// Runs a sequence of (time, packet, expected) through kernel and model.
fn sequence(rl: RateLimit, steps: &[(u64, Vec<u8>, Verdict)]) {
    let (skel, maps) = load_firewall();
    sequence_on(&skel, &maps, rl, steps);
}

/// The same, on a firewall already loaded.
fn sequence_on(
    skel: &FirewallSkel,
    maps: &FirewallMaps,
    rl: RateLimit,
    steps: &[(u64, Vec<u8>, Verdict)],
) {
    // Leases are per CPU, and the model is one.
    common::pin_to_cpu(0);
    maps.set_rate_limit(&rl).unwrap();
    let mut model = Firewall {
        rate_limit: rl,
        lease_max: maps.config().unwrap().rl_lease_max,
        ..model_for(maps)
    };
    for (i, (now, bytes, expected)) in steps.iter().enumerate() {
        maps.set_clock(*now).unwrap();
        let kernel = common::firewall_verdict(skel, bytes);
        let modeled = model.process(bytes, *now);
        assert_eq!(
            (kernel, modeled),
            (expected.xdp_action(), *expected),
            "step {i} at t={now}: kernel {kernel}, model {modeled:?}, expected {expected:?}"
        );
    }
}

fn rl(pps: u64, burst: u64, block_for_ns: u64, proto: RateLimitProto) -> RateLimit {
    RateLimit {
        enabled: true,
        pps,
        burst,
        block_for_ns,
        proto,
    }
}

#[test]
fn rate_limit_burst_then_drop_then_continuous_refill() {
    common::require_root!();
    let p = udp(CLEAN4, 1000).bytes();
    let ms = 1_000_000;
    sequence(
        rl(10, 3, 0, RateLimitProto::All),
        &[
            // The source's first packet: the limiter only notes it (see over_rate_limit).
            (T0, p.clone(), PASS),
            (T0, p.clone(), PASS),
            (T0, p.clone(), PASS),
            (T0, p.clone(), PASS),
            (T0, p.clone(), RATELIMIT),
            (T0 + 99 * ms, p.clone(), RATELIMIT),
            (T0 + 100 * ms, p.clone(), PASS),
            (T0 + 100 * ms, p.clone(), RATELIMIT),
            // Idle long enough: the bucket is full (3), not more.
            (T0 + 60_000 * ms, p.clone(), PASS),
            (T0 + 60_000 * ms, p.clone(), PASS),
            (T0 + 60_000 * ms, p.clone(), PASS),
            (T0 + 60_000 * ms, p, RATELIMIT),
        ],
    );
}

#[test]
fn rate_limit_no_refill_at_a_second_boundary() {
    common::require_root!();
    // A fixed-window limiter would reset at 6.000 s; a token bucket only counts elapsed time.
    let p = udp(CLEAN4, 1000).bytes();
    let just_before = 5_999_999_000_000u64;
    sequence(
        rl(1, 1, 0, RateLimitProto::All),
        &[
            // The source's first packet: the limiter only notes it (see over_rate_limit).
            (just_before, p.clone(), PASS),
            (just_before, p.clone(), PASS),
            (6_000_000_000_000, p.clone(), RATELIMIT),
            (just_before + 999_999_999, p.clone(), RATELIMIT),
            (just_before + 1_000_000_000, p, PASS),
        ],
    );
}

#[test]
fn rate_limit_survives_a_clock_going_backwards() {
    common::require_root!();
    let p = udp(CLEAN4, 1000).bytes();
    sequence(
        rl(1000, 1, 0, RateLimitProto::All),
        &[
            // The source's first packet: the limiter only notes it (see over_rate_limit).
            (T0, p.clone(), PASS),
            (T0, p.clone(), PASS),
            // Earlier than the last refill: no refill, no underflow, no huge credit.
            (T0 - 1_000_000_000, p.clone(), RATELIMIT),
            (T0 - 1_000_000_000, p.clone(), RATELIMIT),
            (T0 + 1_000_000, p, PASS),
        ],
    );
}

#[test]
fn syn_rate_limit_counts_only_syns_without_ack() {
    common::require_root!();
    let syn = tcp(CLEAN4, 80, 0x02).bytes();
    let syn_ack = tcp(CLEAN4, 80, 0x12).bytes();
    let ack = tcp(CLEAN4, 80, 0x10).bytes();
    sequence(
        rl(1, 1, 0, RateLimitProto::Syn),
        &[
            // The source's first packet: the limiter only notes it (see over_rate_limit).
            (T0, syn.clone(), PASS),
            (T0, syn.clone(), PASS),
            (T0, syn.clone(), RATELIMIT),
            (T0, syn_ack, PASS),
            (T0, ack.clone(), PASS),
            (T0, ack, PASS),
            (T0, udp(CLEAN4, 1).bytes(), PASS),
            (T0 + 1_000_000_000, syn, PASS),
        ],
    );
}

#[test]
fn a_new_source_with_the_tag_of_a_source_seen_once_takes_its_way() {
    common::require_root!();
    let (skel, maps) = load_firewall();
    let config = maps.config().unwrap();
    // Two sources with the same set and tag under this load's seed: a 32-bit hash collision,
    // which a birthday search finds. IPv6 ones varying in two words: over IPv4 sources the
    // hash is a bijection, and with the default table's 2^16 sets (set and tag are the whole
    // hash) no two of them collide.
    let mut seen = std::collections::HashMap::new();
    let mut rng = StdRng::seed_from_u64(1);
    let (a, b) = (0..1 << 24)
        .map(|_| std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | rng.gen::<u64>() as u128))
        .find_map(|addr| {
            let key = xdpctl::firewall::model::source_key(addr.into());
            let set = xdpctl::firewall::model::source_set(
                config.source_seed,
                config.source_set_mask,
                &key,
            );
            let tag = xdpctl::firewall::model::source_tag(config.source_seed, &key);
            seen.insert((set, tag), addr).map(|earlier| (earlier, addr))
        })
        .expect("a colliding pair of sources");
    let (a, b) = (
        udp(&a.to_string(), 1000).bytes(),
        udp(&b.to_string(), 1000).bytes(),
    );
    sequence_on(
        &skel,
        &maps,
        rl(1, 1, 0, RateLimitProto::All),
        &[
            (T0, a.clone(), PASS),
            // b looks like a's second packet: it takes the way, its slot and a full bucket.
            (T0, b.clone(), PASS),
            (T0, b, RATELIMIT),
            // a is new again: another way, noted, then its bucket.
            (T0, a.clone(), PASS),
            (T0, a.clone(), PASS),
            (T0, a, RATELIMIT),
        ],
    );
}

#[test]
fn auto_block_drops_the_flooder_then_expires() {
    common::require_root!();
    let flooder = udp(CLEAN4, 1000).bytes();
    let other = udp("192.0.2.2", 1000).bytes();
    let s = 1_000_000_000;
    sequence(
        rl(1, 2, 2 * s, RateLimitProto::All),
        &[
            // The source's first packet: the limiter only notes it (see over_rate_limit).
            (T0, flooder.clone(), PASS),
            (T0, flooder.clone(), PASS),
            (T0, flooder.clone(), PASS),
            (T0, flooder.clone(), RATELIMIT),
            // Blocked for 2 s now, though its bucket refills meanwhile.
            (T0 + s, flooder.clone(), BLOCKLIST),
            (T0 + s, other.clone(), PASS),
            (T0 + 2 * s - 1, flooder.clone(), BLOCKLIST),
            // Expired: back to its (full) bucket.
            (T0 + 2 * s, flooder.clone(), PASS),
            (T0 + 2 * s, flooder, PASS),
        ],
    );
}

#[test]
fn ranges_still_match_after_edits_of_their_neighbours() {
    common::require_root!();
    let (skel, maps) = load_firewall();
    let nets = |texts: &[&str]| -> Vec<ipnet::IpNet> {
        texts
            .iter()
            .map(|t| xdpctl::input::parse_prefix(t).unwrap())
            .collect()
    };
    let verdict = |src: &str| common::firewall_verdict(&skel, &udp(src, 1000).bytes());
    let (pass, drop) = (PASS.xdp_action(), BLOCKLIST.xdp_action());
    // Two ranges in one /16, a range over sixteen /16s, and IPv6 ranges in one /16 too.
    let ranges = nets(&[
        "10.1.0.0/24",
        "10.1.1.0/24",
        "172.16.0.0/12",
        "2001:db8:1::/48",
        "2001:db8:2::/48",
    ]);
    rules::add_prefixes(
        &maps,
        List::Block,
        &ranges,
        0,
        xdpctl::abi::FW_REASON_MANUAL,
    )
    .unwrap();
    for src in [
        "10.1.0.5",
        "10.1.1.5",
        "172.16.0.1",
        "172.31.255.1",
        "2001:db8:1::5",
        "2001:db8:2::5",
    ] {
        assert_eq!(verdict(src), drop, "{src}");
    }
    for src in ["10.2.0.5", "172.32.0.1", "2001:db9::5"] {
        assert_eq!(verdict(src), pass, "{src}");
    }
    // Removing one range of a /16 keeps its neighbour's matching.
    rules::remove_prefixes(
        &maps,
        List::Block,
        &nets(&["10.1.0.0/24", "2001:db8:1::/48"]),
    )
    .unwrap();
    assert_eq!(verdict("10.1.0.5"), pass);
    assert_eq!(verdict("10.1.1.5"), drop);
    assert_eq!(verdict("2001:db8:1::5"), pass);
    assert_eq!(verdict("2001:db8:2::5"), drop);
    // Once the last range of a /16 goes, its filter bit goes too: the trie is not asked.
    let filter = maps.range_filter().unwrap();
    assert!(filter.may_match(List::Block, ip("10.1.1.5")));
    rules::remove_prefixes(&maps, List::Block, &nets(&["10.1.1.0/24"])).unwrap();
    assert_eq!(verdict("10.1.1.5"), pass);
    assert!(!filter.may_match(List::Block, ip("10.1.1.5")));
    assert!(filter.may_match(List::Block, ip("172.20.0.1")));
    // Clearing the list clears every bit; the allow list never had any.
    rules::clear(&maps, List::Block).unwrap();
    for src in ["172.20.0.1", "2001:db8:2::5"] {
        assert!(!filter.may_match(List::Block, ip(src)), "{src}");
        assert_eq!(verdict(src), pass, "{src}");
    }
    assert!(!filter.may_match(List::Allow, ip("10.1.1.5")));
}

/// The firewall loaded with exact tables sized for `max_rules`, as `load --max-rules` sizes them.
fn load_firewall_for(max_rules: u32) -> (FirewallSkel<'static>, FirewallMaps) {
    let object = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = FirewallSkelBuilder::default().open(object).unwrap();
    firewall::set_exact_table_size(open.open_object_mut(), max_rules).unwrap();
    let skel = open.load().unwrap();
    let maps = FirewallMaps::from_object(skel.object()).unwrap();
    (skel, maps)
}

#[test]
fn exact_addresses_stay_blocked_across_rebuilds_of_the_presence_filter() {
    common::require_root!();
    let (skel, maps) = load_firewall_for(4096);
    let verdict = |src: IpAddr| {
        common::firewall_verdict(&skel, &Frame::new(src, L4::Udp { dport: 1000 }).bytes())
    };
    let (pass, drop) = (PASS.xdp_action(), BLOCKLIST.xdp_action());
    let key = |addr: IpAddr| xdpctl::firewall::exact::Key::of(addr);
    // 3,000 IPv4 and 1,000 IPv6 addresses.
    let addrs: Vec<IpAddr> = (0..3000u32)
        .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i * 7)))
        .chain(
            (0..1000u128)
                .map(|i| IpAddr::from(std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) + i * 11))),
        )
        .collect();
    let nets: Vec<ipnet::IpNet> = addrs.iter().map(|&a| ipnet::IpNet::from(a)).collect();
    rules::add_prefixes(&maps, List::Block, &nets, 0, xdpctl::abi::FW_REASON_MANUAL).unwrap();
    for &addr in &addrs {
        assert_eq!(verdict(addr), drop, "{addr}");
    }
    // The filter rules out most addresses that are not in the table, so their lookups never
    // read the tags (this is what it is for).
    let table = maps.exact_table(List::Block).unwrap();
    let half = maps.exact_filter_half(List::Block).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let absent: Vec<IpAddr> = (0..10_000)
        .map(|_| IpAddr::from(std::net::Ipv4Addr::from(rng.gen::<u32>() | 0x8000_0000)))
        .collect();
    let ruled_out = absent
        .iter()
        .filter(|&&a| !table.filter_may_hold(half, &key(a)))
        .count();
    assert!(
        ruled_out > 9_000,
        "the filter ruled out only {ruled_out} of 10,000"
    );

    // Removing 3,000 leaves stale bits past an eighth of the table's lanes: the other half is
    // rebuilt from the table and read from then on.
    let (gone, kept) = nets.split_at(3000);
    rules::remove_prefixes(&maps, List::Block, gone).unwrap();
    assert_eq!(maps.exact_filter_half(List::Block).unwrap(), 1 - half);
    assert_eq!(
        maps.config().unwrap().exact_filter_stale[List::Block as usize],
        0
    );
    for net in kept {
        assert_eq!(verdict(net.addr()), drop, "{net}");
    }
    for net in gone {
        assert_eq!(verdict(net.addr()), pass, "{net}");
    }
    let stale = gone
        .iter()
        .filter(|net| table.filter_may_hold(1 - half, &key(net.addr())))
        .count();
    assert!(
        stale < 300,
        "{stale} of 3,000 removed addresses still pass the rebuilt filter"
    );

    // The program's own inserts (auto-block) set their bits in both halves.
    let flooder: IpAddr = "192.0.2.200".parse().unwrap();
    maps.set_rate_limit(&rl(1, 1, 10_000_000_000, RateLimitProto::All))
        .unwrap();
    maps.set_clock(T0).unwrap();
    let verdicts: Vec<u32> = (0..4).map(|_| verdict(flooder)).collect();
    assert_eq!(
        verdicts.last(),
        Some(&RATELIMIT.xdp_action()),
        "{verdicts:?}"
    );
    assert_eq!(verdict(flooder), drop);
    assert!(table.filter_may_hold(0, &key(flooder)) && table.filter_may_hold(1, &key(flooder)));

    // Emptying the list rebuilds an empty half.
    rules::clear(&maps, List::Block).unwrap();
    assert_eq!(maps.exact_filter_half(List::Block).unwrap(), half);
    let half = maps.exact_filter_half(List::Block).unwrap();
    for net in kept {
        assert!(!table.filter_may_hold(half, &key(net.addr())), "{net}");
        assert_eq!(verdict(net.addr()), pass, "{net}");
    }
}
