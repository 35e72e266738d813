//! The webhook over a real TLS connection, its certificate reloaded from
//! disk, and its API calls (a namespace lookup, an Event) against the mock
//! API server.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::client::Body;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use super::Webhook;
use super::config::InjectionConfig;
use super::fixtures::{PodJson, pod, review_of};
use super::metrics::WebhookMetrics;
use super::server::serve;
use super::tls::{CertFiles, CertReloader, Reload};

const PATIENCE: Duration = Duration::from_secs(10);
const HOST: &str = "aiflags-webhook.aiflags.svc";

/// A CA, and the PEM files of a server certificate it signed for [`HOST`].
struct Pki {
    ca: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec![HOST.to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca).expect("certificate");
    Pki {
        ca: ca.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn write_pki(dir: &Path, pki: &Pki) {
    std::fs::write(dir.join("tls.crt"), &pki.cert_pem).expect("write cert");
    std::fs::write(dir.join("tls.key"), &pki.key_pem).expect("write key");
}

type ApiHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A webhook whose namespace cache holds `cached`, and the mock API server
/// behind its client.
fn webhook(cached: &[Namespace]) -> (Arc<Webhook>, ApiHandle, prometheus::Registry) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (store, mut writer): (_, Writer<Namespace>) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for namespace in cached {
        writer.apply_watcher_event(&watcher::Event::InitApply(namespace.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let registry = prometheus::Registry::new();
    let webhook = Webhook {
        config: InjectionConfig::default(),
        namespaces: store,
        recorder: Recorder::new(client.clone(), "aiflags-operator".into()),
        client,
        metrics: WebhookMetrics::register(&registry).expect("metrics"),
    };
    (Arc::new(webhook), handle, registry)
}

fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
        .expect("namespace")
}

/// One HTTP/1.1 request over a fresh TLS connection that trusts only `ca`.
async fn call(
    port: u16,
    ca: &CertificateDer<'static>,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Bytes), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = ServerName::try_from(HOST).expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Ok((status, bytes))
}

/// A served webhook: its port and the directory its certificate files live in.
struct Served {
    port: u16,
    dir: tempfile::TempDir,
    reloader: Option<CertReloader>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Stops the server and waits until it has.
    async fn shut_down(mut self) {
        self.stop
            .take()
            .expect("running")
            .send(())
            .expect("server running");
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("stops on shutdown")
            .expect("task");
    }
}

fn metrics_text(registry: &prometheus::Registry) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encode")
}

async fn serve_with(pki: &Pki, webhook: Arc<Webhook>) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pki(dir.path(), pki);
    let (reloader, certificates) =
        CertReloader::load(CertFiles::in_dir(dir.path())).expect("certificate loads");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, certificates, webhook, async {
        let _ = stopped.await;
    }));
    Served {
        port,
        dir,
        reloader: Some(reloader),
        stop: Some(stop),
        task,
    }
}

