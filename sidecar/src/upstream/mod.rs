//! Sending requests to LLM providers: the target ([`target`]), the headers
//! it may see ([`headers`]), the credential it needs ([`credentials`]), and
//! one pooled client over TLS or plain HTTP ([`client`]).

pub(crate) mod client;
pub(crate) mod credentials;
pub(crate) mod headers;
pub(crate) mod plain;
pub(crate) mod target;

use std::path::PathBuf;

use http::request::Parts;
use http::{Request, Response, Version};

pub(crate) use self::client::ResponseBody;
use self::client::UpstreamClient;
use self::credentials::{CredentialError, read_credential};
use self::headers::{HeaderPolicy, Outbound};
use self::target::{Protocol, Target, Upstreams};
use crate::body::ProxyBody;

#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// A problem of configuration, not of the upstream: retrying cannot help.
    #[error("{0}")]
    Config(String),
    /// The upstream could not be reached or dropped the connection.
    #[error("{0}")]
    Connect(String),
}

impl From<CredentialError> for UpstreamError {
    fn from(e: CredentialError) -> Self {
        UpstreamError::Config(e.to_string())
    }
}

/// How one request goes upstream.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Send {
    /// The proxy undid the body's content coding.
    pub decoded: bool,
    /// The proxy reads the response: ask for identity encoding.
    pub reads_response: bool,
}

pub(crate) struct Upstream {
    client: UpstreamClient,
    defaults: [Target; 2],
    policy: HeaderPolicy,
    credentials_dir: Option<PathBuf>,
}

impl Upstream {
    pub(crate) fn new(
        upstreams: &Upstreams,
        policy: HeaderPolicy,
        credentials_dir: Option<PathBuf>,
    ) -> Upstream {
        Upstream {
            client: UpstreamClient::new(),
            defaults: [
                upstreams.default_target(Protocol::OpenAi),
                upstreams.default_target(Protocol::Anthropic),
            ],
            policy,
            credentials_dir,
        }
    }

    pub(crate) fn default_target(&self, protocol: Protocol) -> &Target {
        match protocol {
            Protocol::OpenAi => &self.defaults[0],
            Protocol::Anthropic => &self.defaults[1],
        }
    }

    /// Sends one request; the response head is returned as soon as it arrives.
    pub(crate) async fn send(
        &self,
        target: &Target,
        parts: &Parts,
        body: ProxyBody,
        how: Send,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let original = parts.uri.path_and_query();
        let path = original.map_or("/", |p| p.as_str());
        let path = self
            .policy
            .outbound_path(path, target, target.credential_key.is_some());
        // The client's path, parsed already, when the policy kept it whole.
        let kept = match &path {
            std::borrow::Cow::Borrowed(_) => original,
            std::borrow::Cow::Owned(_) => None,
        };
        let uri = target.uri_for(&path, kept).map_err(UpstreamError::Config)?;
        let credential = match &target.credential_key {
            Some(key) => Some((
                &**key,
                read_credential(self.credentials_dir.as_deref(), key).await?,
            )),
            None => None,
        };
        let outbound = Outbound {
            credential: credential
                .as_ref()
                .map(|(key, secret)| (*key, secret.as_str())),
            decoded: how.decoded,
            reads_response: how.reads_response,
        };
        let headers = self
            .policy
            .outbound(&parts.headers, target, outbound)
            .map_err(|e| UpstreamError::Config(e.to_string()))?;
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri;
        // The pooled client negotiates HTTP/2 itself; asking for it here would
        // fail on HTTP/1-only upstreams.
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        self.client.request(request, target).await
    }
}
