//! The floor under the sidecar's throughput: a reverse proxy on the same
//! stack (tokio current-thread runtime, hyper_util's server and pooled legacy
//! client, `TCP_NODELAY` both ways, mimalloc) that does nothing but forward —
//! no flag, no body scan, no metrics, no log. `bench/run.sh` case (j) loads it
//! like the sidecar: what it costs per request is what hyper and tokio cost,
//! which no change to the sidecar's own logic can go below.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::serve::{Body, serve, shutdown_signal};

/// Forwards every request on `listen` to `upstream` (`http://host:port`)
/// until SIGTERM or ctrl-c.
pub async fn run(listen: SocketAddr, upstream: Uri) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    tracing::info!(%listen, %upstream, "bare proxy listening");
    let service = move |request: Request<Incoming>| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move { Ok::<_, Infallible>(forward(&client, &upstream, request).await) }
    };
    serve(listener, service, stopped, Duration::from_secs(5)).await;
    Ok(())
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: &Uri,
    request: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = format!("{upstream}{}", path.trim_start_matches('/'));
    match uri.parse::<Uri>() {
        Ok(uri) => parts.uri = uri,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e.to_string()),
    }
    parts.headers.remove(http::header::HOST);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(|body| body.map_err(Into::into).boxed_unsync()),
        Err(e) => failure(StatusCode::BAD_GATEWAY, e.to_string()),
    }
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
