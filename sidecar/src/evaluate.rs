//! Which flag applies to a request, and which of its variants serves it.
//!
//! Order of evaluation, as in DESIGN "The sidecar data plane": the flag (explicit
//! header, else the most specific model match), then the kill switch, then
//! targeting rules in order, then the sticky split, then a random split.

use aiflags_api::{CompiledFlag, CompiledTargeting, Operation, SidecarConfig, StickySource};
use http::HeaderMap;
use serde_json::Value;

use crate::bucketing::{pick_random, pick_weighted};

/// Names the flag to apply, bypassing model matching.
pub const FLAG_HEADER: &str = "x-aiflags-flag";

/// What the proxy knows about a request before it rewrites it.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// `None`: a path the proxy does not recognise; it is passed through.
    pub operation: Option<Operation>,
    /// The body's `model` field, if it is a string.
    pub model: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The parsed body; `None` when it is not JSON.
    pub body: Option<&'a Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FlagSelection<'c> {
    /// No flag applies: pass the request through untouched.
    None,
    Selected(&'c CompiledFlag),
    /// The flag header names a flag this sidecar does not serve; the proxy
    /// answers 400 naming the header, since the app asked for something
    /// specific that cannot be honoured.
    UnknownFlag(String),
}

/// Why a variant was chosen; becomes part of logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionReason {
    /// The kill switch: the default variant.
    Disabled,
    /// The targeting rule at this index matched.
    Targeting(usize),
    /// The split, bucketed by the request's sticky value.
    Sticky,
    /// The split, by the caller's random number: no sticky value was present.
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Index into the flag's `variants`.
    pub variant: usize,
    pub reason: DecisionReason,
}

/// How closely a flag's model patterns match a model; more specific wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    /// The flag lists no models.
    CatchAll,
    /// A glob matched; more literal characters are more specific.
    Glob(usize),
    /// A pattern without wildcards equal to the model.
    Exact,
}

/// Picks the flag for a request.
///
/// An explicit [`FLAG_HEADER`] wins over model matching, but the flag must
/// still cover the request's operation: a header cannot turn an embeddings
/// flag onto chat traffic. (The proxy itself only evaluates bodies that have
/// a string `model`; others pass through untouched, header or not.)
/// Without the header, a request with no model or an unknown path gets no flag.
/// Among the flags covering the operation, an exact model pattern beats a glob,
/// a glob with more literal characters beats one with fewer, and a flag listing
/// no models comes last; ties go to the smallest flag key.
pub fn select_flag<'c>(config: &'c SidecarConfig, view: &RequestView<'_>) -> FlagSelection<'c> {
    let Some(operation) = view.operation else {
        return FlagSelection::None;
    };
    if let Some(name) = explicit_flag(view.headers) {
        return match config.flag(name) {
            Some(flag) if covers_operation(flag, operation) => FlagSelection::Selected(flag),
            Some(_) => FlagSelection::None,
            None => FlagSelection::UnknownFlag(name.to_string()),
        };
    }
    let Some(model) = view.model else {
        return FlagSelection::None;
    };
    config
        .flags
        .iter()
        .filter(|flag| covers_operation(flag, operation))
        .filter_map(|flag| Some((model_specificity(flag, model)?, flag)))
        // `max_by` keeps the last maximum, so order ties by reversed key.
        .max_by(|(a, fa), (b, fb)| a.cmp(b).then_with(|| fb.key.cmp(&fa.key)))
        .map_or(FlagSelection::None, |(_, flag)| {
            FlagSelection::Selected(flag)
        })
}

