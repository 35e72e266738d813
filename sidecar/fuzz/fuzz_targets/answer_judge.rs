//! A whole upstream answer through the sidecar's judge (`read_answer`, the
//! skimming reader that builds nothing), for each operation.
//!
//! Input: the first byte picks the operation, the rest is the body.
//!
//! Properties: nothing panics; and whenever the body is JSON a
//! `serde_json::Value` can hold, the verdict and the usage are the ones the
//! fuzz crate's own reading of the parsed answer gives (`answer`), whatever
//! the whitespace, escapes, member order, duplicates or nesting.

#![no_main]

use aiflags_api::Operation;
use aiflags_sidecar::fuzzing::{Verdict, read_answer};
use aiflags_sidecar_fuzz::answer::{self, Judged, Op, Tokens};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const OPS: [(Operation, Op); 5] = [
    (Operation::Chat, Op::Chat),
    (Operation::Completions, Op::Completions),
    (Operation::Responses, Op::Responses),
    (Operation::Embeddings, Op::Embeddings),
    (Operation::Messages, Op::Messages),
];

fuzz_target!(|data: &[u8]| {
    aiflags_sidecar_fuzz::self_check();
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (operation, op) = OPS[usize::from(pick) % OPS.len()];
    let read = read_answer(operation, body);
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let expected = answer::verdict(op, &value);
    let verdict = read.verdict.map(|v| match v {
        Verdict::Content => Judged::Content,
        Verdict::Empty => Judged::Empty,
        Verdict::ContentFilter => Judged::ContentFilter,
    });
    assert_eq!(verdict, expected, "verdict of {op:?} answer {value}");
    if expected.is_some() {
        let usage = read.usage.map(|u| Tokens {
            input: u.input_tokens,
            output: u.output_tokens,
            cached: u.cached_input_tokens,
            reasoning: u.reasoning_tokens,
        });
        assert_eq!(
            usage,
            answer::usage(op, &value),
            "usage of {op:?} answer {value}"
        );
    }
});
