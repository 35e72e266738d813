#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The plain-HTTP pool against a real HTTP/1.1 server on loopback: a few
//! lines of tokio that count connections, answer as each test asks, and
//! report when a connection ends.

use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::body::full;

/// How the test server answers each request on a connection.
#[derive(Clone, Copy)]
enum Answer {
    /// `200` with a 5-byte body; the connection stays open.
    KeepAlive,
    /// The same, then the server closes the connection when the test
    /// sends on `more` (no `Connection: close`: as an upstream's idle
    /// timeout would).
    ThenClose,
    /// The same, but the server only ends its side of the connection (a
    /// FIN) and reports the connection ended when the client closes its
    /// own.
    ThenHalfClose,
    /// A chunked body, one chunk each time the test sends on `more`,
    /// ended by the third.
    Chunked,
}

struct Server {
    origin: Arc<str>,
    accepted: Arc<AtomicUsize>,
    /// One message per connection that ended (the client closed it or the
    /// server did).
    ended: mpsc::UnboundedReceiver<()>,
    more: mpsc::UnboundedSender<()>,
}

async fn server(answer: Answer) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin: Arc<str> = listener.local_addr().unwrap().to_string().into();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let (more, more_rx) = mpsc::unbounded_channel::<()>();
    let more_rx = Arc::new(tokio::sync::Mutex::new(more_rx));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let ended = ended_tx.clone();
            let more = more_rx.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                'requests: loop {
                    // One request head (the tests send no body).
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => break 'requests,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buffer.drain(..end);
                    match answer {
                        Answer::KeepAlive | Answer::ThenClose | Answer::ThenHalfClose => {
                            let head = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                            socket.write_all(head.as_bytes()).await.unwrap();
                            if matches!(answer, Answer::ThenClose) {
                                more.lock().await.recv().await.unwrap();
                                break 'requests;
                            }
                            if matches!(answer, Answer::ThenHalfClose) {
                                more.lock().await.recv().await.unwrap();
                                socket.shutdown().await.unwrap();
                                // Until the client closes its side.
                                while let Ok(n) = socket.read(&mut chunk).await
                                    && n > 0
                                {}
                                break 'requests;
                            }
                        }
                        Answer::Chunked => {
                            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                            socket.write_all(head.as_bytes()).await.unwrap();
                            for n in 0..3 {
                                more.lock().await.recv().await.unwrap();
                                let chunk = if n < 2 { "3\r\nabc\r\n" } else { "0\r\n\r\n" };
                                if socket.write_all(chunk.as_bytes()).await.is_err() {
                                    break 'requests;
                                }
                            }
                        }
                    }
                }
                drop(socket);
                let _ = ended.send(());
            });
        }
    });
    Server {
        origin,
        accepted,
        ended,
        more,
    }
}

impl Server {
    /// A request through `pool`, which must get a response head.
    async fn request(&self, pool: &Arc<Pool>) -> Response<PlainBody> {
        pool.send(&self.origin, get(&self.origin)).await.unwrap()
    }
}

/// A pool whose sweeper does not run during a test: what a request finds
/// idle is what the test left there.
fn pool() -> Arc<Pool> {
    Pool::with_sweep(
        Duration::from_secs(5),
        IDLE_TIMEOUT,
        Duration::from_secs(3600),
    )
}

fn get(origin: &str) -> Request<ProxyBody> {
    Request::builder()
        .uri(format!("http://{origin}/v1/models"))
        .header(http::header::HOST, origin)
        .body(full(""))
        .unwrap()
}

/// A server answering as `answer` says, and one request through `pool`
/// whose connection is now idle in it.
async fn one_idle(answer: Answer, pool: &Arc<Pool>) -> Server {
    let server = server(answer).await;
    let response = server.request(pool).await;
    assert_eq!(body_of(response).await, "hello");
    assert_eq!(pool.idle_count(&server.origin), 1);
    server
}

