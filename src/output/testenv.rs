//! `xdpctl testenv`'s output: a lab, its addresses and what its outer interface runs.

use crate::lab::testenv::{Lab, INNER_IFNAME};
use crate::output::status::{self, Attachment};

/// Three lines: the lab's name and state, its outside end with the attached XDP program
/// (`xdp`, if any), and its inside end. `alive` is what `Lab::is_alive` found.
pub fn describe(lab: &Lab, alive: bool, xdp: Option<&Attachment>) -> String {
    let state = if alive { "up" } else { "BROKEN (tear it down)" };
    let xdp = xdp.map_or_else(|| "none".into(), status::summary);
    format!(
        "Lab '{name}' [{state}]\n  outside: {name:<8} {} {} (root namespace)  XDP: {xdp}\n  \
         inside:  {INNER_IFNAME:<8} {} {} (namespace {name})",
        lab.outer_ipv4(),
        lab.outer_ipv6(),
        lab.inner_ipv4(),
        lab.inner_ipv6(),
        name = lab.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Lab {
        Lab {
            name: "xdptest".into(),
            index: 3,
        }
    }

    #[test]
    fn a_live_lab_with_a_program() {
        let xdp = Attachment {
            interface: "xdptest",
            ifindex: 9,
            program: "xdp_pass",
            id: 17,
            mode: "native",
            owner: "xdpctl",
        };
        assert_eq!(
            describe(&lab(), true, Some(&xdp)),
            "Lab 'xdptest' [up]\n  outside: xdptest  10.11.3.1 fc00:dead:cafe:3::1 (root namespace)  \
             XDP: xdp_pass (id 17, native, xdpctl)\n  inside:  veth0    10.11.3.2 fc00:dead:cafe:3::2 \
             (namespace xdptest)"
        );
    }

    #[test]
    fn a_broken_lab_without_a_program() {
        let text = describe(&lab(), false, None);
        assert!(
            text.starts_with("Lab 'xdptest' [BROKEN (tear it down)]\n"),
            "{text}"
        );
        assert!(text.contains("(root namespace)  XDP: none\n"), "{text}");
    }
}
