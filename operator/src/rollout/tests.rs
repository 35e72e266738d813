//! The rollout engine, transition by transition.

use std::time::Duration;

use aiflags_api::{CheckResult, RolloutState, RolloutStep};

use super::Command;
use super::engine::PROXY_WAIT;
use super::sim::{Sim, Verdicts, analysed, canary_spec, served, three_steps};

#[test]
fn a_new_rollout_starts_at_step_one_and_waits_for_the_proxies() {
    let mut sim = three_steps();
    let decision = sim.tick(None).clone();
    assert_eq!(
        (sim.rollout_state(), sim.step(), sim.weight()),
        (RolloutState::Progressing, 1, 10.0)
    );
    assert_eq!(sim.events, ["RolloutStarted"]);
    assert_eq!(decision.requeue, Some(PROXY_WAIT));
    assert_eq!(
        sim.condition("Progressing"),
        ("True".into(), "WaitingForProxies".into())
    );
    assert_eq!(
        sim.condition("Aborted"),
        ("False".into(), "NotAborted".into())
    );
    assert_eq!(sim.rollout().step_summary.as_deref(), Some("1/3"));
    assert!(
        sim.rollout().message.contains("2 of 3 proxies"),
        "{}",
        sim.rollout().message
    );

    // Proxies on another weight (the old config) do not count.
    sim.proxies = Some(0.0);
    sim.at(60).tick(None);
    assert_eq!(sim.rollout().step_served_at, None);
}

#[test]
fn the_pause_starts_once_the_proxies_serve_the_step_and_ends_on_the_second() {
    let mut sim = three_steps();
    sim.tick(None);
    // The proxies lag 3 minutes behind the step's revision.
    sim.at(180).propagate();
    let decision = sim.tick(None).clone();
    assert_eq!(
        sim.rollout().step_served_at.as_ref().map(|t| t.0),
        Some(sim.now)
    );
    assert_eq!(decision.requeue, Some(Duration::from_secs(600)));
    assert_eq!(
        sim.condition("Progressing"),
        ("True".into(), "StepPause".into())
    );

    sim.at(599).tick(None);
    assert_eq!(sim.step(), 1, "one second before the pause ends");
    assert_eq!(
        sim.last.as_ref().and_then(|d| d.requeue),
        Some(Duration::from_secs(1))
    );
    sim.at(1).tick(None);
    assert_eq!(
        (sim.step(), sim.weight()),
        (2, 50.0),
        "on the second it ends"
    );
    assert_eq!(sim.events, ["RolloutStarted", "StepAdvanced"]);
    assert_eq!(
        sim.rollout().step_served_at,
        None,
        "the next pause waits for the proxies again"
    );
}

#[test]
fn a_step_without_pause_holds_until_resumed_and_the_last_one_completes() {
    let mut sim = served(three_steps());
    sim.at(600).tick(None);
    sim.propagate().tick(None);
    assert_eq!((sim.rollout_state(), sim.step()), (RolloutState::Paused, 2));
    assert_eq!(
        sim.condition("Progressing"),
        ("False".into(), "AwaitingResume".into())
    );
    sim.at(86_400).tick(None);
    assert_eq!(
        sim.rollout_state(),
        RolloutState::Paused,
        "a day later, still held"
    );

    sim.tick(Some(Command::Resume));
    assert_eq!(
        (sim.rollout_state(), sim.step(), sim.weight()),
        (RolloutState::Progressing, 3, 100.0)
    );
    sim.tick(None);
    assert_eq!(
        sim.rollout_state(),
        RolloutState::Progressing,
        "not served yet"
    );
    sim.propagate().tick(None);
    assert_eq!(sim.rollout_state(), RolloutState::Completed);
    assert_eq!(
        sim.condition("Progressing"),
        ("False".into(), "Completed".into())
    );
    assert_eq!(
        sim.events,
        [
            "RolloutStarted",
            "StepAdvanced",
            "RolloutPaused",
            "RolloutResumed",
            "StepAdvanced",
            "RolloutCompleted"
        ]
    );
    assert_eq!(sim.last.as_ref().and_then(|d| d.requeue), None);
}

