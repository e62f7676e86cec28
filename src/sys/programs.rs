//! The BPF programs xdpctl ships (skeletons and embedded objects), and loading any XDP object —
//! built-in or a user's own `--obj` — into the kernel.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapCore, MapHandle, Object, ObjectBuilder, OpenObject, Program, ProgramType};

use crate::sys::{attach, libbpf_log};

/// A program xdpctl ships.
#[derive(Debug)]
pub struct Builtin {
    pub name: &'static str,
    pub summary: &'static str,
    object: &'static [u8],
}

/// The names of the maps a built-in program's object defines (opened, not loaded: no
/// privileges needed), so the Rust side's map names can be checked against the C.
#[cfg(test)]
pub(crate) fn map_names_of(name: &str) -> Result<Vec<String>> {
    let builtin = builtin(name).with_context(|| format!("no built-in program {name}"))?;
    let open = ObjectBuilder::default()
        .open_memory(builtin.object)
        .with_context(|| format!("opening the built-in {name}"))?;
    Ok(open
        .maps()
        .map(|map| map.name().to_string_lossy().into_owned())
        .collect())
}

macro_rules! object {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bpf.o"))
    };
}

/// Every built-in program; `bpf/NAME.bpf.c` defines the program NAME.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "firewall",
        summary: "the firewall: block/allow lists, port rules, per-source rate limits",
        object: object!("firewall"),
    },
    Builtin {
        name: "xdp_pass",
        summary: "passes every packet, counting it per action",
        object: object!("xdp_pass"),
    },
    Builtin {
        name: "xdp_drop",
        summary: "drops every packet, counting it per action",
        object: object!("xdp_drop"),
    },
    Builtin {
        name: "xdp_abort",
        summary: "aborts on every packet (raises xdp:xdp_exception), counting it",
        object: object!("xdp_abort"),
    },
];

/// The program `xdpctl load` uses when none is named.
pub const DEFAULT_PROGRAM: &str = "firewall";

pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|builtin| builtin.name == name)
}

/// Where a program comes from: `--program NAME` alone, or `--obj FILE [--program NAME]`.
#[derive(Clone, Debug)]
pub enum Source {
    Builtin(&'static Builtin),
    File {
        path: PathBuf,
        program: Option<String>,
    },
}

impl Source {
    pub fn from_args(program: Option<&str>, obj: Option<&Path>) -> Result<Source> {
        if let Some(path) = obj {
            return Ok(Source::File {
                path: path.to_path_buf(),
                program: program.map(str::to_owned),
            });
        }
        let name = program.unwrap_or(DEFAULT_PROGRAM);
        match builtin(name) {
            Some(builtin) => Ok(Source::Builtin(builtin)),
            None => bail!(
                "unknown program {}: the built-in programs are {}; \
                 to load your own, pass --obj FILE.o",
                crate::input::shown(name),
                BUILTINS
                    .iter()
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Builtin(builtin) => format!("built-in program {}", builtin.name),
            Source::File { path, .. } => path.display().to_string(),
        }
    }
}

/// A program loaded into the kernel (not yet attached). Dropping it unloads the program unless
/// something (a link) still holds it.
pub struct Loaded {
    object: Object,
    name: String,
}

impl Loaded {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn program(&self) -> Program<'_> {
        self.object
            .progs()
            .find(|prog| prog.name() == self.name.as_str())
            .expect("the selected program is in the object")
    }

    /// The program's fd. `Program::as_fd` borrows from a temporary `Program` handle, but the fd
    /// belongs to the object, so it is re-borrowed here for as long as `self` lives.
    pub fn fd(&self) -> BorrowedFd<'_> {
        let raw = std::os::fd::AsRawFd::as_raw_fd(&self.program().as_fd());
        // SAFETY: the fd is owned by self.object, which outlives the returned borrow.
        unsafe { BorrowedFd::borrow_raw(raw) }
    }

