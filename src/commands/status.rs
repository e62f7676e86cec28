//! `xdpctl status`: which interfaces carry an XDP program, and whose it is.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::attach;
use crate::cli::StatusArgs;
use crate::pins::{self, Owner};
use crate::privileges;

/// One attached program, as `status --json` prints it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    pub interface: String,
    pub ifindex: u32,
    pub program: String,
    pub id: u32,
    pub mode: String,
    /// "xdpctl" or "other".
    pub owner: String,
}

pub fn run(args: &StatusArgs) -> Result<ExitCode> {
    privileges::require("status")?;
    let rows = rows(args.interface.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        match &args.interface {
            Some(ifname) => println!("{ifname}: no XDP program"),
            None => println!("No interface has an XDP program."),
        }
    } else {
        print!("{}", format_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every XDP attachment on the given interface, or on all interfaces.
pub fn rows(only: Option<&str>) -> Result<Vec<Row>> {
    let interfaces = match only {
        Some(ifname) => vec![(attach::ifindex(ifname)?, ifname.to_owned())],
        None => attach::interfaces()?,
    };
    let mut rows = Vec::new();
    for (ifindex, ifname) in interfaces {
        let attachments = match attach::query(ifindex) {
            Ok(found) => found,
            // The interface vanished while we listed: nothing attached there any more.
            Err(_) if only.is_none() => continue,
            Err(err) => return Err(err),
        };
        for attachment in attachments {
            let program = attach::program_summary(attachment.prog_id)
                .map(|p| p.name)
                .unwrap_or_else(|_| "?".into());
            let owner = match pins::owner(&ifname, ifindex, &attachment) {
                Owner::Other => "other",
                Owner::Pinned { .. } | Owner::Foreground { .. } => "xdpctl",
            };
            rows.push(Row {
                interface: ifname.clone(),
                ifindex,
                program,
                id: attachment.prog_id,
                mode: attachment.mode.to_string(),
                owner: owner.to_owned(),
            });
        }
    }
    Ok(rows)
}

pub fn format_table(rows: &[Row]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_documented_fields() {
        let row = Row {
            interface: "veth1".into(),
            ifindex: 7,
            program: "xdp_pass".into(),
            id: 42,
            mode: "native".into(),
            owner: "xdpctl".into(),
        };
        let value = serde_json::to_value(vec![row.clone()]).unwrap();
        assert_eq!(
            value,
            serde_json::json!([{"interface": "veth1", "ifindex": 7, "program": "xdp_pass",
                                "id": 42, "mode": "native", "owner": "xdpctl"}])
        );
        let table = format_table(&[row]);
        assert!(table.lines().next().unwrap().starts_with("INTERFACE"));
        assert!(table.lines().nth(1).unwrap().contains("xdp_pass"));
    }
}
