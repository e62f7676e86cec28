//! What differs between the state a file wants and the live one, as the changes that make the
//! live state the file's. Pure: the callers read the live state and load the file's programs.
//!
//! The order apply carries them out in keeps traffic filtered throughout: new rules, ports and
//! the rate limit first, then the attachments (so a program attached now meets its rules at
//! its first packet), then what goes: rules, ports, and last the attachments no file names. A
//! source blocked before and after is never unblocked in between.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use ipnet::IpNet;

use super::live::{Attached, Holder, Live};
use super::{Interface, Limits, State};
use crate::firewall::rules::PrefixEntry;
use crate::firewall::List;
use crate::input::PortSpec;

/// How an interface gets the file's program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachKind {
    /// Nothing is attached there.
    New,
    /// xdpctl's program there is another (its name or its code): swapped atomically.
    Replace { from: String },
    /// The mode differs: detached, then attached again (not atomic).
    Reattach { from: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachStep {
    pub interface: String,
    pub want: Interface,
    pub kind: AttachKind,
}

/// The changes, in the order they are made.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Rules added, per list (a dynamic rule the file names becomes permanent).
    pub add: Vec<(List, IpNet)>,
    pub ports_add: Vec<PortSpec>,
    /// The rate limit, from what to what (`None`: off).
    pub limits: Option<(Option<Limits>, Option<Limits>)>,
    pub attach: Vec<AttachStep>,
    pub remove: Vec<(List, IpNet)>,
    pub ports_remove: Vec<PortSpec>,
    /// xdpctl's attachments no file names: (interface, program).
    pub detach: Vec<(String, String)>,
    /// Rules kept as they are because a file never owns them.
    pub kept: Vec<(List, PrefixEntry)>,
}

impl Plan {
    /// Whether the live state already is the file's.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.ports_add.is_empty()
            && self.limits.is_none()
            && self.attach.is_empty()
            && self.remove.is_empty()
            && self.ports_remove.is_empty()
            && self.detach.is_empty()
    }

    /// How many changes it makes.
    pub fn len(&self) -> usize {
        self.add.len()
            + self.ports_add.len()
            + self.limits.is_some() as usize
            + self.attach.len()
            + self.remove.len()
            + self.ports_remove.len()
            + self.detach.len()
    }
}

/// The plan that makes `live` into `want`. `tags`: the kernel's tag of each file program that
/// was loaded to compare it with one of the same name attached now; where a tag is missing,
/// the same name counts as the same program. Fails, naming each, where the file asks for what
/// apply may not do: an interface held by another tool or by `xdpctl run`, or map sizes other
/// than the maps have.
pub fn between(want: &State, live: &Live, tags: &BTreeMap<String, [u8; 8]>) -> Result<Plan> {
    let mut problems = Vec::new();
    if live.maps_exist {
        size_problems(want, &live.state, &mut problems);
    }
    let mut plan = Plan::default();
    for (list, wanted, have) in [
        (List::Block, &want.block, &live.state.block),
        (List::Allow, &want.allow, &live.state.allow),
    ] {
        plan.add
            .extend(wanted.difference(have).map(|prefix| (list, *prefix)));
        plan.remove
            .extend(have.difference(wanted).map(|prefix| (list, *prefix)));
    }
    plan.ports_add = want.ports.difference(&live.state.ports).copied().collect();
    plan.ports_remove = live.state.ports.difference(&want.ports).copied().collect();
    if want.limits != live.state.limits {
        plan.limits = Some((live.state.limits, want.limits));
    }
    for (ifname, wanted) in &want.interfaces {
        match live.attached.get(ifname) {
            None => plan.attach.push(AttachStep {
                interface: ifname.clone(),
                want: wanted.clone(),
                kind: AttachKind::New,
            }),
            Some(attached) => match attach_kind(ifname, wanted, attached, tags.get(ifname)) {
                Ok(Some(kind)) => plan.attach.push(AttachStep {
                    interface: ifname.clone(),
                    want: wanted.clone(),
                    kind,
                }),
                Ok(None) => {}
                Err(problem) => problems.push(problem),
            },
        }
    }
    for (ifname, attached) in &live.attached {
        if attached.holder == Holder::Ours && !want.interfaces.contains_key(ifname) {
            plan.detach.push((ifname.clone(), attached.name.clone()));
        }
    }
    let added: std::collections::BTreeSet<(u8, IpNet)> =
        plan.add.iter().map(|(l, p)| (*l as u8, *p)).collect();
    plan.kept = live
        .dynamic
        .iter()
        .filter(|(list, entry)| !added.contains(&(*list as u8, entry.prefix)))
        .cloned()
        .collect();
    if !problems.is_empty() {
        bail!(
            "the file asks for what apply may not do; nothing was changed:\n{}",
            problems.join("\n")
        );
    }
    Ok(plan)
}

fn attach_kind(
    ifname: &str,
    wanted: &Interface,
    attached: &Attached,
    tag: Option<&[u8; 8]>,
) -> Result<Option<AttachKind>, String> {
    match &attached.holder {
        Holder::Ours => {}
        Holder::Foreground { pid } => {
            return Err(format!(
                "{ifname} is held by `xdpctl run` (pid {pid}): stop it (Ctrl-C) and apply again"
            ))
        }
        Holder::OtherInstance { root } => {
            return Err(format!(
                "{ifname} runs a program of the xdpctl instance pinned at {root}: apply from \
                 that instance (XDPCTL_PIN_ROOT={root}), or unload it there first"
            ))
        }
        Holder::Other => {
            return Err(format!(
                "{ifname} runs another tool's XDP program (id {}, '{}'): remove it with that \
                 tool (e.g. `ip link set dev {ifname} xdp off`), then apply again",
                attached.prog_id, attached.name
            ))
        }
    }
    let from = format!("{} ({} mode)", attached.name, attached.mode);
    if !attached.mode.satisfies(wanted.mode) {
        return Ok(Some(AttachKind::Reattach { from }));
    }
    let same_name = wanted.program.name() == Some(attached.name.as_str());
    let same_code = tag.is_none_or(|tag| *tag == attached.tag);
    Ok((!same_name || !same_code).then_some(AttachKind::Replace { from }))
}

fn size_problems(want: &State, have: &State, problems: &mut Vec<String>) {
    let fix = "sizes are set when the maps are made: to change them, `xdpctl unload --all` \
               (which drops every rule) and apply again";
    if let (Some(asked), Some(made)) = (want.sizes.max_rules, have.sizes.max_rules) {
        if asked != made {
            problems.push(format!(
                "max_rules = {asked}, but the firewall's maps were made for {made}: {fix}"
            ));
        }
    }
    if let (Some(asked), Some(made)) = (want.sizes.max_sources, have.sizes.max_sources) {
        let sets = crate::firewall::map_budget::source_sets(asked);
        let made_sets = crate::firewall::map_budget::source_sets(made);
        if sets != made_sets {
            problems.push(format!(
                "max_sources = {asked}, but the firewall's maps were made for {made} sources: \
                 {fix}"
            ));
        }
    }
}

#[cfg(test)]
mod tests;
