use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const COOLDOWN: Duration = Duration::from_secs(30);

fn breakers() -> Breakers<&'static str> {
    Breakers::new(BreakerSettings {
        failure_threshold: 3,
        cooldown: COOLDOWN,
    })
}

fn fail(b: &Breakers<&'static str>, key: &'static str, now: Instant) {
    let admission = b.try_acquire(&key, now);
    b.record(&key, admission, false, now);
}

#[test]
fn defaults_are_five_failures_and_thirty_seconds() {
    assert_eq!(
        BreakerSettings::default(),
        BreakerSettings {
            failure_threshold: 5,
            cooldown: COOLDOWN
        }
    );
}

#[test]
fn opens_after_consecutive_failures() {
    let b = breakers();
    let t0 = Instant::now();
    fail(&b, "a", t0);
    fail(&b, "a", t0);
    assert_eq!(b.try_acquire(&"a", t0), Admission::Allowed);
    fail(&b, "a", t0);
    assert_eq!(
        b.try_acquire(&"a", t0 + Duration::from_secs(10)),
        Admission::Rejected {
            retry_in: Duration::from_secs(20)
        }
    );
    assert_eq!(b.try_acquire(&"other", t0), Admission::Allowed);
}

#[test]
fn a_success_resets_the_count() {
    let b = breakers();
    let t0 = Instant::now();
    fail(&b, "a", t0);
    fail(&b, "a", t0);
    b.record(&"a", Admission::Allowed, true, t0);
    fail(&b, "a", t0);
    fail(&b, "a", t0);
    assert_eq!(b.try_acquire(&"a", t0), Admission::Allowed);
}

fn opened_at(t0: Instant) -> Breakers<&'static str> {
    let b = breakers();
    for _ in 0..3 {
        fail(&b, "a", t0);
    }
    b
}

#[test]
fn one_probe_after_the_cooldown() {
    let t0 = Instant::now();
    let b = opened_at(t0);
    let later = t0 + COOLDOWN;
    assert_eq!(b.try_acquire(&"a", later), Admission::Probe);
    assert!(matches!(
        b.try_acquire(&"a", later),
        Admission::Rejected { .. }
    ));
    assert!(matches!(
        b.try_acquire(&"a", later + Duration::from_secs(5)),
        Admission::Rejected { .. }
    ));
}

#[test]
fn probe_success_closes() {
    let t0 = Instant::now();
    let b = opened_at(t0);
    let later = t0 + COOLDOWN;
    let probe = b.try_acquire(&"a", later);
    b.record(&"a", probe, true, later);
    assert_eq!(b.try_acquire(&"a", later), Admission::Allowed);
}

#[test]
fn probe_failure_reopens_for_another_cooldown() {
    let t0 = Instant::now();
    let b = opened_at(t0);
    let later = t0 + COOLDOWN;
    let probe = b.try_acquire(&"a", later);
    b.record(&"a", probe, false, later + Duration::from_secs(1));
    assert_eq!(
        b.try_acquire(&"a", later + Duration::from_secs(1)),
        Admission::Rejected { retry_in: COOLDOWN }
    );
    assert_eq!(
        b.try_acquire(&"a", later + COOLDOWN + Duration::from_secs(1)),
        Admission::Probe
    );
}

#[test]
fn an_abandoned_probe_does_not_wedge_the_breaker() {
    let t0 = Instant::now();
    let b = opened_at(t0);
    let later = t0 + COOLDOWN;
    assert_eq!(b.try_acquire(&"a", later), Admission::Probe);
    // Never reported; after another cooldown a new probe goes out.
    assert_eq!(b.try_acquire(&"a", later + COOLDOWN), Admission::Probe);
}

#[test]
fn stragglers_do_not_reopen_or_extend() {
    let t0 = Instant::now();
    let b = opened_at(t0);
    // A request admitted before the breaker opened fails late.
    b.record(
        &"a",
        Admission::Allowed,
        false,
        t0 + Duration::from_secs(20),
    );
    assert_eq!(b.try_acquire(&"a", t0 + COOLDOWN), Admission::Probe);
    b.record(&"a", Admission::Allowed, false, t0 + COOLDOWN);
    b.record(
        &"a",
        Admission::Rejected { retry_in: COOLDOWN },
        false,
        t0 + COOLDOWN,
    );
    assert_eq!(b.try_acquire(&"a", t0 + COOLDOWN * 2), Admission::Probe);
}

#[test]
fn concurrent_callers_get_exactly_one_probe() {
    let t0 = Instant::now();
    let b = Arc::new(opened_at(t0));
    let later = t0 + COOLDOWN;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.try_acquire(&"a", later))
        })
        .collect();
    let probes = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|a| *a == Admission::Probe)
        .count();
    assert_eq!(probes, 1);
}

#[test]
fn a_zero_threshold_opens_on_the_first_failure() {
    let b = Breakers::new(BreakerSettings {
        failure_threshold: 0,
        cooldown: COOLDOWN,
    });
    let t0 = Instant::now();
    assert_eq!(b.try_acquire(&1, t0), Admission::Allowed);
    b.record(&1, Admission::Allowed, false, t0);
    assert!(matches!(b.try_acquire(&1, t0), Admission::Rejected { .. }));
}

#[derive(Clone, Debug)]
enum Step {
    Wait(u64),
    Acquire,
    Report(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..40).prop_map(Step::Wait),
        Just(Step::Acquire),
        any::<bool>().prop_map(Step::Report),
    ]
}

proptest! {
    /// Within one cooldown window at most one probe is handed out, and an open
    /// breaker is never stuck: some acquire a cooldown later is admitted.
    #[test]
    fn probes_are_single_and_never_wedged(steps in prop::collection::vec(step(), 0..60)) {
        let b = breakers();
        let t0 = Instant::now();
        let mut now = t0;
        let mut outstanding: Vec<Admission> = Vec::new();
        let mut last_probe: Option<Instant> = None;
        for step in steps {
            match step {
                Step::Wait(secs) => now += Duration::from_secs(secs),
                Step::Acquire => {
                    let admission = b.try_acquire(&"a", now);
                    if admission == Admission::Probe {
                        if let Some(at) = last_probe {
                            prop_assert!(now.duration_since(at) >= COOLDOWN || !outstanding.contains(&Admission::Probe));
                        }
                        last_probe = Some(now);
                    }
                    if !matches!(admission, Admission::Rejected { .. }) {
                        outstanding.push(admission);
                    }
                }
                Step::Report(success) => {
                    if let Some(admission) = outstanding.pop() {
                        b.record(&"a", admission, success, now);
                    }
                }
            }
        }
        let much_later = now + COOLDOWN * 2;
        let admitted = !matches!(b.try_acquire(&"a", much_later), Admission::Rejected { .. });
        prop_assert!(admitted, "still rejected two cooldowns later");
    }
}
