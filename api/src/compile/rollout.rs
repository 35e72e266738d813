//! `spec.rollout`: sticky sources, fixed weights, canary steps and analysis.

use std::collections::BTreeMap;

use super::{Errors, unknown_variant};
use crate::config::{StickySource, TOTAL_BP};
use sha2::{Digest, Sha256};

use crate::crd::{AIFeatureFlagSpec, FlagState, Rollout, Variant};
use crate::duration::parse_duration_ms;

/// What a progressive rollout runs: a hash of the spec without `state` (the
/// kill switch stops a rollout, it does not make it another one) and
/// `rollout.analysis` (thresholds may be tuned mid-rollout). When it
/// changes, the rollout starts again at its first step.
pub fn rollout_identity(spec: &AIFeatureFlagSpec) -> String {
    let mut identity = spec.clone();
    identity.state = FlagState::Enabled;
    if let Some(rollout) = identity.rollout.as_mut() {
        rollout.analysis = None;
    }
    let canonical = serde_json::to_vec(&identity).unwrap_or_default();
    hex::encode(&Sha256::digest(&canonical)[..8])
}

/// All traffic to the default variant.
pub(super) fn default_only(variants: &[Variant], default: &str) -> Vec<u32> {
    variants
        .iter()
        .map(|v| if v.name == default { TOTAL_BP } else { 0 })
        .collect()
}

/// Percent with at most 2 decimals → basis points.
fn percent_to_bp(percent: f64) -> Result<u32, String> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(format!("{percent} must be between 0 and 100"));
    }
    let bp = (percent * 100.0).round();
    if (percent * 100.0 - bp).abs() > 1e-6 {
        return Err(format!("{percent} has more than 2 decimals"));
    }
    Ok(bp as u32)
}

