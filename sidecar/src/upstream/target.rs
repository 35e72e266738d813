//! Where an attempt goes: the default upstream of the request's protocol or
//! a variant's provider, and the URL built for it.
//!
//! A provider `baseUrl` is an origin plus an optional path prefix that takes
//! the place of the default upstream; the request path is kept. So
//! `http://vllm:8000` serves `/v1/chat/completions` at
//! `http://vllm:8000/v1/chat/completions`. A prefix that already ends in
//! `/v1` (as SDK base URLs do) is not doubled.
//!
//! The request's own target is checked before anything is built from it:
//! only origin-form paths without dot segments reach an upstream, so neither
//! `OPTIONS *` nor `/v1/../admin` can step outside a provider's prefix.

use std::sync::Arc;

use aiflags_api::{Operation, Provider};
use http::uri::{Authority, Parts, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Uri};

/// Which API family a request speaks; decides the default upstream and how a
/// credential is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    OpenAi,
    Anthropic,
}

impl Protocol {
    pub fn for_path(path: &str) -> Protocol {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Protocol::Anthropic
        } else {
            Protocol::OpenAi
        }
    }

    fn index(self) -> usize {
        match self {
            Protocol::OpenAi => 0,
            Protocol::Anthropic => 1,
        }
    }
}

/// The default upstream of each protocol: origin plus optional path prefix.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub openai: Uri,
    pub anthropic: Uri,
}

/// Where one attempt goes.
#[derive(Clone, Debug)]
pub struct Target {
    /// Parsed once, so building a request's URI parses only its path.
    scheme: Scheme,
    authority: Option<Authority>,
    /// Path prefix without a trailing slash; empty for none.
    prefix: Arc<str>,
    pub protocol: Protocol,
    /// The Secret key whose value replaces the app's credentials.
    pub credential_key: Option<Arc<str>>,
    /// Whether this is the origin the app addressed (its protocol's default
    /// upstream): only there may the app's own credentials go.
    pub app_origin: bool,
    /// `scheme://authority[/prefix]`: the provider label and circuit key.
    label: Arc<str>,
    /// The `Host` header for this origin, built once (the HTTP client would
    /// otherwise format it for every request).
    pub(crate) host: Option<HeaderValue>,
    /// `host:port` to connect to, the scheme's default port filled in:
    /// the plain-HTTP pool's key.
    pub(crate) origin: Arc<str>,
}

/// `host[:port]`, the port left out when it is the scheme's default: what
/// hyper_util's client writes when a request has no `Host`.
fn host_header(base: &Uri) -> Option<HeaderValue> {
    let host = base.host()?;
    let secure = matches!(base.scheme_str(), Some("https" | "wss"));
    let value = match base.port_u16() {
        Some(443) if secure => HeaderValue::from_str(host),
        Some(80) if !secure => HeaderValue::from_str(host),
        Some(port) => HeaderValue::from_str(&format!("{host}:{port}")),
        None => HeaderValue::from_str(host),
    };
    value.ok()
}

/// A request target the proxy refuses to forward.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BadTarget {
    #[error("request target {0:?} is not a path: only origin-form targets (/v1/...) are proxied")]
    NotAPath(String),
    #[error("request path {0:?} has a dot segment or an encoded slash; send a normalised path")]
    DotSegment(String),
    #[error("method CONNECT is not proxied")]
    Connect,
    #[error(
        "request path {0:?} names an API path in a non-canonical form (percent-encoded letters or \
         digits, empty segments or ;parameters); send it as {1:?}"
    )]
    NotCanonical(String, String),
}

impl From<BadTarget> for crate::error::ProxyError {
    fn from(bad: BadTarget) -> Self {
        crate::error::ProxyError::BadTarget(bad.to_string())
    }
}

impl Upstreams {
    pub fn default_target(&self, protocol: Protocol) -> Target {
        let base = match protocol {
            Protocol::OpenAi => &self.openai,
            Protocol::Anthropic => &self.anthropic,
        };
        Target::new(base, protocol, None, true)
    }

    /// Resolves variants' targets, each default target built once.
    pub(crate) fn resolver(&self) -> TargetResolver {
        TargetResolver {
            defaults: [
                self.default_target(Protocol::OpenAi),
                self.default_target(Protocol::Anthropic),
            ],
        }
    }
}

/// Builds the targets of a config's variants; variants on a default upstream
/// share its target's strings.
#[derive(Debug)]
pub(crate) struct TargetResolver {
    defaults: [Target; 2],
}

