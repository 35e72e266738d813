//! The proxy's own errors and the one place that maps them to HTTP responses.
//!
//! Responses use OpenAI's error JSON shape with type `aiflags_error`, so SDKs
//! surface the message to the application unchanged. Anything a client sent
//! that a message echoes is clipped to printable ASCII first.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::budget::Budget;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "request body is larger than {limit} bytes; raise the sidecar's --max-body-bytes \
         (AIFLAGS_MAX_BODY_BYTES) to accept it"
    )]
    BodyTooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    ReadBody(String),
    /// The request target is not one the proxy forwards (see `upstream::target`).
    #[error("{0}")]
    BadTarget(String),
    #[error(
        "flag {flag:?} named in the x-aiflags-flag header is not in this sidecar's config \
         (revision {revision}); check the flag name and its podSelector"
    )]
    UnknownFlag { flag: String, revision: String },
    #[error(
        "the sidecar's buffer budget ({limit} bytes, --buffer-budget-bytes / \
         AIFLAGS_BUFFER_BUDGET_BYTES) is spent by requests in flight; retry shortly"
    )]
    Busy { limit: usize },
    #[error("{summary}: {last}")]
    Upstream {
        /// e.g. "all 3 attempts failed"
        summary: String,
        /// What went wrong last, without secrets.
        last: String,
        status: StatusCode,
    },
}

impl ProxyError {
    pub(crate) fn budget(budget: &Arc<Budget>) -> ProxyError {
        ProxyError::Busy {
            limit: budget.limit(),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ReadBody(_) | ProxyError::BadTarget(_) | ProxyError::UnknownFlag { .. } => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream { status, .. } => *status,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ProxyError::BodyTooLarge { .. } => "request_too_large",
            ProxyError::ReadBody(_) => "bad_request_body",
            ProxyError::BadTarget(_) => "bad_request_target",
            ProxyError::UnknownFlag { .. } => "unknown_flag",
            ProxyError::Busy { .. } => "buffer_budget_exhausted",
            ProxyError::Upstream { status, .. } if *status == StatusCode::GATEWAY_TIMEOUT => {
                "upstream_timeout"
            }
            ProxyError::Upstream { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                "buffer_budget_exhausted"
            }
            ProxyError::Upstream { .. } => "upstream_unavailable",
        }
    }

    /// The error as OpenAI-shaped JSON.
    pub(crate) fn body(&self) -> Bytes {
        error_json(&self.to_string(), self.code())
    }
}

/// `{"error": {"message", "type": "aiflags_error", "param", "code"}}`
pub(crate) fn error_json(message: &str, code: &str) -> Bytes {
    let value = serde_json::json!({
        "error": {"message": message, "type": "aiflags_error", "param": null, "code": code}
    });
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_use_the_openai_shape() {
        let error = ProxyError::BodyTooLarge { limit: 10 };
        assert_eq!(error.status(), 413);
        let body = error.body();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["type"], "aiflags_error");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--max-body-bytes")
        );
    }

    #[test]
    fn statuses_follow_the_cause() {
        let upstream = |status| ProxyError::Upstream {
            summary: "all 2 attempts failed".into(),
            last: "x".into(),
            status,
        };
        assert_eq!(upstream(StatusCode::GATEWAY_TIMEOUT).status(), 504);
        assert_eq!(upstream(StatusCode::BAD_GATEWAY).status(), 502);
        assert_eq!(ProxyError::Busy { limit: 1 }.status(), 503);
        assert_eq!(ProxyError::BadTarget("x".into()).status(), 400);
    }
}
