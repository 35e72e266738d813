//! The proxy's own errors and the one place that maps them to HTTP responses.
//!
//! Responses use OpenAI's error JSON shape with type `aiflags_error`, so SDKs
//! surface the message to the application unchanged.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::body::ProxyBody;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "request body is larger than {limit} bytes; raise the sidecar's --max-body-bytes \
         (AIFLAGS_MAX_BODY_BYTES) to accept it"
    )]
    BodyTooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    ReadBody(String),
    #[error(
        "flag {flag:?} named in the x-aiflags-flag header is not in this sidecar's config \
         (revision {revision}); check the flag name and its podSelector"
    )]
    UnknownFlag { flag: String, revision: String },
    #[error("{0}")]
    Upstream(#[from] AttemptsFailed),
}

/// Every attempt failed without an upstream response to hand back.
#[derive(Debug, thiserror::Error)]
#[error("{summary}: {last}")]
pub struct AttemptsFailed {
    /// e.g. "all 3 attempts failed"
    pub summary: String,
    /// What went wrong last, without secrets.
    pub last: String,
    /// The last failure was a timeout: 504 rather than 502.
    pub timed_out: bool,
}

impl ProxyError {
    fn status(&self) -> StatusCode {
        match self {
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ReadBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::UnknownFlag { .. } => StatusCode::BAD_REQUEST,
            ProxyError::Upstream(e) if e.timed_out => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ProxyError::BodyTooLarge { .. } => "request_too_large",
            ProxyError::ReadBody(_) => "bad_request_body",
            ProxyError::UnknownFlag { .. } => "unknown_flag",
            ProxyError::Upstream(e) if e.timed_out => "upstream_timeout",
            ProxyError::Upstream(_) => "upstream_unavailable",
        }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body = error_json(&self.to_string(), self.code());
        let mut response = Response::new(Full::new(body).map_err(|e| match e {}).boxed_unsync());
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// `{"error": {"message", "type": "aiflags_error", "param", "code"}}`
pub fn error_json(message: &str, code: &str) -> Bytes {
    let value = serde_json::json!({
        "error": {"message": message, "type": "aiflags_error", "param": null, "code": code}
    });
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_use_the_openai_shape() {
        let response = ProxyError::BodyTooLarge { limit: 10 }.into_response();
        assert_eq!(response.status(), 413);
        let body = response.into_body().collect().await.unwrap().to_bytes();
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
    fn timeouts_are_gateway_timeouts() {
        let failed = |timed_out| AttemptsFailed {
            summary: "all 2 attempts failed".into(),
            last: "x".into(),
            timed_out,
        };
        assert_eq!(ProxyError::from(failed(true)).status(), 504);
        assert_eq!(ProxyError::from(failed(false)).status(), 502);
    }
}
