//! Property tests: arbitrary answers, written whole and streamed in every
//! protocol's shape, get the verdict an independent oracle gives the answer
//! itself — and a stream is "opened" exactly from its first event that
//! carries something the client would see.

use aiflags_api::Operation;
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use self::shapes::{streamed, whole, with_noise};
use super::super::{Verdict, read_answer};
use crate::sse::StreamFilter;

mod shapes;

/// One part of an answer.
#[derive(Clone, Debug)]
enum Piece {
    /// Possibly empty: an empty text is no content.
    Text(String),
    ToolCall {
        name: String,
        arguments: String,
    },
    Refusal(String),
    Reasoning(String),
}

impl Piece {
    fn is_content(&self) -> bool {
        match self {
            Piece::Text(t) | Piece::Refusal(t) => !t.is_empty(),
            Piece::ToolCall { .. } => true,
            Piece::Reasoning(_) => false,
        }
    }

    fn opens(&self) -> bool {
        match self {
            Piece::Reasoning(t) => !t.is_empty(),
            other => other.is_content(),
        }
    }
}

#[derive(Clone, Debug)]
struct Answer {
    op: Operation,
    /// Chat and completions may have several choices; others have one.
    choices: Vec<Vec<Piece>>,
    filtered: bool,
    /// Fields the judge must ignore, at the top level.
    noise: Map<String, Value>,
}

impl Answer {
    /// What the answer is, by definition.
    fn oracle(&self) -> Verdict {
        if self.filtered {
            Verdict::ContentFilter
        } else if self.choices.iter().flatten().any(Piece::is_content) {
            Verdict::Content
        } else {
            Verdict::Empty
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-zé 🎉\"\\\\\n]{1,12}"]
}

fn piece(op: Operation) -> BoxedStrategy<Piece> {
    let text_piece = text().prop_map(Piece::Text);
    let tool = ("[a-z_]{1,8}", "\\{(\"[a-z]{1,3}\": [0-9]{1,3})?\\}")
        .prop_map(|(name, arguments)| Piece::ToolCall { name, arguments });
    let refusal = text().prop_map(Piece::Refusal);
    let reasoning = text().prop_map(Piece::Reasoning);
    match op {
        Operation::Completions => text_piece.boxed(),
        Operation::Messages => prop_oneof![3 => text_piece, 1 => tool, 1 => reasoning].boxed(),
        _ => prop_oneof![3 => text_piece, 1 => tool, 1 => refusal, 1 => reasoning].boxed(),
    }
}

fn noise() -> impl Strategy<Value = Map<String, Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("content|text|choices|delta|x", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let keys = "id|object|model|created|metadata|system_fingerprint|service_tier|x_extra";
    prop::collection::btree_map(keys, value, 0..4).prop_map(|m| m.into_iter().collect())
}

fn answer(op: Operation) -> impl Strategy<Value = Answer> {
    let choices = if matches!(op, Operation::Chat | Operation::Completions) {
        1..3usize
    } else {
        1..2usize
    };
    (
        prop::collection::vec(prop::collection::vec(piece(op), 0..4), choices),
        any::<bool>(),
        noise(),
    )
        .prop_map(move |(choices, filtered, noise)| Answer {
            op,
            choices,
            filtered,
            noise,
        })
}

fn any_answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        answer(Operation::Chat),
        answer(Operation::Completions),
        answer(Operation::Responses),
        answer(Operation::Messages),
    ]
}

/// Bytes cut at the given fractions of their length.
fn split(bytes: &[u8], cuts: &[f64]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|f| (f * bytes.len() as f64) as usize)
        .collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for end in at.into_iter().chain([bytes.len()]) {
        let end = end.clamp(start, bytes.len());
        out.push(Bytes::copy_from_slice(&bytes[start..end]));
        start = end;
    }
    out
}

proptest! {
    #[test]
    fn whole_answers_get_the_oracles_verdict(a in any_answer()) {
        let body = whole(&a).to_string();
        prop_assert_eq!(read_answer(a.op, body.as_bytes()).verdict, Some(a.oracle()), "{}", body);
    }

    #[test]
    fn embeddings_are_empty_without_a_vector(
        vectors in prop::collection::vec(prop_oneof![
            prop::collection::vec(-1.0f32..1.0, 0..4).prop_map(Value::from),
            "([A-Za-z0-9+/]{4}){0,3}".prop_map(Value::from),
        ], 0..4),
        noise in noise(),
    ) {
        let has_vector = vectors.iter().any(|v| match v {
            Value::Array(a) => !a.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => false,
        });
        let data: Vec<Value> = vectors.into_iter().enumerate()
            .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e})).collect();
        let body = with_noise(json!({"object": "list", "data": data}), &noise).to_string();
        let expected = if has_vector { Verdict::Content } else { Verdict::Empty };
        prop_assert_eq!(read_answer(Operation::Embeddings, body.as_bytes()).verdict, Some(expected));
    }

    #[test]
    fn streamed_answers_get_the_same_verdict_wherever_the_chunks_break(
        a in any_answer(),
        cuts in prop::collection::vec(0.0f64..1.0, 0..6),
        strip in any::<bool>(),
    ) {
        let events = streamed(&a);
        let bytes: String = events.iter().map(|(e, _)| e.as_str()).collect();
        let mut filter = StreamFilter::new(a.op, strip);
        for chunk in split(bytes.as_bytes(), &cuts) {
            filter.push(chunk);
        }
        filter.finish();
        prop_assert!(filter.saw_done());
        prop_assert_eq!(filter.judge().verdict(true), Some(a.oracle()));
        let opens = a.choices.iter().flatten().any(Piece::opens);
        prop_assert_eq!(filter.judge().opened(), opens);
    }

    #[test]
    fn a_stream_opens_at_its_first_event_that_shows_something(a in any_answer()) {
        let mut filter = StreamFilter::new(a.op, false);
        for (event, first_to_show) in streamed(&a) {
            let before = filter.judge().opened();
            filter.push(Bytes::from(event));
            if first_to_show {
                prop_assert!(!before && filter.judge().opened());
            } else {
                prop_assert_eq!(before, filter.judge().opened());
            }
        }
    }

    #[test]
    fn any_bytes_are_read_without_panicking(
        body in prop::collection::vec(any::<u8>(), 0..256),
        op in prop::sample::select(Operation::ALL.to_vec()),
    ) {
        let _ = read_answer(op, &body);
    }
}
