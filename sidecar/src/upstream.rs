//! Sending requests to LLM providers: one pooled client (TLS via rustls,
//! HTTP/2 where ALPN offers it, plain HTTP for in-cluster endpoints), the
//! choice of target, and the credential a target needs.
//!
//! A provider `baseUrl` is an origin plus an optional path prefix that takes
//! the place of the default upstream; the request path is kept. So
//! `http://vllm:8000` serves `/v1/chat/completions` at
//! `http://vllm:8000/v1/chat/completions`. A prefix that already ends in
//! `/v1` (as SDK base URLs do) is not doubled.

use std::path::PathBuf;
use std::sync::Arc;

use aiflags_api::Provider;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version, request::Parts};
use hyper::body::{Body, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

use crate::body::ProxyBody;
use crate::settings::{Upstreams, base_url};

/// Which API family a request speaks; decides the default upstream and how a
/// credential is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    OpenAi,
    Anthropic,
}

impl Protocol {
    pub fn for_path(path: &str) -> Protocol {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Protocol::Anthropic
        } else {
            Protocol::OpenAi
        }
    }
}

/// Where one attempt goes.
#[derive(Clone, Debug)]
pub struct Target {
    pub base: Uri,
    pub protocol: Protocol,
    pub credential_key: Option<String>,
    /// Whether this is the protocol's default upstream: only there may the
    /// app's own API key go.
    pub is_default: bool,
    /// Computed once: every attempt uses it several times (metrics label,
    /// circuit key, messages).
    label: String,
}

impl Target {
    pub fn new(
        base: Uri,
        protocol: Protocol,
        credential_key: Option<String>,
        is_default: bool,
    ) -> Target {
        let label = base.to_string().trim_end_matches('/').to_string();
        Target {
            base,
            protocol,
            credential_key,
            is_default,
            label,
        }
    }

    /// `scheme://authority[/prefix]`: the provider label and circuit key.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn uri_for(&self, path_and_query: &str) -> Result<Uri, UpstreamError> {
        let prefix = self.base.path().trim_end_matches('/');
        let path = match prefix.strip_suffix("/v1") {
            Some(_) if path_and_query.starts_with("/v1/") => &path_and_query[3..],
            _ => path_and_query,
        };
        let scheme = self.base.scheme_str().unwrap_or("https");
        let authority = self
            .base
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        format!("{scheme}://{authority}{prefix}{path}")
            .parse()
            .map_err(|_| UpstreamError::Config(format!("cannot build a URL from {}", self.label())))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A problem of configuration, not of the upstream: retrying cannot help.
    #[error("{0}")]
    Config(String),
    /// The upstream could not be reached or dropped the connection.
    #[error("{0}")]
    Connect(String),
}

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    defaults: Upstreams,
    credentials_dir: Option<PathBuf>,
}

