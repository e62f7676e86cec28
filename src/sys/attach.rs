//! Attaching XDP programs: interface lookup, querying what is attached, and bpf_link
//! create/update/detach/pin.
//!
//! Links are made with raw `bpf_link_create` rather than libbpf-rs's `attach_xdp`, because
//! only the raw call takes the mode flags (native vs generic).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::query::{LinkInfo, LinkTypeInfo};

/// The XDP mode a user asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RequestedMode {
    /// In the driver (XDP_FLAGS_DRV_MODE): fastest; fails if the driver lacks XDP.
    #[default]
    Native,
    /// In the generic network stack (XDP_FLAGS_SKB_MODE): works on any interface, slower.
    Generic,
    /// Native if the driver supports it, otherwise generic (and say so).
    Auto,
}

/// The mode a program is actually attached in, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
    Offload,
}

impl AttachedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
            AttachedMode::Offload => "offload",
        }
    }

    fn flags(self) -> u32 {
        match self {
            AttachedMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            AttachedMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
            AttachedMode::Offload => libbpf_sys::XDP_FLAGS_HW_MODE,
        }
    }

    /// Whether a link in this mode can be updated in place to satisfy `requested`.
    pub fn satisfies(self, requested: RequestedMode) -> bool {
        matches!(
            (self, requested),
            (_, RequestedMode::Auto)
                | (AttachedMode::Native, RequestedMode::Native)
                | (AttachedMode::Generic, RequestedMode::Generic)
        )
    }
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One XDP program attached to an interface. An interface can carry up to one per mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub prog_id: u32,
    pub mode: AttachedMode,
}

/// Turns a libbpf return code (negative errno) into an io::Error.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret))
    } else {
        Ok(ret)
    }
}

/// Takes ownership of an fd returned by libbpf.
fn owned_fd(ret: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a non-negative return from these libbpf calls is a fresh fd that nobody else owns.
    check(ret).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Resolves an interface name in the current network namespace.
pub fn ifindex(ifname: &str) -> Result<u32> {
    match nix::net::if_::if_nametoindex(ifname) {
        Ok(index) => Ok(index),
        Err(_) => bail!(
            "no such interface: '{ifname}' (list the interfaces with `ip link show`; \
             an interface inside a network namespace needs `nsenter --net=...`)"
        ),
    }
}

/// Every interface of the current network namespace, by index.
pub fn interfaces() -> Result<Vec<(u32, String)>> {
    let list = nix::net::if_::if_nameindex().context("listing network interfaces")?;
    let mut interfaces: Vec<(u32, String)> = list
        .iter()
        .map(|iface| (iface.index(), iface.name().to_string_lossy().into_owned()))
        .collect();
    interfaces.sort();
    Ok(interfaces)
}

/// What XDP programs an interface carries (none, one, or one per mode).
pub fn query(ifindex: u32) -> Result<Vec<Attachment>> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is a properly sized bpf_xdp_query_opts.
    check(unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) })
        .with_context(|| format!("querying the XDP programs of interface {ifindex}"))?;
    let mut found = Vec::new();
    for (prog_id, mode) in [
        (opts.drv_prog_id, AttachedMode::Native),
        (opts.skb_prog_id, AttachedMode::Generic),
        (opts.hw_prog_id, AttachedMode::Offload),
    ] {
        if prog_id != 0 {
            found.push(Attachment { prog_id, mode });
        }
    }
    Ok(found)
}

/// Name, id and maps of a loaded program.
#[derive(Clone, Debug)]
pub struct ProgramSummary {
    pub id: u32,
    pub name: String,
    pub map_ids: Vec<u32>,
    /// The kernel's hash of the instructions as loaded (map references left out): two loads of
    /// the same program have the same tag.
    pub tag: [u8; 8],
}

/// Looks up a loaded program by id.
pub fn program_summary(prog_id: u32) -> Result<ProgramSummary> {
    // SAFETY: plain syscall wrapper.
    let fd = owned_fd(unsafe { libbpf_sys::bpf_prog_get_fd_by_id(prog_id) })
        .with_context(|| format!("opening BPF program id {prog_id}"))?;
    program_summary_by_fd(fd.as_fd())
}

/// Describes the program behind `fd`.
pub fn program_summary_by_fd(fd: BorrowedFd<'_>) -> Result<ProgramSummary> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info and len describe a valid buffer.
    check(unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })
        .context("reading BPF program info")?;
    let mut map_ids = vec![0u32; info.nr_map_ids as usize];
    if !map_ids.is_empty() {
        // Second call: the kernel fills map_ids now that it has room for them.
        let nr_map_ids = info.nr_map_ids;
        info = libbpf_sys::bpf_prog_info {
            nr_map_ids,
            map_ids: map_ids.as_mut_ptr() as u64,
            ..Default::default()
        };
        len = std::mem::size_of_val(&info) as u32;
        // SAFETY: map_ids has room for nr_map_ids entries.
        check(unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) })
            .context("reading BPF program map ids")?;
        map_ids.truncate(info.nr_map_ids.min(nr_map_ids) as usize);
    }
    let name_bytes: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let mut name = String::from_utf8_lossy(&name_bytes).into_owned();
    // The kernel keeps 15 characters of a name; a name that long may be cut, and the
    // program's BTF has it whole (as bpftool shows it).
    if name.len() == libbpf_sys::BPF_OBJ_NAME_LEN as usize - 1 {
        if let Some(full) = btf_name(fd, info.btf_id).filter(|full| full.starts_with(&name)) {
            name = full;
        }
    }
    Ok(ProgramSummary {
        id: info.id,
        name,
        map_ids,
        tag: info.tag,
    })
}

