//! Leader election against a fake Lease API, on tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::fake_lease::{FakeLeases, NAME, NAMESPACE};
use super::{Attempt, Elector, Held, LeaseSettings, Record, Role, decide, spawn};

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings::new(NAMESPACE.into(), NAME.into(), identity.into())
}

fn elector(fake: &FakeLeases, identity: &str) -> Elector {
    Elector::new(fake.client(identity), settings(identity))
}

fn holder(fake: &FakeLeases) -> Option<String> {
    fake.lease()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[test]
fn decisions() {
    let now = Instant::now();
    let held_by = |who: &str| Record {
        holder: Some(who.into()),
        duration: Duration::from_secs(15),
        renew_time: None,
        transitions: 0,
        version: Some("7".into()),
    };
    let released = Record {
        holder: None,
        ..held_by("a")
    };
    let cases = [
        (None, Duration::ZERO, Attempt::Create),
        (Some(held_by("me")), Duration::ZERO, Attempt::Renew),
        (Some(released), Duration::ZERO, Attempt::TakeOver),
        (
            Some(held_by("other")),
            Duration::ZERO,
            Attempt::Wait(Duration::from_secs(15)),
        ),
        (
            Some(held_by("other")),
            Duration::from_millis(14_999),
            Attempt::Wait(Duration::from_millis(1)),
        ),
        (
            Some(held_by("other")),
            Duration::from_secs(15),
            Attempt::TakeOver,
        ),
    ];
    for (record, unchanged_for, expected) in cases {
        let observed_at = now;
        let at = now + unchanged_for;
        assert_eq!(
            decide(record.as_ref(), observed_at, "me", at),
            expected,
            "{record:?} after {unchanged_for:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_replica_creates_the_lease_and_the_other_waits() {
    let fake = FakeLeases::default();
    let (mut a, mut b) = (elector(&fake, "a"), elector(&fake, "b"));
    assert_eq!(a.try_acquire_or_renew().await.expect("api"), Held::Yes);
    assert_eq!(
        b.try_acquire_or_renew().await.expect("api"),
        Held::By("a".into())
    );
    assert_eq!(
        a.try_acquire_or_renew().await.expect("api"),
        Held::Yes,
        "renewed"
    );
    assert_eq!(
        fake.writes(),
        [("a".into(), "create"), ("a".into(), "replace")]
    );
    let spec = fake.lease().and_then(|l| l.spec).expect("a lease");
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_candidate_takes_over_only_after_seeing_the_lease_unchanged_for_its_duration() {
    let fake = FakeLeases::default();
    let (mut a, mut b) = (elector(&fake, "a"), elector(&fake, "b"));
    a.try_acquire_or_renew().await.expect("api");
    assert_eq!(
        b.try_acquire_or_renew().await.expect("api"),
        Held::By("a".into())
    );
    // A renewal resets what b saw: 14s later, then 14s after the renewal, b still waits.
    tokio::time::advance(Duration::from_secs(14)).await;
    a.try_acquire_or_renew().await.expect("api");
    assert_eq!(
        b.try_acquire_or_renew().await.expect("api"),
        Held::By("a".into())
    );
    tokio::time::advance(Duration::from_secs(14)).await;
    assert_eq!(
        b.try_acquire_or_renew().await.expect("api"),
        Held::By("a".into())
    );
    // a is gone: a full lease duration after b last saw a change, b takes over.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(b.try_acquire_or_renew().await.expect("api"), Held::Yes);
    assert_eq!(holder(&fake).as_deref(), Some("b"));
    let spec = fake.lease().and_then(|l| l.spec).expect("a lease");
    assert_eq!(spec.lease_transitions, Some(1));
    // The old holder finds out at its next try.
    assert_eq!(
        a.try_acquire_or_renew().await.expect("api"),
        Held::By("b".into())
    );
}

#[tokio::test(start_paused = true)]
async fn two_candidates_racing_for_an_expired_lease_cannot_both_win() {
    let fake = FakeLeases::default();
    let (mut a, mut b, mut c) = (
        elector(&fake, "a"),
        elector(&fake, "b"),
        elector(&fake, "c"),
    );
    a.try_acquire_or_renew().await.expect("api");
    b.try_acquire_or_renew().await.expect("api");
    c.try_acquire_or_renew().await.expect("api");
    tokio::time::advance(Duration::from_secs(15)).await;
    let (first, second) = tokio::join!(b.try_acquire_or_renew(), c.try_acquire_or_renew());
    let results = [first.expect("api"), second.expect("api")];
    assert_eq!(
        results.iter().filter(|r| **r == Held::Yes).count(),
        1,
        "{results:?}"
    );
}

/// Each replica "steps a rollout" every 100ms while it believes it leads.
fn stepping(
    name: &'static str,
    leadership: super::Leadership,
    steps: Arc<Mutex<Vec<(Instant, &'static str)>>>,
) {
    tokio::spawn(async move {
        if !leadership.acquired().await {
            return;
        }
        while leadership.role() == Role::Leading {
            steps
                .lock()
                .expect("not poisoned")
                .push((Instant::now(), name));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_leader_stops_before_another_takes_over_so_no_one_steps_twice() {
    let fake = FakeLeases::default();
    let steps = Arc::new(Mutex::new(Vec::new()));
    let (a, _a_task) = spawn(elector(&fake, "a"), std::future::pending::<()>());
    assert!(a.acquired().await);
    let (b, _b_task) = spawn(elector(&fake, "b"), std::future::pending::<()>());
    stepping("a", a.clone(), steps.clone());
    stepping("b", b.clone(), steps.clone());

    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        (a.role(), b.role()),
        (Role::Leading, Role::Candidate),
        "a renews, b waits"
    );

    // a loses the API server: it keeps leading until its renew deadline, then stops.
    fake.cut_off("a", true);
    let cut = Instant::now();
    a.lost().await;
    let a_stopped = Instant::now();
    assert!(b.acquired().await);
    let b_started = Instant::now();
    assert!(
        a_stopped - cut <= Duration::from_secs(10),
        "a stops within its renew deadline"
    );
    assert!(b_started > a_stopped, "b leads only after a stopped");
    assert!(
        b_started - cut >= Duration::from_secs(15),
        "and only once the lease expired as b saw it"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    let steps = steps.lock().expect("not poisoned").clone();
    let last_a = steps
        .iter()
        .filter(|(_, n)| *n == "a")
        .map(|(t, _)| *t)
        .max()
        .expect("a stepped");
    let first_b = steps
        .iter()
        .filter(|(_, n)| *n == "b")
        .map(|(t, _)| *t)
        .min()
        .expect("b stepped");
    assert!(
        last_a < first_b,
        "never both: a's last step comes before b's first"
    );
    assert_eq!(holder(&fake).as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn a_leader_shutting_down_releases_the_lease_for_an_immediate_takeover() {
    let fake = FakeLeases::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (a, a_task) = spawn(elector(&fake, "a"), async move { drop(stopped.await) });
    assert!(a.acquired().await);
    let (b, _b_task) = spawn(elector(&fake, "b"), std::future::pending::<()>());
    tokio::time::sleep(Duration::from_secs(3)).await;

    let _ = stop.send(());
    a_task.await.expect("the election ends");
    assert_eq!(holder(&fake), None, "released");
    let released = Instant::now();
    assert!(b.acquired().await);
    assert!(
        Instant::now() - released <= Duration::from_secs(2),
        "at b's next try, not after 15s"
    );
}
