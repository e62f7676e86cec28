//! The rate limit as `ratelimit show`, `list` and `demo` write it: a sentence, or JSON.

use serde_json::{json, Value};

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

/// `{"enabled", "pps", "burst", "block_for", "proto"}`; block_for in seconds or null.
pub fn to_json(config: &Config) -> Value {
    json!({
        "enabled": config.rl_enabled != 0,
        "pps": config.rl_pps,
        "burst": config.rl_burst,
        "block_for": (config.rl_block_for_ns != 0).then(|| config.rl_block_for_ns as f64 / 1e9),
        "proto": RateLimitProto::from_abi(config.rl_proto),
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
            json!({"enabled": false, "pps": 0, "burst": 0, "block_for": null, "proto": "all"})
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
            r#"{"enabled":true,"pps":1000,"burst":2500,"block_for":null,"proto":"udp"}"#
        );
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
            r#"{"enabled":true,"pps":1000000,"burst":1000000,"block_for":90.5,"proto":"syn"}"#
        );
    }
}