/// Chooses the variant of `flag` for this request. `random` is a uniform `u32`
/// used only when the request carries no sticky value.
pub fn decide(flag: &CompiledFlag, view: &RequestView<'_>, random: u32) -> Decision {
    let default = flag
        .variants
        .iter()
        .position(|v| v.name == flag.default_variant)
        .unwrap_or(0);
    if !flag.enabled {
        return Decision {
            variant: default,
            reason: DecisionReason::Disabled,
        };
    }
    for (index, rule) in flag.targeting.iter().enumerate() {
        let target = flag.variants.iter().position(|v| v.name == rule.variant);
        if let Some(variant) = target.filter(|_| targeting_matches(rule, view)) {
            return Decision {
                variant,
                reason: DecisionReason::Targeting(index),
            };
        }
    }
    let weights = flag.effective_weights();
    let (picked, reason) = match sticky_value(flag, view) {
        Some(value) => (
            pick_weighted(&flag.key, &value, &weights),
            DecisionReason::Sticky,
        ),
        None => (pick_random(&weights, random), DecisionReason::Random),
    };
    Decision {
        // Weights summing to zero are rejected when the config loads; should
        // one slip through, the default variant is the safe answer.
        variant: picked
            .filter(|i| *i < flag.variants.len())
            .unwrap_or(default),
        reason,
    }
}

/// The first non-empty sticky value among the flag's `sticky_by` sources: a
/// header's value (UTF-8), or a body field that is a string or a number.
pub fn sticky_value(flag: &CompiledFlag, view: &RequestView<'_>) -> Option<String> {
    flag.sticky_by.iter().find_map(|source| {
        let value = match source {
            StickySource::Header(name) => view
                .headers
                .get_all(name.as_str())
                .iter()
                .find_map(|v| std::str::from_utf8(v.as_bytes()).ok())
                .map(str::to_string),
            StickySource::Body(path) => {
                match resolve_path(view.body?, path.iter().map(String::as_str))? {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            }
        }?;
        (!value.trim().is_empty()).then_some(value)
    })
}

/// Shell-style wildcard match: `*` is any run of characters (also none), `?`
/// exactly one character; everything else is literal and case-sensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently absorbs up to;
    // backtracking to it alone keeps this linear-ish, with no recursion.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '?' || Some(c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

fn explicit_flag(headers: &HeaderMap) -> Option<&str> {
    let name = headers.get(FLAG_HEADER)?.to_str().ok()?.trim();
    (!name.is_empty()).then_some(name)
}

fn covers_operation(flag: &CompiledFlag, operation: Operation) -> bool {
    flag.operations.is_empty() || flag.operations.contains(&operation)
}

fn model_specificity(flag: &CompiledFlag, model: &str) -> Option<Specificity> {
    if flag.models.is_empty() {
        return Some(Specificity::CatchAll);
    }
    flag.models
        .iter()
        .filter_map(|pattern| {
            let literal = pattern.chars().filter(|c| !matches!(c, '*' | '?')).count();
            if literal == pattern.chars().count() {
                (pattern == model).then_some(Specificity::Exact)
            } else {
                glob_match(pattern, model).then_some(Specificity::Glob(literal))
            }
        })
        .max()
}

fn targeting_matches(rule: &CompiledTargeting, view: &RequestView<'_>) -> bool {
    let headers_hold = rule.headers.iter().all(|(name, accepted)| {
        view.headers.get_all(name.as_str()).iter().any(|value| {
            std::str::from_utf8(value.as_bytes())
                .is_ok_and(|value| accepted.iter().any(|a| a == value))
        })
    });
    let body_holds = || {
        rule.body.iter().all(|(path, accepted)| {
            let found = view
                .body
                .and_then(|body| resolve_path(body, path.split('.')))
                .and_then(scalar_text);
            found.is_some_and(|value| accepted.contains(&value))
        })
    };
    headers_hold && body_holds()
}

fn resolve_path<'v, 'p>(
    body: &'v Value,
    path: impl IntoIterator<Item = &'p str>,
) -> Option<&'v Value> {
    path.into_iter().try_fold(body, |value, key| value.get(key))
}

/// A body value as targeting compares it: strings as they are, numbers and
/// booleans as JSON renders them.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
