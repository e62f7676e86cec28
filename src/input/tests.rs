//! The parsers of src/input.rs: examples, then properties over arbitrary input (proptest).

use std::io::{self, Read};

use super::rule_files::{read_with, Reading, READING};
use super::*;
use proptest::prelude::*;

/// The longest error any parser here may return for one entry: the message, the entry as shown
/// (64 characters, each at most 10 when escaped) and a suggested prefix.
const MAX_ERROR: usize = 1024;

/// A reader of `len` bytes of `fill` (no newline), counting what was read.
struct Endless {
    fill: u8,
    left: u64,
    read: u64,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        buf[..n].fill(self.fill);
        self.left -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

fn read(text: &[u8]) -> PrefixList {
    read_prefix_list(text, usize::MAX).unwrap()
}

#[test]
fn addresses_and_prefixes_parse() {
    for (text, parsed) in [
        ("203.0.113.7", "203.0.113.7/32"),
        (" 198.51.100.0/24 ", "198.51.100.0/24"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::/0", "::/0"),
    ] {
        assert_eq!(parse_prefix(text).unwrap().to_string(), parsed, "{text}");
    }
}

#[test]
fn ipv4_mapped_addresses_are_their_ipv4_address() {
    for (text, parsed) in [
        ("::ffff:192.0.2.1", "192.0.2.1/32"),
        ("::FFFF:c000:0201", "192.0.2.1/32"),
        ("::ffff:198.51.100.0/120", "198.51.100.0/24"),
        ("::ffff:0.0.0.0/96", "0.0.0.0/0"),
        // Not mapped: IPv4-compatible (deprecated), NAT64, and prefixes wider than the range.
        ("::192.0.2.1", "::c000:201/128"),
        ("64:ff9b::192.0.2.1", "64:ff9b::c000:201/128"),
        ("::/80", "::/80"),
    ] {
        assert_eq!(parse_prefix(text).unwrap().to_string(), parsed, "{text}");
    }
    let list = read(b"::ffff:192.0.2.1\n192.0.2.2\n");
    assert_eq!(list.mapped, ["192.0.2.1/32".parse::<Ipv4Net>().unwrap()]);
}

#[test]
fn the_mapped_form_of_a_prefix_is_the_ipv6_rule_older_versions_made() {
    for (v4, v6) in [
        ("192.0.2.9/32", "::ffff:192.0.2.9/128"),
        ("198.51.100.0/24", "::ffff:198.51.100.0/120"),
        ("0.0.0.0/0", "::ffff:0.0.0.0/96"),
    ] {
        let form = mapped_form(v4.parse().unwrap());
        assert_eq!(form, v6.parse::<IpNet>().unwrap(), "{v4}");
        assert!(is_mapped_rule(&form), "{form}");
        assert_eq!(parse_prefix(v6).unwrap().to_string(), v4);
    }
    for rule in [
        "192.0.2.9/32",
        "::ffff:0:0/95",
        "::/0",
        "64:ff9b::c000:209/128",
    ] {
        assert!(!is_mapped_rule(&rule.parse().unwrap()), "{rule}");
    }
}

#[test]
fn bad_prefixes_are_named() {
    for bad in [
        "203.0.113",
        "1.2.3.4/33",
        "example.com",
        "",
        "2001:db8::/129",
        "1.2.3.4/",
        "010.0.0.1",
    ] {
        let err = parse_prefix(bad).unwrap_err();
        assert!(err.contains(&format!("'{}'", bad.trim())), "{err}");
    }
    let err = parse_prefix("198.51.100.7/24").unwrap_err();
    assert!(
        err.contains("host bits") && err.contains("198.51.100.0/24"),
        "{err}"
    );
}

#[test]
fn an_entry_with_a_hidden_character_shows_it_escaped() {
    let err = parse_prefix("\u{feff}203.0.113.7").unwrap_err();
    assert!(err.starts_with(r#""\u{feff}203.0.113.7""#), "{err}");
    let err = parse_prefix("203.0.113.7\u{200b}").unwrap_err();
    assert!(err.contains(r"\u{200b}"), "{err}");
    let err = parse_prefix("1.2.3.4\0").unwrap_err();
    assert!(err.contains(r"\0"), "{err}");
    // Quotes alone are not hidden.
    assert!(parse_prefix("'x'").unwrap_err().starts_with("''x''"));
}

#[test]
fn echoed_input_is_cut_to_64_characters() {
    let long = "a".repeat(10_000_000);
    let err = parse_prefix(&long).unwrap_err();
    assert!(err.len() < 300, "{} bytes", err.len());
    assert!(err.starts_with(&format!("'{}…'", "a".repeat(64))), "{err}");
    let err = parse_duration(&"9".repeat(100_000)).unwrap_err();
    assert!(err.len() < 200 && err.contains("too long"), "{err}");
    assert!(parse_port(&"x".repeat(100_000)).unwrap_err().len() < 200);
}

#[test]
fn ports_parse_with_their_protocol() {
    assert_eq!(
        parse_port("53/udp").unwrap(),
        PortSpec {
            port: 53,
            proto: PortProto::Udp
        }
    );
    assert_eq!(parse_port("22/TCP").unwrap().proto, PortProto::Tcp);
    assert!(parse_port("53").unwrap_err().contains("53/udp"));
    assert!(parse_port("70000/tcp").is_err());
    assert!(parse_port("53/sctp").is_err());
    assert!(parse_port("http").unwrap_err().contains("PORT/PROTO"));
    for text in ["0/tcp", "65535/udp"] {
        assert_eq!(parse_port(text).unwrap().to_string(), text);
    }
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
    assert_eq!(parse_duration("3650d").unwrap(), MAX_DURATION);
    for bad in ["", "0", "0s", "5x", "m", "5m3", "-1", "1.5h", "5 m", "+5"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn durations_past_ten_years_are_too_long_not_wrapped() {
    // 2^55 s is 2^64 * 1953125 ns: `as u64` made it 0 ns.
    for huge in [
        "36028797018963968s",
        "281474976710656d",
        "3651d",
        "315360001",
        "99999999999999999999999999d",
        "18446744073709551615h1s",
    ] {
        let err = parse_duration(huge).unwrap_err();
        assert!(err.contains("too long: at most 10 years (3650d)"), "{err}");
    }
    assert_eq!(duration_ns(MAX_DURATION), 3650 * 86_400 * 1_000_000_000);
    assert_eq!(duration_ns(Duration::from_secs(u64::MAX)), u64::MAX);
}

#[test]
fn rule_files_report_every_bad_line() {
    let text = "# a list\n203.0.113.7\n\n198.51.100.0/24  # a comment\nnope\n10.0.0.1/8\n";
    let list = read(text.as_bytes());
    assert_eq!(list.bad_lines, 2);
    assert_eq!(list.bad[0].line, 5);
    assert!(list.bad[0].error.contains("'nope'"));
    assert_eq!(list.bad[1].line, 6);
    assert_eq!(list.entries, 4);
    let good = read(b"203.0.113.7\n2001:db8::/32\n");
    assert!(good.is_clean());
    assert_eq!(good.prefixes.len(), 2);
}

#[test]
fn crlf_a_bom_and_comments_in_any_encoding_are_fine() {
    let list = read(b"\xef\xbb\xbf203.0.113.7\r\n198.51.100.0/24 # caf\xe9 (Latin-1)\r\n");
    assert!(list.is_clean(), "{list:?}");
    assert_eq!(list.prefixes.len(), 2);
    // A BOM anywhere else is a hidden character in an entry, shown escaped.
    let list = read("203.0.113.7\n\u{feff}203.0.113.8\n".as_bytes());
    assert_eq!(list.bad[0].line, 2);
    assert!(list.bad[0].error.contains(r"\u{feff}"), "{list:?}");
}

#[test]
fn a_utf8_error_names_its_line() {
    let list = read(b"203.0.113.7\n\xff\xfe1.2.3.4\n203.0.113.8\n");
    assert_eq!(list.bad_lines, 1);
    assert_eq!(list.bad[0].line, 2);
    assert!(list.bad[0].error.contains("not UTF-8"), "{list:?}");
    assert_eq!(list.prefixes.len(), 2);
}

#[test]
fn a_line_past_the_limit_stops_the_reading_there() {
    let exact = format!("203.0.113.7{}\n", " ".repeat(MAX_LINE_BYTES - 11));
    assert!(read(exact.as_bytes()).is_clean());
    let over = format!(
        "203.0.113.7\n{}\n203.0.113.8\n",
        "x".repeat(MAX_LINE_BYTES + 1)
    );
    let list = read(over.as_bytes());
    assert_eq!(list.stop, Some(Stop::LineTooLong(2)));
    assert_eq!(list.prefixes.len(), 1, "nothing is read past it");
    // The last line, without a newline, too.
    let list = read(&vec![b'7'; MAX_LINE_BYTES + 1]);
    assert_eq!(list.stop, Some(Stop::LineTooLong(1)));
}

#[test]
fn a_100_mb_line_is_refused_after_reading_a_few_kb_past_the_limit() {
    for fill in [b'0', b'\0'] {
        let mut endless = Endless {
            fill,
            left: 100 << 20,
            read: 0,
        };
        let list = read_prefix_list(&mut endless, usize::MAX).unwrap();
        assert_eq!(list.stop, Some(Stop::LineTooLong(1)));
        assert!(
            endless.read <= (MAX_LINE_BYTES + READING.read) as u64,
            "read {} bytes",
            endless.read
        );
    }
}

#[test]
fn the_entry_limit_stops_a_long_file() {
    let text: String = (0..1000u32)
        .map(|i| format!("{}\n", std::net::Ipv4Addr::from(i)))
        .collect();
    let small = Reading {
        block: 256,
        read: 64,
        parallel_from: 0,
    };
    let list = read_with(text.as_bytes(), 100, small, 1).unwrap();
    assert_eq!(list.stop, Some(Stop::TooManyEntries(100)));
    // One block past the limit at most: (256 + 64) bytes of 8 or more a line.
    assert!(list.prefixes.len() <= 100 + 40, "{}", list.prefixes.len());
    assert!(read_with(text.as_bytes(), 1000, small, 1)
        .unwrap()
        .is_clean());
}

#[test]
fn large_files_parse_in_parallel_with_true_line_numbers() {
    let mut text = String::new();
    for i in 0..200_000u32 {
        text.push_str(&format!("{}\n", std::net::Ipv4Addr::from(0x0a00_0000 + i)));
    }
    assert_eq!(read(text.as_bytes()).prefixes.len(), 200_000);
    text.push_str("bogus\n");
    for i in 0..100u32 {
        text.push_str(&format!("{}\n", std::net::Ipv4Addr::from(0x0b00_0000 + i)));
    }
    text.push_str("1.2.3.4/33\n");
    for threads in [1, 2, 8] {
        let list = read_with(text.as_bytes(), usize::MAX, READING, threads).unwrap();
        let lines: Vec<usize> = list.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [200_001, 200_102], "{threads} threads");
        assert_eq!(list.prefixes.len(), 200_100);
    }
}

#[test]
fn gathering_fails_whole_on_any_bad_entry() {
    let err = gather_prefixes(&["203.0.113.7".into(), "bogus".into()], None, 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'bogus'") && err.contains("nothing was applied"),
        "{err}"
    );
    let many: Vec<String> = (0..1000).map(|i| format!("bad{i}")).collect();
    let err = gather_prefixes(&many, None, 10).unwrap_err().to_string();
    assert!(err.starts_with("1000 bad entries") && err.contains("and 980 more"));
}

#[test]
fn a_file_without_entries_is_refused() {
    let dir = std::env::temp_dir();
    for (tag, text) in [("empty", ""), ("comments", "# only\n\n   # comments\n")] {
        let path = dir.join(format!("xdpctl-input-{tag}-{}.txt", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let err = gather_prefixes(&["192.0.2.1".into()], Some(&path), 10).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let err = err.to_string();
        assert!(
            err.contains("holds no entries") && err.contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn broad_prefixes_are_those_shorter_than_8_or_16() {
    for (text, broad) in [
        ("0.0.0.0/0", true),
        ("10.0.0.0/7", true),
        ("10.0.0.0/8", false),
        ("::/0", true),
        ("2000::/15", true),
        ("2001::/16", false),
        ("::ffff:0.0.0.0/96", true),
    ] {
        assert_eq!(is_broad(&parse_prefix(text).unwrap()), broad, "{text}");
    }
    assert_eq!(share_of_addresses(0), "all");
    assert_eq!(share_of_addresses(7), "1/128 of all");
}

/// Lines a rule file may hold: good, bad, blank, commented, CRLF, BOMs, NULs, invalid UTF-8,
/// and now and then one too long.
fn file_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| std::net::Ipv4Addr::from(a).to_string().into_bytes()),
        any::<[u8; 16]>().prop_map(|a| std::net::Ipv6Addr::from(a).to_string().into_bytes()),
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, n)| {
            let net = Ipv4Net::new(a.into(), n).unwrap().trunc();
            format!("{net} # a comment\r").into_bytes()
        }),
        Just(Vec::new()),
        Just(b"# comment only".to_vec()),
        Just("\u{feff}203.0.113.7".as_bytes().to_vec()),
        Just(b"1.2.3.4\0".to_vec()),
        Just(b"\xff\xfe\xfd".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
        "\\PC{0,30}".prop_map(String::into_bytes),
        (1usize..3).prop_map(|k| vec![b'z'; MAX_LINE_BYTES + k]),
    ]
}

/// What a file means, line by line, with no blocks or threads: the reference the streamed,
/// parallel reader must agree with.
fn reference(file: &[u8]) -> (Vec<IpNet>, Vec<usize>, Option<usize>) {
    let (mut prefixes, mut bad) = (Vec::new(), Vec::new());
    for (i, mut line) in file.split(|&b| b == b'\n').enumerate() {
        if i == 0 {
            line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
        }
        if line.len() > MAX_LINE_BYTES {
            return (prefixes, bad, Some(i + 1));
        }
        let entry = line.split(|&b| b == b'#').next().unwrap();
        match std::str::from_utf8(entry).map(str::trim) {
            Ok("") => {}
            Ok(text) => match parse_prefix(text) {
                Ok(p) => prefixes.push(p),
                Err(_) => bad.push(i + 1),
            },
            Err(_) => bad.push(i + 1),
        }
    }
    (prefixes, bad, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn prefix_parsing_never_panics_and_errors_are_bounded(text in "\\PC{0,200}|.{0,200}") {
        if let Err(err) = parse_prefix(&text) {
            prop_assert!(err.len() <= MAX_ERROR, "{} bytes", err.len());
        }
    }

    #[test]
    fn addresses_round_trip(a in any::<[u8; 4]>(), b in any::<[u8; 16]>(), n in 0u8..=32) {
        let v4 = std::net::Ipv4Addr::from(a);
        prop_assert_eq!(parse_prefix(&v4.to_string()).unwrap(), IpNet::from(IpAddr::V4(v4)));
        let mapped = format!("::ffff:{v4}/{}", 96 + n);
        let net = Ipv4Net::new(v4, n).unwrap();
        match parse_prefix(&mapped) {
            Ok(parsed) => prop_assert_eq!(parsed, IpNet::V4(net)),
            Err(err) => prop_assert!(net.trunc() != net && err.contains("host bits"), "{}", err),
        }
        let v6 = std::net::Ipv6Addr::from(b);
        let parsed = parse_prefix(&v6.to_string()).unwrap();
        match v6.to_ipv4_mapped() {
            Some(v4) => prop_assert_eq!(parsed, IpNet::from(IpAddr::V4(v4))),
            None => prop_assert_eq!(parsed, IpNet::from(IpAddr::V6(v6))),
        }
    }

    #[test]
    fn port_parsing_never_panics(text in "\\PC{0,40}|[0-9]{1,7}/(tcp|udp|TCP|x)") {
        match parse_port(&text) {
            Ok(spec) => prop_assert_eq!(parse_port(&spec.to_string()), Ok(spec)),
            Err(err) => prop_assert!(err.len() <= MAX_ERROR),
        }
    }

    #[test]
    fn durations_are_exact_or_refused(n in any::<u64>(), unit in "[smhd]?", junk in "\\PC{0,20}") {
        let secs = match unit.as_str() {
            "s" | "" => 1u128, "m" => 60, "h" => 3600, _ => 86_400,
        };
        let text = format!("{n}{unit}");
        let total = u128::from(n) * secs;
        match parse_duration(&text) {
            Ok(d) => prop_assert_eq!(u128::from(d.as_secs()), total),
            Err(err) => prop_assert!(
                total == 0 || (total > u128::from(MAX_DURATION.as_secs()) && err.contains("3650d")),
                "{}: {}", text, err
            ),
        }
        if let Err(err) = parse_duration(&junk) {
            prop_assert!(err.len() <= MAX_ERROR);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_keep_bounded_errors(
        bytes in prop::collection::vec(any::<u8>(), 0..5000),
    ) {
        let list = read(&bytes);
        prop_assert!(list.bad.len() <= SHOWN_ERRORS);
        prop_assert!(list.bad.iter().all(|b| b.error.len() <= MAX_ERROR));
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
        prop_assert!(list.bad.iter().all(|b| b.line >= 1 && b.line <= lines));
    }

    /// Streamed in tiny blocks and reads, over 1 to 3 threads, a file means what it says line by
    /// line: the same prefixes, the same bad lines, the same stop.
    #[test]
    fn the_streamed_parallel_reader_agrees_with_the_line_by_line_one(
        lines in prop::collection::vec(file_line(), 0..60),
        block in 8usize..400,
        read in 1usize..300,
        threads in 1usize..4,
        newline_at_end in any::<bool>(),
    ) {
        let mut bytes = lines.join(&b'\n');
        if newline_at_end {
            bytes.push(b'\n');
        }
        let list = read_with(bytes.as_slice(), usize::MAX, Reading { block, read, parallel_from: 0 }, threads)
            .unwrap();
        let (prefixes, bad, stop) = reference(&bytes);
        prop_assert_eq!(list.stop, stop.map(Stop::LineTooLong));
        prop_assert_eq!(&list.prefixes, &prefixes);
        prop_assert_eq!(list.bad_lines, bad.len());
        let shown: Vec<usize> = list.bad.iter().map(|b| b.line).collect();
        prop_assert_eq!(shown, bad.iter().copied().take(SHOWN_ERRORS).collect::<Vec<_>>());
    }
}
