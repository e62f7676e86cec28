//! `xdpctl list`'s output: the block and allow rules with their hits, the port rules and the
//! rate limit, as a table or JSON.

use serde_json::{json, Value};

use crate::firewall::rules::PrefixEntry;
use crate::firewall::Config;
use crate::input::{self, PortSpec};
use crate::output::numbers::thousands;
use crate::output::ratelimit;

/// Why a prefix is blocked (enum fw_rule_reason): "manual", "ratelimit" (a source over the rate
/// limit) or "prefix" (a prefix over its prefix limit).
pub fn reason(entry: &PrefixEntry) -> &'static str {
    crate::abi::names::FW_RULE_REASON_NAMES
        .get(entry.reason as usize)
        .copied()
        .unwrap_or("manual")
}

/// The mark of a rule an older version made of an IPv4-mapped entry (an IPv6 prefix within
/// ::ffff:0:0/96), which never matches: IPv4 traffic carries IPv4 headers. `remove` is the
/// command that removes it by the name it was typed with.
pub fn mapped_note(entry: &PrefixEntry, remove: &str) -> Option<String> {
    input::is_mapped_rule(&entry.prefix).then(|| format!("IPv4-mapped: never matches; {remove} it"))
}

pub fn block_json(entry: &PrefixEntry) -> Value {
    let mut value = json!({
        "prefix": entry.prefix.to_string(),
        "hits": entry.hits,
        "expires_in": entry.expires_in,
        "reason": reason(entry),
    });
    if let Some(note) = mapped_note(entry, "unblock") {
        value["note"] = note.into();
    }
    value
}

pub fn allow_json(entry: &PrefixEntry) -> Value {
    let mut value = json!({"prefix": entry.prefix.to_string(), "hits": entry.hits});
    if let Some(note) = mapped_note(entry, "disallow") {
        value["note"] = note.into();
    }
    value
}

/// `{"block", "allow", "ports", "ratelimit"}`.
pub fn to_json(
    block: &[PrefixEntry],
    allow: &[PrefixEntry],
    ports: &[(PortSpec, u64)],
    config: &Config,
) -> Value {
    json!({
        "block": block.iter().map(block_json).collect::<Vec<_>>(),
        "allow": allow.iter().map(allow_json).collect::<Vec<_>>(),
        "ports": ports.iter().map(|(p, hits)| json!({"port": p.port, "proto": p.proto.as_str(), "hits": hits})).collect::<Vec<_>>(),
        "ratelimit": ratelimit::to_json(config),
    })
}

