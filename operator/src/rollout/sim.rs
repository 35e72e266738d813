//! Test-only: drives the engine the way the reconciler does, keeping the
//! status between decisions (round-tripped through JSON, as the API
//! server keeps it) and a clock.

use aiflags_api::{
    AIFeatureFlagSpec, AIFeatureFlagStatus, AnalysisCheck, CheckResult, FlagState, RolloutState,
    RolloutStep,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::engine::{Decision, Input, Proxies, analysis_due, decide};
use super::view::with_engine_part;
use super::{Command, Verdict};

pub(crate) struct Sim {
    pub(crate) spec: AIFeatureFlagSpec,
    pub(crate) generation: i64,
    pub(crate) status: Option<AIFeatureFlagStatus>,
    pub(crate) now: Timestamp,
    /// The canary percent the proxies serve; `None`: behind.
    pub(crate) proxies: Option<f64>,
    /// What the next due check finds.
    pub(crate) verdicts: Verdicts,
    pub(crate) last: Option<Decision>,
    /// Every Event reason, in order.
    pub(crate) events: Vec<&'static str>,
    pub(crate) checks_asked: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdicts {
    Always(CheckResult),
    /// The shell could not ask (no verdict given).
    Missing,
}

const TEN_MIN: Option<&str> = Some("10m");

/// 10% (10m) → 50% (no pause: holds) → 100%.
pub(crate) fn three_steps() -> Sim {
    Sim::new(canary_spec(
        &[(10.0, TEN_MIN), (50.0, None), (100.0, None)],
        None,
    ))
}

/// 10% (10m) → 100% (10m), analysis every minute.
pub(crate) fn analysed() -> Sim {
    Sim::new(canary_spec(
        &[(10.0, TEN_MIN), (100.0, TEN_MIN)],
        Some("1m"),
    ))
}

/// Serves step 1 from t=0.
pub(crate) fn served(mut sim: Sim) -> Sim {
    sim.tick(None);
    sim.propagate().tick(None);
    sim
}

/// A canary spec: stable/candidate, these steps (`(weight, pause)`), and
/// analysis every `interval` when given.
pub(crate) fn canary_spec(
    steps: &[(f64, Option<&str>)],
    interval: Option<&str>,
) -> AIFeatureFlagSpec {
    let steps: Vec<_> = steps
        .iter()
        .map(|(w, p)| match p {
            Some(p) => json!({"weight": w, "pause": p}),
            None => json!({"weight": w}),
        })
        .collect();
    let mut rollout = json!({"canary": "candidate", "steps": steps});
    if let Some(interval) = interval {
        rollout["analysis"] =
            json!({"interval": interval, "failureLimit": 2, "maxErrorRate": 0.05});
    }
    serde_json::from_value(json!({
        "defaultVariant": "stable",
        "variants": [{"name": "stable", "model": "gpt-4o"}, {"name": "candidate", "model": "gpt-4.1"}],
        "rollout": rollout,
    }))
    .expect("a valid spec")
}

pub(crate) fn verdict(result: CheckResult) -> Verdict {
    Verdict {
        result,
        message: format!("{result:?}").to_lowercase(),
        canary: None,
        stable: None,
    }
}

impl Sim {
    pub(crate) fn new(spec: AIFeatureFlagSpec) -> Sim {
        Sim {
            spec,
            generation: 1,
            status: None,
            now: "2025-06-01T12:00:00Z".parse().expect("timestamp"),
            proxies: None,
            verdicts: Verdicts::Always(CheckResult::Pass),
            last: None,
            events: Vec::new(),
            checks_asked: 0,
        }
    }

    pub(crate) fn at(&mut self, seconds: i64) -> &mut Self {
        self.now = self
            .now
            .checked_add(SignedDuration::from_secs(seconds))
            .expect("in range");
        self
    }

    /// One reconcile: the command, a check if due, the decision, the write.
    pub(crate) fn tick(&mut self, command: Option<Command>) -> &Decision {
        let input = self.input(command);
        let due = analysis_due(&input);
        let verdict = match self.verdicts {
            Verdicts::Always(result) if due => Some(verdict(result)),
            _ => None,
        };
        let decision = decide(&input, verdict);
        self.checks_asked += usize::from(due);
        self.events.extend(decision.events.iter().map(|e| e.reason));
        self.status = Some(restored(with_engine_part(
            self.status.take(),
            &decision.status,
        )));
        self.last = Some(decision);
        self.last.as_ref().expect("just set")
    }

    pub(crate) fn input(&self, command: Option<Command>) -> Input<'_> {
        Input {
            spec: &self.spec,
            status: self.status.as_ref(),
            generation: self.generation,
            now: self.now,
            proxies: match self.proxies {
                Some(w) => Proxies::Serving(w),
                None => Proxies::Behind("2 of 3 proxies serve config revision abc".into()),
            },
            command,
        }
    }

    /// The proxies catch up with what the engine decided.
    pub(crate) fn propagate(&mut self) -> &mut Self {
        self.proxies = Some(self.weight());
        self
    }

    pub(crate) fn rollout_state(&self) -> RolloutState {
        self.rollout().state
    }

    pub(crate) fn rollout(&self) -> &aiflags_api::RolloutStatus {
        self.status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .expect("a rollout status")
    }

    pub(crate) fn weight(&self) -> f64 {
        self.rollout().canary_weight
    }

    pub(crate) fn step(&self) -> u32 {
        self.status
            .as_ref()
            .and_then(|s| s.current_step)
            .expect("a step")
    }

    pub(crate) fn failed(&self) -> u32 {
        self.status
            .as_ref()
            .and_then(|s| s.failed_checks)
            .unwrap_or(0)
    }

    pub(crate) fn checks(&self) -> &[AnalysisCheck] {
        &self.rollout().checks
    }

    /// `(status, reason)` of a condition.
    pub(crate) fn condition(&self, type_: &str) -> (String, String) {
        let c = self
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .expect("the condition");
        (c.status.clone(), c.reason.clone())
    }

    pub(crate) fn disable(&mut self, disabled: bool) -> &mut Self {
        self.spec.state = if disabled {
            FlagState::Disabled
        } else {
            FlagState::Enabled
        };
        self.generation += 1;
        self
    }

    pub(crate) fn set_steps(&mut self, steps: Vec<RolloutStep>) -> &mut Self {
        if let Some(rollout) = self.spec.rollout.as_mut() {
            rollout.steps = Some(steps);
        }
        self.generation += 1;
        self
    }
}

/// `status` as read back from the API server.
pub(crate) fn restored(status: AIFeatureFlagStatus) -> AIFeatureFlagStatus {
    let json = serde_json::to_string(&status).expect("serializable");
    serde_json::from_str(&json).expect("deserializable")
}
