//! A whole (non-streamed) answer, judged straight from its bytes.
//!
//! One pass of the [`Skim`] reader over the body the proxy already holds
//! reads each protocol's few fields and the usage; everything else is
//! skipped in place, and nothing is built. Shapes are checked as a typed
//! parse would: the answer must be an object, its lists arrays (or `null`)
//! of objects; a field the verdict only needs to see as present or blank may
//! hold any value. Of a field named twice, the last counts.

use aiflags_api::Operation;

use super::{Facts, Verdict, blank_raw};
use crate::skim::{Skim, string_text};
use crate::usage::{Usage, usage_from_bytes, usage_from_skim};

/// What a whole answer says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// `None` when the body is not an answer the proxy can read (not JSON,
    /// not an object, fields of unexpected types): it is not judged.
    pub verdict: Option<Verdict>,
    pub usage: Option<Usage>,
}

/// Judges a whole answer and reads its usage, in one pass over `body`.
pub fn read_answer(op: Operation, body: &[u8]) -> Answer {
    let mut skim = Skim::new(body);
    let read = match op {
        Operation::Chat | Operation::Completions => chat(&mut skim, op),
        Operation::Responses => responses(&mut skim),
        Operation::Embeddings => embeddings(&mut skim),
        Operation::Messages => messages(&mut skim),
    };
    match read.zip(skim.finish()) {
        Some(((facts, usage), ())) => Answer {
            verdict: Some(facts.verdict()),
            usage,
        },
        // Not an answer's shape: its usage may still be readable.
        None => Answer {
            verdict: None,
            usage: usage_from_bytes(op, body),
        },
    }
}

/// What a field of the answer read as: `None` when its value is not of the
/// shape the field has (the answer is then not judged, unless a later
/// member of the same name replaces it). Each reading function returns
/// `Option<Shape<_>>`: the outer `None` is a syntax error, which ends the
/// reading.
type Shape<T> = Option<T>;

/// A value that carries something: not `null`, `false`, `""`, `[]`, `{}`.
fn carries(skim: &mut Skim<'_>) -> Option<bool> {
    Some(!blank_raw(skim.value()?))
}

/// A value that is the string `text`.
fn is(skim: &mut Skim<'_>, text: &str) -> Option<bool> {
    Some(string_text(skim.value()?).as_deref() == Some(text.as_bytes()))
}

/// Skips a value of the wrong shape.
fn wrong<T>(skim: &mut Skim<'_>) -> Option<Shape<T>> {
    skim.value()?;
    Some(None)
}

/// `null`, or an array of objects each read by `item` into `facts`.
fn list<'a>(
    skim: &mut Skim<'a>,
    mut item: impl FnMut(&mut Skim<'a>, &mut Facts) -> Option<Shape<()>>,
) -> Option<Shape<Facts>> {
    let mut facts = Facts::default();
    if skim.null()? {
        return Some(Some(facts));
    }
    if !skim.at_array() {
        return wrong(skim);
    }
    let mut shaped = true;
    skim.array(|s| {
        if s.at_object() {
            shaped &= item(s, &mut facts)?.is_some();
        } else {
            s.value()?;
            shaped = false;
        }
        Some(())
    })?;
    Some(shaped.then_some(facts))
}

/// `null`, or an object whose members `field` reads.
fn nullable<'a, T: Default>(
    skim: &mut Skim<'a>,
    field: impl FnMut(&mut Skim<'a>, &[u8], &mut T) -> Option<()>,
) -> Option<Shape<T>> {
    if skim.null()? {
        return Some(Some(T::default()));
    }
    if !skim.at_object() {
        return wrong(skim);
    }
    fields(skim, field).map(Some)
}

/// An object (the caller has seen it is one), read member by member into a
/// `T`: `field` consumes each member's value.
fn fields<'a, T: Default>(
    skim: &mut Skim<'a>,
    mut field: impl FnMut(&mut Skim<'a>, &[u8], &mut T) -> Option<()>,
) -> Option<T> {
    let mut out = T::default();
    skim.object(|s, key| field(s, key.name(), &mut out))?;
    Some(out)
}

