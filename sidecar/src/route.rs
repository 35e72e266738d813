//! The data plane's service, one request at a time, top to bottom: check the
//! request target, read the body of an LLM call, find its flag and variant,
//! and hand it to the attempt loop — or pass it through untouched to the
//! upstream the app meant. Every path ends in `respond`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aiflags_api::Operation;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, Request, Response};
use hyper::body::Incoming;

use crate::attempts::{Attempts, Exchange};
use crate::body::{ProxyBody, boxed};
use crate::budget::{Budget, Reservation};
use crate::circuit::{BreakerSettings, Breakers};
use crate::config::snapshot::SnapshotCell;
use crate::error::ProxyError;
use crate::flags::Selection;
use crate::flags::decide::{RequestView, decide};
use crate::record::{ReportOnce, Reporter};
use crate::request::{Readable, make_readable, read_bounded};
use crate::respond::{IdleBody, StreamContext, gave_up, own_error, passed_through, served};
use crate::telemetry::Record;
use crate::text::printable;
use crate::upstream::target::{Protocol, check_request_target, operation_for_path};
use crate::upstream::{Send, Upstream};

/// Traffic no flag applies to has no flag timeouts; this bounds how long its
/// client waits for the upstream to start answering (the body may then take
/// as long as it takes, within the body idle timeout).
const PASS_THROUGH_HEAD_TIMEOUT: Duration = Duration::from_secs(600);

/// A client may trickle its body; it gets this long to send all of it.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Bounds on what one request may hold or take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    /// A pass-through body (either way) may go this long without a byte.
    pub body_idle: Duration,
}

/// The data plane: everything a request needs, shared by all of them.
pub(crate) struct Route {
    upstream: Upstream,
    config: Arc<SnapshotCell>,
    breakers: Breakers<Arc<str>>,
    reporter: Arc<Reporter>,
    budget: Arc<Budget>,
    limits: Limits,
    streams: StreamContext,
}

impl Route {
    pub(crate) fn new(
        upstream: Upstream,
        config: Arc<SnapshotCell>,
        breaker: BreakerSettings,
        reporter: Arc<Reporter>,
        budget: Arc<Budget>,
        limits: Limits,
        streams: StreamContext,
    ) -> Route {
        Route {
            upstream,
            config,
            breakers: Breakers::new(breaker),
            reporter,
            budget,
            limits,
            streams,
        }
    }

