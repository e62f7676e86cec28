//! `xdpctl exporter` against hostile local clients, over real TCP on loopback: a huge
//! Content-Length, a body announced and never sent, thousands of pipelined requests whose
//! answers are never read, hundreds of silent connections under a low fd limit, an 8 MB
//! request line and 100 MiB of headers. During each attack the exporter must answer a normal
//! scrape within SCRAPE_BOUND, and afterwards its fds and RSS must be back where they were.
//!
//! XDPCTL_EXPORTER_BIN=/path/to/xdpctl runs these against another build (an older one, to see
//! them fail); the default is this crate's binary.

mod common;
// In a folder of its own, so that cargo does not take it for a test crate.
#[path = "hardening_exporter/harness.rs"]
mod harness;

use std::io::Write;
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use harness::*;

#[test]
fn a_huge_content_length_is_refused_unread_and_the_exporter_stays_up() {
    require_root!();
    let fw = Instance::new();
    let mut exporter = Exporter::start(&fw, None);
    let mut held = Vec::new();
    for request in [
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999\r\n\r\n",
        "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 1073741824\r\n\r\n",
    ] {
        let mut stream = exporter.connect();
        stream.write_all(request.as_bytes()).unwrap();
        // Refused at once, and closed: no 100 Continue, nothing read or stored.
        let answer = read_until_closed(&mut stream, SCRAPE_TIMEOUT);
        exporter.assert_alive(request);
        let answer = answer.unwrap_or_else(|err| panic!("{request:?}: {err}"));
        assert!(
            answer.starts_with("HTTP/1.1 4"),
            "{request:?} got {answer:.300}"
        );
        assert!(!answer.contains("100 Continue"), "{answer:.300}");
        held.push(stream);
    }
    exporter.assert_prompt("requests announcing huge bodies");
    drop(held);
    exporter.assert_recovered("requests announcing huge bodies");
    exporter.terminate();
}

#[test]
fn a_body_announced_and_never_sent_stalls_no_one() {
    require_root!();
    let fw = Instance::new();
    let mut exporter = Exporter::start(&fw, None);
    // Ten clients announce a body and send none of it, and keep their connections open. The
    // old server read a small one (up to 1 KiB) on the connection's thread, and waited for a
    // larger one on its only worker, stalling every other scrape.
    let mut held: Vec<TcpStream> = [100, 100_000]
        .repeat(5)
        .into_iter()
        .map(|length| {
            let mut stream = exporter.connect();
            let request = format!(
                "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).unwrap();
            stream
        })
        .collect();
    exporter.assert_prompt("10 bodies announced and never sent");
    for stream in &mut held {
        let answer = read_until_closed(stream, SCRAPE_TIMEOUT)
            .unwrap_or_else(|err| panic!("an announced body: {err}"));
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.300}");
    }
    drop(held);
    exporter.assert_recovered("10 bodies announced and never sent");
    exporter.terminate();
}

#[test]
fn thousands_of_pipelined_requests_never_read_hold_nothing_for_long() {
    require_root!();
    // With a firewall loaded, an answer is about 4 KB, and 3,000 of them overflow the
    // buffers of an unread connection (about 1 KB each, without, would all fit).
    let fw = Instance::new();
    let lab = lab();
    fw.ok(&["load", lab.outer_ifname()]);
    let mut exporter = Exporter::start(&fw, None);
    let stream = exporter.connect();
    // A small receive window, so that the unread answers fill it soon.
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    let requests = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(3000);
    let total = requests.len();
    let writer = flood_writer(stream, requests, Vec::new(), total);
    exporter.assert_prompt("3,000 pipelined requests never read");
    let (stream, written) = writer.join().unwrap();
    // The attacker keeps its connection open, reading nothing: the exporter must let it go by
    // itself, once its write timeout (10 s) passes with no progress.
    let started = Instant::now();
    let released = loop {
        exporter.assert_alive("3,000 pipelined requests never read");
        if exporter.fds() <= exporter.baseline_fds {
            break true;
        }
        if started.elapsed() >= Duration::from_secs(30) {
            break false;
        }
        sleep(Duration::from_millis(200));
    };
    eprintln!(
        "the unread connection was released after {:?} (the client wrote {written} of {total} \
         bytes)",
        started.elapsed()
    );
    assert!(
        released,
        "the exporter still holds the unread connection (it has {} fds, {} before; the client \
         wrote {written} of {total} bytes)",
        exporter.fds(),
        exporter.baseline_fds
    );
    drop(stream);
    exporter.assert_recovered("3,000 pipelined requests never read");
    exporter.terminate();
}

#[test]
fn six_hundred_silent_connections_under_a_low_fd_limit_neither_kill_nor_block_it() {
    require_root!();
    let fw = Instance::new();
    // 256 fds: the old server, with two per connection and a thread each, ran out of them at
    // about 120 connections.
    let mut exporter = Exporter::start(&fw, Some(256));
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], exporter.port()));
    let mut silent = Vec::new();
    for _ in 0..600 {
        if let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
            silent.push(stream);
        }
    }
    exporter.assert_alive("600 silent connections");
    // Every connect is taken (the server accepts and, past its cap, closes the longest idle).
    assert_eq!(
        silent.len(),
        600,
        "connects refused or timed out:\n{}",
        exporter.stderr()
    );
    exporter.assert_prompt("600 silent connections");
    let fds = exporter.fds();
    eprintln!(
        "with 600 silent connections: {fds} fds (before: {})",
        exporter.baseline_fds
    );
    assert!(
        fds <= exporter.baseline_fds + MAX_CONNECTIONS + 2,
        "{fds} fds: the connection cap does not hold"
    );
    drop(silent);
    exporter.assert_recovered("600 silent connections");
    exporter.terminate();
}

