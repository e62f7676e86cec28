//! The pin root: where it is ($XDPCTL_PIN_ROOT or /sys/fs/bpf/xdpctl), in one normal form, and
//! whether xdpctl may use it (inside bpffs, below a mount, holding only what xdpctl makes).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{elsewhere, BPFFS};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The root of xdpctl's pins: /sys/fs/bpf/xdpctl, or $XDPCTL_PIN_ROOT (a directory in bpffs),
/// which gives a separate instance: its own rules and interfaces (the tests use it). Always in
/// its [`normal_form`], so that every spelling of one directory names the same locks, paths
/// and messages. Not yet checked: see [`checked_root`].
pub fn root() -> PathBuf {
    normal_form(&configured_root())
}

/// The pin root as configured, spelled as given.
fn configured_root() -> PathBuf {
    match std::env::var_os("XDPCTL_PIN_ROOT") {
        Some(root) if !root.is_empty() => PathBuf::from(root),
        _ => Path::new(BPFFS).join("xdpctl"),
    }
}

/// One spelling per directory: `path` rebuilt from its components (no trailing or doubled '/',
/// no '.'), with the part that exists resolved as the kernel resolves it (symbolic links).
/// A relative path, or one with '..', is only rebuilt: [`checked_root`] refuses it.
pub fn normal_form(path: &Path) -> PathBuf {
    use std::path::Component;
    let rebuilt: PathBuf = path.components().collect();
    if !rebuilt.is_absolute() || rebuilt.components().any(|c| c == Component::ParentDir) {
        return rebuilt;
    }
    let Some(existing) = rebuilt.ancestors().find(|dir| dir.exists()) else {
        return rebuilt;
    };
    let (Ok(real), Ok(rest)) = (fs::canonicalize(existing), rebuilt.strip_prefix(existing)) else {
        return rebuilt;
    };
    // Joining "" would add a trailing '/'.
    if rest.as_os_str().is_empty() {
        real
    } else {
        real.join(rest)
    }
}

/// [`root`], once it is known to be an absolute, plain path strictly below a bpffs mount, and
/// either new, empty or laid out as xdpctl lays it out: xdpctl creates and removes directories
/// there, which must never reach outside bpffs, nor take in another tool's pins.
pub fn checked_root() -> Result<PathBuf> {
    let configured = configured_root();
    let root = normal_form(&configured);
    check_root(&configured, &root).map_err(|why| {
        let named = match std::env::var_os("XDPCTL_PIN_ROOT") {
            Some(_) => format!("XDPCTL_PIN_ROOT={}", configured.display()),
            None => format!("the pin root {}", configured.display()),
        };
        anyhow::anyhow!(
            "{named} {why}: set XDPCTL_PIN_ROOT to a new or empty directory in bpffs, such as \
             /sys/fs/bpf/NAME (or mount a bpffs with `mount -t bpf bpf DIR`), or unset it"
        )
    })?;
    Ok(root)
}

/// Why the pin root `configured` (in normal form: `root`) may not be used, if it may not.
fn check_root(configured: &Path, root: &Path) -> Result<(), String> {
    use std::path::Component;
    if !configured.is_absolute() {
        return Err("is not an absolute path".into());
    }
    if configured
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err("has '.' or '..' in it".into());
    }
    // The root itself may not exist yet (it is made at the first load): then the nearest
    // directory that does decides where it would be made.
    let existing = root
        .ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(Path::new("/"));
    if !is_bpffs(existing) {
        return Err(format!(
            "is not inside a bpffs mount ({} is not bpffs)",
            existing.display()
        ));
    }
    if existing == root {
        check_existing_root(root)?;
    }
    // bpffs refuses (EPERM) to make a file or directory with a '.' in its name.
    let to_make = root.strip_prefix(existing).unwrap_or(Path::new(""));
    if let Some(dotted) = to_make
        .iter()
        .find(|part| part.as_encoded_bytes().contains(&b'.'))
    {
        return Err(format!(
            "would need a directory '{}' made in bpffs, which refuses a '.' in a name",
            dotted.to_string_lossy()
        ));
    }
    Ok(())
}

/// An existing pin root must be a directory below a mount (not the mount itself: `unload
/// --all` would remove `rules` and `if/*` at the top of a bpffs that other tools use), holding
/// nothing but what xdpctl makes there.
fn check_existing_root(root: &Path) -> Result<(), String> {
    if !root.is_dir() {
        return Err(format!("{} is not a directory", root.display()));
    }
    if is_mount_point(root) {
        return Err(format!(
            "is a mount point itself, shared with other tools' pins: use a directory in it, \
             such as {}",
            root.join("xdpctl").display()
        ));
    }
    let entries = fs::read_dir(root).map_err(|err| format!("cannot be read ({err})"))?;
    for entry in entries {
        let name = entry
            .map_err(|err| format!("cannot be read ({err})"))?
            .file_name();
        if !is_own_entry(&name.to_string_lossy()) {
            return Err(format!(
                "holds {}, which xdpctl does not make: it is not an xdpctl pin root \
                 (xdpctl makes only rules, if and rules-staging-*)",
                crate::input::shown(&name.to_string_lossy())
            ));
        }
    }
    Ok(())
}

