//! One pooled client for every upstream: rustls with webpki and the system's
//! roots, HTTP/2 where ALPN offers it, plain HTTP for in-cluster endpoints,
//! `TCP_NODELAY` on every connection.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

use super::UpstreamError;
use crate::body::ProxyBody;

/// How long a TCP connect to an upstream may take: an unreachable provider
/// must fail fast enough to fall back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
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
        }
    }

    pub(crate) async fn request(
        &self,
        request: Request<ProxyBody>,
        label: &str,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.client
            .request(request)
            .await
            .map_err(|e| UpstreamError::Connect(describe(&e, label)))
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
fn describe(error: &hyper_util::client::legacy::Error, target: &str) -> String {
    let mut message = if error.is_connect() {
        format!("connect error to {target}")
    } else {
        format!("request to {target} failed")
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