#[test]
fn an_8_mb_request_line_and_100_mib_of_headers_are_cut_short() {
    require_root!();
    let fw = Instance::new();
    let mut exporter = Exporter::start(&fw, None);
    let mut writers = Vec::new();
    // Three clients each, as in the report: a request line of 8 MB, and 100 MiB of headers.
    for _ in 0..3 {
        writers.push(flood_writer(
            exporter.connect(),
            b"GET /".to_vec(),
            vec![b'a'; 64 * 1024],
            8 * 1000 * 1000,
        ));
        writers.push(flood_writer(
            exporter.connect(),
            b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_vec(),
            format!("X-Padding: {}\r\n", "p".repeat(1000))
                .repeat(64)
                .into_bytes(),
            100 * 1024 * 1024,
        ));
    }
    exporter.assert_prompt("8 MB request lines and 100 MiB headers");
    // VmRSS while they are sent, until every writer is done (the server closed, or took no
    // more for SCRAPE_TIMEOUT).
    let mut peak = exporter.rss_kib();
    while writers.iter().any(|writer| !writer.is_finished()) {
        peak = peak.max(exporter.rss_kib());
        sleep(Duration::from_millis(20));
    }
    let (streams, written): (Vec<TcpStream>, Vec<usize>) =
        writers.into_iter().map(|w| w.join().unwrap()).unzip();
    exporter.assert_alive("8 MB request lines and 100 MiB headers");
    eprintln!(
        "8 MB request lines and 100 MiB headers: VmRSS {} -> {peak} KiB at most while they were \
         sent; the client wrote {written:?} bytes",
        exporter.baseline_rss
    );
    assert!(
        peak <= exporter.baseline_rss + RSS_PEAK_TOLERANCE_KIB,
        "VmRSS rose from {} to {peak} KiB",
        exporter.baseline_rss
    );
    for (mut stream, bytes) in streams.into_iter().zip(written) {
        // The server answered (431 or 414) and closed, or reset the connection.
        let answer = read_until_closed(&mut stream, SCRAPE_TIMEOUT)
            .unwrap_or_else(|err| panic!("after {bytes} bytes of one request: {err}"));
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{answer:.300}"
        );
    }
    exporter.assert_recovered("8 MB request lines and 100 MiB headers");
    exporter.terminate();
}

#[test]
fn many_pipelining_connections_cannot_queue_a_scrape_behind_their_collections() {
    require_root!();
    // With the rule maps pinned, a collection takes about 50 ms here (most of it loading the
    // counting program), whatever the number of rules.
    let fw = Instance::new();
    fw.ok(&["block", "192.0.2.1"]);
    let mut exporter = Exporter::start(&fw, None);
    let alone = (0..3).map(|_| exporter.scrape().unwrap()).min().unwrap();
    // The bound of the other attacks is less than two such collections: here it is twice a
    // lone scrape, which a scrape joining the collection in progress meets.
    let bound = SCRAPE_BOUND.max(alone * 2);
    eprintln!("a scrape with the rule maps pinned, alone: {alone:?} (the bound: {bound:?})");
    // 16 connections, each with 200 scrapes pipelined and never read: a request always waits
    // on each. Queued one after another, a scrape would wait for 16 collections.
    let request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(200);
    let writers: Vec<_> = (0..16)
        .map(|_| {
            flood_writer(
                exporter.connect(),
                request.clone(),
                Vec::new(),
                request.len(),
            )
        })
        .collect();
    exporter.assert_prompt_within("16 connections pipelining 200 scrapes each", bound);
    let streams: Vec<TcpStream> = writers.into_iter().map(|w| w.join().unwrap().0).collect();
    drop(streams);
    exporter.assert_recovered("16 connections pipelining 200 scrapes each");
    exporter.terminate();
}

#[test]
fn a_trickled_request_head_and_an_idle_kept_alive_connection_are_closed_in_time() {
    require_root!();
    let fw = Instance::new();
    let mut exporter = Exporter::start(&fw, None);
    // A kept-alive connection after one scrape, then silent.
    let mut idle = exporter.connect();
    idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let answer = read_one_answer(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.300}");
    // A request head sent a byte every 500 ms (ten clients), which never ends.
    let tricklers: Vec<_> = (0..10)
        .map(|_| {
            let mut stream = exporter.connect();
            let reader = stream.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                let started = Instant::now();
                if stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    .is_err()
                {
                    return;
                }
                while started.elapsed() < Duration::from_secs(20) {
                    if stream.write_all(b"a").is_err() {
                        return;
                    }
                    sleep(Duration::from_millis(500));
                }
            });
            (reader, writer)
        })
        .collect();
    exporter.assert_prompt("an idle kept-alive connection and 10 trickled request heads");
    // hyper's header read timeout (10 s) closes both kinds; a margin for a loaded machine.
    let started = Instant::now();
    let within = Duration::from_secs(15);
    read_until_closed(&mut idle, within)
        .unwrap_or_else(|err| panic!("the idle kept-alive connection: {err}"));
    eprintln!(
        "the idle kept-alive connection was closed {:?} after its answer",
        started.elapsed()
    );
    for (mut reader, writer) in tricklers {
        let left = within.saturating_sub(started.elapsed());
        read_until_closed(&mut reader, left)
            .unwrap_or_else(|err| panic!("a trickled request head: {err}"));
        writer.join().unwrap();
    }
    eprintln!(
        "the trickled request heads were closed by {:?} after the idle one's answer",
        started.elapsed()
    );
    exporter.assert_recovered("an idle kept-alive connection and 10 trickled request heads");
    exporter.terminate();
}
