//! `xdpctl trace`'s lines: an exception or a bpf_printk line of crate::trace as one line of
//! text or one JSON object.

use serde_json::{json, Value};

use crate::output::history::clock_time;
use crate::trace::{action_name, Exception, PrintkLine};

/// Round to microseconds: the clocks are no more precise than that here.
fn micros(time: f64) -> f64 {
    (time * 1e6).round() / 1e6
}

/// `HH:MM:SS.ffffff` in UTC, as `history`, `graph` and `watch` show time.
pub fn clock_text(unix_time: f64) -> String {
    let seconds = unix_time.floor();
    let micros = ((unix_time - seconds) * 1e6).round().min(999_999.0) as u32;
    format!("{}.{micros:06}", clock_time(seconds as i64))
}

/// An exception's action by name, or by number when it is no XDP action.
pub fn action_text(exception: &Exception) -> String {
    match action_name(exception.action) {
        "invalid" => format!("invalid action {}", exception.action),
        name => name.to_owned(),
    }
}

/// `12:00:01.123456 exception XDP_ABORTED program xdp_abort (id 7) on veth0 (ifindex 2)`
pub fn exception_text(exception: &Exception) -> String {
    let program = match &exception.program {
        Some(name) => format!("program {name} (id {})", exception.program_id),
        None => format!("program id {} (unloaded)", exception.program_id),
    };
    let device = match &exception.interface {
        Some(name) => format!("{name} (ifindex {})", exception.ifindex),
        None => format!(
            "ifindex {} in netns {}",
            exception.ifindex, exception.netns_inode
        ),
    };
    format!(
        "{} exception {} {program} on {device}",
        clock_text(exception.time),
        action_text(exception)
    )
}

pub fn exception_json(exception: &Exception) -> Value {
    json!({
        "type": "exception",
        "time": micros(exception.time),
        "action": action_name(exception.action),
        "action_code": exception.action,
        "program": exception.program,
        "program_id": exception.program_id,
        "interface": exception.interface,
        "ifindex": exception.ifindex,
        "netns": exception.netns_inode,
    })
}

/// `12:00:01.123456 printk    ping-1234 [001] the message`, `time` being when it was read.
pub fn printk_text(line: &PrintkLine, time: f64) -> String {
    format!(
        "{} printk    {}-{} [{:03}] {}",
        clock_text(time),
        line.task,
        line.pid,
        line.cpu,
        line.message
    )
}

pub fn printk_json(line: &PrintkLine, time: f64) -> Value {
    json!({
        "type": "printk",
        "time": micros(time),
        "task": line.task,
        "pid": line.pid,
        "cpu": line.cpu,
        "message": line.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_name_their_action_and_invalid_ones_keep_their_number() {
        let mut exception = Exception {
            time: 1_700_000_000.25,
            program_id: 7,
            program: Some("xdp_abort".into()),
            action: 0,
            ifindex: 2,
            netns_inode: 4026531840,
            interface: Some("veth0".into()),
        };
        let text = exception_text(&exception);
        assert!(
            text.ends_with(" exception XDP_ABORTED program xdp_abort (id 7) on veth0 (ifindex 2)"),
            "{text}"
        );
        let json = exception_json(&exception);
        assert_eq!(json["type"], "exception");
        assert_eq!(json["action"], "XDP_ABORTED");
        assert_eq!(json["program"], "xdp_abort");
        assert_eq!(json["interface"], "veth0");
        assert_eq!(json["time"], 1_700_000_000.25);

        exception.action = 7;
        exception.program = None;
        exception.interface = None;
        let text = exception_text(&exception);
        assert!(
            text.ends_with(
                " exception invalid action 7 program id 7 (unloaded) on ifindex 2 in netns \
                 4026531840"
            ),
            "{text}"
        );
        let json = exception_json(&exception);
        assert_eq!(
            (json["action"].as_str(), json["action_code"].as_u64()),
            (Some("invalid"), Some(7))
        );
        assert!(json["program"].is_null() && json["interface"].is_null());
        assert_eq!(json["netns"], 4026531840u32);
    }

    #[test]
    fn printk_json_and_text_carry_every_field() {
        let line = PrintkLine {
            task: "ping".into(),
            pid: 5,
            cpu: 1,
            message: "hello".into(),
        };
        let json = printk_json(&line, 10.5);
        assert_eq!(json["type"], "printk");
        assert_eq!(
            (json["pid"].as_u64(), json["cpu"].as_u64()),
            (Some(5), Some(1))
        );
        assert_eq!(json["message"], "hello");
        assert!(printk_text(&line, 10.5).ends_with(" printk    ping-5 [001] hello"));
    }

    #[test]
    fn clock_text_has_microseconds() {
        let text = clock_text(1_000.000_25);
        assert!(text.ends_with(".000250") && text.len() == 15, "{text}");
    }
}
