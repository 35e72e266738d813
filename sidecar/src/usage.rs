//! Token usage as each upstream protocol reports it, read into one shape so
//! metrics and pricing need not know the protocol.
//!
//! Usage objects come from upstream bytes: anything missing or of the wrong
//! type counts as zero, and nothing here panics.

use aiflags_api::Operation;
use serde_json::Value;

use crate::skim::Skim;

/// Token counts of one response, in OpenAI's terms: `input_tokens` includes
/// the cached ones and `output_tokens` the reasoning ones, so the subsets can
/// be priced differently without double counting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
}

/// Anthropic's raw counts: `input_tokens` excludes cache reads and writes, and
/// `message_delta` repeats cumulative values, so they are kept apart.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AnthropicCounts {
    input: u64,
    cache_read: u64,
    cache_creation: u64,
    output: u64,
}

impl AnthropicCounts {
    /// Takes the counts a usage object carries, keeping the others: a
    /// `message_delta` may repeat only `output_tokens`. `None` when `usage`
    /// is not an object.
    pub(crate) fn update(&mut self, usage: &Value) -> Option<Usage> {
        usage.as_object()?;
        let fields = [
            ("input_tokens", &mut self.input),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("cache_creation_input_tokens", &mut self.cache_creation),
            ("output_tokens", &mut self.output),
        ];
        for (name, slot) in fields {
            if let Some(n) = usage.get(name).and_then(Value::as_u64) {
                *slot = n;
            }
        }
        Some(self.usage())
    }

    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_creation),
            output_tokens: self.output,
            cached_input_tokens: self.cache_read,
            reasoning_tokens: 0,
        }
    }
}

/// Usage of a non-streamed response body.
pub fn usage_from_response(op: Operation, body: &Value) -> Option<Usage> {
    usage_from_usage(op, body.get("usage")?)
}

/// The same, straight from a response body's bytes: the body is scanned to
/// find its top-level `usage` member, and only that small object is parsed
/// (the completion itself, or a batch of embeddings, is never built).
pub(crate) fn usage_from_bytes(op: Operation, body: &[u8]) -> Option<Usage> {
    let scanned = crate::request::scan::Scanned::new(body).ok()?;
    let raw = scanned.get(body, "usage")?;
    let usage: Value = serde_json::from_str(raw).ok()?;
    usage_from_usage(op, &usage)
}

/// The usage object at a [`Skim`] cursor, read in the answer judge's pass
/// over a whole body: `Some(None)` when the value is not an object (it is
/// skipped), `None` when it is not valid JSON. Counts are read as
/// [`usage_from_response`] reads them from a `Value`.
pub(crate) fn usage_from_skim(op: Operation, skim: &mut Skim<'_>) -> Option<Option<Usage>> {
    if !skim.at_object() {
        skim.value()?;
        return Some(None);
    }
    // The counts, by position: OpenAI's and the Responses API's totals and
    // their details' subsets, or Anthropic's four.
    let mut n = [0u64; 4];
    let names: [&[u8]; 4] = match op {
        Operation::Chat | Operation::Completions | Operation::Embeddings => [
            b"prompt_tokens",
            b"completion_tokens",
            b"prompt_tokens_details",
            b"completion_tokens_details",
        ],
        Operation::Responses => [
            b"input_tokens",
            b"output_tokens",
            b"input_tokens_details",
            b"output_tokens_details",
        ],
        Operation::Messages => [
            b"input_tokens",
            b"cache_read_input_tokens",
            b"cache_creation_input_tokens",
            b"output_tokens",
        ],
    };
    let details: [&[u8]; 2] = [b"cached_tokens", b"reasoning_tokens"];
    let nested = op != Operation::Messages;
    skim.object(|s, key| {
        let Some(slot) = names.iter().position(|name| *name == key.name()) else {
            return s.value().map(drop);
        };
        n[slot] = if nested && slot >= 2 {
            // `…_details.cached_tokens` / `.reasoning_tokens`.
            let mut count = 0;
            if s.at_object() {
                s.object(|s, key| {
                    if key.name() == details[slot - 2] {
                        count = s.count()?;
                    } else {
                        s.value()?;
                    }
                    Some(())
                })?;
            } else {
                s.value()?;
            }
            count
        } else {
            s.count()?
        };
        Some(())
    })?;
    Some(Some(match op {
        Operation::Messages => AnthropicCounts {
            input: n[0],
            cache_read: n[1],
            cache_creation: n[2],
            output: n[3],
        }
        .usage(),
        _ => Usage {
            input_tokens: n[0],
            output_tokens: n[1],
            cached_input_tokens: n[2],
            reasoning_tokens: n[3],
        },
    }))
}

