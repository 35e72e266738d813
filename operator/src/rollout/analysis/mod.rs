//! Analysis: is the canary healthy? Every `interval` the engine asks for a
//! check; the canary's (and, for relative thresholds, the stable
//! variant's) request count, error rate, p95 latency, fallback rate and
//! empty-or-filtered rate over the last interval come from Prometheus, and
//! [`judge`] compares them with the thresholds (pure).
//!
//! - Fewer than `minRequests` canary requests: inconclusive, not a failure.
//! - Prometheus unreachable, an error answer, or a value it cannot give:
//!   inconclusive, with the reason in the check's message (and so in the
//!   `Progressing` condition): the rollout holds, it never advances on a
//!   check it could not make.
//! - A relative threshold (`maxIncreaseOverStable`) compares only when the
//!   stable variant served `minRequests` too; otherwise the check says so
//!   and judges by the absolute thresholds (at 100% the stable variant
//!   serves nothing to compare with).

pub mod prometheus;
pub mod promql;

use std::time::Duration;

use aiflags_api::{AIFeatureFlag, Analysis, CheckResult, StableMargins, VariantMeasurements};

use self::prometheus::{Prometheus, QueryError};
use self::promql::Scope;
use super::Verdict;
use super::engine::{DEFAULT_MIN_REQUESTS, interval_of};

/// What to check, for one flag.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub namespace: String,
    pub flag: String,
    pub canary: Arm,
    pub stable: Arm,
    pub window: Duration,
    pub min_requests: u64,
    pub analysis: Analysis,
}

/// A variant and its model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arm {
    pub variant: String,
    pub model: String,
}

impl Request {
    /// The check of `flag`'s canary; `None` without `rollout.analysis`.
    pub fn for_flag(flag: &AIFeatureFlag) -> Option<Request> {
        let rollout = flag.spec.rollout.as_ref()?;
        let analysis = rollout.analysis.clone()?;
        let arm = |name: &str| {
            let variant = flag.spec.variants.iter().find(|v| v.name == name)?;
            Some(Arm {
                variant: variant.name.clone(),
                model: variant.model.clone(),
            })
        };
        let window = interval_of(&analysis);
        Some(Request {
            namespace: flag.metadata.namespace.clone()?,
            flag: flag.metadata.name.clone()?,
            canary: arm(rollout.canary.as_deref()?)?,
            stable: arm(&flag.spec.default_variant)?,
            window,
            min_requests: analysis.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS),
            analysis,
        })
    }

    fn scope<'a>(&'a self, arm: &'a Arm) -> Scope<'a> {
        Scope {
            namespace: &self.namespace,
            flag: &self.flag,
            variant: &arm.variant,
            model: &arm.model,
            window: self.window,
        }
    }

    fn margins(&self) -> Option<&StableMargins> {
        self.analysis.max_increase_over_stable.as_ref()
    }
}

/// Which measurements a threshold needs.
#[derive(Clone, Copy, Debug, Default)]
struct Wanted {
    error_rate: bool,
    p95: bool,
    fallback_rate: bool,
    empty_rate: bool,
}

impl Wanted {
    fn canary(a: &Analysis) -> Wanted {
        let m = a.max_increase_over_stable.clone().unwrap_or_default();
        Wanted {
            error_rate: a.max_error_rate.is_some() || m.error_rate.is_some(),
            p95: a.max_p95_latency_seconds.is_some() || m.p95_latency_seconds.is_some(),
            fallback_rate: a.max_fallback_rate.is_some() || m.fallback_rate.is_some(),
            empty_rate: a.max_empty_rate.is_some() || m.empty_rate.is_some(),
        }
    }

    fn stable(m: &StableMargins) -> Wanted {
        Wanted {
            error_rate: m.error_rate.is_some(),
            p95: m.p95_latency_seconds.is_some(),
            fallback_rate: m.fallback_rate.is_some(),
            empty_rate: m.empty_rate.is_some(),
        }
    }
}

