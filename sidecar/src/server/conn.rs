//! Accepting connections within bounds. Each listener has its own cap (the
//! admin port's apart from the data port's, so a flood on one cannot starve
//! the other). At the cap, a new connection takes the place of the oldest
//! idle one (no request in flight: a flood of silent connections cannot lock
//! out the kubelet's probe or an app's next request); when every connection
//! is busy, the new one gets a 503 and is closed. A connection must send its
//! first byte within `first_byte`, and one with no request in flight is
//! closed after `idle`.
//! On shutdown, connections are asked to finish gracefully and given the
//! drain time; streams still open then are ended with an error event.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::body::{BoxError, ProxyBody};
use crate::sendmsg;
use crate::telemetry::SharedTelemetry;

/// How one listener treats its connections.
#[derive(Clone, Debug)]
pub(crate) struct ListenerLimits {
    /// `data` or `admin`: the label of refused-connection counts.
    pub name: &'static str,
    pub max_connections: usize,
    pub first_byte: Duration,
    pub idle: Duration,
    /// A response the client does not read for this long (its writes make
    /// no progress) ends the connection: a client that stopped reading
    /// cannot pin it, nor the upstream request behind it.
    pub stall: Duration,
}

/// What shutting a listener down involves.
pub(crate) struct Shutdown {
    pub stop: watch::Receiver<bool>,
    pub drain: Duration,
    /// Cancelled when the drain time is up: open streams end with an error event.
    pub cut_streams: CancellationToken,
}

/// The most header lines an HTTP/1 request may have.
const MAX_HEADERS: usize = 200;

/// After the drain time, how long ended streams get to flush their error event.
const FLUSH_GRACE: Duration = Duration::from_secs(1);
/// How long a connection waits for the place of the one it evicted.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// How many new connections may wait at once for the places of the ones
/// they evicted (each holds one more descriptor until then).
const MAX_PENDING_EVICTIONS: usize = 8;

/// How a new connection gets its place under the cap.
enum Admission {
    Placed(tokio::sync::OwnedSemaphorePermit),
    /// It evicted an idle connection and waits for that one's place,
    /// holding one of the [`MAX_PENDING_EVICTIONS`] slots meanwhile.
    Evicting(tokio::sync::OwnedSemaphorePermit),
}

