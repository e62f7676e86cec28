//! The value parsers of the command line: each checks one argument and says what is wrong with
//! it, echoing at most a bounded part of it ([`shown`]: a 1 MB argument is not printed back).

use std::ffi::OsString;

use clap::Parser;

use crate::input::{shown, SHOWN_CHARS};

/// Parses the command line, or exits as clap does. clap quotes the whole of a value it refuses
/// (`invalid value '…' for`, `unrecognized subcommand '…'`), so a 1 MB argument would be printed
/// back whole: a refusal shows at most [`SHOWN_CHARS`] characters of each argument.
pub fn parse() -> super::Cli {
    let err = match super::Cli::try_parse() {
        Ok(cli) => return cli,
        Err(err) => err,
    };
    if !err.use_stderr() {
        err.exit();
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let message = err.to_string();
    let cut = cut_arguments(&message, &args);
    if cut == message {
        // Nothing to cut: clap prints it, in colour on a terminal.
        err.exit();
    }
    eprint!("{cut}");
    std::process::exit(err.exit_code());
}

/// `message` with every long argument of `args` (or the value of a long `--flag=VALUE`) in it
/// cut to its first [`SHOWN_CHARS`] characters and "…".
fn cut_arguments(message: &str, args: &[OsString]) -> String {
    let mut long: Vec<String> = args
        .iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .flat_map(|arg| {
            let value = arg.split_once('=').map(|(_, value)| value.to_owned());
            [Some(arg), value]
        })
        .flatten()
        .filter(|text| text.chars().count() > SHOWN_CHARS)
        .collect();
    // The longest first, so that a `--flag=VALUE` is cut before its VALUE is looked for.
    long.sort_by_key(|text| std::cmp::Reverse(text.len()));
    let mut message = message.to_owned();
    for text in long {
        let head: String = text.chars().take(SHOWN_CHARS).collect();
        message = message.replace(&text, &format!("{head}…"));
    }
    message
}

/// An interface name the kernel would accept: xdpctl makes pin paths from it.
pub(super) fn interface_name(text: &str) -> Result<String, String> {
    crate::sys::ifname::check(text).map(|()| text.to_owned())
}

pub(super) fn lab_name(text: &str) -> Result<String, String> {
    crate::lab::testenv::validate_name(text)
        .map(|()| text.to_owned())
        .map_err(|err| err.to_string())
}

pub(super) fn flood_source(text: &str) -> Result<ipnet::IpNet, String> {
    if text.contains('/') {
        text.parse::<ipnet::IpNet>()
            .map(|net| net.trunc())
            .map_err(|_| format!("{} is not an address or CIDR prefix", shown(text)))
    } else {
        text.parse::<std::net::IpAddr>()
            .map(ipnet::IpNet::from)
            .map_err(|_| format!("{} is not an address or CIDR prefix", shown(text)))
    }
}

pub(super) fn mac(text: &str) -> Result<[u8; 6], String> {
    crate::lab::flood::parse_mac(text)
        .ok_or_else(|| format!("{} is not a MAC address (02:00:00:00:00:01)", shown(text)))
}

pub(super) fn duration(text: &str) -> Result<std::time::Duration, String> {
    crate::input::parse_duration(text)
}

/// One `--prefix-limit`: `off` (no prefix limits), or `LEN=PPS` for one prefix length (IPv4
/// 8, 16, 24; IPv6 32, 48, 64), PPS 0 or `off` turning that length's limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixLimitArg {
    Off,
    Level { level: usize, pps: u64 },
}

pub(super) fn prefix_limit(text: &str) -> Result<PrefixLimitArg, String> {
    use crate::firewall::prefix_limits::level_of_length;
    if text == "off" {
        return Ok(PrefixLimitArg::Off);
    }
    let usage = "a prefix limit is LEN=PPS, LEN one of 8, 16, 24 (IPv4) or 32, 48, 64 (IPv6), \
                 e.g. /24=16000, or `off`";
    let Some((len, pps)) = text.split_once('=') else {
        return Err(format!("{} is not a prefix limit: {usage}", shown(text)));
    };
    let level = len
        .trim_start_matches('/')
        .parse::<u8>()
        .ok()
        .and_then(level_of_length)
        .ok_or_else(|| {
            format!(
                "{} is not a prefix length with a limit: {usage}",
                shown(len)
            )
        })?;
    let pps = match pps {
        "off" => 0,
        _ => pps
            .parse::<u64>()
            .ok()
            .filter(|&p| p <= 1_000_000_000_000)
            .ok_or_else(|| {
                format!(
                    "{} is not a packet rate: PPS is a number of packets per second up to \
                     10^12, or `off`",
                    shown(pps)
                )
            })?,
    };
    Ok(PrefixLimitArg::Level { level, pps })
}

