//! The exporter's HTTP server: hyper on a current-thread tokio runtime. Everything one client
//! can make it hold is bounded: the bytes of a request head (`MAX_HEADER_BYTES`), the time to
//! send one, which is also how long a kept-alive connection may sit idle (`HEAD_READ_TIMEOUT`),
//! a request body (none is read), the time an answer may wait for a client that does not read it
//! (`WRITE_TIMEOUT`; hyper reads the next pipelined request only once the last answer is
//! written), and the number of connections (`MAX_CONNECTIONS`, fewer under a low fd limit).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_io_timeout::TimeoutStream;

use super::{answer, route, Answer, Route};

/// How often the accept loop looks at the stop flag while no connection comes.
const POLL: Duration = Duration::from_millis(100);
/// Connections served at once. Prometheus needs one per server that scrapes.
pub const MAX_CONNECTIONS: usize = 64;
/// The longest request head (request line and headers). A scrape's is a few hundred bytes.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// A connection's read buffer; hyper's smallest, which holds a head of MAX_HEADER_BYTES.
const MAX_BUFFER_BYTES: usize = 8 * 1024;
/// hyper starts this when it waits for a request head, on a new connection and between the
/// requests of a kept-alive one: a silent or slow client is closed after it.
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write may make no progress before the connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the kernel queues before the server accepts them. The standard library's 128
/// overflows in a burst of connects, and a client whose SYN is dropped waits a second to retry.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds the listening socket, as `std::net::TcpListener::bind` does but with a longer queue.
pub fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // What std sets too: a restarted exporter may bind while old connections linger.
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Serves `listener` until `stop` is set. `scrape` collects and renders the metrics.
pub fn serve(
    listener: std::net::TcpListener,
    stop: &'static AtomicBool,
    scrape: fn() -> Result<String>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        // Collections run one at a time (Collector): on one thread, kept, so they reuse one
        // allocator arena instead of each new thread growing another.
        .max_blocking_threads(1)
        .thread_keep_alive(Duration::from_secs(3600))
        .build()
        .context("starting the exporter's runtime")?;
    listener
        .set_nonblocking(true)
        .context("setting the listening socket non-blocking")?;
    let served = runtime.block_on(accept_loop(listener, stop, scrape));
    // Drops the open connections; a collection still running has a moment to end.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// What all connections share.
struct Shared {
    slots: Mutex<Slots<AbortHandle>>,
    collector: Arc<Collector>,
}

impl Shared {
    fn slots(&self) -> MutexGuard<'_, Slots<AbortHandle>> {
        lock(&self.slots)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A collection's body, or its error as it is to be told.
type Collected = Arc<Result<String, String>>;

/// Runs collections one at a time, on the runtime's one blocking thread: each walks every rule
/// map, and a burst of scrapes must not run many million-rule counts at once on a small
/// machine. A scrape that comes while a collection runs takes that collection's result instead
/// of queueing one of its own, so no client, however many connections it scrapes on, can make
/// another wait for more than the collection in progress (and its data is at most that old).
struct Collector {
    scrape: fn() -> Result<String>,
    /// The collection in progress, to wait for.
    running: Mutex<Option<watch::Receiver<Option<Collected>>>>,
}

impl Collector {
    async fn collect(self: &Arc<Self>) -> Result<String> {
        let mut receiver = self.join_or_start();
        let collected = match receiver.wait_for(Option::is_some).await {
            Ok(collected) => collected.clone().expect("waited for a result"),
            Err(_) => return Err(anyhow!("the collection ended without a result (a panic)")),
        };
        match &*collected {
            Ok(body) => Ok(body.clone()),
            Err(message) => Err(anyhow!("{message}")),
        }
    }

    fn join_or_start(self: &Arc<Self>) -> watch::Receiver<Option<Collected>> {
        let mut running = lock(&self.running);
        if let Some(receiver) = &*running {
            return receiver.clone();
        }
        let (sender, receiver) = watch::channel(None);
        *running = Some(receiver.clone());
        let collector = self.clone();
        tokio::task::spawn_blocking(move || {
            // Cleared even if the collection panics, so that the next scrape starts another.
            let done = NotRunning(&collector);
            let collected = (collector.scrape)().map_err(|err| format!("{err:#}"));
            // Before the result goes out: a scrape that comes after it starts a new collection.
            drop(done);
            let _ = sender.send(Some(Arc::new(collected)));
        });
        receiver
    }
}

/// Marks the collector idle when dropped.
struct NotRunning<'a>(&'a Collector);

impl Drop for NotRunning<'_> {
    fn drop(&mut self) {
        *lock(&self.0.running) = None;
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    stop: &AtomicBool,
    scrape: fn() -> Result<String>,
) -> Result<()> {
    let listener = TcpListener::from_std(listener).context("serving the listening socket")?;
    let address = listener.local_addr().context("the listening address")?;
    let shared = Arc::new(Shared {
        slots: Mutex::new(Slots::new(connection_cap(fd_limit()))),
        collector: Arc::new(Collector {
            scrape,
            running: Mutex::new(None),
        }),
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_BUFFER_BYTES)
        // "Allow", not "allow": what the 405 always said.
        .title_case_headers(true);
    let mut next_id = 0u64;
    let mut told_of_exhaustion = false;
    while !stop.load(Ordering::SeqCst) {
        let stream = match tokio::time::timeout(POLL, listener.accept()).await {
            Err(_) => continue,
            Ok(Ok((stream, _peer))) => stream,
            Ok(Err(err)) => match accept_failure(&err) {
                AcceptFailure::ThisConnection => continue,
                AcceptFailure::OutOfResources => {
                    if !told_of_exhaustion {
                        eprintln!(
                            "xdpctl exporter: accepting on {address}: {err}; closing the longest \
                             idle connection (raise `ulimit -n` if this recurs)"
                        );
                        told_of_exhaustion = true;
                    }
                    if let Some(handle) = shared.slots().evict_idle() {
                        handle.abort();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                AcceptFailure::Fatal => {
                    return Err(anyhow!("accepting HTTP connections on {address}: {err}"))
                }
            },
        };
        let id = next_id;
        next_id += 1;
        // The task does not run before this loop awaits again (one thread), so it is in its slot
        // before it can leave it; refused, it is dropped unpolled, which closes the socket.
        let task = tokio::spawn(connection(stream, http.clone(), shared.clone(), id));
        let admission = shared.slots().admit(id, task.abort_handle());
        match admission {
            Admission::Admitted { evicted } => {
                if let Some(handle) = evicted {
                    handle.abort();
                }
            }
            Admission::Refused => task.abort(),
        }
    }
    Ok(())
}

/// Frees a connection's slot when its task ends, however it ends (an abort included).
struct SlotRelease {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for SlotRelease {
    fn drop(&mut self) {
        self.shared.slots().release(self.id);
    }
}

/// Marks a connection busy while it waits for or runs a collection, so that it is not the one
/// evicted to make room.
struct BusyMark<'a> {
    shared: &'a Shared,
    id: u64,
}

impl<'a> BusyMark<'a> {
    fn new(shared: &'a Shared, id: u64) -> BusyMark<'a> {
        shared.slots().set_busy(id, true);
        BusyMark { shared, id }
    }
}

impl Drop for BusyMark<'_> {
    fn drop(&mut self) {
        self.shared.slots().set_busy(self.id, false);
    }
}

async fn connection(stream: TcpStream, http: http1::Builder, shared: Arc<Shared>, id: u64) {
    let _slot = SlotRelease {
        shared: shared.clone(),
        id,
    };
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let io = TokioIo::new(Box::pin(stream));
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond(request, &shared, id).await) }
    });
    // A client that hangs up, times out or sends what is not HTTP ends its own connection only.
    let _ = http.serve_connection(io, service).await;
}