async fn body_of(response: Response<PlainBody>) -> Bytes {
    response.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn requests_one_after_another_share_one_connection() {
    let server = server(Answer::KeepAlive).await;
    let pool = pool();
    for _ in 0..3 {
        let response = server.request(&pool).await;
        assert_eq!(response.status(), 200);
        assert_eq!(body_of(response).await, "hello");
        assert_eq!(
            pool.idle_count(&server.origin),
            1,
            "given back when the body ended"
        );
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced_without_an_error() {
    let pool = pool();
    let mut server = one_idle(Answer::ThenClose, &pool).await;
    // The server closes it while the pool holds it, idle.
    server.more.send(()).unwrap();
    server.ended.recv().await.unwrap();
    let response = server.request(&pool).await;
    assert_eq!(response.status(), 200);
    assert_eq!(body_of(response).await, "hello");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_body_drives_its_connection_and_gives_it_back_at_the_end() {
    let server = server(Answer::Chunked).await;
    let pool = pool();
    let response = server.request(&pool).await;
    let mut body = response.into_body();
    for _ in 0..2 {
        // Nothing else polls the connection: the body's reads must.
        server.more.send(()).unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert_eq!(pool.idle_count(&server.origin), 0, "in use until the end");
    }
    server.more.send(()).unwrap();
    assert!(body.frame().await.is_none());
    assert_eq!(pool.idle_count(&server.origin), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let mut server = server(Answer::Chunked).await;
    let pool = pool();
    let response = server.request(&pool).await;
    let mut body = response.into_body();
    server.more.send(()).unwrap();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "abc"
    );
    drop(body);
    // The server writes the rest into a closed connection, and sees it end;
    // the pool did not keep it.
    server.more.send(()).unwrap();
    server.more.send(()).unwrap();
    server.ended.recv().await.unwrap();
    assert_eq!(pool.idle_count(&server.origin), 0);
}

#[tokio::test]
async fn idle_connections_past_their_time_are_closed() {
    let pool = pool();
    let mut server = one_idle(Answer::KeepAlive, &pool).await;
    sweep_at(&pool, Instant::now() + IDLE_TIMEOUT / 2);
    assert_eq!(pool.idle_count(&server.origin), 1, "not yet");
    sweep_at(&pool, Instant::now() + IDLE_TIMEOUT);
    assert_eq!(pool.idle_count(&server.origin), 0);
    server.ended.recv().await.unwrap();
}

/// One sweep, as the sweeper would make it at `now`.
fn sweep_at(pool: &Pool, now: Instant) {
    pool.sweep_now(now, &mut Context::from_waker(Waker::noop()));
}

#[tokio::test]
async fn a_sweep_keeps_an_open_idle_connection_and_drops_one_the_upstream_closed() {
    let pool = pool();
    let mut server = one_idle(Answer::ThenClose, &pool).await;
    // Swept while the upstream keeps it: kept. The sweeper's waker does
    // nothing; this test's own tells it when the connection has news, so
    // it sweeps again then, without a sleep.
    let mut swept = 0;
    std::future::poll_fn(|cx| {
        pool.sweep_now(Instant::now(), cx);
        swept += 1;
        if swept == 1 {
            assert_eq!(
                pool.idle_count(&server.origin),
                1,
                "an open connection was dropped"
            );
            // The upstream closes it (its idle timeout, say).
            server.more.send(()).unwrap();
        }
        // Each later sweep runs because the connection woke this task.
        if pool.idle_count(&server.origin) == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    server.ended.recv().await.unwrap();
    assert!(swept >= 2);
    // The next request opens a new connection.
    let response = server.request(&pool).await;
    assert_eq!(body_of(response).await, "hello");
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_sweeper_closes_an_idle_connection_the_upstream_ended_long_before_its_idle_time() {
    // Idle connections kept for an hour, swept every 20 ms.
    let pool = Pool::with_sweep(
        Duration::from_secs(5),
        Duration::from_secs(3600),
        Duration::from_millis(20),
    );
    let mut server = one_idle(Answer::ThenHalfClose, &pool).await;
    // The upstream ends its side and waits for the pool to close its own:
    // only the sweeper, which nobody here calls, can.
    server.more.send(()).unwrap();
    server.ended.recv().await.unwrap();
    assert_eq!(pool.idle_count(&server.origin), 0);
}

#[tokio::test]
async fn a_refused_connection_names_its_origin() {
    // A socket bound to a port and not listening: the port is ours, and a
    // connection to it is refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let origin: Arc<str> = socket.local_addr().unwrap().to_string().into();
    let Err(error) = pool().send(&origin, get(&origin)).await else {
        panic!("a response from a port nothing listens on");
    };
    match error {
        SendError::Connect(message) => assert!(
            message.starts_with(&format!("connect error to http://{origin}: ")),
            "{message}"
        ),
        SendError::Request(e) => panic!("expected a connect error, got {e}"),
    }
}
