//! The binary's command-line behaviour that needs no privileges: usage errors exit 2 and show
//! usage; help and version work.

use std::process::Command;

fn xdpctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xdpctl"))
        .args(args)
        .output()
        .expect("xdpctl runs")
}

#[test]
fn bad_flags_exit_2_with_usage() {
    for args in [
        &["load"][..],
        &["load", "veth1", "--mode", "turbo"],
        &["stats", "veth1", "--interval", "0"],
        &["unload"],
        &["frobnicate"],
        &["testenv", "exec", "--name", "x"],
        &["watch"],
        &["watch", "veth1", "--interval", "0"],
    ] {
        let out = xdpctl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        // clap shows the usage line, or for a bad value the allowed values and a pointer to it.
        assert!(
            stderr.contains("Usage:") || stderr.contains("try '--help'"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
    }
}

#[test]
fn help_lists_every_command_and_version_prints() {
    let out = xdpctl(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    // Each command as an entry of the list (its name at the start of a line, then its summary),
    // not only somewhere in a sentence.
    let listed: Vec<&str> = help
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        // Not a wrapped summary's continuation (indented further), whose first word may be one.
        .filter(|entry| !entry.starts_with(' '))
        .filter_map(|entry| entry.split_whitespace().next())
        .collect();
    for command in [
        "load",
        "unload",
        "status",
        "stats",
        "run",
        "block",
        "unblock",
        "allow",
        "disallow",
        "list",
        "ratelimit",
        "top",
        "history",
        "graph",
        "ports",
        "exporter",
        "watch",
        "flood",
        "trace",
        "testenv",
        "demo",
    ] {
        assert!(listed.contains(&command), "{command} missing from:\n{help}");
    }
    let out = xdpctl(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("xdpctl "));
}
