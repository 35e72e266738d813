//! The rollout engine's conditions, `Progressing` and `Aborted`, from its
//! record. Pure.
//!
//! | state | Progressing | Aborted |
//! | --- | --- | --- |
//! | walking the steps | True: `WaitingForProxies`, `StepPause`, `WaitingForAnalysis` or `AnalysisInconclusive` | False, `NotAborted` |
//! | paused | False: `Paused` (by hand) or `AwaitingResume` (a step without pause) | False |
//! | aborted | False, `Aborted` | True: `AnalysisFailed` or `AbortedByHand` |
//! | completed | False, `Completed` | False |
//! | stopped by `state: Disabled` | False, `Disabled` | False |

use aiflags_api::RolloutState;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::{AbortCause, Input, Record};
use crate::rollout::conditions::{
    ABORTED, ABORTED_BY_HAND, ANALYSIS_FAILED, AWAITING_RESUME, COMPLETED, DISABLED, NOT_ABORTED,
    PAUSED, PROGRESSING,
};

pub(super) fn rollout_conditions(record: &Record, input: &Input<'_>) -> Vec<Condition> {
    let previous = input
        .status
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let message = record.message.clone();
    let (status, reason) = match record.state {
        RolloutState::Progressing => ("True", record.hold),
        RolloutState::Paused if record.paused_at.is_some() => ("False", PAUSED),
        RolloutState::Paused => ("False", AWAITING_RESUME),
        RolloutState::Aborted => ("False", ABORTED),
        RolloutState::Completed => ("False", COMPLETED),
        RolloutState::Stopped => ("False", DISABLED),
    };
    let progressing = condition(
        PROGRESSING,
        status,
        reason,
        message.clone(),
        input,
        previous,
    );

    let aborted = if record.state == RolloutState::Aborted {
        let reason = match record.abort_cause {
            Some(AbortCause::Analysis) => ANALYSIS_FAILED,
            Some(AbortCause::Manual) => ABORTED_BY_HAND,
            // Aborted earlier: the cause stays what it was.
            None => find(previous, ABORTED)
                .filter(|c| c.status == "True")
                .map_or(ANALYSIS_FAILED, |c| {
                    if c.reason == ABORTED_BY_HAND {
                        ABORTED_BY_HAND
                    } else {
                        ANALYSIS_FAILED
                    }
                }),
        };
        condition(ABORTED, "True", reason, message, input, previous)
    } else {
        let message = format!(
            "not aborted; {} failed analysis checks since the rollout started",
            record.failed_checks
        );
        condition(ABORTED, "False", NOT_ABORTED, message, input, previous)
    };
    vec![progressing, aborted]
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    input: &Input<'_>,
    previous: &[Condition],
) -> Condition {
    // The time moves only when the status flips.
    let last_transition_time = find(previous, type_)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(input.now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(input.generation),
        last_transition_time,
    }
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
