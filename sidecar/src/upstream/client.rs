//! The client for every upstream: for HTTPS, hyper_util's pooled client
//! with rustls (webpki and the system's roots), HTTP/2 where ALPN offers it;
//! for plain HTTP (in-cluster endpoints), the sidecar's own HTTP/1.1
//! connections driven by the requests using them ([`super::plain`]).
//! `TCP_NODELAY` on every connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

use super::UpstreamError;
use super::plain::{self, PlainBody, Pool, SendError};
use super::target::Target;
use crate::body::ProxyBody;

/// How long a TCP connect to an upstream may take: an unreachable provider
/// must fail fast enough to fall back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct UpstreamClient {
    /// HTTPS upstreams.
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    /// Plain-HTTP upstreams.
    plain: Arc<Pool>,
}

impl UpstreamClient {
    pub(crate) fn new() -> UpstreamClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // A request body written in more than one piece must not wait on the
        // upstream's delayed ACK (Nagle): on for plain and TLS alike, since
        // TLS rides on this connector's socket.
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        UpstreamClient {
            client: Client::builder(TokioExecutor::new()).build(https),
            plain: Pool::new(CONNECT_TIMEOUT, plain::IDLE_TIMEOUT),
        }
    }

    /// Sends `request`, whose URI is absolute; the response head is
    /// returned as soon as it arrives.
    pub(crate) async fn request(
        &self,
        request: Request<ProxyBody>,
        target: &Target,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let label = target.label();
        if request.uri().scheme() == Some(&Scheme::HTTP) {
            return match self.plain.send(&target.origin, request).await {
                Ok(response) => Ok(response.map(ResponseBody::Plain)),
                Err(SendError::Connect(message)) => Err(UpstreamError::Connect(message)),
                Err(SendError::Request(e)) => Err(UpstreamError::Connect(describe(
                    &format!("request to {label} failed"),
                    Some(&e),
                ))),
            };
        }
        match self.client.request(request).await {
            Ok(response) => Ok(response.map(ResponseBody::Pooled)),
            Err(e) => {
                let what = if e.is_connect() {
                    format!("connect error to {label}")
                } else {
                    format!("request to {label} failed")
                };
                // The client's own message ("client error (Connect)") says
                // nothing the cause chain does not.
                Err(UpstreamError::Connect(describe(
                    &what,
                    std::error::Error::source(&e),
                )))
            }
        }
    }
}

/// An upstream response's body, from either client.
pub(crate) enum ResponseBody {
    Pooled(Incoming),
    Plain(PlainBody),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Pooled(body) => Pin::new(body).poll_frame(cx),
            ResponseBody::Plain(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Pooled(body) => body.is_end_stream(),
            ResponseBody::Plain(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Pooled(body) => body.size_hint(),
            ResponseBody::Plain(body) => body.size_hint(),
        }
    }
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

/// webpki roots always, so a distroless image still verifies public
/// providers, plus the system's roots for private CAs.
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .with_root_certificates(roots.clone())
                .with_no_client_auth()
        })
        // The ring provider supports the default versions; this is unreachable.
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth()
        })
}

/// A client error as one line: the cause chain says "connection refused".
fn describe(what: &str, first: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut message = what.to_owned();
    let mut source = first;
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
