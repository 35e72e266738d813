//! What the mock saw of a request, read as leniently as a real provider
//! would and echoed back as `x-mock-*` headers, so tests assert on what the
//! proxy actually sent.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The request fields the mock acts on; the rest of a body (a prompt of
/// any size) is checked for syntax and skipped, never built.
#[derive(Deserialize)]
struct Fields {
    model: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
    temperature: Option<Value>,
    encoding_format: Option<Value>,
}

impl Fields {
    fn into_value(self) -> Value {
        let fields = [
            ("model", self.model),
            ("stream", self.stream),
            ("stream_options", self.stream_options),
            ("temperature", self.temperature),
            ("encoding_format", self.encoding_format),
        ];
        let object = fields
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), value?)))
            .collect();
        Value::Object(object)
    }
}

/// The fields of a body as JSON, and how it was read: `strict` (a plain
/// document), `lenient` (after dropping a byte order mark, bytes after the
/// first value, or lone surrogate escapes in member names, as tolerant
/// provider parsers do), or `no`.
pub(super) fn read_json(bytes: &[u8]) -> (Value, &'static str) {
    if let Ok(fields) = serde_json::from_slice::<Fields>(bytes) {
        return (fields.into_value(), "strict");
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = |bytes: &[u8]| {
        serde_json::Deserializer::from_slice(bytes)
            .into_iter::<Fields>()
            .next()
            .and_then(Result::ok)
    };
    match first(bytes).or_else(|| first(&without_lone_surrogates(bytes))) {
        Some(fields) => (fields.into_value(), "lenient"),
        None => (Value::Null, "no"),
    }
}

/// A copy with every `\uD800`–`\uDFFF` escape that is not half of a pair
/// replaced by `\uFFFD`.
fn without_lone_surrogates(bytes: &[u8]) -> Vec<u8> {
    let escape_at = |i: usize| -> Option<u32> {
        let hex = bytes.get(i..i + 6)?;
        if &hex[..2] != b"\\u" {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match escape_at(i) {
            Some(0xD800..=0xDBFF)
                if escape_at(i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
            {
                i += 12;
            }
            Some(0xD800..=0xDFFF) => {
                out[i..i + 6].copy_from_slice(b"\\ufffd");
                i += 6;
            }
            _ => i += 2,
        }
    }
    out
}

/// Facts about the request, as `x-mock-*` headers.
pub(super) fn echo_headers(
    headers: &HeaderMap,
    bytes: &Bytes,
    body: &Value,
    json: &'static str,
    path: &str,
) -> HeaderMap {
    let mut out = HeaderMap::new();
    let yes_no = |b: bool| HeaderValue::from_static(if b { "yes" } else { "no" });
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let mut put = |name: &'static str, value: Option<HeaderValue>| {
        if let Some(value) = value {
            out.insert(name, value);
        }
    };
    put("x-mock-received-model", HeaderValue::from_str(model).ok());
    put("x-mock-received-path", HeaderValue::from_str(path).ok());
    put("x-mock-body-json", Some(HeaderValue::from_static(json)));
    // Every header name that arrived, sorted: what crossed the proxy.
    let mut names: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    put(
        "x-mock-saw-headers",
        HeaderValue::from_str(&names.join(",")).ok(),
    );
    put(
        "x-mock-saw-authorization",
        Some(yes_no(headers.contains_key(header::AUTHORIZATION))),
    );
    put(
        "x-mock-authorization",
        headers.get(header::AUTHORIZATION).cloned(),
    );
    put("x-mock-api-key", headers.get("x-api-key").cloned());
    put(
        "x-mock-accept-encoding",
        headers.get(header::ACCEPT_ENCODING).cloned(),
    );
    put(
        "x-mock-content-encoding",
        headers.get(header::CONTENT_ENCODING).cloned(),
    );
    put(
        "x-mock-aiflags-flag",
        headers.get("x-aiflags-flag").cloned(),
    );
    put("x-mock-host", headers.get(header::HOST).cloned());
    put(
        "x-mock-body-sha256",
        HeaderValue::from_str(&hex::encode(Sha256::digest(bytes))).ok(),
    );
    put(
        "x-mock-body-bytes",
        HeaderValue::from_str(&bytes.len().to_string()).ok(),
    );
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool);
    put(
        "x-mock-saw-include-usage",
        Some(yes_no(include_usage == Some(true))),
    );
    if let Some(t) = body.get("temperature") {
        put(
            "x-mock-temperature",
            HeaderValue::from_str(&t.to_string()).ok(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::read_json;

    #[test]
    fn bodies_are_read_as_tolerant_providers_read_them() {
        let model = |body: &[u8]| {
            let (value, how) = read_json(body);
            (value["model"].as_str().unwrap_or("").to_string(), how)
        };
        assert_eq!(model(br#"{"model":"m"}"#), ("m".into(), "strict"));
        let bom = b"\xEF\xBB\xBF{\"model\":\"m\"}";
        assert_eq!(model(bom), ("m".into(), "lenient"));
        let trailing = br#"{"model":"m"} trailing"#;
        assert_eq!(model(trailing), ("m".into(), "lenient"));
        let in_value = br#"{"model":"m","p":"\ud83d","pair":"\ud83d\ude00"}"#;
        assert_eq!(model(in_value), ("m".into(), "strict"));
        let in_name = br#"{"model":"m","\ud83d":1,"p\ud83d\ude00":2,"\\ud83d":3}"#;
        assert_eq!(model(in_name), ("m".into(), "lenient"));
        let (value, _) = read_json(br#"{"model":"m","stream":true,"input":[1,2],"x":{"y":1}}"#);
        assert_eq!(value, json!({"model": "m", "stream": true}));
        assert_eq!(model(b"not json"), (String::new(), "no"));
        assert_eq!(model(b"[1]"), (String::new(), "no"));
    }
}
