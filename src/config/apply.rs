//! Carrying out a plan (plan.rs) against the kernel, all or nothing: each step that changes
//! something leaves the way to undo it, and if a later step fails, the steps done are undone in
//! reverse, so the live state is the one before the apply.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use ipnet::IpNet;

use super::live::{self, Holder, Live};
use super::plan::{self, AttachKind, Plan};
use super::{file, Limits, ProgramSpec, State};
use crate::counters::COUNTER_MAPS;
use crate::firewall::attachments::{self, attach_pinned, swap_pinned};
use crate::firewall::load::{load_program, verify_program};
use crate::firewall::{pinset, rules, FirewallMaps, List, RateLimit, Sizes};
use crate::input::PortSpec;
use crate::sys::attach;
use crate::sys::programs::{CarryOver, Loaded, Source};

/// A file read and compared with the live state: what `diff`, `apply --dry-run` and `apply`
/// show and do.
pub struct Prepared {
    pub want: State,
    pub live: Live,
    pub plan: Plan,
}

/// Reads the file at `path`, reads the live state and plans. Loads (and unloads again) each
/// file program whose name matches the program attached now, to compare their code; loading
/// writes nothing to any map.
pub fn prepare(path: &Path) -> Result<Prepared> {
    let mut want = file::read(path, rules::entry_limit())?;
    let live = live::read(want.interfaces.keys())?;
    let mut tags = BTreeMap::new();
    for (ifname, iface) in &mut want.interfaces {
        // A user's object is loaded whatever is attached: a bad one is an error of the file,
        // found before anything changes; and its program's name is known only then.
        if matches!(iface.program, ProgramSpec::Object { .. }) {
            let source = source_of(&iface.program)?;
            let (name, tag) = verify_program(&source)
                .with_context(|| format!("{}: the program of {ifname}", path.display()))?;
            if let ProgramSpec::Object { program, .. } = &mut iface.program {
                *program = Some(name);
            }
            tags.insert(ifname.clone(), tag);
            continue;
        }
        let Some(attached) = live.attached.get(ifname) else {
            continue;
        };
        let same_name = iface.program.name() == Some(attached.name.as_str());
        if attached.holder != Holder::Ours || !same_name {
            continue;
        }
        let loaded = load_program(&source_of(&iface.program)?, None, want.sizes)
            .with_context(|| format!("loading {} for {ifname}", iface.program))?;
        tags.insert(
            ifname.clone(),
            attach::program_summary_by_fd(loaded.fd())?.tag,
        );
    }
    let plan = plan::between(&want, &live, &tags)?;
    Ok(Prepared { want, live, plan })
}

pub fn source_of(program: &ProgramSpec) -> Result<Source> {
    match program {
        ProgramSpec::Builtin(name) => Source::from_args(Some(name), None),
        ProgramSpec::Object { path, program } => Source::from_args(program.as_deref(), Some(path)),
    }
}

/// How to undo one step that was carried out.
enum Undo {
    /// Rules the apply added: remove them.
    Added(List, Vec<IpNet>),
    /// Rules the apply removed or changed: put them back (expiry on the firewall's clock, and
    /// reason).
    Restore(List, Vec<(IpNet, u64, u32)>),
    PortsAdded(Vec<PortSpec>),
    PortsRemoved(Vec<PortSpec>),
    Limits(Option<Limits>),
    /// An interface the apply attached: detach it.
    Attached(String),
    /// A program the apply swapped in: swap the old one back.
    Swapped {
        ifname: String,
        old: OwnedFd,
        new: Loaded,
    },
    /// A program the apply detached: attach it again.
    Detached {
        ifname: String,
        prog: OwnedFd,
        mode: attach::RequestedMode,
    },
    /// The pin set the apply created: remove it.
    PinsCreated,
}

/// Carries out `prepared.plan`; returns a line per change made. On failure, everything done is
/// undone and the error says so.
pub fn apply(prepared: &Prepared) -> Result<Vec<String>> {
    let mut undo = Vec::new();
    let mut done = Vec::new();
    match run(prepared, &mut undo, &mut done) {
        Ok(()) => Ok(done),
        Err(err) => {
            let failures: Vec<String> = undo
                .into_iter()
                .rev()
                .filter_map(|step| roll_back(step).err().map(|e| format!("{e:#}")))
                .collect();
            if failures.is_empty() {
                Err(err.context("apply failed; what it had changed was rolled back"))
            } else {
                Err(err.context(format!(
                    "apply failed, and rolling back failed too (the live state is partly \
                     applied: `xdpctl diff FILE` shows what): {}",
                    failures.join("; ")
                )))
            }
        }
    }
}

fn needs_maps(plan: &Plan) -> bool {
    !plan.add.is_empty()
        || !plan.remove.is_empty()
        || !plan.ports_add.is_empty()
        || !plan.ports_remove.is_empty()
        || plan.limits.is_some()
}