/// A program's name from its BTF: the name of the function its first func_info record (the
/// entry point) describes. None when the program has no BTF or the lookup fails.
fn btf_name(fd: BorrowedFd<'_>, btf_id: u32) -> Option<String> {
    if btf_id == 0 {
        return None;
    }
    let mut func = libbpf_sys::bpf_func_info::default();
    let mut info = libbpf_sys::bpf_prog_info {
        nr_func_info: 1,
        func_info_rec_size: std::mem::size_of::<libbpf_sys::bpf_func_info>() as u32,
        func_info: &mut func as *mut _ as u64,
        ..Default::default()
    };
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: func_info points at room for the one record asked for.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret != 0 || info.nr_func_info == 0 {
        return None;
    }
    // SAFETY: plain libbpf calls; the btf is freed before returning, and the name is copied
    // out of it first.
    unsafe {
        let btf = libbpf_sys::btf__load_from_kernel_by_id(btf_id);
        if btf.is_null() || libbpf_sys::libbpf_get_error(btf as *const _) != 0 {
            return None;
        }
        let ty = libbpf_sys::btf__type_by_id(btf, func.type_id);
        let name = (!ty.is_null())
            .then(|| libbpf_sys::btf__name_by_offset(btf, (*ty).name_off))
            .filter(|name| !name.is_null())
            .map(|name| {
                std::ffi::CStr::from_ptr(name)
                    .to_string_lossy()
                    .into_owned()
            });
        libbpf_sys::btf__free(btf);
        name.filter(|name| !name.is_empty())
    }
}

/// Creates an XDP bpf_link in the given mode. The program stays attached as long as the returned
/// fd (or a pin of it) lives.
pub fn create_link(
    prog_fd: BorrowedFd<'_>,
    ifindex: u32,
    mode: AttachedMode,
) -> io::Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags: mode.flags(),
        ..Default::default()
    };
    // SAFETY: opts is a properly sized bpf_link_create_opts.
    owned_fd(unsafe {
        libbpf_sys::bpf_link_create(
            prog_fd.as_raw_fd(),
            ifindex as i32,
            libbpf_sys::BPF_XDP,
            &opts,
        )
    })
}

/// Attaches in the requested mode, falling back from native to generic for `Auto`.
/// Returns the link and the mode it got.
pub fn attach(
    prog_fd: BorrowedFd<'_>,
    ifindex: u32,
    ifname: &str,
    requested: RequestedMode,
) -> Result<(OwnedFd, AttachedMode)> {
    let first = match requested {
        RequestedMode::Generic => AttachedMode::Generic,
        RequestedMode::Native | RequestedMode::Auto => AttachedMode::Native,
    };
    match create_link(prog_fd, ifindex, first) {
        Ok(link) => Ok((link, first)),
        Err(err) if requested == RequestedMode::Auto && is_mode_unsupported(&err) => {
            eprintln!(
                "xdpctl: {ifname}: native XDP is not supported by this driver ({err}); \
                 falling back to generic mode"
            );
            let link = create_link(prog_fd, ifindex, AttachedMode::Generic)
                .map_err(|err| attach_error(err, ifname, AttachedMode::Generic))?;
            Ok((link, AttachedMode::Generic))
        }
        Err(err) => Err(attach_error(err, ifname, first)),
    }
}

fn is_mode_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
    )
}

fn attach_error(err: io::Error, ifname: &str, mode: AttachedMode) -> anyhow::Error {
    match err.raw_os_error() {
        Some(libc::EBUSY) | Some(libc::EEXIST) => anyhow::anyhow!(
            "{ifname} already has an XDP program in {mode} mode (attached concurrently?): \
             see `xdpctl status {ifname}`"
        ),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) if mode == AttachedMode::Native => {
            anyhow::anyhow!(
                "attaching in native mode to {ifname} failed ({err}): the driver may not support \
                 native XDP; try --mode generic or --mode auto"
            )
        }
        _ => anyhow::anyhow!("attaching the XDP program to {ifname} in {mode} mode: {err}"),
    }
}

/// What a link says about itself.
#[derive(Clone, Debug)]
pub struct LinkSummary {
    pub id: u32,
    pub prog_id: u32,
    /// 0 once the interface is gone (the link is then defunct).
    pub ifindex: u32,
}

