//! `xdpctl load`: load a program and attach it through a pinned bpf_link.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::parsers::interface_name;
use crate::counters::COUNTER_MAPS;
use crate::firewall::load::load_program;
use crate::firewall::Sizes;
use crate::sys::attach::{self, Attachment, RequestedMode};
use crate::sys::pins::{self, Owner};
use crate::sys::privileges;
use crate::sys::programs::{CarryOver, Loaded, Source};

/// Which program to load, and how.
#[derive(Debug, Args)]
pub struct ProgramArgs {
    /// The program: a built-in (xdp_pass, xdp_drop, xdp_abort), or a function in --obj.
    #[arg(short, long, value_name = "NAME")]
    pub program: Option<String>,

    /// Load your own compiled BPF object instead of a built-in program.
    #[arg(long, value_name = "FILE.o")]
    pub obj: Option<PathBuf>,

    /// native: in the driver; generic: in the stack (any interface); auto: native, else generic.
    #[arg(short, long, value_enum, default_value_t = RequestedMode::Native)]
    pub mode: RequestedMode,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The interface to attach to.
    #[arg(value_parser = interface_name)]
    pub interface: String,

    #[command(flatten)]
    pub program: ProgramArgs,

    /// Replace a program that is already attached (xdpctl's own is replaced atomically).
    #[arg(short, long)]
    pub force: bool,

    /// Entries per rule map when the firewall's maps are first created (1..=1073741824, and
    /// what fits in a quarter of the memory; default 1048576).
    #[arg(long, value_name = "N")]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=crate::firewall::map_budget::MAX_RULES as i64))]
    pub max_rules: Option<u32>,

    /// Sources the rate limiter tracks when its map is first created (1..=2147483648, and what
    /// fits in a quarter of the memory; default 262144).
    #[arg(long, value_name = "N")]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=crate::firewall::map_budget::MAX_SOURCES as i64))]
    pub max_sources: Option<u32>,
}

pub fn run(args: &LoadArgs) -> Result<ExitCode> {
    privileges::require("load")?;
    let source = Source::from_args(args.program.program.as_deref(), args.program.obj.as_deref())?;
    let sizes = Sizes {
        max_rules: args.max_rules,
        max_sources: args.max_sources,
    };
    let message = load(
        &args.interface,
        &source,
        args.program.mode,
        args.force,
        sizes,
    )?;
    println!("{message}");
    Ok(ExitCode::SUCCESS)
}

/// Loads `source` onto `ifname` and pins its link; returns what happened, for the user.
pub fn load(
    ifname: &str,
    source: &Source,
    mode: RequestedMode,
    force: bool,
    sizes: Sizes,
) -> Result<String> {
    pins::ensure_bpffs()?;
    let ifindex = attach::ifindex(ifname)?;
    pins::remove_stale_pins(ifname, Some(ifindex))?;
    let attached = attach::query(ifindex)?;
    let Some(current) = attached.first() else {
        return attach_new(ifname, ifindex, source, mode, sizes);
    };
    let owner = pins::owner(ifname, ifindex, current);
    if !force {
        bail!("{}", already_attached(ifname, current, &owner));
    }
    match owner {
        Owner::Pinned { .. } => replace_own(ifname, current, source, mode, sizes),
        Owner::Foreground { pid, .. } => {
            bail!("{ifname} is held by `xdpctl run` (pid {pid}): stop it (Ctrl-C) before loading")
        }
        Owner::OtherInstance { root, .. } => bail!(
            "{ifname}'s program {} cannot be replaced from here: {}",
            describe(current),
            pins::other_instance_hint(ifname, &root)
        ),
        Owner::Other => replace_other(ifname, ifindex, current, source, mode, sizes),
    }
}

fn describe(current: &Attachment) -> String {
    let name = attach::program_summary(current.prog_id)
        .map(|p| p.name)
        .unwrap_or_else(|_| "?".into());
    format!("id {} '{name}' ({} mode)", current.prog_id, current.mode)
}

fn already_attached(ifname: &str, current: &Attachment, owner: &Owner) -> String {
    let program = describe(current);
    match owner {
        Owner::Pinned { .. } => format!(
            "{ifname} already has xdpctl's XDP program {program}: replace it with --force, \
             or remove it with `xdpctl unload {ifname}`"
        ),
        Owner::Foreground { pid, .. } => format!(
            "{ifname} already has XDP program {program}, held by `xdpctl run` (pid {pid}): \
             stop that first"
        ),
        Owner::OtherInstance { root, .. } => format!(
            "{ifname} already has xdpctl's XDP program {program}, but {}",
            pins::other_instance_hint(ifname, root)
        ),
        Owner::Other => format!(
            "{ifname} already has an XDP program from another tool: {program}. Replace it with \
             --force, or remove it with the tool that loaded it (e.g. `ip link set dev {ifname} xdp off`)"
        ),
    }
}

