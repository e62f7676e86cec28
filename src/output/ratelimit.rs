//! The rate limit as `ratelimit show`, `list` and `demo` write it: a sentence, or JSON.

use serde_json::{json, Value};

use crate::firewall::model::hhh::{LEVELS, LEVEL_LENGTHS};
use crate::firewall::prefix_limits::{is_v6_level, level_name};
use crate::firewall::{Config, RateLimitProto};
use crate::output::numbers::thousands;

/// "off", or the limit, burst, what counts and what happens over it, in one sentence.
pub fn describe(config: &Config) -> String {
    if config.rl_enabled == 0 {
        return "off".into();
    }
    let block = if config.rl_block_for_ns == 0 {
        "over-limit packets are dropped".to_owned()
    } else {
        format!(
            "over-limit sources are blocked for {}s",
            config.rl_block_for_ns / 1_000_000_000
        )
    };
    let proto = serde_json::to_value(RateLimitProto::from_abi(config.rl_proto))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{} packets/s per source, burst {}, counting {proto} packets; {block}",
        thousands(config.rl_pps),
        thousands(config.rl_burst)
    )
}

/// "off", or each prefix length's host-wide limit and per-CPU threshold, and what happens over it.
pub fn describe_prefixes(config: &Config) -> String {
    if config.rl_enabled == 0 || config.hhh_window_shift == 0 {
        return "off".into();
    }
    let limits: Vec<String> = (0..LEVELS)
        .filter(|&level| config.hhh_pps[level] != 0)
        .map(|level| {
            format!(
                "{} {} packets/s ({} per CPU a window)",
                level_name(level),
                thousands(config.hhh_pps[level]),
                thousands(u64::from(config.hhh_limit[level]))
            )
        })
        .collect();
    let block = if config.hhh_block_for_ns == 0 {
        "over-limit packets are dropped".to_owned()
    } else {
        format!(
            "over-limit prefixes are blocked for {}s",
            config.hhh_block_for_ns / 1_000_000_000
        )
    };
    format!(
        "{}; windows of {} ms; {block}",
        limits.join(", "),
        (1u64 << config.hhh_window_shift) / 1_000_000
    )
}

/// `{"enabled", "pps", "burst", "block_for", "proto", "prefix_limits"}`; block_for in seconds
/// or null; prefix_limits null when off, else `{"block_for", "window_ms", "limits": [{"length",
/// "family", "pps", "per_cpu_window"}]}`.
pub fn to_json(config: &Config) -> Value {
    let prefixes = (config.rl_enabled != 0 && config.hhh_window_shift != 0).then(|| {
        let limits: Vec<Value> = (0..LEVELS)
            .filter(|&level| config.hhh_pps[level] != 0)
            .map(|level| {
                json!({
                    "length": LEVEL_LENGTHS[level],
                    "family": if is_v6_level(level) { "ipv6" } else { "ipv4" },
                    "pps": config.hhh_pps[level],
                    "per_cpu_window": config.hhh_limit[level],
                })
            })
            .collect();
        json!({
            "block_for": (config.hhh_block_for_ns != 0).then(|| config.hhh_block_for_ns as f64 / 1e9),
            "window_ms": (1u64 << config.hhh_window_shift) as f64 / 1e6,
            "limits": limits,
        })
    });
    json!({
        "enabled": config.rl_enabled != 0,
        "pps": config.rl_pps,
        "burst": config.rl_burst,
        "block_for": (config.rl_block_for_ns != 0).then(|| config.rl_block_for_ns as f64 / 1e9),
        "proto": RateLimitProto::from_abi(config.rl_proto),
        "prefix_limits": prefixes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(pps: u64, burst: u64, block_for_ns: u64, proto: u32) -> Config {
        Config {
            rl_enabled: 1,
            rl_pps: pps,
            rl_burst: burst,
            rl_block_for_ns: block_for_ns,
            rl_proto: proto,
            ..Config::default()
        }
    }

    #[test]
    fn off_is_one_word() {
        assert_eq!(describe(&Config::default()), "off");
        assert_eq!(
            to_json(&Config::default()),
            json!({"enabled": false, "pps": 0, "burst": 0, "block_for": null, "proto": "all",
                   "prefix_limits": null})
        );
    }

    #[test]
    fn a_limit_that_drops() {
        let config = limit(1000, 2500, 0, crate::abi::FW_RL_UDP);
        assert_eq!(
            describe(&config),
            "1,000 packets/s per source, burst 2,500, counting udp packets; over-limit packets \
             are dropped"
        );
        assert_eq!(
            to_json(&config).to_string(),
            r#"{"enabled":true,"pps":1000,"burst":2500,"block_for":null,"proto":"udp","prefix_limits":null}"#
        );
    }

    #[test]
    fn prefix_limits_name_each_length_its_rate_and_threshold() {
        let mut config = limit(1000, 1000, 0, crate::abi::FW_RL_ALL);
        assert_eq!(describe_prefixes(&config), "off");
        let rl = crate::firewall::RateLimit::of_config(&config);
        let mut limits = crate::firewall::prefix_limits::PrefixLimits::defaults(1000);
        limits.pps[3..].fill(0);
        limits.write_to(&mut config, &rl, 2, 7);
        assert_eq!(
            describe_prefixes(&config),
            "/8 256,000 packets/s (34,360 per CPU a window), /16 64,000 packets/s (8,590 per CPU a \
             window), /24 16,000 packets/s (2,664 per CPU a window); windows of 268 ms; \
             over-limit prefixes are blocked for 60s"
        );
        let json = to_json(&config);
        assert_eq!(json["prefix_limits"]["block_for"], 60.0);
        assert_eq!(json["prefix_limits"]["limits"][2]["length"], 24);
        assert_eq!(json["prefix_limits"]["limits"][2]["per_cpu_window"], 2664);
        assert_eq!(json["prefix_limits"]["limits"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_limit_that_blocks() {
        let config = limit(1_000_000, 1_000_000, 90_500_000_000, crate::abi::FW_RL_SYN);
        assert_eq!(
            describe(&config),
            "1,000,000 packets/s per source, burst 1,000,000, counting syn packets; over-limit \
             sources are blocked for 90s"
        );
        assert_eq!(
            to_json(&config).to_string(),
            r#"{"enabled":true,"pps":1000000,"burst":1000000,"block_for":90.5,"proto":"syn","prefix_limits":null}"#
        );
    }
}
