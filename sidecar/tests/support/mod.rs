//! Test fixtures: a mock upstream and a sidecar in front of it, in-process on
//! port 0, and a small client whose requests read like prose.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod fake_api;
pub mod process;
pub mod tls_upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aiflags_api::{SidecarConfig, compile_manifests, parse_manifests};
use aiflags_devtools::mock_upstream::MockUpstream;
use aiflags_sidecar::Metrics;
use aiflags_sidecar::Sidecar;
use aiflags_sidecar::{Cli, Settings};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Every await in a test is bounded: a hang fails instead of stalling CI.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {PATIENCE:?}"))
}

/// Polls `check` until it holds: the way a test waits for an observable
/// event (a counter, a response) instead of sleeping. Bounded by `PATIENCE`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The sum of the samples of metric `name` whose labels include `labels`,
/// from Prometheus text; 0 when there is none.
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A flag manifest, compiled as the operator would.
pub fn compile(yaml: &str) -> SidecarConfig {
    let (manifests, errors) = parse_manifests("test", yaml);
    assert!(errors.is_empty(), "{errors:?}");
    let (config, errors) = compile_manifests(&manifests, None);
    assert!(errors.is_empty(), "{errors:?}");
    config
}

/// A mock upstream plus a sidecar reading flags from `dir`.
pub struct Stack {
    pub mock: MockUpstream,
    pub sidecar: Sidecar,
    pub dir: tempfile::TempDir,
    pub client: TestClient,
}

pub struct StackBuilder {
    yaml: Option<String>,
    config_file: bool,
    args: Vec<String>,
    mock: Option<String>,
}

impl Stack {
    /// In local mode with these flags.
    pub fn flags(yaml: &str) -> StackBuilder {
        StackBuilder {
            yaml: Some(yaml.to_string()),
            config_file: false,
            args: Vec::new(),
            mock: None,
        }
    }

    /// No config source but what the test's arguments add.
    pub fn bare() -> StackBuilder {
        StackBuilder {
            yaml: None,
            config_file: false,
            args: Vec::new(),
            mock: None,
        }
    }

    /// With the compiled config mounted as a ConfigMap volume (`..data` symlink).
    pub fn config_map(yaml: &str) -> StackBuilder {
        StackBuilder {
            yaml: Some(yaml.to_string()),
            config_file: true,
            args: Vec::new(),
            mock: None,
        }
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(path)
    }

    pub fn chat(&self, model: &str) -> RequestBuilder {
        self.client.chat(model)
    }

    /// Requests the mock has seen for a model.
    pub async fn upstream_requests(&self, model: &str) -> u64 {
        let url = format!("{}/mock/requests/{model}", self.mock.url());
        let reply = self
            .client
            .send(Request::get(url).body(Full::new(Bytes::new())).unwrap())
            .await;
        reply.json()["requests"].as_u64().unwrap()
    }

    pub async fn admin(&self, path: &str) -> Reply {
        let url = format!("http://{}{path}", self.sidecar.admin_addr);
        self.client
            .send(Request::get(url).body(Full::new(Bytes::new())).unwrap())
            .await
    }

    /// A metric of the sidecar's `/metrics` (see [`metric`]).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.admin("/metrics").await.text(), name, labels)
    }

    /// Swaps the mounted config as kubelet does: a new timestamped directory,
    /// then an atomic rename of the `..data` symlink onto it.
    pub fn swap_config(&self, contents: &str) {
        swap_config_map(self.dir.path(), contents);
    }
}

pub fn swap_config_map(dir: &Path, contents: &str) {
    static GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let version = format!("..2026_01_01_00_00_{n:02}.{}", std::process::id());
    std::fs::create_dir(dir.join(&version)).unwrap();
    std::fs::write(dir.join(&version).join("config.json"), contents).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("config.json");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/config.json", &link).unwrap();
    }
}

impl StackBuilder {
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Share another stack's mock upstream address instead of starting one.
    pub fn upstream(mut self, url: &str) -> Self {
        self.mock = Some(url.to_string());
        self
    }

    pub async fn start(self) -> Stack {
        let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let upstream = self.mock.unwrap_or_else(|| mock.url());
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec![
            "aiflags-sidecar".into(),
            "--listen=127.0.0.1:0".into(),
            "--admin-listen=127.0.0.1:0".into(),
            "--reload-interval=100ms".into(),
            format!("--openai-upstream={upstream}"),
            format!("--anthropic-upstream={upstream}"),
        ];
        if let Some(yaml) = &self.yaml {
            if self.config_file {
                swap_config_map(dir.path(), &compile(yaml).to_json());
                args.push(format!(
                    "--config-file={}",
                    dir.path().join("config.json").display()
                ));
            } else {
                let path = dir.path().join("flags.yaml");
                std::fs::write(&path, yaml).unwrap();
                args.push(format!("--flags={}", path.display()));
            }
        }
        args.extend(self.args);
        // The command line only: a test never reads the real environment.
        let cli = Cli::try_parse_from(args).unwrap();
        let settings = Settings::from_source(&cli.args).unwrap();
        let sidecar = Sidecar::start(settings, Arc::new(Metrics::new().unwrap()))
            .await
            .unwrap();
        let client = TestClient::new(sidecar.addr);
        Stack {
            mock,
            sidecar,
            dir,
            client,
        }
    }
}

#[derive(Clone)]
pub struct TestClient {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TestClient {
    pub fn new(addr: SocketAddr) -> TestClient {
        TestClient {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            path: path.to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// A chat completion for `model` with one user message.
    pub fn chat(&self, model: &str) -> RequestBuilder {
        self.post("/v1/chat/completions")
            .json(json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]}))
    }

    pub async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        let response = self.client.request(request).await.expect("request failed");
        Reply::read(response).await
    }

    pub async fn stream(&self, request: Request<Full<Bytes>>) -> http::Response<Incoming> {
        self.client.request(request).await.expect("request failed")
    }
}

pub struct RequestBuilder {
    client: TestClient,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestBuilder {
    pub fn json(mut self, body: Value) -> Self {
        self.body = Bytes::from(body.to_string());
        self.header("content-type", "application/json")
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.insert(name, value.parse().unwrap());
        self
    }

    pub fn user(self, user: &str) -> Self {
        self.header("x-user-id", user)
    }

    /// Turns on `stream: true` in the JSON body.
    pub fn streaming(mut self) -> Self {
        let mut body: Value = serde_json::from_slice(&self.body).unwrap();
        body["stream"] = json!(true);
        self.body = Bytes::from(body.to_string());
        self
    }

    fn build(self) -> (TestClient, Request<Full<Bytes>>) {
        let mut request = Request::post(format!("http://{}{}", self.client.addr, self.path))
            .body(Full::new(self.body))
            .unwrap();
        *request.headers_mut() = self.headers;
        (self.client, request)
    }

    pub async fn send(self) -> Reply {
        let (client, request) = self.build();
        within("request", client.send(request)).await
    }

    /// The response with its body still streaming.
    pub async fn open(self) -> http::Response<Incoming> {
        let (client, request) = self.build();
        within("response head", client.stream(request)).await
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub async fn read(response: http::Response<Incoming>) -> Reply {
        let (parts, body) = response.into_parts();
        let body = within("response body", body.collect())
            .await
            .unwrap()
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    pub fn variant(&self) -> &str {
        self.header("x-aiflags-variant")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
