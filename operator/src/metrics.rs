//! Prometheus metrics of the operator. Labels come from flag config only
//! (namespace, flag, variant, phase) and from a fixed set of outcomes.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use aiflags_api::{AIFeatureFlagStatus, Phase};

use crate::rollout::metrics::RolloutMetrics;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

const PHASES: [Phase; 5] = [
    Phase::Healthy,
    Phase::Progressing,
    Phase::Paused,
    Phase::Degraded,
    Phase::Disabled,
];

pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_duration: Histogram,
    flag_phase: IntGaugeVec,
    flag_ready: IntGaugeVec,
    flag_weight: GaugeVec,
    config_flags: IntGaugeVec,
    config_bytes: IntGaugeVec,
    config_held_back: IntGaugeVec,
    config_revision: IntGaugeVec,
    /// Revision last exported per namespace, so the old series is dropped.
    exported_revisions: Mutex<BTreeMap<String, String>>,
    /// Variants last exported per (namespace, flag), so removed ones are dropped.
    exported_variants: Mutex<BTreeMap<(String, String), Vec<String>>>,
    /// The rollout engine's, in the same registry.
    pub rollout: RolloutMetrics,
}

/// Started by [`Metrics::reconcile_started`]; finished with the outcome.
pub struct ReconcileTimer(Instant);

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "aiflags_operator_reconciles_total",
                "Reconciliations of AIFeatureFlags, by result",
            ),
            &["result"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "aiflags_operator_reconcile_errors_total",
                "Failed reconciliations, by reason",
            ),
            &["reason"],
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "aiflags_operator_reconcile_duration_seconds",
                "Time to reconcile one AIFeatureFlag",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let flag_phase = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_flag_phase",
                "1 for the flag's current phase, 0 for the others",
            ),
            &["namespace", "flag", "phase"],
        )?;
        let flag_ready = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_flag_ready",
                "1 when the flag's latest generation compiled, 0 when it is invalid",
            ),
            &["namespace", "flag"],
        )?;
        let flag_weight = GaugeVec::new(
            Opts::new(
                "aiflags_operator_flag_weight_percent",
                "Configured traffic percent per variant of the serving version",
            ),
            &["namespace", "flag", "variant"],
        )?;
        let config_flags = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_config_flags",
                "Flags in the namespace's compiled config",
            ),
            &["namespace"],
        )?;
        let config_bytes = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_config_bytes",
                "Bytes the namespace's config takes in its ConfigMap (compressed when gzipped); the API server's limit is 1048576",
            ),
            &["namespace"],
        )?;
        let config_held_back = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_config_held_back_flags",
                "Flags whose latest version is left out of the namespace's config because it would not fit",
            ),
            &["namespace"],
        )?;
        let config_revision = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_config_revision_info",
                "The config revision the operator last wrote in the namespace (value 1)",
            ),
            &["namespace", "revision"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(flag_phase.clone()))?;
        registry.register(Box::new(flag_ready.clone()))?;
        registry.register(Box::new(flag_weight.clone()))?;
        registry.register(Box::new(config_flags.clone()))?;
        registry.register(Box::new(config_bytes.clone()))?;
        registry.register(Box::new(config_held_back.clone()))?;
        registry.register(Box::new(config_revision.clone()))?;
        let rollout = RolloutMetrics::new(&registry)?;
        Ok(Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            flag_phase,
            flag_ready,
            flag_weight,
            config_flags,
            config_bytes,
            config_held_back,
            config_revision,
            exported_revisions: Mutex::default(),
            exported_variants: Mutex::default(),
            rollout,
        })
    }

    pub fn reconcile_started(&self) -> ReconcileTimer {
        ReconcileTimer(Instant::now())
    }

    /// Records a finished reconcile; `error_reason` is `None` on success.
    pub fn reconcile_finished(&self, timer: ReconcileTimer, error_reason: Option<&str>) {
        self.reconcile_duration
            .observe(timer.0.elapsed().as_secs_f64());
        let result = if error_reason.is_some() {
            "error"
        } else {
            "success"
        };
        self.reconciles.with_label_values(&[result]).inc();
        if let Some(reason) = error_reason {
            self.reconcile_errors.with_label_values(&[reason]).inc();
        }
    }

    /// Records what a config write stored: its revision, its flags, its
    /// size, and how many flags' latest versions it had to leave out.
    pub fn config_written(
        &self,
        namespace: &str,
        revision: &str,
        flags: usize,
        bytes: usize,
        held_back: usize,
    ) {
        let mut revisions = self
            .exported_revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = revisions.insert(namespace.to_string(), revision.to_string())
            && old != revision
        {
            let _ = self
                .config_revision
                .remove_label_values(&[namespace, old.as_str()]);
        }
        self.config_revision
            .with_label_values(&[namespace, revision])
            .set(1);
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.config_flags
            .with_label_values(&[namespace])
            .set(gauge(flags));
        self.config_bytes
            .with_label_values(&[namespace])
            .set(gauge(bytes));
        self.config_held_back
            .with_label_values(&[namespace])
            .set(gauge(held_back));
    }

    /// Exports a flag's phase, readiness and weights from the status just written.
    pub fn flag_observed(&self, namespace: &str, flag: &str, status: &AIFeatureFlagStatus) {
        for phase in PHASES {
            let value = i64::from(status.phase == Some(phase));
            self.flag_phase
                .with_label_values(&[namespace, flag, phase_label(phase)])
                .set(value);
        }
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        self.flag_ready
            .with_label_values(&[namespace, flag])
            .set(i64::from(ready));

        let weights = status.current_weights.clone().unwrap_or_default();
        let key = (namespace.to_string(), flag.to_string());
        let mut exported = self
            .exported_variants
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for gone in exported
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|v| !weights.contains_key(*v))
        {
            let _ = self
                .flag_weight
                .remove_label_values(&[namespace, flag, gone.as_str()]);
        }
        for (variant, percent) in &weights {
            self.flag_weight
                .with_label_values(&[namespace, flag, variant.as_str()])
                .set(*percent);
        }
        exported.insert(key, weights.into_keys().collect());
    }

    /// Drops every series of a deleted flag.
    pub fn flag_removed(&self, namespace: &str, flag: &str) {
        for phase in PHASES {
            let _ = self
                .flag_phase
                .remove_label_values(&[namespace, flag, phase_label(phase)]);
        }
        let _ = self.flag_ready.remove_label_values(&[namespace, flag]);
        self.rollout.forget(namespace, flag);
        let key = (namespace.to_string(), flag.to_string());
        let mut exported = self
            .exported_variants
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for variant in exported.remove(&key).unwrap_or_default() {
            let _ = self
                .flag_weight
                .remove_label_values(&[namespace, flag, variant.as_str()]);
        }
    }

    /// For series of other parts of the operator (the webhook's, propagation's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format served on `/metrics`.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding metrics failed: {e}\n"))
    }
}