fn run(prepared: &Prepared, undo: &mut Vec<Undo>, done: &mut Vec<String>) -> Result<()> {
    let (want, live, plan) = (&prepared.want, &prepared.live, &prepared.plan);
    let maps = if needs_maps(plan) {
        Some(maps_with(want.sizes, live.maps_exist, undo)?)
    } else {
        None
    };
    if let Some(maps) = &maps {
        add_rules(maps, live, plan, undo, done)?;
        if !plan.ports_add.is_empty() {
            rules::set_ports(maps, &plan.ports_add, true)?;
            undo.push(Undo::PortsAdded(plan.ports_add.clone()));
            done.extend(plan.ports_add.iter().map(|p| format!("blocked port {p}")));
        }
        if let Some((from, to)) = &plan.limits {
            set_limits(maps, to.as_ref())?;
            undo.push(Undo::Limits(*from));
            done.push("set the rate limit".to_owned());
        }
    }
    for step in &plan.attach {
        attach_step(step, want.sizes, live, undo, done)?;
    }
    if let Some(maps) = &maps {
        remove_rules(maps, live, plan, undo, done)?;
        if !plan.ports_remove.is_empty() {
            rules::set_ports(maps, &plan.ports_remove, false)?;
            undo.push(Undo::PortsRemoved(plan.ports_remove.clone()));
            done.extend(
                plan.ports_remove
                    .iter()
                    .map(|p| format!("unblocked port {p}")),
            );
        }
    }
    for (ifname, program) in &plan.detach {
        let attached = &live.attached[ifname];
        let prog = attach::program_fd(attached.prog_id)?;
        attachments::unload(ifname)?;
        undo.push(Undo::Detached {
            ifname: ifname.clone(),
            prog,
            mode: requested(attached.mode),
        });
        done.push(format!("detached {program} from {ifname}"));
    }
    Ok(())
}

fn requested(mode: attach::AttachedMode) -> attach::RequestedMode {
    match mode {
        attach::AttachedMode::Generic => attach::RequestedMode::Generic,
        _ => attach::RequestedMode::Native,
    }
}

/// The firewall's maps, made at the file's sizes if there are none yet.
fn maps_with(sizes: Sizes, exist: bool, undo: &mut Vec<Undo>) -> Result<FirewallMaps> {
    if !exist {
        let source = Source::from_args(Some("firewall"), None)?;
        drop(load_program(&source, None, sizes)?);
        undo.push(Undo::PinsCreated);
    }
    FirewallMaps::open_pinned()?.context("the firewall's maps were not pinned")
}

fn add_rules(
    maps: &FirewallMaps,
    live: &Live,
    plan: &Plan,
    undo: &mut Vec<Undo>,
    done: &mut Vec<String>,
) -> Result<()> {
    let now = maps.now_ns()?;
    for list in [List::Block, List::Allow] {
        let prefixes = of_list(&plan.add, list);
        if prefixes.is_empty() {
            continue;
        }
        // A dynamic rule the file names becomes permanent: a rollback makes it dynamic again.
        let adding: HashSet<IpNet> = prefixes.iter().copied().collect();
        let changed: Vec<(IpNet, u64, u32)> = live
            .dynamic
            .iter()
            .filter(|(l, entry)| *l == list && adding.contains(&entry.prefix))
            .map(|(_, entry)| {
                let left = entry.expires_in.map_or(0, |s| (s * 1e9) as u64);
                (entry.prefix, now.saturating_add(left), entry.reason)
            })
            .collect();
        rules::add_prefixes(maps, list, &prefixes, 0, crate::abi::FW_REASON_CONFIG)?;
        let was_dynamic: HashSet<IpNet> = changed.iter().map(|(p, _, _)| *p).collect();
        let new: Vec<IpNet> = prefixes
            .iter()
            .filter(|p| !was_dynamic.contains(*p))
            .copied()
            .collect();
        undo.push(Undo::Added(list, new));
        undo.push(Undo::Restore(list, changed));
        done.extend(prefixes.iter().map(|p| format!("{} {p}", verb(list, true))));
    }
    Ok(())
}

fn remove_rules(
    maps: &FirewallMaps,
    live: &Live,
    plan: &Plan,
    undo: &mut Vec<Undo>,
    done: &mut Vec<String>,
) -> Result<()> {
    for list in [List::Block, List::Allow] {
        let prefixes = of_list(&plan.remove, list);
        if prefixes.is_empty() {
            continue;
        }
        rules::remove_prefixes(maps, list, &prefixes)?;
        let old = prefixes
            .iter()
            .map(|p| {
                let reason = live.reasons.get(&(list, *p)).copied();
                (*p, 0, reason.unwrap_or(crate::abi::FW_REASON_MANUAL))
            })
            .collect();
        undo.push(Undo::Restore(list, old));
        done.extend(
            prefixes
                .iter()
                .map(|p| format!("{} {p}", verb(list, false))),
        );
    }
    Ok(())
}

