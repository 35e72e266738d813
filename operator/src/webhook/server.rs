//! The HTTPS listener the API server calls: `POST /mutate-pods`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::Webhook;

pub const MUTATE_PODS_PATH: &str = "/mutate-pods";
/// A pod and its old copy fit with room to spare: etcd stores at most 1.5 MiB.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// A client that connects but never finishes the handshake is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` resolves; each new connection gets the
/// certificate `certificates` holds at that moment.
pub async fn serve(
    listener: TcpListener,
    certificates: watch::Receiver<Arc<ServerConfig>>,
    webhook: Arc<Webhook>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    tracing::warn!(%error, "accepting a webhook connection failed");
                    continue;
                }
            },
        };
        let acceptor = TlsAcceptor::from(certificates.borrow().clone());
        let webhook = webhook.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("webhook TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |request| {
                let webhook = webhook.clone();
                async move { Ok::<_, Infallible>(respond(request, &webhook).await) }
            });
            let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "webhook connection ended with an error");
            }
        });
    }
}

async fn respond(request: Request<Incoming>, webhook: &Webhook) -> Response<Full<Bytes>> {
    if request.uri().path() != MUTATE_PODS_PATH {
        return text(
            StatusCode::NOT_FOUND,
            "not found; the webhook serves POST /mutate-pods\n",
        );
    }
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n");
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("reading the AdmissionReview failed: {error}\n"),
            );
        }
    };
    match webhook.review(&body).await {
        Ok(json) => {
            let mut response = Response::new(Full::new(Bytes::from(json)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}
