use proptest::prelude::*;
use serde_json::json;

use super::*;

#[test]
fn recognises_the_api_paths() {
    let cases = [
        ("/v1/chat/completions", Some(Operation::Chat)),
        ("/v1/chat/completions/", Some(Operation::Chat)),
        ("/v1/chat/completions?api-version=1", Some(Operation::Chat)),
        ("/v1/responses", Some(Operation::Responses)),
        ("/v1/completions", Some(Operation::Completions)),
        ("/v1/embeddings#x", Some(Operation::Embeddings)),
        ("/v1/messages?beta=true", Some(Operation::Messages)),
        ("/v1/messages/count_tokens", None),
        ("/v1/responses/resp_123", None),
        ("/v1/models", None),
        ("/chat/completions", None),
        ("/v1/chat/completions//", None),
        ("/V1/chat/completions", None),
        ("", None),
        ("?", None),
    ];
    for (path, expected) in cases {
        assert_eq!(operation_for_path(path), expected, "{path}");
    }
}

/// RFC 7386, Appendix A "Example Test Cases", in order.
#[test]
fn merge_patch_passes_rfc7386_appendix_a() {
    let cases = [
        (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
        (json!({"a":"b"}), json!({"a":null}), json!({})),
        (
            json!({"a":"b","b":"c"}),
            json!({"a":null}),
            json!({"b":"c"}),
        ),
        (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
        (
            json!({"a":{"b":"c"}}),
            json!({"a":{"b":"d","c":null}}),
            json!({"a":{"b":"d"}}),
        ),
        (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a":"b"}), json!(["c"]), json!(["c"])),
        (json!({"a":"foo"}), json!(null), json!(null)),
        (json!({"a":"foo"}), json!("bar"), json!("bar")),
        (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
        (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
        (
            json!({}),
            json!({"a":{"bb":{"ccc":null}}}),
            json!({"a":{"bb":{}}}),
        ),
    ];
    for (mut target, patch, expected) in cases {
        merge_patch(&mut target, &patch);
        assert_eq!(target, expected, "patch {patch}");
    }
}

/// The worked example of RFC 7386 section 3.
#[test]
fn merge_patch_passes_rfc7386_section_3_example() {
    let mut target = json!({
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged"
    });
    let patch = json!({
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": null},
        "tags": ["example"]
    });
    merge_patch(&mut target, &patch);
    assert_eq!(
        target,
        json!({
            "title": "Hello!",
            "author": {"givenName": "John"},
            "tags": ["example"],
            "content": "This will be unchanged",
            "phoneNumber": "+01-123-456-7890"
        })
    );
}

fn variant(model: &str, params: Option<Value>) -> CompiledVariant {
    CompiledVariant {
        name: "candidate".into(),
        model: model.into(),
        params,
        provider: None,
        pricing: None,
    }
}

#[test]
fn apply_variant_sets_model_then_params() {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "héllo"}],
        "temperature": 1.0,
        "top_p": 0.5
    });
    let v = variant(
        "gpt-4.1-mini",
        Some(json!({"temperature": 0.2, "top_p": null, "metadata": {"v": "c"}})),
    );
    apply_variant(&mut body, &v);
    assert_eq!(
        body,
        json!({
            "model": "gpt-4.1-mini",
            "messages": [{"role": "user", "content": "héllo"}],
            "temperature": 0.2,
            "metadata": {"v": "c"}
        })
    );
}

#[test]
fn apply_variant_adds_a_missing_model_and_ignores_non_objects() {
    let mut body = json!({"input": "x"});
    apply_variant(&mut body, &variant("m", None));
    assert_eq!(body, json!({"input": "x", "model": "m"}));
    let mut array = json!([1, 2]);
    apply_variant(&mut array, &variant("m", Some(json!({"a": 1}))));
    assert_eq!(array, json!([1, 2]));
}

#[test]
fn streaming_needs_a_literal_true() {
    assert!(is_streaming(&json!({"stream": true})));
    assert!(!is_streaming(&json!({"stream": "true"})));
    assert!(!is_streaming(&json!({"stream": false})));
    assert!(!is_streaming(&json!({})));
    assert!(!is_streaming(&json!("stream")));
}

#[test]
fn usage_is_requested_for_streamed_chat_and_completions_only() {
    for op in [Operation::Chat, Operation::Completions] {
        let mut body = json!({"model": "m", "stream": true});
        assert!(!request_wants_usage_stream(op, &body));
        assert!(ensure_stream_usage(op, &mut body));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert!(request_wants_usage_stream(op, &body));
        // Asking twice changes nothing and needs no stripping.
        assert!(!ensure_stream_usage(op, &mut body));
    }
    for op in [
        Operation::Responses,
        Operation::Messages,
        Operation::Embeddings,
    ] {
        let mut body = json!({"model": "m", "stream": true});
        assert!(!ensure_stream_usage(op, &mut body));
        assert_eq!(body, json!({"model": "m", "stream": true}));
    }
    let mut unstreamed = json!({"model": "m"});
    assert!(!ensure_stream_usage(Operation::Chat, &mut unstreamed));
    assert_eq!(unstreamed, json!({"model": "m"}));
}

#[test]
fn usage_request_keeps_other_stream_options() {
    let mut body = json!({"stream": true, "stream_options": {"include_usage": false, "x": 1}});
    assert!(ensure_stream_usage(Operation::Chat, &mut body));
    assert_eq!(
        body["stream_options"],
        json!({"include_usage": true, "x": 1})
    );
    let mut null_options = json!({"stream": true, "stream_options": null});
    assert!(ensure_stream_usage(Operation::Chat, &mut null_options));
    let mut bad = json!({"stream": true, "stream_options": "yes"});
    assert!(!ensure_stream_usage(Operation::Chat, &mut bad));
    assert_eq!(bad["stream_options"], json!("yes"));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #[test]
    fn merge_patch_is_idempotent(target in json_value(), patch in json_value()) {
        let mut once = target.clone();
        merge_patch(&mut once, &patch);
        let mut twice = once.clone();
        merge_patch(&mut twice, &patch);
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn merge_patch_onto_null_yields_the_patch_without_nulls(patch in json_value()) {
        let mut target = Value::Null;
        merge_patch(&mut target, &patch);
        prop_assert_eq!(target, without_nulls(&patch));
    }

    #[test]
    fn operation_for_path_never_panics(path in "\\PC{0,40}") {
        let _ = operation_for_path(&path);
    }
}
