//! The flood generator: BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, kernel
//! ≥ 5.18) runs bpf/flood.bpf.c on a template frame, and XDP_TX transmits every run's frame out
//! of a veth: millions of packets per second, where a socket manages a few hundred thousand.
//!
//! For safety it only ever sends on veth interfaces (labs), and says so when asked for another.
//! The frames carry the peer's MAC and valid checksums, so the peer's kernel stack (netfilter
//! included) accepts them. A veth peer only receives XDP frames when it has an XDP program
//! attached or GRO on (`xdpctl testenv` turns GRO on), and veth refuses frames when the peer's
//! XDP ring is full, so the flood counts what the veth took (xdp:xdp_devmap_xmit).

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::lab::packets::{self, Transport};
use crate::skel::flood::FloodSkelBuilder;

/// What to send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FloodProto {
    /// UDP to port 9 (discard).
    #[default]
    Udp,
    /// TCP SYNs to port 80.
    Syn,
    /// ICMP (or ICMPv6) echo requests.
    Icmp,
}

/// How long to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Until {
    Duration(Duration),
    Count(u64),
}

/// Everything a flood needs, resolved.
#[derive(Clone, Debug)]
pub struct Plan {
    pub ifname: String,
    pub ifindex: u32,
    pub proto: FloodProto,
    /// The source: one address, or a prefix to draw random sources from.
    pub source: IpNet,
    pub destination: IpAddr,
    pub source_mac: [u8; 6],
    pub destination_mac: [u8; 6],
    /// Frame size in bytes, without the FCS.
    pub size: usize,
    /// Packets per second, or None for as fast as possible.
    pub pps: Option<u64>,
    pub until: Until,
}

/// What a flood sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Frames the veth took (and handed to its peer).
    pub packets: u64,
    pub bytes: u64,
    /// Frames the veth refused: its peer's XDP ring was full, or the peer took no XDP frames
    /// at all (no XDP program, GRO off).
    pub refused: u64,
    pub seconds: f64,
}

impl Report {
    pub fn pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.packets as f64 / self.seconds
        } else {
            0.0
        }
    }
}

// --- The interface ---------------------------------------------------------------------------

/// The driver of an interface (ETHTOOL_GDRVINFO), in the current network namespace.
pub fn driver(ifname: &str) -> Result<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 160],
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 160],
    };
    // SAFETY: an all-zero ifreq is valid; we fill its name and data pointer.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if ifname.len() >= ifr.ifr_name.len() {
        bail!("interface name too long: '{ifname}'");
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: socket() has no preconditions; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening a socket for ethtool");
    }
    // SAFETY: ifr points at a valid ifreq whose data points at a DrvInfo buffer.
    let ret = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut ifr) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if ret < 0 {
        return Err(err).with_context(|| format!("asking the driver of {ifname}"));
    }
    let name = CStr::from_bytes_until_nul(&info.driver).unwrap_or_default();
    Ok(name.to_string_lossy().into_owned())
}

/// Refuses anything but a veth: the flood is for labs, never for real networks.
pub fn require_veth(ifname: &str) -> Result<()> {
    crate::sys::attach::ifindex(ifname)?;
    let what = match driver(ifname) {
        Ok(driver) if driver == "veth" => return Ok(()),
        Ok(driver) => format!("it is a {driver} interface"),
        Err(_) => "its driver does not say it is a veth".to_owned(),
    };
    bail!(
        "refusing to flood {ifname}: {what}, and xdpctl floods only veth interfaces, so that \
         test traffic stays inside a lab (see `xdpctl testenv`)"
    )
}