async fn respond(request: Request<Incoming>, shared: &Shared, id: u64) -> Answer {
    let announces_body = !request.body().is_end_stream();
    let routed = route(request.method(), request.uri().path(), announces_body);
    if routed != Route::Metrics {
        return answer(routed, || unreachable!("only /metrics scrapes"));
    }
    let _busy = BusyMark::new(shared, id);
    // The collection reads BPF maps, blocking: on its own thread, so that the runtime goes on
    // serving (and timing out) the other connections meanwhile.
    let collected = shared.collector.collect().await;
    answer(Route::Metrics, || collected)
}

/// The soft limit on open fds, if it can be read.
fn fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives here.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (read == 0).then_some(limit.rlim_cur)
}

/// MAX_CONNECTIONS, or fewer when the fd limit is low: half the fds stay for the maps a
/// collection opens and for the runtime, so a full house of connections cannot fail a scrape.
pub fn connection_cap(fd_limit: Option<u64>) -> usize {
    let half = fd_limit.map_or(u64::MAX, |limit| limit / 2);
    usize::try_from(half)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_CONNECTIONS)
}

/// What a failed accept means for the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptFailure {
    /// The connection went away before it was accepted: take the next.
    ThisConnection,
    /// No fd or memory for it now: free some and retry.
    OutOfResources,
    /// The listening socket itself is broken.
    Fatal,
}