/// The prefixes of one list among a plan's.
fn of_list(items: &[(List, IpNet)], list: List) -> Vec<IpNet> {
    items
        .iter()
        .filter(|(l, _)| *l == list)
        .map(|(_, p)| *p)
        .collect()
}

fn verb(list: List, add: bool) -> &'static str {
    match (list, add) {
        (List::Block, true) => "blocked",
        (List::Block, false) => "unblocked",
        (List::Allow, true) => "allowed",
        (List::Allow, false) => "disallowed",
    }
}

fn set_limits(maps: &FirewallMaps, limits: Option<&Limits>) -> Result<()> {
    match limits {
        Some(limits) => maps.set_rate_limit_and_prefixes(&limits.rate, &limits.prefixes),
        None => {
            let rate = maps.rate_limit()?;
            maps.set_rate_limit(&RateLimit {
                enabled: false,
                ..rate
            })
        }
    }
}

fn attach_step(
    step: &plan::AttachStep,
    sizes: Sizes,
    live: &Live,
    undo: &mut Vec<Undo>,
    done: &mut Vec<String>,
) -> Result<()> {
    let ifname = &step.interface;
    let source = source_of(&step.want.program)?;
    let ifindex = attach::ifindex(ifname)?;
    match &step.kind {
        AttachKind::New => {
            let loaded = load_program(&source, None, sizes)?;
            let (mode, _) = attach_pinned(ifname, ifindex, loaded.fd(), step.want.mode)?;
            undo.push(Undo::Attached(ifname.clone()));
            done.push(format!(
                "attached {} to {ifname} in {mode} mode",
                step.want.program
            ));
        }
        AttachKind::Replace { from } => {
            let current = &live.attached[ifname];
            let old = attach::program_fd(current.prog_id)?;
            let carry = CarryOver {
                from_prog_id: current.prog_id,
                maps: &COUNTER_MAPS,
            };
            let new = load_program(&source, Some(carry), sizes)?;
            swap_pinned(ifname, old.as_fd(), new.fd())?;
            done.push(format!(
                "replaced {from} on {ifname} with {} atomically",
                step.want.program
            ));
            undo.push(Undo::Swapped {
                ifname: ifname.clone(),
                old,
                new,
            });
        }
        AttachKind::Reattach { from } => {
            let current = &live.attached[ifname];
            let old = attach::program_fd(current.prog_id)?;
            let new = load_program(&source, None, sizes)?;
            attachments::unload(ifname)?;
            let old_mode = requested(current.mode);
            let (mode, _) = match attach_pinned(ifname, ifindex, new.fd(), step.want.mode) {
                Ok(attached) => attached,
                Err(err) => {
                    let _ = attach_pinned(ifname, ifindex, old.as_fd(), old_mode);
                    return Err(err);
                }
            };
            undo.push(Undo::Detached {
                ifname: ifname.clone(),
                prog: old,
                mode: old_mode,
            });
            undo.push(Undo::Attached(ifname.clone()));
            done.push(format!(
                "moved {ifname} from {from} to {} in {mode} mode (detached first: not atomic)",
                step.want.program
            ));
        }
    }
    Ok(())
}

fn roll_back(step: Undo) -> Result<()> {
    let maps = || FirewallMaps::open_pinned()?.context("the firewall's maps are gone");
    match step {
        Undo::Added(list, prefixes) if !prefixes.is_empty() => {
            rules::remove_prefixes(&maps()?, list, &prefixes).map(drop)
        }
        Undo::Restore(list, entries) => {
            let maps = maps()?;
            // One edit per expiry and reason: a rollback of many rules is a few bulk loads.
            let mut groups: BTreeMap<(u64, u32), Vec<IpNet>> = BTreeMap::new();
            for (prefix, expires, reason) in entries {
                groups.entry((expires, reason)).or_default().push(prefix);
            }
            for ((expires, reason), prefixes) in groups {
                rules::add_prefixes(&maps, list, &prefixes, expires, reason)?;
            }
            Ok(())
        }
        Undo::PortsAdded(ports) => rules::set_ports(&maps()?, &ports, false),
        Undo::PortsRemoved(ports) => rules::set_ports(&maps()?, &ports, true),
        Undo::Limits(limits) => set_limits(&maps()?, limits.as_ref()),
        Undo::Attached(ifname) => attachments::unload(&ifname).map(drop),
        Undo::Swapped { ifname, old, new } => swap_pinned(&ifname, new.fd(), old.as_fd()),
        Undo::Detached { ifname, prog, mode } => {
            let ifindex = attach::ifindex(&ifname)?;
            attach_pinned(&ifname, ifindex, prog.as_fd(), mode).map(drop)
        }
        Undo::PinsCreated => pinset::remove_global_pins().map(drop),
        Undo::Added(..) => Ok(()),
    }
}
