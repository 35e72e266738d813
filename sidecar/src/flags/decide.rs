//! Which variant of a flag serves a request, in the order DESIGN gives: the
//! kill switch, then targeting rules in order, then the sticky split, then a
//! random split. Pure: the caller passes the random number.

use std::borrow::Cow;

use http::HeaderMap;

use super::bucketing::{pick_random, pick_weighted};
use super::resolved::{ResolvedFlag, Rule, Sticky};
use crate::request::ScannedBody;
use crate::request::scan::scalar_text;

/// What the proxy knows about a request when it decides.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a ScannedBody,
}

/// Why a variant was chosen.
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
    /// Index into the flag's variants.
    pub variant: usize,
    pub reason: DecisionReason,
}

/// Chooses the variant of `flag` for this request. `random` is a uniform
/// `u32`, used only when the request carries no sticky value.
pub fn decide(flag: &ResolvedFlag, view: &RequestView<'_>, random: u32) -> Decision {
    if !flag.compiled.enabled {
        return Decision {
            variant: flag.default,
            reason: DecisionReason::Disabled,
        };
    }
    for (index, rule) in flag.targeting.iter().enumerate() {
        if rule_matches(rule, view) {
            return Decision {
                variant: rule.variant,
                reason: DecisionReason::Targeting(index),
            };
        }
    }
    let (picked, reason) = match sticky_value(flag, view) {
        Some(value) => (
            pick_weighted(&flag.key, &value, &flag.weights),
            DecisionReason::Sticky,
        ),
        None => (pick_random(&flag.weights, random), DecisionReason::Random),
    };
    Decision {
        // Weights summing to zero are rejected when the config loads; should
        // one slip through, the default variant is the safe answer.
        variant: picked
            .filter(|i| *i < flag.variants.len())
            .unwrap_or(flag.default),
        reason,
    }
}

/// The first non-empty sticky value among the flag's sources: a header's
/// value (UTF-8), or a body field that is a string or a number.
pub(crate) fn sticky_value<'a>(
    flag: &ResolvedFlag,
    view: &RequestView<'a>,
) -> Option<Cow<'a, str>> {
    flag.sticky_by.iter().find_map(|source| {
        let value = match source {
            Sticky::Header(name) => view
                .headers
                .get_all(name)
                .iter()
                .find_map(|v| std::str::from_utf8(v.as_bytes()).ok())
                .map(Cow::Borrowed),
            Sticky::Body(path) => {
                let raw = view.body.lookup(path)?;
                // Booleans are not identities.
                if raw == "true" || raw == "false" {
                    return None;
                }
                scalar_text(raw)
            }
        }?;
        (!value.trim().is_empty()).then_some(value)
    })
}

fn rule_matches(rule: &Rule, view: &RequestView<'_>) -> bool {
    if rule.impossible {
        return false;
    }
    let headers_hold = rule.headers.iter().all(|(name, accepted)| {
        view.headers.get_all(name).iter().any(|value| {
            std::str::from_utf8(value.as_bytes())
                .is_ok_and(|value| accepted.iter().any(|a| a == value))
        })
    });
    headers_hold
        && rule.body.iter().all(|(path, accepted)| {
            let found = view.body.lookup(path).and_then(scalar_text);
            found.is_some_and(|value| accepted.iter().any(|a| *a == value))
        })
}
