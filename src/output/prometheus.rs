//! The Prometheus text exposition format 0.0.4 of a counters::metrics Snapshot. Rendering is
//! pure, so its tests need no kernel.

use std::fmt::Write;

use crate::counters::metrics::Snapshot;
use crate::counters::stats::ACTIONS;
use crate::firewall::{DROP_REASONS, PROTOCOLS};
use crate::output::stats::action_label;

/// The HTTP Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with backslash, double quote and line feed escaped, as the format requires.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text with backslash and line feed escaped (double quotes stay as they are there).
pub fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as the format spells it: NaN, +Inf and -Inf have their own spellings.
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

/// One metric family being written: HELP and TYPE once, then its samples. A family with no
/// sample is left out altogether.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, String)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn counter(name: &'static str, help: &'static str) -> Family {
        Family::new(name, "counter", help)
    }

    fn gauge(name: &'static str, help: &'static str) -> Family {
        Family::new(name, "gauge", help)
    }

    fn add(&mut self, labels: &[(&'static str, &str)], value: impl ToString) {
        let labels = labels.iter().map(|&(k, v)| (k, v.to_owned())).collect();
        self.samples.push((labels, value.to_string()));
    }

    fn write_to(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (key, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{key}=\"{}\"", escape_label_value(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
}

/// Renders a snapshot in the text exposition format 0.0.4.
pub fn render(snapshot: &Snapshot) -> String {
    let mut info = Family::gauge(
        "xdpctl_program_info",
        "The XDP program that xdpctl runs on an interface (always 1).",
    );
    let mut packets = Family::counter(
        "xdpctl_packets_total",
        "Packets the XDP program returned each action for.",
    );
    let mut bytes = Family::counter(
        "xdpctl_bytes_total",
        "Bytes of the packets the XDP program returned each action for.",
    );
    let mut fw_packets = Family::counter(
        "xdpctl_firewall_packets_total",
        "Packets the firewall saw, by protocol (icmp includes ICMPv6).",
    );
    let mut fw_syn = Family::counter(
        "xdpctl_firewall_syn_packets_total",
        "TCP SYNs without ACK the firewall saw (also counted under protocol tcp).",
    );
    let mut fw_drop_packets = Family::counter(
        "xdpctl_firewall_dropped_packets_total",
        "Packets the firewall dropped, by reason.",
    );
    let mut fw_drop_bytes = Family::counter(
        "xdpctl_firewall_dropped_bytes_total",
        "Bytes of the packets the firewall dropped, by reason.",
    );
    for iface in &snapshot.interfaces {
        let name = iface.interface.as_str();
        info.add(
            &[
                ("interface", name),
                ("program", &iface.program),
                ("id", &iface.program_id.to_string()),
                ("mode", &iface.mode),
            ],
            1,
        );
        if let Some(actions) = &iface.actions {
            for (action, counter) in ACTIONS.iter().zip(actions.0) {
                let labels = [("interface", name), ("action", &action_label(action))];
                packets.add(&labels, counter.packets);
                bytes.add(&labels, counter.bytes);
            }
        }
        if let Some(fw) = &iface.firewall {
            // The last protocol counter (syn) overlaps tcp: it gets a metric of its own, so
            // that summing over protocol counts every packet once.
            for (protocol, &count) in PROTOCOLS.iter().zip(&fw.proto_packets) {
                if *protocol == "syn" {
                    fw_syn.add(&[("interface", name)], count);
                } else {
                    fw_packets.add(&[("interface", name), ("protocol", protocol)], count);
                }
            }
            for (i, reason) in DROP_REASONS.iter().enumerate() {
                let labels = [("interface", name), ("reason", *reason)];
                fw_drop_packets.add(&labels, fw.drop_packets[i]);
                fw_drop_bytes.add(&labels, fw.drop_bytes[i]);
            }
        }
    }

    let rules = &snapshot.rules;
    let mut prefix_rules = Family::gauge(
        "xdpctl_rules",
        "Address and prefix rules in force (not expired), by list and address family.",
    );
    for (list, counts) in [("allow", &rules.allow), ("block", &rules.block)] {
        prefix_rules.add(&[("list", list), ("family", "ipv4")], counts.ipv4);
        prefix_rules.add(&[("list", list), ("family", "ipv6")], counts.ipv6);
    }
    let mut port_rules = Family::gauge(
        "xdpctl_port_rules",
        "Destination ports blocked, by protocol.",
    );
    port_rules.add(&[("protocol", "tcp")], rules.ports.tcp);
    port_rules.add(&[("protocol", "udp")], rules.ports.udp);
    let mut autoblocked = Family::gauge(
        "xdpctl_autoblocked_sources",
        "Sources the rate limiter blocked whose block has not expired.",
    );
    autoblocked.add(&[], rules.block.rate_limited);
    let mut autoblocked_prefixes = Family::gauge(
        "xdpctl_autoblocked_prefixes",
        "Source prefixes the prefix limits blocked whose block has not expired.",
    );
    autoblocked_prefixes.add(&[], rules.block.prefix_limited);
    let mut rate_limited = Family::gauge(
        "xdpctl_ratelimited_sources",
        "Sources whose token bucket was empty at their last packet, which came within the last second.",
    );
    rate_limited.add(&[], rules.rate_limited_sources);
    let mut duration = Family::gauge(
        "xdpctl_scrape_duration_seconds",
        "How long reading these metrics from the kernel took.",
    );
    duration.add(&[], format_float(snapshot.scrape_seconds));

    let mut out = String::new();
    for family in [
        &info,
        &packets,
        &bytes,
        &fw_packets,
        &fw_syn,
        &fw_drop_packets,
        &fw_drop_bytes,
        &prefix_rules,
        &port_rules,
        &autoblocked,
        &autoblocked_prefixes,
        &rate_limited,
        &duration,
    ] {
        family.write_to(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::metrics::{InterfaceMetrics, PortCounts, PrefixCounts, RuleMetrics};
    use crate::counters::stats::{Counter, Counters, FwCounters};

    fn firewall_interface() -> InterfaceMetrics {
        let mut actions = Counters::default();
        actions.0[1] = Counter {
            packets: 3,
            bytes: 294,
        };
        actions.0[2] = Counter {
            packets: 10,
            bytes: 1000,
        };
        InterfaceMetrics {
            interface: "lab1".into(),
            program: "firewall".into(),
            program_id: 42,
            mode: "native".into(),
            actions: Some(actions),
            firewall: Some(FwCounters {
                proto_packets: [4, 2, 7, 0, 1],
                drop_packets: [3, 0, 0, 0, 0],
                drop_bytes: [294, 0, 0, 0, 0],
            }),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            interfaces: vec![firewall_interface()],
            rules: RuleMetrics {
                allow: PrefixCounts::default(),
                block: PrefixCounts {
                    ipv4: 3,
                    ipv6: 1,
                    rate_limited: 1,
                    prefix_limited: 2,
                },
                ports: PortCounts { tcp: 0, udp: 2 },
                rate_limited_sources: 5,
            },
            scrape_seconds: 0.0125,
        }
    }

    /// The value of the sample written exactly as `series` (name and labels).
    fn value(text: &str, series: &str) -> String {
        let matches: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .collect();
        assert_eq!(matches.len(), 1, "{series} in:\n{text}");
        matches[0].to_owned()
    }

    #[test]
    fn every_series_has_its_value_and_labels() {
        let text = render(&snapshot());
        assert_eq!(
            value(
                &text,
                r#"xdpctl_program_info{interface="lab1",program="firewall",id="42",mode="native"}"#
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                r#"xdpctl_packets_total{interface="lab1",action="drop"}"#
            ),
            "3"
        );
        assert_eq!(
            value(
                &text,
                r#"xdpctl_bytes_total{interface="lab1",action="pass"}"#
            ),
            "1000"
        );
        assert_eq!(
            value(
                &text,
                r#"xdpctl_firewall_packets_total{interface="lab1",protocol="icmp"}"#
            ),
            "7"
        );
        assert_eq!(
            value(
                &text,
                r#"xdpctl_firewall_syn_packets_total{interface="lab1"}"#
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                r#"xdpctl_firewall_dropped_packets_total{interface="lab1",reason="blocklist"}"#
            ),
            "3"
        );
        assert_eq!(
            value(
                &text,
                r#"xdpctl_firewall_dropped_bytes_total{interface="lab1",reason="blocklist"}"#
            ),
            "294"
        );
        assert_eq!(
            value(
                &text,
                r#"xdpctl_firewall_dropped_packets_total{interface="lab1",reason="prefix"}"#
            ),
            "0"
        );
        assert_eq!(value(&text, "xdpctl_autoblocked_prefixes"), "2");
        assert_eq!(
            value(&text, r#"xdpctl_rules{list="block",family="ipv4"}"#),
            "3"
        );
        assert_eq!(
            value(&text, r#"xdpctl_rules{list="allow",family="ipv6"}"#),
            "0"
        );
        assert_eq!(value(&text, r#"xdpctl_port_rules{protocol="udp"}"#), "2");
        assert_eq!(value(&text, "xdpctl_autoblocked_sources"), "1");
        assert_eq!(value(&text, "xdpctl_ratelimited_sources"), "5");
        assert_eq!(value(&text, "xdpctl_scrape_duration_seconds"), "0.0125");
        // Every action of the program, and no syn among the protocols (it overlaps tcp).
        assert_eq!(text.matches("xdpctl_packets_total{").count(), 5);
        assert_eq!(text.matches("xdpctl_firewall_packets_total{").count(), 4);
        assert!(!text.contains(r#"protocol="syn""#), "{text}");
    }

    #[test]
    fn each_family_has_help_then_type_once_and_the_text_ends_with_a_newline() {
        let text = render(&snapshot());
        assert!(text.ends_with('\n'));
        let mut seen = std::collections::HashSet::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(seen.insert(name.to_owned()), "{name} described twice");
                let kind = lines[i + 1]
                    .strip_prefix(&format!("# TYPE {name} "))
                    .unwrap_or_else(|| panic!("no TYPE after HELP of {name}"));
                assert!(
                    (kind == "counter") == name.ends_with("_total"),
                    "{name} is a {kind}: counters, and only they, end in _total"
                );
                assert!(
                    lines[i + 2].starts_with(name),
                    "{name} has no sample right after its TYPE"
                );
            } else if !line.starts_with("# TYPE ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(seen.contains(name), "{name} sampled before its HELP");
                assert!(name.starts_with("xdpctl_"), "{name}");
            }
        }
        assert_eq!(seen.len(), 13, "{text}");
    }

    #[test]
    fn without_interfaces_only_the_global_families_remain() {
        let text = render(&Snapshot::default());
        assert!(!text.contains("xdpctl_packets_total"), "{text}");
        assert!(!text.contains("xdpctl_program_info"), "{text}");
        assert_eq!(
            value(&text, r#"xdpctl_rules{list="block",family="ipv4"}"#),
            "0"
        );
        assert_eq!(value(&text, "xdpctl_ratelimited_sources"), "0");
    }

    #[test]
    fn a_program_without_counters_still_has_its_info() {
        let mut other = firewall_interface();
        other.program = "my_prog".into();
        other.actions = None;
        other.firewall = None;
        let text = render(&Snapshot {
            interfaces: vec![other],
            ..Snapshot::default()
        });
        assert!(text.contains(r#"program="my_prog""#), "{text}");
        assert!(!text.contains("xdpctl_packets_total"), "{text}");
        assert!(!text.contains("xdpctl_firewall_"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nbreak"), r"line\nbreak");
        assert_eq!(escape_label_value("plain-name.0"), "plain-name.0");
        // Interface names may hold quotes and backslashes (Linux forbids only '/', ':' and
        // whitespace).
        let mut iface = firewall_interface();
        iface.interface = r#"we"ird\if"#.into();
        let text = render(&Snapshot {
            interfaces: vec![iface],
            ..Snapshot::default()
        });
        assert!(
            text.contains(r#"xdpctl_packets_total{interface="we\"ird\\if",action="drop"} 3"#),
            "{text}"
        );
    }

    #[test]
    fn help_text_is_escaped_and_floats_are_spelled_as_the_format_wants() {
        assert_eq!(escape_help("a\\b\nc \"d\""), "a\\\\b\\nc \"d\"");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    }
}
