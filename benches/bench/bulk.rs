//! Bulk rules and memory: `xdpctl block --file` of a large list against `ipset restore`, and
//! the kernel memory of the firewall's maps with and without it.

use std::fs::File;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use xdpctl::lab::testenv::{unique_name, LabGuard};

use crate::harness::{in_lab, median, rule_set, run, say, Scale, XDPCTL};
use crate::report::{Report, Table, Target};

/// Runs a child and returns (seconds, peak RSS in KiB).
fn timed(command: &mut Command) -> Result<(f64, u64)> {
    let started = Instant::now();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage are valid out-pointers.
    let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if ret < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{command:?} failed");
    }
    Ok((seconds, usage.ru_maxrss as u64))
}

pub fn bulk_and_memory(scale: &Scale, report: &mut Report) -> Result<()> {
    say("bulk rule loads and memory");
    let n = scale.bulk;
    let rules = rule_set(n - n / 100, n / 100);
    let dir = std::env::temp_dir();
    let list = dir.join(format!("xdpctl-bench-{}.txt", std::process::id()));
    // ipset twice: as commonly set up (default hashsize, room raised with maxelem), and
    // presized for the list (its best case).
    let restore = dir.join(format!("xdpctl-bench-{}.ipset", std::process::id()));
    let presized = dir.join(format!(
        "xdpctl-bench-{}-presized.ipset",
        std::process::id()
    ));
    {
        let mut f = std::io::BufWriter::new(File::create(&list)?);
        let mut r = std::io::BufWriter::new(File::create(&restore)?);
        let mut p = std::io::BufWriter::new(File::create(&presized)?);
        writeln!(r, "create xb hash:net family inet maxelem {}", 2 * n)?;
        writeln!(
            p,
            "create xb hash:net family inet hashsize {} maxelem {}",
            n.next_power_of_two(),
            2 * n
        )?;
        for rule in &rules {
            writeln!(f, "{rule}")?;
            writeln!(r, "add xb {rule}")?;
            writeln!(p, "add xb {rule}")?;
        }
    }
    let lab = LabGuard::setup(&unique_name("bb"))?;
    let base_root = std::env::var("XDPCTL_PIN_ROOT")?;
    let mut loads = Vec::new();
    let mut unloads = Vec::new();
    let mut rss = Vec::new();
    let mut ipsets = Vec::new();
    let mut ipsets_presized = Vec::new();
    let mut memlock_empty = 0;
    let mut memlock_full = 0;
    for i in 0..scale.bulk_runs {
        // A fresh instance each time, its firewall loaded (maps created) before the timed block.
        let root = format!("{base_root}-bulk{i}");
        let env = |c: &mut Command| {
            c.env("XDPCTL_PIN_ROOT", &root);
        };
        let mut load = Command::new(XDPCTL);
        env(&mut load);
        load.args(["load", lab.outer_ifname()]);
        run(&mut load)?;
        if i == 0 {
            memlock_empty = memlock(lab.outer_ifname())?;
        }
        let mut block = Command::new(XDPCTL);
        env(&mut block);
        let (seconds, peak) = timed(block.args(["block", "--file", list.to_str().unwrap()]))?;
        loads.push(seconds);
        rss.push(peak as f64);
        if i == 0 {
            memlock_full = memlock(lab.outer_ifname())?;
        }
        let mut unblock = Command::new(XDPCTL);
        env(&mut unblock);
        unloads.push(timed(unblock.args(["unblock", "--all"]))?.0);
        let mut unload = Command::new(XDPCTL);
        env(&mut unload);
        run(unload.args(["unload", "--all"]))?;

        for (file, times) in [(&restore, &mut ipsets), (&presized, &mut ipsets_presized)] {
            let started = Instant::now();
            run(Command::new(XDPCTL)
                .args([
                    "testenv",
                    "exec",
                    "--name",
                    lab.outer_ifname(),
                    "--",
                    "ipset",
                    "-exist",
                    "restore",
                ])
                .stdin(File::open(file)?))?;
            times.push(started.elapsed().as_secs_f64());
            in_lab(&lab, &["ipset", "destroy", "xb"])?;
        }
    }
    for file in [&list, &restore, &presized] {
        std::fs::remove_file(file)?;
    }
    let (load, unload) = (median(loads), median(unloads));
    let n_text = xdpctl::output::numbers::thousands(n as u64);
    // The two ipset set-ups, each a table row and a target.
    let ipsets = [
        ("default hashsize", "as commonly set up", median(ipsets)),
        (
            "presized hashsize",
            "presized (its best case)",
            median(ipsets_presized),
        ),
    ];
    let mut rows = vec![vec![
        format!("xdpctl block --file ({n_text})"),
        format!("{load:.2}"),
        "1.00".into(),
    ]];
    for (setup, _, seconds) in ipsets {
        rows.push(vec![
            format!("ipset restore ({n_text}), {setup}"),
            format!("{seconds:.2}"),
            format!("{:.2}", seconds / load),
        ]);
    }
    rows.push(vec![
        format!("xdpctl unblock --all ({n_text})"),
        format!("{unload:.2}"),
        "-".into(),
    ]);
    report.tables.push(Table {
        title: "Bulk rules".into(),
        intro: format!(
            "{n_text} prefixes (99% addresses, 1% ranges). xdpctl: `block --file` into an \
             instance where the firewall is loaded (its maps exist, empty), then `unblock --all`. ipset: \
                          `ipset restore` of the same list into a `hash:net` set created by the restore \
             file, with the default hashsize (maxelem raised to fit) and presized, inside a \
             lab's namespace. Median of {} runs.",
            scale.bulk_runs
        ),
        header: vec!["operation", "seconds", "ratio"],
        rows,
    });
    for (_, setup, seconds) in ipsets {
        report.targets.push(Target {
            what: format!("loading {n_text} prefixes, vs ipset restore {setup}"),
            measured: format!(
                "{load:.2} s; ipset {seconds:.2} s = {:.1}x faster",
                seconds / load
            ),
            goal: "≤ 2 s and ≥ 4x faster".into(),
            met: load <= 2.0 && seconds / load >= 4.0,
        });
    }
    report.tables.push(Table {
        title: "Memory".into(),
        intro: "Kernel memory of every map the firewall uses (bpftool's memlock, global rule maps \
                and per-interface counters), and the peak RSS of `xdpctl block --file`."
            .into(),
        header: vec!["what", "MiB"],
        rows: vec![
            vec![
                "firewall maps at default sizes, no rules".into(),
                format!("{:.1}", memlock_empty as f64 / 1048576.0),
            ],
            vec![
                format!("firewall maps with {n_text} rules"),
                format!("{:.1}", memlock_full as f64 / 1048576.0),
            ],
            vec![
                format!("xdpctl peak RSS loading {n_text} rules"),
                format!("{:.1}", median(rss) / 1024.0),
            ],
        ],
    });
    Ok(())
}

/// The summed memlock of the maps of the XDP program on `ifname`.
fn memlock(ifname: &str) -> Result<u64> {
    let ifindex = xdpctl::sys::attach::ifindex(ifname)?;
    let prog = xdpctl::sys::attach::query(ifindex)?
        .first()
        .context("nothing attached")?
        .prog_id;
    let mut total = 0;
    for id in xdpctl::sys::attach::program_summary(prog)?.map_ids {
        let out = run(Command::new("bpftool").args(["-j", "map", "show", "id", &id.to_string()]))?;
        let map: serde_json::Value = serde_json::from_str(&out)?;
        total += map["bytes_memlock"].as_u64().unwrap_or(0);
    }
    Ok(total)
}
