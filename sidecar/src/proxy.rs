//! The request path, top to bottom: read the request, find its flag and
//! variant, then hand it to the attempt loop; anything not understood
//! passes through to the default upstream byte for byte.

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aiflags_api::{CompiledFlag, Operation};
use http::request::Parts;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::Value;

use crate::body::{ProxyBody, boxed, full, read_limited};
use crate::circuit::{BreakerSettings, Breakers};
use crate::error::{AttemptsFailed, ProxyError};
use crate::evaluate::{FlagSelection, RequestView, decide, select_flag};
use crate::rewrite::operation_for_path;
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::telemetry::{RequestOutcome, SharedTelemetry};
use crate::upstream::{Protocol, Upstream, strip_hop_by_hop};

pub struct Proxy {
    pub(crate) upstream: Upstream,
    pub(crate) config: Arc<SnapshotCell>,
    /// Keyed by provider label + model: one sick model does not block its provider.
    pub(crate) breakers: Breakers<String>,
    pub(crate) telemetry: SharedTelemetry,
    max_body_bytes: usize,
}

/// A request that matched a flag, on its way to the attempt loop.
pub(crate) struct Exchange<'a> {
    pub parts: Parts,
    pub operation: Operation,
    pub protocol: Protocol,
    pub flag: &'a CompiledFlag,
    pub chosen: usize,
    pub body: Value,
}

impl Exchange<'_> {
    /// Name of the variant the flag chose for this request.
    pub(crate) fn chosen_name(&self) -> &str {
        self.flag
            .variants
            .get(self.chosen)
            .map_or("", |v| v.name.as_str())
    }
}

/// What `route` produced: a response, and whether its body reports to
/// telemetry itself when it ends (streams do).
pub(crate) struct Routed {
    pub response: Response<ProxyBody>,
    pub reports_itself: bool,
}

impl Proxy {
    pub fn new(
        upstream: Upstream,
        config: Arc<SnapshotCell>,
        breaker: BreakerSettings,
        telemetry: SharedTelemetry,
        max_body_bytes: usize,
    ) -> Proxy {
        Proxy {
            upstream,
            config,
            breakers: Breakers::new(breaker),
            telemetry,
            max_body_bytes,
        }
    }

    /// The hyper service: never fails, errors become OpenAI-shaped responses.
    pub async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        self.telemetry.request_started();
        let mut report = Unreported {
            telemetry: &self.telemetry,
            outcome: RequestOutcome {
                operation: "other",
                started: Some(Instant::now()),
                request_id: request_id(request.headers()),
                ..RequestOutcome::default()
            },
            done: false,
        };
        let routed = match self.route(request, &mut report.outcome).await {
            Ok(routed) => routed,
            Err(error) => {
                tracing::debug!(error = %error, "request answered by the proxy");
                let mut response = error.into_response();
                // Even our own errors say which flag and variant they are about.
                crate::respond::set_aiflags_headers(&mut response, &report.outcome);
                Routed {
                    response,
                    reports_itself: false,
                }
            }
        };
        if routed.reports_itself {
            report.done = true;
        } else {
            report.outcome.status = routed.response.status().as_u16();
            report.finish();
        }
        Ok(routed.response)
    }

    async fn route(
        &self,
        request: Request<Incoming>,
        outcome: &mut RequestOutcome,
    ) -> Result<Routed, ProxyError> {
        let (parts, body) = request.into_parts();
        let protocol = Protocol::for_path(parts.uri.path());
        // Only a POST to a known operation can carry a flag; everything else
        // streams through without being read.
        let operation = match parts.method {
            Method::POST => operation_for_path(parts.uri.path()),
            _ => None,
        };
        let Some(operation) = operation else {
            return self
                .pass_through(parts, boxed(body), protocol, outcome)
                .await;
        };
        outcome.operation = operation.as_str();
        let read = read_limited(body, self.max_body_bytes);
        let bytes = tokio::time::timeout(BODY_READ_TIMEOUT, read)
            .await
            .map_err(|_| {
                ProxyError::ReadBody(format!(
                    "the body did not arrive within {}s",
                    BODY_READ_TIMEOUT.as_secs()
                ))
            })??;
        // Taken once: a reload mid-request does not change this request.
        let snapshot = self.config.current();
        // With no flag loaded there is nothing to decide: skip the parse.
        let has_flags = snapshot
            .as_ref()
            .is_some_and(|s| !s.config.flags.is_empty());
        let json: Option<Value> = if has_flags {
            serde_json::from_slice(&bytes).ok()
        } else {
            None
        };
        let flag = match (&snapshot, &json) {
            (Some(snapshot), Some(json)) => find_flag(snapshot, &parts, operation, json)?,
            _ => None,
        };
        let (Some((flag, chosen)), Some(body)) = (flag, json) else {
            return self
                .pass_through(parts, full(bytes), protocol, outcome)
                .await;
        };
        // The parsed body is what goes on; the raw bytes are not needed again.
        drop(bytes);
        let exchange = Exchange {
            parts,
            operation,
            protocol,
            flag,
            chosen,
            body,
        };
        crate::attempts::run(self, exchange, outcome).await
    }

    /// Forwards untouched to the default upstream of the request's protocol.
    async fn pass_through(
        &self,
        parts: Parts,
        body: ProxyBody,
        protocol: Protocol,
        outcome: &mut RequestOutcome,
    ) -> Result<Routed, ProxyError> {
        let target = self.upstream.default_target(protocol);
        outcome.provider = target.label().to_string();
        outcome.attempts = 1;
        let send = self.upstream.send(&target, &parts, body, false);
        let response = match tokio::time::timeout(PASS_THROUGH_HEAD_TIMEOUT, send).await {
            Ok(result) => result.map_err(|e| AttemptsFailed {
                summary: "the pass-through request failed".into(),
                last: e.to_string(),
                timed_out: false,
            })?,
            Err(_) => Err(AttemptsFailed {
                summary: "the pass-through request timed out".into(),
                last: format!(
                    "{} sent no response head within {}s",
                    target.label(),
                    PASS_THROUGH_HEAD_TIMEOUT.as_secs()
                ),
                timed_out: true,
            })?,
        };
        let (mut head, body) = response.into_parts();
        strip_hop_by_hop(&mut head.headers);
        Ok(Routed {
            response: Response::from_parts(head, boxed(body)),
            reports_itself: false,
        })
    }
}

