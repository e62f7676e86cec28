//! The config file: TOML, read into a [`State`] with every entry checked, and written back from
//! one (`export`). Errors name the file, the line and column (toml's spans), and the fix; a file
//! is read whole and every error is reported, not just the first.
//!
//! ```toml
//! version = 1
//! [firewall]                  # optional: the maps' sizes when they are first created
//! max_rules = 1048576
//! [[interface]]
//! name = "eth1"
//! program = "firewall"        # or xdp_pass, xdp_drop, xdp_abort, or a function of `obj`
//! mode = "native"             # native (default), generic or auto
//! [block]
//! prefixes = ["192.0.2.66", "198.51.100.0/24"]
//! files = ["/etc/xdpctl/drop.txt"]   # one entry a line; relative to this file's directory
//! ports = ["53/udp"]
//! [allow]
//! prefixes = ["198.51.100.7"]
//! [ratelimit]
//! pps = 5000                  # burst, block_for, proto, prefix_limits, prefix_block_for
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use ipnet::IpNet;
use serde::Deserialize;
use toml::{Spanned, Value};

use super::{Interface, Limits, ProgramSpec, State, VERSION};
use crate::firewall::model::hhh::LEVELS;
use crate::firewall::prefix_limits::{
    level_of_length, PrefixLimits, DEFAULT_BLOCK_FOR_NS, DEFAULT_MULTIPLES,
};
use crate::firewall::Sizes;
use crate::firewall::{RateLimit, RateLimitProto};
use crate::input;
use crate::sys::attach::RequestedMode;

/// How many errors a refusal lists (the rest are counted).
const SHOWN_ERRORS: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Option<Spanned<i64>>,
    firewall: Option<RawFirewall>,
    #[serde(default)]
    interface: Vec<Spanned<RawInterface>>,
    block: Option<RawBlock>,
    allow: Option<RawAllow>,
    ratelimit: Option<Spanned<RawRatelimit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewall {
    max_rules: Option<Spanned<i64>>,
    max_sources: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Spanned<String>,
    program: Option<Spanned<String>>,
    obj: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    files: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    /// Takes prefixes shorter than /8 (IPv4) or /16 (IPv6), as `block --force` does.
    #[serde(default)]
    allow_broad: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    files: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRatelimit {
    pps: Spanned<i64>,
    burst: Option<Spanned<i64>>,
    block_for: Option<Spanned<Value>>,
    proto: Option<Spanned<String>>,
    prefix_limits: Option<Spanned<Value>>,
    prefix_block_for: Option<Spanned<Value>>,
}

/// Where in the text an error is: 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Collects the errors of one file, each placed by its span.
struct Errors<'a> {
    path: &'a Path,
    text: &'a str,
    found: Vec<String>,
}

impl Errors<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, message: impl std::fmt::Display) {
        let (line, col) = line_col(self.text, span.start);
        self.found
            .push(format!("{}:{line}:{col}: {message}", self.path.display()));
    }

    fn into_result(self) -> Result<()> {
        if self.found.is_empty() {
            return Ok(());
        }
        let count = self.found.len();
        let more = if count > SHOWN_ERRORS {
            format!("\n... and {} more", count - SHOWN_ERRORS)
        } else {
            String::new()
        };
        bail!(
            "{} has {count} error{}; nothing was changed:\n{}{more}",
            self.path.display(),
            if count == 1 { "" } else { "s" },
            self.found[..count.min(SHOWN_ERRORS)].join("\n")
        )
    }
}

/// Reads and checks the config file at `path`.
pub fn read(path: &Path, rule_limit: usize) -> Result<State> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        anyhow::anyhow!(
            "cannot read the config file {}: {err}{}",
            path.display(),
            if err.kind() == std::io::ErrorKind::NotFound {
                " (etc/xdpctl.toml in the source is a commented example)"
            } else {
                ""
            }
        )
    })?;
    parse(path, &text, rule_limit)
}

