use super::*;

/// A UDP frame from `src` to 192.0.2.1, through the one packet builder.
fn ipv4_udp(src: [u8; 4], dport: u16) -> Vec<u8> {
    crate::packets::udp(src.into(), [192, 0, 2, 1].into(), dport, &[])
}

#[test]
fn parses_udp_ports_and_sources() {
    let Parsed::Ip(p) = parse(&ipv4_udp([10, 0, 0, 1], 53)) else {
        panic!()
    };
    assert_eq!(p.source.to_string(), "10.0.0.1");
    assert_eq!(
        (p.l4proto, p.dport, p.malformed),
        (Some(17), Some(53), false)
    );
}

#[test]
fn a_short_frame_and_a_fifth_vlan_tag_are_malformed() {
    assert_eq!(parse(&[0; 13]), Parsed::L2Malformed);
    let mut frame =
        crate::packets::Frame::new([10, 0, 0, 1].into(), crate::packets::L4::Udp { dport: 53 });
    frame.vlans = vec![0x8100; 4];
    assert!(matches!(parse(&frame.bytes()), Parsed::Ip(_)));
    frame.vlans.push(0x8100);
    assert_eq!(parse(&frame.bytes()), Parsed::L2Malformed);
}

#[test]
fn the_blocklist_applies_before_malformed_and_allow_before_both() {
    let mut fw = Firewall::default();
    let rule = RuleState {
        hits: 0,
        expires_ns: 0,
        reason: 0,
    };
    fw.block.insert("10.0.0.0/8".parse().unwrap(), rule);
    let mut truncated = ipv4_udp([10, 1, 2, 3], 53);
    truncated.truncate(14 + 20 + 4);
    assert_eq!(
        fw.process(&truncated, 1),
        Verdict::Drop(DropReason::Blocklist)
    );
    let mut other = ipv4_udp([11, 1, 2, 3], 53);
    other.truncate(14 + 20 + 4);
    assert_eq!(fw.process(&other, 1), Verdict::Drop(DropReason::Malformed));
    fw.allow.insert("10.1.2.3/32".parse().unwrap(), rule);
    assert_eq!(fw.process(&truncated, 1), Verdict::Pass);
    assert_eq!(fw.counters.drop_packets, [1, 0, 0, 1, 0]);
    assert_eq!(fw.counters.proto_packets[1], 3);
}

#[test]
fn longest_live_prefix_wins_and_expired_rules_stop_matching() {
    let mut table = PrefixTable::default();
    let live = RuleState {
        hits: 0,
        expires_ns: 0,
        reason: 0,
    };
    table.insert("10.0.0.0/8".parse().unwrap(), live);
    table.insert(
        "10.1.0.0/16".parse().unwrap(),
        RuleState {
            expires_ns: 100,
            ..live
        },
    );
    let addr: IpAddr = "10.1.2.3".parse().unwrap();
    table.matching(addr, 50).unwrap().hits += 1;
    assert_eq!(table.ranges[&"10.1.0.0/16".parse().unwrap()].hits, 1);
    table.matching(addr, 100).unwrap().hits += 1;
    assert_eq!(table.ranges[&"10.0.0.0/8".parse().unwrap()].hits, 1);
    // An exact address wins while it lives; expired, it stays in the table unmatched.
    table.insert(
        "10.1.2.3/32".parse().unwrap(),
        RuleState {
            expires_ns: 200,
            ..live
        },
    );
    table.matching(addr, 150).unwrap().hits += 1;
    assert_eq!(table.exact[&addr].hits, 1);
    table.matching(addr, 200).unwrap().hits += 1;
    assert_eq!(table.ranges[&"10.0.0.0/8".parse().unwrap()].hits, 2);
    assert!(table.exact.contains_key(&addr));
}

