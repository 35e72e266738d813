use aiflags_api::{CompiledFallback, FailureClass};
use http::HeaderValue;
use proptest::prelude::*;

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

const FAILED: Event = Event::Failed {
    covered: true,
    retry_after: None,
};

/// Drives a chain where every attempt fails with `event`, sleeping no time:
/// the sequence of steps until it gives up.
fn run(chain: &mut FallbackChain, now: Instant, event: Event) -> Vec<Step> {
    let mut steps = vec![chain.next(Event::Start, now, 0)];
    while let Some(last) = steps.last().copied() {
        let next = match last {
            Step::GiveUp => break,
            Step::Wait(_) => chain.next(Event::Waited, now, 0),
            Step::Send(_) => chain.next(event, now, 0),
        };
        steps.push(next);
    }
    steps
}

fn sends(steps: &[Step]) -> Vec<usize> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Send(i) => Some(*i),
            _ => None,
        })
        .collect()
}

#[test]
fn tries_the_chosen_variant_then_the_chain_with_retries() {
    let now = Instant::now();
    let deadline = now + Duration::from_secs(60);
    let mut chain = FallbackChain::new(1, &[0, 2], 3, 1, deadline);
    let steps = run(&mut chain, now, FAILED);
    assert_eq!(sends(&steps), vec![1, 1, 0, 0, 2, 2]);
    // A wait (backoff) only before a retry of the same variant.
    assert!(matches!(steps[1], Step::Wait(_)));
    assert_eq!(
        steps[3],
        Step::Send(0),
        "moving down the chain goes at once"
    );
    assert_eq!(steps.last(), Some(&Step::GiveUp));
    // The chosen variant is not tried again when the chain names it.
    let mut chain = FallbackChain::new(0, &[0, 2], 3, 1, deadline);
    assert_eq!(sends(&run(&mut chain, now, FAILED)), vec![0, 0, 2, 2]);
}

#[test]
fn duplicates_and_unknown_variants_are_skipped() {
    let now = Instant::now();
    let deadline = now + Duration::from_secs(60);
    let chain = FallbackChain::new(0, &[1, 1, 9, 0], 2, 0, deadline);
    assert_eq!(chain.targets(), &[0, 1]);
    let mut chain = FallbackChain::new(7, &[1, 0], 2, 0, deadline);
    assert_eq!(sends(&run(&mut chain, now, FAILED)), vec![1, 0]);
}

#[test]
fn retries_are_bounded_whatever_the_config_says() {
    let now = Instant::now();
    let mut chain = FallbackChain::new(0, &[], 1, u32::MAX, now + Duration::from_secs(3600));
    assert_eq!(
        sends(&run(&mut chain, now, FAILED)).len(),
        MAX_RETRIES as usize + 1
    );
}

#[test]
fn an_uncovered_failure_gives_up_and_a_skip_moves_on() {
    let now = Instant::now();
    let deadline = now + Duration::from_secs(60);
    let mut chain = FallbackChain::new(0, &[1], 2, 3, deadline);
    assert_eq!(chain.next(Event::Start, now, 0), Step::Send(0));
    let uncovered = Event::Failed {
        covered: false,
        retry_after: None,
    };
    assert_eq!(chain.next(uncovered, now, 0), Step::GiveUp);
    assert_eq!(
        chain.next(Event::Start, now, 0),
        Step::GiveUp,
        "giving up is final"
    );
    let mut chain = FallbackChain::new(0, &[1], 2, 3, deadline);
    chain.next(Event::Start, now, 0);
    assert_eq!(
        chain.next(Event::Skipped, now, 0),
        Step::Send(1),
        "an open circuit is not retried"
    );
}

#[test]
fn a_filtered_answer_moves_down_the_chain_without_a_retry() {
    let now = Instant::now();
    let mut chain = FallbackChain::new(0, &[1, 2], 3, 2, now + Duration::from_secs(60));
    assert_eq!(chain.next(Event::Start, now, 0), Step::Send(0));
    assert_eq!(chain.next(Event::Refused, now, 0), Step::Send(1));
    // An empty answer is a failure like any other: retried first.
    assert!(matches!(chain.next(FAILED, now, 0), Step::Wait(_)));
    assert_eq!(chain.next(Event::Waited, now, 0), Step::Send(1));
    assert_eq!(chain.next(Event::Refused, now, 0), Step::Send(2));
    assert_eq!(chain.next(Event::Refused, now, 0), Step::GiveUp);
}

