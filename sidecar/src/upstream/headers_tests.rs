use std::sync::Arc;

use http::Uri;

use super::*;

fn client_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("authorization", "Bearer app-key"),
        ("proxy-authorization", "Basic x"),
        ("x-api-key", "sk-ant-app"),
        ("api-key", "azure-app"),
        ("x-goog-api-key", "goog-app"),
        ("cookie", "session=1"),
        ("openai-organization", "org-app"),
        ("openai-project", "proj-app"),
        ("x-company-token", "tok"),
        ("content-type", "application/json"),
        ("user-agent", "OpenAI/Python"),
        ("host", "127.0.0.1:15080"),
        ("content-length", "12"),
        ("content-encoding", "gzip"),
        ("accept-encoding", "gzip, br"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("x-aiflags-flag", "f"),
    ] {
        h.append(name, value.parse().unwrap());
    }
    h
}

const CREDENTIALS: [&str; 9] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "openai-organization",
    "openai-project",
    "x-company-token",
];

fn target(base: &str, protocol: Protocol, key: Option<&str>, app_origin: bool) -> Target {
    let uri: Uri = base.parse().unwrap();
    Target::new(&uri, protocol, key.map(Arc::from), app_origin)
}

/// Every credential header × every kind of target.
#[test]
fn credentials_reach_only_the_origin_the_app_addressed() {
    let policy = HeaderPolicy::new(&[HeaderName::from_static("x-company-token")]);
    let client = client_headers();
    let cases = [
        // (target, the variant's credential, which app credentials may pass)
        (
            target("https://api.openai.com", Protocol::OpenAi, None, true),
            None,
            true,
        ),
        (
            target("https://api.openai.com", Protocol::OpenAi, Some("k"), true),
            Some(("k", "sk-variant")),
            false,
        ),
        (
            target("http://vllm:8000", Protocol::OpenAi, None, false),
            None,
            false,
        ),
        (
            target(
                "https://partner.example",
                Protocol::OpenAi,
                Some("k"),
                false,
            ),
            Some(("k", "sk-variant")),
            false,
        ),
        (
            target(
                "https://partner.example",
                Protocol::Anthropic,
                Some("k"),
                false,
            ),
            Some(("k", "sk-variant")),
            false,
        ),
    ];
    for (target, credential, app_credentials_pass) in cases {
        let how = Outbound {
            credential,
            decoded: false,
            reads_response: false,
        };
        let out = policy.outbound(&client, &target, how).unwrap();
        for name in CREDENTIALS {
            let from_app = out.get(name).is_some_and(|v| {
                let v = v.to_str().unwrap();
                v.contains("app") || v == "Basic x" || v == "session=1" || v == "tok"
            });
            // proxy-authorization is hop-by-hop: it never crosses.
            let expected = app_credentials_pass && name != "proxy-authorization";
            assert_eq!(
                from_app,
                expected,
                "{name} to {} ({credential:?})",
                target.label()
            );
        }
        match (credential, target.protocol) {
            (Some(_), Protocol::OpenAi) => assert_eq!(out["authorization"], "Bearer sk-variant"),
            (Some(_), Protocol::Anthropic) => {
                assert_eq!(out["x-api-key"], "sk-variant");
                assert!(out.get("authorization").is_none());
            }
            (None, _) => {}
        }
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(out["user-agent"], "OpenAI/Python");
        // The target's own host, never the app's.
        assert_eq!(out.get("host"), target.host.as_ref());
        assert_ne!(out.get("host"), client.get("host"));
        for gone in ["content-length", "connection", "x-hop", "x-aiflags-flag"] {
            assert!(
                out.get(gone).is_none(),
                "{gone} crossed to {}",
                target.label()
            );
        }
    }
}

#[test]
fn decoded_and_read_bodies_adjust_their_encoding_headers() {
    let policy = HeaderPolicy::default();
    let t = target("https://api.openai.com", Protocol::OpenAi, None, true);
    let how = Outbound {
        credential: None,
        decoded: true,
        reads_response: true,
    };
    let out = policy.outbound(&client_headers(), &t, how).unwrap();
    assert!(out.get("content-encoding").is_none());
    assert_eq!(out["accept-encoding"], "identity");
    let untouched = policy
        .outbound(&client_headers(), &t, Outbound::default())
        .unwrap();
    assert_eq!(untouched["content-encoding"], "gzip");
    assert_eq!(untouched["accept-encoding"], "gzip, br");
}

#[test]
fn a_credential_that_is_not_a_header_value_is_refused() {
    let policy = HeaderPolicy::default();
    let t = target(
        "https://partner.example",
        Protocol::OpenAi,
        Some("k"),
        false,
    );
    let how = Outbound {
        credential: Some(("partner", "line\nbreak")),
        ..Outbound::default()
    };
    let err = policy.outbound(&client_headers(), &t, how).unwrap_err();
    assert!(err.to_string().contains("credential \"partner\""), "{err}");
}

#[test]
fn response_heads_lose_their_hop_by_hop_headers() {
    let mut h = HeaderMap::new();
    h.insert("connection", "close, x-secret-hop".parse().unwrap());
    h.insert("x-secret-hop", "1".parse().unwrap());
    h.insert("transfer-encoding", "chunked".parse().unwrap());
    h.insert("x-request-id", "r".parse().unwrap());
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert_eq!(h["x-request-id"], "r");
}

#[test]
fn credential_query_parameters_stay_with_the_apps_origin() {
    let policy = HeaderPolicy::default();
    let home = target("https://api.openai.com", Protocol::OpenAi, None, true);
    let away = target("https://partner.example", Protocol::OpenAi, None, false);
    let query = "/v1/chat/completions?key=app&x=1&API-KEY=a&access_token=t";
    assert_eq!(policy.outbound_path(query, &home, false), query);
    assert_eq!(
        policy.outbound_path(query, &away, false),
        "/v1/chat/completions?x=1"
    );
    assert_eq!(
        policy.outbound_path(query, &home, true),
        "/v1/chat/completions?x=1"
    );
    assert_eq!(policy.outbound_path("/v1/x?key=a", &away, false), "/v1/x");
    assert_eq!(
        policy.outbound_path("/v1/x?keyword=a", &away, false),
        "/v1/x?keyword=a"
    );
}
