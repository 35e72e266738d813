//! The Prometheus HTTP API client of the analysis: instant queries that
//! answer one number. HTTP or HTTPS (the system's and webpki roots, plus an
//! optional CA file), an optional bearer token read from a file at every
//! query (projected tokens rotate), and a timeout per query.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

/// Largest answer read: an instant query of one number is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Where Prometheus is and how to talk to it.
#[derive(Clone, Debug, Default)]
pub struct PrometheusSettings {
    /// Base URL, e.g. `http://prometheus-operated.monitoring:9090`.
    pub url: String,
    /// A file holding a bearer token, read at every query.
    pub token_file: Option<PathBuf>,
    /// PEM certificates to trust besides the system's (HTTPS only).
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// Why a query gave no number.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("{0}")]
    Unreachable(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the answer is not what an instant query returns: {0}")]
    Answer(String),
    #[error("reading the bearer token: {0}")]
    Token(String),
}

pub struct Prometheus {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    token_file: Option<PathBuf>,
    timeout: Duration,
}

impl Prometheus {
    /// Checks the settings and builds the client; every problem is reported.
    pub fn new(settings: &PrometheusSettings) -> Result<Prometheus, Vec<String>> {
        let mut errors = Vec::new();
        let base = settings.url.trim_end_matches('/').to_string();
        match base.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
            _ => errors.push(format!(
                "--prometheus-url: {:?} must be an http:// or https:// URL with a host",
                settings.url
            )),
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = &settings.ca_file {
            match CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            {
                Ok(certs) if !certs.is_empty() => {
                    roots.add_parsable_certificates(certs);
                }
                Ok(_) => errors.push(format!(
                    "--prometheus-ca-file: {} holds no certificate",
                    path.display()
                )),
                Err(error) => {
                    errors.push(format!("--prometheus-ca-file: {}: {error}", path.display()))
                }
            }
        }
        if settings.timeout.is_zero() {
            errors.push("--prometheus-timeout: must be longer than 0".into());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![format!("TLS: {e}")])?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Prometheus {
            client: Client::builder(TokioExecutor::new()).build(https),
            base,
            token_file: settings.token_file.clone(),
            timeout: settings.timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// An instant query's single value; `None` when it selects no series
    /// (or the value is not a number: `NaN` from a division by nothing).
    pub async fn query(&self, promql: &str) -> Result<Option<f64>, QueryError> {
        match tokio::time::timeout(self.timeout, self.ask(promql)).await {
            Ok(answer) => answer,
            Err(_) => Err(QueryError::Timeout(self.timeout)),
        }
    }

    async fn ask(&self, promql: &str) -> Result<Option<f64>, QueryError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/api/v1/query", self.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(path) = &self.token_file {
            let token = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| QueryError::Token(format!("{}: {e}", path.display())))?;
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
        }
        let body = format!("query={}", form_encode(promql));
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| QueryError::Unreachable(causes(&e)))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| QueryError::Unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        parse_answer(status, &bytes)
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

/// The value of an instant query's answer. Pure.
pub fn parse_answer(status: StatusCode, body: &[u8]) -> Result<Option<f64>, QueryError> {
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(_) if !status.is_success() => {
            return Err(QueryError::Status {
                status: status.as_u16(),
                message: String::from_utf8_lossy(body).chars().take(200).collect(),
            });
        }
        Err(error) => return Err(QueryError::Answer(error.to_string())),
    };
    if answer.status != "success" || !status.is_success() {
        return Err(QueryError::Status {
            status: status.as_u16(),
            message: format!(
                "{}: {}",
                answer.error_type.unwrap_or_default(),
                answer.error.unwrap_or_default()
            ),
        });
    }
    let data = answer
        .data
        .ok_or_else(|| QueryError::Answer("no data".into()))?;
    let value = match (data.result_type.as_str(), &data.result) {
        ("vector", serde_json::Value::Array(samples)) => match samples.as_slice() {
            [] => return Ok(None),
            [sample] => sample.get("value").cloned(),
            _ => {
                return Err(QueryError::Answer(format!(
                    "{} series where one was expected",
                    samples.len()
                )));
            }
        },
        ("scalar", value) => Some(value.clone()),
        (other, _) => return Err(QueryError::Answer(format!("result type {other}"))),
    };
    let text = value
        .as_ref()
        .and_then(|v| v.get(1))
        .and_then(|v| v.as_str())
        .ok_or_else(|| QueryError::Answer("a sample without a value".into()))?;
    let number: f64 = text
        .parse()
        .map_err(|_| QueryError::Answer(format!("{text:?} is not a number")))?;
    Ok(number.is_finite().then_some(number))
}

/// `application/x-www-form-urlencoded`: unreserved bytes as they are,
/// every other byte as `%XX`.
fn form_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(char::from(byte))
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// A client error with its causes: "connection refused", not just "connect error".
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_vector_gives_its_one_value() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.25"]}]}}"#;
        assert_eq!(parse_answer(StatusCode::OK, body), Ok(Some(0.25)));
    }

    #[test]
    fn no_series_and_nan_are_no_value() {
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_answer(StatusCode::OK, empty), Ok(None));
        let nan = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert_eq!(parse_answer(StatusCode::OK, nan), Ok(None));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        assert_eq!(parse_answer(StatusCode::OK, scalar), Ok(Some(3.0)));
    }

    #[test]
    fn errors_say_what_prometheus_said() {
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        assert_eq!(
            parse_answer(StatusCode::BAD_REQUEST, bad),
            Err(QueryError::Status {
                status: 400,
                message: "bad_data: parse error at char 5".into()
            })
        );
        assert_eq!(
            parse_answer(StatusCode::BAD_GATEWAY, b"upstream down"),
            Err(QueryError::Status {
                status: 502,
                message: "upstream down".into()
            })
        );
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert!(matches!(
            parse_answer(StatusCode::OK, two),
            Err(QueryError::Answer(_))
        ));
        assert!(matches!(
            parse_answer(StatusCode::OK, b"<html>"),
            Err(QueryError::Answer(_))
        ));
    }

    #[test]
    fn queries_are_form_encoded() {
        assert_eq!(
            form_encode(r#"sum(x{a="b"}[1m]) or y * 0"#),
            "sum%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%20or%20y%20%2A%200"
        );
    }

    #[test]
    fn settings_are_checked_all_at_once() {
        let errors = Prometheus::new(&PrometheusSettings {
            url: "prometheus:9090".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            timeout: Duration::ZERO,
            ..Default::default()
        })
        .err()
        .unwrap_or_default();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("--prometheus-url"));
        assert!(errors[1].starts_with("--prometheus-ca-file"));
        assert!(errors[2].starts_with("--prometheus-timeout"));
    }
}
