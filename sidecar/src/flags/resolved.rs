//! A compiled flag turned into what the request path uses directly: variant
//! indices instead of names, header names parsed, targets built, labels
//! shared. Done once per config load, so a request does no config parsing.

use std::sync::Arc;

use aiflags_api::{CompiledFlag, Pricing, StickySource};
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::upstream::target::{Protocol, Target, TargetResolver, for_protocol};

#[derive(Debug)]
pub struct ResolvedFlag {
    pub key: Arc<str>,
    /// `key` as the `x-aiflags-flag` response header (`None`: not a valid
    /// header value); built once, cloned per response without copying.
    pub key_header: Option<HeaderValue>,
    /// The flag as compiled: shared with the config it came from (and the
    /// next one, while it keeps this version), so it is held once.
    pub compiled: Arc<CompiledFlag>,
    /// Index of `defaultVariant`.
    pub default: usize,
    /// The weights in force, basis points per variant (the kill switch puts
    /// them all on the default).
    pub weights: Vec<u32>,
    pub sticky_by: Vec<Sticky>,
    pub targeting: Vec<Rule>,
    /// `fallback.chain` as variant indices, in order.
    pub chain: Vec<usize>,
    pub variants: Vec<ResolvedVariant>,
}

#[derive(Debug)]
pub enum Sticky {
    Header(HeaderName),
    Body(Vec<String>),
}

/// A targeting rule: every header and body condition must hold.
#[derive(Debug)]
pub struct Rule {
    pub headers: Vec<(HeaderName, Vec<String>)>,
    /// Path of object keys → accepted values.
    pub body: Vec<(Vec<String>, Vec<String>)>,
    pub variant: usize,
    /// A header name in the rule is not a valid header name: it never matches.
    pub impossible: bool,
}

#[derive(Debug)]
pub struct ResolvedVariant {
    pub name: Arc<str>,
    pub model: Arc<str>,
    /// `name` and `model` as response headers (see [`ResolvedFlag::key_header`]).
    pub name_header: Option<HeaderValue>,
    pub model_header: Option<HeaderValue>,
    /// Its place in the flag's variants (and in the compiled flag's).
    pub index: usize,
    /// Per protocol: where this variant's requests go, or why they cannot.
    pub targets: [Result<Target, String>; 2],
    pub pricing: Option<Pricing>,
    /// Per protocol: the circuit breaker's key, target label plus model.
    pub breaker_keys: [Arc<str>; 2],
}

impl ResolvedVariant {
    pub(crate) fn target(&self, protocol: Protocol) -> &Result<Target, String> {
        for_protocol(&self.targets, protocol)
    }

    pub(crate) fn breaker_key(&self, protocol: Protocol) -> &Arc<str> {
        match protocol {
            Protocol::OpenAi => &self.breaker_keys[0],
            Protocol::Anthropic => &self.breaker_keys[1],
        }
    }
}

impl ResolvedFlag {
    pub(crate) fn new(compiled: Arc<CompiledFlag>, upstreams: &TargetResolver) -> ResolvedFlag {
        let index = |name: &str| compiled.variants.iter().position(|v| v.name == name);
        let default = index(&compiled.default_variant).unwrap_or(0);
        let sticky_by = compiled
            .sticky_by
            .iter()
            .filter_map(|source| match source {
                StickySource::Header(name) => {
                    HeaderName::try_from(name.as_str()).ok().map(Sticky::Header)
                }
                StickySource::Body(path) => Some(Sticky::Body(path.clone())),
            })
            .collect();
        let targeting = compiled
            .targeting
            .iter()
            .filter_map(|rule| {
                let variant = index(&rule.variant)?;
                let headers: Vec<_> = rule
                    .headers
                    .iter()
                    .filter_map(|(name, values)| {
                        Some((HeaderName::try_from(name.as_str()).ok()?, values.clone()))
                    })
                    .collect();
                Some(Rule {
                    impossible: headers.len() != rule.headers.len(),
                    headers,
                    body: rule
                        .body
                        .iter()
                        .map(|(path, values)| {
                            (
                                path.split('.').map(str::to_string).collect(),
                                values.clone(),
                            )
                        })
                        .collect(),
                    variant,
                })
            })
            .collect();
        let chain = compiled
            .fallback
            .chain
            .iter()
            .filter_map(|name| index(name))
            .collect();
        let variants = compiled
            .variants
            .iter()
            .enumerate()
            .map(|(index, v)| {
                let targets = upstreams.targets_for(v.provider.as_ref());
                let key = |t: &Result<Target, String>| -> Arc<str> {
                    let label = t.as_ref().map_or("misconfigured", |t| t.label());
                    format!("{label} {}", v.model).into()
                };
                ResolvedVariant {
                    name: v.name.as_str().into(),
                    model: v.model.as_str().into(),
                    name_header: HeaderValue::from_str(&v.name).ok(),
                    model_header: HeaderValue::from_str(&v.model).ok(),
                    index,
                    breaker_keys: [key(&targets[0]), key(&targets[1])],
                    targets,
                    pricing: v.pricing.clone(),
                }
            })
            .collect();
        ResolvedFlag {
            key: compiled.key.as_str().into(),
            key_header: HeaderValue::from_str(&compiled.key).ok(),
            default,
            weights: compiled.effective_weights(),
            sticky_by,
            targeting,
            chain,
            variants,
            compiled,
        }
    }

    pub fn variant(&self, index: usize) -> Option<&ResolvedVariant> {
        self.variants.get(index)
    }

    /// A variant's merge patch, when it is an object (the compiler allows
    /// no other).
    pub fn params(&self, variant: &ResolvedVariant) -> Option<&Map<String, Value>> {
        self.compiled
            .variants
            .get(variant.index)?
            .params
            .as_ref()?
            .as_object()
    }
}
