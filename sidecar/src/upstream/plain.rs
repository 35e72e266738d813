//! Plain-HTTP upstreams (an in-cluster model server or gateway): HTTP/1.1
//! connections of the sidecar's own, each driven by the request that is
//! using it rather than by a task of its own.
//!
//! hyper_util's pooled client gives every upstream connection its own task
//! and hands each request to it over a channel, then spawns one more task
//! per request to put the connection back when its body ends: two task
//! switches and a pool hashed by SipHash for every request (docs/benchmark.md,
//! "Where the sidecar's CPU goes"). Here the request's own future polls the
//! connection while it waits for the response head, and the response body
//! ([`PlainBody`]) polls it while the body is read; when the body ends, the
//! connection goes back to the pool for the next request to the same origin.
//! HTTPS upstreams (HTTP/2 by ALPN, a connection shared by many requests)
//! stay on hyper_util's client.
//!
//! No task waits on an idle connection. The pool's sweeper polls the idle
//! ones every [`SWEEP_EVERY`], so one the upstream closed (an upstream's
//! keep-alive timeout, a restart) is closed within a sweep or two rather
//! than left half-closed (`CLOSE_WAIT`) until its idle time runs out. It
//! polls with a waker that does nothing: a sweep's waker left on a
//! connection would be woken by the next request sent on it, and a sweep
//! per request is not worth a few seconds of `CLOSE_WAIT`. A connection
//! taken out before the sweep reads the end on its first poll, before it
//! writes the request, and a request that a connection closed before
//! writing it is sent once more on a new one (as hyper_util's client does).
//! Idle connections are closed after [`IDLE_TIMEOUT`], by the sweep and
//! whenever one to the same origin is taken out.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{TrySendError, http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use crate::keyhash::KeyMap;
use crate::sendmsg;

/// How long an idle connection is kept (hyper_util's client keeps them 90 s).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections are checked: past their time, or closed by
/// the upstream since they went idle.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Idle connections kept for one origin; more are closed when they come back.
const MAX_IDLE_PER_ORIGIN: usize = 1024;

type Driver = http1::Connection<TokioIo<sendmsg::Stream>, ProxyBody>;

/// One HTTP/1.1 connection: the handle requests are sent through and the
/// connection's state machine, which someone must poll for anything to move.
struct Conn {
    sender: http1::SendRequest<ProxyBody>,
    driver: Driver,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// Idle connections by origin (`host:port`).
pub(crate) struct Pool {
    idle: Mutex<KeyMap<Arc<str>, Vec<Idle>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

/// Why a request got no response head.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made.
    Connect(String),
    /// The connection failed before the response head arrived.
    Request(hyper::Error),
}

impl Pool {
    /// A pool; with a Tokio runtime at hand, also its sweeper task, which
    /// ends with the pool.
    pub(crate) fn new(connect_timeout: Duration, idle_timeout: Duration) -> Arc<Pool> {
        Pool::with_sweep(connect_timeout, idle_timeout, SWEEP_EVERY)
    }

