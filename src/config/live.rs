//! The live state, as a config file sees it: read from the pinned maps and the interfaces'
//! attachments, writing nothing (expired rules are left for the next edit to sweep).

use std::collections::BTreeMap;

use anyhow::Result;
use ipnet::IpNet;
use libbpf_rs::MapCore;

use super::{Interface, Limits, ProgramSpec, State};
use crate::firewall::prefix_limits::PrefixLimits;
use crate::firewall::rules::{self, PrefixEntry};
use crate::firewall::{FirewallMaps, List, RateLimit, Sizes, SOURCE_WAYS};
use crate::sys::attach::{self, AttachedMode, RequestedMode};
use crate::sys::pins::{self, Owner};

/// What holds an interface's XDP hook now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// This instance's pinned link: apply may replace or detach it.
    Ours,
    /// `xdpctl run`, in the foreground.
    Foreground { pid: u32 },
    /// Another xdpctl instance (another pin root).
    OtherInstance { root: String },
    /// Another tool.
    Other,
}

/// A program attached to an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub prog_id: u32,
    pub name: String,
    pub tag: [u8; 8],
    pub mode: AttachedMode,
    pub holder: Holder,
}

/// The live state.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// The part a file owns: this instance's attachments, the rules that never expire, ports
    /// and the rate limit.
    pub state: State,
    /// What is attached to each interface of interest (the file's, and this instance's own).
    pub attached: BTreeMap<String, Attached>,
    /// Rules a file never owns: those that expire, and auto-blocks.
    pub dynamic: Vec<(List, PrefixEntry)>,
    /// The reason (enum fw_rule_reason) of each static rule, so a rollback puts it back as it
    /// was.
    pub reasons: BTreeMap<(List, IpNet), u32>,
    /// Whether the firewall's maps exist (a pin set).
    pub maps_exist: bool,
}

/// Whether a rule is static (a file owns it): an operator's rule that never expires.
pub fn is_static(entry: &PrefixEntry) -> bool {
    entry.expires_in.is_none()
        && (entry.reason == crate::abi::FW_REASON_MANUAL
            || entry.reason == crate::abi::FW_REASON_CONFIG)
}

/// Reads the live state; `interfaces`: more interfaces to look at than this instance's own
/// (a file's), each of which must exist.
pub fn read<'a>(interfaces: impl IntoIterator<Item = &'a String>) -> Result<Live> {
    let mut live = Live::default();
    let wanted: std::collections::BTreeSet<String> = interfaces.into_iter().cloned().collect();
    let mut names: Vec<String> = pins::pinned_interfaces().unwrap_or_default();
    names.extend(wanted.iter().cloned());
    names.sort();
    names.dedup();
    for ifname in names {
        let ifindex = match attach::ifindex(&ifname) {
            Ok(ifindex) => ifindex,
            // A pin directory of an interface that is gone: load and unload tidy it.
            Err(_) if !wanted.contains(&ifname) => continue,
            Err(err) => return Err(err),
        };
        let Some(current) = attach::query(ifindex)?.into_iter().next() else {
            continue;
        };
        let summary = attach::program_summary(current.prog_id)?;
        let holder = match pins::owner(&ifname, ifindex, &current) {
            Owner::Pinned { .. } => Holder::Ours,
            Owner::Foreground { pid, .. } => Holder::Foreground { pid },
            Owner::OtherInstance { root, .. } => Holder::OtherInstance {
                root: root.display().to_string(),
            },
            Owner::Other => Holder::Other,
        };
        if holder == Holder::Ours {
            live.state.interfaces.insert(
                ifname.clone(),
                Interface {
                    program: program_of(&summary.name),
                    mode: match current.mode {
                        AttachedMode::Generic => RequestedMode::Generic,
                        _ => RequestedMode::Native,
                    },
                },
            );
        }
        live.attached.insert(
            ifname,
            Attached {
                prog_id: current.prog_id,
                name: summary.name,
                tag: summary.tag,
                mode: current.mode,
                holder,
            },
        );
    }
    let Some(maps) = FirewallMaps::open_pinned()? else {
        return Ok(live);
    };
    live.maps_exist = true;
    live.state.sizes = Sizes {
        max_rules: Some(maps.trie(List::Block, false).max_entries()),
        max_sources: Some(maps.sources.max_entries() * SOURCE_WAYS as u32),
    };
    let now = maps.now_ns()?;
    for list in [List::Block, List::Allow] {
        for entry in rules::read_prefixes(&maps, list, now)? {
            if is_static(&entry) {
                live.reasons.insert((list, entry.prefix), entry.reason);
                match list {
                    List::Block => live.state.block.insert(entry.prefix),
                    List::Allow => live.state.allow.insert(entry.prefix),
                };
            } else {
                live.dynamic.push((list, entry));
            }
        }
    }
    live.dynamic
        .sort_by_key(|(list, entry)| (*list as u8, entry.prefix));
    live.state.ports = rules::list_ports(&maps)?
        .into_iter()
        .map(|(spec, _)| spec)
        .collect();
    let config = maps.config()?;
    let rate = RateLimit::of_config(&config);
    if rate.enabled {
        live.state.limits = Some(Limits {
            rate,
            prefixes: PrefixLimits::of_config(&config),
        });
    }
    Ok(live)
}

/// A running program as a file names it: a built-in by its name, else a function of an object
/// file xdpctl does not know the path of (`export` says so).
fn program_of(name: &str) -> ProgramSpec {
    match crate::sys::programs::builtin(name) {
        Some(builtin) => ProgramSpec::Builtin(builtin.name.to_owned()),
        None => ProgramSpec::Object {
            path: std::path::PathBuf::new(),
            program: Some(name.to_owned()),
        },
    }
}
