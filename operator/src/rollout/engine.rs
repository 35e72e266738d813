//! The rollout engine: a pure state machine over a flag's progressive
//! rollout (`rollout.canary` + `rollout.steps`).
//!
//! Input: the spec, the engine's part of the status as last written, the
//! clock, whether the proxies serve the canary weight, a manual command,
//! and (when one is due) an analysis verdict. Output: the engine's part of
//! the status to write (from which the compile takes the canary weight),
//! Events, and when to look again. No I/O: the reconciler and the test
//! harness wrap it.
//!
//! The rules (docs/rollout.md says the same for users):
//! - A rollout starts at step 1 when its spec is first seen, and starts
//!   again when the spec changes (all but `state` and `rollout.analysis`,
//!   see [`aiflags_api::rollout_identity`]) or the flag is enabled again
//!   after `state: Disabled` stopped it.
//! - A step's pause starts once every proxy serves the step's weight.
//!   With analysis, the step advances when its pause is over and the
//!   latest check since then passed; an inconclusive check holds it.
//! - A step without `pause` holds until resumed, except the last step,
//!   which completes the rollout once served.
//! - Analysis runs every `interval` while the canary gets traffic (also
//!   while paused); `failureLimit` failed checks abort: canary weight 0.
//! - Commands: abort (canary to 0, from any state), promote (canary to
//!   100%, completed), pause (hold the step, the pause clock stops),
//!   resume (after a pause: go on; at a step without pause: the next step;
//!   after an abort: start again at step 1).

use std::time::Duration;

use aiflags_api::{
    AIFeatureFlagSpec, AIFeatureFlagStatus, Analysis, AnalysisCheck, CheckResult, FlagState,
    RolloutState, RolloutStatus, RolloutStep, rollout_identity,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use self::status::rollout_conditions;
use super::conditions::WAITING_FOR_PROXIES;
use super::{Command, Verdict};
use crate::notice::Notice;

/// Analysis defaults, as the CRD documents them.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_FAILURE_LIMIT: u32 = 2;
pub const DEFAULT_MIN_REQUESTS: u64 = 50;
/// Checks kept in `status.rollout.checks`.
pub const KEPT_CHECKS: usize = 10;
/// How soon to look again while proxies catch up (their status change
/// also triggers a reconcile; this is the backstop).
pub const PROXY_WAIT: Duration = Duration::from_secs(5);

/// Whether the proxies serve the canary weight the engine decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Proxies {
    /// Every proxy the flag applies to serves the latest config, in which
    /// the flag (this generation) has this canary percent.
    Serving(f64),
    /// Not (yet): why, for the status message.
    Behind(String),
}

/// Everything the engine decides from.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub spec: &'a AIFeatureFlagSpec,
    /// The status as last read; only the engine's fields matter.
    pub status: Option<&'a AIFeatureFlagStatus>,
    pub generation: i64,
    pub now: Timestamp,
    pub proxies: Proxies,
    pub command: Option<Command>,
}

/// What the engine decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The engine's part of the status: `currentStep`, `failedChecks`,
    /// `rollout` and the `Progressing` and `Aborted` conditions. All empty
    /// for a flag without steps (which removes what an earlier rollout left).
    pub status: AIFeatureFlagStatus,
    pub events: Vec<Notice>,
    /// Look again after this, at the latest.
    pub requeue: Option<Duration>,
    /// The check recorded by this decision.
    pub check: Option<AnalysisCheck>,
    /// This decision aborted the rollout.
    pub aborted: bool,
}

/// Whether an analysis check is due now: the shell then asks Prometheus
/// and passes the verdict to [`decide`].
pub fn analysis_due(input: &Input<'_>) -> bool {
    let input = &whole_seconds(input);
    let Some(steps) = steps_of(input.spec) else {
        return false;
    };
    let mut ignored = Vec::new();
    match prepare(input, steps, &mut ignored) {
        Prepared::Running(record) => record.check_due_at(input).is_some_and(|at| input.now >= at),
        Prepared::Settled(_) => false,
    }
}

