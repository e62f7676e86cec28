//! What users type: addresses and CIDR prefixes, ports, durations and rule files. Whatever the
//! input, these parsers never panic, keep memory bounded by the rules they return (a rule
//! file is streamed, a line may be at most [`MAX_LINE_BYTES`]), and echo at most
//! [`SHOWN_CHARS`] characters of it back, with invisible characters escaped.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

mod rule_files;

pub use rule_files::{gather_prefixes, read_prefix_list, BadLine, Gathered, PrefixList, Stop};

/// The longest line a rule file may have: an entry and its comment fit many times over, and a
/// longer one (a binary, /dev/zero) stops the reading there.
pub const MAX_LINE_BYTES: usize = 4096;
/// How much of a bad entry an error shows.
pub const SHOWN_CHARS: usize = 64;
/// The longest duration (a TTL, a rate limit's block): 10 years. Nanoseconds on the firewall's
/// clock stay far from overflowing u64 (584 years).
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);
/// How many bad entries an error lists (the rest are counted).
pub const SHOWN_ERRORS: usize = 20;

// --- Echoing input -----------------------------------------------------------------------

/// Whether a character would not show as itself on a terminal (controls, BOMs, zero-width and
/// direction marks, non-breaking spaces...): Debug formatting escapes exactly those.
fn is_hidden(c: char) -> bool {
    !matches!(c, '\'' | '"' | '\\') && c.escape_debug().nth(1).is_some()
}

/// Part of what a user typed, for an error message: quoted, cut to [`SHOWN_CHARS`] characters
/// (then "…"), and escaped Debug-style (`"\u{feff}1.2.3.4"`) if it holds a hidden character, so
/// an entry that looks right but is not shows why.
pub fn shown(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    let more = if chars.next().is_some() { "…" } else { "" };
    if head.chars().any(is_hidden) {
        format!("{head:?}{more}")
    } else {
        format!("'{head}{more}'")
    }
}

// --- Addresses and prefixes ----------------------------------------------------------------

/// An address (a /32 or /128) or a CIDR prefix. Host bits must be zero, so a typo cannot
/// silently block more than was meant. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, as
/// dual-stack sockets log IPv4 peers) is the IPv4 address it maps, and `::ffff:a.b.c.d/N`
/// (N >= 96) the IPv4 /N-96: as an IPv6 rule it would never match, since IPv4 traffic carries
/// IPv4 headers.
pub fn parse_prefix(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let parsed = if text.contains('/') {
        IpNet::from_str(text).ok()
    } else {
        IpAddr::from_str(text).ok().map(IpNet::from)
    };
    let net = parsed.ok_or_else(|| {
        format!(
            "{} is not an IP address or CIDR prefix (e.g. 203.0.113.7, 198.51.100.0/24, \
             2001:db8::/32)",
            shown(text)
        )
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{} has host bits set: did you mean {}?",
            shown(text),
            net.trunc()
        ));
    }
    Ok(unmapped(net))
}

/// The IPv4 prefix an IPv4-mapped IPv6 prefix (within ::ffff:0:0/96) stands for.
fn unmapped(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4);
            }
        }
    }
    net
}

/// The IPv4 prefix an entry as typed stands for, if it was written IPv4-mapped (parsed to an
/// IPv4 prefix, written with ':').
fn was_mapped(text: &str, net: &IpNet) -> Option<Ipv4Net> {
    match net {
        IpNet::V4(v4) if text.contains(':') => Some(*v4),
        _ => None,
    }
}

/// The IPv6 prefix within ::ffff:0:0/96 that an IPv4 prefix maps to: what older versions
/// stored for an entry typed `::ffff:a.b.c.d`, a rule that never matches.
pub fn mapped_form(v4: Ipv4Net) -> IpNet {
    let v6 = Ipv6Net::new(v4.addr().to_ipv6_mapped(), v4.prefix_len() + 96);
    IpNet::V6(v6.expect("an IPv4 prefix length plus 96 is at most 128"))
}

