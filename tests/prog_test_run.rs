//! Exact verdicts and counter effects of the built-in programs, through BPF_PROG_TEST_RUN on
//! programs loaded into the kernel from their skeletons.

mod common;

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::ProgramInput;
use xdpctl::counters::stats::{read_counters, Counter, Counters};
use xdpctl::packets;
use xdpctl::skel::{xdp_abort, xdp_drop, xdp_pass};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const REPEAT: u32 = 1000;

/// A 64-byte Ethernet/IPv4/UDP frame (60 bytes without the FCS).
fn udp_packet() -> Vec<u8> {
    let packet = packets::udp(
        [192, 0, 2, 1].into(),
        [198, 51, 100, 7].into(),
        53,
        &[0xab; 18],
    );
    assert_eq!(packet.len(), 60);
    packet
}

/// Runs `prog` REPEAT times on the packet; checks the verdict each time and that the action's
/// counters moved by exactly REPEAT packets and REPEAT * len bytes, and no other counter moved.
fn check(prog: &libbpf_rs::ProgramMut, map: &impl libbpf_rs::MapCore, expected: u32) {
    let packet = udp_packet();
    let before = read_counters(map).unwrap();
    let input = ProgramInput {
        data_in: Some(&packet),
        repeat: REPEAT,
        ..Default::default()
    };
    let output = prog.test_run(input).expect("BPF_PROG_TEST_RUN");
    assert_eq!(output.return_value, expected, "verdict");
    let after = read_counters(map).unwrap();

    let mut expected_delta = Counters::default();
    expected_delta.0[expected as usize] = Counter {
        packets: REPEAT as u64,
        bytes: REPEAT as u64 * packet.len() as u64,
    };
    for action in 0..5 {
        let delta = Counter {
            packets: after.0[action].packets - before.0[action].packets,
            bytes: after.0[action].bytes - before.0[action].bytes,
        };
        assert_eq!(
            delta, expected_delta.0[action],
            "counter delta of action {action}"
        );
    }
}

/// Loads a built-in program's skeleton and checks its verdict and counters, twice: the second
/// run proves the counters are cumulative.
macro_rules! verdict_test {
    ($test:ident, $module:ident, $builder:ident, $prog:ident, $verdict:expr) => {
        #[test]
        fn $test() {
            common::require_root!();
            let mut object = MaybeUninit::uninit();
            let skel = $module::$builder::default()
                .open(&mut object)
                .unwrap()
                .load()
                .unwrap();
            check(&skel.progs.$prog, &skel.maps.xdp_stats_map, $verdict);
            check(&skel.progs.$prog, &skel.maps.xdp_stats_map, $verdict);
        }
    };
}

verdict_test!(
    xdp_pass_passes_and_counts_exactly,
    xdp_pass,
    XdpPassSkelBuilder,
    xdp_pass,
    XDP_PASS
);
verdict_test!(
    xdp_drop_drops_and_counts_exactly,
    xdp_drop,
    XdpDropSkelBuilder,
    xdp_drop,
    XDP_DROP
);
verdict_test!(
    xdp_abort_aborts_and_counts_exactly,
    xdp_abort,
    XdpAbortSkelBuilder,
    xdp_abort,
    XDP_ABORTED
);

#[test]
fn stats_map_has_the_tutorial_layout() {
    common::require_root!();
    use libbpf_rs::MapCore;
    let mut object = MaybeUninit::uninit();
    let skel = xdp_pass::XdpPassSkelBuilder::default()
        .open(&mut object)
        .unwrap()
        .load()
        .unwrap();
    let map = &skel.maps.xdp_stats_map;
    assert_eq!(map.map_type(), libbpf_rs::MapType::PercpuArray);
    assert_eq!(map.key_size(), 4);
    assert_eq!(map.value_size(), 16);
    assert_eq!(map.max_entries(), 5);
}
