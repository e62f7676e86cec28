//! Rule hit counts through the per-CPU hit caches (bpf/firewall/hits.h): exact when many more
//! rules than a cache holds are hit on both CPUs at once, and a rule added again, or a port
//! rule turned on again, starts from zero whatever its earlier self left in the caches.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use xdpctl::firewall::{exact, rules, FirewallMaps, List};
use xdpctl::input::{PortProto, PortSpec};

const XDP_DROP: u32 = 1;

fn udp(src: IpAddr, dport: u16) -> Vec<u8> {
    let dst: IpAddr = if src.is_ipv6() {
        "2001:db8::1".parse().unwrap()
    } else {
        "192.0.2.1".parse().unwrap()
    };
    xdpctl::packets::udp(src, dst, dport, &[])
}

fn block(maps: &FirewallMaps, prefixes: &[IpNet]) {
    rules::add_prefixes(maps, List::Block, prefixes, 0, 0).unwrap();
}

fn hits(maps: &FirewallMaps) -> HashMap<IpNet, u64> {
    rules::list_prefixes(maps, List::Block, 0)
        .unwrap()
        .into_iter()
        .map(|entry| (entry.prefix, entry.hits))
        .collect()
}

/// The exact rules' own counters, without what the caches hold.
fn folded_exact_hits(maps: &FirewallMaps) -> u64 {
    let mut total = 0;
    maps.exact_table(List::Block)
        .unwrap()
        .for_each(|_, entry: exact::Entry| total += entry.hits);
    total
}

#[test]
fn hits_stay_exact_with_many_more_rules_than_a_cache_holds_on_both_cpus() {
    common::require_root!();
    let (skel, maps) = common::loaded_firewall();
    // 3,000 IPv4 and 300 IPv6 addresses, 200 IPv4 /24s and 50 IPv6 /48s: 3,550 rules for
    // caches of 1,024 entries, so most hits hand an entry over to another rule.
    let mut rules_and_sources: Vec<(IpNet, IpAddr)> = Vec::new();
    for i in 0..3000u32 {
        let addr = IpAddr::from([10, 1 + (i / 250) as u8, (i % 250) as u8, 7]);
        rules_and_sources.push((IpNet::from(addr), addr));
    }
    for i in 0..300u16 {
        let addr = IpAddr::from([0x2001, 0xdb8, 1, i, 0, 0, 0, 1]);
        rules_and_sources.push((IpNet::from(addr), addr));
    }
    for i in 0..200u32 {
        let net: IpNet = format!("172.{}.{}.0/24", 16 + i / 100, i % 100)
            .parse()
            .unwrap();
        let source = IpAddr::from([172, 16 + (i / 100) as u8, (i % 100) as u8, 99]);
        rules_and_sources.push((net, source));
    }
    for i in 0..50u16 {
        let net: IpNet = format!("2001:db8:ff{i:02x}::/48").parse().unwrap();
        let source = IpAddr::from([0x2001, 0xdb8, 0xff00 + i, 5, 0, 0, 0, 9]);
        rules_and_sources.push((net, source));
    }
    let prefixes: Vec<IpNet> = rules_and_sources.iter().map(|(net, _)| *net).collect();
    block(&maps, &prefixes);
    let port = PortSpec {
        port: 9,
        proto: PortProto::Udp,
    };
    rules::set_ports(&maps, &[port], true).unwrap();
    let port_source: IpAddr = "198.51.100.1".parse().unwrap();

    // Rule i is hit 1 + i % 5 times, from both CPUs at once, in a shuffled order.
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut expected = HashMap::new();
    for (i, (net, source)) in rules_and_sources.iter().enumerate() {
        let times = 1 + i as u64 % 5;
        expected.insert(*net, times);
        for _ in 0..times {
            packets.push(udp(*source, 53));
        }
    }
    for _ in 0..1000 {
        packets.push(udp(port_source, port.port));
    }
    packets.shuffle(&mut StdRng::seed_from_u64(14));
    let halves: Vec<&[Vec<u8>]> = packets.chunks(packets.len().div_ceil(2)).collect();
    let skel = &skel;
    std::thread::scope(|scope| {
        for (cpu, half) in halves.into_iter().enumerate() {
            scope.spawn(move || {
                common::pin_to_cpu(cpu);
                for bytes in half {
                    assert_eq!(common::firewall_verdict(skel, bytes), XDP_DROP);
                }
            });
        }
    });

    assert_eq!(hits(&maps), expected, "every rule's hits, caches included");
    assert_eq!(rules::list_ports(&maps).unwrap(), vec![(port, 1000)]);
    // Both halves of the mechanism worked: counts were handed to the rules' own counters, and
    // some are still in the caches.
    let exact_total: u64 = (0..3300).map(|i| 1 + i as u64 % 5).sum();
    let folded = folded_exact_hits(&maps);
    assert!(
        folded > 0 && folded < exact_total,
        "{folded} of {exact_total} folded"
    );
}

#[test]
fn a_rule_added_again_or_a_port_turned_on_again_starts_from_zero() {
    common::require_root!();
    common::pin_to_cpu(0);
    let (skel, maps) = common::loaded_firewall();
    let addr: IpAddr = "203.0.113.5".parse().unwrap();
    let range: IpNet = "203.0.112.0/24".parse().unwrap();
    let in_range: IpAddr = "203.0.112.77".parse().unwrap();
    let exact_rule = IpNet::from(addr);
    let port = PortSpec {
        port: 4444,
        proto: PortProto::Udp,
    };
    let send = |source: IpAddr, dport: u16, times: usize| {
        for _ in 0..times {
            assert_eq!(
                common::firewall_verdict(&skel, &udp(source, dport)),
                XDP_DROP
            );
        }
    };
    block(&maps, &[exact_rule, range]);
    rules::set_ports(&maps, &[port], true).unwrap();
    send(addr, 53, 5);
    send(in_range, 53, 4);
    send("198.51.100.9".parse().unwrap(), port.port, 3);
    assert_eq!(hits(&maps), HashMap::from([(exact_rule, 5), (range, 4)]));
    assert_eq!(rules::list_ports(&maps).unwrap(), vec![(port, 3)]);

    // Their hits are still in this CPU's cache: the rules that take their places must not get
    // them. An address goes back to the same slot, so only its generation tells them apart.
    rules::remove_prefixes(&maps, List::Block, &[exact_rule, range]).unwrap();
    rules::set_ports(&maps, &[port], false).unwrap();
    block(&maps, &[exact_rule, range]);
    rules::set_ports(&maps, &[port], true).unwrap();
    assert_eq!(hits(&maps), HashMap::from([(exact_rule, 0), (range, 0)]));
    assert_eq!(rules::list_ports(&maps).unwrap(), vec![(port, 0)]);
    send(addr, 53, 2);
    send(in_range, 53, 1);
    send("198.51.100.9".parse().unwrap(), port.port, 6);
    assert_eq!(hits(&maps), HashMap::from([(exact_rule, 2), (range, 1)]));
    assert_eq!(rules::list_ports(&maps).unwrap(), vec![(port, 6)]);
}
