//! XDP exceptions: bpf/trace.bpf.c (a tp_btf program on xdp:xdp_exception) sends them through a
//! ring buffer; xdpctl names their programs and interfaces.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, RingBuffer, RingBufferBuilder};

use super::ClockPair;
use crate::counters::stats::ACTIONS;
use crate::skel::trace::{types, TraceSkel, TraceSkelBuilder};
use crate::sys::attach;

/// `struct trace_exception_event` from include/xdpctl.h, as the skeleton generated it from BTF.
pub type ExceptionEvent = types::trace_exception_event;
// SAFETY: a struct of integers: any bytes are a valid value.
unsafe impl plain::Plain for ExceptionEvent {}

/// The network namespace xdpctl runs in, as its nsfs inode (what the kernel calls ns.inum).
pub fn own_netns_inode() -> Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")
        .context("reading /proc/self/ns/net")?
        .ino())
}

/// Exceptions of one device only: its ifindex within a network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceFilter {
    pub ifindex: u32,
    pub netns_inode: u32,
}

impl DeviceFilter {
    /// The interface `ifname` of the caller's network namespace.
    pub fn interface(ifname: &str) -> Result<DeviceFilter> {
        let ifindex = attach::ifindex(ifname)?;
        let netns_inode = u32::try_from(own_netns_inode()?)
            .context("this network namespace's inode does not fit the kernel's 32 bits")?;
        Ok(DeviceFilter {
            ifindex,
            netns_inode,
        })
    }
}

/// The tracepoint program, attached, and the ring buffer it fills. Dropping it detaches the
/// program (its link is not pinned) and unloads it.
pub struct ExceptionTracer {
    // Declared first so it is freed before the map it reads.
    ring: RingBuffer<'static>,
    received: Rc<RefCell<VecDeque<ExceptionEvent>>>,
    _link: Link,
    skel: TraceSkel<'static>,
}

impl ExceptionTracer {
    /// Loads bpf/trace.bpf.c and attaches it to xdp:xdp_exception.
    ///
    /// The filter is applied in the kernel, not here: a program that aborts under a flood raises
    /// an exception per packet, millions a second. Filtered in the kernel, other devices'
    /// exceptions never take room in the ring buffer, so they can neither crowd out (and lose)
    /// the ones asked for nor cost a copy and a wake-up each.
    pub fn start(filter: Option<DeviceFilter>) -> Result<ExceptionTracer> {
        // The skeleton borrows its object storage for its whole life; a tracer lives as long
        // as the trace, so the storage is leaked (one small allocation per tracer).
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = TraceSkelBuilder::default()
            .open(storage)
            .context("opening the xdp_exception tracing program")?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("the tracing program has no .rodata")?;
        if let Some(filter) = filter {
            rodata.filter_ifindex = filter.ifindex;
            rodata.filter_netns_inode = filter.netns_inode;
        }
        let skel = open.load().context(
            "loading the xdp_exception tracing program (it needs the kernel's BTF, \
             /sys/kernel/btf/vmlinux)",
        )?;
        let link = skel.progs.trace_xdp_exception.attach().context(
            "attaching to the tracepoint xdp:xdp_exception (it needs Linux >= 5.5 with BTF)",
        )?;
        let received = Rc::new(RefCell::new(VecDeque::new()));
        let sink = Rc::clone(&received);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&skel.maps.exception_events, move |bytes: &[u8]| {
                let mut event = ExceptionEvent::default();
                if plain::copy_from_bytes(&mut event, bytes).is_ok() {
                    sink.borrow_mut().push_back(event);
                }
                0
            })
            .context("reading the exception ring buffer")?;
        let ring = builder
            .build()
            .context("setting up the exception ring buffer")?;
        Ok(ExceptionTracer {
            ring,
            received,
            _link: link,
            skel,
        })
    }

    /// Readable when the ring buffer has events (an epoll fd, which poll(2) takes).
    pub fn wait_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the epoll fd belongs to self.ring, which outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.ring.epoll_fd()) }
    }

    /// Every event that arrived since the last call, oldest first. Does not block.
    pub fn take_events(&self) -> Result<Vec<ExceptionEvent>> {
        self.ring
            .consume()
            .context("reading the exception ring buffer")?;
        Ok(self.received.borrow_mut().drain(..).collect())
    }

    /// Exceptions the kernel could not send because the ring buffer was full.
    pub fn lost(&self) -> u64 {
        self.skel.maps.bss_data.as_deref().map_or(0, |bss| {
            // SAFETY: the kernel bumps this counter in shared memory: read it afresh each time.
            unsafe { std::ptr::read_volatile(&bss.lost_events) }
        })
    }
}

/// The name of an action number: an XDP action's, or "invalid" for any other number.
pub fn action_name(action: u32) -> &'static str {
    ACTIONS.get(action as usize).copied().unwrap_or("invalid")
}

/// An exception, with the names xdpctl could find for its program and interface.
#[derive(Clone, Debug, PartialEq)]
pub struct Exception {
    /// Unix time, in seconds.
    pub time: f64,
    pub program_id: u32,
    /// None once the program is unloaded.
    pub program: Option<String>,
    pub action: u32,
    pub ifindex: u32,
    pub netns_inode: u32,
    /// Only for a device in xdpctl's own network namespace (an ifindex means nothing elsewhere).
    pub interface: Option<String>,
}

/// Names the programs and interfaces of exceptions. Program names are cached: ids are not
/// reused while the program lives, and an exception flood names the same program each time.
pub struct Namer {
    own_netns_inode: u64,
    programs: HashMap<u32, Option<String>>,
}

impl Namer {
    pub fn new() -> Result<Namer> {
        Ok(Namer {
            own_netns_inode: own_netns_inode()?,
            programs: HashMap::new(),
        })
    }

    pub fn name(&mut self, event: &ExceptionEvent, clock: &ClockPair) -> Exception {
        let program = self
            .programs
            .entry(event.prog_id)
            .or_insert_with(|| {
                attach::program_summary(event.prog_id)
                    .ok()
                    .map(|summary| summary.name)
            })
            .clone();
        let interface = if u64::from(event.netns_inode) == self.own_netns_inode {
            nix::net::if_::if_indextoname(event.ifindex)
                .ok()
                .map(|name| name.to_string_lossy().into_owned())
        } else {
            None
        };
        Exception {
            time: clock.unix_time_of_monotonic(event.timestamp_ns),
            program_id: event.prog_id,
            program,
            action: event.action,
            ifindex: event.ifindex,
            netns_inode: event.netns_inode,
            interface,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_and_invalid_ones_are_invalid() {
        assert_eq!(action_name(0), "XDP_ABORTED");
        assert_eq!(action_name(4), "XDP_REDIRECT");
        assert_eq!(action_name(7), "invalid");
    }
}