/// Makes one check: asks `prometheus` (when configured) and judges.
pub async fn analyse(prometheus: Option<&Prometheus>, request: &Request) -> Verdict {
    let Some(prometheus) = prometheus else {
        return inconclusive(
            "no Prometheus is configured (--prometheus-url, chart value rollout.prometheus.url): \
             the rollout cannot be analysed and holds"
                .into(),
        );
    };
    let canary = measure(
        prometheus,
        request,
        &request.canary,
        Wanted::canary(&request.analysis),
    );
    let stable = async {
        match request.margins() {
            Some(m) => measure(prometheus, request, &request.stable, Wanted::stable(m))
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    match futures::future::join(canary, stable).await {
        (Ok(canary), Ok(stable)) => judge(request, &canary, stable.as_ref()),
        (Err(error), _) | (_, Err(error)) => inconclusive(format!(
            "Prometheus at {} could not be asked: {error}; the rollout holds",
            prometheus.url()
        )),
    }
}

async fn measure(
    prometheus: &Prometheus,
    request: &Request,
    arm: &Arm,
    wanted: Wanted,
) -> Result<VariantMeasurements, QueryError> {
    let scope = request.scope(arm);
    let optional = |wanted: bool, query: String| async move {
        if wanted {
            prometheus.query(&query).await
        } else {
            Ok(None)
        }
    };
    let count = scope.request_count();
    let (requests, error_rate, p95, fallback_rate, empty_rate) = futures::try_join!(
        prometheus.query(&count),
        optional(wanted.error_rate, scope.error_rate()),
        optional(wanted.p95, scope.p95_latency()),
        optional(wanted.fallback_rate, scope.fallback_rate()),
        optional(wanted.empty_rate, scope.empty_rate()),
    )?;
    Ok(VariantMeasurements {
        requests: requests.unwrap_or(0.0),
        error_rate,
        p95_latency_seconds: p95,
        fallback_rate,
        empty_rate,
    })
}

/// Judges measurements against the request's thresholds. Pure.
pub fn judge(
    request: &Request,
    canary: &VariantMeasurements,
    stable: Option<&VariantMeasurements>,
) -> Verdict {
    let a = &request.analysis;
    let min = request.min_requests;
    let window = humantime(request.window);
    let measured = |result: CheckResult, message: String| Verdict {
        result,
        message,
        canary: Some(canary.clone()),
        stable: stable.cloned(),
    };
    if canary.requests < min as f64 {
        return measured(
            CheckResult::Inconclusive,
            format!(
                "the canary served {:.0} requests in the last {window}, fewer than minRequests {min}",
                canary.requests
            ),
        );
    }

    let mut failures = Vec::new();
    let mut missing = Vec::new();
    let mut passed = Vec::new();
    let metrics = [
        (Metric::ErrorRate, a.max_error_rate, canary.error_rate),
        (
            Metric::P95,
            a.max_p95_latency_seconds,
            canary.p95_latency_seconds,
        ),
        (
            Metric::FallbackRate,
            a.max_fallback_rate,
            canary.fallback_rate,
        ),
        (Metric::EmptyRate, a.max_empty_rate, canary.empty_rate),
    ];
    for (metric, limit, value) in metrics {
        let Some(limit) = limit else { continue };
        match value.filter(|v| v.is_finite()) {
            None => missing.push(format!("no {} for the canary", metric.name())),
            Some(v) if v > limit => failures.push(format!(
                "{} {} > {} {}",
                metric.name(),
                metric.show(v),
                metric.field(),
                metric.show(limit)
            )),
            Some(v) => passed.push(format!("{} {}", metric.name(), metric.show(v))),
        }
    }

    if let Some(margins) = request.margins() {
        match stable.filter(|s| s.requests >= min as f64) {
            None => passed.push(format!(
                "no comparison with the stable variant: it served {:.0} requests, fewer than minRequests {min}",
                stable.map_or(0.0, |s| s.requests)
            )),
            Some(stable) => {
                let pairs = [
                    (Metric::ErrorRate, margins.error_rate, canary.error_rate, stable.error_rate),
                    (Metric::P95, margins.p95_latency_seconds, canary.p95_latency_seconds, stable.p95_latency_seconds),
                    (Metric::FallbackRate, margins.fallback_rate, canary.fallback_rate, stable.fallback_rate),
                    (Metric::EmptyRate, margins.empty_rate, canary.empty_rate, stable.empty_rate),
                ];
                for (metric, margin, ours, theirs) in pairs {
                    let Some(margin) = margin else { continue };
                    match (ours.filter(|v| v.is_finite()), theirs.filter(|v| v.is_finite())) {
                        (Some(ours), Some(theirs)) if ours > theirs + margin => failures.push(format!(
                            "{} {} > the stable variant's {} + {}",
                            metric.name(),
                            metric.show(ours),
                            metric.show(theirs),
                            metric.show(margin)
                        )),
                        (Some(_), Some(_)) => {}
                        _ => missing.push(format!("no {} to compare with the stable variant", metric.name())),
                    }
                }
            }
        }
    }

    let over = format!(
        "over {:.0} canary requests in the last {window}",
        canary.requests
    );
    if !failures.is_empty() {
        measured(CheckResult::Fail, format!("{} {over}", failures.join(", ")))
    } else if !missing.is_empty() {
        measured(
            CheckResult::Inconclusive,
            format!("{} {over}", missing.join(", ")),
        )
    } else if passed.is_empty() {
        measured(CheckResult::Pass, format!("no thresholds set; {over}"))
    } else {
        measured(CheckResult::Pass, format!("{} {over}", passed.join(", ")))
    }
}

#[derive(Clone, Copy)]
enum Metric {
    ErrorRate,
    P95,
    FallbackRate,
    EmptyRate,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error rate",
            Metric::P95 => "p95 latency",
            Metric::FallbackRate => "fallback rate",
            Metric::EmptyRate => "empty-or-filtered rate",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Metric::ErrorRate => "maxErrorRate",
            Metric::P95 => "maxP95LatencySeconds",
            Metric::FallbackRate => "maxFallbackRate",
            Metric::EmptyRate => "maxEmptyRate",
        }
    }

    fn show(self, value: f64) -> String {
        match self {
            Metric::P95 => format!("{value:.2}s"),
            _ => format!("{:.1}%", value * 100.0),
        }
    }
}

fn inconclusive(message: String) -> Verdict {
    Verdict {
        result: CheckResult::Inconclusive,
        message,
        canary: None,
        stable: None,
    }
}

/// `90s` as `1m30s`, `500ms` as `500ms`.
fn humantime(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests;