/// The next state of the rollout. `verdict` is used only when a check is
/// due ([`analysis_due`]); without it a due check simply waits.
pub fn decide(input: &Input<'_>, verdict: Option<Verdict>) -> Decision {
    let input = &whole_seconds(input);
    let Some(steps) = steps_of(input.spec) else {
        return Decision {
            status: AIFeatureFlagStatus::default(),
            events: Vec::new(),
            requeue: None,
            check: None,
            aborted: false,
        };
    };
    let mut events = Vec::new();
    let mut outcome = Outcome::default();
    let record = match prepare(input, steps, &mut events) {
        Prepared::Settled(record) => {
            outcome.aborted = record.aborted_now;
            record
        }
        Prepared::Running(mut record) => {
            record.run(input, steps, verdict, &mut events, &mut outcome);
            if record.state == RolloutState::Progressing && record.step_served_at.is_none() {
                // Also right after a step: the message a later decision
                // would give, so that decision writes nothing new.
                record.wait_for_proxies(&input.proxies);
                outcome.requeue = earliest(outcome.requeue, Some(PROXY_WAIT));
            }
            record
        }
    };
    Decision {
        status: record.to_status(input, steps),
        events,
        requeue: outcome.requeue,
        check: outcome.check,
        aborted: outcome.aborted || record.aborted_now,
    }
}

/// `input` with the clock read in whole seconds: the status keeps times
/// so (`metav1.Time`), and the engine must decide the same from its own
/// record as from the status an operator restarted from.
fn whole_seconds<'a>(input: &Input<'a>) -> Input<'a> {
    let now = Timestamp::from_second(input.now.as_second()).unwrap_or(input.now);
    Input {
        now,
        ..input.clone()
    }
}

mod commands;
mod status;
mod steps;

fn steps_of(spec: &AIFeatureFlagSpec) -> Option<&[RolloutStep]> {
    let rollout = spec.rollout.as_ref()?;
    rollout.canary.as_ref()?;
    rollout.steps.as_deref().filter(|s| !s.is_empty())
}

/// Why a rollout was aborted, for the `Aborted` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortCause {
    Analysis,
    Manual,
}

/// The engine's record, typed: read from and written to the status.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Record {
    pub(super) spec_hash: String,
    pub(super) state: RolloutState,
    /// 0-based.
    pub(super) step: usize,
    pub(super) canary_weight: f64,
    pub(super) step_started_at: Option<Timestamp>,
    pub(super) step_served_at: Option<Timestamp>,
    pub(super) paused_at: Option<Timestamp>,
    pub(super) checks: Vec<AnalysisCheck>,
    pub(super) failed_checks: u32,
    pub(super) message: String,
    /// Set when this decision aborts.
    pub(super) abort_cause: Option<AbortCause>,
    aborted_now: bool,
    /// What a progressing rollout waits for: the `Progressing` reason.
    pub(super) hold: &'static str,
}

enum Prepared {
    /// Stopped, aborted or completed: nothing runs.
    Settled(Record),
    /// Progressing or paused: proxies, analysis and steps apply.
    Running(Record),
}

#[derive(Default)]
struct Outcome {
    requeue: Option<Duration>,
    check: Option<AnalysisCheck>,
    aborted: bool,
}

/// Kill switch, start or restart, then the manual command.
fn prepare(input: &Input<'_>, steps: &[RolloutStep], events: &mut Vec<Notice>) -> Prepared {
    let hash = rollout_identity(input.spec);
    let previous = input.status.and_then(|s| Record::from_status(s, steps));
    let now = input.now;

    if input.spec.state == FlagState::Disabled {
        let record = match previous {
            Some(p) if p.spec_hash == hash && p.state == RolloutState::Stopped => p,
            previous => {
                if previous.is_some() {
                    events.push(notice(
                        false,
                        "RolloutStopped",
                        "state: Disabled stops the rollout; all traffic goes to defaultVariant"
                            .into(),
                    ));
                }
                Record {
                    state: RolloutState::Stopped,
                    canary_weight: 0.0,
                    paused_at: None,
                    message: "state: Disabled stopped the rollout; all traffic goes to defaultVariant; enabling the flag starts it again at step 1".into(),
                    ..previous.unwrap_or_else(|| Record::start(hash, steps, now))
                }
            }
        };
        return Prepared::Settled(record);
    }

    let mut record = match previous {
        Some(p) if p.spec_hash == hash && p.state != RolloutState::Stopped => p,
        Some(p) => {
            let why = if p.state == RolloutState::Stopped {
                "the flag is enabled again"
            } else {
                "the spec changed"
            };
            let record = Record::start(hash, steps, now);
            events.push(notice(
                false,
                "RolloutRestarted",
                format!(
                    "{why}: the rollout starts again at step 1 ({}%)",
                    record.canary_weight
                ),
            ));
            record
        }
        None => {
            let record = Record::start(hash, steps, now);
            events.push(notice(
                false,
                "RolloutStarted",
                format!("the rollout starts at step 1 ({}%)", record.canary_weight),
            ));
            record
        }
    };

    if let Some(command) = input.command {
        record.apply(command, steps, now, events);
    }
    match record.state {
        RolloutState::Progressing | RolloutState::Paused => Prepared::Running(record),
        _ => Prepared::Settled(record),
    }
}

