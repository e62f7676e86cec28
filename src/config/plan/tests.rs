use std::collections::BTreeMap;

use super::*;
use crate::config::live::{Attached, Holder, Live};
use crate::config::{Interface, ProgramSpec, State};
use crate::firewall::prefix_limits::PrefixLimits;
use crate::firewall::RateLimit;
use crate::sys::attach::{AttachedMode, RequestedMode};

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn firewall_on(mode: RequestedMode) -> Interface {
    Interface {
        program: ProgramSpec::Builtin("firewall".into()),
        mode,
    }
}

fn attached(name: &str, holder: Holder, tag: u8) -> Attached {
    Attached {
        prog_id: 7,
        name: name.into(),
        tag: [tag; 8],
        mode: AttachedMode::Native,
        holder,
    }
}

fn limits(pps: u64) -> Limits {
    Limits {
        rate: RateLimit {
            enabled: true,
            pps,
            burst: pps,
            ..RateLimit::default()
        },
        prefixes: PrefixLimits::defaults(pps),
    }
}

#[test]
fn the_same_state_needs_nothing() {
    let mut want = State::default();
    want.block.insert(net("192.0.2.0/24"));
    want.interfaces
        .insert("eth1".into(), firewall_on(RequestedMode::Native));
    want.limits = Some(limits(5));
    let mut live = Live {
        state: want.clone(),
        ..Live::default()
    };
    live.attached
        .insert("eth1".into(), attached("firewall", Holder::Ours, 1));
    let plan = between(&want, &live, &BTreeMap::from([("eth1".into(), [1; 8])])).unwrap();
    assert!(plan.is_empty(), "{plan:?}");
    assert_eq!(plan.len(), 0);
}

#[test]
fn rules_ports_and_limits_are_added_and_removed() {
    let mut want = State::default();
    want.block.insert(net("192.0.2.0/24"));
    want.allow.insert(net("198.51.100.7/32"));
    want.ports
        .insert(crate::input::parse_port("53/udp").unwrap());
    want.limits = Some(limits(5));
    let mut live = Live::default();
    live.state.block.insert(net("203.0.113.9/32"));
    live.state
        .ports
        .insert(crate::input::parse_port("22/tcp").unwrap());
    let plan = between(&want, &live, &BTreeMap::new()).unwrap();
    assert_eq!(
        plan.add,
        [
            (List::Block, net("192.0.2.0/24")),
            (List::Allow, net("198.51.100.7/32"))
        ]
    );
    assert_eq!(plan.remove, [(List::Block, net("203.0.113.9/32"))]);
    assert_eq!(plan.ports_add.len(), 1);
    assert_eq!(plan.ports_remove.len(), 1);
    assert_eq!(plan.limits, Some((None, Some(limits(5)))));
    assert_eq!(plan.len(), 6);
}

#[test]
fn dynamic_rules_are_kept_unless_the_file_names_them() {
    let entry = |prefix: &str| crate::firewall::rules::PrefixEntry {
        prefix: net(prefix),
        hits: 0,
        expires_in: Some(30.0),
        reason: crate::abi::FW_REASON_RATELIMIT,
    };
    let live = Live {
        dynamic: vec![
            (List::Block, entry("203.0.113.1/32")),
            (List::Block, entry("203.0.113.2/32")),
        ],
        ..Live::default()
    };
    let mut want = State::default();
    want.block.insert(net("203.0.113.2/32"));
    let plan = between(&want, &live, &BTreeMap::new()).unwrap();
    assert_eq!(plan.add, [(List::Block, net("203.0.113.2/32"))]);
    assert_eq!(plan.kept.len(), 1);
    assert_eq!(plan.kept[0].1.prefix, net("203.0.113.1/32"));
    assert!(plan.remove.is_empty());
}

#[test]
fn attachments_are_made_replaced_moved_and_dropped() {
    let mut want = State::default();
    for name in ["new", "renamed", "recoded", "moved", "same"] {
        want.interfaces
            .insert(name.into(), firewall_on(RequestedMode::Native));
    }
    want.interfaces.get_mut("moved").unwrap().mode = RequestedMode::Generic;
    let mut live = Live::default();
    live.attached
        .insert("renamed".into(), attached("xdp_pass", Holder::Ours, 1));
    live.attached
        .insert("recoded".into(), attached("firewall", Holder::Ours, 1));
    live.attached
        .insert("moved".into(), attached("firewall", Holder::Ours, 2));
    live.attached
        .insert("same".into(), attached("firewall", Holder::Ours, 2));
    live.attached
        .insert("extra".into(), attached("xdp_drop", Holder::Ours, 3));
    live.attached
        .insert("theirs".into(), attached("other", Holder::Other, 3));
    let tags = BTreeMap::from([("recoded".into(), [2; 8]), ("same".into(), [2; 8])]);
    let plan = between(&want, &live, &tags).unwrap();
    let kinds: BTreeMap<&str, &AttachKind> = plan
        .attach
        .iter()
        .map(|s| (s.interface.as_str(), &s.kind))
        .collect();
    assert_eq!(kinds["new"], &AttachKind::New);
    assert!(matches!(kinds["renamed"], AttachKind::Replace { .. }));
    assert!(matches!(kinds["recoded"], AttachKind::Replace { .. }));
    assert!(matches!(kinds["moved"], AttachKind::Reattach { .. }));
    assert!(!kinds.contains_key("same"));
    assert_eq!(plan.detach, [("extra".into(), "xdp_drop".into())]);
}

#[test]
fn interfaces_apply_may_not_touch_are_refused_together() {
    let mut want = State::default();
    for name in ["a", "b", "c"] {
        want.interfaces
            .insert(name.into(), firewall_on(RequestedMode::Auto));
    }
    let mut live = Live::default();
    live.attached
        .insert("a".into(), attached("x", Holder::Other, 1));
    live.attached
        .insert("b".into(), attached("x", Holder::Foreground { pid: 42 }, 1));
    live.attached.insert(
        "c".into(),
        attached(
            "x",
            Holder::OtherInstance {
                root: "/sys/fs/bpf/other".into(),
            },
            1,
        ),
    );
    let err = between(&want, &live, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(err.contains("ip link set dev a xdp off"), "{err}");
    assert!(err.contains("pid 42"), "{err}");
    assert!(err.contains("XDPCTL_PIN_ROOT=/sys/fs/bpf/other"), "{err}");
}

#[test]
fn sizes_other_than_the_maps_have_are_refused() {
    let mut want = State::default();
    want.sizes.max_rules = Some(100);
    want.sizes.max_sources = Some(1000);
    let mut live = Live {
        maps_exist: true,
        ..Live::default()
    };
    live.state.sizes.max_rules = Some(100);
    live.state.sizes.max_sources = Some(1024);
    assert!(
        between(&want, &live, &BTreeMap::new()).is_ok(),
        "1000 sources round to 1024"
    );
    live.state.sizes.max_rules = Some(200);
    let err = between(&want, &live, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unload --all"), "{err}");
    live.maps_exist = false;
    assert!(
        between(&want, &live, &BTreeMap::new()).is_ok(),
        "new maps take any size"
    );
}
