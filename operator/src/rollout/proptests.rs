//! The engine under random histories: clocks, proxies, verdicts, commands
//! and the kill switch in any order. What must always hold.

use aiflags_api::{CheckResult, RolloutState};
use proptest::prelude::*;

use super::Command;
use super::sim::{Sim, Verdicts, canary_spec};

#[derive(Clone, Debug)]
enum Action {
    Wait(i64),
    Propagate,
    ProxiesBehind,
    ProxiesStale,
    Command(Command),
    Verdicts(Verdicts),
    KillSwitch(bool),
}

fn action() -> impl Strategy<Value = Action> {
    let command = prop_oneof![
        Just(Command::Promote),
        Just(Command::Abort),
        Just(Command::Pause),
        Just(Command::Resume),
    ];
    let verdicts = prop_oneof![
        Just(Verdicts::Always(CheckResult::Pass)),
        Just(Verdicts::Always(CheckResult::Fail)),
        Just(Verdicts::Always(CheckResult::Inconclusive)),
        Just(Verdicts::Missing),
    ];
    prop_oneof![
        6 => (0i64..700).prop_map(Action::Wait),
        1 => (-120i64..0).prop_map(Action::Wait),
        4 => Just(Action::Propagate),
        1 => Just(Action::ProxiesBehind),
        1 => Just(Action::ProxiesStale),
        2 => command.prop_map(Action::Command),
        2 => verdicts.prop_map(Action::Verdicts),
        1 => any::<bool>().prop_map(Action::KillSwitch),
    ]
}

/// Strictly rising weights (1..=100) with pauses of 1s..10m or none.
fn steps() -> impl Strategy<Value = Vec<(f64, Option<String>)>> {
    prop::collection::btree_set(1u32..=100, 1..5).prop_flat_map(|weights| {
        let n = weights.len();
        let pauses = prop::collection::vec(prop::option::weighted(0.8, 1u32..600), n);
        (Just(weights), pauses).prop_map(|(weights, pauses)| {
            weights
                .into_iter()
                .zip(pauses)
                .map(|(w, p)| (f64::from(w), p.map(|s| format!("{s}s"))))
                .collect()
        })
    })
}

fn sim_for(steps: &[(f64, Option<String>)], interval: Option<u32>, limit: u32) -> Sim {
    let borrowed: Vec<(f64, Option<&str>)> =
        steps.iter().map(|(w, p)| (*w, p.as_deref())).collect();
    let interval = interval.map(|s| format!("{s}s"));
    let mut spec = canary_spec(&borrowed, interval.as_deref());
    if let Some(analysis) = spec.rollout.as_mut().and_then(|r| r.analysis.as_mut()) {
        analysis.failure_limit = Some(limit);
    }
    Sim::new(spec)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn invariants_hold_through_any_history(
        steps in steps(),
        interval in prop::option::of(5u32..120),
        limit in 1u32..4,
        actions in prop::collection::vec(action(), 1..60),
    ) {
        let mut sim = sim_for(&steps, interval, limit);
        let weights: Vec<f64> = steps.iter().map(|(w, _)| *w).collect();
        sim.tick(None);
        for action in actions {
            let mut command = None;
            match action {
                Action::Wait(seconds) => { sim.at(seconds); }
                Action::Propagate => { sim.propagate(); }
                Action::ProxiesBehind => sim.proxies = None,
                Action::ProxiesStale => sim.proxies = Some(weights[0] - 0.5),
                Action::Command(c) => command = Some(c),
                Action::Verdicts(v) => { sim.verdicts = v; continue; }
                Action::KillSwitch(disabled) => { sim.disable(disabled); }
            }
            let before = (sim.weight(), sim.rollout_state());
            let events_before = sim.events.len();
            sim.tick(command);
            let (weight, state) = (sim.weight(), sim.rollout_state());
            let events = &sim.events[events_before..];

            // The canary only ever gets a step's weight, 100% when promoted, or 0.
            prop_assert!(weight == 0.0 || weight == 100.0 || weights.contains(&weight), "{weight}");
            if matches!(state, RolloutState::Aborted | RolloutState::Stopped) {
                prop_assert_eq!(weight, 0.0);
            }
            // An abort comes at the failureLimit-th failed check, not before
            // or after (a promotion by hand may overrule it).
            if interval.is_some() && matches!(state, RolloutState::Progressing | RolloutState::Paused) {
                prop_assert!(sim.failed() < limit, "{} failed checks, limit {limit}, {state:?}", sim.failed());
            }
            // More canary traffic only by a step, a promotion or a (re)start.
            if weight > before.0 {
                let raised = ["StepAdvanced", "RolloutPromoted", "RolloutRestarted", "RolloutRetried", "RolloutStarted"];
                prop_assert!(events.iter().any(|e| raised.contains(e)), "{before:?} -> {weight}: {events:?}");
            }
            let step = sim.step();
            prop_assert!(step >= 1 && step as usize <= weights.len());
            prop_assert_eq!(sim.rollout().step_summary.clone(), Some(format!("{step}/{}", weights.len())));
            if let Some(requeue) = sim.last.as_ref().and_then(|d| d.requeue) {
                prop_assert!(requeue >= std::time::Duration::from_secs(1));
            }

            // A second reconcile at the same moment, with nothing new, changes
            // nothing: no double step, no second check.
            // (A due check the shell could not make is asked for again.)
            let status = sim.status.clone();
            let events_before = sim.events.len();
            sim.tick(None);
            prop_assert_eq!(&sim.status, &status);
            prop_assert_eq!(sim.events.len(), events_before);
        }
    }
}
