//! The floor under the sidecar's throughput: a reverse proxy on the pieces
//! the sidecar's plain-HTTP path is made of — tokio's current-thread runtime,
//! hyper's HTTP/1 server and client connections, `TCP_NODELAY` both ways,
//! mimalloc — that does nothing but forward: no flag, no body scan, no
//! metrics, no log, and not even a pool. Each client connection gets its own
//! upstream connection, opened when it is accepted, and both are polled by
//! one task. `bench/run.sh` case (j) loads it like the sidecar: what it costs
//! per request is what hyper and tokio cost, which no change to the sidecar's
//! own logic can go below.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Context;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::serve::{self, Body};

/// Forwards every request on `listen` to `upstream` (`http://host:port`)
/// until SIGTERM or ctrl-c.
pub async fn run(listen: SocketAddr, upstream: Uri) -> std::io::Result<()> {
    serve::forward("bare proxy", listen, upstream, connection).await
}

type ClientConnection = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Incoming>;

/// A client connection's own upstream connection: its sending half, used by
/// one request at a time, and the connection itself, which the client
/// connection's task polls. Opened on the first request and again whenever
/// the upstream has closed it (nginx closes a keep-alive connection after
/// 1,000 requests).
struct Upstream {
    origin: Arc<str>,
    sender: Mutex<Option<SendRequest<Incoming>>>,
    connection: std::sync::Mutex<Option<Pin<Box<ClientConnection>>>>,
}

impl Upstream {
    /// Polls the upstream connection, if one is open; forgets it when it ends.
    fn poll_connection(&self, cx: &mut Context<'_>) {
        let mut slot = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = slot.as_mut()
            && connection.as_mut().poll(cx).is_ready()
        {
            *slot = None;
        }
    }

    async fn forward(&self, request: Request<Incoming>) -> Response<Body> {
        // The server serves one request at a time, so the lock never waits.
        let mut sender = self.sender.lock().await;
        let open = match sender.as_mut() {
            Some(open) if !open.is_closed() => open.ready().await.is_ok(),
            _ => false,
        };
        if !open {
            match self.open().await {
                Ok(new) => *sender = Some(new),
                Err(e) => return failure(StatusCode::BAD_GATEWAY, e),
            }
        }
        let Some(sender) = sender.as_mut() else {
            return failure(StatusCode::BAD_GATEWAY, "no upstream connection".into());
        };
        if let Err(e) = sender.ready().await {
            return failure(StatusCode::BAD_GATEWAY, e.to_string());
        }
        match sender.send_request(request).await {
            Ok(response) => response.map(|body| body.map_err(Into::into).boxed_unsync()),
            Err(e) => failure(StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }

    /// Connects, and hands the connection to the task to poll.
    async fn open(&self) -> Result<SendRequest<Incoming>, String> {
        let stream = TcpStream::connect(&*self.origin)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.origin))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {}: {e}", self.origin))?;
        *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::pin(connection));
        // The task polls the new connection when it next wakes: now.
        tokio::task::yield_now().await;
        Ok(sender)
    }
}

/// One client connection, and its upstream connection polled on its task.
async fn connection(stream: TcpStream, origin: Arc<str>) {
    let _ = stream.set_nodelay(true);
    let upstream = Arc::new(Upstream {
        origin,
        sender: Mutex::new(None),
        connection: std::sync::Mutex::new(None),
    });
    let service = {
        let upstream = upstream.clone();
        service_fn(move |request| {
            let upstream = upstream.clone();
            async move { Ok::<_, Infallible>(upstream.forward(request).await) }
        })
    };
    let server =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut server = pin!(server);
    // Whatever woke the task, the upstream connection is polled too (a poll
    // with nothing to do returns at once); the task ends with the server's.
    std::future::poll_fn(|cx| {
        upstream.poll_connection(cx);
        server.as_mut().poll(cx).map(|_| ())
    })
    .await;
}

fn failure(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(
        http_body_util::Full::new(bytes::Bytes::from(message))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}
