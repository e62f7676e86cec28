//! `xdpctl exporter`: Prometheus metrics over HTTP at /metrics (src/metrics.rs collects and
//! renders them). Requests are answered one at a time on this thread: a burst of scrapes queues
//! instead of running many million-rule counts at once, and each scrape opens its map fds and
//! closes them before the next.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tiny_http::{Header, Method, Response, Server, StatusCode};

use crate::cli::ExporterArgs;
use crate::metrics;
use crate::privileges;

/// How often the loop looks at the stop flag while no request comes.
const POLL: Duration = Duration::from_millis(100);

const INDEX_PAGE: &str = "<html><head><title>xdpctl exporter</title></head><body>\n\
    <h1>xdpctl exporter</h1>\n<p><a href=\"/metrics\">Metrics</a></p>\n</body></html>\n";

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Index,
    NotFound,
    MethodNotAllowed,
}

/// Routes a request by method and path (a query string is ignored). GET and HEAD are served:
/// HTTP requires both of a server, and tiny_http leaves the body out of a HEAD answer.
pub fn route(method: &Method, url: &str) -> Route {
    let path = url.split('?').next().unwrap_or_default();
    if path != "/metrics" && path != "/" {
        return Route::NotFound;
    }
    if !matches!(method, Method::Get | Method::Head) {
        return Route::MethodNotAllowed;
    }
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::Index
    }
}

pub fn run(args: &ExporterArgs) -> Result<ExitCode> {
    privileges::require("exporter")?;
    // Installed before the server is up, so a SIGTERM right after the ready line stops cleanly.
    let stop = super::stop_requested();
    let server = Server::http(args.listen).map_err(|err| bind_error(args.listen, &*err))?;
    let address = server.server_addr().to_ip().unwrap_or(args.listen);
    if !address.ip().is_loopback() {
        eprintln!(
            "note: {address} is not a loopback address: anyone who can reach it can read the \
             interfaces and rule counts"
        );
    }
    eprintln!("xdpctl exporter: serving http://{address}/metrics");
    while !stop.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(POLL) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(err) => return Err(anyhow!("accepting HTTP connections on {address}: {err}")),
        };
        let response = answer(route(request.method(), request.url()), || {
            metrics::collect().map(|snapshot| metrics::render(&snapshot))
        });
        // A scraper that hung up before its answer is its own business, not a reason to stop.
        let _ = request.respond(response);
    }
    eprintln!("xdpctl exporter: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Says why the address could not be bound, and what to do about it.
fn bind_error(listen: SocketAddr, err: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let hint = match err.downcast_ref::<io::Error>().map(io::Error::kind) {
        Some(io::ErrorKind::AddrInUse) => "another process listens there",
        Some(io::ErrorKind::AddrNotAvailable) => "no interface of this host has that address",
        Some(io::ErrorKind::PermissionDenied) => "ports below 1024 need CAP_NET_BIND_SERVICE",
        _ => "the address cannot be served",
    };
    anyhow!(
        "cannot listen on {listen} ({err}): {hint}; choose another address or port with \
         --listen ADDRESS:PORT"
    )
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid HTTP header")
}

fn text(status: u16, content_type: &str, body: String) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(StatusCode(status))
        .with_header(header("Content-Type", content_type))
}

/// The answer to a route; `scrape` renders the metrics, and runs only when they are asked for.
fn answer(route: Route, scrape: impl FnOnce() -> Result<String>) -> Response<io::Cursor<Vec<u8>>> {
    match route {
        Route::Metrics => match scrape() {
            Ok(body) => text(200, metrics::CONTENT_TYPE, body),
            Err(err) => {
                // A 500 marks the target down in Prometheus (up == 0), which is what an alert
                // should see; the log says why.
                eprintln!("xdpctl exporter: collecting metrics failed: {err:#}");
                text(
                    500,
                    "text/plain; charset=utf-8",
                    format!("collecting metrics failed: {err:#}\n"),
                )
            }
        },
        Route::Index => text(200, "text/html; charset=utf-8", INDEX_PAGE.to_owned()),
        Route::NotFound => text(
            404,
            "text/plain; charset=utf-8",
            "Not found: the metrics are at /metrics\n".to_owned(),
        ),
        Route::MethodNotAllowed => text(
            405,
            "text/plain; charset=utf-8",
            "Only GET and HEAD are served\n".to_owned(),
        )
        .with_header(header("Allow", "GET, HEAD")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_path_then_method() {
        assert_eq!(route(&Method::Get, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::Head, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::Get, "/metrics?x=1"), Route::Metrics);
        assert_eq!(route(&Method::Get, "/"), Route::Index);
        assert_eq!(route(&Method::Post, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::Delete, "/"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::Get, "/metrics/"), Route::NotFound);
        assert_eq!(route(&Method::Post, "/other"), Route::NotFound);
        assert_eq!(route(&Method::Get, "/favicon.ico"), Route::NotFound);
    }

    #[test]
    fn errors_answer_with_their_status_and_405_names_the_methods() {
        let no_scrape = || -> Result<String> { panic!("only /metrics scrapes") };
        assert_eq!(
            answer(Route::NotFound, no_scrape).status_code(),
            StatusCode(404)
        );
        let refused = answer(Route::MethodNotAllowed, no_scrape);
        assert_eq!(refused.status_code(), StatusCode(405));
        assert!(refused
            .headers()
            .iter()
            .any(|h| h.field.equiv("Allow") && h.value.as_str() == "GET, HEAD"));
        assert_eq!(
            answer(Route::Index, no_scrape).status_code(),
            StatusCode(200)
        );
    }

    #[test]
    fn metrics_answer_200_in_the_text_format_or_500_with_the_error() {
        let ok = answer(Route::Metrics, || Ok("xdpctl_rules 1\n".to_owned()));
        assert_eq!(ok.status_code(), StatusCode(200));
        assert!(ok
            .headers()
            .iter()
            .any(|h| h.field.equiv("Content-Type") && h.value.as_str() == metrics::CONTENT_TYPE));
        let failed = answer(Route::Metrics, || Err(anyhow!("reading fw_config: gone")));
        assert_eq!(failed.status_code(), StatusCode(500));
        let mut body = String::new();
        io::Read::read_to_string(&mut failed.into_reader(), &mut body).unwrap();
        assert!(body.contains("reading fw_config: gone"), "{body}");
    }

    #[test]
    fn a_busy_port_names_the_fix() {
        let err = io::Error::from(io::ErrorKind::AddrInUse);
        let message = bind_error("127.0.0.1:9435".parse().unwrap(), &err).to_string();
        assert!(message.contains("127.0.0.1:9435"), "{message}");
        assert!(
            message.contains("another process listens there"),
            "{message}"
        );
        assert!(message.contains("--listen"), "{message}");
    }
}