    pub fn id(&self) -> Result<u32> {
        Ok(attach::program_summary_by_fd(self.fd())?.id)
    }
}

/// Counter maps a new program takes over from the program it replaces (where name and layout
/// match), so its counts carry on across the replace.
#[derive(Clone, Copy, Debug)]
pub struct CarryOver<'a> {
    pub from_prog_id: u32,
    pub maps: &'a [&'a str],
}

/// What a feature does around the load of its own program: it prepares the opened object
/// (say, reuses or sizes its pinned maps) and finishes after the kernel took the program.
pub trait Preparation {
    /// What to add to the error when the kernel refuses the load, if this preparation knows.
    fn hint(&self, err: &libbpf_rs::Error, log: &str) -> Option<String>;
    /// Runs after a successful load, before the program is returned.
    fn finish(self: Box<Self>, object: &Object) -> Result<()>;
}

/// Opens, verifies and loads an XDP program, its counter maps taken over per `carry_over`.
pub fn load(source: &Source, carry_over: Option<CarryOver>) -> Result<Loaded> {
    load_prepared(source, carry_over, |_, _| Ok(None))
}

/// `load`, with `prepare` called on the opened object (and the program's name) first.
pub fn load_prepared(
    source: &Source,
    carry_over: Option<CarryOver>,
    prepare: impl FnOnce(&mut OpenObject, &str) -> Result<Option<Box<dyn Preparation>>>,
) -> Result<Loaded> {
    let mut builder = ObjectBuilder::default();
    let open = match source {
        Source::Builtin(builtin) => builder
            .open_memory(builtin.object)
            .with_context(|| format!("opening {}", source.describe()))?,
        Source::File { path, .. } => {
            if !path.exists() {
                bail!("no such BPF object file: {}", path.display());
            }
            builder.open_file(path).map_err(|err| {
                anyhow!(
                    "{} is not a BPF object libbpf can open ({err}); build it with \
                     `clang -O2 -g -target bpf -c prog.bpf.c -o prog.o`{}",
                    path.display(),
                    log_suffix(&libbpf_log::take())
                )
            })?
        }
    };
    let wanted = match source {
        Source::Builtin(builtin) => Some(builtin.name),
        Source::File { program, .. } => program.as_deref(),
    };
    let (mut open, name) = select_program(open, wanted, &source.describe())?;

    if let Some(carry_over) = carry_over {
        reuse_counter_maps(&mut open, carry_over)?;
    }
    // Holds whatever the preparation holds (a lock, say) until `finish`.
    let prepared = prepare(&mut open, &name)?;

    libbpf_log::take();
    let object = open.load().map_err(|err| {
        let log = libbpf_log::take();
        let hint = prepared
            .as_ref()
            .and_then(|prepared| prepared.hint(&err, &log))
            .unwrap_or_default();
        match libbpf_log::verifier_tail(&log, 20) {
            Some(tail) => anyhow!(
                "the kernel verifier rejected program '{name}' from {}:\n{tail}\n\
                 (run with --verbose for the whole verifier log)",
                source.describe()
            ),
            None => anyhow!(
                "loading program '{name}' from {} failed: {err}{}{hint}",
                source.describe(),
                log_suffix(&log)
            ),
        }
    })?;
    if let Some(prepared) = prepared {
        prepared.finish(&object)?;
    }
    Ok(Loaded { object, name })
}

fn log_suffix(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "\nlibbpf said:\n{}",
        lines[lines.len().saturating_sub(8)..].join("\n")
    )
}

