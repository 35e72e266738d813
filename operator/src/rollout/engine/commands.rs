//! The manual commands: what abort, promote, pause and resume do in
//! each state of the rollout.

use aiflags_api::{RolloutState, RolloutStep};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{AbortCause, Record, notice, shift};
use crate::notice::Notice;
use crate::rollout::Command;

impl Record {
    pub(super) fn apply(
        &mut self,
        command: Command,
        steps: &[RolloutStep],
        now: Timestamp,
        events: &mut Vec<Notice>,
    ) {
        match (command, self.state) {
            (Command::Abort, RolloutState::Aborted) => {}
            (Command::Abort, _) => self.abort(
                AbortCause::Manual,
                "aborted by hand (aiflags.dev/abort)",
                events,
            ),
            (Command::Promote, RolloutState::Completed) if self.canary_weight >= 100.0 => {}
            (Command::Promote, _) => {
                self.state = RolloutState::Completed;
                self.step = steps.len().saturating_sub(1);
                self.canary_weight = 100.0;
                self.paused_at = None;
                self.step_started_at = Some(now);
                self.step_served_at = None;
                self.message =
                    "promoted by hand (aiflags.dev/promote): the canary gets 100%".into();
                events.push(notice(false, "RolloutPromoted", self.message.clone()));
            }
            (Command::Pause, RolloutState::Progressing) => {
                self.state = RolloutState::Paused;
                self.paused_at = Some(now);
                self.message = format!(
                    "paused by hand (aiflags.dev/pause) at step {} ({}%); analysis keeps running",
                    self.step + 1,
                    self.canary_weight
                );
                events.push(notice(false, "RolloutPaused", self.message.clone()));
            }
            (Command::Resume, RolloutState::Paused) => match self.paused_at.take() {
                Some(paused_at) => {
                    // The pause clock stood still while paused (and ran
                    // only from when the proxies served the step).
                    self.step_served_at = self.step_served_at.map(|served| {
                        let held = now.duration_since(paused_at.max(served));
                        shift(served, held.max(SignedDuration::ZERO))
                    });
                    self.state = RolloutState::Progressing;
                    self.message = format!("resumed at step {}", self.step + 1);
                    events.push(notice(false, "RolloutResumed", self.message.clone()));
                }
                None => {
                    self.state = RolloutState::Progressing;
                    events.push(notice(
                        false,
                        "RolloutResumed",
                        format!("resumed: step {} had no pause", self.step + 1),
                    ));
                    self.advance(steps, now, events);
                }
            },
            (Command::Resume, RolloutState::Aborted) => {
                let spec_hash = std::mem::take(&mut self.spec_hash);
                *self = Record::start(spec_hash, steps, now);
                events.push(notice(
                    false,
                    "RolloutRetried",
                    format!(
                        "resumed after an abort: the rollout starts again at step 1 ({}%)",
                        self.canary_weight
                    ),
                ));
            }
            // Pausing what does not move, resuming what is not paused.
            (Command::Pause | Command::Resume, _) => {}
        }
    }

    pub(super) fn abort(&mut self, cause: AbortCause, why: &str, events: &mut Vec<Notice>) {
        self.state = RolloutState::Aborted;
        self.canary_weight = 0.0;
        self.paused_at = None;
        self.abort_cause = Some(cause);
        self.aborted_now = true;
        self.message = format!(
            "{why} at step {}: the canary gets 0%, all traffic goes to the stable variant; \
             aiflags.dev/resume (or a spec change) starts it again at step 1",
            self.step + 1
        );
        events.push(notice(true, "RolloutAborted", self.message.clone()));
    }
}