#[test]
fn a_last_step_with_a_pause_completes_after_it() {
    let mut sim = served(Sim::new(canary_spec(
        &[(20.0, Some("1m")), (60.0, Some("1m"))],
        None,
    )));
    sim.at(60).tick(None);
    sim.propagate().tick(None);
    sim.at(59).tick(None);
    assert_eq!(sim.rollout_state(), RolloutState::Progressing);
    sim.at(1).tick(None);
    assert_eq!(
        (sim.rollout_state(), sim.weight()),
        (RolloutState::Completed, 60.0)
    );
}

#[test]
fn checks_run_every_interval_from_the_moment_the_step_is_served() {
    let mut sim = served(analysed());
    assert_eq!(sim.checks_asked, 0);
    assert_eq!(
        sim.last.as_ref().and_then(|d| d.requeue),
        Some(Duration::from_secs(60))
    );
    sim.at(59).tick(None);
    assert_eq!(sim.checks_asked, 0, "not before the interval");
    sim.at(1).tick(None);
    assert_eq!(sim.checks_asked, 1);
    assert_eq!(sim.checks().len(), 1);
    assert_eq!(sim.checks()[0].step, 1);
    // A second reconcile at the same moment does not check again.
    sim.tick(None);
    assert_eq!(sim.checks_asked, 1);
    for _ in 0..20 {
        sim.at(60).tick(None);
    }
    assert_eq!(sim.checks().len(), 10, "only the latest are kept");
}

#[test]
fn a_step_advances_after_its_pause_only_on_a_passing_check() {
    let mut sim = served(analysed());
    sim.verdicts = Verdicts::Always(CheckResult::Inconclusive);
    for _ in 0..10 {
        sim.at(60).tick(None);
    }
    assert_eq!(
        sim.step(),
        1,
        "ten inconclusive checks: the pause is over, the step holds"
    );
    assert_eq!(
        sim.condition("Progressing"),
        ("True".into(), "AnalysisInconclusive".into())
    );
    assert!(
        sim.rollout()
            .message
            .contains("waiting for a passing analysis check")
    );
    // One Event for the run of inconclusive checks, not one per check.
    assert_eq!(sim.events, ["RolloutStarted", "AnalysisInconclusive"]);

    sim.verdicts = Verdicts::Always(CheckResult::Pass);
    sim.at(60).tick(None);
    assert_eq!((sim.step(), sim.weight()), (2, 100.0));
    assert_eq!(sim.failed(), 0, "inconclusive is not a failure");
}

#[test]
fn failure_limit_failed_checks_abort_to_zero() {
    let mut sim = served(analysed());
    sim.verdicts = Verdicts::Always(CheckResult::Fail);
    let first = sim.at(60).tick(None).clone();
    assert!(!first.aborted);
    assert_eq!((sim.failed(), sim.weight()), (1, 10.0));
    let second = sim.at(60).tick(None).clone();
    assert!(second.aborted);
    assert_eq!(second.check.map(|c| c.result), Some(CheckResult::Fail));
    assert_eq!(
        (sim.rollout_state(), sim.weight(), sim.failed()),
        (RolloutState::Aborted, 0.0, 2)
    );
    assert_eq!(
        sim.condition("Aborted"),
        ("True".into(), "AnalysisFailed".into())
    );
    assert_eq!(
        sim.condition("Progressing"),
        ("False".into(), "Aborted".into())
    );
    assert_eq!(
        sim.events,
        [
            "RolloutStarted",
            "AnalysisFailed",
            "AnalysisFailed",
            "RolloutAborted"
        ]
    );
    // Nothing runs after an abort: no checks, no steps, no requeue.
    let asked = sim.checks_asked;
    sim.at(3600).tick(None);
    assert_eq!((sim.checks_asked, sim.weight()), (asked, 0.0));
    assert_eq!(sim.last.as_ref().and_then(|d| d.requeue), None);
    assert_eq!(
        sim.condition("Aborted"),
        ("True".into(), "AnalysisFailed".into()),
        "the cause stays"
    );
}

#[test]
fn analysis_keeps_running_while_paused_and_aborts_there_too() {
    let mut sim = served(analysed());
    sim.tick(Some(Command::Pause));
    sim.verdicts = Verdicts::Always(CheckResult::Fail);
    sim.at(60).tick(None);
    sim.at(60).tick(None);
    assert_eq!(
        (sim.rollout_state(), sim.weight()),
        (RolloutState::Aborted, 0.0)
    );
}

