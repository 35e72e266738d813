//! The sidecar originates TLS to its upstreams and speaks HTTP/2 where the
//! upstream offers it. The sidecar runs as the real binary, trusting a CA
//! made at test time through `SSL_CERT_FILE` (read by rustls-native-certs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::process;
use crate::support::tls_upstream;

use std::path::Path;

use http::Version;
use process::SidecarProcess;
use tls_upstream::{H2_AND_HTTP1, HTTP1_ONLY, Seen, TlsUpstream};

const FLAGS: &str = r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: summarizer}
spec:
  match: {models: ["gpt-4o-mini"]}
  defaultVariant: candidate
  variants:
    - {name: stable, model: gpt-4o-mini}
    - {name: candidate, model: gpt-4.1-mini}
  rollout:
    weights: {stable: 0, candidate: 100}
"#;

/// The sidecar binary with `https://localhost:<port>` as its upstream,
/// trusting only the CAs in `ca_file`.
async fn sidecar_in_front_of(
    upstream: &TlsUpstream,
    ca_file: &Path,
) -> (SidecarProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.yaml");
    std::fs::write(&flags, FLAGS).unwrap();
    let url = format!("https://localhost:{}", upstream.port);
    let sidecar = SidecarProcess::flags(&flags, &url)
        .env("SSL_CERT_FILE", ca_file)
        .start()
        .await;
    (sidecar, dir)
}

/// The one request the upstream saw.
fn only_request(upstream: &TlsUpstream) -> Seen {
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "the upstream saw {seen:#?}");
    seen.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_flagged_request_reaches_a_tls_upstream_over_http2_with_the_variant_model() {
    let upstream = TlsUpstream::start(H2_AND_HTTP1).await;
    let (sidecar, _dir) = sidecar_in_front_of(&upstream, &upstream.ca_file).await;

    let reply = sidecar.client.chat("gpt-4o-mini").send().await;

    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), sidecar.log());
    assert_eq!(reply.header("x-aiflags-flag"), "summarizer");
    assert_eq!(reply.header("x-aiflags-model"), "gpt-4.1-mini");
    assert_eq!(reply.json()["model"], "gpt-4.1-mini");
    let seen = only_request(&upstream);
    assert_eq!(seen.alpn.as_deref(), Some("h2"), "{seen:?}");
    assert_eq!(seen.version, Version::HTTP_2, "{seen:?}");
    assert_eq!(seen.model.as_deref(), Some("gpt-4.1-mini"));
    assert_eq!(seen.path, "/v1/chat/completions");
    let origin = format!("localhost:{}", upstream.port);
    assert_eq!(seen.authority.as_deref(), Some(origin.as_str()), "{seen:?}");
    // On HTTP/2 a Host header is optional, but if sent it must match
    // :authority, never the sidecar's own 127.0.0.1 address.
    assert!(
        seen.host.is_none() || seen.host.as_deref() == Some(origin.as_str()),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_request_no_flag_matches_passes_through_to_the_tls_upstream_over_http2() {
    let upstream = TlsUpstream::start(H2_AND_HTTP1).await;
    let (sidecar, _dir) = sidecar_in_front_of(&upstream, &upstream.ca_file).await;

    let reply = sidecar.client.chat("gpt-3.5-turbo").send().await;

    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), sidecar.log());
    assert_eq!(reply.header("x-aiflags-flag"), "");
    assert_eq!(reply.json()["model"], "gpt-3.5-turbo");
    let seen = only_request(&upstream);
    assert_eq!(seen.alpn.as_deref(), Some("h2"), "{seen:?}");
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.model.as_deref(), Some("gpt-3.5-turbo"));
    let origin = format!("localhost:{}", upstream.port);
    assert_eq!(seen.authority.as_deref(), Some(origin.as_str()), "{seen:?}");
}

#[tokio::test]
async fn an_http1_only_tls_upstream_gets_http1_with_its_own_host() {
    let upstream = TlsUpstream::start(HTTP1_ONLY).await;
    let (sidecar, _dir) = sidecar_in_front_of(&upstream, &upstream.ca_file).await;

    let reply = sidecar.client.chat("gpt-4o-mini").send().await;

    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), sidecar.log());
    assert_eq!(reply.header("x-aiflags-model"), "gpt-4.1-mini");
    let seen = only_request(&upstream);
    assert_eq!(seen.alpn.as_deref(), Some("http/1.1"), "{seen:?}");
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.model.as_deref(), Some("gpt-4.1-mini"));
    let origin = format!("localhost:{}", upstream.port);
    assert_eq!(seen.host.as_deref(), Some(origin.as_str()), "{seen:?}");
}

#[tokio::test]
async fn an_upstream_certificate_from_an_untrusted_ca_is_refused() {
    let upstream = TlsUpstream::start(H2_AND_HTTP1).await;
    let other_ca = upstream.unrelated_ca_file();
    let (sidecar, _dir) = sidecar_in_front_of(&upstream, &other_ca).await;

    let reply = sidecar.client.chat("gpt-4o-mini").send().await;

    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "aiflags_error");
    assert!(
        reply.text().contains("certificate"),
        "the error should say the certificate was the problem: {}",
        reply.text()
    );
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}