pub fn accept_failure(err: &io::Error) -> AcceptFailure {
    match err.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            AcceptFailure::OutOfResources
        }
        Some(
            libc::ECONNABORTED
            | libc::EINTR
            | libc::EAGAIN
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::ETIMEDOUT,
        ) => AcceptFailure::ThisConnection,
        _ => AcceptFailure::Fatal,
    }
}

/// The open connections, oldest first, each with what closes it (`H`) and whether it is in a
/// collection.
#[derive(Debug)]
pub struct Slots<H> {
    cap: usize,
    open: BTreeMap<u64, Slot<H>>,
}

#[derive(Debug)]
struct Slot<H> {
    handle: H,
    busy: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admission<H> {
    /// In; to make room, `evicted` (the oldest connection not in a collection) is to be closed.
    Admitted { evicted: Option<H> },
    /// Every slot is in a collection: the new connection is to be closed.
    Refused,
}

impl<H> Slots<H> {
    pub fn new(cap: usize) -> Slots<H> {
        Slots {
            cap: cap.max(1),
            open: BTreeMap::new(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.len()
    }

    /// Takes a new connection (`id` greater than every earlier one). A full house makes room
    /// by evicting its oldest idle connection: a newcomer is most likely a scraper, and the
    /// longest idle a client that holds a slot and sends nothing.
    pub fn admit(&mut self, id: u64, handle: H) -> Admission<H> {
        let evicted = if self.open.len() >= self.cap {
            match self.evict_idle() {
                Some(evicted) => Some(evicted),
                None => return Admission::Refused,
            }
        } else {
            None
        };
        self.open.insert(
            id,
            Slot {
                handle,
                busy: false,
            },
        );
        Admission::Admitted { evicted }
    }

    /// Removes the oldest connection not in a collection, and gives what closes it.
    pub fn evict_idle(&mut self) -> Option<H> {
        let id = *self.open.iter().find(|(_, slot)| !slot.busy)?.0;
        self.open.remove(&id).map(|slot| slot.handle)
    }

    pub fn set_busy(&mut self, id: u64, busy: bool) {
        if let Some(slot) = self.open.get_mut(&id) {
            slot.busy = busy;
        }
    }

    /// A connection ended (or was evicted, which already removed it).
    pub fn release(&mut self, id: u64) {
        self.open.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_house_evicts_its_oldest_idle_connection_or_refuses() {
        let mut slots = Slots::new(2);
        assert_eq!(slots.admit(1, "a"), Admission::Admitted { evicted: None });
        assert_eq!(slots.admit(2, "b"), Admission::Admitted { evicted: None });
        slots.set_busy(1, true);
        assert_eq!(
            slots.admit(3, "c"),
            Admission::Admitted { evicted: Some("b") }
        );
        slots.set_busy(3, true);
        assert_eq!(slots.admit(4, "d"), Admission::Refused);
        assert_eq!(slots.len(), 2);
        slots.set_busy(1, false);
        assert_eq!(
            slots.admit(5, "e"),
            Admission::Admitted { evicted: Some("a") }
        );
        slots.release(3);
        slots.release(3);
        assert_eq!(slots.len(), 1);
    }

    #[derive(Clone, Debug)]
    enum Event {
        Connect,
        Busy(usize, bool),
        Close(usize),
        OutOfFds,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => Just(Event::Connect),
            2 => (any::<usize>(), any::<bool>()).prop_map(|(n, busy)| Event::Busy(n, busy)),
            1 => any::<usize>().prop_map(Event::Close),
            1 => Just(Event::OutOfFds),
        ]
    }

    proptest! {
        /// Against a plain model: never more than the cap open; a newcomer is refused only when
        /// every slot is busy; an eviction takes the oldest idle one and never a busy one.
        #[test]
        fn slots_stay_under_the_cap_and_spare_busy_connections(
            cap in 1usize..6,
            events in proptest::collection::vec(event(), 0..80),
        ) {
            let mut slots = Slots::new(cap);
            // The model: (id, busy), oldest first.
            let mut model: Vec<(u64, bool)> = Vec::new();
            let mut next = 0u64;
            for event in events {
                match event {
                    Event::Connect => {
                        let id = next;
                        next += 1;
                        let oldest_idle = model.iter().position(|&(_, busy)| !busy);
                        let admission = slots.admit(id, id);
                        if model.len() < cap {
                            prop_assert_eq!(admission, Admission::Admitted { evicted: None });
                            model.push((id, false));
                        } else if let Some(index) = oldest_idle {
                            let (evicted, _) = model.remove(index);
                            prop_assert_eq!(
                                admission,
                                Admission::Admitted { evicted: Some(evicted) }
                            );
                            model.push((id, false));
                        } else {
                            prop_assert_eq!(admission, Admission::Refused);
                        }
                    }
                    Event::Busy(n, busy) if !model.is_empty() => {
                        let index = n % model.len();
                        model[index].1 = busy;
                        slots.set_busy(model[index].0, busy);
                    }
                    Event::Close(n) if !model.is_empty() => {
                        let (id, _) = model.remove(n % model.len());
                        slots.release(id);
                    }
                    Event::OutOfFds => {
                        let expected = model
                            .iter()
                            .position(|&(_, busy)| !busy)
                            .map(|index| model.remove(index).0);
                        prop_assert_eq!(slots.evict_idle(), expected);
                    }
                    Event::Busy(..) | Event::Close(_) => {}
                }
                prop_assert!(slots.len() <= cap);
                prop_assert_eq!(slots.len(), model.len());
            }
        }
    }

    #[test]
    fn the_connection_cap_leaves_half_the_fds() {
        assert_eq!(connection_cap(None), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(1024)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(u64::MAX)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(64)), 32);
        assert_eq!(connection_cap(Some(1)), 1);
        assert_eq!(connection_cap(Some(0)), 1);
    }

    #[test]
    fn only_a_broken_listener_stops_the_server() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(
            accept_failure(&os(libc::EMFILE)),
            AcceptFailure::OutOfResources
        );
        assert_eq!(
            accept_failure(&os(libc::ENFILE)),
            AcceptFailure::OutOfResources
        );
        assert_eq!(
            accept_failure(&os(libc::ECONNABORTED)),
            AcceptFailure::ThisConnection
        );
        assert_eq!(accept_failure(&os(libc::EBADF)), AcceptFailure::Fatal);
        assert_eq!(accept_failure(&os(libc::EINVAL)), AcceptFailure::Fatal);
    }
}
