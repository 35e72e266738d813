//! The flags the request targets run against: the repository's examples plus
//! flags covering what they do not (messages, embeddings, a kill switch with
//! targeting and weights that would otherwise pick another variant, body
//! targeting, merge patches that delete and nest, globs with `?` and
//! non-ASCII), compiled as a sidecar in local mode compiles them.

use std::sync::OnceLock;

use aiflags_api::{SidecarConfig, compile_manifests, parse_manifests};
use aiflags_sidecar::Upstreams;
use aiflags_sidecar::fuzzing::Flags;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::select::FLAG_HEADER;

const MANIFESTS: [(&str, &str); 4] = [
    (
        "assistant-fallback.yaml",
        include_str!("../../../examples/assistant-fallback.yaml"),
    ),
    (
        "summarizer-split.yaml",
        include_str!("../../../examples/summarizer-split.yaml"),
    ),
    (
        "support-canary.yaml",
        include_str!("../../../examples/support-canary.yaml"),
    ),
    ("fuzz-extra.yaml", EXTRA_FLAGS),
];

const EXTRA_FLAGS: &str = r#"
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: claude-tier, namespace: fuzz}
spec:
  match: {models: ["claude-*"], operations: [messages]}
  defaultVariant: sonnet
  variants:
    - name: sonnet
      model: claude-sonnet-4-5
      params: {max_tokens: 1024, metadata: null, thinking: {type: enabled, budget_tokens: 2048}}
    - name: haiku
      model: claude-haiku-4-5
      params: {thinking: null, stop_sequences: ["\n\nHuman:"]}
  rollout:
    stickyBy: ["body:metadata.user_id", "header:x-user-id"]
    weights: {sonnet: 50, haiku: 50}
  targeting:
    - when: {body: {"metadata.tier": [pro]}}
      variant: sonnet
  fallback: {chain: [haiku, sonnet]}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: embeddings-off, namespace: fuzz}
spec:
  state: Disabled
  match: {operations: [embeddings, completions]}
  defaultVariant: small
  variants:
    - name: small
      model: text-embedding-3-small
      params: {dimensions: 256, encoding_format: base64}
    - name: large
      model: text-embedding-3-large
  rollout: {weights: {small: 10, large: 90}}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: reasoning, namespace: fuzz}
spec:
  match: {models: ["o?-*", "gpt-5*"], operations: [chat, responses]}
  defaultVariant: low
  variants:
    - name: low
      model: gpt-5-mini
      params: {reasoning: {effort: low}, temperature: null}
    - name: high
      model: o4-mini
      params: {reasoning_effort: high, stream_options: {include_obfuscation: false, x: null}}
  rollout: {stickyBy: ["body:user", "body:safety_identifier"], weights: {low: 75, high: 25}}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: kill-switch, namespace: fuzz}
spec:
  state: Disabled
  match: {models: ["gpt-4o", "kill-*", "*é?"], operations: [chat, messages, responses]}
  defaultVariant: safe
  variants:
    - name: safe
      model: gpt-4o-mini
      params: {temperature: 0, metadata: {killed: true, note: null}}
    - name: risky
      model: gpt-5
  rollout:
    stickyBy: ["header:x-user-id", "body:user"]
    weights: {safe: 0, risky: 100}
  targeting:
    - when: {header: {x-tenant: [beta-corp]}}
      variant: risky
  fallback: {chain: [risky, safe]}
"#;

/// Headers a client may send: none, a sticky user, a targeted tenant, an
/// explicit flag (on or off), and a flag no sidecar serves.
const HEADER_SETS: [&[(&str, &str)]; 6] = [
    &[],
    &[("x-user-id", "user-42")],
    &[("x-tenant", "beta-corp"), ("x-user-id", "user-7")],
    &[(FLAG_HEADER, "summarizer-model")],
    &[(FLAG_HEADER, " kill-switch ")],
    &[(FLAG_HEADER, "no-such-flag")],
];

pub fn config() -> &'static SidecarConfig {
    static CONFIG: OnceLock<SidecarConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut manifests = Vec::new();
        for (source, text) in MANIFESTS {
            let (parsed, errors) = parse_manifests(source, text);
            assert!(errors.is_empty(), "fuzz config: {errors:?}");
            manifests.extend(parsed);
        }
        let (config, errors) = compile_manifests(&manifests, None);
        assert!(errors.is_empty(), "fuzz config: {errors:?}");
        assert_eq!(config.flags.len(), manifests.len(), "fuzz config");
        config
    })
}

/// The config as the sidecar indexes it.
pub fn flags() -> &'static Flags {
    static FLAGS: OnceLock<Flags> = OnceLock::new();
    FLAGS.get_or_init(|| {
        let upstreams = Upstreams {
            openai: http::Uri::from_static("http://127.0.0.1:1"),
            anthropic: http::Uri::from_static("http://127.0.0.1:2"),
        };
        Flags::new(config().flags.clone(), &upstreams)
    })
}

pub fn headers() -> &'static [HeaderMap] {
    static HEADERS: OnceLock<Vec<HeaderMap>> = OnceLock::new();
    HEADERS.get_or_init(|| {
        HEADER_SETS
            .iter()
            .map(|set| {
                set.iter()
                    .map(|(name, value)| {
                        (
                            HeaderName::from_static(name),
                            HeaderValue::from_static(value),
                        )
                    })
                    .collect()
            })
            .collect()
    })
}
