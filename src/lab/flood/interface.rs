//! The interface a flood goes out of: only a veth, and the addresses and MACs the frames carry
//! when the user leaves them out.

use std::ffi::CStr;
use std::net::IpAddr;
use std::process::Command;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;

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

#[cfg(test)]
mod tests {
    use super::*;

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