pub(super) fn compile_rollout(
    rollout: &Rollout,
    spec: &AIFeatureFlagSpec,
    canary_weight: Option<f64>,
    errs: &mut Errors,
) -> (Vec<StickySource>, Vec<u32>) {
    let names: Vec<&str> = spec.variants.iter().map(|v| v.name.as_str()).collect();
    let mut sticky = Vec::with_capacity(rollout.sticky_by.len());
    for (i, s) in rollout.sticky_by.iter().enumerate() {
        match StickySource::parse(s) {
            Some(src) => sticky.push(src),
            None => errs.push(
                format!("spec.rollout.stickyBy[{i}]"),
                format!("{s:?} must be header:<name> or body:<field.path>"),
            ),
        }
    }

    if rollout.weights.is_some() && rollout.steps.is_some() {
        errs.push(
            "spec.rollout",
            "weights and steps are mutually exclusive: use fixed weights or a progressive canary",
        );
    }
    if rollout.steps.is_some() != rollout.canary.is_some() {
        errs.push(
            "spec.rollout.canary",
            "canary and steps go together: a progressive rollout needs both",
        );
    }

    let mut weights = default_only(&spec.variants, &spec.default_variant);
    if let Some(map) = &rollout.weights {
        let mut by_name = BTreeMap::new();
        let mut total_bp: u64 = 0;
        let mut all_parsed = true;
        for (name, percent) in map {
            let path = format!("spec.rollout.weights.{name}");
            if !names.contains(&name.as_str()) {
                errs.push(path.clone(), unknown_variant(name, &names));
            }
            match percent_to_bp(*percent) {
                Ok(bp) => {
                    total_bp += u64::from(bp);
                    by_name.insert(name.as_str(), bp);
                }
                Err(msg) => {
                    all_parsed = false;
                    errs.push(path, msg);
                }
            }
        }
        // A sum over only the readable weights would be a confusing second error.
        if all_parsed && total_bp != u64::from(TOTAL_BP) {
            errs.push(
                "spec.rollout.weights",
                format!("weights sum to {}, not 100", total_bp as f64 / 100.0),
            );
        }
        weights = spec
            .variants
            .iter()
            .map(|v| by_name.get(v.name.as_str()).copied().unwrap_or(0))
            .collect();
    }

    if let Some(steps) = &rollout.steps {
        if steps.is_empty() {
            errs.push("spec.rollout.steps", "at least one step is required");
        }
        let mut previous: Option<f64> = None;
        for (i, step) in steps.iter().enumerate() {
            let path = format!("spec.rollout.steps[{i}]");
            if let Err(msg) = percent_to_bp(step.weight) {
                errs.push(format!("{path}.weight"), msg);
            }
            if let Some(prev) = previous.filter(|p| step.weight < *p) {
                errs.push(
                    format!("{path}.weight"),
                    format!(
                        "{} is lower than the previous step's {prev}: steps must not decrease",
                        step.weight
                    ),
                );
            }
            previous = Some(step.weight);
            if let Some(pause) = &step.pause
                && let Err(msg) = parse_duration_ms(pause)
            {
                errs.push(format!("{path}.pause"), msg);
            }
        }
    }
    if let Some(canary) = &rollout.canary {
        if !names.contains(&canary.as_str()) {
            errs.push("spec.rollout.canary", unknown_variant(canary, &names));
        } else if *canary == spec.default_variant {
            errs.push(
                "spec.rollout.canary",
                format!("{canary:?} is the defaultVariant, which receives the remaining traffic; name another variant"),
            );
        } else if let Some(steps) = &rollout.steps {
            let first = steps.first().map(|s| s.weight).unwrap_or(0.0);
            let canary_bp = percent_to_bp(canary_weight.unwrap_or(first)).unwrap_or(0);
            weights = spec
                .variants
                .iter()
                .map(|v| {
                    if v.name == *canary {
                        canary_bp
                    } else if v.name == spec.default_variant {
                        TOTAL_BP - canary_bp
                    } else {
                        0
                    }
                })
                .collect();
        }
    }

    if let Some(a) = &rollout.analysis {
        if rollout.steps.is_none() {
            errs.push(
                "spec.rollout.analysis",
                "analysis gates canary steps: it needs rollout.steps",
            );
        }
        if let Some(interval) = &a.interval
            && let Err(msg) = parse_duration_ms(interval)
        {
            errs.push("spec.rollout.analysis.interval", msg);
        }
        let margins = a.max_increase_over_stable.clone().unwrap_or_default();
        let rates = [
            ("maxErrorRate", a.max_error_rate),
            ("maxFallbackRate", a.max_fallback_rate),
            ("maxEmptyRate", a.max_empty_rate),
            ("maxIncreaseOverStable.errorRate", margins.error_rate),
            ("maxIncreaseOverStable.fallbackRate", margins.fallback_rate),
            ("maxIncreaseOverStable.emptyRate", margins.empty_rate),
        ];
        for (field, rate) in rates {
            if rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                errs.push(
                    format!("spec.rollout.analysis.{field}"),
                    "must be a ratio between 0 and 1",
                );
            }
        }
        if a.max_p95_latency_seconds
            .is_some_and(|l| !l.is_finite() || l <= 0.0)
        {
            errs.push(
                "spec.rollout.analysis.maxP95LatencySeconds",
                "must be a positive number of seconds",
            );
        }
        if a.max_increase_over_stable.is_some() && margins == Default::default() {
            errs.push(
                "spec.rollout.analysis.maxIncreaseOverStable",
                "name at least one margin: errorRate, p95LatencySeconds, fallbackRate or emptyRate",
            );
        }
        if margins
            .p95_latency_seconds
            .is_some_and(|l| !l.is_finite() || l < 0.0)
        {
            errs.push(
                "spec.rollout.analysis.maxIncreaseOverStable.p95LatencySeconds",
                "must be zero or a positive number of seconds",
            );
        }
        if a.failure_limit == Some(0) {
            errs.push("spec.rollout.analysis.failureLimit", "must be at least 1");
        }
    }
    (sticky, weights)
}
