//! The whole-answer judge against an oracle written over `serde_json::Value`:
//! documents built from the judge's own field names, with values of every
//! type, duplicate members, escaped names and strings, and random
//! whitespace, get the same verdict and usage from both — so the skimming
//! judge reads exactly what a parsed answer says.

use aiflags_api::Operation;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::super::{Facts, Verdict, blank, read_answer};
use crate::usage::usage_from_response;

/// A JSON document that may name a member twice.
#[derive(Clone, Debug)]
enum Doc {
    Null,
    Bool(bool),
    /// The number's text.
    Number(&'static str),
    /// The string's text between the quotes, escapes written out.
    Str(&'static str),
    Array(Vec<Doc>),
    Object(Vec<(&'static str, Doc)>),
}

const NAMES: &[&str] = &[
    "choices",
    "message",
    "content",
    "text",
    "finish_reason",
    "tool_calls",
    "function_call",
    "refusal",
    "audio",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "completion_tokens_details",
    "reasoning_tokens",
    "input_tokens",
    "output_tokens",
    "input_tokens_details",
    "output_tokens_details",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "type",
    "output",
    "incomplete_details",
    "reason",
    "data",
    "embedding",
    "stop_reason",
    "id",
    r"\u0075sage",
    r"\u0063ontent",
    r"choice\u0073",
];

const STRINGS: &[&str] = &[
    "",
    "x",
    " ",
    r"\u0000",
    "content_filter",
    r"content\u005ffilter",
    "message",
    "reasoning",
    "text",
    "thinking",
    "redacted_thinking",
    "refusal",
    "tool_use",
    r#"\"quoted\""#,
];

const NUMBERS: &[&str] = &[
    "0",
    "7",
    "30",
    "-0",
    "-3",
    "1.5",
    "2e1",
    "1E+2",
    "18446744073709551615",
    "18446744073709551616",
];

fn doc() -> impl Strategy<Value = Doc> {
    let leaf = prop_oneof![
        Just(Doc::Null),
        any::<bool>().prop_map(Doc::Bool),
        prop::sample::select(NUMBERS).prop_map(Doc::Number),
        prop::sample::select(STRINGS).prop_map(Doc::Str),
    ];
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            1 => prop::collection::vec(inner.clone(), 0..3).prop_map(Doc::Array),
            3 => prop::collection::vec((prop::sample::select(NAMES), inner), 0..4)
                .prop_map(Doc::Object),
        ]
    })
}

/// What a field of an answer holds, to build documents that mostly follow
/// it — each value may still be replaced by any other, and each field be
/// absent, present or named twice.
#[derive(Clone, Copy)]
enum Schema {
    Any,
    Count,
    Word(&'static [&'static str]),
    List(&'static Schema),
    Object(&'static [(&'static str, Schema)]),
}

use Schema::{Any, Count, List, Object, Word};

const DETAILS: Schema = Object(&[("cached_tokens", Count), ("reasoning_tokens", Count)]);
const USAGE: Schema = Object(&[
    ("prompt_tokens", Count),
    ("completion_tokens", Count),
    ("prompt_tokens_details", DETAILS),
    ("completion_tokens_details", DETAILS),
    ("input_tokens", Count),
    ("output_tokens", Count),
    ("input_tokens_details", DETAILS),
    ("output_tokens_details", DETAILS),
    ("cache_read_input_tokens", Count),
    ("cache_creation_input_tokens", Count),
]);
const FINISH: Schema = Word(&["stop", "length", "content_filter", r"content\u005ffilter"]);
const MESSAGE: Schema = Object(&[
    ("role", Word(&["assistant"])),
    ("content", Any),
    ("tool_calls", Any),
    ("function_call", Any),
    ("refusal", Any),
    ("audio", Any),
]);
const CHOICE: Schema = Object(&[
    ("message", MESSAGE),
    ("text", Any),
    ("finish_reason", FINISH),
]);
const PART: Schema = Object(&[
    ("type", Word(&["output_text"])),
    ("text", Any),
    ("refusal", Any),
]);
const ITEM: Schema = Object(&[
    (
        "type",
        Word(&["message", "reasoning", "function_call", r"mess\u0061ge"]),
    ),
    ("content", List(&PART)),
]);
const EMBEDDING: Schema = Object(&[("embedding", Any)]);
const BLOCK: Schema = Object(&[
    (
        "type",
        Word(&[
            "text",
            "thinking",
            "redacted_thinking",
            "tool_use",
            r"te\u0078t",
        ]),
    ),
    ("text", Any),
]);
const ANSWER: Schema = Object(&[
    ("choices", List(&CHOICE)),
    ("output", List(&ITEM)),
    ("incomplete_details", Object(&[("reason", FINISH)])),
    ("data", List(&EMBEDDING)),
    ("content", List(&BLOCK)),
    (
        "stop_reason",
        Word(&["end_turn", "refusal", r"refus\u0061l"]),
    ),
    ("usage", USAGE),
    ("id", Any),
]);

fn small_doc() -> impl Strategy<Value = Doc> {
    let leaf = prop_oneof![
        Just(Doc::Null),
        any::<bool>().prop_map(Doc::Bool),
        prop::sample::select(NUMBERS).prop_map(Doc::Number),
        prop::sample::select(STRINGS).prop_map(Doc::Str),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..2).prop_map(Doc::Array),
            prop::collection::vec((prop::sample::select(NAMES), inner), 0..2).prop_map(Doc::Object),
        ]
    })
}

