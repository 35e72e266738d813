use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::propagation::fake_sidecar::{FakeSidecar, Metrics, serving, without_config};

const REVISION: &str = "0123456789abcdef";

#[test]
fn the_revision_line_is_found_among_the_others() {
    assert_eq!(
        revision_in(&serving(REVISION), false),
        Some(Answer::Serving(REVISION.into()))
    );
    // Label order and spacing as any exposition writer may produce them.
    let text = "aiflags_config_revision_info{ pod=\"a\", revision=\"abc\" } 1\n";
    assert_eq!(
        revision_in(text, false),
        Some(Answer::Serving("abc".into()))
    );
}

#[test]
fn only_a_series_at_one_is_the_served_revision() {
    let text = "aiflags_config_revision_info{revision=\"old\"} 0\n\
                aiflags_config_revision_info{revision=\"new\"} 1\n";
    assert_eq!(revision_in(text, true), Some(Answer::Serving("new".into())));
    let only_old = "aiflags_config_revision_info{revision=\"old\"} 0\n";
    assert_eq!(revision_in(only_old, true), Some(Answer::NoConfig));
}

#[test]
fn without_the_line_the_answer_waits_for_the_end_of_the_text() {
    assert_eq!(revision_in(&without_config(), false), None);
    assert_eq!(revision_in(&without_config(), true), Some(Answer::NoConfig));
    // Look-alikes are not it.
    let text = "aiflags_config_revision_info_total{revision=\"x\"} 1\n\
                # aiflags_config_revision_info{revision=\"x\"} 1\n\
                aiflags_config_revision_info{revision=\"x\" 1\n";
    assert_eq!(revision_in(text, true), Some(Answer::NoConfig));
}

proptest! {
    /// Wherever the text is cut, the complete lines before the cut give the
    /// right answer or none yet: never a wrong one.
    #[test]
    fn a_cut_text_never_gives_a_wrong_answer(cut in 0usize..700) {
        let text = serving(REVISION);
        let cut = cut.min(text.len());
        let complete = text[..cut].rfind('\n').map_or(0, |i| i + 1);
        match revision_in(&text[..complete], false) {
            None => prop_assert!(!text[..complete].contains(REVISION)),
            Some(answer) => prop_assert_eq!(answer, Answer::Serving(REVISION.into())),
        }
    }
}

const CADENCE: Cadence = Cadence {
    behind: Duration::from_secs(5),
    settled: Duration::from_secs(300),
};

fn target(uid: &str, version: &str) -> Target {
    Target {
        uid: uid.into(),
        resource_version: version.into(),
        addr: None,
        wanted: REVISION.into(),
    }
}

#[test]
fn a_sidecar_is_asked_when_new_changed_behind_or_stale() {
    let start = Instant::now();
    let later = |secs| start + Duration::from_secs(secs);
    let mut cache = ProbeCache::default();
    assert!(cache.due("a", "1", REVISION, start, CADENCE), "never asked");

    cache.record(&target("a", "1"), Answer::Serving(REVISION.into()), start);
    assert!(
        !cache.due("a", "1", REVISION, later(299), CADENCE),
        "settled"
    );
    assert!(
        cache.due("a", "1", REVISION, later(300), CADENCE),
        "settled long ago"
    );
    assert!(
        cache.due("a", "2", REVISION, later(1), CADENCE),
        "the pod changed"
    );
    assert!(
        cache.due("a", "1", "fedcba9876543210", later(5), CADENCE),
        "a newer revision"
    );
    assert!(
        !cache.due("a", "1", "fedcba9876543210", later(4), CADENCE),
        "asked just now"
    );

    for behind in [
        Answer::Serving("older".into()),
        Answer::NoConfig,
        Answer::Unreachable("refused".into()),
    ] {
        cache.record(&target("a", "1"), behind.clone(), start);
        assert!(
            !cache.due("a", "1", REVISION, later(4), CADENCE),
            "{behind:?}"
        );
        assert!(
            cache.due("a", "1", REVISION, later(5), CADENCE),
            "{behind:?}"
        );
    }
}

#[test]
fn an_answer_describes_the_pod_only_as_it_was() {
    let now = Instant::now();
    let mut cache = ProbeCache::default();
    cache.record(&target("a", "1"), Answer::NoConfig, now);
    cache.record(&target("b", "1"), Answer::NoConfig, now);
    assert_eq!(cache.answer("a", "1"), Some(&Answer::NoConfig));
    assert_eq!(cache.answer("a", "2"), None);
    cache.retain(|uid| uid == "b");
    assert_eq!((cache.answer("a", "1"), cache.len()), (None, 1));
}

fn settings() -> PollSettings {
    PollSettings {
        timeout: Duration::from_millis(500),
        ..PollSettings::default()
    }
}

async fn ask_fake(metrics: Metrics) -> (Answer, FakeSidecar) {
    let fake = FakeSidecar::start(metrics).await;
    let settings = settings();
    let answer = ask(&http_client(&settings), fake.addr, &settings).await;
    (answer, fake)
}

#[tokio::test]
async fn a_serving_sidecar_tells_its_revision_even_in_tiny_chunks() {
    let (answer, fake) = ask_fake(Metrics::Text(serving(REVISION), 7)).await;
    assert_eq!(answer, Answer::Serving(REVISION.into()));
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn the_read_stops_at_the_revision() {
    // The body never ends: only an early stop can answer.
    let (answer, _) = ask_fake(Metrics::TextThenHang(serving(REVISION))).await;
    assert_eq!(answer, Answer::Serving(REVISION.into()));
}

#[tokio::test]
async fn a_sidecar_without_config_says_so() {
    let (answer, _) = ask_fake(Metrics::Text(without_config(), 1024)).await;
    assert_eq!(answer, Answer::NoConfig);
}

#[tokio::test]
async fn errors_timeouts_and_endless_text_are_unreachable() {
    let (answer, _) = ask_fake(Metrics::Status(503)).await;
    assert_eq!(
        answer,
        Answer::Unreachable("/metrics answered 503 Service Unavailable".into())
    );

    let (answer, _) = ask_fake(Metrics::Hang).await;
    assert_eq!(answer, Answer::Unreachable("no answer within 500ms".into()));

    let noise = "aiflags_requests_total{flag=\"x\"} 1\n".repeat(10_000);
    let (answer, _) = ask_fake(Metrics::Text(noise, 4096)).await;
    let Answer::Unreachable(why) = answer else {
        panic!("{answer:?}");
    };
    assert!(
        why.contains("in the first 262144 bytes of /metrics"),
        "{why}"
    );

    // A port held by a socket that does not listen: connections are refused.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let closed: SocketAddr = socket.local_addr().expect("addr");
    let settings = settings();
    let answer = ask(&http_client(&settings), closed, &settings).await;
    let Answer::Unreachable(why) = answer else {
        panic!("{answer:?}");
    };
    assert!(why.to_lowercase().contains("connect"), "{why}");
}