#[test]
fn a_new_source_takes_the_quietest_way_of_its_set_and_the_flooder_stays() {
    // One set (mask 0): five sources compete for four ways.
    let mut fw = Firewall::default();
    let flooder = ipv4_udp([10, 0, 0, 1], 1);
    for _ in 0..10 {
        fw.process(&flooder, 1);
    }
    for i in 2..7u8 {
        fw.process(&ipv4_udp([10, 0, 0, i], 1), 1);
    }
    // The flooder's slot counts its first packet too.
    assert_eq!(fw.source("10.0.0.1".parse().unwrap()).unwrap().packets, 10);
    // Sources seen once have a way in the index but no slot. 10.0.0.5 took the quietest
    // way (the first with one packet: 10.0.0.2's), and 10.0.0.6 took it from 10.0.0.5.
    let tag = |addr: &str| source_tag(0, &source_key(addr.parse().unwrap()));
    let index = fw.source_index[&0];
    assert_eq!(index.map(|w| w.packets), [10, 1, 1, 1]);
    assert_eq!(
        index.map(|w| w.tag),
        [
            tag("10.0.0.1"),
            tag("10.0.0.6"),
            tag("10.0.0.3"),
            tag("10.0.0.4")
        ]
    );
    assert!(fw.source("10.0.0.6".parse().unwrap()).is_none());
    // Its second packet gives it a slot, with both packets counted.
    fw.process(&ipv4_udp([10, 0, 0, 6], 1), 1);
    assert_eq!(fw.source("10.0.0.6".parse().unwrap()).unwrap().packets, 2);
    assert_eq!(fw.source_index[&0][1].packets, 2);
}

#[test]
fn a_source_that_loses_its_way_loses_its_slot() {
    let mut fw = Firewall::default();
    for i in 1..5u8 {
        fw.process(&ipv4_udp([10, 0, 0, i], 1), 1);
        fw.process(&ipv4_udp([10, 0, 0, i], 1), 1);
    }
    assert_eq!(fw.sources[&0].iter().filter(|s| s.packets > 0).count(), 4);
    // All have two packets: the newcomer takes the first way, whose slot empties.
    fw.process(&ipv4_udp([10, 0, 0, 9], 1), 1);
    assert!(fw.source("10.0.0.1".parse().unwrap()).is_none());
    assert_eq!(fw.sources[&0][0].packets, 0);
    assert_eq!(fw.source_index[&0][0].packets, 1);
    assert!(fw.source("10.0.0.2".parse().unwrap()).is_some());
}

#[test]
fn source_sets_spread_with_the_seed() {
    let a = source_key("10.0.0.1".parse().unwrap());
    let b = source_key("10.0.0.2".parse().unwrap());
    assert_eq!(source_set(7, 0, &a), 0);
    assert!(source_set(7, 0xffff, &a) <= 0xffff);
    assert_ne!(source_set(7, 0xffff, &a), source_set(7, 0xffff, &b));
    assert_ne!(source_set(7, 0xffff, &a), source_set(8, 0xffff, &a));
}

#[test]
fn token_bucket_allows_a_burst_then_refills_continuously() {
    let mut fw = Firewall {
        rate_limit: RateLimit {
            enabled: true,
            pps: 10,
            burst: 2,
            block_for_ns: 0,
            proto: RateLimitProto::All,
        },
        ..Default::default()
    };
    let pkt = ipv4_udp([10, 0, 0, 9], 1234);
    let t0 = 1_000_000_000;
    // The first packet is only noted in the index; the bucket starts full at the second.
    assert_eq!(fw.process(&pkt, t0), Verdict::Pass);
    assert!(fw.source("10.0.0.9".parse().unwrap()).is_none());
    assert_eq!(fw.process(&pkt, t0), Verdict::Pass);
    assert_eq!(fw.process(&pkt, t0), Verdict::Pass);
    assert_eq!(fw.process(&pkt, t0), Verdict::Drop(DropReason::RateLimit));
    // 10 pps: one token per 100 ms, whatever the boundaries.
    assert_eq!(
        fw.process(&pkt, t0 + 99_999_999),
        Verdict::Drop(DropReason::RateLimit)
    );
    assert_eq!(fw.process(&pkt, t0 + 100_000_000), Verdict::Pass);
    // A clock that goes backwards refills nothing and does not underflow.
    assert_eq!(fw.process(&pkt, t0), Verdict::Drop(DropReason::RateLimit));
    assert_eq!(
        fw.source("10.0.0.9".parse().unwrap()).unwrap().last_ns,
        t0 + 100_000_000
    );
}
