//! Judging an answer before it is trusted: did the upstream say anything,
//! and did its content filter let it?
//!
//! A `200` can carry nothing — no text, no tool call, no refusal, no vector —
//! or an answer the provider's filter stopped. Each is a [`Verdict`]. Whole
//! answers are read by [`whole`] straight from their bytes in one pass that
//! builds nothing; streams event by event by [`events`], whose
//! [`StreamJudge`] also says when a held-back stream first carries something
//! the client would see. Whether a bad verdict fails the attempt is the flag's
//! `fallback.on` call (`empty`, `contentFilter`); every verdict is counted.

pub(crate) mod events;
pub(crate) mod whole;

use aiflags_api::{Failure, Operation};
use serde_json::Value;

pub use self::whole::read_answer;

/// What an answer amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Text, a tool call, a refusal (or, for embeddings, a vector).
    Content,
    /// Nothing of the above.
    Empty,
    /// The provider's content filter stopped it, whatever came before.
    ContentFilter,
}

impl Verdict {
    /// The `verdict` label of `aiflags_answers_total`, also the attempt
    /// outcome and fallback reason of a bad answer.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Verdict::Content => "content",
            Verdict::Empty => "empty",
            Verdict::ContentFilter => "content_filter",
        }
    }

    /// The failure `fallback.on` may name, for a bad answer.
    pub(crate) fn failure(self) -> Option<Failure> {
        match self {
            Verdict::Content => None,
            Verdict::Empty => Some(Failure::Empty),
            Verdict::ContentFilter => Some(Failure::ContentFilter),
        }
    }
}

/// What the parts of an answer read so far say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Text, a tool call, a refusal, audio, a vector.
    pub content: bool,
    /// Reasoning a client may show (thinking, reasoning summaries): not an
    /// answer, but a stream that carries it is no longer silent.
    pub reasoning: bool,
    /// `finish_reason: content_filter`, `stop_reason: refusal`,
    /// `incomplete_details.reason: content_filter`.
    pub filtered: bool,
}

impl Facts {
    fn add(&mut self, other: Facts) {
        self.content |= other.content;
        self.reasoning |= other.reasoning;
        self.filtered |= other.filtered;
    }

    /// The verdict of a complete answer with these facts.
    pub(crate) fn verdict(self) -> Verdict {
        if self.filtered {
            Verdict::ContentFilter
        } else if self.content {
            Verdict::Content
        } else {
            Verdict::Empty
        }
    }
}

/// A stream's answer as its events arrive.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StreamJudge {
    facts: Facts,
}

impl StreamJudge {
    /// Reads one parsed event: `kind` is its `type` (or SSE event name).
    pub(crate) fn observe(&mut self, op: Operation, kind: Option<&str>, data: &Value) {
        self.facts.add(events::read_event(op, kind, data));
    }

    /// Something the client would show has come: content or reasoning.
    pub(crate) fn opened(&self) -> bool {
        self.facts.content || self.facts.reasoning
    }

    pub(crate) fn facts(&self) -> Facts {
        self.facts
    }

    /// The verdict so far: `ended` says the upstream ended the stream
    /// naturally. A stream cut (or left) before any content or filter has no
    /// verdict: nothing can be said about an answer that never finished.
    pub(crate) fn verdict(&self, ended: bool) -> Option<Verdict> {
        let facts = self.facts;
        (facts.filtered || facts.content || ended).then(|| facts.verdict())
    }
}

/// A JSON value that carries nothing: `null`, `false`, `""`, `[]`, `{}`.
fn blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Bool(true) | Value::Number(_)) => false,
    }
}

/// The same test on a raw JSON text, without parsing it.
fn blank_raw(raw: &[u8]) -> bool {
    let raw = raw.trim_ascii();
    match raw.first() {
        None => true,
        Some(b'"') => raw == b"\"\"",
        Some(b'[' | b'{') => raw
            .get(1..raw.len().saturating_sub(1))
            .is_none_or(|inner| inner.trim_ascii().is_empty()),
        Some(_) => raw == b"null" || raw == b"false",
    }
}

#[cfg(test)]
mod tests;