/// Whether xdpctl makes a directory of this name in its pin root.
fn is_own_entry(name: &str) -> bool {
    name == super::SHARED_DIR
        || name == super::INTERFACES_DIR
        || name.starts_with(super::STAGING_PREFIX)
}

/// Whether `dir` is where a file system is mounted: listed so in mountinfo, or on another
/// device than its parent.
fn is_mount_point(dir: &Path) -> bool {
    let listed = fs::read_to_string("/proc/self/mountinfo")
        .map(|text| {
            elsewhere::mount_points(&text)
                .iter()
                .any(|(point, _)| point == dir)
        })
        .unwrap_or(false);
    let device = |path: &Path| fs::metadata(path).map(|meta| meta.dev()).ok();
    listed
        || dir
            .parent()
            .is_some_and(|parent| device(parent) != device(dir))
}

pub(super) fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|fs| fs.filesystem_type() == nix::sys::statfs::FsType(BPF_FS_MAGIC as _))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_root_outside_bpffs_is_refused() {
        for (root, why) in [
            ("relative/dir", "absolute"),
            ("/sys/fs/bpf/../../../tmp", "'..'"),
            ("/tmp/xdpctl-not-bpffs", "not inside a bpffs mount"),
            ("/", "not inside a bpffs mount"),
        ] {
            let err = check_root(Path::new(root), &normal_form(Path::new(root))).unwrap_err();
            assert!(err.contains(why), "{root}: {err}");
        }
        if is_bpffs(Path::new(BPFFS)) {
            let dotted = Path::new("/sys/fs/bpf/xdpctl-unit-test/x.y");
            let err = check_root(dotted, dotted).unwrap_err();
            assert!(err.contains("'x.y' made in bpffs"), "{err}");
            // Only looked at, never written to.
            for top in ["/sys/fs/bpf", "/sys/fs/bpf/", "/sys//fs/bpf"] {
                let err = check_root(Path::new(top), &normal_form(Path::new(top))).unwrap_err();
                assert!(err.contains("is a mount point itself"), "{top}: {err}");
            }
        }
    }

    #[test]
    fn every_spelling_of_a_pin_root_is_one_path() {
        let plain = normal_form(Path::new("/sys/fs/bpf/x"));
        for spelling in [
            "/sys/fs/bpf/x/",
            "/sys/fs/bpf//x",
            "//sys/fs/bpf/x",
            "/sys/fs/bpf/./x",
            "/sys/fs/bpf/x//",
        ] {
            // As text: Path's == would see past a trailing '/', a lock name does not.
            assert_eq!(
                normal_form(Path::new(spelling)).as_os_str(),
                plain.as_os_str(),
                "{spelling}"
            );
        }
        assert_eq!(plain.as_os_str(), "/sys/fs/bpf/x");
        assert_eq!(
            normal_form(Path::new("/sys/fs/bpf/xdpctl/")),
            normal_form(&Path::new(BPFFS).join("xdpctl"))
        );
        // What exists is resolved: a symbolic link names the directory it points to.
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let real = fs::canonicalize(&real).unwrap();
        assert_eq!(normal_form(&dir.path().join("link/")), real);
        assert_eq!(
            normal_form(&dir.path().join("link//new/")),
            real.join("new")
        );
        // What is refused anyway is only rebuilt.
        assert_eq!(normal_form(Path::new("a//b/")), Path::new("a/b"));
        assert_eq!(
            normal_form(Path::new("/sys/fs/bpf/../x/")).as_os_str(),
            "/sys/fs/bpf/../x"
        );
    }

    #[test]
    fn an_existing_pin_root_must_hold_only_what_xdpctl_makes() {
        let dir = tempfile::tempdir().unwrap();
        for own in ["rules", "if", "rules-staging-123"] {
            fs::create_dir(dir.path().join(own)).unwrap();
        }
        assert_eq!(check_existing_root(dir.path()), Ok(()));
        fs::create_dir(dir.path().join("cilium")).unwrap();
        let err = check_existing_root(dir.path()).unwrap_err();
        assert!(err.contains("holds 'cilium'"), "{err}");
        assert!(err.contains("not an xdpctl pin root"), "{err}");
        let file = dir.path().join("rules/x");
        fs::write(&file, "").unwrap();
        let err = check_existing_root(&file).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
    }
}