/// Parses a config file's text; `path` names it in errors and anchors its relative rule
/// files. `rule_limit` bounds the entries a rule file may hold.
pub fn parse(path: &Path, text: &str, rule_limit: usize) -> Result<State> {
    let mut errors = Errors {
        path,
        text,
        found: Vec::new(),
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            errors.at(err.span().unwrap_or(0..0), err.message().trim_end());
            errors.into_result()?;
            unreachable!("an error was recorded");
        }
    };
    let mut state = State::default();
    match &raw.version {
        None => errors.at(
            0..0,
            format!("no version: add `version = {VERSION}` at the top"),
        ),
        Some(v) if *v.get_ref() != VERSION => errors.at(
            v.span(),
            format!(
                "version {} is not one this xdpctl reads: it reads version {VERSION}",
                v.get_ref()
            ),
        ),
        Some(_) => {}
    }
    if let Some(fw) = &raw.firewall {
        state.sizes = sizes(fw, &mut errors);
    }
    for spanned in &raw.interface {
        interface(spanned, path, &mut state, &mut errors);
    }
    let base = path.parent().unwrap_or(Path::new("."));
    if let Some(block) = &raw.block {
        let prefixes = list(&block.prefixes, &block.files, base, rule_limit, &mut errors);
        for (prefix, span) in &prefixes {
            if input::is_broad(prefix) && !block.allow_broad {
                errors.at(
                    span.clone(),
                    format!(
                        "{prefix} blocks {} addresses of its family: set `allow_broad = true` \
                         in [block] if that is meant",
                        input::share_of_addresses(prefix.prefix_len())
                    ),
                );
            }
        }
        state.block = prefixes.into_iter().map(|(p, _)| p).collect();
        for port in &block.ports {
            match input::parse_port(port.get_ref()) {
                Ok(spec) => {
                    state.ports.insert(spec);
                }
                Err(err) => errors.at(port.span(), err),
            }
        }
    }
    if let Some(allow) = &raw.allow {
        let prefixes = list(&allow.prefixes, &allow.files, base, rule_limit, &mut errors);
        state.allow = prefixes.into_iter().map(|(p, _)| p).collect();
    }
    if let Some(rl) = &raw.ratelimit {
        state.limits = limits(rl.get_ref(), &mut errors);
    }
    errors.into_result()?;
    Ok(state)
}

fn count_in(value: &Spanned<i64>, max: u64, what: &str, errors: &mut Errors) -> Option<u64> {
    let n = *value.get_ref();
    if n < 1 || n as u64 > max {
        errors.at(
            value.span(),
            format!("{what} must be from 1 to {max}, not {n}"),
        );
        return None;
    }
    Some(n as u64)
}

fn sizes(fw: &RawFirewall, errors: &mut Errors) -> Sizes {
    use crate::firewall::map_budget::{MAX_RULES, MAX_SOURCES};
    let mut sizes = Sizes::default();
    if let Some(v) = &fw.max_rules {
        sizes.max_rules = count_in(v, MAX_RULES as u64, "max_rules", errors).map(|n| n as u32);
    }
    if let Some(v) = &fw.max_sources {
        sizes.max_sources =
            count_in(v, MAX_SOURCES as u64, "max_sources", errors).map(|n| n as u32);
    }
    sizes
}

fn interface(spanned: &Spanned<RawInterface>, path: &Path, state: &mut State, errors: &mut Errors) {
    let raw = spanned.get_ref();
    let name = raw.name.get_ref();
    if let Err(err) = crate::sys::ifname::check(name) {
        errors.at(raw.name.span(), err);
        return;
    }
    let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("native", _)) => RequestedMode::Native,
        Some(("generic", _)) => RequestedMode::Generic,
        Some(("auto", _)) => RequestedMode::Auto,
        Some((other, span)) => {
            errors.at(
                span,
                format!(
                    "{} is not a mode: native, generic or auto",
                    input::shown(other)
                ),
            );
            RequestedMode::Native
        }
    };
    let program = match &raw.obj {
        Some(obj) => {
            let file = PathBuf::from(obj.get_ref());
            let file = if file.is_relative() {
                path.parent().unwrap_or(Path::new(".")).join(file)
            } else {
                file
            };
            ProgramSpec::Object {
                path: file,
                program: raw.program.as_ref().map(|p| p.get_ref().clone()),
            }
        }
        None => {
            let name = raw
                .program
                .as_ref()
                .map_or(crate::sys::programs::DEFAULT_PROGRAM, |p| p.get_ref());
            if crate::sys::programs::builtin(name).is_none() {
                let names: Vec<&str> = crate::sys::programs::BUILTINS
                    .iter()
                    .map(|b| b.name)
                    .collect();
                errors.at(
                    raw.program.as_ref().map_or(spanned.span(), |p| p.span()),
                    format!(
                        "unknown program {}: the built-in programs are {}; for your own, add \
                         `obj = \"FILE.o\"`",
                        input::shown(name),
                        names.join(", ")
                    ),
                );
            }
            ProgramSpec::Builtin(name.to_owned())
        }
    };
    if state.interfaces.contains_key(name) {
        errors.at(
            raw.name.span(),
            format!("interface {name} is listed twice: keep one [[interface]] for it"),
        );
        return;
    }
    state
        .interfaces
        .insert(name.clone(), Interface { program, mode });
}