    /// The same, swept every `sweep_every`.
    fn with_sweep(
        connect_timeout: Duration,
        idle_timeout: Duration,
        sweep_every: Duration,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            idle: Mutex::new(KeyMap::default()),
            connect_timeout,
            idle_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&pool), sweep_every));
        }
        pool
    }

    /// Sends `request` to `origin` (`host:port`) on an idle connection, or
    /// a new one; the response's body drives the connection and gives it
    /// back when it ends.
    pub(crate) async fn send(
        self: &Arc<Self>,
        origin: &Arc<str>,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<PlainBody>, SendError> {
        // HTTP/1.1 to an origin server takes the path alone.
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
        loop {
            let (conn, reused) = match self.checkout(origin) {
                Some(conn) => (conn, true),
                None => (Box::new(self.connect(origin).await?), false),
            };
            match exchange(conn, request).await {
                Ok((response, conn)) => {
                    return Ok(response.map(|body| PlainBody {
                        body,
                        conn,
                        pool: Arc::downgrade(self),
                        origin: origin.clone(),
                    }));
                }
                // The connection closed before the request went out on
                // it (the upstream ended it while it sat idle): once more,
                // on a new one.
                Err(mut failed) if reused => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Request(failed.into_error())),
                },
                Err(failed) => return Err(SendError::Request(failed.into_error())),
            }
        }
    }

    /// The most recently used idle connection to `origin`; closes the ones
    /// past their time on the way.
    fn checkout(&self, origin: &str) -> Option<Box<Conn>> {
        let mut idle = self.lock();
        let list = idle.get_mut(origin)?;
        let now = Instant::now();
        let fresh = list
            .iter()
            .position(|entry| now.duration_since(entry.since) < self.idle_timeout)
            .unwrap_or(list.len());
        list.drain(..fresh);
        // Not polled here (that would cost a read of the socket): a
        // connection the upstream closed meanwhile finds out on its first
        // poll, before it writes the request, and hands the request back.
        list.pop().map(|entry| entry.conn)
    }

    async fn connect(&self, origin: &str) -> Result<Conn, SendError> {
        let failed = |detail: String| {
            SendError::Connect(format!("connect error to http://{origin}: {detail}"))
        };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(origin))
            .await
            .map_err(|_| {
                failed(format!(
                    "no connection within {}s",
                    self.connect_timeout.as_secs()
                ))
            })?
            .map_err(|e| failed(e.to_string()))?;
        // A request body written in more than one piece must not wait on
        // the upstream's delayed ACK.
        let _ = stream.set_nodelay(true);
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(sendmsg::Stream::new(stream)))
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(Conn { sender, driver })
    }

    /// Keeps a connection whose response has ended for the next request.
    fn give_back(&self, origin: &Arc<str>, conn: Box<Conn>) {
        let mut idle = self.lock();
        let list = match idle.get_mut(&**origin) {
            Some(list) => list,
            None => idle.entry(origin.clone()).or_default(),
        };
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes the idle connections past their time and those that have
    /// ended (the upstream closed them, or broke them by sending on them
    /// unasked); drops emptied origins. The others are left polled with
    /// `cx`. A poll reads the socket only while tokio holds it readable:
    /// an open idle connection costs one read that finds nothing (where
    /// its last use did not end on one), then nothing until epoll reports
    /// news.
    fn sweep_now(&self, now: Instant, cx: &mut Context<'_>) {
        self.lock().retain(|_, list| {
            list.retain_mut(|entry| {
                now.duration_since(entry.since) < self.idle_timeout
                    && Pin::new(&mut entry.conn.driver).poll(cx).is_pending()
            });
            !list.is_empty()
        });
    }

    /// Idle connections to `origin`, for tests.
    #[cfg(test)]
    fn idle_count(&self, origin: &str) -> usize {
        self.lock().get(origin).map_or(0, Vec::len)
    }

    fn lock(&self) -> MutexGuard<'_, KeyMap<Arc<str>, Vec<Idle>>> {
        // A panic while holding the lock leaves a map of connections, each
        // checked again when taken out: still usable.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sweeper: sweeps every `sweep_every`; stops with the pool.
async fn sweep(pool: Weak<Pool>, sweep_every: Duration) {
    let mut every = tokio::time::interval(sweep_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.sweep_now(Instant::now(), &mut Context::from_waker(Waker::noop()));
    }
}

/// Sends one request on `conn`, driving it until the response head arrives.
/// The connection comes back with the response unless it has ended.
async fn exchange(
    mut conn: Box<Conn>,
    request: Request<ProxyBody>,
) -> Result<(Response<Incoming>, Option<Box<Conn>>), TrySendError<Request<ProxyBody>>> {
    let response = conn.sender.try_send_request(request);
    let mut response = std::pin::pin!(response);
    let mut conn = Some(conn);
    std::future::poll_fn(|cx| {
        if let Some(running) = &mut conn
            && Pin::new(&mut running.driver).poll(cx).is_ready()
        {
            // The connection ended. Dropping it hands a request it never
            // wrote back to the response future, with why.
            conn = None;
        }
        response.as_mut().poll(cx)
    })
    .await
    .map(|response| (response, conn))
}

/// An upstream response body that drives its connection while it is read,
/// and gives the connection back to the pool when it ends.
pub(crate) struct PlainBody {
    body: Incoming,
    /// `None` once the connection has ended or gone back to the pool.
    conn: Option<Box<Conn>>,
    pool: Weak<Pool>,
    origin: Arc<str>,
}

impl PlainBody {
    /// The body has ended: the connection is kept once it is ready for the
    /// next request (hyper says so when it finds nothing more to do, usually
    /// in the turn that delivered the end; else one more turn).
    fn release(&mut self, cx: &mut Context<'_>) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !conn.sender.is_ready()
            && (Pin::new(&mut conn.driver).poll(cx).is_ready() || !conn.sender.is_ready())
        {
            return;
        }
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(&self.origin, conn);
        }
    }
}

impl Body for PlainBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // What the connection has read already, first: polling it costs a
        // read of the socket.
        let frame = match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                match &mut this.conn {
                    Some(conn) => {
                        if Pin::new(&mut conn.driver).poll(cx).is_ready() {
                            // Ended: it gave the body what it had, or an error.
                            this.conn = None;
                        }
                    }
                    None => return Poll::Pending,
                }
                ready!(Pin::new(&mut this.body).poll_frame(cx))
            }
        };
        match &frame {
            None => this.release(cx),
            Some(Err(_)) => this.conn = None,
            Some(Ok(_)) if this.body.is_end_stream() => this.release(cx),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[path = "plain_tests.rs"]
mod tests;
