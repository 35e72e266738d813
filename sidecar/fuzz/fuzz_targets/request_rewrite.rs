//! A client's request body through the proxy's pure request path, as
//! `proxy::find_flag` and `attempts::run` take it: parse, select the flag,
//! decide the variant, rewrite for it and each fallback, ask for the usage
//! chunk, serialise.
//!
//! The config is the repository's examples plus flags covering what they do
//! not (messages, embeddings, the kill switch, body targeting, a merge patch
//! that deletes and nests), compiled as a sidecar in local mode compiles them.
//! Every body is tried for every operation with a few header sets.
//!
//! Properties: nothing panics; a chosen flag covers the operation and model;
//! the variant exists, and is the default when the flag is off; the rewritten
//! body serialises to JSON whose `model` is the variant's, with the variant's
//! params applied, `stream` untouched, and the usage chunk asked for exactly
//! when the proxy says it added it.

#![no_main]

use std::sync::OnceLock;

use aiflags_api::{
    CompiledFlag, CompiledVariant, Operation, SidecarConfig, compile_manifests, parse_manifests,
};
use aiflags_sidecar::evaluate::{
    FLAG_HEADER, FlagSelection, RequestView, decide, glob_match, select_flag,
};
use aiflags_sidecar::rewrite::{
    apply_variant, ensure_stream_usage, is_streaming, request_wants_usage_stream,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

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
      params: {reasoning_effort: high, stream_options: {include_obfuscation: false}}
  rollout: {stickyBy: ["body:user", "body:safety_identifier"], weights: {low: 75, high: 25}}
"#;

/// Headers a client may send: none, a sticky user, a targeted tenant, an
/// explicit flag, and a flag no sidecar serves.
const HEADER_SETS: [&[(&str, &str)]; 5] = [
    &[],
    &[("x-user-id", "user-42")],
    &[("x-tenant", "beta-corp"), ("x-user-id", "user-7")],
    &[(FLAG_HEADER, "summarizer-model")],
    &[(FLAG_HEADER, "no-such-flag")],
];

fn config() -> &'static SidecarConfig {
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

fn headers() -> &'static [HeaderMap] {
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

fuzz_target!(|data: &[u8]| {
    let config = config();
    // The proxy passes anything that is not JSON with a string model through.
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return;
    };
    // Deterministic per input, so a crash replays; varied across inputs.
    let random = fnv1a(data);
    for operation in Operation::ALL {
        for headers in headers() {
            let view = RequestView {
                operation: Some(operation),
                model: Some(model),
                headers,
                body: Some(&body),
            };
            let flag = match select_flag(config, &view) {
                FlagSelection::None => continue,
                FlagSelection::UnknownFlag(name) => {
                    assert_eq!(
                        headers.get(FLAG_HEADER).map(HeaderValue::as_bytes),
                        Some(name.as_bytes())
                    );
                    continue;
                }
                FlagSelection::Selected(flag) => flag,
            };
            check_selected(flag, operation, model, headers);
            let decision = decide(flag, &view, random);
            let Some(chosen) = flag.variants.get(decision.variant) else {
                panic!(
                    "{}: variant {} of {}",
                    flag.key,
                    decision.variant,
                    flag.variants.len()
                );
            };
            if !flag.enabled {
                assert_eq!(
                    chosen.name, flag.default_variant,
                    "{}: kill switch",
                    flag.key
                );
            }
            let fallbacks = flag
                .fallback
                .chain
                .iter()
                .filter_map(|name| flag.variant(name));
            for variant in std::iter::once(chosen).chain(fallbacks) {
                check_rewrite(operation, &body, variant);
            }
        }
    }
});

/// Without the flag header, a flag must cover the operation and the model.
fn check_selected(flag: &CompiledFlag, operation: Operation, model: &str, headers: &HeaderMap) {
    assert!(
        flag.operations.is_empty() || flag.operations.contains(&operation),
        "{}: chosen for {operation:?}",
        flag.key
    );
    if headers.contains_key(FLAG_HEADER) {
        return;
    }
    assert!(
        flag.models.is_empty() || flag.models.iter().any(|p| glob_match(p, model)),
        "{}: chosen for model {model:?}",
        flag.key
    );
}

/// One attempt's body, as `attempts::run` builds it. (No params here touch
/// `stream_options.include_usage`, so the client's wish survives the rewrite.)
fn check_rewrite(operation: Operation, original: &Value, variant: &CompiledVariant) {
    let streaming = is_streaming(original);
    let asked = request_wants_usage_stream(operation, original);
    let mut body = original.clone();
    apply_variant(&mut body, variant);
    if let Some(Value::Object(params)) = &variant.params {
        for (key, value) in params {
            let now = body.get(key);
            match value {
                Value::Null => assert_eq!(now, None, "params deleted {key}"),
                Value::Object(_) => {
                    assert!(now.is_some_and(Value::is_object), "params merged {key}")
                }
                value => assert_eq!(now, Some(value), "params set {key}"),
            }
        }
    }
    let strip = streaming && ensure_stream_usage(operation, &mut body);

    assert_eq!(is_streaming(&body), streaming, "stream changed");
    let include_usage = body.pointer("/stream_options/include_usage");
    if strip {
        assert!(!asked, "stripping a usage chunk the client asked for");
        assert!(matches!(
            operation,
            Operation::Chat | Operation::Completions
        ));
        assert_eq!(include_usage, Some(&Value::Bool(true)));
    } else if streaming && matches!(operation, Operation::Chat | Operation::Completions) {
        // Either the client asked itself, or its `stream_options` is not an
        // object and is left for the upstream to reject.
        let malformed = body
            .get("stream_options")
            .is_some_and(|o| !o.is_object() && !o.is_null());
        assert!(asked || malformed, "usage chunk not asked for: {body}");
    }

    let bytes = match serde_json::to_vec(&body) {
        Ok(bytes) => bytes,
        Err(e) => panic!("rewritten body does not serialise: {e}"),
    };
    let sent: Value = match serde_json::from_slice(&bytes) {
        Ok(sent) => sent,
        Err(e) => panic!("rewritten body is not JSON: {e}"),
    };
    assert_eq!(
        sent.get("model").and_then(Value::as_str),
        Some(variant.model.as_str()),
        "model after rewrite"
    );
}

/// FNV-1a, folded to 32 bits.
fn fnv1a(data: &[u8]) -> u32 {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash ^ (hash >> 32)) as u32
}
