//! The request path's properties, as `route` and `attempts` take a body:
//! `make_readable` (decode, drop the mark, scan), `Flags::select`, `decide`,
//! then `splice` for the chosen variant and each fallback, with the usage
//! chunk asked for and not. Each result is held against the oracles in
//! [`crate::json`] and [`crate::select`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use aiflags_api::Operation;
use aiflags_sidecar::fuzzing::Budget;
use aiflags_sidecar::fuzzing::ProxyError;
use aiflags_sidecar::fuzzing::Selection;
use aiflags_sidecar::fuzzing::{Edits, splice};
use aiflags_sidecar::fuzzing::{Readable, ScannedBody, make_readable};
use aiflags_sidecar::fuzzing::{RequestView, decide};
use aiflags_sidecar::fuzzing::{ResolvedFlag, ResolvedVariant};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

use crate::config;
use crate::json::{self, Tolerant};
use crate::select::{self, Expected, Variant};

/// The body limit the request targets read with.
pub const LIMIT: usize = 4 << 20;

/// Runs `body` through `make_readable` as `route` does: the whole body is
/// already held against the budget when it is decoded.
pub fn readable(
    body: &[u8],
    coding: Option<&str>,
    limit: usize,
    budget: &Arc<Budget>,
) -> Result<Readable, ProxyError> {
    let mut reservation = budget.reserve_none();
    assert!(
        reservation.resize(body.len()),
        "the read itself is within budget"
    );
    let mut headers = HeaderMap::new();
    if let Some(coding) = coding {
        let value = HeaderValue::from_str(coding).unwrap_or(HeaderValue::from_static("x-bad"));
        headers.insert(header::CONTENT_ENCODING, value);
    }
    make_readable(
        Bytes::copy_from_slice(body),
        &headers,
        limit,
        &mut reservation,
        budget,
    )
}

/// What the path made of a body, to compare across encodings of it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Opaque(&'static str),
    Scanned {
        model: Option<String>,
        /// Per operation and header set: the flag and variant applied.
        decisions: Vec<Option<(String, usize)>>,
    },
}

/// Checks the path's reading of `plain` — the body as the client meant it,
/// decoded by the reference decoders — against the oracles. `splices` also
/// checks every rewrite.
pub fn check(plain: &[u8], readable: &Readable, random: u32, splices: bool) -> Outcome {
    let oracle = json::parse_tolerant(plain);
    let object = oracle.as_ref().filter(|o| o.value.is_object());
    let body = match readable {
        Readable::Opaque { reason, .. } => {
            assert!(
                object.is_none(),
                "a body a tolerant reader takes for an object went through unread ({reason})"
            );
            return Outcome::Opaque(reason);
        }
        Readable::Scanned(body) => body,
    };
    assert_eq!(
        &body.bytes[..],
        json::strip_bom(plain),
        "the scanned bytes are the body without its mark"
    );
    if let Some(other) = oracle.as_ref().filter(|o| !o.value.is_object()) {
        panic!("scanned as an object: {}", other.value);
    }
    let model = body.model().map(|m| m.into_owned());
    if let Some(object) = object {
        let expected = object.value.get("model").and_then(Value::as_str);
        assert_eq!(model.as_deref(), expected, "the body's model");
    }
    let mut decisions = Vec::new();
    let mut spliced = HashSet::new();
    for operation in Operation::ALL {
        for headers in config::headers() {
            let Some(flag) = check_selection(operation, model.as_deref(), headers) else {
                decisions.push(None);
                continue;
            };
            let value = object.map(|o| &o.value);
            let chosen = check_decision(flag, headers, body, value, random);
            decisions.push(Some((flag.key.to_string(), chosen)));
            if !splices {
                continue;
            }
            for index in std::iter::once(chosen).chain(flag.chain.iter().copied()) {
                let Some(variant) = flag.variant(index) else {
                    panic!("{}: fallback variant {index} does not exist", flag.key);
                };
                for include_usage in [false, true] {
                    if spliced.insert((flag.key.clone(), index, include_usage)) {
                        check_splice(plain, object, body, flag, variant, include_usage);
                    }
                }
            }
        }
    }
    Outcome::Scanned { model, decisions }
}

/// The flag `route` applies, checked against the selection oracle.
fn check_selection(
    operation: Operation,
    model: Option<&str>,
    headers: &HeaderMap,
) -> Option<&'static ResolvedFlag> {
    let selected = config::flags().select(operation, model, headers);
    let expected = select::expected_flag(config::config(), operation, model, headers);
    match (selected, expected) {
        (Selection::UnknownFlag(name), Expected::Unknown(want)) if name == want => None,
        (Selection::None, Expected::Pass) => None,
        // `route` passes a body without a model through, named flag or not.
        (Selection::Selected(_), Expected::Pass) if model.is_none() => None,
        (Selection::Selected(flag), Expected::Flag(want)) if *flag.key == want.key => Some(flag),
        (selected, expected) => {
            let selected = match selected {
                Selection::Selected(flag) => format!("flag {}", flag.key),
                other => format!("{other:?}"),
            };
            let expected = match expected {
                Expected::Flag(flag) => format!("flag {}", flag.key),
                other => format!("{other:?}"),
            };
            panic!(
                "{operation:?} model {model:?} {headers:?}: selected {selected}, the spec says {expected}"
            )
        }
    }
}