#[test]
fn retry_after_is_honoured_within_the_deadline() {
    let now = Instant::now();
    let mut chain = FallbackChain::new(0, &[1], 2, 1, now + Duration::from_secs(10));
    chain.next(Event::Start, now, 0);
    let asked = |secs| Event::Failed {
        covered: true,
        retry_after: Some(Duration::from_secs(secs)),
    };
    assert_eq!(
        chain.next(asked(3), now, 0),
        Step::Wait(Duration::from_secs(3))
    );
    assert_eq!(
        chain.next(Event::Waited, now + Duration::from_secs(3), 0),
        Step::Send(0)
    );
    // The wait would not fit before the deadline: on to the next target.
    let mut chain = FallbackChain::new(0, &[1], 2, 1, now + Duration::from_secs(10));
    chain.next(Event::Start, now, 0);
    assert_eq!(chain.next(asked(30), now, 0), Step::Send(1));
    // Nothing is sent once the deadline has passed.
    let mut chain = FallbackChain::new(0, &[1], 2, 1, now + Duration::from_secs(10));
    chain.next(Event::Start, now, 0);
    assert_eq!(
        chain.next(Event::Skipped, now + Duration::from_secs(10), 0),
        Step::GiveUp
    );
}

#[test]
fn every_error_status_is_a_failure_for_the_policy_to_judge() {
    assert_eq!(classify_status(200), None);
    assert_eq!(classify_status(304), None);
    assert_eq!(classify_status(400), Some(Failure::Status(400)));
    assert_eq!(classify_status(429), Some(Failure::Status(429)));
    assert_eq!(classify_status(503), Some(Failure::Status(503)));
    let policy = CompiledFallback {
        on: vec![FailureClass::Status(429), FailureClass::StatusClass(5)],
        ..CompiledFallback::default()
    };
    let retried = |s| classify_status(s).is_some_and(|f| policy.applies_to(f));
    assert!(retried(429) && retried(500) && retried(504));
    assert!(!retried(400) && !retried(404) && !retried(200));
}

#[test]
fn backoff_doubles_with_equal_jitter_up_to_the_cap() {
    let ms = Duration::from_millis;
    assert_eq!(backoff(0, 0), ms(50));
    assert_eq!(backoff(0, u32::MAX), ms(100) - Duration::from_nanos(1));
    assert_eq!(backoff(1, 0), ms(100));
    assert_eq!(backoff(2, 0), ms(200));
    assert_eq!(backoff(4, 0), ms(800));
    assert_eq!(backoff(5, 0), ms(1000));
    assert_eq!(backoff(40, 0), ms(1000));
    assert!(backoff(u32::MAX, u32::MAX) < ms(2000));
}

