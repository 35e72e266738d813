use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn members(bytes: &[u8]) -> Vec<(String, String)> {
    let scanned = Scanned::new(bytes).unwrap();
    scanned
        .entries
        .iter()
        .map(|e| {
            (
                scanned.key(bytes, e).to_string(),
                String::from_utf8(bytes[e.value.clone()].to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn finds_top_level_members_and_their_raw_values() {
    let body = br#" { "model" : "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": 2 } "#;
    assert_eq!(
        members(body),
        vec![
            ("model".to_string(), "\"gpt-4o-mini\"".to_string()),
            (
                "messages".to_string(),
                r#"[{"role": "user", "content": "hi"}]"#.to_string()
            ),
            ("n".to_string(), "2".to_string()),
        ]
    );
    let scanned = Scanned::new(body).unwrap();
    assert_eq!(&body[scanned.end..], b" ");
}

#[test]
fn the_last_of_a_repeated_member_counts() {
    let body = br#"{"model": "a", "model": "b"}"#;
    let scanned = Scanned::new(body).unwrap();
    assert_eq!(scanned.get(body, "model"), Some("\"b\""));
}

#[test]
fn bytes_after_the_object_do_not_hide_it() {
    let body = br#"{"model": "gpt-4o-mini"}garbage"#;
    let scanned = Scanned::new(body).unwrap();
    assert_eq!(scanned.get(body, "model"), Some("\"gpt-4o-mini\""));
    assert_eq!(&body[scanned.end..], b"garbage");
}

#[test]
fn lone_surrogates_do_not_hide_the_model() {
    // What JavaScript's JSON.stringify writes for half an emoji, in a value…
    let body = br#"{"messages": [{"content": "cut \ud83d here"}], "model": "gpt-4o-mini"}"#;
    let scanned = Scanned::new(body).unwrap();
    assert_eq!(
        string_value(scanned.get(body, "model").unwrap()).as_deref(),
        Some("gpt-4o-mini")
    );
    // …in a member name…
    let body = br#"{"\udc00odd": 1, "model": "gpt-4o-mini"}"#;
    let scanned = Scanned::new(body).unwrap();
    assert_eq!(scanned.get(body, "model"), Some("\"gpt-4o-mini\""));
    assert_eq!(scanned.key(body, &scanned.entries[0]), "\u{fffd}odd");
    // …and in the model itself, where a catch-all flag still sees a model.
    assert_eq!(
        string_value(r#""gpt\ud83d""#).as_deref(),
        Some("gpt\u{fffd}")
    );
    assert_eq!(string_value(r#""a\ud83d\ude00b""#).as_deref(), Some("a😀b"));
}

#[test]
fn escaped_names_and_values_are_decoded() {
    let body = br#"{"mod\u0065l": "g\u0070t", "x": 1}"#;
    let scanned = Scanned::new(body).unwrap();
    assert_eq!(
        string_value(scanned.get(body, "model").unwrap()).as_deref(),
        Some("gpt")
    );
}

#[test]
fn nested_lookups_descend_without_building() {
    let body = json!({"metadata": {"user_id": 42, "deep": {"a": "b"}}, "user": "u"}).to_string();
    let scanned = Scanned::new(body.as_bytes()).unwrap();
    assert_eq!(
        lookup(body.as_bytes(), &scanned, &["metadata", "user_id"]),
        Some("42")
    );
    assert_eq!(
        lookup(body.as_bytes(), &scanned, &["metadata", "deep", "a"]),
        Some("\"b\"")
    );
    assert_eq!(lookup(body.as_bytes(), &scanned, &["user", "x"]), None);
    assert_eq!(lookup(body.as_bytes(), &scanned, &["missing"]), None);
    assert_eq!(scalar_text("3.5").as_deref(), Some("3.5"));
    assert_eq!(scalar_text("true").as_deref(), Some("true"));
    assert_eq!(scalar_text("null"), None);
    assert_eq!(scalar_text("[1]"), None);
}

#[test]
fn what_is_not_an_object_says_why() {
    assert_eq!(Scanned::new(b"[1, 2]").unwrap_err(), ScanError::NotObject);
    assert_eq!(Scanned::new(b"\"text\"").unwrap_err(), ScanError::NotObject);
    assert_eq!(
        Scanned::new(b"{\"model\": ").unwrap_err(),
        ScanError::NotJson
    );
    assert_eq!(Scanned::new(b"model=gpt").unwrap_err(), ScanError::NotJson);
    assert_eq!(Scanned::new(b"").unwrap_err(), ScanError::NotJson);
    assert_eq!(
        Scanned::new(b"{\"a\": \"\xff\"}").unwrap_err(),
        ScanError::NotJson
    );
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn members_are_those_a_full_parse_sees(
        fields in prop::collection::btree_map("\\PC{0,6}", json_value(), 0..6),
        pretty in any::<bool>()
    ) {
        let value = Value::Object(fields.into_iter().collect());
        let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
        let bytes = text.as_bytes();
        let scanned = Scanned::new(bytes).unwrap();
        prop_assert_eq!(scanned.entries.len(), value.as_object().unwrap().len());
        for entry in &scanned.entries {
            let key = scanned.key(bytes, entry);
            let raw: Value = serde_json::from_slice(&bytes[entry.value.clone()]).unwrap();
            prop_assert_eq!(Some(&raw), value.get(key));
        }
        prop_assert_eq!(scanned.end, bytes.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(scanned) = Scanned::new(&bytes) {
            for entry in &scanned.entries {
                let _ = scanned.key(&bytes, entry);
            }
            let _ = scanned.get(&bytes, "model").map(string_value);
        }
    }
}