/// Accepts connections until `shutdown.stop` flips, then drains them.
pub(crate) async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    limits: ListenerLimits,
    telemetry: SharedTelemetry,
    mut shutdown: Shutdown,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Bounded headers and a header read timeout (it also closes an HTTP/1
    // connection idle between requests): a slow or hostile client cannot
    // pin a connection. The same for HTTP/1 served with or without `auto`.
    let header_read_timeout = limits.idle.min(Duration::from_secs(30));
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(256 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_headers(MAX_HEADERS);
    let builder = Arc::new(Builders {
        auto: builder,
        http1,
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Open::default());
    let evicting = Arc::new(Semaphore::new(MAX_PENDING_EVICTIONS));
    let (closing, closing_rx) = watch::channel(false);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.stop.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(listener = limits.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admission = match permits.clone().try_acquire_owned() {
            Ok(permit) => Admission::Placed(permit),
            Err(_) => {
                // A connection waiting for the place of the one it evicted
                // holds a descriptor beside it until that one's task has
                // run: bound how many wait, so a burst cannot outrun the
                // evictions and exhaust the process's descriptors.
                let Ok(slot) = evicting.clone().acquire_owned().await else {
                    break;
                };
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => Admission::Placed(permit),
                    Err(_) if open.evict_oldest_idle() => {
                        telemetry.connection_shed(limits.name, "evicted");
                        Admission::Evicting(slot)
                    }
                    Err(_) => {
                        telemetry.connection_shed(limits.name, "refused");
                        refuse(&stream, limits.max_connections);
                        continue;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        // Registered here, before the next accept: a burst of new
        // connections must find each other evictable.
        let activity = Arc::new(Activity::default());
        let evicted = CancellationToken::new();
        let registered = Open::add(&open, activity.clone(), evicted.clone());
        let (builder, service, limits, closing, permits) = (
            builder.clone(),
            service.clone(),
            limits.clone(),
            closing_rx.clone(),
            permits.clone(),
        );
        tokio::spawn(async move {
            // The evicted connection's place frees as soon as its task ends.
            let permit = match admission {
                Admission::Placed(permit) => permit,
                Admission::Evicting(slot) => {
                    let waited = tokio::time::timeout(EVICTION_WAIT, permits.acquire_owned()).await;
                    drop(slot);
                    match waited {
                        Ok(Ok(permit)) => permit,
                        _ => {
                            drop(registered);
                            return refuse(&stream, limits.max_connections);
                        }
                    }
                }
            };
            serve_connection(
                stream, &builder, service, &limits, closing, activity, evicted,
            )
            .await;
            drop(registered);
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(shutdown.drain, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            listener = limits.name,
            timeout_ms = shutdown.drain.as_millis(),
            "drain time is up with requests still in flight; ending open streams with an error event"
        );
        shutdown.cut_streams.cancel();
        let _ = tokio::time::timeout(FLUSH_GRACE, permits.acquire_many(all)).await;
    }
}

/// How connections are served: HTTP/1 directly when the first bytes say so,
/// else `auto`, which tells HTTP/2's preface itself.
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: hyper::server::conn::http1::Builder,
}

/// What an HTTP/2 connection from a client with prior knowledge starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a connection's first bytes are HTTP/1's: they are not the start
/// of HTTP/2's preface. Such a connection is served without `auto`, which
/// would read them into a buffer of its own to find that out (and hyper's
/// first read would then get only those bytes, and double its read buffer
/// to 16 KiB). Too few bytes to tell go to `auto`.
fn speaks_http1(first: &[u8]) -> bool {
    !H2_PREFACE.starts_with(first)
}

/// One connection: its first byte, its requests, its idle time, its drain.
async fn serve_connection<S, F>(
    stream: TcpStream,
    builder: &Builders,
    service: S,
    limits: &ListenerLimits,
    mut closing: watch::Receiver<bool>,
    activity: Arc<Activity>,
    evicted: CancellationToken,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let mut first = [0u8; H2_PREFACE.len()];
    let http1 = tokio::select! {
        peeked = tokio::time::timeout(limits.first_byte, stream.peek(&mut first)) => match peeked {
            Ok(Ok(n)) if n > 0 => speaks_http1(&first[..n]),
            // Closed, failed, or silent past the first-byte timeout.
            _ => return,
        },
        _ = evicted.cancelled() => return,
        _ = closing.changed() => return,
    };
    let tracked = {
        let activity = activity.clone();
        move |request| {
            let guard = InFlight::start(activity.clone());
            let response = service(request);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| Guarded {
                    body,
                    _guard: guard,
                }))
            }
        }
    };
    let io = Watched {
        stream: sendmsg::Stream::new(stream),
        activity: activity.clone(),
    };
    let io = TokioIo::new(io);
    let watch = Watch {
        limits: limits.clone(),
        closing,
        activity: activity.clone(),
        evicted,
    };
    let service = service_fn(tracked);
    let end = if http1 {
        let connection =
            std::pin::pin!(builder.http1.serve_connection(io, service).with_upgrades());
        drive(connection, |c| c.graceful_shutdown(), watch).await
    } else {
        let connection = std::pin::pin!(builder.auto.serve_connection_with_upgrades(io, service));
        drive(connection, |c| c.graceful_shutdown(), watch).await
    };
    if let Some(e) = end {
        tracing::debug!(listener = limits.name, error = %e, "connection ended with an error");
    }
}

/// What ends a connection besides itself: what its watchdog waits on.
struct Watch {
    limits: ListenerLimits,
    closing: watch::Receiver<bool>,
    activity: Arc<Activity>,
    evicted: CancellationToken,
}

/// Serves `connection` until it ends, is evicted or drained, goes idle, or
/// stalls; the error it ended with, if any.
///
/// The connection's task polls the connection and one atomic word; a
/// watchdog task of its own waits on the rest (eviction, the sidecar's
/// drain, the idle and stall checks) and sets that word and wakes the
/// connection when one of them calls for it. Polled beside the connection,
/// those waits cost two lock round trips and a timer check on every wake of
/// a busy connection, for events that come once in its life.
async fn drive<C, E>(
    mut connection: Pin<&mut C>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    watch: Watch,
) -> Option<String>
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let order = Arc::new(Order::default());
    let _watchdog = AbortOnDrop(tokio::spawn(watchdog(order.clone(), watch)));
    let mut draining = false;
    std::future::poll_fn(|cx| {
        order.waker.register(cx.waker());
        match order.state.load(Ordering::Acquire) {
            CLOSE => return Poll::Ready(None),
            DRAIN if !draining => {
                draining = true;
                graceful_shutdown(connection.as_mut());
            }
            _ => {}
        }
        connection
            .as_mut()
            .poll(cx)
            .map(|result| result.err().map(|e| e.to_string()))
    })
    .await
}

/// Finish the request under way (one that has just arrived included), then close.
const DRAIN: u8 = 1;
/// Close now: its client stopped reading.
const CLOSE: u8 = 2;

/// The watchdog's word to its connection (0 while it is served as usual,
/// else [`DRAIN`] or [`CLOSE`]), and the connection's waker.
#[derive(Default)]
struct Order {
    state: std::sync::atomic::AtomicU8,
    waker: futures::task::AtomicWaker,
}

impl Order {
    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.waker.wake();
    }
}

/// Aborts the watchdog however its connection's task ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits for what ends a connection besides itself: eviction, the
/// sidecar's drain, or (checked on one timer) no request in flight for
/// `idle` — the connection drains — or writes that made no progress for
/// `stall` — it closes at once.
async fn watchdog(order: Arc<Order>, watch: Watch) {
    let Watch {
        limits,
        mut closing,
        activity,
        evicted,
    } = watch;
    let (idle, stall) = (limits.idle, limits.stall);
    // The first check is one period out: awaiting an interval's immediate
    // first tick would hold every new connection until the timer's next
    // millisecond.
    let every = (idle.min(stall) / 4).max(Duration::from_millis(10));
    let mut checks = tokio::time::interval_at(Instant::now() + every, every);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = evicted.cancelled(), if !draining => {
                draining = true;
                order.set(DRAIN);
            }
            _ = closing.changed(), if !draining => {
                draining = true;
                order.set(DRAIN);
            }
            _ = checks.tick() => {
                if activity.stalled_for().is_some_and(|stalled| stalled >= stall) {
                    tracing::debug!(listener = limits.name, "the client stopped reading its response; closing the connection");
                    order.set(CLOSE);
                    return;
                }
                // Idle: closed as gracefully as a drain (an h2c client is
                // told by GOAWAY); with nothing in flight it ends at once.
                if !draining && activity.idle_for().is_some_and(|idle_for| idle_for >= idle) {
                    draining = true;
                    order.set(DRAIN);
                }
            }
        }
    }
}