/// The top-level object: `field` reads the members it knows (returning
/// `Some(false)` for the others, which are skipped); `usage` is read here.
fn answer(
    skim: &mut Skim<'_>,
    op: Operation,
    mut field: impl FnMut(&mut Skim<'_>, &[u8]) -> Option<bool>,
) -> Option<Option<Usage>> {
    if !skim.at_object() {
        return None;
    }
    let mut usage = None;
    skim.object(|s, key| {
        if key.name() == b"usage" {
            usage = usage_from_skim(op, s)?;
        } else if !field(s, key.name())? {
            s.value()?;
        }
        Some(())
    })?;
    Some(usage)
}

/// What the answer's fields said, `None` when one had the wrong shape.
type Read = Option<(Facts, Option<Usage>)>;

/// Chat completions and legacy completions: `choices`.
fn chat(skim: &mut Skim<'_>, op: Operation) -> Read {
    let mut choices = Some(Facts::default());
    let usage = answer(skim, op, |s, name| {
        if name != b"choices" {
            return Some(false);
        }
        choices = list(s, |s, facts| {
            let Some(choice) = choice(s, op)? else {
                return Some(None);
            };
            facts.content |= choice.content;
            facts.filtered |= choice.filtered;
            Some(Some(()))
        })?;
        Some(true)
    })?;
    Some((choices?, usage))
}

struct Choice {
    /// `None`: a message of the wrong shape.
    message: Shape<bool>,
    text: bool,
    filtered: bool,
}

impl Default for Choice {
    fn default() -> Self {
        Choice {
            message: Some(false),
            text: false,
            filtered: false,
        }
    }
}

fn choice(skim: &mut Skim<'_>, op: Operation) -> Option<Shape<Facts>> {
    let choice: Choice = fields(skim, |s, name, c: &mut Choice| {
        match name {
            b"message" => c.message = chat_message(s)?,
            // Completions.
            b"text" => c.text = carries(s)?,
            b"finish_reason" => c.filtered = is(s, "content_filter")?,
            _ => {
                s.value()?;
            }
        }
        Some(())
    })?;
    // A message of the wrong shape spoils the choice, even for completions.
    let Some(message) = choice.message else {
        return Some(None);
    };
    Some(Some(Facts {
        content: if op == Operation::Completions {
            choice.text
        } else {
            message
        },
        filtered: choice.filtered,
        ..Facts::default()
    }))
}

/// `null`, or a message: whether it carries text, a tool or function call,
/// a refusal or audio.
fn chat_message(skim: &mut Skim<'_>) -> Option<Shape<bool>> {
    // Each field's last value counts.
    let carried = nullable(skim, |s, name, carried: &mut [bool; 5]| {
        let slot = match name {
            b"content" => 0,
            b"tool_calls" => 1,
            b"function_call" => 2,
            b"refusal" => 3,
            b"audio" => 4,
            _ => return s.value().map(drop),
        };
        carried[slot] = carries(s)?;
        Some(())
    })?;
    Some(carried.map(|c| c.contains(&true)))
}

/// Responses: `output` items and `incomplete_details`.
fn responses(skim: &mut Skim<'_>) -> Read {
    let (mut output, mut filtered) = (Some(Facts::default()), Some(false));
    let usage = answer(skim, Operation::Responses, |s, name| {
        match name {
            b"output" => output = list(s, output_item)?,
            b"incomplete_details" => {
                filtered = nullable(s, |s, name, filtered: &mut bool| {
                    if name == b"reason" {
                        *filtered = is(s, "content_filter")?;
                    } else {
                        s.value()?;
                    }
                    Some(())
                })?;
            }
            _ => return Some(false),
        }
        Some(true)
    })?;
    let facts = Facts {
        filtered: filtered?,
        ..output?
    };
    Some((facts, usage))
}

#[derive(Default)]
struct Item<'a> {
    kind: Option<&'a [u8]>,
    content: Option<&'a [u8]>,
}

fn output_item<'a>(skim: &mut Skim<'a>, facts: &mut Facts) -> Option<Shape<()>> {
    let item: Item<'a> = fields(skim, |s, name, item: &mut Item<'a>| {
        match name {
            b"type" => item.kind = Some(s.value()?),
            b"content" => item.content = Some(s.value()?),
            _ => {
                s.value()?;
            }
        }
        Some(())
    })?;
    match item.kind.and_then(string_text).as_deref() {
        Some(b"message") => {
            // Only a message's content is read further: parts with text or
            // a refusal.
            let Some(raw) = item.content else {
                return Some(Some(()));
            };
            let parts = list(&mut skim.nested(raw), |s, parts| {
                let carried = fields(s, |s, name, carried: &mut [bool; 2]| {
                    let slot = match name {
                        b"text" => 0,
                        b"refusal" => 1,
                        _ => return s.value().map(drop),
                    };
                    carried[slot] = carries(s)?;
                    Some(())
                })?;
                parts.content |= carried.contains(&true);
                Some(Some(()))
            })?;
            let Some(parts) = parts else {
                return Some(None);
            };
            facts.content |= parts.content;
        }
        Some(b"reasoning") => facts.reasoning = true,
        // A tool call of any kind: function, custom, web search, …
        _ => facts.content = true,
    }
    Some(Some(()))
}

/// Embeddings: `data[].embedding`, an array of floats or a base64 string.
fn embeddings(skim: &mut Skim<'_>) -> Read {
    let mut data = Some(Facts::default());
    let usage = answer(skim, Operation::Embeddings, |s, name| {
        if name != b"data" {
            return Some(false);
        }
        data = list(s, |s, facts| {
            let vector = fields(s, |s, name, vector: &mut bool| {
                if name == b"embedding" {
                    *vector = carries(s)?;
                } else {
                    s.value()?;
                }
                Some(())
            })?;
            facts.content |= vector;
            Some(Some(()))
        })?;
        Some(true)
    })?;
    Some((data?, usage))
}

/// Anthropic messages: `content` blocks and `stop_reason`.
fn messages(skim: &mut Skim<'_>) -> Read {
    let (mut content, mut filtered) = (Some(Facts::default()), false);
    let usage = answer(skim, Operation::Messages, |s, name| {
        match name {
            b"content" => {
                content = list(s, |s, facts| {
                    let (kind, text) = fields(s, |s, name, block: &mut (Option<&[u8]>, bool)| {
                        match name {
                            b"type" => block.0 = Some(s.value()?),
                            b"text" => block.1 = carries(s)?,
                            _ => {
                                s.value()?;
                            }
                        }
                        Some(())
                    })?;
                    match kind.and_then(string_text).as_deref() {
                        Some(b"text") => facts.content |= text,
                        Some(b"thinking" | b"redacted_thinking") => facts.reasoning = true,
                        // tool_use, server_tool_use, their results, …
                        _ => facts.content = true,
                    }
                    Some(Some(()))
                })?;
            }
            b"stop_reason" => filtered = is(s, "refusal")?,
            _ => return Some(false),
        }
        Some(true)
    })?;
    let facts = Facts {
        filtered,
        ..content?
    };
    Some((facts, usage))
}