impl TargetResolver {
    /// The variant's provider for `protocol`, or that protocol's default.
    pub(crate) fn target_for(
        &self,
        protocol: Protocol,
        provider: Option<&Provider>,
    ) -> Result<Target, String> {
        let default = &self.defaults[protocol.index()];
        let Some(provider) = provider else {
            return Ok(default.clone());
        };
        let base = base_url(&provider.base_url).map_err(|e| format!("provider baseUrl: {e}"))?;
        let same_origin = base.scheme() == Some(&default.scheme)
            && base.authority() == default.authority.as_ref();
        let credential = provider.credential_key.as_deref().map(Arc::from);
        Ok(Target::new(&base, protocol, credential, same_origin))
    }

    /// Both protocols' targets for a provider, resolved once when a config loads.
    pub(crate) fn targets_for(&self, provider: Option<&Provider>) -> [Result<Target, String>; 2] {
        [
            self.target_for(Protocol::OpenAi, provider),
            self.target_for(Protocol::Anthropic, provider),
        ]
    }
}

/// Picks the protocol's entry of [`Upstreams::targets_for`].
pub(crate) fn for_protocol(
    targets: &[Result<Target, String>; 2],
    protocol: Protocol,
) -> &Result<Target, String> {
    &targets[protocol.index()]
}

impl Target {
    pub fn new(
        base: &Uri,
        protocol: Protocol,
        credential_key: Option<Arc<str>>,
        app_origin: bool,
    ) -> Target {
        let scheme = base.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let authority = base.authority().cloned();
        let prefix = base.path().trim_end_matches('/');
        let label = format!(
            "{scheme}://{}{prefix}",
            authority.as_ref().map_or("", Authority::as_str)
        );
        let port = base
            .port_u16()
            .unwrap_or(if scheme == Scheme::HTTP { 80 } else { 443 });
        let origin = format!("{}:{port}", base.host().unwrap_or(""));
        Target {
            host: host_header(base),
            origin: origin.into(),
            scheme,
            authority,
            prefix: prefix.into(),
            protocol,
            credential_key,
            app_origin,
            label: label.into(),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn label_arc(&self) -> Arc<str> {
        self.label.clone()
    }

    /// The upstream URL for a request path (already checked by
    /// [`check_request_target`]). `parsed` is the client's own path when
    /// `path_and_query` is its text: where the upstream's path is the same
    /// (no prefix, or a prefix of `/v1` that the path starts with), it is
    /// reused rather than copied and parsed again.
    pub fn uri_for(
        &self,
        path_and_query: &str,
        parsed: Option<&PathAndQuery>,
    ) -> Result<Uri, String> {
        // A prefix ending in `/v1` takes the path's own `/v1` in its place.
        let (path, v1_taken) = match self.prefix.strip_suffix("/v1") {
            Some(_) if path_and_query.starts_with("/v1/") => (&path_and_query[3..], true),
            _ => (path_and_query, false),
        };
        let failed = || format!("cannot build a URL for {path:?} from {}", self.label);
        let unchanged = self.prefix.is_empty() || (v1_taken && &*self.prefix == "/v1");
        let path_and_query = match parsed {
            Some(parsed) if unchanged => Ok(parsed.clone()),
            _ if self.prefix.is_empty() => PathAndQuery::try_from(path),
            _ => PathAndQuery::try_from(format!("{}{path}", self.prefix)),
        }
        .map_err(|_| failed())?;
        let mut parts = Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = self.authority.clone();
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|_| failed())
    }
}

/// The operation an API path names, or `None` for any other path (passed
/// through untouched).
///
/// Paths are matched exactly, with the `/v1` prefix both SDKs send (the
/// injected `OPENAI_BASE_URL` ends in `/v1`, and the Anthropic SDK appends
/// `/v1/messages` to `ANTHROPIC_BASE_URL`). One trailing slash is ignored;
/// prefixes such as Azure's `/openai/deployments/…` are not recognised.
pub(crate) fn operation_for_path(path: &str) -> Option<Operation> {
    let path = path.strip_suffix('/').unwrap_or(path);
    match path {
        "/v1/chat/completions" => Some(Operation::Chat),
        "/v1/responses" => Some(Operation::Responses),
        "/v1/completions" => Some(Operation::Completions),
        "/v1/embeddings" => Some(Operation::Embeddings),
        "/v1/messages" => Some(Operation::Messages),
        _ => None,
    }
}

/// Refuses request targets that are not plain origin-form paths: `*`
/// (asterisk-form, `OPTIONS *` or an h2 `:path *`), CONNECT, paths with
/// `.`/`..` segments or encoded slashes, literal or percent-encoded, and an
/// API path in a form its upstream would read as that path but the flag
/// lookup would not (`/v1/chat/completion%73`, `/v1//chat/completions`,
/// `/v1/chat/completions;x`): no flag is skipped by how a path is spelled.
pub(crate) fn check_request_target(method: &Method, uri: &Uri) -> Result<(), BadTarget> {
    if method == Method::CONNECT {
        return Err(BadTarget::Connect);
    }
    let path = uri.path();
    if !path.starts_with('/') {
        return Err(BadTarget::NotAPath(clip(path)));
    }
    // Most paths hold nothing the checks below look for: no dot, escape,
    // backslash, parameter or empty segment.
    let mut previous = 0;
    let simple = path.bytes().all(|b| {
        let special = matches!(b, b'.' | b'%' | b';' | b'\\') || (b == b'/' && previous == b'/');
        previous = b;
        !special
    });
    if simple {
        return Ok(());
    }
    for segment in path.split('/') {
        let decoded = decode_dots_and_slashes(segment);
        if decoded == "." || decoded == ".." || decoded.contains(['/', '\\']) {
            return Err(BadTarget::DotSegment(clip(path)));
        }
    }
    if path.contains(['%', ';']) || path.contains("//") {
        let canonical = canonical_path(path);
        let names_api = operation_for_path(&canonical).is_some()
            || Protocol::for_path(&canonical) == Protocol::Anthropic;
        if names_api {
            return Err(BadTarget::NotCanonical(clip(path), canonical));
        }
    }
    Ok(())
}

/// `%2e`, `%2f` and `%5c` decoded, in any case; other escapes left alone.
fn decode_dots_and_slashes(segment: &str) -> std::borrow::Cow<'_, str> {
    if !segment.contains('%') {
        return std::borrow::Cow::Borrowed(segment);
    }
    let lower = segment.to_ascii_lowercase();
    std::borrow::Cow::Owned(
        lower
            .replace("%2e", ".")
            .replace("%2f", "/")
            .replace("%5c", "\\"),
    )
}

