use std::path::Path;

use super::*;
use crate::input::{PortProto, PortSpec};

const LIMIT: usize = 1_000_000;

fn parse_ok(text: &str) -> State {
    parse(Path::new("/etc/xdpctl/test.toml"), text, LIMIT).unwrap()
}

fn parse_err(text: &str) -> String {
    format!(
        "{:#}",
        parse(Path::new("/etc/xdpctl/test.toml"), text, LIMIT).unwrap_err()
    )
}

/// The issue's minimal file, as it stands.
const MINIMAL: &str = r#"version = 1
[[interface]]
name = "eth1"
program = "firewall"        # mode = "native" by default
[block]
prefixes = ["192.0.2.66", "198.51.100.0/24", "2001:db8::/48"]
files = []                  # rule files, one entry a line
[allow]
prefixes = ["198.51.100.7"]
[ratelimit]
pps = 5000                  # burst, block_for, proto as in `ratelimit set`
"#;

#[test]
fn the_minimal_file_is_read_as_it_stands() {
    let state = parse_ok(MINIMAL);
    let eth1 = &state.interfaces["eth1"];
    assert_eq!(eth1.program, ProgramSpec::Builtin("firewall".into()));
    assert_eq!(eth1.mode, RequestedMode::Native);
    let block: Vec<String> = state.block.iter().map(|p| p.to_string()).collect();
    assert_eq!(block, ["192.0.2.66/32", "198.51.100.0/24", "2001:db8::/48"]);
    assert_eq!(state.allow.len(), 1);
    let limits = state.limits.unwrap();
    assert_eq!(limits.rate.pps, 5000);
    assert_eq!(
        limits.rate.burst, 5000,
        "burst defaults to one second's worth"
    );
    assert_eq!(limits.rate.block_for_ns, 0);
    assert_eq!(limits.prefixes, PrefixLimits::defaults(5000));
}

#[test]
fn every_field_is_read() {
    let state = parse_ok(
        r#"version = 1
[firewall]
max_rules = 4096
max_sources = 1024
[[interface]]
name = "veth1"
program = "xdp_pass"
mode = "generic"
[block]
prefixes = ["0.0.0.0/4"]
allow_broad = true
ports = ["53/udp", "22/TCP"]
[ratelimit]
pps = 100
burst = 300
block_for = "10m"
proto = "syn"
prefix_limits = { "/24" = 2000, "48" = "off" }
prefix_block_for = 30
"#,
    );
    assert_eq!(state.sizes.max_rules, Some(4096));
    assert_eq!(state.sizes.max_sources, Some(1024));
    assert_eq!(state.interfaces["veth1"].mode, RequestedMode::Generic);
    assert!(state.ports.contains(&PortSpec {
        port: 22,
        proto: PortProto::Tcp
    }));
    let limits = state.limits.unwrap();
    assert_eq!(limits.rate.burst, 300);
    assert_eq!(limits.rate.block_for_ns, 600_000_000_000);
    assert_eq!(limits.rate.proto, RateLimitProto::Syn);
    let mut want = DEFAULT_MULTIPLES.map(|m| m * 100);
    want[2] = 2000;
    want[4] = 0;
    assert_eq!(limits.prefixes.pps, want);
    assert_eq!(limits.prefixes.block_for_ns, 30_000_000_000);
}