/// Writes a short 503 to a connection over the cap, then drops it.
fn refuse(stream: &TcpStream, cap: usize) {
    let body = format!(
        "{{\"error\":{{\"message\":\"the sidecar has {cap} connections open, its limit; retry shortly\",\"type\":\"aiflags_error\",\"param\":null,\"code\":\"too_many_connections\"}}}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// A listener's open connections, oldest first.
#[derive(Default)]
struct Open {
    next: AtomicU64,
    connections: Mutex<BTreeMap<u64, (Arc<Activity>, CancellationToken)>>,
}

/// Removes its connection from [`Open`] when the connection ends.
struct Registered {
    open: Arc<Open>,
    id: u64,
}

impl Open {
    fn add(open: &Arc<Open>, activity: Arc<Activity>, evict: CancellationToken) -> Registered {
        let id = open.next.fetch_add(1, Ordering::Relaxed);
        open.lock().insert(id, (activity, evict));
        Registered {
            open: open.clone(),
            id,
        }
    }

    /// Closes the connection idle the longest (no request in flight; one
    /// that never sent a request counts from its accept); `false` when every
    /// connection is busy.
    fn evict_oldest_idle(&self) -> bool {
        let mut connections = self.lock();
        let longest_idle = connections
            .iter()
            .filter(|(_, (activity, _))| activity.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, (activity, _))| activity.idle_since.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        match longest_idle.and_then(|id| connections.remove(&id)) {
            Some((_, evict)) => {
                evict.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (Arc<Activity>, CancellationToken)>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open.lock().remove(&self.id);
    }
}

/// Requests in flight on one connection, since when it has had none, and
/// since when its writes have been blocked (0: they are not). Times are
/// milliseconds of the process-wide [`clock`], so connections compare.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    write_blocked_since: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(clock()),
            write_blocked_since: AtomicU64::new(0),
        }
    }
}

/// Milliseconds since the first call (never 0, which means "not blocked").
fn clock() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Activity {
    /// How long the connection has had no request in flight; `None` while one is.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        Some(Duration::from_millis(clock().saturating_sub(since)))
    }

    /// How long a write has been waiting on the client; `None` when none is.
    fn stalled_for(&self) -> Option<Duration> {
        let since = self.write_blocked_since.load(Ordering::Acquire);
        (since != 0).then(|| Duration::from_millis(clock().saturating_sub(since)))
    }

    fn wrote(&self, blocked: bool) {
        if blocked {
            let _ = self.write_blocked_since.compare_exchange(
                0,
                clock(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        } else {
            self.write_blocked_since.store(0, Ordering::Release);
        }
    }
}

/// The client connection, noting whether its writes make progress.
struct Watched {
    stream: sendmsg::Stream,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Counts a request as in flight until its response body is gone.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.idle_since.store(clock(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted in flight.
struct Guarded {
    body: ProxyBody,
    _guard: InFlight,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How many connections the kernel queues for a listener before the
/// sidecar accepts them: a burst (many app threads connecting at once, or
/// a pause) waits here rather than in SYN retries. The standard library's
/// and tokio's `bind` use 128.
const LISTEN_BACKLOG: u32 = 1024;

/// A listener as tokio's `TcpListener::bind` makes one (`SO_REUSEADDR`),
/// with [`LISTEN_BACKLOG`].
pub(crate) fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the open-files limit to its hard maximum and sizes the listeners'
/// caps within it: each data connection may need an upstream connection
/// too, and `RESERVE` descriptors stay free for config reloads, logs, and
/// the connections waiting on evictions (at most
/// [`MAX_PENDING_EVICTIONS`] + 1 per listener) under any flood. Returns
/// (data cap, admin cap).
pub(crate) fn fit_caps(data_wanted: usize, admin_wanted: usize) -> (usize, usize) {
    const RESERVE: u64 = 64;
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(max)) = (limit.current, limit.maximum)
        && current < max
    {
        limit.current = Some(max);
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit.current = Some(current);
        }
    }
    let Some(files) = limit.current else {
        return (data_wanted, admin_wanted);
    };
    let usable = files.saturating_sub(RESERVE);
    let admin = admin_wanted.min((usable / 4) as usize).max(1);
    let spare = usable.saturating_sub(admin as u64);
    let data = data_wanted.min((spare / 2) as usize).max(1);
    (data, admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_is_told_from_the_http2_preface_by_the_first_bytes() {
        assert!(speaks_http1(b"POST /v1/chat/completions HTTP/1.1\r\n"));
        assert!(speaks_http1(b"GET /healthz HTTP/1.1\r\n"));
        // Diverges from the preface only at its version.
        assert!(speaks_http1(b"PRI * HTTP/1.1\r\n"));
        assert!(!speaks_http1(H2_PREFACE));
        // A prefix of the preface cannot be told yet: `auto` reads on.
        assert!(!speaks_http1(b"P"));
        assert!(!speaks_http1(b"PRI * HTTP/2.0\r\n"));
    }
}
