//! The exact tables' IPv4 elements (struct fw_exact_v4): the program knows a manual rule that
//! never expires from its bucket's element alone, so that element must follow every change of
//! the rule's slot. A rule made to expire must expire, one made permanent again must stay, and
//! 0.0.0.0, which an element cannot tell from a free lane, must be found by its tag.

mod common;

use std::net::IpAddr;

use ipnet::IpNet;
use xdpctl::firewall::{rules, List};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn udp(src: &str) -> Vec<u8> {
    let src: IpAddr = src.parse().unwrap();
    xdpctl::packets::udp(src, "192.0.2.1".parse().unwrap(), 53, &[])
}

fn net(text: &str) -> IpNet {
    IpNet::from(text.parse::<IpAddr>().unwrap())
}

#[test]
fn a_rule_renewed_with_an_expiry_expires_and_one_renewed_without_stays() {
    common::require_root!();
    let (skel, maps) = common::loaded_firewall();
    let rule = net("203.0.113.9");
    // Each CPU remembers its last match and checks its slot: another blocked source between
    // makes every verdict a lookup by the element.
    let other = net("203.0.113.10");
    let verdict = || {
        common::firewall_verdict(&skel, &udp("203.0.113.10"));
        common::firewall_verdict(&skel, &udp("203.0.113.9"))
    };

    rules::add_prefixes(&maps, List::Block, &[rule, other], 0, 0).unwrap();
    assert_eq!(verdict(), XDP_DROP, "a permanent rule");
    // Renewed in place with an expiry already past: the program must read the slot now.
    let past = xdpctl::sys::clock::monotonic_ns() - 1_000_000_000;
    rules::add_prefixes(&maps, List::Block, &[rule], past, 0).unwrap();
    assert_eq!(verdict(), XDP_PASS, "a rule renewed to expire in the past");
    rules::add_prefixes(&maps, List::Block, &[rule], 0, 0).unwrap();
    assert_eq!(verdict(), XDP_DROP, "the rule renewed without an expiry");
    // Removed: the element forgets it with the tag.
    rules::remove_prefixes(&maps, List::Block, &[rule]).unwrap();
    assert_eq!(verdict(), XDP_PASS, "the rule removed");
}

#[test]
fn the_address_0_0_0_0_is_found_by_its_tag_and_never_by_a_free_lane() {
    common::require_root!();
    let (skel, maps) = common::loaded_firewall();
    let verdict = |src: &str| common::firewall_verdict(&skel, &udp(src));
    // Rules in the table, but not 0.0.0.0: its free lanes hold 0 in every element.
    let others: Vec<IpNet> = (1..=200u8)
        .map(|i| IpNet::from(IpAddr::from([198, 18, 0, i])))
        .collect();
    rules::add_prefixes(&maps, List::Block, &others, 0, 0).unwrap();
    assert_eq!(verdict("0.0.0.0"), XDP_PASS, "0.0.0.0 is not blocked");
    assert_eq!(verdict("198.18.0.77"), XDP_DROP);
    rules::add_prefixes(&maps, List::Block, &[net("0.0.0.0")], 0, 0).unwrap();
    assert_eq!(verdict("0.0.0.0"), XDP_DROP, "0.0.0.0 blocked");
    assert_eq!(verdict("198.18.0.201"), XDP_PASS);
    // Unblocked, it leaves its bits in the presence filter (until a rebuild), so its lookup
    // goes on past the filter, and free lanes hold 0.
    rules::remove_prefixes(&maps, List::Block, &[net("0.0.0.0")]).unwrap();
    assert_eq!(verdict("0.0.0.0"), XDP_PASS, "0.0.0.0 unblocked");
    assert_eq!(verdict("198.18.0.77"), XDP_DROP);
}
