//! `xdpctl status`'s output: the XDP programs attached to interfaces, as a table or JSON.
//! The rows are read in sys::pins; this module sees them as plain values.

use serde::Serialize;
use serde_json::Value;

/// One attached XDP program and whose it is, as `status --json` prints it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Attachment<'a> {
    pub interface: &'a str,
    pub ifindex: u32,
    pub program: &'a str,
    pub id: u32,
    pub mode: &'a str,
    /// "xdpctl", "xdpctl ROOT" (another instance's) or "other".
    pub owner: &'a str,
}

pub fn format_table(rows: &[Attachment]) -> String {
    let mut out = format!(
        "{:<16} {:>7}  {:<16} {:>6}  {:<8} {}\n",
        "INTERFACE", "IFINDEX", "PROGRAM", "ID", "MODE", "OWNER"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<16} {:>7}  {:<16} {:>6}  {:<8} {}\n",
            row.interface, row.ifindex, row.program, row.id, row.mode, row.owner
        ));
    }
    out
}

/// An array of {interface, ifindex, program, id, mode, owner}.
pub fn to_json(rows: &[Attachment]) -> Value {
    serde_json::to_value(rows).expect("an attachment is strings and numbers")
}

/// "PROGRAM (id ID, MODE, OWNER)", as a lab's status shows what its interface runs.
pub fn summary(row: &Attachment) -> String {
    format!(
        "{} (id {}, {}, {})",
        row.program, row.id, row.mode, row.owner
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: Attachment = Attachment {
        interface: "veth1",
        ifindex: 7,
        program: "xdp_pass",
        id: 42,
        mode: "native",
        owner: "xdpctl",
    };

    #[test]
    fn json_has_the_documented_fields() {
        assert_eq!(
            to_json(&[ROW]),
            serde_json::json!([{"interface": "veth1", "ifindex": 7, "program": "xdp_pass",
                                "id": 42, "mode": "native", "owner": "xdpctl"}])
        );
        assert_eq!(
            serde_json::to_string_pretty(&to_json(&[ROW])).unwrap(),
            serde_json::to_string_pretty(&[ROW]).unwrap()
        );
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let other = Attachment {
            interface: "a-very-long-name",
            ifindex: 1234,
            program: "foreign",
            id: 123456,
            mode: "skb",
            owner: "other",
        };
        assert_eq!(
            format_table(&[ROW, other]),
            "INTERFACE        IFINDEX  PROGRAM              ID  MODE     OWNER\n\
             veth1                  7  xdp_pass             42  native   xdpctl\n\
             a-very-long-name    1234  foreign          123456  skb      other\n"
        );
    }

    #[test]
    fn summary_names_program_id_mode_and_owner() {
        assert_eq!(summary(&ROW), "xdp_pass (id 42, native, xdpctl)");
    }
}
