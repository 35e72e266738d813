//! An HTTPS upstream on 127.0.0.1 with a certificate for `localhost` and
//! `127.0.0.1` from a CA made at test time. It records how each request
//! arrived (ALPN, HTTP version, authority, model) and answers a chat
//! completion naming the model.
//!
//! Included with `#[path = "support/tls_upstream.rs"] mod tls_upstream;`.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub const H2_AND_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];
pub const HTTP1_ONLY: &[&[u8]] = &[b"http/1.1"];

/// What the upstream saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The protocol agreed in the TLS handshake.
    pub alpn: Option<String>,
    pub version: Version,
    /// `:authority` on HTTP/2 (the request URI's authority).
    pub authority: Option<String>,
    pub host: Option<String>,
    pub path: String,
    pub model: Option<String>,
}

pub struct TlsUpstream {
    pub port: u16,
    /// PEM of the CA that signed the server certificate.
    pub ca_file: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// A CA plus a server certificate it signed, as the acceptor wants them.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TlsUpstream {
    /// Listens on 127.0.0.1, offering these ALPN protocols.
    pub async fn start(alpn: &[&[u8]]) -> TlsUpstream {
        let pki = make_pki(&["localhost", "127.0.0.1"]);
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &pki.ca_pem).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain, pki.key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(listener, acceptor, seen.clone()));
        TlsUpstream {
            port,
            ca_file,
            seen,
            task,
            _dir: dir,
        }
    }

    /// A second, unrelated CA: trusting it must not make this server trusted.
    pub fn unrelated_ca_file(&self) -> PathBuf {
        let path = self._dir.path().join("other-ca.pem");
        std::fs::write(&path, make_pki(&["localhost"]).ca_pem).unwrap();
        path
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, seen: Arc<Mutex<Vec<Seen>>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, seen) = (acceptor.clone(), seen.clone());
        tokio::spawn(async move {
            // A client that rejects the certificate ends here.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let alpn = tls
                .get_ref()
                .1
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let service = service_fn(move |request| record(request, alpn.clone(), seen.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn record(
    request: Request<Incoming>,
    alpn: Option<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let model = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("model")?.as_str().map(str::to_string));
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    seen.lock().unwrap().push(Seen {
        alpn,
        version: parts.version,
        authority: parts.uri.authority().map(|a| a.to_string()),
        host: header(http::header::HOST),
        path: parts.uri.path().to_string(),
        model: model.clone(),
    });
    let model = model.unwrap_or_default();
    let body = json!({
        "id": "chatcmpl-tls", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": format!("Hello over TLS from {model}")}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn make_pki(names: &[&str]) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "aiflags test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}
