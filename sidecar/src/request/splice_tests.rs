use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::request::scan::Scanned;

/// What the rewrite means, on a parsed body: the oracle splicing must match.
fn expected(body: &Value, edits: &Edits<'_>) -> Value {
    let mut out = body.clone();
    if let Value::Object(fields) = &mut out {
        fields.insert("model".into(), Value::from(edits.model));
    }
    if let Some(params) = edits.params {
        merge_patch(&mut out, &Value::Object(params.clone()));
    }
    if edits.include_usage {
        merge_patch(
            &mut out,
            &json!({"stream_options": {"include_usage": true}}),
        );
    }
    out
}

fn spliced(text: &str, edits: &Edits<'_>) -> Bytes {
    let bytes = Bytes::copy_from_slice(text.as_bytes());
    let scanned = Scanned::new(&bytes).unwrap();
    splice(&bytes, &scanned, edits).unwrap().to_bytes()
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[test]
fn sets_the_model_merges_params_and_asks_for_usage() {
    let params = object(
        json!({"temperature": 0.2, "metadata": {"tier": null, "team": "x"}, "user": null, "extra": {"a": null, "b": 1}}),
    );
    let edits = Edits {
        model: "gpt-4.1-mini",
        params: Some(&params),
        include_usage: true,
    };
    let body = json!({"model": "gpt-4o-mini", "user": "u1", "metadata": {"tier": "gold", "keep": 1}, "stream": true, "stream_options": {"include_obfuscation": false}});
    let out: Value = serde_json::from_slice(&spliced(&body.to_string(), &edits)).unwrap();
    assert_eq!(
        out,
        json!({"model": "gpt-4.1-mini", "metadata": {"keep": 1, "team": "x"}, "stream": true, "temperature": 0.2,
               "stream_options": {"include_obfuscation": false, "include_usage": true}, "extra": {"b": 1}})
    );
}

#[test]
fn the_prompt_travels_as_the_very_bytes_the_client_sent() {
    // Escapes, non-ASCII and odd spacing would all change in a re-serialisation.
    let prompt = format!(
        r#"[{{"role":"user","content":"caf\u00e9 — 日本 {}  \ud83d"}}]"#,
        "x".repeat(4096)
    );
    let text = format!(r#"{{ "messages" :{prompt},"model":"gpt-4o-mini" }}"#);
    let edits = Edits {
        model: "gpt-4.1",
        params: None,
        include_usage: false,
    };
    let out = spliced(&text, &edits);
    let out_text = String::from_utf8(out.to_vec()).unwrap();
    assert!(out_text.contains(&prompt), "{out_text}");
    assert!(out_text.contains(r#""model":"gpt-4.1""#));
}

#[test]
fn an_object_patch_merges_into_what_the_client_sent_byte_for_byte() {
    // serde_json would refuse to build this member (a lone surrogate, a
    // number out of range); merging by splicing keeps all of it.
    let params = object(json!({"metadata": {"killed": true, "tier": null}}));
    let edits = Edits {
        model: "m",
        params: Some(&params),
        include_usage: false,
    };
    let text = r#"{"model":"gpt-4o","metadata":{"note":"\udc00","big":1e400,"tier":"gold","user_id":"u"}}"#;
    let out = spliced(text, &edits);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"model":"m","metadata":{"note":"\udc00","big":1e400,"user_id":"u","killed":true}}"#
    );
}

#[test]
fn every_copy_of_a_repeated_member_is_rewritten() {
    let edits = Edits {
        model: "new",
        params: None,
        include_usage: false,
    };
    let out = spliced(r#"{"model":"a","x":1,"model":"b"}"#, &edits);
    assert_eq!(&out[..], br#"{"model":"new","x":1,"model":"new"}"#);
}

#[test]
fn trailing_bytes_and_a_missing_model_are_kept_and_added() {
    let edits = Edits {
        model: "m",
        params: None,
        include_usage: false,
    };
    assert_eq!(
        &spliced(r#"{"a":1} tail"#, &edits)[..],
        br#"{"a":1,"model":"m"} tail"#
    );
    assert_eq!(&spliced("{}", &edits)[..], br#"{"model":"m"}"#);
}

#[test]
fn large_values_stay_slices_of_the_clients_buffer() {
    let big = "y".repeat(100_000);
    let text = json!({"model": "a", "input": big}).to_string();
    let bytes = Bytes::copy_from_slice(text.as_bytes());
    let scanned = Scanned::new(&bytes).unwrap();
    let edits = Edits {
        model: "b",
        params: None,
        include_usage: false,
    };
    let rope = splice(&bytes, &scanned, &edits).unwrap();
    assert_eq!(rope.len() as usize, text.len());
    let mut body = rope;
    let mut shared = false;
    while let Some(frame) = futures::executor::block_on(http_body_util::BodyExt::frame(&mut body)) {
        let chunk = frame.unwrap().into_data().unwrap();
        let inside = chunk.as_ptr() >= bytes.as_ptr()
            && chunk.as_ptr() < bytes.as_ptr().wrapping_add(bytes.len());
        shared |= chunk.len() >= 100_000 && inside;
    }
    assert!(shared, "the 100 KB value was copied instead of sliced");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 20, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("model".to_string()),
        Just("stream_options".to_string()),
        "[a-h]"
    ]
}

proptest! {
    #[test]
    fn splicing_means_what_a_merge_patch_on_the_parsed_body_means(
        // Up to nine patched keys the body also has: past the few the
        // splice keeps on the stack.
        body in prop::collection::btree_map(key(), json_value(), 0..11),
        params in prop::collection::btree_map("[a-i]", json_value(), 0..9),
        model in "[a-z0-9.-]{1,12}",
        include_usage in any::<bool>(),
        pretty in any::<bool>(),
    ) {
        let body = Value::Object(body.into_iter().collect());
        let params = object(Value::Object(params.into_iter().collect()));
        let edits = Edits { model: &model, params: Some(&params), include_usage };
        let text = if pretty { serde_json::to_string_pretty(&body).unwrap() } else { body.to_string() };
        let out = spliced(&text, &edits);
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        let want = expected(&body, &edits);
        // Each member once: a member written twice parses as its last copy.
        let members = Scanned::new(&out).unwrap().entries.len();
        prop_assert_eq!(Some(members), want.as_object().map(Map::len));
        prop_assert_eq!(parsed, want);
    }
}