/// Four sections: BLOCK (with expiry and reason), ALLOW, PORT and the RATELIMIT sentence.
pub fn format_table(
    block: &[PrefixEntry],
    allow: &[PrefixEntry],
    ports: &[(PortSpec, u64)],
    config: &Config,
) -> String {
    let mut out = format!("{:<43} {:>14}  {:>9}  REASON\n", "BLOCK", "HITS", "EXPIRES");
    for entry in block {
        let expires = entry
            .expires_in
            .map(|s| format!("{:.0}s", s.ceil()))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<43} {:>14}  {:>9}  {}{}\n",
            entry.prefix.to_string(),
            thousands(entry.hits),
            expires,
            reason(entry),
            mapped_note(entry, "unblock").map_or(String::new(), |n| format!("; {n}"))
        ));
    }
    out.push_str(&format!("\n{:<43} {:>14}\n", "ALLOW", "HITS"));
    for entry in allow {
        out.push_str(&format!(
            "{:<43} {:>14}{}\n",
            entry.prefix.to_string(),
            thousands(entry.hits),
            mapped_note(entry, "disallow").map_or(String::new(), |n| format!("  {n}"))
        ));
    }
    out.push_str(&format!("\n{:<43} {:>14}\n", "PORT", "HITS"));
    for (port, hits) in ports {
        out.push_str(&format!(
            "{:<43} {:>14}\n",
            port.to_string(),
            thousands(*hits)
        ));
    }
    out.push_str(&format!("\nRATELIMIT  {}\n", ratelimit::describe(config)));
    out.push_str(&format!(
        "PREFIXES   {}\n",
        ratelimit::describe_prefixes(config)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::PortProto;

    fn entry(prefix: &str, hits: u64, expires_in: Option<f64>, reason: u32) -> PrefixEntry {
        PrefixEntry {
            prefix: prefix.parse().unwrap(),
            hits,
            expires_in,
            reason,
        }
    }

    fn rules() -> (Vec<PrefixEntry>, Vec<PrefixEntry>, Vec<(PortSpec, u64)>) {
        let block = vec![
            entry("192.0.2.0/24", 1234567, None, crate::abi::FW_REASON_MANUAL),
            entry(
                "203.0.113.7/32",
                5,
                Some(59.2),
                crate::abi::FW_REASON_RATELIMIT,
            ),
            entry(
                "::ffff:198.51.100.1/128",
                0,
                None,
                crate::abi::FW_REASON_MANUAL,
            ),
        ];
        let allow = vec![
            entry("2001:db8::/32", 42, None, crate::abi::FW_REASON_MANUAL),
            entry("::ffff:10.0.0.0/104", 0, None, crate::abi::FW_REASON_MANUAL),
        ];
        let port = PortSpec {
            port: 53,
            proto: PortProto::Udp,
        };
        (block, allow, vec![(port, 1000)])
    }

    #[test]
    fn reasons_name_who_blocked() {
        let (block, _, _) = rules();
        assert_eq!(reason(&block[0]), "manual");
        assert_eq!(reason(&block[1]), "ratelimit");
        assert_eq!(mapped_note(&block[0], "unblock"), None);
        assert_eq!(
            mapped_note(&block[2], "unblock").as_deref(),
            Some("IPv4-mapped: never matches; unblock it")
        );
    }

    #[test]
    fn the_table_has_four_sections() {
        let (block, allow, ports) = rules();
        let expected = [
            "BLOCK                                                 HITS    EXPIRES  REASON",
            "192.0.2.0/24                                     1,234,567          -  manual",
            "203.0.113.7/32                                           5        60s  ratelimit",
            "::ffff:198.51.100.1/128                                  0          -  manual; \
             IPv4-mapped: never matches; unblock it",
            "",
            "ALLOW                                                 HITS",
            "2001:db8::/32                                           42",
            "::ffff:10.0.0.0/104                                      0  IPv4-mapped: never \
             matches; disallow it",
            "",
            "PORT                                                  HITS",
            "53/udp                                               1,000",
            "",
            "RATELIMIT  off",
            "PREFIXES   off",
            "",
        ]
        .join("\n");
        assert_eq!(
            format_table(&block, &allow, &ports, &Config::default()),
            expected
        );
    }

    #[test]
    fn empty_lists_keep_their_headers() {
        assert_eq!(
            format_table(&[], &[], &[], &Config::default()),
            format!(
                "{:<43} {:>14}  {:>9}  REASON\n\n{:<43} {:>14}\n\n{:<43} {:>14}\n\nRATELIMIT  off\nPREFIXES   off\n",
                "BLOCK", "HITS", "EXPIRES", "ALLOW", "HITS", "PORT", "HITS"
            )
        );
    }

    #[test]
    fn json_has_the_documented_fields() {
        let (block, allow, ports) = rules();
        let value = to_json(&block, &allow, &ports, &Config::default());
        assert_eq!(
            value.to_string(),
            concat!(
                r#"{"block":[{"prefix":"192.0.2.0/24","hits":1234567,"expires_in":null,"reason":"manual"},"#,
                r#"{"prefix":"203.0.113.7/32","hits":5,"expires_in":59.2,"reason":"ratelimit"},"#,
                r#"{"prefix":"::ffff:198.51.100.1/128","hits":0,"expires_in":null,"reason":"manual","#,
                r#""note":"IPv4-mapped: never matches; unblock it"}],"#,
                r#""allow":[{"prefix":"2001:db8::/32","hits":42},"#,
                r#"{"prefix":"::ffff:10.0.0.0/104","hits":0,"note":"IPv4-mapped: never matches; disallow it"}],"#,
                r#""ports":[{"port":53,"proto":"udp","hits":1000}],"#,
                r#""ratelimit":{"enabled":false,"pps":0,"burst":0,"block_for":null,"proto":"all","prefix_limits":null}}"#
            )
        );
    }
}
