use aiflags_api::{AIFeatureFlagStatus, FieldError, FlagInput, ProxyCount, compile};

use super::*;
use crate::controller::fixtures::FlagBuilder;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("timestamp")
}

/// Compiles `flag` alone over `previous` and returns its desired status.
fn status_of(
    flag: &AIFeatureFlag,
    previous: Option<&SidecarConfig>,
    now: Timestamp,
) -> (AIFeatureFlagStatus, SidecarConfig) {
    let compilation = compile(Some("shop"), &[FlagInput::from_resource(flag)], previous);
    let outcome = compilation.flags["summarizer"].clone();
    let status = desired_status(flag, &outcome, None, &compilation.config, now);
    (status, compilation.config)
}

fn ready(status: &AIFeatureFlagStatus) -> &Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .expect("Ready")
}

#[test]
fn a_valid_flag_is_ready_and_healthy() {
    let (status, config) = status_of(&AIFeatureFlag::test(), None, at(10));
    let ready = ready(&status);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", COMPILED)
    );
    assert_eq!(ready.message, "generation 1 compiled");
    assert_eq!(ready.last_transition_time, Time(at(10)));
    assert_eq!(status.phase, Some(Phase::Healthy));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.serving_generation, Some(1));
    assert_eq!(status.config_revision, Some(config.revision));
    assert_eq!(status.split.as_deref(), Some("stable=90 candidate=10"));
    let weights = status.current_weights.expect("weights");
    assert_eq!((weights["stable"], weights["candidate"]), (90.0, 10.0));
}

#[test]
fn the_kill_switch_shows_as_disabled_with_everything_on_the_default() {
    let (status, _) = status_of(&AIFeatureFlag::test().disabled(), None, at(0));
    assert_eq!(status.phase, Some(Phase::Disabled));
    assert_eq!(ready(&status).status, "True");
    assert_eq!(status.split.as_deref(), Some("stable=100 candidate=0"));
    // The configured split is kept: re-enabling restores it.
    let weights = status.current_weights.expect("weights");
    assert_eq!((weights["stable"], weights["candidate"]), (90.0, 10.0));
}

#[test]
fn an_invalid_update_reports_every_error_and_the_version_still_serving() {
    let (first, served) = status_of(&AIFeatureFlag::test(), None, at(0));
    let updated = AIFeatureFlag::test()
        .generation(2)
        .weights(&[("stable", 90.0), ("ghost", 5.0)])
        .with_status(first);
    let (status, config) = status_of(&updated, Some(&served), at(20));
    assert_eq!(config, served);
    let ready = ready(&status);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", INVALID_SPEC)
    );
    assert_eq!(
        ready.message,
        "spec.rollout.weights.ghost: unknown variant \"ghost\" (variants: stable, candidate); \
         spec.rollout.weights: weights sum to 95, not 100"
    );
    assert_eq!(ready.last_transition_time, Time(at(20)));
    assert_eq!(ready.observed_generation, Some(2));
    assert_eq!(
        status.phase,
        Some(Phase::Healthy),
        "phase of the serving version"
    );
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.serving_generation, Some(1));
    assert_eq!(status.config_revision, Some(served.revision.clone()));
    assert!(
        status.message.as_deref().is_some_and(|m| m.starts_with(
            "generation 2 is invalid; generation 1 keeps serving stable=90 candidate=10"
        )),
        "{status:?}"
    );
}

#[test]
fn a_flag_never_valid_serves_nothing_and_is_degraded() {
    let flag = AIFeatureFlag::test().weights(&[("stable", 50.0)]);
    let (status, config) = status_of(&flag, None, at(0));
    assert!(config.flags.is_empty());
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert_eq!(ready(&status).reason, INVALID_SPEC);
    assert_eq!(status.serving_generation, None);
    assert_eq!(status.config_revision, None);
    assert_eq!(status.current_weights, None);
    assert_eq!(status.split, None);
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("nothing is served")),
        "{status:?}"
    );
}

#[test]
fn the_transition_time_moves_only_when_ready_flips() {
    let (first, _) = status_of(&AIFeatureFlag::test(), None, at(10));
    let again = AIFeatureFlag::test()
        .generation(2)
        .with_status(first.clone());
    let (second, _) = status_of(&again, None, at(20));
    assert_eq!(ready(&second).last_transition_time, Time(at(10)));

    let resync = AIFeatureFlag::test().with_status(first.clone());
    assert_eq!(
        status_of(&resync, None, at(30)).0,
        first,
        "a resync is a no-op"
    );
}