/// Picks the program to load (by name, or the object's only XDP program) and turns off autoload
/// for the rest, so an unrelated program in the same object cannot fail the load.
fn select_program(
    mut open: OpenObject,
    wanted: Option<&str>,
    what: &str,
) -> Result<(OpenObject, String)> {
    let xdp: Vec<String> = open
        .progs()
        .filter(|prog| prog.prog_type() == ProgramType::Xdp)
        .map(|prog| prog.name().to_string_lossy().into_owned())
        .collect();
    let name = match wanted {
        Some(name) => {
            let found = open.progs().find(|prog| prog.name() == name);
            match found {
                None => bail!(
                    "{what} has no program named {}; its XDP programs: {}",
                    crate::input::shown(name),
                    list_or_none(&xdp)
                ),
                Some(prog) if prog.prog_type() != ProgramType::Xdp => bail!(
                    "program '{name}' in {what} is a {:?} program, not XDP (its section must be \
                     SEC(\"xdp\"))",
                    prog.prog_type()
                ),
                Some(_) => name.to_owned(),
            }
        }
        None => match xdp.as_slice() {
            [only] => only.clone(),
            [] => bail!("{what} has no XDP program (a function in SEC(\"xdp\"))"),
            several => bail!(
                "{what} has several XDP programs ({}): choose one with --program NAME",
                several.join(", ")
            ),
        },
    };
    for mut prog in open.progs_mut() {
        let keep = prog.name() == name.as_str();
        prog.set_autoload(keep);
    }
    Ok((open, name))
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Makes the new object use the old program's counter maps where name and layout match.
fn reuse_counter_maps(open: &mut OpenObject, carry_over: CarryOver) -> Result<()> {
    // A map that will not open (other than freed meanwhile) is an error, not counters lost.
    let old_maps: Vec<MapHandle> = crate::sys::map_users::open_each(
        &attach::program_summary(carry_over.from_prog_id)?.map_ids,
        |id| MapHandle::from_map_id(id).with_context(|| format!("opening BPF map id {id}")),
    )?
    .into_iter()
    .filter(|map| carry_over.maps.iter().any(|name| map.name() == *name))
    .collect();
    for mut map in open.maps_mut() {
        let Some(old) = old_maps.iter().find(|old| old.name() == map.name()) else {
            continue;
        };
        let compatible = map.map_type() == old.map_type()
            && map.key_size() == old.key_size()
            && map.value_size() == old.value_size()
            && map.max_entries() == old.max_entries();
        if compatible {
            map.reuse_fd(old.as_fd()).with_context(|| {
                format!(
                    "reusing the previous program's {}",
                    old.name().to_string_lossy()
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Programs that are not for `load`: the flood generator's, `trace`'s tracepoint, and the
    /// exporter's counter.
    const INTERNAL: [&str; 3] = ["flood", "trace", "map_counts"];

    #[test]
    fn every_bpf_source_is_a_builtin_or_internal() {
        let mut sources: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf"))
                .unwrap()
                .filter_map(|entry| {
                    let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".bpf.c").map(str::to_owned)
                })
                .collect();
        sources.sort();
        let mut names: Vec<String> = BUILTINS
            .iter()
            .map(|b| b.name)
            .chain(INTERNAL)
            .map(str::to_owned)
            .collect();
        names.sort();
        assert_eq!(sources, names);
    }

    #[test]
    fn embedded_objects_are_bpf_elf() {
        for builtin in BUILTINS {
            assert_eq!(&builtin.object[..4], b"\x7fELF", "{}", builtin.name);
            // e_machine at offset 18: EM_BPF = 247.
            assert_eq!(builtin.object[18], 247, "{}", builtin.name);
        }
    }

    #[test]
    fn source_defaults_to_the_firewall_and_rejects_unknown_names() {
        match Source::from_args(None, None).unwrap() {
            Source::Builtin(b) => assert_eq!(b.name, "firewall"),
            other => panic!("{other:?}"),
        }
        let err = Source::from_args(Some("xdp_nope"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("xdp_nope") && err.contains("xdp_drop") && err.contains("--obj"),
            "{err}"
        );
        match Source::from_args(Some("mine"), Some(Path::new("/tmp/x.o"))).unwrap() {
            Source::File { program, .. } => assert_eq!(program.as_deref(), Some("mine")),
            other => panic!("{other:?}"),
        }
    }
}