/// Whether a rule is an IPv6 prefix within ::ffff:0:0/96 (made by an older version): IPv4
/// traffic carries IPv4 headers, so it never matches.
pub fn is_mapped_rule(net: &IpNet) -> bool {
    unmapped(*net) != *net
}

/// The shortest prefix `block` takes without --force, per family: shorter ones block a large
/// part of the Internet (/0: all of it).
pub const BROAD_V4: u8 = 8;
pub const BROAD_V6: u8 = 16;

/// Whether a prefix is shorter than [`BROAD_V4`] / [`BROAD_V6`].
pub fn is_broad(prefix: &IpNet) -> bool {
    match prefix {
        IpNet::V4(net) => net.prefix_len() < BROAD_V4,
        IpNet::V6(net) => net.prefix_len() < BROAD_V6,
    }
}

/// "all", "half of all", "1/64 of all": the share of a family's addresses a prefix of `len`
/// bits covers.
pub fn share_of_addresses(len: u8) -> String {
    match len {
        0 => "all".into(),
        1 => "half of all".into(),
        n if n < 64 => format!("1/{} of all", 1u64 << n),
        n => format!("1/2^{n} of all"),
    }
}

// --- Ports and durations -------------------------------------------------------------------

/// The protocol of a port rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum PortProto {
    Tcp,
    Udp,
}

impl PortProto {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProto::Tcp => "tcp",
            PortProto::Udp => "udp",
        }
    }
}

/// A destination port rule: `53/udp`, `22/tcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    pub port: u16,
    pub proto: PortProto,
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.proto.as_str())
    }
}

/// A port rule as typed: `PORT/PROTO`, e.g. `53/udp`.
pub fn parse_port(text: &str) -> Result<PortSpec, String> {
    let text = text.trim();
    let Some((port, proto)) = text.split_once('/') else {
        return Err(if text.parse::<u16>().is_ok() {
            format!("'{text}' names no protocol: write {text}/udp or {text}/tcp")
        } else {
            format!(
                "{} is not a port rule: write PORT/PROTO, e.g. 53/udp or 22/tcp",
                shown(text)
            )
        });
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{}: the port must be a number from 0 to 65535", shown(text)))?;
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => PortProto::Tcp,
        "udp" => PortProto::Udp,
        _ => return Err(format!("{}: the protocol must be tcp or udp", shown(text))),
    };
    Ok(PortSpec { port, proto })
}

/// A duration: `90` (seconds), `30s`, `5m`, `2h`, `1d`, or combined like `1h30m`; more than
/// zero and at most [`MAX_DURATION`]. Arithmetic saturates, so a huge number is "too long",
/// never a wrapped-around short one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{} is not a duration (e.g. 90, 30s, 5m, 1h30m, 1d)",
            shown(text)
        )
    };
    let mut total = 0u64;
    let mut number: Option<u64> = None;
    let mut units = 0;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(n.saturating_mul(10).saturating_add(u64::from(digit)));
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n = number.take().ok_or_else(bad)?;
        total = total.saturating_add(n.saturating_mul(unit));
        units += 1;
    }
    match (number, units) {
        (None, 0) => return Err(bad()),
        // Plain seconds; a number after units ("5m3") is no duration.
        (Some(seconds), 0) => total = seconds,
        (Some(_), _) => return Err(bad()),
        (None, _) => {}
    }
    if total > MAX_DURATION.as_secs() {
        return Err(format!(
            "{} is too long: at most 10 years (3650d)",
            shown(text)
        ));
    }
    if total == 0 {
        return Err(format!(
            "{}: the duration must be more than zero",
            shown(text)
        ));
    }
    Ok(Duration::from_secs(total))
}

/// A duration in nanoseconds, saturating (for the firewall's u64 clock).
pub fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
