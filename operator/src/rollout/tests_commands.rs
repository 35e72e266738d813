//! The rollout engine's manual commands, the kill switch, and the pause
//! clock around them.

use aiflags_api::{CheckResult, RolloutState};

use super::Command;
use super::sim::{Sim, Verdicts, analysed, served, three_steps};

#[test]
fn commands_in_every_state() {
    struct Case {
        name: &'static str,
        setup: fn(&mut Sim),
        command: Command,
        state: RolloutState,
        weight: f64,
        events: &'static [&'static str],
    }
    let progressing: fn(&mut Sim) = |_| {};
    let paused: fn(&mut Sim) = |sim| {
        sim.tick(Some(Command::Pause));
    };
    let aborted: fn(&mut Sim) = |sim| {
        sim.tick(Some(Command::Abort));
    };
    let completed: fn(&mut Sim) = |sim| {
        sim.tick(Some(Command::Promote));
    };
    let cases = [
        Case {
            name: "abort while progressing",
            setup: progressing,
            command: Command::Abort,
            state: RolloutState::Aborted,
            weight: 0.0,
            events: &["RolloutAborted"],
        },
        Case {
            name: "abort while paused",
            setup: paused,
            command: Command::Abort,
            state: RolloutState::Aborted,
            weight: 0.0,
            events: &["RolloutAborted"],
        },
        Case {
            name: "abort after completion rolls back",
            setup: completed,
            command: Command::Abort,
            state: RolloutState::Aborted,
            weight: 0.0,
            events: &["RolloutAborted"],
        },
        Case {
            name: "abort twice",
            setup: aborted,
            command: Command::Abort,
            state: RolloutState::Aborted,
            weight: 0.0,
            events: &[],
        },
        Case {
            name: "promote while progressing",
            setup: progressing,
            command: Command::Promote,
            state: RolloutState::Completed,
            weight: 100.0,
            events: &["RolloutPromoted"],
        },
        Case {
            name: "promote while paused",
            setup: paused,
            command: Command::Promote,
            state: RolloutState::Completed,
            weight: 100.0,
            events: &["RolloutPromoted"],
        },
        Case {
            name: "promote after an abort",
            setup: aborted,
            command: Command::Promote,
            state: RolloutState::Completed,
            weight: 100.0,
            events: &["RolloutPromoted"],
        },
        Case {
            name: "promote twice",
            setup: completed,
            command: Command::Promote,
            state: RolloutState::Completed,
            weight: 100.0,
            events: &[],
        },
        Case {
            name: "pause while progressing",
            setup: progressing,
            command: Command::Pause,
            state: RolloutState::Paused,
            weight: 10.0,
            events: &["RolloutPaused"],
        },
        Case {
            name: "pause twice",
            setup: paused,
            command: Command::Pause,
            state: RolloutState::Paused,
            weight: 10.0,
            events: &[],
        },
        Case {
            name: "pause after an abort",
            setup: aborted,
            command: Command::Pause,
            state: RolloutState::Aborted,
            weight: 0.0,
            events: &[],
        },
        Case {
            name: "resume after a pause",
            setup: paused,
            command: Command::Resume,
            state: RolloutState::Progressing,
            weight: 10.0,
            events: &["RolloutResumed"],
        },
        Case {
            name: "resume while progressing",
            setup: progressing,
            command: Command::Resume,
            state: RolloutState::Progressing,
            weight: 10.0,
            events: &[],
        },
        Case {
            name: "resume after an abort retries from step 1",
            setup: aborted,
            command: Command::Resume,
            state: RolloutState::Progressing,
            weight: 10.0,
            events: &["RolloutRetried"],
        },
        Case {
            name: "resume after completion",
            setup: completed,
            command: Command::Resume,
            state: RolloutState::Completed,
            weight: 100.0,
            events: &[],
        },
    ];
    for case in cases {
        let mut sim = served(analysed());
        (case.setup)(&mut sim);
        let before = sim.events.len();
        sim.tick(Some(case.command));
        assert_eq!(
            (sim.rollout_state(), sim.weight()),
            (case.state, case.weight),
            "{}",
            case.name
        );
        assert_eq!(&sim.events[before..], case.events, "{}", case.name);
    }
}

#[test]
fn a_manual_pause_stops_the_pause_clock() {
    let mut sim = served(three_steps());
    sim.at(300).tick(Some(Command::Pause));
    assert_eq!(
        sim.condition("Progressing"),
        ("False".into(), "Paused".into())
    );
    sim.at(3600).tick(None);
    assert_eq!((sim.rollout_state(), sim.step()), (RolloutState::Paused, 1));
    sim.tick(Some(Command::Resume));
    // Five of the ten minutes were left when paused.
    sim.at(299).tick(None);
    assert_eq!(sim.step(), 1);
    sim.at(1).tick(None);
    assert_eq!(sim.step(), 2);
}

#[test]
fn a_step_served_during_a_manual_pause_starts_its_pause_at_the_resume() {
    let mut sim = three_steps();
    sim.tick(Some(Command::Pause));
    sim.at(120).propagate().tick(None);
    sim.at(120).tick(Some(Command::Resume));
    // The whole ten minutes are left, counted from the resume.
    sim.at(599).tick(None);
    assert_eq!(sim.step(), 1);
    sim.at(1).tick(None);
    assert_eq!(sim.step(), 2);
}

#[test]
fn abort_then_resume_starts_over_with_a_clean_slate() {
    let mut sim = served(analysed());
    sim.verdicts = Verdicts::Always(CheckResult::Fail);
    sim.at(60).tick(None);
    sim.at(60).tick(None);
    assert_eq!(sim.rollout_state(), RolloutState::Aborted);
    sim.verdicts = Verdicts::Always(CheckResult::Pass);
    sim.at(60).tick(Some(Command::Resume));
    assert_eq!(
        (sim.rollout_state(), sim.step(), sim.weight(), sim.failed()),
        (RolloutState::Progressing, 1, 10.0, 0)
    );
    assert!(sim.checks().is_empty());
    assert_eq!(
        sim.condition("Aborted"),
        ("False".into(), "NotAborted".into())
    );
    // And walks on from there.
    sim.propagate().tick(None);
    for _ in 0..10 {
        sim.at(60).tick(None);
    }
    assert_eq!(sim.step(), 2);
}

#[test]
fn disabled_mid_rollout_stops_it_and_enabling_starts_it_over() {
    let mut sim = served(three_steps());
    sim.at(600).tick(None);
    assert_eq!(sim.step(), 2);
    sim.disable(true).tick(Some(Command::Resume));
    assert_eq!(
        (sim.rollout_state(), sim.weight()),
        (RolloutState::Stopped, 0.0)
    );
    assert_eq!(
        sim.condition("Progressing"),
        ("False".into(), "Disabled".into())
    );
    assert_eq!(sim.events.last(), Some(&"RolloutStopped"));
    sim.at(600).tick(None);
    assert_eq!(
        sim.rollout_state(),
        RolloutState::Stopped,
        "commands and time change nothing"
    );

    sim.disable(false).tick(None);
    assert_eq!(
        (sim.rollout_state(), sim.step(), sim.weight()),
        (RolloutState::Progressing, 1, 10.0)
    );
    assert_eq!(sim.events.last(), Some(&"RolloutRestarted"));
}
