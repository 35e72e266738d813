//! `spec.fallback`: failure classes, chain, retries and timeouts.

use super::{Errors, unknown_variant};
use crate::config::{CompiledFallback, FAILURE_CLASSES, FailureClass, MAX_RETRIES, MAX_TIMEOUT_MS};
use crate::crd::{AIFeatureFlagSpec, Fallback};
use crate::duration::parse_duration_ms;

pub(super) fn compile_fallback(
    spec: &AIFeatureFlagSpec,
    names: &[&str],
    errs: &mut Errors,
) -> CompiledFallback {
    let Some(f) = &spec.fallback else {
        return CompiledFallback::default();
    };
    let on = if f.on.is_empty() {
        ["timeout", "connect", "429", "5xx"]
            .iter()
            .filter_map(|s| FailureClass::parse(s))
            .collect()
    } else {
        let mut on = Vec::with_capacity(f.on.len());
        for (i, s) in f.on.iter().enumerate() {
            match FailureClass::parse(s) {
                Some(c) => on.push(c),
                None => errs.push(format!("spec.fallback.on[{i}]"), unknown_class(s)),
            }
        }
        check_answer_classes(f, errs);
        on
    };
    let mut out = CompiledFallback {
        on,
        ..CompiledFallback::default()
    };
    for (i, name) in f.chain.iter().enumerate() {
        if !names.contains(&name.as_str()) {
            errs.push(
                format!("spec.fallback.chain[{i}]"),
                unknown_variant(name, names),
            );
        }
    }
    out.chain = f.chain.clone();
    if let Some(r) = f.retries {
        if r > MAX_RETRIES {
            errs.push(
                "spec.fallback.retries",
                format!("{r} is more than the maximum of {MAX_RETRIES}"),
            );
        }
        out.retries = r;
    }
    let mut duration = |field: &str, value: &Option<String>| -> Option<u64> {
        let ms = parse_duration_ms(value.as_ref()?)
            .map_err(|msg| errs.push(format!("spec.fallback.{field}"), msg))
            .ok()?;
        if ms == 0 {
            errs.push(format!("spec.fallback.{field}"), "must be longer than 0");
        } else if ms > MAX_TIMEOUT_MS {
            errs.push(
                format!("spec.fallback.{field}"),
                "must be at most 168h (a week)",
            );
        }
        Some(ms)
    };
    let per_attempt = duration("perAttemptTimeout", &f.per_attempt_timeout);
    let first_token = duration("firstTokenTimeout", &f.first_token_timeout);
    let deadline = duration("deadline", &f.deadline);
    if let Some(ms) = per_attempt {
        out.per_attempt_timeout_ms = ms;
    }
    out.first_token_timeout_ms = first_token;
    if let Some(ms) = deadline {
        out.deadline_ms = ms;
    }
    if let (Some(p), Some(d)) = (per_attempt, deadline)
        && d < p
    {
        errs.push(
            "spec.fallback.deadline",
            format!(
                "{} is shorter than perAttemptTimeout {}",
                f.deadline.as_deref().unwrap_or_default(),
                f.per_attempt_timeout.as_deref().unwrap_or_default()
            ),
        );
    }
    if let (Some(t), Some(p)) = (first_token, per_attempt)
        && t > p
    {
        errs.push(
            "spec.fallback.firstTokenTimeout",
            format!(
                "{} is longer than perAttemptTimeout {}",
                f.first_token_timeout.as_deref().unwrap_or_default(),
                f.per_attempt_timeout.as_deref().unwrap_or_default()
            ),
        );
    }
    out
}

fn unknown_class(s: &str) -> String {
    // The names other tools and the wire format use for the same classes.
    let meant = match s.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
        "contentfilter" | "filtered" | "refusal" => Some("contentFilter"),
        "emptyresponse" | "emptyanswer" | "noanswer" => Some("empty"),
        _ => None,
    };
    match meant {
        Some(class) => format!("{s:?} is not one of {FAILURE_CLASSES}; did you mean {class}?"),
        None => format!("{s:?} is not one of {FAILURE_CLASSES}"),
    }
}

/// Answers judged bad need somewhere to go: a filtered answer is never
/// retried on the same variant (its filter would stop it again), so it needs
/// a chain; an empty one needs a chain or retries. (The CRD's CEL rules say
/// the same at `kubectl apply`.)
fn check_answer_classes(f: &Fallback, errs: &mut Errors) {
    let at = |class: FailureClass| {
        f.on.iter()
            .position(|s| FailureClass::parse(s) == Some(class))
    };
    if f.chain.is_empty()
        && let Some(i) = at(FailureClass::ContentFilter)
    {
        errs.push(
            format!("spec.fallback.on[{i}]"),
            "contentFilter is never retried on the same variant: name the variants to fall back to in spec.fallback.chain",
        );
    }
    if f.chain.is_empty()
        && f.retries.unwrap_or(0) == 0
        && let Some(i) = at(FailureClass::Empty)
    {
        errs.push(
            format!("spec.fallback.on[{i}]"),
            "empty needs somewhere to go: a spec.fallback.chain or retries",
        );
    }
}
