//! Rule files: streamed in blocks, parsed over the CPUs when large, with every bad line counted
//! and the first few kept to show; and the prefixes of a command, its arguments plus its file.

use std::io::{self, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};

use super::{parse_prefix, shown, was_mapped, MAX_LINE_BYTES, SHOWN_ERRORS};

/// How a rule file is read: in blocks of about `block` bytes, with reads of `read` bytes, and
/// blocks of `parallel_from` bytes or more parsed over the CPUs. A line longer than the limit
/// stops the reading within `read` bytes of passing it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reading {
    pub(super) block: usize,
    pub(super) read: usize,
    pub(super) parallel_from: usize,
}

pub(super) const READING: Reading = Reading {
    block: 1 << 20,
    read: 64 << 10,
    parallel_from: 256 << 10,
};

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

pub(super) fn read_with(
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