#[test]
fn retry_after_forms() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    let parse = |pairs: &[(&'static str, &str)]| parse_retry_after(&headers(pairs), now);
    assert_eq!(parse(&[]), None);
    assert_eq!(parse(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
    assert_eq!(
        parse(&[("retry-after", " 1.5 ")]),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        parse(&[("retry-after-ms", "250"), ("retry-after", "7")]),
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        parse(&[("retry-after-ms", "soon"), ("retry-after", "7")]),
        Some(Duration::from_secs(7))
    );
    // RFC 9110's example date is `now`; ten seconds later, and one in the past.
    assert_eq!(
        parse(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        parse(&[("retry-after", "Sun, 06 Nov 1994 08:49:27 GMT")]),
        Some(Duration::ZERO)
    );
    for garbage in ["-1", "soon", "NaN", "inf", "", "1e400"] {
        assert_eq!(parse(&[("retry-after", garbage)]), None, "{garbage:?}");
    }
    assert_eq!(
        parse(&[("retry-after", "99999999999999999999999")]),
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn next_delay_gives_up_when_the_wait_does_not_fit() {
    let s = Duration::from_secs;
    assert_eq!(next_delay(0, Some(s(3)), s(10), 0), Some(s(3)));
    assert_eq!(next_delay(0, Some(s(10)), s(10), 0), None);
    assert_eq!(next_delay(0, Some(s(30)), s(10), 0), None);
    assert_eq!(
        next_delay(1, None, s(10), 0),
        Some(Duration::from_millis(100))
    );
    assert_eq!(next_delay(1, None, Duration::from_millis(100), 0), None);
    assert_eq!(next_delay(0, None, Duration::ZERO, 0), None);
}

proptest! {
    #[test]
    fn backoff_stays_within_its_band(n in 0u32..64, random in any::<u32>()) {
        let ceiling = Duration::from_millis(100 * (1u64 << n.min(5))).min(Duration::from_secs(2));
        let delay = backoff(n, random);
        prop_assert!(delay >= ceiling / 2 && delay < ceiling);
    }

    #[test]
    fn a_chain_keeps_its_promises(
        chosen in 0usize..5,
        chain in prop::collection::vec(0usize..7, 0..6),
        retries in 0u32..4,
        deadline_ms in 0u64..5_000,
        events in prop::collection::vec((any::<bool>(), 0u8..3, prop::option::of(0u64..3_000), 0u64..400, any::<u32>()), 1..40),
    ) {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(deadline_ms);
        let mut machine = FallbackChain::new(chosen, &chain, 5, retries, deadline);
        let targets = machine.targets().to_vec();
        let mut now = start;
        let mut step = machine.next(Event::Start, now, 0);
        let mut sent: Vec<usize> = Vec::new();
        let mut last_failed = false;
        let mut moved_on_from: Option<usize> = None;
        for (covered, kind, retry_after, elapsed, random) in events {
            match step {
                Step::GiveUp => {
                    prop_assert_eq!(machine.next(Event::Waited, now, random), Step::GiveUp);
                    break;
                }
                Step::Wait(wait) => {
                    // Waits come only after a failure, and fit before the deadline.
                    prop_assert!(last_failed);
                    prop_assert!(now + wait < deadline);
                    now += wait;
                    step = machine.next(Event::Waited, now, random);
                    // …and are followed by a retry of the same target.
                    if let Step::Send(i) = step {
                        prop_assert_eq!(Some(&i), sent.last());
                    }
                }
                Step::Send(i) => {
                    prop_assert!(now < deadline, "sent after the deadline");
                    prop_assert!(i < 5);
                    if sent.is_empty() && chosen < 5 {
                        prop_assert_eq!(i, chosen, "the chosen variant goes first");
                    }
                    // Targets are visited in order, each in one run.
                    if let Some(previous) = sent.last() && *previous != i {
                        prop_assert!(!sent.contains(&i));
                        let position = |t: usize| targets.iter().position(|x| *x == t);
                        prop_assert!(position(i) > position(*previous));
                    }
                    // A skipped or refused target is not tried again.
                    prop_assert_ne!(moved_on_from, Some(i));
                    sent.push(i);
                    prop_assert!(sent.iter().filter(|t| **t == i).count() <= retries as usize + 1);
                    now += Duration::from_millis(elapsed);
                    let event = match kind {
                        0 => Event::Failed { covered, retry_after: retry_after.map(Duration::from_millis) },
                        1 => Event::Skipped,
                        _ => Event::Refused,
                    };
                    last_failed = kind == 0;
                    moved_on_from = (kind != 0).then_some(i);
                    step = machine.next(event, now, random);
                }
            }
        }
        prop_assert!(sent.len() <= targets.len() * (retries as usize + 1));
    }

    #[test]
    fn retry_after_never_panics(value in "\\PC{0,40}", secs in any::<u64>()) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs % 4_000_000_000);
        if let Ok(h) = HeaderValue::from_str(&value) {
            let mut map = HeaderMap::new();
            map.insert("retry-after", h.clone());
            map.insert("retry-after-ms", h);
            let parsed = parse_retry_after(&map, now);
            prop_assert!(parsed.is_none_or(|d| d <= Duration::from_secs(3600)));
        }
    }
}
