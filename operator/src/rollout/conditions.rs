//! The rollout engine's conditions, `Progressing` and `Aborted`: their
//! types and reasons, and the engine's part of a status. The engine sets them
//! (`engine/status.rs`). Pure.

use aiflags_api::AIFeatureFlagStatus;

pub const PROGRESSING: &str = "Progressing";
pub const ABORTED: &str = "Aborted";

pub const WAITING_FOR_PROXIES: &str = "WaitingForProxies";
pub const STEP_PAUSE: &str = "StepPause";
pub const WAITING_FOR_ANALYSIS: &str = "WaitingForAnalysis";
/// The latest check could not judge: too few requests, or Prometheus
/// unreachable or failing. The rollout holds.
pub const ANALYSIS_INCONCLUSIVE: &str = "AnalysisInconclusive";
pub const PAUSED: &str = "Paused";
pub const AWAITING_RESUME: &str = "AwaitingResume";
pub const COMPLETED: &str = "Completed";
pub const DISABLED: &str = "Disabled";
pub const ANALYSIS_FAILED: &str = "AnalysisFailed";
pub const ABORTED_BY_HAND: &str = "AbortedByHand";
pub const NOT_ABORTED: &str = "NotAborted";

/// The engine's part of `status`, to tell whether a write is due.
pub fn engine_part(status: Option<&AIFeatureFlagStatus>) -> AIFeatureFlagStatus {
    let Some(status) = status else {
        return AIFeatureFlagStatus::default();
    };
    AIFeatureFlagStatus {
        current_step: status.current_step,
        failed_checks: status.failed_checks,
        rollout: status.rollout.clone(),
        conditions: status
            .conditions
            .iter()
            .filter(|c| c.type_ == PROGRESSING || c.type_ == ABORTED)
            .cloned()
            .collect(),
        ..AIFeatureFlagStatus::default()
    }
}