impl Record {
    fn start(spec_hash: String, steps: &[RolloutStep], now: Timestamp) -> Record {
        Record {
            spec_hash,
            state: RolloutState::Progressing,
            step: 0,
            canary_weight: steps.first().map_or(0.0, |s| s.weight),
            step_started_at: Some(now),
            step_served_at: None,
            paused_at: None,
            checks: Vec::new(),
            failed_checks: 0,
            message: String::new(),
            abort_cause: None,
            aborted_now: false,
            hold: WAITING_FOR_PROXIES,
        }
    }

    pub(super) fn from_status(
        status: &AIFeatureFlagStatus,
        steps: &[RolloutStep],
    ) -> Option<Record> {
        let rollout = status.rollout.as_ref()?;
        let last = steps.len().saturating_sub(1);
        let step = (status.current_step.unwrap_or(1).max(1) as usize - 1).min(last);
        Some(Record {
            spec_hash: rollout.spec_hash.clone(),
            state: rollout.state,
            step,
            canary_weight: rollout.canary_weight,
            step_started_at: rollout.step_started_at.as_ref().map(|t| t.0),
            step_served_at: rollout.step_served_at.as_ref().map(|t| t.0),
            paused_at: rollout.paused_at.as_ref().map(|t| t.0),
            checks: rollout.checks.clone(),
            failed_checks: status.failed_checks.unwrap_or(0),
            message: rollout.message.clone(),
            abort_cause: None,
            aborted_now: false,
            hold: WAITING_FOR_PROXIES,
        })
    }

    fn to_status(&self, input: &Input<'_>, steps: &[RolloutStep]) -> AIFeatureFlagStatus {
        let step = u32::try_from(self.step + 1).unwrap_or(u32::MAX);
        AIFeatureFlagStatus {
            current_step: Some(step),
            failed_checks: Some(self.failed_checks),
            conditions: rollout_conditions(self, input),
            rollout: Some(RolloutStatus {
                spec_hash: self.spec_hash.clone(),
                state: self.state,
                step_summary: Some(format!("{step}/{}", steps.len())),
                canary_weight: self.canary_weight,
                step_started_at: self.step_started_at.map(Time),
                step_served_at: self.step_served_at.map(Time),
                paused_at: self.paused_at.map(Time),
                checks: self.checks.clone(),
                message: self.message.clone(),
            }),
            ..AIFeatureFlagStatus::default()
        }
    }
}

pub(super) fn result_word(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "passed",
        CheckResult::Fail => "failed",
        CheckResult::Inconclusive => "inconclusive",
    }
}

/// Weights are percents with at most 2 decimals.
fn same_weight(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.005
}

fn shift(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.checked_add(by).unwrap_or(if by.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Time from `now` until `at`; at least a second, so a requeue never spins.
fn until(now: Timestamp, at: Timestamp) -> Option<Duration> {
    let left = at.duration_since(now);
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Some(left.max(Duration::from_secs(1)))
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `analysis.interval`, 1m when absent (or unreadable: the compiler rejects that).
pub fn interval_of(analysis: &Analysis) -> Duration {
    analysis
        .interval
        .as_deref()
        .and_then(|i| aiflags_api::duration::parse_duration_ms(i).ok())
        .map_or(DEFAULT_INTERVAL, Duration::from_millis)
}

/// An Event of the rollout.
pub(crate) fn notice(warning: bool, reason: &'static str, note: String) -> Notice {
    Notice {
        warning,
        reason,
        action: "Rollout",
        note,
    }
}