#[tokio::test]
async fn injects_over_tls_and_refuses_what_is_not_a_review() {
    let pki = make_pki();
    let (webhook, _api, _) = webhook(&[namespace("shop", json!({}))]);
    let served = serve_with(&pki, webhook).await;
    let review = serde_json::to_vec(&review_of(&pod())).expect("json");

    let (status, body) = call(served.port, &pki.ca, Method::POST, "/mutate-pods", review)
        .await
        .expect("trusted");
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).expect("json answer");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");

    let (status, body) = call(
        served.port,
        &pki.ca,
        Method::POST,
        "/mutate-pods",
        b"{\"kind\":".to_vec(),
    )
    .await
    .expect("trusted");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.starts_with("the body is not an AdmissionReview: at kind: EOF while parsing"),
        "{text}"
    );

    let (status, _) = call(
        served.port,
        &pki.ca,
        Method::GET,
        "/mutate-pods",
        Vec::new(),
    )
    .await
    .expect("trusted");
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = call(served.port, &pki.ca, Method::POST, "/validate", Vec::new())
        .await
        .expect("trusted");
    assert_eq!(status, StatusCode::NOT_FOUND);

    let stranger = make_pki();
    let refused = call(
        served.port,
        &stranger.ca,
        Method::POST,
        "/mutate-pods",
        Vec::new(),
    )
    .await;
    let error = refused.err().unwrap_or_default();
    assert!(
        error.contains("invalid peer certificate"),
        "a client that trusts another CA gets no answer: {error}"
    );

    served.shut_down().await;
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_connections() {
    let first = make_pki();
    let (webhook, _api, _) = webhook(&[namespace("shop", json!({}))]);
    let mut served = serve_with(&first, webhook.clone()).await;
    let registry = prometheus::Registry::new();
    let metrics = WebhookMetrics::register(&registry).expect("metrics");
    let mut reloader = served.reloader.take().expect("reloader");
    assert!(matches!(reloader.check(), Reload::Unchanged));

    // A key that does not match its certificate (a half-finished swap) is
    // refused, and the old certificate keeps serving.
    let second = make_pki();
    std::fs::write(served.dir.path().join("tls.crt"), &second.cert_pem).expect("write");
    let failed = reloader.check();
    assert!(
        matches!(&failed, Reload::Failed(e) if e.to_string().contains("tls.crt and")),
        "{failed:?}"
    );
    call(served.port, &first.ca, Method::POST, "/x", Vec::new())
        .await
        .expect("old certificate still serves");

    // The real loop picks up the completed swap.
    let mut certificates = reloader.subscribe();
    let task = tokio::spawn(reloader.run(Duration::from_millis(20), move |reload| {
        if !matches!(reload, Reload::Unchanged) {
            metrics.cert_reloaded(matches!(reload, Reload::Reloaded));
        }
    }));
    write_pki(served.dir.path(), &second);
    tokio::time::timeout(PATIENCE, certificates.changed())
        .await
        .expect("reloaded in time")
        .expect("reloader alive");
    call(served.port, &second.ca, Method::POST, "/x", Vec::new())
        .await
        .expect("new certificate serves");
    assert!(
        call(served.port, &first.ca, Method::POST, "/x", Vec::new())
            .await
            .is_err()
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains("aiflags_operator_webhook_cert_reloads_total{result=\"success\"} 1"),
        "{text}"
    );

    served.shut_down().await;
    task.abort();
}

/// Fails instead of hanging when the webhook makes fewer API calls than expected.
async fn finished(scenario: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(PATIENCE, scenario)
        .await
        .expect("the webhook made fewer API requests than expected")
        .expect("scenario assertions hold");
}

fn api_answer(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).expect("json")));
    *response.status_mut() = status;
    response
}

#[tokio::test]
async fn an_uncached_namespace_is_read_and_a_refusal_becomes_an_event() {
    let (webhook, mut api, registry) = webhook(&[]);
    let scenario = tokio::spawn(async move {
        let (request, respond) = api.next_request().await.expect("a namespace read");
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&Method::GET, "/api/v1/namespaces/shop")
        );
        let shop =
            json!({"metadata": {"name": "shop", "labels": {"aiflags.dev/inject": "enabled"}}});
        respond.send_response(api_answer(StatusCode::OK, &shop));

        let (request, respond) = api.next_request().await.expect("an Event");
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (
                &Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events?"
            )
        );
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let event: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "InjectionSkipped");
        assert_eq!(event["reportingController"], "aiflags-operator");
        assert_eq!(
            event["regarding"],
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "summarizer-7d9f8b6c5", "namespace": "shop", "uid": "rs-uid"})
        );
        let note = event["note"].as_str().unwrap_or_default();
        assert!(
            note.starts_with("annotation proxy.aiflags.dev/workers: 0 is not between 1 and 64"),
            "{note}"
        );
        respond.send_response(api_answer(StatusCode::CREATED, &event));
    });

    // Opted in by its namespace only, which the cache does not know yet.
    let refused = pod()
        .remove("/metadata/labels/aiflags.dev~1inject")
        .annotate("proxy.aiflags.dev/workers", "0");
    let body = serde_json::to_vec(&review_of(&refused)).expect("json");
    let answer: Value =
        serde_json::from_slice(&webhook.review(&body).await.expect("answered")).expect("json");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("workers"))
    );
    finished(scenario).await;

    let text = metrics_text(&registry);
    assert!(
        text.contains("aiflags_operator_webhook_admissions_total{result=\"refused\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("aiflags_operator_webhook_admissions_total{result=\"injected\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("aiflags_operator_webhook_duration_seconds_count 1"),
        "{text}"
    );
}
