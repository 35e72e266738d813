//! The seam between the request path and what records it: the proxy fills a
//! [`Record`] per request and reports attempts, circuits and config loads;
//! a [`Telemetry`] decides what to keep. The sidecar runs with
//! [`metrics::Metrics`]; the access log ([`access_log`]) is written beside it.

pub(crate) mod access_log;
pub(crate) mod metrics;
pub(crate) mod pricing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aiflags_api::Pricing;

pub(crate) use crate::usage::Usage;
pub(crate) use crate::verdict::Verdict;

/// One request, as the client saw it.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// The client's `x-request-id` when it is a sane token, else made up.
    pub request_id: Box<str>,
    pub started: Instant,
    /// `chat`, `responses`, … or `other`.
    pub operation: &'static str,
    /// Empty for pass-through traffic.
    pub flag: Arc<str>,
    /// The split's assignment.
    pub variant: Arc<str>,
    /// The model that served (after fallback).
    pub model: Arc<str>,
    /// Upstream origin, e.g. `https://api.openai.com`.
    pub provider: Arc<str>,
    /// Status sent to the client; 499 when the client went away first.
    pub status: u16,
    pub attempts: u32,
    pub usage: Option<Usage>,
    /// The serving variant's price override, if it has one.
    pub pricing: Option<Pricing>,
    /// Time spent waiting on upstreams (and between retries): not overhead.
    pub upstream_time: Duration,
    /// Streams: time until the first content (or, in a stream with none,
    /// the first byte) went to the client.
    pub time_to_first_token: Option<Duration>,
    /// Moves down the chain: (from model, to model, reason).
    pub fallbacks: Vec<(Arc<str>, Arc<str>, Arc<str>)>,
    /// Every answer the attempts got and judged, in order.
    pub answers: Vec<Judged>,
    /// The verdict of the answer the client got, when it was judged.
    pub verdict: Option<Verdict>,
    /// The stream ended with an error event instead of its natural end.
    pub stream_error: bool,
    /// Set when reported.
    pub duration: Duration,
}

impl Record {
    pub(crate) fn new(request_id: Box<str>, operation: &'static str) -> Record {
        // One empty string a thread, shared: a fresh `Arc::from("")` is an
        // allocation a request.
        thread_local! {
            static EMPTY: Arc<str> = Arc::from("");
        }
        let empty = EMPTY.with(Arc::clone);
        Record {
            request_id,
            started: Instant::now(),
            operation,
            flag: empty.clone(),
            variant: empty.clone(),
            model: empty.clone(),
            provider: empty,
            status: 0,
            attempts: 0,
            usage: None,
            pricing: None,
            upstream_time: Duration::ZERO,
            time_to_first_token: None,
            fallbacks: Vec::new(),
            answers: Vec::new(),
            verdict: None,
            stream_error: false,
            duration: Duration::ZERO,
        }
    }
}

/// An answer one attempt got: the variant and model that gave it, and what
/// it amounted to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Judged {
    pub variant: Arc<str>,
    pub model: Arc<str>,
    pub verdict: Verdict,
}

/// A flag as its configured-state metrics show it.
#[derive(Clone, Debug)]
pub(crate) struct FlagInfo {
    pub key: Arc<str>,
    pub enabled: bool,
    pub default_variant: Arc<str>,
    /// (variant, weight in basis points) in force.
    pub weights: Vec<(Arc<str>, u32)>,
}

/// What the proxy reports; every method has a no-op default.
pub(crate) trait Telemetry: Send + Sync + 'static {
    fn request_started(&self) {}
    fn request_finished(&self, _record: &Record) {}
    /// One upstream attempt: `outcome` is `ok`, `timeout`, `connect`,
    /// `status_NNN`, `circuit_open`, `error`, `empty`, `content_filter`.
    fn attempt_finished(&self, _provider: &str, _model: &str, _outcome: &str) {}
    fn circuit_changed(&self, _provider: &str, _model: &str, _open: bool) {}
    /// A config now serves: its revision and its flags.
    fn config_loaded(&self, _revision: &str, _flags: Vec<FlagInfo>) {}
    /// The Kubernetes watch of the config is up (it listed or saw a change)
    /// or lost (the API cannot be reached; the watcher retries).
    fn config_watch(&self, _up: bool) {}
    /// A config failed to load; `serving` is the revision still in force.
    fn config_failed(&self, _serving: Option<&str>) {}
    /// A request on an LLM path whose body could not be read; `reason` is a
    /// small closed set (`encoding`, `not_json`, `not_object`, `no_model`).
    fn request_unparsed(&self, _reason: &'static str) {}
    /// A listener at its cap shed a connection: `evicted` an idle one to
    /// make room, or `refused` the new one because every one was busy.
    fn connection_shed(&self, _listener: &'static str, _action: &'static str) {}
    /// A request refused because the memory budget was spent.
    fn budget_exhausted(&self) {}
    /// Prometheus text exposition for `/metrics`.
    fn render(&self) -> String {
        String::new()
    }
}

pub(crate) type SharedTelemetry = Arc<dyn Telemetry>;
