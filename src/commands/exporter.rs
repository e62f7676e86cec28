//! `xdpctl exporter`: Prometheus metrics over HTTP at /metrics (src/counters/metrics.rs collects and
//! renders them). This file routes requests and builds the answers; `server` serves them, with a
//! bound on everything one client can make the exporter hold.

mod server;

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};

use super::parsers::listen_address;
use crate::counters::metrics;
use crate::output::prometheus;
use crate::sys::privileges;

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// The address and port to serve on. Loopback by default: the metrics name interfaces and
    /// rule counts, so expose them wider only on purpose.
    #[arg(long, value_name = "ADDRESS:PORT", default_value = "127.0.0.1:9435", value_parser = listen_address)]
    pub listen: std::net::SocketAddr,
}

const INDEX_PAGE: &str = "<html><head><title>xdpctl exporter</title></head><body>\n\
    <h1>xdpctl exporter</h1>\n<p><a href=\"/metrics\">Metrics</a></p>\n</body></html>\n";

/// An answer, whole in memory: the largest one is a metrics body.
type Answer = Response<Full<Bytes>>;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Index,
    NotFound,
    MethodNotAllowed,
    /// The request announced a body. None is ever read: the answer is 413 and the connection is
    /// closed, so a client cannot make the exporter wait for, or store, bytes it never needs.
    BodyRefused,
}

