//! The seam between the request path and metrics: the proxy reports what
//! happened, a [`Telemetry`] decides what to record. The sidecar runs with
//! [`crate::metrics::Metrics`]; [`NoTelemetry`] records nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sse::Usage;

/// One finished request, as seen by the client.
#[derive(Clone, Debug, Default)]
pub struct RequestOutcome {
    /// Empty for pass-through traffic.
    pub flag: String,
    pub variant: String,
    /// The model that served the response (after fallback).
    pub model: String,
    /// Upstream origin, e.g. `https://api.openai.com`.
    pub provider: String,
    /// `chat`, `responses`, … or `other`.
    pub operation: &'static str,
    /// Status sent to the client; 499 when the client went away first.
    pub status: u16,
    pub attempts: u32,
    pub usage: Option<Usage>,
    /// The serving variant's price override, if it has one.
    pub pricing: Option<aiflags_api::Pricing>,
    pub duration: Duration,
    /// Time spent waiting on upstreams, for proxy overhead.
    pub upstream_duration: Duration,
    /// Streams: time until the first byte went to the client.
    pub time_to_first_token: Option<Duration>,
    /// Fallbacks taken: (from model, to model, reason).
    pub fallbacks: Vec<(String, String, String)>,
    /// The stream ended with an error event instead of its natural end.
    pub stream_error: bool,
    /// When the request arrived; `finish` turns it into `duration`.
    pub started: Option<Instant>,
    /// The client's `x-request-id`, or one the proxy made up.
    pub request_id: String,
}

impl RequestOutcome {
    /// Marks the request done: fixes its duration and writes its access-log
    /// line. Names and numbers only: never prompts, completions or credentials.
    pub fn finish(&mut self) {
        if let Some(started) = self.started {
            self.duration = started.elapsed();
        }
        tracing::info!(
            target: "aiflags::access",
            request_id = %self.request_id,
            flag = %self.flag,
            variant = %self.variant,
            model = %self.model,
            provider = %self.provider,
            operation = self.operation,
            status = self.status,
            attempts = self.attempts,
            fallbacks = self.fallbacks.len(),
            stream_error = self.stream_error,
            duration_ms = self.duration.as_secs_f64() * 1e3,
            ttft_ms = self.time_to_first_token.map(|t| t.as_secs_f64() * 1e3),
            "request"
        );
    }
}

/// One upstream attempt.
#[derive(Clone, Debug)]
pub struct AttemptOutcome<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// `ok`, `timeout`, `connect`, `status_429`, `circuit_open`, …
    pub outcome: String,
}

/// What the proxy reports; every method has a no-op default.
pub trait Telemetry: Send + Sync + 'static {
    fn request_started(&self) {}
    fn request_finished(&self, _outcome: &RequestOutcome) {}
    fn attempt_finished(&self, _attempt: &AttemptOutcome<'_>) {}
    fn circuit_changed(&self, _provider: &str, _model: &str, _open: bool) {}
    /// `result` is `ok` or `error`; `revision` is what now serves.
    fn config_reloaded(&self, _result: &str, _revision: Option<&str>) {}
    /// Prometheus text exposition for `/metrics`.
    fn render(&self) -> String {
        String::new()
    }
}

/// Records nothing: for embedding the proxy where no metrics are wanted.
#[derive(Default, Debug)]
pub struct NoTelemetry;

impl Telemetry for NoTelemetry {}

pub type SharedTelemetry = Arc<dyn Telemetry>;
