//! What `diff` and `apply --dry-run` print: the plan's changes, a line each (`+` added, `-`
//! removed, `~` changed), the dynamic rules kept, and the same as JSON.

use serde_json::{json, Value};

use crate::config::plan::{AttachKind, Plan};
use crate::config::{file, Limits};
use crate::firewall::model::hhh::{LEVELS, LEVEL_LENGTHS};
use crate::firewall::List;
use crate::output::numbers::thousands;
use crate::output::rules::reason;

/// How many kept dynamic rules the text lists (the rest are counted).
const SHOWN_KEPT: usize = 20;

fn list_name(list: List) -> &'static str {
    match list {
        List::Block => "block",
        List::Allow => "allow",
    }
}

/// A rate limit in one line: "off", or "5,000 packets/s per source, burst 5,000, ...".
pub fn describe_limits(limits: Option<&Limits>) -> String {
    let Some(limits) = limits else {
        return "off".into();
    };
    let rl = &limits.rate;
    let proto = serde_json::to_value(rl.proto)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let block = match rl.block_for_ns {
        0 => "no auto-block".to_owned(),
        ns => format!("auto-block {}s", ns.div_ceil(1_000_000_000)),
    };
    let prefixes: Vec<String> = (0..LEVELS)
        .map(|level| match limits.prefixes.pps[level] {
            0 => format!("/{} off", LEVEL_LENGTHS[level]),
            pps => format!("/{} {}", LEVEL_LENGTHS[level], thousands(pps)),
        })
        .collect();
    format!(
        "{} packets/s per source, burst {}, {proto} packets, {block}; prefixes {} (block {}s)",
        thousands(rl.pps),
        thousands(rl.burst),
        prefixes.join(" "),
        limits.prefixes.block_for_ns.div_ceil(1_000_000_000)
    )
}

/// The plan as text: nothing at all when there is no change and nothing kept.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    for (list, prefix) in &plan.add {
        line(format!("+ {} {prefix}", list_name(*list)));
    }
    for port in &plan.ports_add {
        line(format!("+ block port {port}"));
    }
    if let Some((from, to)) = &plan.limits {
        line(format!(
            "~ ratelimit: {} -> {}",
            describe_limits(from.as_ref()),
            describe_limits(to.as_ref())
        ));
    }
    for step in &plan.attach {
        let to = format!(
            "{} ({} mode)",
            step.want.program,
            file::mode_name(step.want.mode)
        );
        line(match &step.kind {
            AttachKind::New => format!("+ attach {}: {to}", step.interface),
            AttachKind::Replace { from } => {
                format!("~ replace {}: {from} -> {to}, atomically", step.interface)
            }
            AttachKind::Reattach { from } => format!(
                "~ reattach {}: {from} -> {to}, detached first (not atomic)",
                step.interface
            ),
        });
    }
    for (list, prefix) in &plan.remove {
        line(format!("- {} {prefix}", list_name(*list)));
    }
    for port in &plan.ports_remove {
        line(format!("- block port {port}"));
    }
    for (ifname, program) in &plan.detach {
        line(format!("- attach {ifname}: {program}"));
    }
    if !plan.kept.is_empty() {
        line(format!(
            "= kept: {} dynamic rule{} (rules that expire and auto-blocks are not the file's):",
            plan.kept.len(),
            if plan.kept.len() == 1 { "" } else { "s" }
        ));
        for (list, entry) in plan.kept.iter().take(SHOWN_KEPT) {
            let left = entry
                .expires_in
                .map(|s| format!(", {:.0}s left", s.ceil()))
                .unwrap_or_default();
            line(format!(
                "    {} {} ({}{left})",
                list_name(*list),
                entry.prefix,
                reason(entry)
            ));
        }
        if plan.kept.len() > SHOWN_KEPT {
            line(format!("    ... and {} more", plan.kept.len() - SHOWN_KEPT));
        }
    }
    out
}

/// The plan as JSON.
pub fn to_json(plan: &Plan) -> Value {
    let prefixes = |items: &[(List, ipnet::IpNet)]| -> Vec<Value> {
        items
            .iter()
            .map(|(list, prefix)| json!({"list": list_name(*list), "prefix": prefix.to_string()}))
            .collect()
    };
    json!({
        "changes": plan.len(),
        "add": prefixes(&plan.add),
        "remove": prefixes(&plan.remove),
        "ports_add": plan.ports_add.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "ports_remove": plan.ports_remove.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "ratelimit": plan.limits.as_ref().map(|(from, to)| json!({
            "from": describe_limits(from.as_ref()),
            "to": describe_limits(to.as_ref()),
        })),
        "attach": plan.attach.iter().map(|step| json!({
            "interface": step.interface,
            "program": step.want.program.to_string(),
            "mode": file::mode_name(step.want.mode),
            "how": match &step.kind {
                AttachKind::New => "new",
                AttachKind::Replace { .. } => "replace",
                AttachKind::Reattach { .. } => "reattach",
            },
            "from": match &step.kind {
                AttachKind::New => None,
                AttachKind::Replace { from } | AttachKind::Reattach { from } => Some(from),
            },
        })).collect::<Vec<_>>(),
        "detach": plan.detach.iter().map(|(ifname, program)| json!({
            "interface": ifname, "program": program,
        })).collect::<Vec<_>>(),
        "kept": plan.kept.iter().map(|(list, entry)| json!({
            "list": list_name(*list),
            "prefix": entry.prefix.to_string(),
            "reason": reason(entry),
            "expires_in": entry.expires_in,
        })).collect::<Vec<_>>(),
    })
}
