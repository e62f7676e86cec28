//! Leases of a source's tokens (struct fw_lease) on both CPUs: a source whose packets arrive on
//! both passes exactly as many as its bucket holds, as on one CPU; tokens a CPU holds are its
//! own (the other CPU is refused meanwhile), and go back to the bucket when that CPU sees the
//! source after its lease expired; and against the model, packet by packet, with the packets a
//! lease passed counted towards their prefix when it goes back.

mod common;

use std::net::IpAddr;

use xdpctl::firewall::model::{Firewall, PrefixConfig};
use xdpctl::firewall::{prefix_limits, talkers, FirewallMaps, List, RateLimit};
use xdpctl::skel::firewall::FirewallSkel;

const XDP_PASS: u32 = 2;
const T0: u64 = 7_000_000_000_000;

/// The firewall with a rate limit of 1 pps and a burst of 40 (leases of 5 on two CPUs), and
/// the clock fixed, so no bucket refills.
fn setup() -> (FirewallSkel<'static>, FirewallMaps) {
    let (skel, maps) = common::loaded_firewall();
    let rl = RateLimit {
        enabled: true,
        pps: 1,
        burst: 40,
        ..RateLimit::default()
    };
    maps.set_rate_limit(&rl).unwrap();
    let mut config = maps.config().unwrap();
    config.rl_lease_max = 5; // what two CPUs get; one CPU would get 10
    maps.set_config(&config).unwrap();
    maps.set_clock(T0).unwrap();
    (skel, maps)
}

fn packet() -> Vec<u8> {
    let src: IpAddr = "198.51.100.20".parse().unwrap();
    xdpctl::packets::udp(src, "192.0.2.1".parse().unwrap(), 53, &[])
}

/// The verdicts of `n` packets sent on `cpu`.
fn send_on(skel: &FirewallSkel, cpu: usize, n: usize) -> Vec<u32> {
    common::pin_to_cpu(cpu);
    let bytes = packet();
    (0..n)
        .map(|_| common::firewall_verdict(skel, &bytes))
        .collect()
}

fn passed(verdicts: &[u32]) -> usize {
    verdicts.iter().filter(|&&v| v == XDP_PASS).count()
}

#[test]
fn a_source_on_both_cpus_passes_what_its_bucket_holds_and_no_more() {
    common::require_root!();
    let (skel, _maps) = setup();
    // Its first packet is only noted; then its 40 tokens, taken 5 at a time by whichever CPU
    // sees it, in batches of 3 alternating between the CPUs.
    let mut verdicts = send_on(&skel, 0, 1);
    for round in 0..30 {
        verdicts.extend(send_on(&skel, round % 2, 3));
    }
    // Not all first: a CPU is refused while the other still holds tokens.
    assert_eq!(passed(&verdicts), 41, "{verdicts:?}");
}

#[test]
fn tokens_a_cpu_holds_go_back_to_the_bucket_when_its_lease_expires() {
    common::require_root!();
    let (skel, maps) = setup();
    // CPU 0 notes the source, then takes a lease of 5 and uses one of them.
    assert_eq!(passed(&send_on(&skel, 0, 2)), 2);
    // CPU 1 drains the bucket: 35 tokens are left, and CPU 0 holds 4.
    let on_one = send_on(&skel, 1, 40);
    assert_eq!(passed(&on_one), 35, "{on_one:?}");
    // After the lease's time (about 1 ms; at 1 pps the bucket refills nothing meanwhile),
    // CPU 0's next packet gives the 4 back to the bucket and takes a new lease of them.
    maps.set_clock(T0 + 2 * xdpctl::abi::FW_LEASE_NS as u64)
        .unwrap();
    let later = send_on(&skel, 0, 10);
    assert_eq!(passed(&later), 4, "{later:?}");
    assert_eq!(passed(&send_on(&skel, 1, 5)), 0);
}

#[test]
fn leases_follow_the_model_packet_by_packet_with_sources_sharing_a_lease() {
    common::require_root!();
    common::pin_to_cpu(0);
    let (skel, maps) = setup();
    // A /24 limit of 30 packets a window (268 ms): packets a lease passed count when it goes
    // back, and may trip it then.
    let prefix = PrefixConfig {
        thresholds: [0, 0, 30, 0, 0, 0],
        window_shift: 28,
        seed: 0x1ea5e,
        block_for_ns: 50_000_000,
    };
    let mut config = maps.config().unwrap();
    prefix.write_to(&mut config);
    config.maps_in_use |= FirewallMaps::rule_bit(List::Block, Some(false));
    maps.set_config(&config).unwrap();
    let mut model = Firewall {
        rate_limit: RateLimit::of_config(&config),
        lease_max: config.rl_lease_max,
        source_set_mask: config.source_set_mask,
        source_seed: config.source_seed,
        ..Firewall::default()
    };
    model.prefix.config = prefix;
    // 600 sources would share 256 leases: find two whose leases are the same, so one takes
    // the other's place and gives its tokens back.
    let key = |i: u32| -> IpAddr { IpAddr::from([198, 18, (i >> 8) as u8, i as u8]) };
    let lease_of = |addr: IpAddr| {
        let tag = xdpctl::firewall::model::source_tag(
            config.source_seed,
            &xdpctl::firewall::model::source_key(addr),
        );
        xdpctl::firewall::model::leases::lease_index(tag)
    };
    let first = key(0);
    let second = (1..600)
        .map(key)
        .find(|&addr| lease_of(addr) == lease_of(first))
        .expect("two sources that share a lease");
    let frames =
        [first, second].map(|src| xdpctl::packets::udp(src, "192.0.2.1".parse().unwrap(), 53, &[]));
    // Bursts from each in turn, at steps of 0-0.4 ms: leases granted, used, expired,
    // given back and taken over; the bucket refills at 1 pps meanwhile.
    let mut now = T0;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for i in 0..400 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        now += rng % 400_000;
        maps.set_clock(now).unwrap();
        let bytes = &frames[(i / 7) % 2];
        let kernel = common::firewall_verdict(&skel, bytes);
        let modeled = model.process(bytes, now);
        assert_eq!(kernel, modeled.xdp_action(), "packet {i} at {now}");
    }
    model.leases.retain(|_, lease| *lease != Default::default());
    assert_eq!(talkers::cpu_leases(&maps, 0).unwrap(), model.leases);
    let counts = prefix_limits::cpu_counts(&maps, 0).unwrap();
    assert_eq!(counts.cells, model.prefix.cells, "sketch cells of CPU 0");
    assert_eq!(counts.heavy, model.prefix.heavy, "heavy prefixes of CPU 0");
    assert!(model.leased_passes > 0, "no packet passed from a lease");
    let prefix_drops = model.counters.drop_packets[xdpctl::abi::FW_DROP_PREFIX as usize];
    assert!(prefix_drops > 0, "the /24 never tripped");
}
