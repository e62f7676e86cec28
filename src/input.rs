//! What users type: addresses and CIDR prefixes, ports, durations and rule files. Whatever the
//! input, these parsers never panic, keep memory bounded by the rules they return (a rule
//! file is streamed, a line may be at most [`MAX_LINE_BYTES`]), and echo at most
//! [`SHOWN_CHARS`] characters of it back, with invisible characters escaped.

use std::io::{self, Read};
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

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

/// How a rule file is read: in blocks of about `block` bytes, with reads of `read` bytes, and
/// blocks of `parallel_from` bytes or more parsed over the CPUs. A line longer than the limit
/// stops the reading within `read` bytes of passing it.
#[derive(Clone, Copy, Debug)]
struct Reading {
    block: usize,
    read: usize,
    parallel_from: usize,
}

const READING: Reading = Reading {
    block: 1 << 20,
    read: 64 << 10,
    parallel_from: 256 << 10,
};

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

// --- Rule files ------------------------------------------------------------------------------

/// A line of a rule file that did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub error: String,
}

/// Why a rule file was not read to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// This line is longer than [`MAX_LINE_BYTES`].
    LineTooLong(usize),
    /// The file held more entries than the limit it was read with.
    TooManyEntries(usize),
}

/// What a rule file held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixList {
    /// The good entries, in file order.
    pub prefixes: Vec<IpNet>,
    /// Lines that held an entry, good or bad (not blank, not only a comment).
    pub entries: usize,
    /// The first [`SHOWN_ERRORS`] bad lines.
    pub bad: Vec<BadLine>,
    /// Every bad line, shown or not.
    pub bad_lines: usize,
    /// The entries written IPv4-mapped (::ffff:a.b.c.d), as the IPv4 prefixes they were taken
    /// as.
    pub mapped: Vec<Ipv4Net>,
    /// Set if the reading stopped before the end.
    pub stop: Option<Stop>,
}

impl PrefixList {
    pub fn is_clean(&self) -> bool {
        self.bad_lines == 0 && self.stop.is_none()
    }

    /// Appends a later part of the file (its line numbers already the file's).
    fn append(&mut self, mut part: PrefixList) {
        self.prefixes.append(&mut part.prefixes);
        self.entries += part.entries;
        let room = SHOWN_ERRORS - self.bad.len();
        self.bad.extend(part.bad.into_iter().take(room));
        self.bad_lines += part.bad_lines;
        self.mapped.append(&mut part.mapped);
        self.stop = self.stop.or(part.stop);
    }
}

/// Parses whole lines (`bytes` holds no partial line but maybe the file's last), numbering them
/// from `first_line`. Stops at a line that is too long.
fn parse_lines(bytes: &[u8], first_line: usize) -> PrefixList {
    let mut list = PrefixList::default();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = first_line + index;
        if line.len() > MAX_LINE_BYTES {
            list.stop = Some(Stop::LineTooLong(number));
            break;
        }
        // '#' is ASCII, so the cut is safe in any encoding; only the entry must be UTF-8.
        let entry = line.split(|&b| b == b'#').next().unwrap_or_default();
        let error = match std::str::from_utf8(entry) {
            Ok(text) => {
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                list.entries += 1;
                match parse_prefix(text) {
                    Ok(prefix) => {
                        list.mapped.extend(was_mapped(text, &prefix));
                        list.prefixes.push(prefix);
                        continue;
                    }
                    Err(error) => error,
                }
            }
            Err(err) => {
                list.entries += 1;
                let at = err.valid_up_to();
                format!(
                    "not UTF-8 text (byte {} of the line is 0x{:02x}): a rule file is plain text, \
                     one address or prefix a line",
                    at + 1,
                    entry[at]
                )
            }
        };
        list.bad_lines += 1;
        if list.bad.len() < SHOWN_ERRORS {
            list.bad.push(BadLine {
                line: number,
                error,
            });
        }
    }
    list
}

