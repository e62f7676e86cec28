//! The names of xdpctl's per-interface state: pin directories in bpffs and run records in
//! /run. This is the one place that knows how an interface name is written there.
//!
//! bpffs refuses (EPERM) every name with a '.' in it, and dotted interface names are common
//! (VLANs: `eth0.100`, `br-lan.5`). So '.' is written '%': no interface name has a '%' (see
//! [`crate::sys::ifname`]), which makes the encoding reversible and keeps two interfaces from ever
//! sharing a directory. An interface in another network namespace gets the suffix
//! `:ns<inode>`; no interface name has a ':' either.

use anyhow::Result;

/// What the name of a pin directory says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateName {
    pub ifname: String,
    /// The inode of the interface's network namespace; None for the initial one.
    pub netns: Option<u64>,
}

impl StateName {
    /// The state of `ifname` in the namespace `netns`, once the name is known to be an
    /// interface name (so its encoding is one plain path component).
    pub fn new(ifname: &str, netns: Option<u64>) -> Result<StateName> {
        crate::sys::ifname::validate(ifname)?;
        Ok(StateName {
            ifname: ifname.to_owned(),
            netns,
        })
    }

    /// The name as written in bpffs and /run: never '.', '..', empty, or with '/' or '.'.
    pub fn encoded(&self) -> String {
        let name = self.ifname.replace('.', "%");
        match self.netns {
            None => name,
            Some(inode) => format!("{name}:ns{inode}"),
        }
    }

    /// The inverse of [`StateName::encoded`]: None for any name it does not write (another
    /// tool's directory, a name from before the encoding with a '.', a non-canonical inode).
    pub fn decode(encoded: &str) -> Option<StateName> {
        let (name, netns) = match encoded.split_once(':') {
            None => (encoded, None),
            Some((name, suffix)) => (name, Some(suffix.strip_prefix("ns")?.parse().ok()?)),
        };
        if name.contains('.') {
            return None;
        }
        let decoded = StateName::new(&name.replace('%', "."), netns).ok()?;
        (decoded.encoded() == encoded).then_some(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn encoded(ifname: &str, netns: Option<u64>) -> String {
        StateName::new(ifname, netns).unwrap().encoded()
    }

    #[test]
    fn dotted_names_are_written_without_dots_and_read_back() {
        for (ifname, netns, written) in [
            ("eth0", None, "eth0"),
            ("eth0.100", None, "eth0%100"),
            ("br-lan.5", Some(42), "br-lan%5:ns42"),
            ("..x", None, "%%x"),
            ("x.", Some(7), "x%:ns7"),
        ] {
            assert_eq!(encoded(ifname, netns), written);
            assert_eq!(
                StateName::decode(written),
                Some(StateName {
                    ifname: ifname.to_owned(),
                    netns
                })
            );
        }
    }

    #[test]
    fn names_it_never_writes_are_not_read() {
        for foreign in [
            "",
            "%",
            "%%",
            "a.b",
            "a:b",
            "a:ns",
            "a:ns-1",
            "a:ns01",
            "a:ns1:ns2",
            "a/b",
            "a234567890abcdef",
        ] {
            assert_eq!(StateName::decode(foreign), None, "{foreign:?}");
        }
        assert!(StateName::new("eth%d", None).is_err());
        assert!(StateName::new(".", None).is_err());
    }

    /// Every name of up to 4 bytes over the bytes that matter ('.', '%', ':', '/' and those of
    /// the namespace suffix), in three namespaces: no two share an encoding.
    #[test]
    fn no_two_names_share_a_directory() {
        const BYTES: [char; 8] = ['.', '%', ':', '/', 'a', 'n', 's', '1'];
        let mut names = vec![String::new()];
        let mut seen = HashMap::new();
        for _ in 0..4 {
            names = names
                .iter()
                .flat_map(|name| BYTES.iter().map(move |&c| format!("{name}{c}")))
                .collect();
            for name in &names {
                for netns in [None, Some(1), Some(11)] {
                    let Ok(state) = StateName::new(name, netns) else {
                        continue;
                    };
                    if let Some(other) = seen.insert(state.encoded(), state.clone()) {
                        panic!("{other:?} and {state:?} share {}", state.encoded());
                    }
                }
            }
        }
        assert!(seen.len() > 1000, "only {} names", seen.len());
    }

    /// An interface name as the kernel accepts it, biased towards dots and '%'-free bytes.
    fn interface_name() -> impl Strategy<Value = String> {
        "[.a-z0-9_@#=+-]{1,15}|(?s).{1,5}".prop_filter("an interface name", |name| {
            crate::sys::ifname::check(name).is_ok()
        })
    }

    proptest! {
        #[test]
        fn the_encoding_is_one_plain_component_and_reversible(
            ifname in interface_name(),
            netns in proptest::option::of(any::<u64>()),
        ) {
            let written = encoded(&ifname, netns);
            prop_assert!(!written.is_empty() && written != "." && written != "..");
            prop_assert!(!written.contains('.') && !written.contains('/'));
            prop_assert!(!written.contains('\0'));
            let read = StateName::decode(&written);
            prop_assert_eq!(read, Some(StateName { ifname, netns }));
        }
    }
}
