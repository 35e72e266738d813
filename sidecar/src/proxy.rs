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
        let mut outcome = RequestOutcome {
            operation: "other",
            started: Some(Instant::now()),
            request_id: request_id(request.headers()),
            ..RequestOutcome::default()
        };
        let routed = match self.route(request, &mut outcome).await {
            Ok(routed) => routed,
            Err(error) => {
                tracing::debug!(error = %error, "request answered by the proxy");
                Routed {
                    response: error.into_response(),
                    reports_itself: false,
                }
            }
        };
        if !routed.reports_itself {
            outcome.status = routed.response.status().as_u16();
            outcome.finish();
            self.telemetry.request_finished(&outcome);
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
        let bytes = read_limited(body, self.max_body_bytes).await?;
        // Taken once: a reload mid-request does not change this request.
        let snapshot = self.config.current();
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        let flag = match (&snapshot, &json) {
            (Some(snapshot), Some(json)) => find_flag(snapshot, &parts, operation, json)?,
            _ => None,
        };
        let (Some((flag, chosen)), Some(body)) = (flag, json) else {
            return self
                .pass_through(parts, full(bytes), protocol, outcome)
                .await;
        };
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
        outcome.provider = target.label();
        outcome.attempts = 1;
        let response = self
            .upstream
            .send(&target, &parts, body)
            .await
            .map_err(|e| AttemptsFailed {
                summary: "the pass-through request failed".into(),
                last: e.to_string(),
                timed_out: false,
            })?;
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