pub(super) fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{} is not an IP address and port, e.g. 127.0.0.1:9435 or [::1]:9435",
            shown(text)
        )
    })
}

pub(super) fn lock_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=86_400.0).contains(&value) => Ok(value),
        _ => Err(format!(
            "the lock timeout is from 0 to 86400 seconds (a day), not {}",
            shown(text)
        )),
    }
}

pub(super) fn positive_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{} is not a number of seconds", shown(text)))?;
    // Below 10 ms a sampling loop only spins; above a day it is surely a typo.
    if (0.01..=86_400.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "the interval must be from 0.01 to 86400 seconds (a day), not {}",
            shown(text)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_limits_name_a_length_and_a_rate() {
        assert_eq!(prefix_limit("off"), Ok(PrefixLimitArg::Off));
        assert_eq!(
            prefix_limit("/24=16000"),
            Ok(PrefixLimitArg::Level {
                level: 2,
                pps: 16000
            })
        );
        assert_eq!(
            prefix_limit("48=off"),
            Ok(PrefixLimitArg::Level { level: 4, pps: 0 })
        );
        let err = prefix_limit("/20=5").unwrap_err();
        assert!(
            err.contains("8, 16, 24") && err.contains("32, 48, 64"),
            "{err}"
        );
        assert!(prefix_limit("/24").unwrap_err().contains("LEN=PPS"));
        assert!(prefix_limit("/24=fast")
            .unwrap_err()
            .contains("packet rate"));
    }

    #[test]
    fn clap_refusals_show_a_huge_argument_cut_short() {
        let huge = "x".repeat(1 << 16);
        let flag = format!("--lock-timeout={}", "9".repeat(1 << 16));
        for args in [
            vec!["xdpctl", "unload", &huge],
            vec!["xdpctl", &huge],
            vec!["xdpctl", "list", &flag],
            vec!["xdpctl", "list", "--lock-timeout", &huge],
            vec!["xdpctl", "testenv", "setup", "--name", &huge],
        ] {
            let err = super::super::Cli::try_parse_from(&args).unwrap_err();
            let os_args: Vec<OsString> = args[1..].iter().map(OsString::from).collect();
            let shown = cut_arguments(&err.to_string(), &os_args);
            assert!(
                shown.len() < 1000,
                "{} bytes: {}",
                shown.len(),
                &shown[..300]
            );
            assert!(shown.contains("…"), "{shown}");
        }
        // Short ones are left as they are.
        let err = super::super::Cli::try_parse_from(["xdpctl", "unload", "a/b"]).unwrap_err();
        let message = err.to_string();
        assert_eq!(
            cut_arguments(&message, &["unload".into(), "a/b".into()]),
            message
        );
    }

    /// Every parser that echoes its argument echoes a bounded part of a huge one.
    #[test]
    fn a_huge_argument_is_not_echoed_whole() {
        let huge = "9".repeat(1 << 20);
        let huge_name = "x".repeat(1 << 20);
        let errors = [
            interface_name(&huge_name).unwrap_err(),
            lab_name(&huge_name).unwrap_err(),
            flood_source(&huge_name).unwrap_err(),
            mac(&huge_name).unwrap_err(),
            listen_address(&huge_name).unwrap_err(),
            lock_seconds(&huge).unwrap_err(),
            positive_seconds(&huge).unwrap_err(),
            positive_seconds(&huge_name).unwrap_err(),
        ];
        for err in errors {
            assert!(err.len() < 1000, "{} bytes: {}…", err.len(), &err[..200]);
            assert!(err.contains("…"), "{err}");
        }
    }
}
