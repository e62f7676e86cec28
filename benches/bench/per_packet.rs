//! Per-packet cost: BPF_PROG_RUN of the firewall at each rule count against the trivial
//! XDP_DROP floor and xdp-filter, from one source and from random sources.

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use xdpctl::lab::testenv::{unique_name, LabGuard};
use xdpctl::skel::flood::FloodSkelBuilder;

use crate::harness::{median, rule_set_spread, run, say, v4_coverage, Scale};
use crate::probes::{
    armed_firewall, exact_block, firewall_subject, one_read_probe, pow2_floor, size_of_words,
    sprayer, subject, udp64, CleanSources, Config, Probe, Subject, EXACT_ONLY, FLOOR_WORDS,
    READ_LADDER, SMALL_SOURCE_TABLE, SPREAD,
};
use crate::report::{Report, Table, Target};

pub fn per_packet(scale: &Scale, report: &mut Report) -> Result<()> {
    say("per-packet cost (BPF_PROG_RUN)");
    let drop_storage = Box::leak(Box::new(MaybeUninit::uninit()));
    // The floor: a bare XDP_DROP (bpf/flood.bpf.c's bare_drop), with no counters at all.
    let trivial = FloodSkelBuilder::default().open(drop_storage)?.load()?;
    let trivial_fd = trivial.progs.bare_drop.as_fd();
    let floor_same = Probe::Same {
        fd: trivial_fd.as_raw_fd(),
        frame: udp64(Ipv4Addr::new(10, 0, 0, 1)),
        expect: 1,
    };
    let floor_random = Probe::Random {
        generator: Box::new(sprayer("10.0.0.0/8", trivial_fd)?),
        expect: 1,
    };
    // The one-miss floor: one random 8-byte read of a 64 MB array per packet (one_read), from
    // random sources, as a lookup of a table far larger than the cache reads at least once; and
    // the same read in smaller arrays, which shows what a random read costs at each size here.
    let one_read_random = one_read_probe(FLOOR_WORDS, false)?;
    let one_read_chained = one_read_probe(FLOOR_WORDS, true)?;
    let ladder: Vec<(u32, Probe)> = READ_LADDER
        .iter()
        .map(|&words| Ok((words, one_read_probe(words, false)?)))
        .collect::<Result<_>>()?;
    let mut best_ladder = vec![f64::MAX; ladder.len()];

    // xdp-filter, as deployed: its libxdp dispatcher on a lab interface, for the whole run.
    let xdp_filter_lab = LabGuard::setup(&unique_name("bx"))?;
    let xf_ifname = xdp_filter_lab.outer_ifname().to_owned();
    let mut keep_fds = Vec::new();
    let xdp_filter = (|| -> Result<Subject> {
        run(Command::new("xdp-filter").args(["load", &xf_ifname, "-f", "ipv4,ipv6,tcp,udp"]))?;
        let block = pow2_floor(scale.xdp_filter_ips);
        for i in 0..block {
            let addr = Ipv4Addr::from(0x6440_0000 + i).to_string();
            run(Command::new("xdp-filter").args(["ip", &addr, "-m", "src"]))?;
        }
        run(Command::new("xdp-filter").args(["port", "53", "-p", "udp", "-m", "dst"]))?;
        let ifindex = xdpctl::sys::attach::ifindex(&xf_ifname)?;
        let prog_id = xdpctl::sys::attach::query(ifindex)?
            .first()
            .context("xdp-filter attached nothing")?
            .prog_id;
        let fd = xdpctl::sys::attach::program_fd(prog_id)?;
        let subject = subject(
            "xdp-filter (ipv4,ipv6,tcp,udp)",
            format!("{block} addresses, 1 port"),
            Some(0),
            fd.as_fd(),
            &exact_block(block as usize),
            CleanSources::Unlisted,
        )?;
        keep_fds.push(fd);
        Ok(subject)
    })();
    let mut xdp_filter = match xdp_filter {
        Ok(s) => Some(s),
        Err(err) => {
            report
                .notes
                .push(format!("xdp-filter could not be measured: {err:#}"));
            None
        }
    };

    // (rules, of which ranges, the mix, a source table smaller than the default). The small
    // tables are not targets: they show what the random-source cost is made of.
    let mut configs: Vec<Config> = scale
        .rule_counts
        .iter()
        .map(|&n| Config::mixed(n))
        .collect();
    // Spread ranges against addresses only, at the largest count (the quick run's too, so the
    // harness never rots).
    let largest = *scale.rule_counts.iter().max().unwrap();
    let spread_ranges = Config::mixed(largest).ranges;
    for (mix, ranges) in [(SPREAD, spread_ranges), (EXACT_ONLY, 0)] {
        configs.push(Config {
            ranges,
            mix,
            clean: CleanSources::Anywhere,
            ..Config::mixed(largest)
        });
    }
    if !scale.quick {
        configs.push(Config {
            ranges: 500_000,
            mix: "dense: 50% ranges",
            ..Config::mixed(1_000_000)
        });
        for n in [1_000, 1_000_000] {
            configs.push(Config {
                sources: Some(SMALL_SOURCE_TABLE),
                ..Config::mixed(n)
            });
        }
    }
    // Each load of a firewall configuration is measured in rounds of its own, each running every
    // path of it, of xdp-filter and of the floor once, so a burst of noise on this machine hits
    // one round of everything rather than all of one program. A load is unloaded before the
    // next: a host holds one firewall's maps, and many sets of them at once (18 here, 2.3 GB)
    // slowed random reads by about 5 ns.
    let (mut best_floor, mut best_floor_random) = (f64::MAX, f64::MAX);
    let (mut best_one_read, mut best_chained) = (f64::MAX, f64::MAX);
    let mut round = |subjects: &mut [&mut Subject]| -> Result<()> {
        best_floor = best_floor.min(floor_same.once(scale.repeat)?);
        best_floor_random = best_floor_random.min(floor_random.once(scale.repeat)?);
        best_one_read = best_one_read.min(one_read_random.once(scale.repeat)?);
        best_chained = best_chained.min(one_read_chained.once(scale.repeat)?);
        for (best, (_, probe)) in best_ladder.iter_mut().zip(&ladder) {
            *best = best.min(probe.once(scale.repeat)?);
        }
        for subject in subjects.iter_mut() {
            for (best, probe) in subject.best.iter_mut().zip(&subject.probes) {
                *best = best.min(probe.once(scale.repeat)?);
            }
        }
        Ok(())
    };
    let mut subjects = Vec::new();
    for config in configs {
        let (n, mix) = (config.rules, config.mix);
        let rules = config.rule_set();
        let mut first: Option<Subject> = None;
        let mut loads = Vec::new();
        for load in 0..scale.instances {
            say(&format!(
                "firewall with {n} rules ({mix}), load {} of {}: {} rounds",
                load + 1,
                scale.instances,
                scale.runs
            ));
            let mut storage = MaybeUninit::uninit();
            let skel = armed_firewall(&mut storage, &rules, config.sources)?;
            let mut firewall = firewall_subject(&skel, &config)?;
            for _ in 0..scale.runs {
                match xdp_filter.as_mut() {
                    Some(xdp_filter) => round(&mut [xdp_filter, &mut firewall])?,
                    None => round(&mut [&mut firewall])?,
                }
            }
            firewall.probes.clear();
            loads.push(firewall.best);
            first.get_or_insert(firewall);
        }
        // The configuration's row: per path, the median load's best round.
        if let Some(mut firewall) = first {
            firewall.best =
                std::array::from_fn(|path| median(loads.iter().map(|best| best[path]).collect()));
            firewall.loads = loads;
            subjects.push(firewall);
        }
    }
    let subjects: Vec<Subject> = xdp_filter.into_iter().chain(subjects).collect();
    let _ = Command::new("xdp-filter")
        .args(["unload", &xf_ifname])
        .output();
    let _ = std::fs::remove_dir("/sys/fs/bpf/xdp");
    drop(xdp_filter_lab);

    // Program cost: the best measurement minus the best floor of the same kind.
    let program_cost = |s: &Subject, path: usize| {
        s.best[path]
            - if path < 2 {
                best_floor
            } else {
                best_floor_random
            }
    };
    let xf = subjects.iter().find(|s| s.name.starts_with("xdp-filter"));
    let xf_costs: Option<[f64; 4]> = xf.map(|s| std::array::from_fn(|p| program_cost(s, p)));
    let mut rows = vec![vec![
        "trivial XDP_DROP, no counters (the floor)".to_owned(),
        "-".into(),
        format!("{best_floor:.0} / {best_floor:.0}"),
        format!("{best_floor_random:.0} / {best_floor_random:.0}"),
        "0 / 0".into(),
        "0 / 0".into(),
    ]];
    let one_read_cost = best_one_read - best_floor_random;
    rows.push(vec![
        "one random 8-byte read of a 64 MB array (the one-miss floor)".to_owned(),
        "-".into(),
        "-".into(),
        format!("{best_one_read:.0}"),
        "-".into(),
        format!("{one_read_cost:.0}"),
    ]);
    for s in &subjects {
        let cost: [f64; 4] = std::array::from_fn(|p| program_cost(s, p));
        let ratio = |p: usize| match (&xf_costs, s.name.starts_with("xdp-filter")) {
            (Some(x), false) => format!(" ({:.2}x)", cost[p] / x[p]),
            _ => String::new(),
        };
        rows.push(vec![
            s.name.clone(),
            s.rules.clone(),
            format!("{:.0} / {:.0}", s.best[0], s.best[1]),
            format!("{:.0} / {:.0}", s.best[2], s.best[3]),
            format!("{:.0}{} / {:.0}{}", cost[0], ratio(0), cost[1], ratio(1)),
            format!("{:.0}{} / {:.0}{}", cost[2], ratio(2), cost[3], ratio(3)),
        ]);
    }
    report.tables.push(Table {
        title: "Per-packet cost".into(),
        intro: format!(
            "BPF_PROG_RUN of a 64-byte UDP frame, {} repetitions a run; {} rounds, each running \
             every path of every program once (and the floor), and the best round counts. Each \
             firewall configuration is loaded {} times, as a map's pages land elsewhere at each \
             load and random reads cost what they cost there: its cells are the median load's. \
             Each cell is *pass / drop* (a clean source / a blocked one) in ns. *Same source*: the \
             kernel's mean over the repetitions of one frame. *Random sources*: every \
             repetition first draws a new source (bpf/flood.bpf.c's `spray`, which then \
             tail-calls the program). *Program cost* = measured minus the floor of the same \
             kind; in brackets, its ratio to xdp-filter's for the same path. Rules are block \
             rules; the rate limit is on at a rate no source reaches, with its default prefix \
             limits, so the pass path runs the whole limiter and counts the packet's prefixes. xdp-filter holds at most 10,000 addresses (its maps' size). The \
             one-miss floor reads the word of a 64 MB array its source hashes to \
             (bpf/flood.bpf.c's `one_read`): its cost is what any lookup of a table far larger \
             than the cache costs at least.",
            xdpctl::output::numbers::thousands(scale.repeat as u64),
            scale.runs,
            scale.instances
        ),
        header: vec![
            "program",
            "rules",
            "ns, same source",
            "ns, random sources",
            "program cost, same source",
            "program cost, random sources",
        ],
        rows,
    });

    // What one random read costs by the size of the array it falls in: the yardstick of every
    // table a random source touches.
    let mut read_rows: Vec<Vec<String>> = ladder
        .iter()
        .zip(&best_ladder)
        .map(|((words, _), best)| {
            vec![
                size_of_words(*words),
                format!("{:.0}", best - best_floor_random),
            ]
        })
        .collect();
    read_rows.push(vec![
        size_of_words(FLOOR_WORDS),
        format!("{one_read_cost:.0}"),
    ]);
    let chained_cost = best_chained - best_floor_random;
    read_rows.push(vec![
        format!(
            "{}, each read waiting for the last (one_read_chained)",
            size_of_words(FLOOR_WORDS)
        ),
        format!("{chained_cost:.0}"),
    ]);
    report.tables.push(Table {
        title: "Random reads by table size".into(),
        intro:
            "One random 8-byte read per packet (bpf/flood.bpf.c's `one_read`, random sources as \
                in the table above) in an array of each size: ns of program cost over the floor, \
                the best of the same rounds. What a table a random source reaches costs here \
                depends on its size more than on anything the program does: past the caches a \
                read is a miss, and past the TLB's reach (BPF arrays are vmalloc'ed in 4 KiB \
                pages) a page walk too, two-dimensional in a VM. Quick runs (20,000 \
                repetitions) leave the larger arrays cold. In every row but the last, nothing \
                waits for a packet's read but its verdict, so the CPU runs on into the next \
                packets while the read is out and the reads of several packets overlap; the \
                last row's reads cannot, so it shows a read's latency."
                .into(),
        header: vec!["array", "ns per read"],
        rows: read_rows,
    });
    let firewall: Vec<&Subject> = subjects
        .iter()
        .filter(|s| s.name.starts_with("firewall"))
        .collect();
    let realistic = |n: usize| firewall.iter().find(|s| s.rule_count == Some(n));
    let smallest = *scale.rule_counts.iter().min().unwrap();
    if let (Some(x), Some(big)) = (&xf_costs, realistic(largest)) {
        let n = xdpctl::output::numbers::thousands(largest as u64);
        for (path, what, goal) in [
            (
                0,
                format!("pass path, {n} mixed rules, rate limit on, same source, vs xdp-filter"),
                0.8,
            ),
            (
                2,
                format!("pass path, {n} mixed rules, rate limit on, random sources, vs xdp-filter"),
                0.8,
            ),
            (
                1,
                format!("drop path (blocked source), {n} mixed rules, same source, vs xdp-filter"),
                0.5,
            ),
        ] {
            let ours = program_cost(big, path);
            report.targets.push(Target {
                what,
                measured: format!("{ours:.0} ns vs {:.0} ns = {:.2}x", x[path], ours / x[path]),
                goal: format!("≤ {goal}x"),
                met: ours / x[path] <= goal,
            });
        }
        if big.loads.len() > 1 {
            let each: Vec<String> = big
                .loads
                .iter()
                .map(|best| format!("{:.0}", best[2] - best_floor_random))
                .collect();
            report.notes.push(format!(
                "Random sources, pass path, {n} rules: the {} loads measured {} ns (the table \
                 gives the median).",
                big.loads.len(),
                each.join(", ")
            ));
        }
        // What a per-source limiter costs at best: the same rules with every source's state in
        // the cache.
        if let Some(cached) = firewall
            .iter()
            .find(|s| s.cached_sources_rules == Some(largest))
        {
            let cost = program_cost(cached, 2);
            let budget = 0.8 * x[2];
            report.notes.push(format!(
                "Random sources, pass path, {n} rules, with a source table small enough to stay in \
                 the cache ({}): {cost:.0} ns, against the target's budget of {budget:.0} ns \
                 (0.8 × xdp-filter's {:.0} ns): {} it, with every per-source access a cache hit.",
                cached.rules,
                x[2],
                if cost > budget { "over" } else { "within" }
            ));
        }
    }
    if let Some(big) = realistic(largest) {
        let cost = program_cost(big, 3);
        report.targets.push(Target {
            what: format!(
                "random blocked sources, {} mixed rules, vs one random memory read",
                xdpctl::output::numbers::thousands(largest as u64)
            ),
            measured: format!(
                "{cost:.0} ns vs {one_read_cost:.0} ns = {:.2}x",
                cost / one_read_cost
            ),
            goal: "≤ 1.5x".into(),
            met: cost / one_read_cost <= 1.5,
        });
        report.notes.push(format!(
            "Random blocked sources, {} rules: {cost:.0} ns. Whether the one-miss floor's reads \
             overlap from packet to packet: a read that waits for the last one \
             (one_read_chained) costs {chained_cost:.0} ns, {:.2}x the floor.",
            xdpctl::output::numbers::thousands(largest as u64),
            chained_cost / one_read_cost
        ));
    }
    let pair = |mix: &str| firewall.iter().find(|s| s.mix == Some(mix));
    if let (Some(spread), Some(exact)) = (pair(SPREAD), pair(EXACT_ONLY)) {
        let (a, b) = (program_cost(exact, 2), program_cost(spread, 2));
        report.targets.push(Target {
            what: format!(
                "random sources over the IPv4 space, {} rules with {} ranges spread over it, vs \
                 the same addresses alone",
                xdpctl::output::numbers::thousands(largest as u64),
                xdpctl::output::numbers::thousands(spread_ranges as u64)
            ),
            measured: format!("{b:.0} ns vs {a:.0} ns = {:.2}x", b / a),
            goal: "≤ 1.5x".into(),
            met: b / a <= 1.5,
        });
        report.notes.push(format!(
            "The spread ranges cover {:.2}% of the IPv4 space, so about that share of the random \
             sources from anywhere is dropped; the cost is the mean over both.",
            100.0 * v4_coverage(&rule_set_spread(0, spread_ranges))
        ));
    }
    if let (Some(small), Some(big)) = (realistic(smallest), realistic(largest)) {
        if largest != smallest {
            let (a, b) = (program_cost(small, 0), program_cost(big, 0));
            report.targets.push(Target {
                what: format!(
                    "cost growth from {} to {} rules, pass path, same source",
                    xdpctl::output::numbers::thousands(smallest as u64),
                    xdpctl::output::numbers::thousands(largest as u64)
                ),
                measured: format!("{a:.0} → {b:.0} ns = {:.2}x", b / a),
                goal: "≤ 1.3x".into(),
                met: b / a <= 1.3,
            });
        }
    }
    Ok(())
}