#[test]
fn a_due_check_without_a_verdict_waits_a_second() {
    let mut sim = served(analysed());
    sim.verdicts = Verdicts::Missing;
    let decision = sim.at(60).tick(None).clone();
    assert_eq!(decision.requeue, Some(Duration::from_secs(1)));
    assert!(sim.checks().is_empty());
}

#[test]
fn a_spec_change_mid_rollout_restarts_the_steps_but_a_threshold_change_does_not() {
    let mut sim = served(three_steps());
    sim.at(600).tick(None);
    assert_eq!(sim.step(), 2);

    if let Some(rollout) = sim.spec.rollout.as_mut() {
        rollout.analysis = serde_json::from_value(serde_json::json!({"maxErrorRate": 0.5})).ok();
    }
    sim.generation += 1;
    sim.tick(None);
    assert_eq!(
        (sim.step(), sim.weight()),
        (2, 50.0),
        "thresholds tuned mid-rollout"
    );

    sim.set_steps(vec![
        RolloutStep {
            weight: 5.0,
            pause: Some("1m".into()),
        },
        RolloutStep {
            weight: 100.0,
            pause: None,
        },
    ]);
    sim.tick(None);
    assert_eq!(
        (sim.rollout_state(), sim.step(), sim.weight()),
        (RolloutState::Progressing, 1, 5.0)
    );
    assert_eq!(sim.events.last(), Some(&"RolloutRestarted"));
    assert_eq!(sim.rollout().step_summary.as_deref(), Some("1/2"));
}

#[test]
fn a_restarted_operator_resumes_mid_step_from_the_status() {
    let mut sim = served(analysed());
    for _ in 0..3 {
        sim.at(60).tick(None);
    }
    assert_eq!(sim.checks().len(), 3);
    // A new operator: nothing but the status as the API server keeps it.
    let mut restarted = Sim::new(sim.spec.clone());
    restarted.status = sim.status.clone();
    restarted.now = sim.now;
    restarted.proxies = sim.proxies;
    restarted.events.clear();
    restarted.at(1).tick(None);
    assert_eq!(
        (
            restarted.step(),
            restarted.weight(),
            restarted.checks().len()
        ),
        (1, 10.0, 3)
    );
    assert!(
        restarted.events.is_empty(),
        "no restart: {:?}",
        restarted.events
    );
    // The pause still ends ten minutes after the step was served.
    for _ in 0..7 {
        restarted.at(60).tick(None);
    }
    assert_eq!(restarted.step(), 2);
}

#[test]
fn the_clock_going_back_never_advances_or_spins() {
    let mut sim = served(three_steps());
    let decision = sim.at(-3600).tick(None).clone();
    assert_eq!(sim.step(), 1);
    assert!(
        decision
            .requeue
            .is_some_and(|r| r >= Duration::from_secs(1))
    );
}

#[test]
fn a_zero_weight_step_needs_no_analysis() {
    let mut sim = served(Sim::new(canary_spec(
        &[(0.0, Some("1m")), (10.0, None)],
        Some("1m"),
    )));
    sim.at(60).tick(None);
    assert_eq!(sim.checks_asked, 0);
    assert_eq!(sim.step(), 2);
}

#[test]
fn fixed_weights_have_no_engine_status() {
    let mut sim = three_steps();
    sim.spec.rollout = Some(aiflags_api::Rollout {
        weights: Some([("stable".into(), 90.0), ("candidate".into(), 10.0)].into()),
        ..Default::default()
    });
    let decision = sim.tick(None);
    assert_eq!(decision.status, aiflags_api::AIFeatureFlagStatus::default());
}

#[test]
fn condition_times_move_only_when_their_status_flips() {
    let mut sim = three_steps();
    sim.tick(None);
    let time = |sim: &Sim, type_: &str| {
        sim.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .map(|c| c.last_transition_time.clone())
    };
    let started = time(&sim, "Progressing");
    sim.at(30).propagate().tick(None);
    assert_eq!(
        time(&sim, "Progressing"),
        started,
        "WaitingForProxies → StepPause: still True"
    );
    sim.at(600).tick(None);
    sim.at(30).propagate().tick(None);
    assert_ne!(
        time(&sim, "Progressing"),
        started,
        "True → False (AwaitingResume)"
    );
}
