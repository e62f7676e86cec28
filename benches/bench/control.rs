//! Control plane: how long `xdpctl load` takes, and the CPU `xdpctl stats` uses while it
//! watches.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use xdpctl::lab::testenv::{unique_name, LabGuard};

use crate::harness::{median, say, xdpctl, Scale, XDPCTL};
use crate::report::{Report, Table, Target};

pub fn control_plane(scale: &Scale, report: &mut Report) -> Result<()> {
    say("control plane");
    let lab = LabGuard::setup(&unique_name("bc"))?;
    let ifname = lab.outer_ifname();
    let mut loads = Vec::new();
    for _ in 0..scale.load_runs {
        let started = Instant::now();
        xdpctl(&["load", ifname])?;
        loads.push(started.elapsed().as_secs_f64());
        xdpctl(&["unload", ifname])?;
    }
    xdpctl(&["load", ifname])?;
    let mut stats = Command::new(XDPCTL)
        .args(["stats", ifname, "--interval", "1"])
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(1));
    let ticks = |pid: u32| -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
    };
    let t0 = ticks(stats.id())?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(scale.stats_seconds));
    let t1 = ticks(stats.id())?;
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stats.kill();
    let _ = stats.wait();
    xdpctl(&["unload", "--all"])?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (t1 - t0) as f64 / hz / elapsed * 100.0;
    let load = median(loads);
    report.tables.push(Table {
        title: "Control plane".into(),
        intro: format!(
            "`xdpctl load` of the firewall (verification included), median of {}; the CPU \
             `xdpctl stats --interval 1` uses, over {} s (/proc utime + stime, {} Hz ticks).",
            scale.load_runs, scale.stats_seconds, hz
        ),
        header: vec!["what", "figure"],
        rows: vec![
            vec![
                "xdpctl load (firewall)".into(),
                format!("{:.0} ms", load * 1000.0),
            ],
            vec![
                "xdpctl stats --interval 1".into(),
                format!("{cpu:.2}% of a core"),
            ],
        ],
    });
    report.targets.push(Target {
        what: "`xdpctl stats` at a 1 s interval".into(),
        measured: format!("{cpu:.2}% of a core"),
        goal: "< 1%".into(),
        met: cpu < 1.0,
    });
    Ok(())
}
