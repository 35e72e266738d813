//! A running rollout's turn: the proxies, the analysis check, then the
//! step's pause and what follows it.

use std::time::Duration;

use aiflags_api::{AIFeatureFlagSpec, AnalysisCheck, CheckResult, RolloutState, RolloutStep};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{
    AbortCause, DEFAULT_FAILURE_LIMIT, Input, KEPT_CHECKS, Outcome, Proxies, Record, earliest,
    interval_of, notice, result_word, same_weight, shift, until,
};
use crate::notice::Notice;
use crate::rollout::Verdict;
use crate::rollout::conditions::{
    ANALYSIS_INCONCLUSIVE, STEP_PAUSE, WAITING_FOR_ANALYSIS, WAITING_FOR_PROXIES,
};

impl Record {
    /// Proxies, analysis, then the step's pause.
    pub(super) fn run(
        &mut self,
        input: &Input<'_>,
        steps: &[RolloutStep],
        verdict: Option<Verdict>,
        events: &mut Vec<Notice>,
        outcome: &mut Outcome,
    ) {
        let now = input.now;
        let Some(served_at) = self.served(input) else {
            return;
        };

        let settings = AnalysisSettings::of(input.spec);
        if self.check_due_at(input).is_some_and(|due_at| now >= due_at) {
            match verdict {
                Some(verdict) => {
                    self.record_check(verdict, now, settings, events, outcome);
                    if self.state == RolloutState::Aborted {
                        return;
                    }
                }
                // The shell did not ask (or could not): look again soon.
                None => outcome.requeue = Some(Duration::from_secs(1)),
            }
        }

        let Some(step) = steps.get(self.step) else {
            return;
        };
        let is_last = self.step + 1 >= steps.len();
        let pause_end = step
            .pause
            .as_deref()
            .and_then(|p| aiflags_api::duration::parse_duration_ms(p).ok())
            .map(|ms| shift(served_at, SignedDuration::from_millis(ms as i64)));

        if self.state == RolloutState::Progressing {
            match pause_end {
                None if is_last => {
                    self.complete(events);
                    return;
                }
                None => {
                    self.state = RolloutState::Paused;
                    self.message = format!(
                        "step {} ({}%) has no pause: it holds until resumed (aiflags.dev/resume); analysis keeps running",
                        self.step + 1,
                        self.canary_weight
                    );
                    events.push(notice(false, "RolloutPaused", self.message.clone()));
                }
                Some(end) if now >= end => match self.gate(settings, served_at) {
                    Gate::Open => {
                        if is_last {
                            self.complete(events);
                        } else {
                            self.advance(steps, now, events);
                        }
                        return;
                    }
                    Gate::Waiting(why) => {
                        self.hold = self.hold_for(WAITING_FOR_ANALYSIS, served_at);
                        self.message = format!(
                            "step {} ({}%): the pause is over; waiting for a passing analysis check: {why}",
                            self.step + 1,
                            self.canary_weight
                        );
                    }
                },
                Some(end) => {
                    self.hold = self.hold_for(STEP_PAUSE, served_at);
                    self.message = format!(
                        "step {} ({}%): pausing until {end}{}",
                        self.step + 1,
                        self.canary_weight,
                        self.last_result_note(served_at)
                    );
                    outcome.requeue = earliest(outcome.requeue, until(now, end));
                }
            }
        }
        if let Some(due_at) = self.check_due_at(input) {
            outcome.requeue = earliest(outcome.requeue, until(now, due_at));
        }
    }

    pub(super) fn wait_for_proxies(&mut self, proxies: &Proxies) {
        let why = match proxies {
            Proxies::Behind(why) => why.clone(),
            Proxies::Serving(w) => {
                format!("the proxies serve {w}%, not {}% yet", self.canary_weight)
            }
        };
        self.message = format!(
            "step {} ({}%): waiting for the proxies to serve it: {why}",
            self.step + 1,
            self.canary_weight
        );
        self.hold = WAITING_FOR_PROXIES;
    }

    /// When the proxies first served this step, noting it now if they just did.
    fn served(&mut self, input: &Input<'_>) -> Option<Timestamp> {
        if self.step_served_at.is_none()
            && matches!(input.proxies, Proxies::Serving(w) if same_weight(w, self.canary_weight))
        {
            self.step_served_at = Some(input.now);
        }
        self.step_served_at
    }

    /// When the next check is due: an interval after the later of the last
    /// check and the moment the step was served. `None`: no analysis, or
    /// no canary traffic to analyse, or not served yet.
    pub(super) fn check_due_at(&self, input: &Input<'_>) -> Option<Timestamp> {
        let settings = AnalysisSettings::of(input.spec)?;
        if self.canary_weight <= 0.0 {
            return None;
        }
        let served = self.step_served_at.or_else(|| {
            // Not noted yet, but noted by this decision.
            matches!(input.proxies, Proxies::Serving(w) if same_weight(w, self.canary_weight))
                .then_some(input.now)
        })?;
        let last = self.checks.last().map(|c| c.time.0).filter(|t| *t > served);
        Some(shift(
            last.unwrap_or(served),
            SignedDuration::try_from(settings.interval).unwrap_or(SignedDuration::MAX),
        ))
    }

