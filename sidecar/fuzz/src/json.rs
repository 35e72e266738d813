//! JSON oracles for request bodies: what a client's body says (RFC 8259,
//! read by serde_json, with the two tolerances issue 7 asks for), where its
//! top-level members are (a structural splitter of its own), and what a
//! variant's merge patch makes of it (RFC 7386, section 2, as written).

use std::borrow::Cow;
use std::ops::Range;

use serde_json::{Map, Value, json};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `body` without a leading UTF-8 byte order mark.
pub fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(BOM).unwrap_or(body)
}

/// `body` with every unpaired UTF-16 surrogate escape inside a string
/// replaced by `\ufffd`, the same six bytes, so offsets stay put. Tracks
/// string boundaries itself: escapes only mean something inside strings.
pub fn replace_lone_surrogates(body: &[u8]) -> Cow<'_, [u8]> {
    let unit = |at: usize| -> Option<u16> {
        let escape = body.get(at..at + 6)?;
        if escape.get(..2)? != b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(escape.get(2..)?).ok()?, 16).ok()
    };
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        match (in_string, b) {
            (false, b'"') => in_string = true,
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                let step = match unit(i) {
                    Some(0xD800..=0xDBFF) if matches!(unit(i + 6), Some(0xDC00..=0xDFFF)) => 12,
                    Some(0xD800..=0xDFFF) => {
                        let copy = out.get_or_insert_with(|| body.to_vec());
                        if let Some(slot) = copy.get_mut(i..i + 6) {
                            slot.copy_from_slice(b"\\ufffd");
                        }
                        6
                    }
                    Some(_) => 6,
                    None => 2,
                };
                i += step;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    match out {
        Some(copy) => Cow::Owned(copy),
        None => Cow::Borrowed(body),
    }
}

/// A body as a lenient reader must see it: a byte order mark dropped, lone
/// surrogates read as U+FFFD, and the first JSON value taken whatever
/// follows it.
#[derive(Debug)]
pub struct Tolerant {
    pub value: Value,
    /// Offset in the body without its mark just past the first value.
    pub end: usize,
    /// serde_json reads the body as it came, with nothing forgiven.
    pub strict: bool,
}

pub fn parse_tolerant(body: &[u8]) -> Option<Tolerant> {
    let strict = serde_json::from_slice::<Value>(body).is_ok();
    let plain = strip_bom(body);
    let readable = replace_lone_surrogates(plain);
    let mut stream = serde_json::Deserializer::from_slice(&readable).into_iter::<Value>();
    let value = stream.next()?.ok()?;
    Some(Tolerant {
        value,
        end: stream.byte_offset(),
        strict,
    })
}

/// The text of a raw JSON string, lone surrogates read as U+FFFD.
pub fn string_text(raw: &[u8]) -> Option<String> {
    serde_json::from_slice(&replace_lone_surrogates(raw)).ok()
}

/// RFC 7386 section 2, `MergePatch(Target, Patch)`, line by line.
pub fn merge_patch(target: Option<&Value>, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut target: Map<String, Value> = match target {
        Some(Value::Object(target)) => target.clone(),
        _ => Map::new(),
    };
    for (name, value) in patch {
        if value.is_null() {
            target.remove(name);
        } else {
            let merged = merge_patch(target.get(name), value);
            target.insert(name.clone(), merged);
        }
    }
    Value::Object(target)
}

/// One `"name": value` member of a top-level object, as byte ranges.
#[derive(Clone, Debug)]
pub struct Member {
    /// The name with its quotes.
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// The members of the object at the start of `json` (after whitespace) and
/// the offset past its closing brace. Structural only: it finds where things
/// are in text serde_json has already accepted, and gives up (`None`) on
/// anything else rather than guessing.
pub fn members(json: &[u8]) -> Option<(Vec<Member>, usize)> {
    let mut out = Vec::new();
    let mut i = skip_ws(json, 0);
    if *json.get(i)? != b'{' {
        return None;
    }
    i = skip_ws(json, i + 1);
    if *json.get(i)? == b'}' {
        return Some((out, i + 1));
    }
    loop {
        i = skip_ws(json, i);
        if *json.get(i)? != b'"' {
            return None;
        }
        let key_end = string_end(json, i)?;
        let colon = skip_ws(json, key_end);
        if *json.get(colon)? != b':' {
            return None;
        }
        let value_start = skip_ws(json, colon + 1);
        let value_end = value_end(json, value_start)?;
        out.push(Member {
            key: i..key_end,
            value: value_start..value_end,
        });
        i = skip_ws(json, value_end);
        match *json.get(i)? {
            b',' => i += 1,
            b'}' => return Some((out, i + 1)),
            _ => return None,
        }
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while matches!(json.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `json[start]` is a quote: the offset past the closing one.
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *json.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match *json.get(start)? {
        b'"' => string_end(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match *json.get(i)? {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while json
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// The oracles above against fixed cases, including RFC 7386's Appendix A.
pub fn self_check() {
    let appendix_a = [
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
    for (target, patch, result) in appendix_a {
        assert_eq!(merge_patch(Some(&target), &patch), result, "RFC 7386 A");
    }

    let lone = br#"{"m\ud800":"x\udc00\ud83d\ude00","\\ud800":"\ud83d"}"#;
    assert_eq!(
        &*replace_lone_surrogates(lone),
        br#"{"m\ufffd":"x\ufffd\ud83d\ude00","\\ud800":"\ufffd"}"#
    );
    let parsed = parse_tolerant(b"\xEF\xBB\xBF {\"model\":\"a\\ud83d\"} trailing");
    let parsed = parsed.map(|p| (p.value, p.end, p.strict));
    assert_eq!(parsed, Some((json!({"model":"a\u{FFFD}"}), 20, false)));

    let body = br#" { "a" : [1, "]}", {"b": "\"}"}] , "\u0063":-1.5e3,"d":{}} x"#;
    let (found, end) = members(body).unwrap_or_default();
    let text = |r: &Range<usize>| String::from_utf8_lossy(&body[r.clone()]).into_owned();
    let found: Vec<_> = found
        .iter()
        .map(|m| (text(&m.key), text(&m.value)))
        .collect();
    assert_eq!(
        found,
        [
            (r#""a""#.into(), r#"[1, "]}", {"b": "\"}"}]"#.into()),
            (r#""\u0063""#.into(), "-1.5e3".into()),
            (r#""d""#.into(), "{}".into()),
        ]
    );
    assert_eq!(&body[end..], b" x");
    assert_eq!(
        string_text(br#""\u0063\ud800""#).as_deref(),
        Some("c\u{FFFD}")
    );
}
