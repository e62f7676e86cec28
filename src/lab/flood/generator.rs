//! Sending: the flood program loaded for a plan's template, and BPF_PROG_RUN, live (frames
//! transmitted) or not (verdict and time per run).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use super::{random_masks, template, FloodProto, Plan};
use crate::skel::flood::FloodSkelBuilder;

/// Loads the flood program for a plan's template.
pub struct Generator {
    skel: crate::skel::flood::FloodSkel<'static>,
    template: Vec<u8>,
    counting: Option<libbpf_rs::Link>,
}

impl Generator {
    pub fn new(plan: &Plan) -> Result<Generator> {
        let (template, check_off) = template(plan)?;
        let (mask4, mask6) = random_masks(&plan.source);
        // The skeleton borrows its object storage for its whole life; a generator lives as
        // long as the flood, so the storage is leaked (one small allocation per generator).
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = FloodSkelBuilder::default()
            .open(storage)
            .context("opening the flood program")?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("the flood program has no .rodata")?;
        rodata.rand_mask4 = mask4;
        rodata.rand_mask6 = mask6;
        rodata.is_v6 = plan.destination.is_ipv6() as u8;
        rodata.l4_check_off = check_off;
        rodata.l4_is_udp = (plan.proto == FloodProto::Udp) as u8;
        // The benchmarks' floors live in the same object; a flood never runs them.
        open.progs.one_read.set_autoload(false);
        open.progs.bare_drop.set_autoload(false);
        let skel = open.load().context("loading the flood program")?;
        Ok(Generator {
            skel,
            template,
            counting: None,
        })
    }

    /// From now on, counts what the driver takes of the frames this thread sends, and what it
    /// refuses (bpf/flood.bpf.c's `count_transmits` on xdp:xdp_devmap_xmit).
    pub fn count_transmits(&mut self) -> Result<()> {
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .context("the flood program has no .bss")?;
        bss.sender_tid = nix::unistd::gettid().as_raw() as u32;
        let link = self.skel.progs.count_transmits.attach().context(
            "attaching to the tracepoint xdp:xdp_devmap_xmit (it needs Linux >= 5.5 with BTF)",
        )?;
        self.counting = Some(link);
        Ok(())
    }

    /// The frames the driver took and refused since `count_transmits`.
    pub fn transmits(&self) -> (u64, u64) {
        self.skel.maps.bss_data.as_deref().map_or((0, 0), |bss| {
            // SAFETY: the fields are plain integers in the mmap of .bss, which the kernel
            // writes behind the compiler's back; hence the volatile reads.
            unsafe {
                (
                    std::ptr::read_volatile(&bss.frames_taken),
                    std::ptr::read_volatile(&bss.frames_refused),
                )
            }
        })
    }

    pub fn template(&self) -> &[u8] {
        &self.template
    }

    /// Makes `spray` tail-call `target` after randomizing each frame's source.
    pub fn set_spray_target(&self, target: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        use libbpf_rs::MapCore;
        let fd = target.as_raw_fd().to_ne_bytes();
        self.skel
            .maps
            .target
            .update(&0u32.to_ne_bytes(), &fd, libbpf_rs::MapFlags::ANY)
            .context("setting the spray target (the program must be XDP)")
    }

    /// BPF_PROG_RUN (not live) of `spray` on the template, `repeat` times: each run gets a new
    /// random source, then the target runs. Returns the last verdict and the mean ns per run.
    pub fn spray(&self, repeat: u32) -> Result<(u32, f64)> {
        test_run(
            self.skel.progs.spray.as_fd().as_raw_fd(),
            &self.template,
            repeat,
        )
    }

    /// Sends `count` frames out of `ifindex` in one BPF_PROG_RUN.
    pub fn send(&self, ifindex: u32, count: u32) -> Result<()> {
        let prog = &self.skel.progs.flood;
        live_run(prog.as_fd().as_raw_fd(), ifindex, &self.template, count)
    }
}

/// BPF_PROG_RUN in live-frames mode: `repeat` frames from `data` through `prog_fd`, as if
/// received on `ifindex`.
pub fn live_run(prog_fd: i32, ifindex: u32, data: &[u8], repeat: u32) -> Result<()> {
    let mut ctx = libbpf_sys::xdp_md {
        data_end: data.len() as u32,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: data.as_ptr().cast(),
        data_size_in: data.len() as u32,
        ctx_in: (&mut ctx as *mut libbpf_sys::xdp_md).cast(),
        ctx_size_in: std::mem::size_of::<libbpf_sys::xdp_md>() as u32,
        repeat: repeat.min(i32::MAX as u32) as i32,
        flags: libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
        ..Default::default()
    };
    // SAFETY: every pointer in opts points at a live buffer of the size given beside it.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog_fd, &mut opts) };
    if ret < 0 {
        let err = std::io::Error::from_raw_os_error(-ret);
        bail!("sending with BPF_PROG_RUN in live-frames mode: {err} (this needs Linux >= 5.18)");
    }
    Ok(())
}

/// BPF_PROG_RUN of any loaded program (by fd) on `data`, `repeat` times: the last verdict and
/// the kernel's mean nanoseconds per run.
pub fn test_run(prog_fd: i32, data: &[u8], repeat: u32) -> Result<(u32, f64)> {
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: data.as_ptr().cast(),
        data_size_in: data.len() as u32,
        repeat: repeat.min(i32::MAX as u32) as i32,
        ..Default::default()
    };
    // SAFETY: data outlives the call and its size is given.
    let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog_fd, &mut opts) };
    if ret < 0 {
        bail!("BPF_PROG_RUN: {}", std::io::Error::from_raw_os_error(-ret));
    }
    Ok((opts.retval, opts.duration as f64))
}