fn follow(schema: Schema) -> BoxedStrategy<Doc> {
    let exact = match schema {
        Any => small_doc().boxed(),
        Count => prop::sample::select(NUMBERS).prop_map(Doc::Number).boxed(),
        Word(words) => prop::sample::select(words).prop_map(Doc::Str).boxed(),
        List(item) => prop::collection::vec(follow(*item), 0..3)
            .prop_map(Doc::Array)
            .boxed(),
        Object(fields) => {
            let members: Vec<_> = fields
                .iter()
                .map(|&(name, schema)| {
                    prop::collection::vec(follow(schema).prop_map(move |d| (name, d)), 0..=2)
                })
                .collect();
            let noise = prop::collection::vec((prop::sample::select(NAMES), small_doc()), 0..2);
            (members, noise)
                .prop_map(|(members, noise)| members.into_iter().flatten().chain(noise).collect())
                .prop_shuffle()
                .prop_map(Doc::Object)
                .boxed()
        }
    };
    prop_oneof![12 => exact, 1 => small_doc()].boxed()
}

/// The whole answer: mostly of the answers' shapes, sometimes anything.
fn answer() -> impl Strategy<Value = Doc> {
    prop_oneof![8 => follow(ANSWER), 1 => doc()]
}

fn render(doc: &Doc, space: &mut impl Iterator<Item = bool>, out: &mut String) {
    fn gap(space: &mut impl Iterator<Item = bool>, out: &mut String) {
        if space.next().unwrap_or(false) {
            out.push_str(" \n");
        }
    }
    match doc {
        Doc::Null => out.push_str("null"),
        Doc::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Doc::Number(n) => out.push_str(n),
        Doc::Str(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Doc::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                gap(space, out);
                render(item, space, out);
            }
            gap(space, out);
            out.push(']');
        }
        Doc::Object(members) => {
            out.push('{');
            for (i, (name, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                gap(space, out);
                out.push('"');
                out.push_str(name);
                out.push_str("\":");
                gap(space, out);
                render(value, space, out);
            }
            gap(space, out);
            out.push('}');
        }
    }
}

/// `null` or absent: no items; an array of objects: its items; anything
/// else is not the answer's shape.
fn list(value: Option<&Value>) -> Option<Vec<&Map<String, Value>>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(Value::as_object).collect(),
        Some(_) => None,
    }
}

fn carries(value: Option<&Value>) -> bool {
    !blank(value)
}

fn is(value: Option<&Value>, text: &str) -> bool {
    value.and_then(Value::as_str) == Some(text)
}

/// The verdict by reading the parsed answer.
fn oracle(op: Operation, answer: &Value) -> Option<Verdict> {
    let answer = answer.as_object()?;
    let mut facts = Facts::default();
    match op {
        Operation::Chat | Operation::Completions => {
            for choice in list(answer.get("choices"))? {
                let message = match choice.get("message") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(m)) => Some(m),
                    Some(_) => return None,
                };
                facts.content |= if op == Operation::Completions {
                    carries(choice.get("text"))
                } else {
                    message.is_some_and(|m| {
                        ["content", "tool_calls", "function_call", "refusal", "audio"]
                            .iter()
                            .any(|f| carries(m.get(*f)))
                    })
                };
                facts.filtered |= is(choice.get("finish_reason"), "content_filter");
            }
        }
        Operation::Responses => {
            for item in list(answer.get("output"))? {
                match item.get("type").and_then(Value::as_str) {
                    Some("message") => {
                        for part in list(item.get("content"))? {
                            facts.content |=
                                carries(part.get("text")) || carries(part.get("refusal"));
                        }
                    }
                    Some("reasoning") => facts.reasoning = true,
                    _ => facts.content = true,
                }
            }
            facts.filtered = match answer.get("incomplete_details") {
                None | Some(Value::Null) => false,
                Some(Value::Object(d)) => is(d.get("reason"), "content_filter"),
                Some(_) => return None,
            };
        }
        Operation::Embeddings => {
            for item in list(answer.get("data"))? {
                facts.content |= carries(item.get("embedding"));
            }
        }
        Operation::Messages => {
            for block in list(answer.get("content"))? {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => facts.content |= carries(block.get("text")),
                    Some("thinking" | "redacted_thinking") => facts.reasoning = true,
                    _ => facts.content = true,
                }
            }
            facts.filtered = is(answer.get("stop_reason"), "refusal");
        }
    }
    Some(facts.verdict())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_judge_reads_what_a_parsed_answer_says(
        doc in answer(),
        spaces in prop::collection::vec(any::<bool>(), 64),
        op in prop::sample::select(Operation::ALL.to_vec()),
    ) {
        let mut text = String::new();
        render(&doc, &mut spaces.into_iter().cycle(), &mut text);
        // A document a `Value` cannot hold (a lone surrogate) has no oracle.
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            return Ok(());
        };
        let read = read_answer(op, text.as_bytes());
        let verdict = oracle(op, &value);
        prop_assert_eq!(read.verdict, verdict, "{}", text);
        if verdict.is_some() {
            prop_assert_eq!(read.usage, usage_from_response(op, &value), "{}", text);
        }
    }
}