    /// The hyper service: never fails; errors become OpenAI-shaped responses.
    pub(crate) async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let record = Record::new(request_id(request.headers()), "other");
        let report = ReportOnce::new(record, self.reporter.clone());
        Ok(self.route(request, report).await)
    }

    async fn route(
        &self,
        request: Request<Incoming>,
        mut report: ReportOnce,
    ) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        if let Err(bad) = check_request_target(&parts.method, &parts.uri) {
            return own_error(bad.into(), report, None);
        }
        let protocol = Protocol::for_path(parts.uri.path());
        // Only a POST to a known operation can carry a flag; everything else
        // streams through without being read.
        let operation = match parts.method {
            Method::POST => operation_for_path(parts.uri.path()),
            _ => None,
        };
        let Some(operation) = operation else {
            let body = boxed(IdleBody::new(body, self.limits.body_idle));
            return self.pass_through(parts, body, protocol, None, report).await;
        };
        report.record().operation = operation.as_str();
        let limit = self.limits.max_body_bytes;
        let read =
            tokio::time::timeout(BODY_READ_TIMEOUT, read_bounded(body, limit, &self.budget)).await;
        let (bytes, mut reservation) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                if matches!(e, crate::request::ReadError::Budget) {
                    self.reporter.telemetry.budget_exhausted();
                }
                return own_error(e.into_proxy_error(limit, &self.budget), report, None);
            }
            Err(_) => {
                let message = format!(
                    "the body did not arrive within {}s",
                    BODY_READ_TIMEOUT.as_secs()
                );
                return own_error(ProxyError::ReadBody(message), report, None);
            }
        };
        // Taken once: a reload mid-request does not change this request.
        let snapshot = self.config.current();
        let Some(snapshot) = snapshot.filter(|s| !s.flags.is_empty()) else {
            // With no flag loaded there is nothing to decide: skip the scan.
            return self
                .pass_through(
                    parts,
                    held(bytes, reservation),
                    protocol,
                    Some(operation),
                    report,
                )
                .await;
        };
        let readable = make_readable(
            bytes.clone(),
            &parts.headers,
            limit,
            &mut reservation,
            &self.budget,
        );
        let body = match readable {
            Ok(Readable::Scanned(body)) => body,
            Ok(Readable::Opaque {
                bytes,
                reason,
                detail,
            }) => {
                self.unparsed(&parts, operation, reason, &detail);
                return self
                    .pass_through(
                        parts,
                        held(bytes, reservation),
                        protocol,
                        Some(operation),
                        report,
                    )
                    .await;
            }
            Err(e) => {
                if matches!(e, ProxyError::Busy { .. }) {
                    self.reporter.telemetry.budget_exhausted();
                }
                return own_error(e, report, None);
            }
        };
        let model = body.model();
        if model.is_none() {
            self.unparsed(
                &parts,
                operation,
                "no_model",
                "the body has no string model",
            );
        }
        let flag = match snapshot
            .flags
            .select(operation, model.as_deref(), &parts.headers)
        {
            Selection::Selected(flag) if model.is_some() => flag,
            Selection::UnknownFlag(name) => {
                let error = ProxyError::UnknownFlag {
                    flag: printable(&name, 128),
                    revision: snapshot.revision.clone(),
                };
                return own_error(error, report, None);
            }
            // No flag applies: the client's own bytes go on as they came.
            Selection::Selected(_) | Selection::None => {
                drop(body);
                return self
                    .pass_through(
                        parts,
                        held(bytes, reservation),
                        protocol,
                        Some(operation),
                        report,
                    )
                    .await;
            }
        };
        drop(model);
        let view = RequestView {
            headers: &parts.headers,
            body: &body,
        };
        let chosen = decide(flag, &view, crate::random::random_u32()).variant;
        // Labelled now: a client that leaves mid-attempt is still counted
        // against its flag and variant.
        let record = report.record();
        record.flag = flag.key.clone();
        if let Some(variant) = flag.variant(chosen) {
            record.variant = variant.name.clone();
            record.model = variant.model.clone();
        }
        let exchange = Exchange {
            parts: &parts,
            operation,
            protocol,
            flag,
            chosen,
            body: &body,
        };
        let attempts = Attempts {
            upstream: &self.upstream,
            breakers: &self.breakers,
            telemetry: &*self.reporter.telemetry,
            budget: &self.budget,
            max_response_bytes: self.limits.max_response_bytes,
        };
        let outcome = attempts.run(&exchange, report.record()).await;
        // The request's bytes are not needed once the attempts are over.
        let response = match outcome {
            Ok(ok) => served(&exchange, ok, report, &self.streams),
            Err(failed) => gave_up(&exchange, failed, report),
        };
        drop(reservation);
        response
    }

    /// Forwards untouched to the default upstream of the request's protocol.
    async fn pass_through(
        &self,
        parts: Parts,
        body: ProxyBody,
        protocol: Protocol,
        operation: Option<Operation>,
        mut report: ReportOnce,
    ) -> Response<ProxyBody> {
        let target = self.upstream.default_target(protocol);
        report.record().provider = target.label_arc();
        report.record().attempts = 1;
        let send = self.upstream.send(target, &parts, body, Send::default());
        let failed = |last: String, status| ProxyError::Upstream {
            summary: "the pass-through request failed".into(),
            last,
            status,
        };
        match tokio::time::timeout(PASS_THROUGH_HEAD_TIMEOUT, send).await {
            Ok(Ok(response)) => passed_through(
                response,
                report,
                self.limits.body_idle,
                &self.streams,
                operation,
            ),
            Ok(Err(e)) => own_error(
                failed(e.to_string(), http::StatusCode::BAD_GATEWAY),
                report,
                None,
            ),
            Err(_) => {
                let last = format!(
                    "{} sent no response head within {}s",
                    target.label(),
                    PASS_THROUGH_HEAD_TIMEOUT.as_secs()
                );
                own_error(
                    failed(last, http::StatusCode::GATEWAY_TIMEOUT),
                    report,
                    None,
                )
            }
        }
    }

    /// A request on an LLM path the proxy could not read: counted and logged,
    /// never silently passed by.
    fn unparsed(&self, parts: &Parts, operation: Operation, reason: &'static str, detail: &str) {
        self.reporter.telemetry.request_unparsed(reason);
        tracing::warn!(
            operation = operation.as_str(),
            // Quoted (`?`): both echo what the client sent.
            path = ?printable(parts.uri.path(), 128),
            reason,
            detail = ?printable(detail, 200),
            "request body not readable: passed through without a flag"
        );
    }
}

/// The client's `x-request-id` when it is a sane token (letters, digits and
/// `._:/+=@-`, at most 64 of them), else a fresh one: it goes into every log
/// line, where anything else could forge fields.
pub(crate) fn request_id(headers: &HeaderMap) -> Box<str> {
    const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    let given = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:/+=@-".contains(&b))
        });
    match given {
        Some(id) => id.into(),
        None => {
            // Sixteen hex digits, written directly (`format!` costs more than
            // the rest of this function).
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let n = u64::from(crate::random::random_u32()) << 32
                | u64::from(crate::random::random_u32());
            let mut id = [0u8; 16];
            for (i, digit) in id.iter_mut().rev().enumerate() {
                *digit = HEX[((n >> (i * 4)) & 0xf) as usize];
            }
            std::str::from_utf8(&id).unwrap_or_default().into()
        }
    }
}

/// A body the proxy read, held against the budget until it has gone upstream.
fn held(bytes: Bytes, reservation: Reservation) -> ProxyBody {
    boxed(Held {
        body: http_body_util::Full::new(bytes),
        _reservation: reservation,
    })
}

struct Held {
    body: http_body_util::Full<Bytes>,
    _reservation: Reservation,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sane_tokens_or_made_up() {
        let id = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-request-id", value.parse().unwrap());
            request_id(&headers)
        };
        assert_eq!(&*id("req-e2e-1"), "req-e2e-1");
        assert_eq!(&*id("a/b:c=d+e@f.g_h"), "a/b:c=d+e@f.g_h");
        for forged in ["x status=200", "a\"b", &"x".repeat(65), "é"] {
            let made = id(forged);
            assert_eq!(made.len(), 16, "{forged:?} -> {made}");
            assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn operations_are_matched_by_exact_path() {
        assert_eq!(
            operation_for_path("/v1/chat/completions"),
            Some(Operation::Chat)
        );
        assert_eq!(
            operation_for_path("/v1/messages/"),
            Some(Operation::Messages)
        );
        assert_eq!(operation_for_path("/v1/models"), None);
        assert_eq!(operation_for_path("/openai/v1/chat/completions"), None);
    }
}