impl Upstream {
    pub fn new(defaults: Upstreams, credentials_dir: Option<PathBuf>) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // An unreachable provider must fail fast enough to fall back.
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Upstream {
            client,
            defaults,
            credentials_dir,
        }
    }

    pub fn default_target(&self, protocol: Protocol) -> Target {
        let base = match protocol {
            Protocol::OpenAi => self.defaults.openai.clone(),
            Protocol::Anthropic => self.defaults.anthropic.clone(),
        };
        Target::new(base, protocol, None, true)
    }

    /// The variant's provider, or the default upstream for this protocol.
    pub fn target_for(
        &self,
        protocol: Protocol,
        provider: Option<&Provider>,
    ) -> Result<Target, UpstreamError> {
        let Some(provider) = provider else {
            return Ok(self.default_target(protocol));
        };
        let base = base_url(&provider.base_url)
            .map_err(|e| UpstreamError::Config(format!("provider baseUrl: {e}")))?;
        let default = self.default_target(protocol).base;
        let is_default =
            base.authority() == default.authority() && base.scheme_str() == default.scheme_str();
        Ok(Target::new(
            base,
            protocol,
            provider.credential_key.clone(),
            is_default,
        ))
    }

    /// Sends one request; the response head is returned as soon as it arrives.
    /// A `rewritten` request (one a flag applied to) asks for an uncompressed
    /// response, because the proxy reads its usage and filters its stream.
    pub async fn send(
        &self,
        target: &Target,
        parts: &Parts,
        body: ProxyBody,
        rewritten: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = target.uri_for(path)?;
        // The pooled client negotiates HTTP/2 itself; asking for it here would
        // fail on HTTP/1-only upstreams.
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = forwarded_headers(&parts.headers);
        let headers = request.headers_mut();
        if rewritten {
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        // The app's key is for its provider: a flag pointing elsewhere (a
        // vLLM, a partner endpoint) must name a credential or go without.
        if !target.is_default && target.credential_key.is_none() {
            for name in CLIENT_AUTH_HEADERS {
                headers.remove(name);
            }
        }
        // A rewritten body has its own length; the client's would truncate it.
        if let Some(len) = request.body().size_hint().exact() {
            request
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        if let Some(key) = &target.credential_key {
            let secret = self.credential(key).await?;
            set_credential(request.headers_mut(), target.protocol, &secret)?;
        }
        self.client
            .request(request)
            .await
            .map_err(|e| UpstreamError::Connect(describe(&e, target.label())))
    }

    async fn credential(&self, key: &str) -> Result<String, UpstreamError> {
        let missing = |why: &str| {
            UpstreamError::Config(format!(
                "credential {key:?} {why}; add it to the Secret aiflags-credentials \
                 and mount it with --credentials-dir"
            ))
        };
        let dir = self
            .credentials_dir
            .as_ref()
            .ok_or_else(|| missing("has no --credentials-dir"))?;
        // Read on every use: kubelet rotates Secret files in place.
        let text = tokio::fs::read_to_string(dir.join(key))
            .await
            .map_err(|_| missing("cannot be read"))?;
        Ok(text.trim().to_string())
    }
}

/// How long a TCP connect to an upstream may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where OpenAI, Anthropic and Azure clients put their API keys.
const CLIENT_AUTH_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

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

/// Connection-scoped headers that must not cross a proxy (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The client's headers minus hop-by-hop ones and `host`; the client sets
/// `host` from the target URL.
pub fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    strip_hop_by_hop(&mut out);
    out.remove(header::HOST);
    // Our own request headers (x-aiflags-flag) are for the sidecar only.
    let ours: Vec<HeaderName> = out
        .keys()
        .filter(|name| name.as_str().starts_with("x-aiflags-"))
        .cloned()
        .collect();
    for name in ours {
        out.remove(name);
    }
    out
}

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too; most requests have none.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::try_from(name.trim()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    // Constant names: no parsing per request.
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

fn set_credential(
    headers: &mut HeaderMap,
    protocol: Protocol,
    secret: &str,
) -> Result<(), UpstreamError> {
    let invalid = || UpstreamError::Config("the credential is not a valid header value".into());
    // The variant's key replaces whatever the app sent, in either scheme.
    headers.remove(header::AUTHORIZATION);
    headers.remove("x-api-key");
    match protocol {
        Protocol::OpenAi => {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| invalid())?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        Protocol::Anthropic => {
            let mut value = HeaderValue::from_str(secret).map_err(|_| invalid())?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(base: &str) -> Target {
        Target::new(base.parse().unwrap(), Protocol::OpenAi, None, true)
    }

    #[test]
    fn base_url_replaces_the_origin_and_keeps_the_path() {
        let uri = |b: &str, p: &str| target(b).uri_for(p).unwrap().to_string();
        assert_eq!(
            uri("http://h:1", "/v1/chat/completions?x=1"),
            "http://h:1/v1/chat/completions?x=1"
        );
        assert_eq!(
            uri("http://h:1/", "/v1/embeddings"),
            "http://h:1/v1/embeddings"
        );
        assert_eq!(
            uri("http://h:1/v1", "/v1/embeddings"),
            "http://h:1/v1/embeddings"
        );
        assert_eq!(
            uri("https://h/openai", "/v1/embeddings"),
            "https://h/openai/v1/embeddings"
        );
    }

    #[test]
    fn hop_by_hop_and_host_do_not_cross() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("host", "127.0.0.1:15080".parse().unwrap());
        h.insert("authorization", "Bearer app".parse().unwrap());
        let out = forwarded_headers(&h);
        assert_eq!(out.len(), 1);
        assert_eq!(out["authorization"], "Bearer app");
    }

    #[test]
    fn credentials_follow_the_protocol() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer app".parse().unwrap());
        set_credential(&mut h, Protocol::Anthropic, "sk-ant").unwrap();
        assert_eq!(h["x-api-key"], "sk-ant");
        assert!(h.get("authorization").is_none());
        set_credential(&mut h, Protocol::OpenAi, "sk-oai").unwrap();
        assert_eq!(h["authorization"], "Bearer sk-oai");
        assert_eq!(Protocol::for_path("/v1/messages"), Protocol::Anthropic);
        assert_eq!(Protocol::for_path("/v1/models"), Protocol::OpenAi);
    }
}
