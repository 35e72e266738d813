//! The one header policy: what of the client's headers reaches a target.
//!
//! - Hop-by-hop headers (RFC 9110 §7.6.1, and any the `Connection` header
//!   names), `host`, `content-length` (the client sets it from the body that
//!   actually goes) and the sidecar's own `x-aiflags-*` never cross.
//! - Credential- and identity-bearing headers reach only the origin the app
//!   addressed — its protocol's default upstream — and a variant's
//!   `credentialKey` replaces them all, there too.
//! - A body the proxy decoded travels without its `content-encoding`, and a
//!   request the proxy reads the answer of asks for `identity`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::target::{Protocol, Target};

/// Where clients put API keys, sessions and account identity. Settings may add more.
pub(crate) const CREDENTIAL_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "openai-organization",
    "openai-project",
];

/// Connection-scoped headers that must not cross a proxy.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Decides the headers of every upstream request.
#[derive(Clone, Debug)]
pub(crate) struct HeaderPolicy {
    credentials: Vec<HeaderName>,
}

/// How the proxy treats the body of this request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outbound<'a> {
    /// The variant's credential (key, value), which replaces the app's.
    pub credential: Option<(&'a str, &'a str)>,
    /// The proxy undid the body's content coding.
    pub decoded: bool,
    /// The proxy reads the response (usage, stream filtering): ask for it uncompressed.
    pub reads_response: bool,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "credential {0:?} is not a valid header value (a line break or control character in the Secret's value?)"
)]
pub(crate) struct InvalidCredential(pub String);

impl Default for HeaderPolicy {
    fn default() -> Self {
        HeaderPolicy::new(&[])
    }
}

impl HeaderPolicy {
    /// The default credential headers plus `extra` (lower-cased names).
    pub(crate) fn new(extra: &[HeaderName]) -> HeaderPolicy {
        let mut credentials: Vec<HeaderName> = CREDENTIAL_HEADERS
            .iter()
            .map(|name| HeaderName::from_static(name))
            .collect();
        for name in extra {
            if !credentials.contains(name) {
                credentials.push(name.clone());
            }
        }
        HeaderPolicy { credentials }
    }

    pub(crate) fn is_credential(&self, name: &HeaderName) -> bool {
        self.credentials.contains(name)
    }

    /// The headers for `target`, from the client's.
    pub(crate) fn outbound(
        &self,
        client: &HeaderMap,
        target: &Target,
        how: Outbound<'_>,
    ) -> Result<HeaderMap, InvalidCredential> {
        let keep_credentials = target.app_origin && how.credential.is_none();
        let named_in_connection = connection_named(client);
        let mut out = HeaderMap::with_capacity(client.keys_len() + 3);
        for (name, value) in client {
            let dropped = HOP_BY_HOP.contains(name)
                || name == header::HOST
                || name == header::CONTENT_LENGTH
                || name.as_str().starts_with("x-aiflags-")
                || (how.decoded && name == header::CONTENT_ENCODING)
                || (how.reads_response && name == header::ACCEPT_ENCODING)
                || (!keep_credentials && self.is_credential(name))
                || named_in_connection.contains(name);
            if !dropped {
                out.append(name, value.clone());
            }
        }
        if let Some(host) = &target.host {
            out.insert(header::HOST, host.clone());
        }
        if how.reads_response {
            out.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        if let Some((key, secret)) = how.credential {
            set_credential(&mut out, target.protocol, secret)
                .map_err(|()| InvalidCredential(key.to_string()))?;
        }
        Ok(out)
    }
}

/// Query parameters that carry API keys (Google's `key`, Azure's `api-key`, …).
const CREDENTIAL_PARAMS: [&str; 5] = ["key", "api-key", "api_key", "apikey", "access_token"];

impl HeaderPolicy {
    /// The path and query for `target`: credential-bearing query parameters
    /// reach only the origin the app addressed, like credential headers.
    /// Borrowed exactly when it is `path_and_query` whole (the caller then
    /// reuses the client's parsed path).
    pub(crate) fn outbound_path<'p>(
        &self,
        path_and_query: &'p str,
        target: &Target,
        credential: bool,
    ) -> std::borrow::Cow<'p, str> {
        let keep = target.app_origin && !credential;
        let Some((path, query)) = path_and_query.split_once('?') else {
            return path_and_query.into();
        };
        let is_credential = |pair: &&str| {
            let name = pair.split('=').next().unwrap_or_default();
            CREDENTIAL_PARAMS
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c))
        };
        if keep || !query.split('&').any(|pair| is_credential(&pair)) {
            return path_and_query.into();
        }
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !is_credential(pair))
            .collect();
        if kept.is_empty() {
            path.to_string().into()
        } else {
            format!("{path}?{}", kept.join("&")).into()
        }
    }
}

/// Strips what must not go back to the client from an upstream's response head.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Which of the nine are present, in one pass over the names: most
    // messages carry none or only `Connection: keep-alive`.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection` (the first of the nine) may name others.
    if present & 1 != 0 {
        for name in connection_named(headers) {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Headers the `Connection` header names, besides the hop-by-hop ones
/// (removed anyway) and the `close` and `keep-alive` options; most
/// messages name none, and then nothing is allocated.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut values = headers.get_all(header::CONNECTION).iter();
    match (values.next(), values.next()) {
        (None, _) => return Vec::new(),
        // The common case, one option and nothing else.
        (Some(only), None)
            if only.as_bytes().eq_ignore_ascii_case(b"keep-alive")
                || only.as_bytes().eq_ignore_ascii_case(b"close") =>
        {
            return Vec::new();
        }
        _ => {}
    }
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            !token.is_empty()
                && !token.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|hop| token.eq_ignore_ascii_case(hop.as_str()))
        })
        .filter_map(|token| HeaderName::try_from(token).ok())
        .collect()
}

fn set_credential(headers: &mut HeaderMap, protocol: Protocol, secret: &str) -> Result<(), ()> {
    let (name, text) = match protocol {
        Protocol::OpenAi => (header::AUTHORIZATION, format!("Bearer {secret}")),
        Protocol::Anthropic => (HeaderName::from_static("x-api-key"), secret.to_string()),
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| ())?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