/// Parses a block of whole lines, split over up to `threads` CPUs (a million lines take 0.2 s
/// on one core here). Line numbers are the file's.
fn parse_block(bytes: &[u8], first_line: usize, threads: usize, sizes: Reading) -> PrefixList {
    if threads < 2 || bytes.len() < sizes.parallel_from {
        return parse_lines(bytes, first_line);
    }
    // Cut just after a newline, so no line is split.
    let mut chunks = Vec::with_capacity(threads);
    let mut start = 0;
    for t in 1..=threads {
        let mut end = (bytes.len() * t / threads).max(start);
        while end < bytes.len() && (end == 0 || bytes[end - 1] != b'\n') {
            end += 1;
        }
        if end > start {
            chunks.push(&bytes[start..end]);
            start = end;
        }
    }
    let parts: Vec<(PrefixList, usize)> = std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .iter()
            .map(|&chunk| {
                scope.spawn(move || {
                    let lines = chunk.iter().filter(|&&b| b == b'\n').count();
                    (parse_lines(chunk, 0), lines)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| match worker.join() {
                Ok(part) => part,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    let mut list = PrefixList::default();
    let mut offset = first_line;
    for (mut part, lines) in parts {
        for bad in &mut part.bad {
            bad.line += offset;
        }
        if let Some(Stop::LineTooLong(line)) = &mut part.stop {
            *line += offset;
        }
        offset += lines;
        let stop = part.stop.is_some();
        list.append(part);
        if stop {
            break;
        }
    }
    list
}

fn parser_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

/// Reads a rule file: one address or prefix a line, `#` starts a comment, blank lines are
/// skipped, a UTF-8 BOM at the start is ignored. Every bad line is counted (the first
/// [`SHOWN_ERRORS`] kept) rather than stopping at the first. The file is streamed in blocks
/// parsed over the CPUs: memory is the prefixes kept plus a block. The reading stops at a line
/// longer than [`MAX_LINE_BYTES`], and once the file holds more than `limit` entries.
pub fn read_prefix_list(reader: impl Read, limit: usize) -> io::Result<PrefixList> {
    read_with(reader, limit, READING, parser_threads())
}

fn read_with(
    mut reader: impl Read,
    limit: usize,
    sizes: Reading,
    threads: usize,
) -> io::Result<PrefixList> {
    let mut list = PrefixList::default();
    let mut buf: Vec<u8> = Vec::with_capacity(sizes.block + sizes.read);
    let mut line = 1;
    let mut at_start = true;
    loop {
        // Fill a block (holding a whole line at least); `tail` is the length of the partial
        // line at its end.
        let mut tail = buf.len();
        let mut eof = false;
        while tail <= MAX_LINE_BYTES && (buf.len() < sizes.block || tail == buf.len()) {
            let old = buf.len();
            if reader
                .by_ref()
                .take(sizes.read as u64)
                .read_to_end(&mut buf)?
                == 0
            {
                eof = true;
                break;
            }
            tail = match buf[old..].iter().rposition(|&b| b == b'\n') {
                Some(at) => buf.len() - old - at - 1,
                None => tail + buf.len() - old,
            };
        }
        if at_start && (buf.len() >= 3 || eof) {
            if buf.starts_with("\u{feff}".as_bytes()) {
                buf.drain(..3);
                tail = tail.min(buf.len());
            }
            at_start = false;
        }
        let whole = if eof { buf.len() } else { buf.len() - tail };
        let part = parse_block(&buf[..whole], line, threads, sizes);
        line += buf[..whole].iter().filter(|&&b| b == b'\n').count();
        list.append(part);
        if list.stop.is_none() && tail > MAX_LINE_BYTES && !eof {
            list.stop = Some(Stop::LineTooLong(line));
        }
        if list.stop.is_none() && list.entries > limit {
            list.stop = Some(Stop::TooManyEntries(limit));
        }
        if list.stop.is_some() || eof {
            return Ok(list);
        }
        buf.drain(..whole);
    }
}

/// The prefixes of a command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gathered {
    /// Every entry, in order (arguments, then the file's).
    pub prefixes: Vec<IpNet>,
    /// The entries typed IPv4-mapped (::ffff:a.b.c.d), as the IPv4 prefixes they were taken as:
    /// removing one also finds the IPv6 rule an older version made of it.
    pub mapped: Vec<Ipv4Net>,
}

/// The prefixes of a command: its arguments plus `--file` (a path, or `-` for stdin), at most
/// `limit` of them from the file. Any bad entry fails the whole command, naming the bad
/// entries; so does a file with no entry at all.
pub fn gather_prefixes(targets: &[String], file: Option<&Path>, limit: usize) -> Result<Gathered> {
    let mut prefixes = Vec::new();
    let mut mapped = Vec::new();
    let mut errors = Vec::new();
    let mut bad = 0;
    for target in targets {
        match parse_prefix(target) {
            Ok(prefix) => {
                if let Some(v4) = was_mapped(target.trim(), &prefix) {
                    mapped.push(v4);
                    eprintln!(
                        "note: {} is an IPv4-mapped IPv6 address: taken as {prefix}",
                        shown(target.trim())
                    );
                }
                prefixes.push(prefix);
            }
            Err(error) => {
                bad += 1;
                if errors.len() < SHOWN_ERRORS {
                    errors.push(error);
                }
            }
        }
    }
    if let Some(path) = file {
        let (name, list) = if path == Path::new("-") {
            let list = read_prefix_list(io::stdin().lock(), limit)
                .context("reading the rules from stdin")?;
            ("stdin".to_owned(), list)
        } else {
            let reader = std::fs::File::open(path)
                .with_context(|| format!("opening the rule file {}", path.display()))?;
            let list = read_prefix_list(reader, limit)
                .with_context(|| format!("reading the rule file {}", path.display()))?;
            (path.display().to_string(), list)
        };
        // A line too long is shown whatever came before: it says why later lines went unread.
        let too_long = match list.stop {
            Some(Stop::TooManyEntries(limit)) => bail!(
                "{name} holds more than {limit} entries, more than the firewall's maps hold \
                 (--max-rules addresses, IPv4 ranges and IPv6 ranges); nothing was applied. \
                 Split it, or load the firewall with a larger --max-rules"
            ),
            Some(Stop::LineTooLong(line)) => Some(format!(
                "{name} line {line}: longer than {MAX_LINE_BYTES} bytes, the most a line may \
                 be; the reading stopped there. A rule file is text, one address or prefix a line"
            )),
            None => None,
        };
        let room = SHOWN_ERRORS.saturating_sub(errors.len() + too_long.is_some() as usize);
        errors.extend(
            list.bad
                .iter()
                .take(room)
                .map(|b| format!("{name} line {}: {}", b.line, b.error)),
        );
        if let Some(error) = too_long {
            errors.truncate(SHOWN_ERRORS - 1);
            errors.push(error);
            bad += 1;
        }
        bad += list.bad_lines;
        if list.entries == 0 && list.stop.is_none() {
            bail!(
                "{name} holds no entries (only blank lines and comments); nothing was applied. \
                 Give one address or prefix a line"
            );
        }
        if !list.mapped.is_empty() {
            eprintln!(
                "note: {name} has {} IPv4-mapped IPv6 entr{} (::ffff:a.b.c.d), taken as IPv4",
                list.mapped.len(),
                if list.mapped.len() == 1 { "y" } else { "ies" }
            );
        }
        prefixes.extend(list.prefixes);
        mapped.extend(list.mapped);
    }
    if bad > 0 {
        let more = if bad > errors.len() {
            format!("\n... and {} more", bad - errors.len())
        } else {
            String::new()
        };
        bail!(
            "{bad} bad entr{}; nothing was applied:\n{}{more}",
            if bad == 1 { "y" } else { "ies" },
            errors.join("\n")
        );
    }
    Ok(Gathered { prefixes, mapped })
}

#[cfg(test)]
mod tests;