    fn record_check(
        &mut self,
        verdict: Verdict,
        now: Timestamp,
        settings: Option<AnalysisSettings>,
        events: &mut Vec<Notice>,
        outcome: &mut Outcome,
    ) {
        let previous = self.checks.last().map(|c| c.result);
        let check = AnalysisCheck {
            time: Time(now),
            step: u32::try_from(self.step + 1).unwrap_or(u32::MAX),
            result: verdict.result,
            message: verdict.message,
            canary: verdict.canary,
            stable: verdict.stable,
        };
        self.checks.push(check.clone());
        if self.checks.len() > KEPT_CHECKS {
            self.checks.drain(..self.checks.len() - KEPT_CHECKS);
        }
        outcome.check = Some(check.clone());
        match check.result {
            CheckResult::Fail => {
                self.failed_checks = self.failed_checks.saturating_add(1);
                let limit = settings.map_or(DEFAULT_FAILURE_LIMIT, |s| s.failure_limit);
                events.push(notice(
                    true,
                    "AnalysisFailed",
                    format!(
                        "check {} of {limit} failed at step {}: {}",
                        self.failed_checks,
                        self.step + 1,
                        check.message
                    ),
                ));
                if self.failed_checks >= limit {
                    self.abort(
                        AbortCause::Analysis,
                        &format!("{} failed analysis checks", self.failed_checks),
                        events,
                    );
                    outcome.aborted = true;
                }
            }
            CheckResult::Inconclusive if previous != Some(CheckResult::Inconclusive) => {
                events.push(notice(
                    true,
                    "AnalysisInconclusive",
                    format!(
                        "analysis inconclusive at step {}; the rollout holds: {}",
                        self.step + 1,
                        check.message
                    ),
                ));
            }
            CheckResult::Pass | CheckResult::Inconclusive => {}
        }
    }

    /// Whether the analysis lets the step advance: the latest check since
    /// the step was served passed (no analysis, or no canary traffic to
    /// judge: yes).
    fn gate(&self, settings: Option<AnalysisSettings>, served_at: Timestamp) -> Gate {
        if settings.is_none() || self.canary_weight <= 0.0 {
            return Gate::Open;
        }
        match self.checks.last().filter(|c| c.time.0 >= served_at) {
            Some(check) if check.result == CheckResult::Pass => Gate::Open,
            Some(check) => Gate::Waiting(format!(
                "the last check was {}: {}",
                result_word(check.result),
                check.message
            )),
            None => Gate::Waiting("no check at this step yet".into()),
        }
    }

    /// `otherwise`, unless the latest check at this step was inconclusive:
    /// that is what the condition must show (say, Prometheus unreachable).
    fn hold_for(&self, otherwise: &'static str, served_at: Timestamp) -> &'static str {
        match self.checks.last().filter(|c| c.time.0 >= served_at) {
            Some(check) if check.result == CheckResult::Inconclusive => ANALYSIS_INCONCLUSIVE,
            _ => otherwise,
        }
    }

    fn last_result_note(&self, served_at: Timestamp) -> String {
        match self.checks.last().filter(|c| c.time.0 >= served_at) {
            Some(check) => format!(
                "; last check {}: {}",
                result_word(check.result),
                check.message
            ),
            None => String::new(),
        }
    }

    pub(super) fn advance(
        &mut self,
        steps: &[RolloutStep],
        now: Timestamp,
        events: &mut Vec<Notice>,
    ) {
        let Some(next) = steps.get(self.step + 1) else {
            self.complete(events);
            return;
        };
        let from = self.canary_weight;
        self.step += 1;
        self.canary_weight = next.weight;
        self.state = RolloutState::Progressing;
        self.step_started_at = Some(now);
        self.step_served_at = None;
        self.paused_at = None;
        events.push(notice(
            false,
            "StepAdvanced",
            format!(
                "step {} of {}: the canary goes from {from}% to {}%",
                self.step + 1,
                steps.len(),
                self.canary_weight
            ),
        ));
    }

    pub(super) fn complete(&mut self, events: &mut Vec<Notice>) {
        self.state = RolloutState::Completed;
        self.paused_at = None;
        self.message = format!(
            "completed at step {}: the canary gets {}%",
            self.step + 1,
            self.canary_weight
        );
        events.push(notice(false, "RolloutCompleted", self.message.clone()));
    }
}

enum Gate {
    Open,
    Waiting(String),
}

/// The analysis settings with their defaults; `None` without analysis.
#[derive(Clone, Copy, Debug)]
struct AnalysisSettings {
    interval: Duration,
    failure_limit: u32,
}

impl AnalysisSettings {
    fn of(spec: &AIFeatureFlagSpec) -> Option<AnalysisSettings> {
        let analysis = spec.rollout.as_ref()?.analysis.as_ref()?;
        Some(AnalysisSettings {
            interval: interval_of(analysis),
            failure_limit: analysis
                .failure_limit
                .unwrap_or(DEFAULT_FAILURE_LIMIT)
                .max(1),
        })
    }
}
