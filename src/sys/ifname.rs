//! Interface names as the kernel accepts them. xdpctl builds paths from them (pin directories,
//! run records), so a name is checked before anything uses it: at the command line, and again
//! where a path is made from it.

/// What the kernel allows (net/core/dev.c: dev_valid_name, and '%' makes a name a template
/// like "eth%d", never a name), stated once for every message.
pub const RULE: &str = "an interface name is 1 to 15 bytes, without '/', ':', '%' or \
                        whitespace, and is not '.' or '..'";

/// Whitespace as the kernel's isspace() sees it: its ctype table is Latin-1, so the byte 0xa0
/// (no-break space) counts, and a UTF-8 name with that byte in it ("à" is c3 a0) is refused.
fn is_kernel_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0)
}

/// Why `name` is no interface name the kernel would accept, or None if it is one.
fn problem(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Some("it is empty");
    }
    if bytes.len() > 15 {
        return Some("it is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return Some("'.' and '..' name directories");
    }
    if bytes.contains(&0) {
        return Some("it contains a NUL byte");
    }
    if bytes.contains(&b'/') {
        return Some("it contains '/'");
    }
    if bytes.contains(&b':') {
        return Some("it contains ':'");
    }
    if bytes.contains(&b'%') {
        return Some("it contains '%'");
    }
    if bytes.iter().any(|&b| is_kernel_space(b)) {
        return Some("it contains whitespace");
    }
    None
}

/// Checks an interface name; the error names it (invisible characters escaped, a long one cut
/// short), says what is wrong and states the rule.
pub fn check(name: &str) -> Result<(), String> {
    match problem(name) {
        None => Ok(()),
        Some(problem) => Err(format!(
            "{} is not an interface name: {problem} ({RULE})",
            crate::input::shown(name)
        )),
    }
}

/// [`check`] as an anyhow error, for library code.
pub fn validate(name: &str) -> anyhow::Result<()> {
    check(name).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The kernel's dev_valid_name, transcribed byte for byte, plus no '%' (a template) and no
    /// NUL (a C string cannot carry one). tests/hardening_names.rs asks the kernel itself.
    fn kernel_accepts(name: &[u8]) -> bool {
        !name.is_empty()
            && name.len() < 16
            && name != b"."
            && name != b".."
            && name
                .iter()
                .all(|&b| b != 0 && b != b'/' && b != b':' && b != b'%' && !is_kernel_space(b))
    }

    #[test]
    fn accepts_real_names_and_refuses_path_tricks() {
        for good in [
            "eth0",
            "veth0",
            "a",
            "lab-1_a",
            "a234567890abcde",
            "..x",
            "x.",
            "ünï",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../rules",
            "../../../../tmp/x",
            "a/b",
            "eth0:1",
            "eth%d",
            "a b",
            "a\tb",
            "a\nb",
            "a\0b",
            "a234567890abcdef",
            "\u{a0}",
            "à",
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains("1 to 15 bytes"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn errors_show_invisible_characters() {
        let err = check("a\u{feff}\tb").unwrap_err();
        assert!(err.contains(r"a\u{feff}\tb"), "{err}");
    }

    #[test]
    fn errors_show_a_long_name_cut_short() {
        let err = check(&"x".repeat(1 << 20)).unwrap_err();
        assert!(err.len() < 1000 && err.contains("xxx…'"), "{}", &err[..200]);
    }

    proptest! {
        #[test]
        fn never_panics_and_agrees_with_the_kernel(name in "(?s).{0,20}") {
            prop_assert_eq!(check(&name).is_ok(), kernel_accepts(name.as_bytes()));
        }

        #[test]
        fn agrees_with_the_kernel_on_short_ascii(name in "[ -~\t\n\r\0]{0,17}") {
            prop_assert_eq!(check(&name).is_ok(), kernel_accepts(name.as_bytes()));
        }
    }
}