/// A list's prefixes, inline and from its files, each with where it was given (a file's
/// entries: the file's name in the config).
fn list(
    inline: &[Spanned<String>],
    files: &[Spanned<String>],
    base: &Path,
    rule_limit: usize,
    errors: &mut Errors,
) -> Vec<(IpNet, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    for entry in inline {
        match input::parse_prefix(entry.get_ref()) {
            Ok(prefix) => out.push((prefix, entry.span())),
            Err(err) => errors.at(entry.span(), err),
        }
    }
    for file in files {
        let path = base.join(file.get_ref());
        match input::gather_prefixes(&[], Some(&path), rule_limit) {
            Ok(gathered) => out.extend(gathered.prefixes.into_iter().map(|p| (p, file.span()))),
            Err(err) => errors.at(file.span(), format!("{err:#}")),
        }
    }
    out
}

/// A duration given as a string (`"90s"`, `"10m"`) or a number of seconds.
fn duration_ns(value: &Spanned<Value>, what: &str, errors: &mut Errors) -> Option<u64> {
    let text = match value.get_ref() {
        Value::String(s) => s.clone(),
        Value::Integer(n) => n.to_string(),
        other => {
            errors.at(
                value.span(),
                format!(
                    "{what} is a duration such as \"90s\", \"10m\" or \"1h30m\", not a {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    match input::parse_duration(&text) {
        Ok(d) => Some(input::duration_ns(d)),
        Err(err) => {
            errors.at(value.span(), format!("{what}: {err}"));
            None
        }
    }
}

const PPS_MAX: u64 = 1_000_000_000;

fn limits(raw: &RawRatelimit, errors: &mut Errors) -> Option<Limits> {
    let pps = count_in(&raw.pps, PPS_MAX, "pps", errors)?;
    let burst = match &raw.burst {
        Some(b) => count_in(b, PPS_MAX, "burst", errors)?,
        None => pps,
    };
    let block_for_ns = match &raw.block_for {
        Some(v) => duration_ns(v, "block_for", errors)?,
        None => 0,
    };
    let proto = match &raw.proto {
        None => RateLimitProto::All,
        Some(p) => match <RateLimitProto as clap::ValueEnum>::from_str(p.get_ref(), false) {
            Ok(proto) => proto,
            Err(_) => {
                errors.at(
                    p.span(),
                    format!(
                        "{} is not a protocol to limit: all, udp, tcp, icmp or syn",
                        input::shown(p.get_ref())
                    ),
                );
                return None;
            }
        },
    };
    let mut prefixes = PrefixLimits::defaults(pps);
    if let Some(v) = &raw.prefix_limits {
        prefixes.pps = prefix_rates(v, pps, errors)?;
    }
    if let Some(v) = &raw.prefix_block_for {
        prefixes.block_for_ns = duration_ns(v, "prefix_block_for", errors)?;
    } else {
        prefixes.block_for_ns = DEFAULT_BLOCK_FOR_NS;
    }
    Some(Limits {
        rate: RateLimit {
            enabled: true,
            pps,
            burst,
            block_for_ns,
            proto,
        },
        prefixes,
    })
}

/// `prefix_limits = "off"`, or a table of lengths (`"/24" = 20000`, `"/48" = "off"`) that
/// change the defaults.
fn prefix_rates(value: &Spanned<Value>, pps: u64, errors: &mut Errors) -> Option<[u64; LEVELS]> {
    let usage = "prefix_limits is \"off\", or a table such as { \"/24\" = 20000, \"/48\" = \
                 \"off\" } whose lengths are /8, /16, /24 (IPv4) and /32, /48, /64 (IPv6)";
    let mut rates = DEFAULT_MULTIPLES.map(|m| m.saturating_mul(pps));
    match value.get_ref() {
        Value::String(s) if s == "off" => return Some([0; LEVELS]),
        Value::Table(table) => {
            for (len, rate) in table {
                let Some(level) = len
                    .trim_start_matches('/')
                    .parse::<u8>()
                    .ok()
                    .and_then(level_of_length)
                else {
                    errors.at(
                        value.span(),
                        format!(
                            "{} is not a prefix length with a limit: {usage}",
                            input::shown(len)
                        ),
                    );
                    return None;
                };
                rates[level] = match rate {
                    Value::String(s) if s == "off" => 0,
                    Value::Integer(n) if (1..=1_000_000_000_000).contains(n) => *n as u64,
                    _ => {
                        errors.at(
                            value.span(),
                            format!(
                                "the limit of {len} is a number of packets per second from 1 \
                                 to 10^12, or \"off\""
                            ),
                        );
                        return None;
                    }
                };
            }
        }
        _ => {
            errors.at(value.span(), usage);
            return None;
        }
    }
    Some(rates)
}

// --- Writing a state as a file (`export`) ---------------------------------------------------

/// A state as a config file that [`parse`] reads back into the same state.
pub fn render(state: &State) -> String {
    let mut out = format!(
        "# The live state of this host, by `xdpctl export`. `xdpctl apply` of this file changes\n\
         # nothing here; rules that expire and auto-blocks are not in it (apply keeps them).\n\
         version = {VERSION}\n"
    );
    if state.sizes != Sizes::default() {
        out.push_str("\n[firewall]\n");
        if let Some(n) = state.sizes.max_rules {
            out.push_str(&format!("max_rules = {n}\n"));
        }
        if let Some(n) = state.sizes.max_sources {
            out.push_str(&format!("max_sources = {n}\n"));
        }
    }
    for (name, iface) in &state.interfaces {
        out.push_str(&format!("\n[[interface]]\nname = {}\n", quoted(name)));
        match &iface.program {
            ProgramSpec::Builtin(program) => {
                out.push_str(&format!("program = {}\n", quoted(program)))
            }
            ProgramSpec::Object { path, program } => {
                if let Some(program) = program {
                    out.push_str(&format!("program = {}\n", quoted(program)));
                }
                out.push_str(&format!("obj = {}\n", quoted(&path.display().to_string())));
            }
        }
        out.push_str(&format!("mode = {}\n", quoted(mode_name(iface.mode))));
    }
    if !state.block.is_empty() || !state.ports.is_empty() {
        out.push_str("\n[block]\n");
        if state.block.iter().any(input::is_broad) {
            out.push_str("allow_broad = true\n");
        }
        out.push_str(&string_array("prefixes", state.block.iter()));
        if !state.ports.is_empty() {
            out.push_str(&string_array("ports", state.ports.iter()));
        }
    }
    if !state.allow.is_empty() {
        out.push_str("\n[allow]\n");
        out.push_str(&string_array("prefixes", state.allow.iter()));
    }
    if let Some(limits) = &state.limits {
        out.push_str(&render_limits(limits));
    }
    out
}

fn render_limits(limits: &Limits) -> String {
    let rl = &limits.rate;
    let mut out = format!("\n[ratelimit]\npps = {}\nburst = {}\n", rl.pps, rl.burst);
    if rl.block_for_ns != 0 {
        out.push_str(&format!(
            "block_for = {}\n",
            quoted(&seconds(rl.block_for_ns))
        ));
    }
    let proto = serde_json::to_value(rl.proto)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "all".into());
    out.push_str(&format!("proto = {}\n", quoted(&proto)));
    if limits.prefixes.is_off() {
        out.push_str("prefix_limits = \"off\"\n");
    } else {
        let lengths = crate::firewall::model::hhh::LEVEL_LENGTHS;
        let cells: Vec<String> = (0..LEVELS)
            .map(|level| {
                let rate = match limits.prefixes.pps[level] {
                    0 => "\"off\"".to_owned(),
                    n => n.to_string(),
                };
                format!("\"/{}\" = {rate}", lengths[level])
            })
            .collect();
        out.push_str(&format!("prefix_limits = {{ {} }}\n", cells.join(", ")));
    }
    out.push_str(&format!(
        "prefix_block_for = {}\n",
        quoted(&seconds(limits.prefixes.block_for_ns))
    ));
    out
}

/// A duration in whole seconds as the file writes it: "90s". Durations are set in whole
/// seconds, so this is exact for any a file or the command line set.
fn seconds(ns: u64) -> String {
    format!("{}s", ns.div_ceil(1_000_000_000).max(1))
}

pub fn mode_name(mode: RequestedMode) -> &'static str {
    match mode {
        RequestedMode::Native => "native",
        RequestedMode::Generic => "generic",
        RequestedMode::Auto => "auto",
    }
}

fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn string_array<T: ToString>(key: &str, items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items
        .map(|i| format!("  {},\n", quoted(&i.to_string())))
        .collect();
    format!("{key} = [\n{}]\n", items.concat())
}

#[cfg(test)]
mod tests;
