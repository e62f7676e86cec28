//! The declarative config (`/etc/xdpctl/xdpctl.toml`) and `apply`: a file says what the host
//! should look like, and apply makes the live state match it, all or nothing.
//!
//! - [`file`]: the TOML format, parsed and checked in full into a [`State`], every error with
//!   its file, line and fix; and the other way, a state written as a file (`export`)
//! - [`live`]: the state the kernel holds now, read without writing anything
//! - [`plan`]: what differs between two states, as the changes that make one the other
//! - [`apply`]: carrying out a plan, undone in reverse if any step fails
//!
//! What a file owns: the interfaces it names and xdpctl's attachments elsewhere, every rule that
//! never expires (manual ones too: a rule typed by hand and not in the file is drift, which
//! `diff` reports and `apply` removes), the port rules and the rate limit. What it never
//! touches: rules that expire and auto-blocks (dynamic entries), other tools' programs, and
//! interfaces held by `xdpctl run`.

pub mod apply;
pub mod file;
pub mod live;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ipnet::IpNet;

use crate::firewall::prefix_limits::PrefixLimits;
use crate::firewall::{RateLimit, Sizes};
use crate::input::PortSpec;
use crate::sys::attach::RequestedMode;

/// The config format's version this xdpctl reads and writes.
pub const VERSION: i64 = 1;
/// Where the systemd unit and `apply` without a file look.
pub const DEFAULT_PATH: &str = "/etc/xdpctl/xdpctl.toml";

/// Which program an interface runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramSpec {
    /// A built-in program (src/sys/programs.rs).
    Builtin(String),
    /// A function in the user's own object file.
    Object {
        path: PathBuf,
        program: Option<String>,
    },
}

impl ProgramSpec {
    /// The program's name as the kernel reports it, where known before loading.
    pub fn name(&self) -> Option<&str> {
        match self {
            ProgramSpec::Builtin(name) => Some(name),
            ProgramSpec::Object { program, .. } => program.as_deref(),
        }
    }
}

impl std::fmt::Display for ProgramSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgramSpec::Builtin(name) => write!(f, "{name}"),
            ProgramSpec::Object { path, program } => match program {
                Some(name) => write!(f, "{name} from {}", path.display()),
                None => write!(f, "{}", path.display()),
            },
        }
    }
}

/// One interface's attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub program: ProgramSpec,
    pub mode: RequestedMode,
}

/// The rate limit and the prefix limits it bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub rate: RateLimit,
    pub prefixes: PrefixLimits,
}

/// The whole state a file describes, or the part of the live state a file owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The maps' sizes; `None`: whatever they have (or the defaults, when they are made).
    pub sizes: Sizes,
    pub interfaces: BTreeMap<String, Interface>,
    /// Blocked sources (rules that never expire).
    pub block: BTreeSet<IpNet>,
    /// Allowlisted sources.
    pub allow: BTreeSet<IpNet>,
    /// Blocked destination ports.
    pub ports: BTreeSet<PortSpec>,
    /// `None`: the rate limit is off.
    pub limits: Option<Limits>,
}
