//! Spoofed floods end to end: sources drawn at random from a /24, a /16 and a /8, each far under
//! the per-source limit, into the firewall with the rate limit and its default prefix limits.
//! How long the prefix limits take to stop each flood, and the drop rate once they have, as a
//! ratio to trivial XDP_DROP under the same random draws.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xdpctl::counters::stats::{self, StatsMaps};
use xdpctl::lab::flood;
use xdpctl::lab::testenv::{unique_name, LabGuard};

use crate::end_to_end::{lab_flood as plan, lab_stats_maps, xdp_drops};
use crate::harness::{in_lab, median, say, Scale, XDPCTL};
use crate::report::{Report, Table, Target};

/// The floods: a prefix each frame draws its source from.
const FLOODS: [&str; 3] = ["100.64.7.0/24", "100.64.0.0/16", "100.0.0.0/8"];
/// How often the receiver's counters are sampled while a flood runs.
const SAMPLE: Duration = Duration::from_millis(5);

/// (received, dropped as prefix) so far.
fn sample(maps: &StatsMaps) -> Result<(u64, u64)> {
    let actions = stats::read_counters(&maps.actions)?;
    let received = actions.0.iter().map(|a| a.packets).sum();
    let fw = stats::read_fw_counters(maps.firewall.as_ref().context("no fw_stats")?)?;
    let prefix = xdpctl::abi::FW_DROP_PREFIX as usize;
    Ok((received, fw.drop_packets[prefix]))
}

/// One flood into the firewall: the time from its start to the first sample period in which
/// prefix drops were 90% of what arrived, and the drop rate over its last second.
fn mitigate(lab: &LabGuard, source: &str, seconds: f64) -> Result<(Option<f64>, f64)> {
    let maps = lab_stats_maps(lab)?;
    let stop = AtomicBool::new(false);
    let mut samples = Vec::new();
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let flood = scope.spawn(|| flood::run(&plan(lab, source, seconds), &stop));
        while !flood.is_finished() {
            samples.push((started.elapsed().as_secs_f64(), sample(&maps)?));
            std::thread::sleep(SAMPLE);
        }
        flood.join().expect("the flood thread")?;
        Ok(())
    })?;
    samples.push((started.elapsed().as_secs_f64(), sample(&maps)?));
    let mitigated = samples.windows(2).find_map(|w| {
        let ((_, (r0, d0)), (t1, (r1, d1))) = (w[0], w[1]);
        (r1 > r0 && (d1 - d0) as f64 >= 0.9 * (r1 - r0) as f64).then_some(t1)
    });
    let end = samples.last().copied().unwrap();
    let last_second = samples
        .iter()
        .rev()
        .find(|(t, _)| end.0 - t >= 1.0)
        .copied()
        .unwrap_or(samples[0]);
    let rate = (end.1 .1 - last_second.1 .1) as f64 / (end.0 - last_second.0);
    Ok((mitigated, rate))
}

pub fn spoofed(scale: &Scale, report: &mut Report) -> Result<()> {
    say("spoofed floods against the prefix limits");
    let lab = LabGuard::setup(&unique_name("bs"))?;
    let seconds = if scale.quick { 1.5 } else { 3.0 };
    let runs = if scale.quick { 1 } else { 3 };
    let mut rows = Vec::new();
    let mut worst: Option<f64> = Some(0.0);
    for source in FLOODS {
        let (mut trivial, mut firewall, mut times) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            in_lab(&lab, &[XDPCTL, "load", "veth0", "-p", "xdp_drop"])?;
            flood::run(&plan(&lab, source, 0.3), &AtomicBool::new(false))?;
            let before = xdp_drops(&lab)?;
            let sent = flood::run(&plan(&lab, source, seconds), &AtomicBool::new(false))?;
            trivial.push((xdp_drops(&lab)? - before) as f64 / sent.seconds);
            in_lab(&lab, &[XDPCTL, "unload", "veth0"])?;

            in_lab(&lab, &[XDPCTL, "load", "veth0"])?;
            in_lab(
                &lab,
                &[
                    XDPCTL,
                    "ratelimit",
                    "set",
                    "--pps",
                    "1000",
                    "--prefix-block-for",
                    "60s",
                ],
            )?;
            let (mitigated, rate) = mitigate(&lab, source, seconds)?;
            firewall.push(rate);
            times.push(mitigated.unwrap_or(f64::INFINITY));
            for args in [
                &[XDPCTL, "unblock", "--all"][..],
                &[XDPCTL, "ratelimit", "off"],
                &[XDPCTL, "unload", "veth0"],
            ] {
                in_lab(&lab, args)?;
            }
        }
        let (trivial, firewall, time) = (median(trivial), median(firewall), median(times));
        worst = worst.filter(|_| time.is_finite()).map(|w| w.max(time));
        rows.push(vec![
            source.to_owned(),
            if time.is_finite() {
                format!("{:.0}", time * 1e3)
            } else {
                "never".into()
            },
            format!("{:.2}", firewall / 1e6),
            format!("{:.2}", trivial / 1e6),
            format!("{:.2}", firewall / trivial),
        ]);
        let ratio = firewall / trivial;
        report.targets.push(Target {
            what: format!(
                "end to end: spoofed {source} flood, once mitigated, vs trivial XDP_DROP"
            ),
            measured: format!("{ratio:.2}"),
            goal: "≥ 0.8".into(),
            met: ratio >= 0.8,
        });
    }
    report.tables.push(Table {
        title: "Spoofed floods and the prefix limits".into(),
        intro: format!(
            "`xdpctl flood --max --src PREFIX` (a random source of the prefix per frame; each \
             source sends far under its limit) into the firewall with `ratelimit set --pps 1000` \
             and the default prefix limits. Mitigated = from the flood's start to the first {} ms \
             sample of the receiver's counters in which prefix drops were ≥ 90% of what arrived \
             (the sender takes a few ms to start). Rate = prefix drops over the flood's last \
             second; trivial = xdp_drop under the same draws. Median of {runs} runs of {seconds} s.",
            SAMPLE.as_millis()
        ),
        header: vec![
            "sources",
            "mitigated after, ms",
            "dropped once mitigated, Mpps",
            "trivial XDP_DROP, Mpps",
            "ratio",
        ],
        rows,
    });
    report.targets.push(Target {
        what: "spoofed floods (/24, /16, /8): time to mitigation".into(),
        measured: worst.map_or("never".into(), |w| format!("{:.0} ms at worst", w * 1e3)),
        goal: "within 2 s".into(),
        met: worst.is_some_and(|w| w <= 2.0),
    });
    Ok(())
}