#[test]
fn other_owners_conditions_and_fields_are_neither_applied_nor_drift() {
    let other = Condition {
        type_: "Propagated".into(),
        status: "True".into(),
        reason: "AtRevision".into(),
        message: String::new(),
        observed_generation: Some(1),
        last_transition_time: Time(at(1)),
    };
    let previous = AIFeatureFlagStatus {
        conditions: vec![other.clone()],
        current_step: Some(2),
        proxies: Some(ProxyCount {
            total: 3,
            at_revision: 2,
            ..Default::default()
        }),
        failed_checks: Some(1),
        ..Default::default()
    };
    let flag = AIFeatureFlag::test().with_status(previous.clone());
    let (status, _) = status_of(&flag, None, at(5));
    // `conditions` is a map keyed by type: applying `Ready` alone leaves
    // `Propagated` to its owner. Applying cached copies would force-own
    // (and revert) other owners' fields.
    assert_eq!(status.conditions.len(), 1);
    assert_eq!(status.conditions[0].type_, READY);
    assert_eq!(
        (status.current_step, &status.proxies, status.failed_checks),
        (None, &None, None)
    );
    // ... and they do not count as drift.
    let mut applied = status.clone();
    applied.conditions.push(other);
    applied.current_step = previous.current_step;
    applied.proxies = previous.proxies;
    applied.failed_checks = previous.failed_checks;
    assert_eq!(reconciled_part(&applied), status);
}

#[test]
fn split_prints_basis_points_as_percent_in_variant_order() {
    let flag = AIFeatureFlag::test().weights(&[("stable", 66.67), ("candidate", 33.33)]);
    let (status, _) = status_of(&flag, None, at(0));
    assert_eq!(
        status.split.as_deref(),
        Some("stable=66.67 candidate=33.33")
    );
}

#[test]
fn events_fire_on_change_only() {
    let (valid, _) = status_of(&AIFeatureFlag::test(), None, at(0));
    let notice = notice_for(None, &valid).expect("first compile");
    assert_eq!((notice.reason, notice.warning), (COMPILED, false));
    assert_eq!(Some(notice.note), valid.message);
    assert_eq!(notice_for(Some(&valid), &valid), None, "resync");

    let mut other_revision = valid.clone();
    other_revision.config_revision = Some("another".into());
    assert_eq!(
        notice_for(Some(&valid), &other_revision),
        None,
        "another flag changed"
    );

    let mut next_generation = valid.clone();
    next_generation.observed_generation = Some(2);
    assert_eq!(
        notice_for(Some(&valid), &next_generation).map(|n| n.reason),
        Some(COMPILED)
    );

    let broken = AIFeatureFlag::test().weights(&[("stable", 1.0)]);
    let (invalid, _) = status_of(&broken, None, at(0));
    let notice = notice_for(Some(&valid), &invalid).expect("became invalid");
    assert_eq!((notice.reason, notice.warning), (INVALID_SPEC, true));
    assert_eq!(notice_for(Some(&invalid), &invalid), None);
}

#[test]
fn removal_names_the_new_revision() {
    let config = SidecarConfig::empty(Some("shop".into()));
    let notice = removal_notice(&config);
    assert_eq!((notice.reason, notice.warning), (REMOVED, false));
    assert!(notice.note.ends_with(&config.revision));
}

#[test]
fn long_notes_are_cut_to_one_kilobyte() {
    let errors: Vec<FieldError> = (0..100)
        .map(|i| FieldError {
            path: format!("spec.variants[{i}].name"),
            message: "é is not a DNS label".into(),
        })
        .collect();
    let outcome = FlagOutcome {
        errors,
        serving_generation: None,
    };
    let flag = AIFeatureFlag::test();
    let status = desired_status(&flag, &outcome, None, &SidecarConfig::empty(None), at(0));
    let notice = notice_for(None, &status).expect("invalid");
    assert!(notice.note.len() <= MAX_NOTE_BYTES && notice.note.ends_with("..."));
}