/// Routes a request by method and path (the path of the URI, without its query), and by whether
/// it announces a body (a non-zero Content-Length, or chunks). GET and HEAD are served: HTTP
/// requires both of a server, and hyper leaves the body out of a HEAD answer.
pub fn route(method: &Method, path: &str, announces_body: bool) -> Route {
    if announces_body {
        return Route::BodyRefused;
    }
    if path != "/metrics" && path != "/" {
        return Route::NotFound;
    }
    if method != Method::GET && method != Method::HEAD {
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
    let listener = server::bind(args.listen).map_err(|err| bind_error(args.listen, &err))?;
    let address = listener.local_addr().unwrap_or(args.listen);
    if !address.ip().is_loopback() {
        eprintln!(
            "note: {address} is not a loopback address: anyone who can reach it can read the \
             interfaces and rule counts"
        );
    }
    eprintln!("xdpctl exporter: serving http://{address}/metrics");
    server::serve(listener, stop, || {
        metrics::collect().map(|snapshot| prometheus::render(&snapshot))
    })?;
    eprintln!("xdpctl exporter: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Says why the address could not be bound, and what to do about it.
fn bind_error(listen: SocketAddr, err: &io::Error) -> anyhow::Error {
    let hint = match err.kind() {
        io::ErrorKind::AddrInUse => "another process listens there",
        io::ErrorKind::AddrNotAvailable => "no interface of this host has that address",
        io::ErrorKind::PermissionDenied => "ports below 1024 need CAP_NET_BIND_SERVICE",
        _ => "the address cannot be served",
    };
    anyhow::anyhow!(
        "cannot listen on {listen} ({err}): {hint}; choose another address or port with \
         --listen ADDRESS:PORT"
    )
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer
}

/// The answer to a route; `scrape` renders the metrics, and runs only when they are asked for.
fn answer(route: Route, scrape: impl FnOnce() -> Result<String>) -> Answer {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match route {
        Route::Metrics => match scrape() {
            Ok(body) => text(StatusCode::OK, prometheus::CONTENT_TYPE, body),
            Err(err) => {
                // A 500 marks the target down in Prometheus (up == 0), which is what an alert
                // should see; the log says why.
                eprintln!("xdpctl exporter: collecting metrics failed: {err:#}");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    PLAIN,
                    format!("collecting metrics failed: {err:#}\n"),
                )
            }
        },
        Route::Index => text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            INDEX_PAGE.to_owned(),
        ),
        Route::NotFound => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "Not found: the metrics are at /metrics\n".to_owned(),
        ),
        Route::MethodNotAllowed => {
            let mut refused = text(
                StatusCode::METHOD_NOT_ALLOWED,
                PLAIN,
                "Only GET and HEAD are served\n".to_owned(),
            );
            refused
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            refused
        }
        Route::BodyRefused => {
            let mut refused = text(
                StatusCode::PAYLOAD_TOO_LARGE,
                PLAIN,
                "The exporter reads no request body: send GET or HEAD without one\n".to_owned(),
            );
            // The unread body would be taken for the next request: this connection ends here.
            refused
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn routes_by_body_then_path_then_method() {
        let get = Method::GET;
        assert_eq!(route(&get, "/metrics", false), Route::Metrics);
        assert_eq!(route(&Method::HEAD, "/metrics", false), Route::Metrics);
        assert_eq!(route(&get, "/", false), Route::Index);
        assert_eq!(
            route(&Method::POST, "/metrics", false),
            Route::MethodNotAllowed
        );
        assert_eq!(route(&Method::DELETE, "/", false), Route::MethodNotAllowed);
        assert_eq!(route(&get, "/metrics/", false), Route::NotFound);
        assert_eq!(route(&Method::POST, "/other", false), Route::NotFound);
        assert_eq!(route(&get, "/favicon.ico", false), Route::NotFound);
        assert_eq!(route(&get, "/metrics", true), Route::BodyRefused);
        assert_eq!(route(&Method::POST, "/nope", true), Route::BodyRefused);
    }

    fn method() -> impl Strategy<Value = Method> {
        prop_oneof![
            Just(Method::GET),
            Just(Method::HEAD),
            Just(Method::POST),
            Just(Method::PUT),
            Just(Method::DELETE),
            Just(Method::OPTIONS),
            "[A-Z]{1,12}".prop_map(|name| Method::from_bytes(name.as_bytes()).unwrap()),
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/metrics".to_owned()),
            Just("/".to_owned()),
            "/[a-z/.]{0,16}",
            "[ -~]{0,40}",
        ]
    }

    proptest! {
        /// Only a bodiless GET or HEAD of /metrics scrapes, only such a request of / gets the
        /// index, and any announced body is refused whatever the rest says.
        #[test]
        fn only_bodiless_get_or_head_of_the_two_paths_is_served(
            method in method(),
            path in path(),
            announces_body in any::<bool>(),
        ) {
            let routed = route(&method, &path, announces_body);
            let readable = method == Method::GET || method == Method::HEAD;
            let expected = match (announces_body, path.as_str(), readable) {
                (true, _, _) => Route::BodyRefused,
                (false, "/metrics", true) => Route::Metrics,
                (false, "/", true) => Route::Index,
                (false, "/metrics" | "/", false) => Route::MethodNotAllowed,
                (false, _, _) => Route::NotFound,
            };
            prop_assert_eq!(routed, expected);
            let answered = answer(routed, || Ok("xdpctl_rules 1\n".to_owned()));
            // Exactly the refusals of a body close the connection.
            prop_assert_eq!(
                answered.headers().get(CONNECTION).is_some(),
                routed == Route::BodyRefused
            );
        }
    }

    #[test]
    fn errors_answer_with_their_status_and_405_names_the_methods() {
        let no_scrape = || -> Result<String> { panic!("only /metrics scrapes") };
        assert_eq!(
            answer(Route::NotFound, no_scrape).status(),
            StatusCode::NOT_FOUND
        );
        let refused = answer(Route::MethodNotAllowed, no_scrape);
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()[ALLOW], "GET, HEAD");
        assert_eq!(answer(Route::Index, no_scrape).status(), StatusCode::OK);
        let refused = answer(Route::BodyRefused, no_scrape);
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.headers()[CONNECTION], "close");
    }

    #[test]
    fn metrics_answer_200_in_the_text_format_or_500_with_the_error() {
        let ok = answer(Route::Metrics, || Ok("xdpctl_rules 1\n".to_owned()));
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], prometheus::CONTENT_TYPE);
        let failed = answer(Route::Metrics, || {
            Err(anyhow::anyhow!("reading fw_config: gone"))
        });
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = format!("{:?}", failed.into_body());
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
