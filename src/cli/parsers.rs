//! The value parsers of the command line: each checks one argument and says what is wrong with
//! it.

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
            .map_err(|_| format!("'{text}' is not an address or CIDR prefix"))
    } else {
        text.parse::<std::net::IpAddr>()
            .map(ipnet::IpNet::from)
            .map_err(|_| format!("'{text}' is not an address or CIDR prefix"))
    }
}

pub(super) fn mac(text: &str) -> Result<[u8; 6], String> {
    crate::flood::parse_mac(text)
        .ok_or_else(|| format!("'{text}' is not a MAC address (02:00:00:00:00:01)"))
}

pub(super) fn duration(text: &str) -> Result<std::time::Duration, String> {
    crate::input::parse_duration(text)
}

pub(super) fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("'{text}' is not an IP address and port, e.g. 127.0.0.1:9435 or [::1]:9435")
    })
}

pub(super) fn lock_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=86_400.0).contains(&value) => Ok(value),
        _ => Err(format!(
            "the lock timeout is from 0 to 86400 seconds (a day), not {text}"
        )),
    }
}

pub(super) fn positive_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    // Below 10 ms a sampling loop only spins; above a day it is surely a typo.
    if (0.01..=86_400.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "the interval must be from 0.01 to 86400 seconds (a day), not {text}"
        ))
    }
}