pub fn link_summary(link: BorrowedFd<'_>) -> Result<LinkSummary> {
    let info = LinkInfo::from_fd(link).context("reading bpf_link info")?;
    let ifindex = match info.info {
        LinkTypeInfo::Xdp(xdp) => xdp.ifindex,
        other => bail!("bpf_link {} is not an XDP link ({other:?})", info.id),
    };
    Ok(LinkSummary {
        id: info.id,
        prog_id: info.prog_id,
        ifindex,
    })
}

/// Atomically swaps the program behind a link, but only if it still runs `old_prog` (compare and
/// swap, so two concurrent replaces cannot silently overwrite each other).
pub fn update_link(
    link: BorrowedFd<'_>,
    new_prog: BorrowedFd<'_>,
    old_prog: BorrowedFd<'_>,
) -> Result<()> {
    let opts = libbpf_sys::bpf_link_update_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_update_opts>() as _,
        flags: libbpf_sys::BPF_F_REPLACE,
        old_prog_fd: old_prog.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: opts is a properly sized bpf_link_update_opts.
    check(unsafe { libbpf_sys::bpf_link_update(link.as_raw_fd(), new_prog.as_raw_fd(), &opts) })
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EPERM) => anyhow::anyhow!(
                "the program changed while replacing it (another xdpctl at work?); try again"
            ),
            _ => anyhow::anyhow!(
                "replacing the XDP program through its bpf_link: {}",
                link_error(&err)
            ),
        })?;
    Ok(())
}

/// A failed link operation as a sentence. ENOLINK ("Link has been severed") means the link no
/// longer attaches to an interface: it was detached meanwhile, or its interface was deleted.
pub fn link_error(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOLINK) => "the link no longer attaches to an interface: it was unloaded \
                                meanwhile (a concurrent `xdpctl unload`?), or its interface was \
                                deleted; see `xdpctl status`, and load again"
            .to_owned(),
        _ => err.to_string(),
    }
}

/// Detaches a link from its interface (the link object itself lives on while fds or pins hold it).
pub fn detach_link(link: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall wrapper.
    check(unsafe { libbpf_sys::bpf_link_detach(link.as_raw_fd()) }).map(|_| ())
}

/// Detaches a program that another tool attached through netlink (not through a link), but only
/// if it is still `prog_fd`.
pub fn detach_netlink(ifindex: u32, mode: AttachedMode, prog_fd: BorrowedFd<'_>) -> io::Result<()> {
    let opts = libbpf_sys::bpf_xdp_attach_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_attach_opts>() as _,
        old_prog_fd: prog_fd.as_raw_fd(),
        ..Default::default()
    };
    let flags = mode.flags() | libbpf_sys::XDP_FLAGS_REPLACE;
    // SAFETY: opts is a properly sized bpf_xdp_attach_opts.
    check(unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, flags, &opts) }).map(|_| ())
}

/// Opens a loaded program by id.
pub fn program_fd(prog_id: u32) -> Result<OwnedFd> {
    // SAFETY: plain syscall wrapper.
    owned_fd(unsafe { libbpf_sys::bpf_prog_get_fd_by_id(prog_id) })
        .with_context(|| format!("opening BPF program id {prog_id}"))
}

/// Opens a bpf_link by id.
pub fn link_fd_by_id(link_id: u32) -> Result<OwnedFd> {
    // SAFETY: plain syscall wrapper.
    owned_fd(unsafe { libbpf_sys::bpf_link_get_fd_by_id(link_id) })
        .with_context(|| format!("opening bpf_link id {link_id}"))
}

/// Pins a BPF object (link, map, program) at `path` in bpffs.
pub fn pin_fd(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let cpath = path_cstring(path)?;
    // SAFETY: cpath is NUL-terminated.
    check(unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), cpath.as_ptr()) })
        .with_context(|| format!("pinning at {}", path.display()))?;
    Ok(())
}

/// Opens a pinned BPF object.
pub fn open_pinned(path: &Path) -> Result<OwnedFd> {
    let cpath = path_cstring(path)?;
    // SAFETY: cpath is NUL-terminated.
    owned_fd(unsafe { libbpf_sys::bpf_obj_get(cpath.as_ptr()) })
        .with_context(|| format!("opening the pin {}", path.display()))
}

fn path_cstring(path: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).context("path contains a NUL byte")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_link_satisfies_native_and_auto_only() {
        assert!(AttachedMode::Native.satisfies(RequestedMode::Native));
        assert!(AttachedMode::Native.satisfies(RequestedMode::Auto));
        assert!(!AttachedMode::Native.satisfies(RequestedMode::Generic));
        assert!(AttachedMode::Generic.satisfies(RequestedMode::Generic));
        assert!(!AttachedMode::Generic.satisfies(RequestedMode::Native));
    }

    #[test]
    fn unknown_interface_error_names_it() {
        let err = ifindex("no-such-if0").unwrap_err().to_string();
        assert!(err.contains("no-such-if0"), "{err}");
        assert!(err.contains("ip link show"), "{err}");
    }
}