#[test]
fn errors_name_the_line_and_the_fix() {
    let err = parse_err("version = 1\n[block]\nprefixes = [\"192.0.2.300\"]\n");
    assert!(err.contains("test.toml:3:13:"), "{err}");
    assert!(err.contains("not an IP address"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");

    let err = parse_err("version = 1\n[block]\nprefix = [\"192.0.2.1\"]\n");
    assert!(err.contains(":3:1:") && err.contains("prefixes"), "{err}");

    let err = parse_err("version = 1\n[block]\nprefixes = [\"192.0.2.1/24\"]\n");
    assert!(err.contains("did you mean 192.0.2.0/24"), "{err}");

    let err = parse_err("[block]\nprefixes = []\n");
    assert!(err.contains("add `version = 1`"), "{err}");

    let err = parse_err("version = 2\n");
    assert!(
        err.contains(":1:11:") && err.contains("reads version 1"),
        "{err}"
    );

    let err = parse_err("version = 1\n[ratelimit]\npps = 0\n");
    assert!(err.contains(":3:7:") && err.contains("from 1 to"), "{err}");

    let err = parse_err("version = 1\n[[interface]]\nname = \"eth1\"\nprogram = \"firewal\"\n");
    assert!(
        err.contains(":4:11:") && err.contains("built-in programs are"),
        "{err}"
    );

    let err = parse_err("version = 1\n[[interface]]\nname = \"eth1\"\nmode = \"fast\"\n");
    assert!(err.contains("native, generic or auto"), "{err}");

    let err = parse_err("version = 1\n[block]\nprefixes = [\"0.0.0.0/0\"]\n");
    assert!(err.contains("allow_broad = true"), "{err}");

    let err = parse_err("version = 1\n[block]\nports = [\"53\"]\n");
    assert!(err.contains("53/udp"), "{err}");

    let err = parse_err("version = 1\n[ratelimit]\npps = 5\nblock_for = \"soon\"\n");
    assert!(
        err.contains(":4:13:") && err.contains("not a duration"),
        "{err}"
    );

    let err = parse_err("version = 1\n[ratelimit]\npps = 5\nprefix_limits = { \"/20\" = 5 }\n");
    assert!(err.contains("/8, /16, /24"), "{err}");

    let err = parse_err("version = 1\n[block\n");
    assert!(err.contains("test.toml:2:"), "{err}");
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let err = parse_err(
        "version = 1\n[block]\nprefixes = [\"x\", \"192.0.2.1\", \"y\"]\nports = [\"z\"]\n",
    );
    assert!(err.contains("3 errors"), "{err}");
    assert!(
        err.contains("'x'") && err.contains("'y'") && err.contains("'z'"),
        "{err}"
    );
}

#[test]
fn an_interface_given_twice_is_refused() {
    let err =
        parse_err("version = 1\n[[interface]]\nname = \"eth1\"\n[[interface]]\nname = \"eth1\"\n");
    assert!(
        err.contains(":5:8:") && err.contains("listed twice"),
        "{err}"
    );
}

#[test]
fn rule_files_are_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("drop.txt"),
        "# list\n203.0.113.0/24\n2001:db8::1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.txt"), "203.0.113.0/24\nnonsense\n").unwrap();
    let path = dir.path().join("x.toml");
    let state = parse(
        &path,
        "version = 1\n[block]\nfiles = [\"drop.txt\"]\n",
        LIMIT,
    )
    .unwrap();
    assert_eq!(state.block.len(), 2);
    let err = format!(
        "{:#}",
        parse(
            &path,
            "version = 1\n[block]\nfiles = [\"bad.txt\"]\n",
            LIMIT
        )
        .unwrap_err()
    );
    assert!(
        err.contains("x.toml:3:10:") && err.contains("bad.txt line 2"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        parse(
            &path,
            "version = 1\n[allow]\nfiles = [\"gone.txt\"]\n",
            LIMIT
        )
        .unwrap_err()
    );
    assert!(err.contains("gone.txt"), "{err}");
}

#[test]
fn a_rendered_state_parses_back_to_itself() {
    for text in [
        MINIMAL,
        "version = 1\n",
        "version = 1\n[ratelimit]\npps = 7\nprefix_limits = \"off\"\nblock_for = 90\n",
        "version = 1\n[firewall]\nmax_rules = 100\n[block]\nports = [\"1/tcp\"]\n\
         prefixes = [\"::/0\"]\nallow_broad = true\n[ratelimit]\npps = 9\nburst = 1\nproto = \"icmp\"\n\
         prefix_limits = { \"/8\" = \"off\", \"/64\" = 12 }\nprefix_block_for = \"1d\"\n\
         [[interface]]\nname = \"a\"\nmode = \"auto\"\n[[interface]]\nname = \"b\"\n\
         program = \"xdp_drop\"\n",
    ] {
        let state = parse_ok(text);
        let rendered = render(&state);
        assert_eq!(parse_ok(&rendered), state, "{rendered}");
    }
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("é\nx", 3), (2, 1));
    assert_eq!(line_col("x", 99), (1, 2));
}

#[test]
fn the_commented_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/xdpctl.toml");
    let state = read(Path::new(path), LIMIT).unwrap();
    assert_eq!(state.interfaces.len(), 1);
    assert!(state.limits.is_some());
}
