//! The rollout engine's metrics, per flag. The canary's weight is
//! `aiflags_operator_flag_weight_percent` (the served split) and the phase
//! `aiflags_operator_flag_phase`, both from the reconciler.

use aiflags_api::{AIFeatureFlagStatus, CheckResult};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

const RESULTS: [CheckResult; 3] = [
    CheckResult::Pass,
    CheckResult::Fail,
    CheckResult::Inconclusive,
];

#[derive(Clone)]
pub struct RolloutMetrics {
    step: IntGaugeVec,
    checks: IntCounterVec,
    last_result: IntGaugeVec,
    aborts: IntCounterVec,
}

impl RolloutMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let step = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_rollout_step",
                "The progressive rollout's current step, counted from 1",
            ),
            &["namespace", "flag"],
        )?;
        let checks = IntCounterVec::new(
            Opts::new(
                "aiflags_operator_analysis_checks_total",
                "Analysis checks of a canary, by result (pass, fail, inconclusive)",
            ),
            &["namespace", "flag", "result"],
        )?;
        let last_result = IntGaugeVec::new(
            Opts::new(
                "aiflags_operator_analysis_last_result",
                "1 for the result of the canary's latest analysis check, 0 for the others",
            ),
            &["namespace", "flag", "result"],
        )?;
        let aborts = IntCounterVec::new(
            Opts::new(
                "aiflags_operator_rollout_aborts_total",
                "Progressive rollouts aborted, by failed analysis or by hand",
            ),
            &["namespace", "flag"],
        )?;
        registry.register(Box::new(step.clone()))?;
        registry.register(Box::new(checks.clone()))?;
        registry.register(Box::new(last_result.clone()))?;
        registry.register(Box::new(aborts.clone()))?;
        Ok(RolloutMetrics {
            step,
            checks,
            last_result,
            aborts,
        })
    }

    pub fn checked(&self, namespace: &str, flag: &str, result: CheckResult) {
        self.checks
            .with_label_values(&[namespace, flag, label(result)])
            .inc();
        for r in RESULTS {
            self.last_result
                .with_label_values(&[namespace, flag, label(r)])
                .set(i64::from(r == result));
        }
    }

    pub fn aborted(&self, namespace: &str, flag: &str) {
        self.aborts.with_label_values(&[namespace, flag]).inc();
    }

    /// Exports the step of the engine's status, or drops it (no rollout).
    pub fn observed(&self, namespace: &str, flag: &str, status: &AIFeatureFlagStatus) {
        match status.current_step.filter(|_| status.rollout.is_some()) {
            Some(step) => self
                .step
                .with_label_values(&[namespace, flag])
                .set(i64::from(step)),
            None => self.removed(namespace, flag),
        }
    }

    /// Drops every series of a deleted flag.
    pub fn forget(&self, namespace: &str, flag: &str) {
        self.removed(namespace, flag);
        let _ = self.aborts.remove_label_values(&[namespace, flag]);
        for r in RESULTS {
            let _ = self
                .checks
                .remove_label_values(&[namespace, flag, label(r)]);
        }
    }

    /// Drops a flag's gauges (its counters stay: they only grow).
    pub fn removed(&self, namespace: &str, flag: &str) {
        let _ = self.step.remove_label_values(&[namespace, flag]);
        for r in RESULTS {
            let _ = self
                .last_result
                .remove_label_values(&[namespace, flag, label(r)]);
        }
    }
}

pub fn label(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "pass",
        CheckResult::Fail => "fail",
        CheckResult::Inconclusive => "inconclusive",
    }
}

#[cfg(test)]
mod tests {
    use aiflags_api::RolloutStatus;

    use super::*;

    #[test]
    fn checks_aborts_and_steps_per_flag() {
        let registry = Registry::new();
        let m = RolloutMetrics::new(&registry).expect("registered");
        m.checked("shop", "summarizer", CheckResult::Pass);
        m.checked("shop", "summarizer", CheckResult::Fail);
        m.aborted("shop", "summarizer");
        let status = AIFeatureFlagStatus {
            current_step: Some(2),
            rollout: Some(RolloutStatus::default()),
            ..Default::default()
        };
        m.observed("shop", "summarizer", &status);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encodes");
        for line in [
            r#"aiflags_operator_analysis_checks_total{flag="summarizer",namespace="shop",result="pass"} 1"#,
            r#"aiflags_operator_analysis_checks_total{flag="summarizer",namespace="shop",result="fail"} 1"#,
            r#"aiflags_operator_analysis_last_result{flag="summarizer",namespace="shop",result="fail"} 1"#,
            r#"aiflags_operator_analysis_last_result{flag="summarizer",namespace="shop",result="pass"} 0"#,
            r#"aiflags_operator_rollout_aborts_total{flag="summarizer",namespace="shop"} 1"#,
            r#"aiflags_operator_rollout_step{flag="summarizer",namespace="shop"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        m.observed("shop", "summarizer", &AIFeatureFlagStatus::default());
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encodes");
        assert!(!text.contains("aiflags_operator_rollout_step{"), "{text}");
        assert!(
            !text.contains("aiflags_operator_analysis_last_result{"),
            "{text}"
        );
    }
}