fn attach_new(
    ifname: &str,
    ifindex: u32,
    source: &Source,
    mode: RequestedMode,
    sizes: Sizes,
) -> Result<String> {
    let loaded = load_program(source, None, sizes)?;
    attach_loaded(ifname, ifindex, &loaded, mode)
}

fn attach_loaded(
    ifname: &str,
    ifindex: u32,
    loaded: &Loaded,
    mode: RequestedMode,
) -> Result<String> {
    let (link, mode) = attach::attach(loaded.fd(), ifindex, ifname, mode)?;
    let link_path = pins::link_path(ifname)?;
    // If pinning fails, `link` is dropped on return and the kernel detaches the program: no
    // half-attached state is left behind.
    pins::create_interface_dir(ifname)
        .and_then(|_| attach::pin_fd(link.as_fd(), &link_path))
        .inspect_err(|_| {
            let _ = pins::remove_interface_dir(ifname);
        })?;
    let link_id = attach::link_summary(link.as_fd())?.id;
    Ok(format!(
        "Loaded {} on {ifname} in {mode} mode: program id {}, link id {link_id}, pinned at {}",
        loaded.name(),
        loaded.id()?,
        link_path.display()
    ))
}

fn replace_own(
    ifname: &str,
    current: &Attachment,
    source: &Source,
    mode: RequestedMode,
    sizes: Sizes,
) -> Result<String> {
    if !current.mode.satisfies(mode) {
        bail!(
            "{ifname} runs xdpctl's program in {} mode, and --force replaces it atomically only \
             within that mode: to switch modes, `xdpctl unload {ifname}` and load again",
            current.mode
        );
    }
    let link = attach::open_pinned(&pins::link_path(ifname)?)?;
    let link_id = attach::link_summary(link.as_fd())?.id;
    let old_prog = attach::program_fd(current.prog_id)?;
    let loaded = load_program(
        source,
        Some(CarryOver {
            from_prog_id: current.prog_id,
            maps: &COUNTER_MAPS,
        }),
        sizes,
    )?;
    attach::update_link(link.as_fd(), loaded.fd(), old_prog.as_fd())?;
    Ok(format!(
        "Replaced program id {} on {ifname} with {} (program id {}) atomically, in {} mode \
         (link id {link_id})",
        current.prog_id,
        loaded.name(),
        loaded.id()?,
        current.mode
    ))
}

/// Another tool's program was attached through netlink: remove it, then attach ours. Netlink
/// and bpf_link attachments cannot be swapped atomically, so there is a brief gap; if our attach
/// fails, theirs is put back.
fn replace_other(
    ifname: &str,
    ifindex: u32,
    current: &Attachment,
    source: &Source,
    mode: RequestedMode,
    sizes: Sizes,
) -> Result<String> {
    let program = describe(current);
    let old_prog = attach::program_fd(current.prog_id)?;
    // Load (and verify) first, so a rejected program leaves the other tool's program alone.
    let loaded = load_program(source, None, sizes)?;
    attach::detach_netlink(ifindex, current.mode, old_prog.as_fd()).map_err(|err| {
        if err.raw_os_error() == Some(libc::EBUSY) {
            anyhow::anyhow!(
                "{ifname}'s program {program} is held by another tool's bpf_link, which only \
                 that tool can detach"
            )
        } else {
            anyhow::anyhow!("detaching {ifname}'s program {program}: {err}")
        }
    })?;
    eprintln!(
        "xdpctl: warning: removed another tool's program {program} from {ifname}; \
         replacing it is not atomic"
    );
    match attach_loaded(ifname, ifindex, &loaded, mode) {
        Ok(message) => Ok(message),
        Err(err) => {
            let restore = libbpf_rs::Xdp::new(old_prog.as_fd()).attach(
                ifindex as i32,
                match current.mode {
                    attach::AttachedMode::Generic => libbpf_rs::XdpFlags::SKB_MODE,
                    _ => libbpf_rs::XdpFlags::DRV_MODE,
                },
            );
            let note = match restore {
                Ok(()) => "the previous program was put back".to_owned(),
                Err(restore_err) => {
                    format!("putting the previous program back failed too: {restore_err}")
                }
            };
            Err(err).context(note)
        }
    }
}