pub fn phase_label(phase: Phase) -> &'static str {
    match phase {
        Phase::Healthy => "Healthy",
        Phase::Progressing => "Progressing",
        Phase::Paused => "Paused",
        Phase::Degraded => "Degraded",
        Phase::Disabled => "Disabled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new().expect("metrics register")
    }

    fn status(phase: Phase, weights: &[(&str, f64)]) -> AIFeatureFlagStatus {
        AIFeatureFlagStatus {
            phase: Some(phase),
            current_weights: Some(weights.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn reconciles_are_counted_by_result_and_reason() {
        let m = metrics();
        m.reconcile_finished(m.reconcile_started(), None);
        m.reconcile_finished(m.reconcile_started(), Some("conflict"));
        let text = m.encode();
        assert!(text.contains("aiflags_operator_reconciles_total{result=\"success\"} 1"));
        assert!(text.contains("aiflags_operator_reconciles_total{result=\"error\"} 1"));
        assert!(text.contains("aiflags_operator_reconcile_errors_total{reason=\"conflict\"} 1"));
        assert!(text.contains("aiflags_operator_reconcile_duration_seconds_count 2"));
    }

    #[test]
    fn flag_series_follow_the_status_and_vanish_on_removal() {
        let m = metrics();
        m.flag_observed(
            "shop",
            "summarizer",
            &status(Phase::Healthy, &[("stable", 90.0), ("candidate", 10.0)]),
        );
        m.flag_observed(
            "shop",
            "summarizer",
            &status(Phase::Disabled, &[("stable", 100.0)]),
        );
        let text = m.encode();
        assert!(text.contains(
            "aiflags_operator_flag_phase{flag=\"summarizer\",namespace=\"shop\",phase=\"Disabled\"} 1"
        ));
        assert!(text.contains(
            "aiflags_operator_flag_phase{flag=\"summarizer\",namespace=\"shop\",phase=\"Healthy\"} 0"
        ));
        assert!(text.contains(
            "aiflags_operator_flag_weight_percent{flag=\"summarizer\",namespace=\"shop\",variant=\"stable\"} 100"
        ));
        assert!(!text.contains("variant=\"candidate\""), "{text}");

        m.flag_removed("shop", "summarizer");
        assert!(!m.encode().contains("summarizer"));
    }
}