fn usage_from_usage(op: Operation, usage: &Value) -> Option<Usage> {
    match op {
        Operation::Chat | Operation::Completions | Operation::Embeddings => openai_usage(usage),
        Operation::Responses => responses_usage(usage),
        Operation::Messages => AnthropicCounts::default().update(usage),
    }
}

/// OpenAI's chat/completions/embeddings usage object.
pub(crate) fn openai_usage(usage: &Value) -> Option<Usage> {
    usage.as_object()?;
    Some(Usage {
        input_tokens: count(usage, &["prompt_tokens"]),
        output_tokens: count(usage, &["completion_tokens"]),
        cached_input_tokens: count(usage, &["prompt_tokens_details", "cached_tokens"]),
        reasoning_tokens: count(usage, &["completion_tokens_details", "reasoning_tokens"]),
    })
}

/// A count at a path of object keys; anything missing or not a whole
/// number is zero. (`Value::pointer` would allocate per segment.)
fn count(value: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// OpenAI's responses usage object.
pub(crate) fn responses_usage(usage: &Value) -> Option<Usage> {
    usage.as_object()?;
    Some(Usage {
        input_tokens: count(usage, &["input_tokens"]),
        output_tokens: count(usage, &["output_tokens"]),
        cached_input_tokens: count(usage, &["input_tokens_details", "cached_tokens"]),
        reasoning_tokens: count(usage, &["output_tokens_details", "reasoning_tokens"]),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn usage(i: u64, o: u64, c: u64, r: u64) -> Usage {
        Usage {
            input_tokens: i,
            output_tokens: o,
            cached_input_tokens: c,
            reasoning_tokens: r,
        }
    }

    #[test]
    fn reading_only_the_usage_from_bytes_agrees_with_the_whole_parse() {
        let body = json!({
            "id": "x", "choices": [{"message": {"content": "usage: not this one"}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3,
                      "prompt_tokens_details": {"cached_tokens": 2}},
        });
        let bytes = body.to_string();
        assert_eq!(
            usage_from_bytes(Operation::Chat, bytes.as_bytes()),
            usage_from_response(Operation::Chat, &body)
        );
        assert_eq!(
            usage_from_bytes(Operation::Chat, bytes.as_bytes()),
            Some(usage(7, 3, 2, 0))
        );
        assert_eq!(usage_from_bytes(Operation::Chat, b"{\"id\": 1}"), None);
        assert_eq!(usage_from_bytes(Operation::Chat, b"not json"), None);
    }

    #[test]
    fn usage_of_non_streamed_responses() {
        let chat = json!({"usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}});
        assert_eq!(
            usage_from_response(Operation::Chat, &chat),
            Some(usage(10, 3, 2, 1))
        );
        let embeddings = json!({"usage": {"prompt_tokens": 8, "total_tokens": 8}});
        assert_eq!(
            usage_from_response(Operation::Embeddings, &embeddings),
            Some(usage(8, 0, 0, 0))
        );
        let responses = json!({"usage": {"input_tokens": 5, "output_tokens": 9, "input_tokens_details": {"cached_tokens": 1}, "output_tokens_details": {"reasoning_tokens": 4}}});
        assert_eq!(
            usage_from_response(Operation::Responses, &responses),
            Some(usage(5, 9, 1, 4))
        );
        let messages = json!({"usage": {"input_tokens": 5, "output_tokens": 9, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}});
        assert_eq!(
            usage_from_response(Operation::Messages, &messages),
            Some(usage(125, 9, 100, 0))
        );
        for op in Operation::ALL {
            assert_eq!(usage_from_response(op, &json!({"usage": null})), None);
            assert_eq!(usage_from_response(op, &json!([1])), None);
        }
    }

    #[test]
    fn counts_of_the_wrong_type_are_zero() {
        let messages = json!({"usage": {"input_tokens": "5", "output_tokens": -1}});
        assert_eq!(
            usage_from_response(Operation::Messages, &messages),
            Some(Usage::default())
        );
        let chat = json!({"usage": {"prompt_tokens": 1.5, "prompt_tokens_details": 3}});
        assert_eq!(
            usage_from_response(Operation::Chat, &chat),
            Some(Usage::default())
        );
    }

    #[test]
    fn anthropic_deltas_keep_the_counts_they_omit() {
        let mut counts = AnthropicCounts::default();
        let start = json!({"input_tokens": 25, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 5, "output_tokens": 1});
        assert_eq!(counts.update(&start), Some(usage(40, 1, 10, 0)));
        assert_eq!(
            counts.update(&json!({"output_tokens": 15})),
            Some(usage(40, 15, 10, 0))
        );
        assert_eq!(counts.update(&json!(null)), None);
        assert_eq!(counts.usage(), usage(40, 15, 10, 0));
    }
}
