//! What a flag's status and Events should say after a compile. Pure.
//!
//! Choices:
//! - `phase` describes the traffic actually served, not the latest spec: the
//!   serving version's kill switch gives `Disabled`, a progressive rollout
//!   the phase of its engine's state (`Progressing`, `Paused`, `Degraded`
//!   when aborted, `Healthy` when completed), otherwise `Healthy`; a
//!   flag that was never valid serves nothing and is `Degraded`. An invalid
//!   update therefore keeps the phase of the version still serving and only
//!   turns `Ready` to `False` (reason `InvalidSpec`).
//! - `currentWeights` is the serving version's configured split (the rollout
//!   position, which [`aiflags_api::FlagInput::from_resource`] reads back for
//!   canaries); `split` shows what is served right now, so the kill switch
//!   reads `stable=100 candidate=0` there.
//! - A valid generation held back because the namespace's config would not
//!   fit in its ConfigMap ([`super::fit`]) is treated like an invalid one:
//!   `Ready=False, reason=ConfigTooLarge`, and the version served before (if
//!   any) keeps serving.
//! - Events fire only when the `Ready` condition or the observed generation
//!   changes, so periodic resyncs and other flags' changes stay quiet.

use aiflags_api::{
    AIFeatureFlag, AIFeatureFlagStatus, CompiledFlag, FlagOutcome, Phase, RolloutState,
    RolloutStatus, SidecarConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::fit::Refusal;

pub const READY: &str = "Ready";
/// Ready=True: the latest generation compiled and is in the config.
pub const COMPILED: &str = "Compiled";
/// Ready=False: the latest generation does not compile; message = every error.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Ready=False: the latest generation compiled, but the namespace's config
/// would not fit in its ConfigMap with it.
pub const CONFIG_TOO_LARGE: &str = "ConfigTooLarge";
/// Event of a deleted flag leaving the config.
pub const REMOVED: &str = "Removed";

/// Events are limited to 1 kB of note.
const MAX_NOTE_BYTES: usize = 1024;

pub use crate::notice::Notice;

/// The status a flag should have once `config` (compiled with `outcome` for
/// it, and without its latest version if `refusal` says so) is written: only the fields this reconcile computes, because it is
/// server-side applied with force and would otherwise take over (and revert)
/// fields other writers own: `proxies` and the `Propagated` condition (the
/// propagation pass), `currentStep`, `failedChecks`, `rollout` and the
/// `Progressing` and `Aborted` conditions (the rollout engine).
/// `conditions` is a map keyed by `type` in the CRD, so applying `Ready`
/// alone leaves the other conditions to their owners.
pub fn desired_status(
    flag: &AIFeatureFlag,
    outcome: &FlagOutcome,
    refusal: Option<&Refusal>,
    config: &SidecarConfig,
    now: Timestamp,
) -> AIFeatureFlagStatus {
    let name = flag.metadata.name.as_deref().unwrap_or_default();
    let generation = flag.metadata.generation.unwrap_or_default();
    let previous_conditions = flag
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let serving = config
        .flag(name)
        .filter(|f| f.namespace == flag.metadata.namespace);
    // Errors come first: an invalid spec is what the author must fix.
    let refusal = refusal.filter(|_| outcome.is_valid());

    let ready = ready_condition(generation, outcome, refusal, previous_conditions, now);

    AIFeatureFlagStatus {
        observed_generation: flag.metadata.generation,
        phase: Some(phase(serving, rollout_of(flag))),
        conditions: vec![ready],
        serving_generation: serving.map(|f| f.generation),
        config_revision: serving.map(|_| config.revision.clone()),
        current_weights: serving.map(|f| {
            f.variants
                .iter()
                .zip(&f.weights)
                .map(|(v, bp)| (v.name.clone(), percent(*bp)))
                .collect()
        }),
        split: serving.map(split),
        message: Some(message(
            generation,
            outcome,
            refusal,
            serving,
            &config.revision,
        )),
        current_step: None,
        proxies: None,
        failed_checks: None,
        rollout: None,
    }
}

/// The engine's record of a flag with `rollout.steps`.
fn rollout_of(flag: &AIFeatureFlag) -> Option<&RolloutStatus> {
    let steps = flag.spec.rollout.as_ref()?.steps.as_ref();
    steps.and(flag.status.as_ref()?.rollout.as_ref())
}

/// The part of `status` that [`desired_status`] computes, to tell whether a
/// status write is due without counting other owners' fields as drift.
pub fn reconciled_part(status: &AIFeatureFlagStatus) -> AIFeatureFlagStatus {
    AIFeatureFlagStatus {
        conditions: status
            .conditions
            .iter()
            .filter(|c| c.type_ == READY)
            .cloned()
            .collect(),
        current_step: None,
        proxies: None,
        failed_checks: None,
        rollout: None,
        ..status.clone()
    }
}

/// The served flag's phase; a progressive rollout's from its engine's
/// record (which belongs to the served version: the engine holds while
/// the latest spec is invalid).
fn phase(serving: Option<&CompiledFlag>, rollout: Option<&RolloutStatus>) -> Phase {
    match (serving, rollout) {
        (None, _) => Phase::Degraded,
        (Some(flag), _) if !flag.enabled => Phase::Disabled,
        (Some(_), Some(rollout)) => match rollout.state {
            RolloutState::Progressing => Phase::Progressing,
            RolloutState::Paused => Phase::Paused,
            RolloutState::Aborted => Phase::Degraded,
            RolloutState::Completed => Phase::Healthy,
            RolloutState::Stopped => Phase::Disabled,
        },
        (Some(_), None) => Phase::Healthy,
    }
}

fn ready_condition(
    generation: i64,
    outcome: &FlagOutcome,
    refusal: Option<&Refusal>,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    let (status, reason, message) = if !outcome.is_valid() {
        let errors: Vec<String> = outcome.errors.iter().map(ToString::to_string).collect();
        ("False", INVALID_SPEC, errors.join("; "))
    } else if let Some(refusal) = refusal {
        ("False", CONFIG_TOO_LARGE, too_large(generation, refusal))
    } else {
        (
            "True",
            COMPILED,
            format!("generation {generation} compiled"),
        )
    };
    // By convention the time moves only when the status flips; keeping it
    // also keeps the status byte-identical across resyncs (no watch churn).
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == READY && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// Why a refused generation is not served, with the numbers.
fn too_large(generation: i64, refusal: &Refusal) -> String {
    let over = if refusal.full_stored_len > refusal.limits.stored {
        format!(
            "{} stored bytes ({}), over the ConfigMap limit of {}",
            refusal.full_stored_len, refusal.full_format, refusal.limits.stored
        )
    } else {
        format!(
            "{} bytes of JSON, over the sidecars' limit of {}",
            refusal.full_json_len, refusal.limits.json
        )
    };
    format!(
        "generation {generation} compiled but is left out of aiflags-config: with every flag the \
         namespace's config would take {over}; flags are admitted oldest first, so shrink or \
         delete flags to make room"
    )
}

fn message(
    generation: i64,
    outcome: &FlagOutcome,
    refusal: Option<&Refusal>,
    serving: Option<&CompiledFlag>,
    revision: &str,
) -> String {
    let errors: Vec<String> = outcome.errors.iter().map(ToString::to_string).collect();
    if let Some(refusal) = refusal {
        let reason = too_large(generation, refusal);
        return match serving {
            Some(flag) => format!(
                "generation {} keeps serving {} in config revision {revision}: {reason}",
                flag.generation,
                split(flag)
            ),
            None => format!("nothing is served: {reason}"),
        };
    }
    match serving {
        Some(flag) if outcome.is_valid() => format!(
            "generation {generation} serves {} in config revision {revision}",
            split(flag)
        ),
        Some(flag) => format!(
            "generation {generation} is invalid; generation {} keeps serving {} in config revision {revision}: {}",
            flag.generation,
            split(flag),
            errors.join("; ")
        ),
        None if outcome.is_valid() => {
            format!("generation {generation} compiled but is not in the config")
        }
        None => format!(
            "generation {generation} is invalid and no earlier generation was valid, so nothing is served: {}",
            errors.join("; ")
        ),
    }
}

/// `stable=90 candidate=10`, in variant order, of what is served now.
pub fn split(flag: &CompiledFlag) -> String {
    flag.variants
        .iter()
        .zip(flag.effective_weights())
        .map(|(v, bp)| format!("{}={}", v.name, percent(bp)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn percent(basis_points: u32) -> f64 {
    f64::from(basis_points) / 100.0
}

/// The Event worth publishing when the status goes from `previous` to
/// `desired`, if any.
pub fn notice_for(
    previous: Option<&AIFeatureFlagStatus>,
    desired: &AIFeatureFlagStatus,
) -> Option<Notice> {
    let ready = ready_of(desired)?;
    let unchanged = previous.is_some_and(|p| {
        p.observed_generation == desired.observed_generation
            && ready_of(p).is_some_and(|r| {
                r.status == ready.status && r.reason == ready.reason && r.message == ready.message
            })
    });
    if unchanged {
        return None;
    }
    let note = truncate(desired.message.clone().unwrap_or_default());
    match ready.reason.as_str() {
        COMPILED => Some(Notice {
            warning: false,
            reason: COMPILED,
            action: "Compile",
            note,
        }),
        INVALID_SPEC => Some(Notice {
            warning: true,
            reason: INVALID_SPEC,
            action: "Compile",
            note,
        }),
        CONFIG_TOO_LARGE => Some(Notice {
            warning: true,
            reason: CONFIG_TOO_LARGE,
            action: "Compile",
            note,
        }),
        _ => None,
    }
}

/// The Event of a deleted flag leaving its namespace's config.
pub fn removal_notice(config: &SidecarConfig) -> Notice {
    Notice {
        warning: false,
        reason: REMOVED,
        action: "Remove",
        note: format!(
            "removed from the config; config revision {}",
            config.revision
        ),
    }
}

fn ready_of(status: &AIFeatureFlagStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == READY)
}

fn truncate(mut note: String) -> String {
    if note.len() > MAX_NOTE_BYTES {
        let mut end = MAX_NOTE_BYTES - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
mod tests;
