//! A plain HTTP/1.1 + h2c accept loop for the mock upstream, and the
//! benchmark forwarders' accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Accepts connections until `stop` flips, then gives open ones `drain`.
pub(crate) async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "mock accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service_fn(service.clone()));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The benchmark forwarders' loop: checks that `upstream` (`http://host:port`)
/// names a host and port, then hands each connection accepted on `listen`
/// to `connection` with that `host:port`, until SIGTERM or ctrl-c.
pub(crate) async fn forward<F>(
    name: &str,
    listen: std::net::SocketAddr,
    upstream: http::Uri,
    connection: impl Fn(tokio::net::TcpStream, std::sync::Arc<str>) -> F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let Some(authority) = upstream.authority() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("--upstream {upstream} has no host:port"),
        ));
    };
    let origin: std::sync::Arc<str> = match authority.port() {
        Some(_) => authority.as_str().into(),
        None => format!("{}:80", authority.host()).into(),
    };
    let listener = TcpListener::bind(listen).await?;
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    tracing::info!(%listen, %upstream, "{name} listening");
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = stopped.changed() => return Ok(()),
        };
        tokio::spawn(connection(stream, origin.clone()));
    }
}