/// The MAC and addresses of an interface in the current network namespace.
fn interface_addresses(ifname: &str) -> Result<([u8; 6], Vec<IpAddr>)> {
    let mut mac = None;
    let mut addrs = Vec::new();
    for ifaddr in nix::ifaddrs::getifaddrs().context("listing interface addresses")? {
        if ifaddr.interface_name != ifname {
            continue;
        }
        let Some(address) = ifaddr.address else {
            continue;
        };
        if let Some(link) = address.as_link_addr() {
            mac = link.addr();
        } else if let Some(v4) = address.as_sockaddr_in() {
            addrs.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = address.as_sockaddr_in6() {
            addrs.push(IpAddr::V6(v6.ip()));
        }
    }
    let mac = mac.with_context(|| format!("{ifname} has no MAC address"))?;
    Ok((mac, addrs))
}

/// The neighbour entries (IP, MAC) of an interface, from `ip -j neigh`.
fn neighbours(ifname: &str) -> Result<Vec<(IpAddr, [u8; 6])>> {
    let output = Command::new("ip")
        .args(["-j", "neigh", "show", "dev", ifname])
        .output()
        .context("running `ip neigh` (iproute2)")?;
    let entries: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing `ip -j neigh`")?;
    let mut out = Vec::new();
    for entry in entries.as_array().into_iter().flatten() {
        let (Some(dst), Some(mac)) = (entry["dst"].as_str(), entry["lladdr"].as_str()) else {
            continue;
        };
        if let (Ok(ip), Some(mac)) = (dst.parse(), parse_mac(mac)) {
            out.push((ip, mac));
        }
    }
    Ok(out)
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

fn is_link_local(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Fills in what the user left out: the source (the interface's own address), the destination
/// and its MAC (from the neighbour table).
pub fn resolve(
    ifname: &str,
    source: Option<IpNet>,
    destination: Option<IpAddr>,
    destination_mac: Option<[u8; 6]>,
) -> Result<(IpNet, IpAddr, [u8; 6], [u8; 6])> {
    let (source_mac, own) = interface_addresses(ifname)?;
    let neighbours = neighbours(ifname)?;
    let want_v6 = source
        .map(|s| s.addr().is_ipv6())
        .or(destination.map(|d| d.is_ipv6()))
        .unwrap_or(false);
    let destination = match destination {
        Some(d) => d,
        None => neighbours
            .iter()
            .map(|(ip, _)| *ip)
            .find(|ip| ip.is_ipv6() == want_v6 && !is_link_local(ip))
            .with_context(|| {
                format!("no neighbour of {ifname} to send to: name one with --dst ADDR")
            })?,
    };
    let destination_mac = match destination_mac {
        Some(mac) => mac,
        None => neighbours
            .iter()
            .find(|(ip, _)| *ip == destination)
            .map(|(_, mac)| *mac)
            .with_context(|| {
                format!(
                    "no neighbour entry for {destination} on {ifname}: ping it once, add one \
                     (`ip neigh add {destination} lladdr MAC dev {ifname}`), or pass --dst-mac"
                )
            })?,
    };
    let source = match source {
        Some(s) => s,
        None => own
            .iter()
            .find(|ip| ip.is_ipv6() == destination.is_ipv6() && !is_link_local(ip))
            .map(|ip| IpNet::from(*ip))
            .with_context(|| format!("{ifname} has no address to send from: give --src"))?,
    };
    if source.addr().is_ipv6() != destination.is_ipv6() {
        bail!("--src {source} and --dst {destination} are of different IP versions");
    }
    Ok((source, destination, source_mac, destination_mac))
}

// --- The frame --------------------------------------------------------------------------------

impl FloodProto {
    /// What the frames carry.
    fn transport(self) -> Transport {
        match self {
            FloodProto::Udp => Transport::Udp { dport: 9 },
            FloodProto::Syn => Transport::Syn { dport: 80 },
            FloodProto::Icmp => Transport::EchoRequest,
        }
    }
}

/// The minimal frame for a protocol and IP version (Ethernet + IP + L4 headers).
pub fn minimum_size(proto: FloodProto, ipv6: bool) -> usize {
    packets::l4_offset(ipv6) + proto.transport().header_len()
}

/// The template frame, with valid checksums, and the offset of the L4 checksum that covers the
/// source address (0 when none does: ICMPv4).
pub fn template(plan: &Plan) -> Result<(Vec<u8>, u16)> {
    let ipv6 = plan.destination.is_ipv6();
    let min = minimum_size(plan.proto, ipv6);
    if plan.size < min {
        bail!(
            "--size {} is too small: this frame needs at least {min} bytes",
            plan.size
        );
    }
    if plan.size > 1514 {
        bail!(
            "--size {} is larger than a 1514-byte Ethernet frame",
            plan.size
        );
    }
    let payload = vec![0x78u8; plan.size - min];
    let transport = plan.proto.transport();
    let frame = packets::checksummed(
        (plan.source_mac, plan.destination_mac),
        plan.source.network(),
        plan.destination,
        transport,
        &payload,
    )?;
    let check_off = if transport == Transport::EchoRequest && !ipv6 {
        0
    } else {
        packets::l4_offset(ipv6) + transport.checksum_offset()
    };
    Ok((frame, check_off as u16))
}

/// The bits of the source to randomize: the host part of the prefix (for IPv6, within the last
/// 64 bits).
fn random_masks(source: &IpNet) -> (u32, u64) {
    match source {
        IpNet::V4(net) => (u32::from(net.hostmask()).to_be(), 0),
        IpNet::V6(net) => {
            let host = u128::from(net.hostmask()) as u64;
            (0, host.to_be())
        }
    }
}

// --- Sending ----------------------------------------------------------------------------------

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

/// Floods per the plan until done or `stop` is set. `Until::Count(n)` means n frames that the
/// veth took: frames it refused are made again.
pub fn run(plan: &Plan, stop: &AtomicBool) -> Result<Report> {
    let mut generator = Generator::new(plan)?;
    generator.count_transmits()?;
    let size = generator.template().len() as u64;
    let started = Instant::now();
    let mut made = 0u64;
    let mut wholly_refused = 0;
    // Each BPF_PROG_RUN of more than one live frame costs about 24 ms on top of its frames
    // (measured here: the run's page pool is set up and torn down). So a paced flood goes out
    // in one run per 100 ms slot (bursts at full speed, the average on the mark up to about
    // 1.5 Mpps) and an unpaced one in runs of 2^18 frames.
    let slot = Duration::from_millis(100);
    let per_slot = plan.pps.map(|pps| (pps / 10).max(1));
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (taken_before, _) = generator.transmits();
        let left = match plan.until {
            Until::Count(n) => n.saturating_sub(taken_before),
            Until::Duration(d) if started.elapsed() >= d => 0,
            Until::Duration(_) => u64::MAX,
        };
        if left == 0 {
            break;
        }
        let batch = per_slot.unwrap_or(1 << 18).min(left).min(u32::MAX as u64) as u32;
        generator.send(plan.ifindex, batch)?;
        made += batch as u64;
        let (taken, _) = generator.transmits();
        if taken == 0 {
            bail!(
                "the peer of {} took none of the {batch} frames sent: a veth's peer takes XDP \
                 frames only with an XDP program attached or GRO on (`ethtool -K PEER gro on`; \
                 `xdpctl testenv` labs have it on)",
                plan.ifname
            );
        }
        // A peer that stops taking frames (its program detached) ends the flood, rather than
        // leave a count that can never be reached; the report says what was refused.
        wholly_refused = if taken == taken_before {
            wholly_refused + 1
        } else {
            0
        };
        if wholly_refused == 3 {
            break;
        }
        if let Some(per_slot) = per_slot {
            // Keep the average rate of frames made: wait until this many are due.
            let due = started + slot.mul_f64(made as f64 / per_slot as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    let (taken, refused) = generator.transmits();
    Ok(Report {
        packets: taken,
        bytes: taken * size,
        refused,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(proto: FloodProto, src: &str, dst: &str, size: usize) -> Plan {
        Plan {
            ifname: "veth0".into(),
            ifindex: 1,
            proto,
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
            source_mac: [2, 0, 0, 0, 0, 1],
            destination_mac: [2, 0, 0, 0, 0, 2],
            size,
            pps: None,
            until: Until::Count(1),
        }
    }

    #[test]
    fn templates_have_the_size_and_valid_checksums() {
        for (proto, src, dst) in [
            (FloodProto::Udp, "10.0.0.0/16", "10.1.0.1"),
            (FloodProto::Syn, "10.0.0.1/32", "10.1.0.1"),
            (FloodProto::Icmp, "10.0.0.1/32", "10.1.0.1"),
            (FloodProto::Udp, "fc00::/64", "fc00:1::1"),
            (FloodProto::Icmp, "fc00::1/128", "fc00:1::1"),
        ] {
            let p = plan(proto, src, dst, 128);
            let (frame, check_off) = template(&p).unwrap();
            assert_eq!(frame.len(), 128, "{proto:?}");
            let parsed = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            match parsed.net.unwrap() {
                etherparse::NetSlice::Ipv4(ip) => {
                    let header = ip.header().to_header();
                    assert_eq!(header.header_checksum, header.calc_header_checksum());
                    assert_eq!(IpAddr::V4(header.source.into()), p.source.network());
                }
                etherparse::NetSlice::Ipv6(ip) => {
                    assert_eq!(IpAddr::V6(ip.header().source_addr()), p.source.network());
                }
            }
            if proto == FloodProto::Icmp && !p.destination.is_ipv6() {
                assert_eq!(check_off, 0);
            } else {
                assert!(check_off as usize + 2 <= frame.len());
            }
        }
    }

    #[test]
    fn too_small_and_too_large_frames_are_refused() {
        let err = template(&plan(FloodProto::Syn, "10.0.0.1/32", "10.1.0.1", 40)).unwrap_err();
        assert!(err.to_string().contains("at least 54"), "{err}");
        assert!(template(&plan(FloodProto::Udp, "10.0.0.1/32", "10.1.0.1", 2000)).is_err());
        assert_eq!(minimum_size(FloodProto::Udp, false), 42);
    }

    #[test]
    fn random_bits_are_the_host_part() {
        let (m4, _) = random_masks(&"10.0.0.0/16".parse().unwrap());
        assert_eq!(u32::from_be(m4), 0x0000_ffff);
        let (m4, _) = random_masks(&"10.0.0.1/32".parse().unwrap());
        assert_eq!(m4, 0);
        let (_, m6) = random_masks(&"fc00::/120".parse().unwrap());
        assert_eq!(u64::from_be(m6), 0xff);
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:58:44:50:01:02"),
            Some([2, 0x58, 0x44, 0x50, 1, 2])
        );
        assert_eq!(parse_mac("02:58"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:00"), None);
    }
}
