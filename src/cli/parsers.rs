//! The value parsers of the command line: each checks one argument and says what is wrong with
//! it, echoing at most a bounded part of it ([`shown`]: a 1 MB argument is not printed back).

use crate::input::shown;

/// An interface name the kernel would accept: xdpctl makes pin paths from it.
pub(super) fn interface_name(text: &str) -> Result<String, String> {
    crate::ifname::check(text).map(|()| text.to_owned())
}

pub(super) fn lab_name(text: &str) -> Result<String, String> {
    crate::testenv::validate_name(text)
        .map(|()| text.to_owned())
        .map_err(|err| err.to_string())
}

pub(super) fn flood_source(text: &str) -> Result<ipnet::IpNet, String> {
    if text.contains('/') {
        text.parse::<ipnet::IpNet>()
            .map(|net| net.trunc())
            .map_err(|_| format!("{} is not an address or CIDR prefix", shown(text)))
    } else {
        text.parse::<std::net::IpAddr>()
            .map(ipnet::IpNet::from)
            .map_err(|_| format!("{} is not an address or CIDR prefix", shown(text)))
    }
}

pub(super) fn mac(text: &str) -> Result<[u8; 6], String> {
    crate::flood::parse_mac(text)
        .ok_or_else(|| format!("{} is not a MAC address (02:00:00:00:00:01)", shown(text)))
}

pub(super) fn duration(text: &str) -> Result<std::time::Duration, String> {
    crate::input::parse_duration(text)
}

pub(super) fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{} is not an IP address and port, e.g. 127.0.0.1:9435 or [::1]:9435",
            shown(text)
        )
    })
}

pub(super) fn lock_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=86_400.0).contains(&value) => Ok(value),
        _ => Err(format!(
            "the lock timeout is from 0 to 86400 seconds (a day), not {}",
            shown(text)
        )),
    }
}

pub(super) fn positive_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{} is not a number of seconds", shown(text)))?;
    // Below 10 ms a sampling loop only spins; above a day it is surely a typo.
    if (0.01..=86_400.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "the interval must be from 0.01 to 86400 seconds (a day), not {}",
            shown(text)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every parser that echoes its argument echoes a bounded part of a huge one.
    #[test]
    fn a_huge_argument_is_not_echoed_whole() {
        let huge = "9".repeat(1 << 20);
        let huge_name = "x".repeat(1 << 20);
        let errors = [
            interface_name(&huge_name).unwrap_err(),
            lab_name(&huge_name).unwrap_err(),
            flood_source(&huge_name).unwrap_err(),
            mac(&huge_name).unwrap_err(),
            listen_address(&huge_name).unwrap_err(),
            lock_seconds(&huge).unwrap_err(),
            positive_seconds(&huge).unwrap_err(),
            positive_seconds(&huge_name).unwrap_err(),
        ];
        for err in errors {
            assert!(err.len() < 1000, "{} bytes: {}…", err.len(), &err[..200]);
            assert!(err.contains("…"), "{err}");
        }
    }
}