/// How an upstream router reads a path (RFC 3986 §6.2.2): percent-encoded
/// unreserved characters decoded, empty segments and `;parameters` dropped.
fn canonical_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let segment = segment.split(';').next().unwrap_or_default();
        out.push('/');
        let bytes = segment.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let decoded = (bytes[i] == b'%')
                .then(|| segment.get(i + 1..i + 3))
                .flatten()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b));
            match decoded {
                Some(b) => {
                    out.push(char::from(b));
                    i += 3;
                }
                None => {
                    let ch_len = segment[i..].chars().next().map_or(1, char::len_utf8);
                    out.push_str(&segment[i..i + ch_len]);
                    i += ch_len;
                }
            }
        }
    }
    if path.ends_with('/') && out.len() > 1 {
        out.push('/');
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// What of a client-supplied string an error message echoes: bounded, printable.
fn clip(text: &str) -> String {
    crate::text::printable(text, 128)
}

/// An `http(s)://host[:port][/prefix]` URL without query or fragment.
pub(crate) fn base_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|_| format!("{s:?} is not a URL such as https://api.openai.com"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.authority().is_none() || uri.query().is_some() {
        return Err(format!(
            "{s:?} must be an http:// or https:// URL with a host and no query"
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(base: &str) -> Target {
        Target::new(&base.parse().unwrap(), Protocol::OpenAi, None, true)
    }

    #[test]
    fn base_url_replaces_the_origin_and_keeps_the_path() {
        // The same URL whether the client's parsed path is handed over or not.
        let uri = |b: &str, p: &str| {
            let parsed = PathAndQuery::try_from(p).unwrap();
            let fresh = target(b).uri_for(p, None).unwrap().to_string();
            let reused = target(b).uri_for(p, Some(&parsed)).unwrap().to_string();
            assert_eq!(fresh, reused, "{b} {p}");
            fresh
        };
        assert_eq!(
            uri("http://h:1", "/v1/chat/completions?x=1"),
            "http://h:1/v1/chat/completions?x=1"
        );
        assert_eq!(
            uri("http://h:1/", "/v1/embeddings"),
            "http://h:1/v1/embeddings"
        );
        assert_eq!(
            uri("http://h:1/v1", "/v1/embeddings"),
            "http://h:1/v1/embeddings"
        );
        assert_eq!(
            uri("https://h/openai", "/v1/embeddings"),
            "https://h/openai/v1/embeddings"
        );
        assert_eq!(
            uri("https://h/openai/v1", "/v1/embeddings?api-version=1"),
            "https://h/openai/v1/embeddings?api-version=1"
        );
        assert_eq!(uri("http://h:1/v1", "/health"), "http://h:1/v1/health");
        assert_eq!(target("https://h/openai").label(), "https://h/openai");
    }

    #[test]
    fn the_host_header_leaves_out_the_schemes_default_port() {
        let host = |b: &str| target(b).host.map(|h| h.to_str().unwrap().to_string());
        assert_eq!(host("http://h:1/v1").as_deref(), Some("h:1"));
        assert_eq!(host("http://h:80").as_deref(), Some("h"));
        assert_eq!(host("http://h:443").as_deref(), Some("h:443"));
        assert_eq!(
            host("https://api.openai.com").as_deref(),
            Some("api.openai.com")
        );
        assert_eq!(host("https://h:443/x").as_deref(), Some("h"));
        assert_eq!(host("https://h:80").as_deref(), Some("h:80"));
        assert_eq!(host("http://[::1]:8080").as_deref(), Some("[::1]:8080"));
    }

    #[test]
    fn only_normalised_origin_form_paths_pass() {
        let check = |method: Method, target: &str| {
            let uri: Uri = target.parse().unwrap();
            check_request_target(&method, &uri)
        };
        assert_eq!(check(Method::POST, "/v1/chat/completions?a=../b"), Ok(()));
        assert_eq!(check(Method::GET, "/v1/models/gpt-4o.mini"), Ok(()));
        assert!(matches!(
            check(Method::OPTIONS, "*"),
            Err(BadTarget::NotAPath(_))
        ));
        for bad in [
            "/v1/../admin",
            "/v1/./chat",
            "/v1/%2e%2e/admin",
            "/v1/%2E./admin",
            "/v1/.%2e",
            "/v1/a%2fb",
            "/v1/a%5Cb",
            "/..",
        ] {
            assert!(
                matches!(check(Method::POST, bad), Err(BadTarget::DotSegment(_))),
                "{bad}"
            );
        }
        assert_eq!(check(Method::CONNECT, "/x"), Err(BadTarget::Connect));
        for spelled in [
            "/v1/chat/completion%73",
            "/v1//chat/completions",
            "/v1/chat/completions;x",
            "/%76%31/embeddings",
            "/v1/messag%65s",
        ] {
            assert!(
                matches!(
                    check(Method::POST, spelled),
                    Err(BadTarget::NotCanonical(..))
                ),
                "{spelled}"
            );
        }
        // Other paths may spell themselves as they like.
        assert_eq!(check(Method::GET, "/v1/files/a%20b;c"), Ok(()));
        assert_eq!(check(Method::POST, "/v1/chat/completions/"), Ok(()));
        assert_eq!(
            canonical_path("/v1//chat/completion%73;x/"),
            "/v1/chat/completions/"
        );
    }

    #[test]
    fn a_provider_on_the_default_origin_may_see_the_apps_key() {
        let upstreams = Upstreams {
            openai: "https://api.openai.com".parse().unwrap(),
            anthropic: "https://api.anthropic.com".parse().unwrap(),
        };
        let provider = |url: &str| Provider {
            base_url: url.into(),
            credential_key: None,
        };
        let same = upstreams
            .resolver()
            .target_for(
                Protocol::OpenAi,
                Some(&provider("https://api.openai.com/v1")),
            )
            .unwrap();
        assert!(same.app_origin);
        let other = upstreams
            .resolver()
            .target_for(Protocol::OpenAi, Some(&provider("http://api.openai.com")))
            .unwrap();
        assert!(!other.app_origin, "another scheme is another origin");
        assert!(
            upstreams
                .resolver()
                .target_for(Protocol::OpenAi, Some(&provider("ftp://x")))
                .is_err()
        );
        assert_eq!(Protocol::for_path("/v1/messages"), Protocol::Anthropic);
        assert_eq!(Protocol::for_path("/v1/models"), Protocol::OpenAi);
    }
}
