//! Asking sidecars which config revision they serve: which pods to ask
//! (pure), the answer's parser (pure), and the HTTP request itself.
//!
//! A sidecar reports its revision as `aiflags_config_revision_info{revision="…"} 1`
//! on its admin `/metrics`. That endpoint is used rather than `/config`,
//! whose answer carries every flag the pod applies (megabytes in a large
//! namespace); the metrics text lists families in name order, so the
//! revision comes within the first few hundred bytes and the read stops
//! there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// What a sidecar said when last asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It serves this config revision.
    Serving(String),
    /// It answered, but serves no config yet.
    NoConfig,
    /// No usable answer: refused, timed out, an error status, or no pod IP.
    Unreachable(String),
}

impl Answer {
    pub fn revision(&self) -> Option<&str> {
        match self {
            Answer::Serving(revision) => Some(revision),
            _ => None,
        }
    }

    /// The `result` label of `aiflags_operator_proxy_polls_total`.
    pub fn result_label(&self) -> &'static str {
        match self {
            Answer::Serving(_) => "serving",
            Answer::NoConfig => "no_config",
            Answer::Unreachable(_) => "unreachable",
        }
    }
}

/// A pod to ask, as it was when chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub uid: String,
    pub resource_version: String,
    /// `None`: the pod has no IP (or no usable admin port) yet.
    pub addr: Option<SocketAddr>,
    /// The revision the operator wrote for its namespace.
    pub wanted: String,
}

#[derive(Clone, Debug)]
struct Probe {
    resource_version: String,
    answer: Answer,
    at: Instant,
}

/// How often sidecars are asked.
#[derive(Clone, Copy, Debug)]
pub struct Cadence {
    /// A sidecar not on the wanted revision is asked again after this.
    pub behind: Duration,
    /// A sidecar on the wanted revision is asked again after this, in case
    /// it changed without its pod changing (nothing should do that).
    pub settled: Duration,
}

/// The last answer of each pod's sidecar, by pod UID. An answer holds only
/// while the pod's `resourceVersion` stays the same: a restarted container
/// or a new IP changes it, and the sidecar is asked again.
#[derive(Debug, Default)]
pub struct ProbeCache {
    by_uid: HashMap<String, Probe>,
}

impl ProbeCache {
    /// Whether a pod as it is now needs asking, given what the operator
    /// wants it to serve.
    pub fn due(
        &self,
        uid: &str,
        resource_version: &str,
        wanted: &str,
        now: Instant,
        cadence: Cadence,
    ) -> bool {
        let Some(probe) = self.by_uid.get(uid) else {
            return true;
        };
        let age = now.saturating_duration_since(probe.at);
        probe.resource_version != resource_version
            || age >= cadence.settled
            || (probe.answer.revision() != Some(wanted) && age >= cadence.behind)
    }

    pub fn record(&mut self, target: &Target, answer: Answer, at: Instant) {
        let probe = Probe {
            resource_version: target.resource_version.clone(),
            answer,
            at,
        };
        self.by_uid.insert(target.uid.clone(), probe);
    }

    /// The pod's last answer, if it still describes the pod as it is.
    pub fn answer(&self, uid: &str, resource_version: &str) -> Option<&Answer> {
        self.by_uid
            .get(uid)
            .filter(|p| p.resource_version == resource_version)
            .map(|p| &p.answer)
    }

    /// Forgets pods that are gone.
    pub fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.by_uid.retain(|uid, _| live(uid));
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

const REVISION_METRIC: &str = "aiflags_config_revision_info{";

/// What the complete lines of a metrics text say about the revision:
/// `Some(answer)` once decided, `None` while it may still come.
pub fn revision_in(text: &str, complete: bool) -> Option<Answer> {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(REVISION_METRIC) else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let serving = value.trim().parse::<f64>().is_ok_and(|v| v == 1.0);
        let revision = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("revision=\""))
            .and_then(|r| r.strip_suffix('"'));
        if let (true, Some(revision)) = (serving, revision) {
            return Some(Answer::Serving(revision.to_string()));
        }
    }
    complete.then_some(Answer::NoConfig)
}

/// How sidecars are asked.
#[derive(Clone, Copy, Debug)]
pub struct PollSettings {
    /// For the whole request: connect, answer, read.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Bytes of metrics text read at most before giving up on finding the
    /// revision.
    pub max_read: usize,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            timeout: Duration::from_secs(2),
            concurrency: 32,
            max_read: 256 * 1024,
        }
    }
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A plain-HTTP client that keeps no idle connections: each sidecar is
/// asked rarely, and a thousand idle sockets would cost more than a
/// handshake.
pub fn http_client(settings: &PollSettings) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// Asks one sidecar which revision it serves.
pub async fn ask(client: &HttpClient, addr: SocketAddr, settings: &PollSettings) -> Answer {
    match tokio::time::timeout(settings.timeout, read_revision(client, addr, settings)).await {
        Ok(answer) => answer,
        Err(_) => Answer::Unreachable(format!("no answer within {:?}", settings.timeout)),
    }
}

async fn read_revision(client: &HttpClient, addr: SocketAddr, settings: &PollSettings) -> Answer {
    let uri = match format!("http://{addr}/metrics").parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(error) => return Answer::Unreachable(error.to_string()),
    };
    let mut response = match client.get(uri).await {
        Ok(response) => response,
        Err(error) => return Answer::Unreachable(causes(&error)),
    };
    if !response.status().is_success() {
        return Answer::Unreachable(format!("/metrics answered {}", response.status()));
    }
    let body = response.body_mut();
    let mut text = Vec::new();
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Answer::Unreachable(format!("reading /metrics: {error}")),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        text.extend_from_slice(&data);
        // Only complete lines: the last one may continue in the next frame.
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if let Some(answer) = revision_in(&String::from_utf8_lossy(&text[..complete]), false) {
            return answer;
        }
        if text.len() >= settings.max_read {
            return Answer::Unreachable(format!(
                "no {REVISION_METRIC}...}} in the first {} bytes of /metrics",
                settings.max_read
            ));
        }
    }
    revision_in(&String::from_utf8_lossy(&text), true).unwrap_or(Answer::NoConfig)
}

/// An error and its causes, `outer: inner: innermost`.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