/// The flag for this request and the variant it picks; `None` when no flag
/// applies or the body has no string `model`.
fn find_flag<'s>(
    snapshot: &'s Snapshot,
    parts: &Parts,
    operation: Operation,
    json: &Value,
) -> Result<Option<(&'s CompiledFlag, usize)>, ProxyError> {
    let Some(model) = json.get("model").and_then(Value::as_str) else {
        return Ok(None);
    };
    let view = RequestView {
        operation: Some(operation),
        model: Some(model),
        headers: &parts.headers,
        body: Some(json),
    };
    match select_flag(&snapshot.config, &view) {
        FlagSelection::None => Ok(None),
        FlagSelection::UnknownFlag(flag) => Err(ProxyError::UnknownFlag {
            flag,
            revision: snapshot.config.revision.clone(),
        }),
        FlagSelection::Selected(flag) => {
            Ok(Some((flag, decide(flag, &view, random_u32()).variant)))
        }
    }
}

/// Traffic no flag applies to has no flag timeouts; this bounds how long its
/// client waits for the upstream to start answering (the body may then take
/// as long as it takes, as a long generation does).
const PASS_THROUGH_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A client may trickle its body; it gets this long to send all of it.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Reports a request exactly once: when it is answered, or, if the client
/// goes away first and hyper drops the handler, as status 499.
struct Unreported<'a> {
    telemetry: &'a SharedTelemetry,
    outcome: RequestOutcome,
    done: bool,
}

impl Unreported<'_> {
    fn finish(&mut self) {
        self.done = true;
        self.outcome.finish();
        self.telemetry.request_finished(&self.outcome);
    }
}

impl Drop for Unreported<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.outcome.status = 499;
            self.finish();
        }
    }
}

/// The client's `x-request-id` when it is a sane token, else a fresh one, so
/// every access-log line can be correlated.
fn request_id(headers: &http::HeaderMap) -> String {
    let given = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128);
    match given {
        Some(id) => id.to_string(),
        None => format!("{:08x}{:08x}", random_u32(), random_u32()),
    }
}

/// Randomness for unsticky splits and jitter; std's per-instance SipHash keys
/// are random, so hashing a counter is enough and needs no RNG crate.
pub(crate) fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish() as u32
}