/// The variant `decide` chooses, checked against the decision oracle.
fn check_decision(
    flag: &ResolvedFlag,
    headers: &HeaderMap,
    body: &ScannedBody,
    value: Option<&Value>,
    random: u32,
) -> usize {
    let view = RequestView { headers, body };
    let decision = decide(flag, &view, random);
    let Some(variant) = flag.variant(decision.variant) else {
        panic!(
            "{}: decided variant {} does not exist",
            flag.key, decision.variant
        );
    };
    let weight = flag.compiled.weights.get(decision.variant).copied();
    match select::expected_variant(&flag.compiled, headers, value) {
        Variant::Exactly(name) => assert_eq!(
            &*variant.name, name,
            "{}: {:?} (enabled: {})",
            flag.key, decision.reason, flag.compiled.enabled
        ),
        Variant::Sticky => {
            assert!(weight > Some(0), "{}: a variant without weight", flag.key);
            let again = decide(flag, &view, !random);
            assert_eq!(
                again.variant, decision.variant,
                "{}: sticky split",
                flag.key
            );
        }
        Variant::Split => assert!(weight > Some(0), "{}: a variant without weight", flag.key),
        Variant::Unknown => {}
    }
    decision.variant
}

/// One attempt's body: `splice` against RFC 7386 applied to the parsed body,
/// and every member the variant leaves alone carried byte for byte.
fn check_splice(
    plain: &[u8],
    object: Option<&Tolerant>,
    body: &ScannedBody,
    flag: &ResolvedFlag,
    variant: &ResolvedVariant,
    include_usage: bool,
) {
    let edits = Edits {
        model: &variant.model,
        params: flag.params(variant),
        include_usage,
    };
    let rope = match splice(&body.bytes, &body.scanned, &edits) {
        Ok(rope) => rope,
        Err(e) => panic!("splice failed: {e}"),
    };
    let out = rope.to_bytes();
    assert_eq!(rope.len(), out.len() as u64, "the rope's length");
    let Some(original) = object else {
        return;
    };
    let params = flag.params(variant).cloned().map(Value::Object);
    let mut expected = match &params {
        Some(patch) => json::merge_patch(Some(&original.value), patch),
        None => original.value.clone(),
    };
    if let Value::Object(members) = &mut expected {
        members.insert("model".into(), Value::from(&*variant.model));
    }
    if include_usage {
        let usage = json!({"stream_options": {"include_usage": true}});
        expected = json::merge_patch(Some(&expected), &usage);
    }
    let Some(sent) = json::parse_tolerant(&out) else {
        panic!(
            "the spliced body does not parse: {}",
            String::from_utf8_lossy(&out)
        );
    };
    let stripped = json::strip_bom(plain);
    let sent_value = sent.value;
    assert_eq!(sent_value, expected, "spliced body vs RFC 7386");
    assert_eq!(
        out.get(sent.end..),
        stripped.get(original.end..),
        "what followed the object"
    );
    if original.strict {
        assert!(
            serde_json::from_slice::<Value>(&out).is_ok(),
            "a strictly valid body spliced into an invalid one"
        );
    }
    let touched = |key: &str| {
        key == "model"
            || (include_usage && key == "stream_options")
            || flag.params(variant).is_some_and(|p| p.contains_key(key))
    };
    let before = untouched(stripped, &touched);
    let after = untouched(&out, &touched);
    assert_eq!(after.len(), before.len(), "untouched member names");
    for (key, was) in &before {
        let Some(now) = after.get(key) else {
            panic!("member {key:?} lost");
        };
        assert_eq!(now.len(), was.len(), "copies of member {key:?}");
        for ((raw_was, value_was), (raw_now, value_now)) in was.iter().zip(now) {
            assert_eq!(value_now, value_was, "member {key:?} changed its bytes");
            if !raw_was.contains(&b'\\') {
                assert_eq!(raw_now, raw_was, "member name {key:?} changed its bytes");
            }
        }
    }
}

/// Untouched members by name: (raw name, raw value) in order.
type Members<'b> = BTreeMap<String, Vec<(&'b [u8], &'b [u8])>>;

fn untouched<'b>(json_text: &'b [u8], touched: &dyn Fn(&str) -> bool) -> Members<'b> {
    let Some((members, _)) = json::members(json_text) else {
        panic!(
            "members of an object serde_json read: {}",
            String::from_utf8_lossy(json_text)
        );
    };
    let mut out = Members::new();
    for member in members {
        let raw_key = &json_text[member.key];
        let Some(key) = json::string_text(raw_key) else {
            panic!("member name {}", String::from_utf8_lossy(raw_key));
        };
        if !touched(&key) {
            out.entry(key)
                .or_default()
                .push((raw_key, &json_text[member.value]));
        }
    }
    out
}
