//! `xdpctl status`: which interfaces carry an XDP program, and whose it is.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::parsers::interface_name;
use crate::sys::pins::{attached_programs, Row};
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this interface.
    #[arg(value_parser = interface_name)]
    pub interface: Option<String>,

    /// Print a JSON array of {interface, ifindex, program, id, mode, owner}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &StatusArgs) -> Result<ExitCode> {
    privileges::require("status")?;
    let rows = attached_programs(args.interface.as_deref())?;
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
