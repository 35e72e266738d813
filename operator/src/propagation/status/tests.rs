use aiflags_api::{FlagInput, compile};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use proptest::prelude::*;

use super::*;
use crate::controller::fixtures::FlagBuilder;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("timestamp")
}

/// `shop/summarizer` applying to pods labelled `app=summarizer`, and the
/// config that serves it.
fn served_flag() -> (AIFeatureFlag, SidecarConfig) {
    let mut flag = AIFeatureFlag::test();
    flag.spec.pod_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("app".into(), "summarizer".into())])),
        match_expressions: None,
    });
    let config = compile(Some("shop"), &[FlagInput::from_resource(&flag)], None).config;
    (flag, config)
}

fn app(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), name.to_string())])
}

fn propagated(status: &AIFeatureFlagStatus) -> (&str, &str, &str) {
    let c = &status.conditions[0];
    assert_eq!(c.type_, PROPAGATED);
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

#[test]
fn nothing_is_said_before_the_operator_wrote_a_config() {
    let (flag, _) = served_flag();
    assert_eq!(desired_propagation(&flag, None, &[], at(0)), None);
}

#[test]
fn a_flag_not_in_the_config_is_not_served() {
    let (flag, _) = served_flag();
    let empty = SidecarConfig::empty(Some("shop".into()));
    let status = desired_propagation(&flag, Some(&empty), &[], at(0)).expect("a status");
    assert_eq!(status.proxies, None);
    let message = format!(
        "the flag is not in the namespace's config revision {} (see the Ready condition)",
        empty.revision
    );
    assert_eq!(propagated(&status), ("False", NOT_SERVED, message.as_str()));
}

#[test]
fn proxies_are_those_the_selector_matches_counted_by_what_they_serve() {
    let (flag, config) = served_flag();
    let (summarizer, other) = (app("summarizer"), app("other"));
    let current = Answer::Serving(config.revision.clone());
    let older = Answer::Serving("0000000000000000".into());
    let unreachable = Answer::Unreachable("refused".into());
    let proxy = |labels, answer| Proxy { labels, answer };
    let proxies = [
        proxy(&summarizer, Some(&current)),
        proxy(&summarizer, Some(&current)),
        proxy(&summarizer, Some(&older)),
        proxy(&summarizer, Some(&Answer::NoConfig)),
        proxy(&summarizer, Some(&unreachable)),
        proxy(&summarizer, None),
        // Not the flag's pods, whatever they serve.
        proxy(&other, Some(&current)),
        proxy(&other, Some(&older)),
    ];
    let status = desired_propagation(&flag, Some(&config), &proxies, at(0)).expect("a status");
    assert_eq!(
        status.proxies,
        Some(ProxyCount {
            total: 6,
            at_revision: 2,
            revision: Some(config.revision.clone()),
            summary: Some("2/6".into()),
        })
    );
    let message = format!(
        "2 of 6 proxies serve config revision {}; 1 on another revision, 1 without config yet, 1 unreachable, 1 not yet asked",
        config.revision
    );
    assert_eq!(
        propagated(&status),
        ("False", PROXIES_BEHIND, message.as_str())
    );

    let status = desired_propagation(&flag, Some(&config), &proxies[..2], at(0)).expect("a status");
    let message = format!("all 2 proxies serve config revision {}", config.revision);
    assert_eq!(propagated(&status), ("True", AT_REVISION, message.as_str()));
    assert_eq!(status.conditions[0].observed_generation, Some(1));

    let status = desired_propagation(&flag, Some(&config), &proxies[6..], at(0)).expect("a status");
    assert_eq!(
        propagated(&status),
        (
            "False",
            NO_PROXIES,
            "no running injected pod matches the flag's podSelector"
        )
    );
    assert_eq!(
        status.proxies.and_then(|p| p.summary).as_deref(),
        Some("0/0")
    );
}

#[test]
fn the_transition_time_moves_only_when_the_status_flips() {
    let (flag, config) = served_flag();
    let labels = app("summarizer");
    let current = Answer::Serving(config.revision.clone());
    let behind = Answer::NoConfig;
    let one = |answer| {
        [Proxy {
            labels: &labels,
            answer: Some(answer),
        }]
    };

    let first = desired_propagation(&flag, Some(&config), &one(&behind), at(10)).expect("status");
    let flag = flag.with_status(first.clone());
    // Same status, new count: the time stays.
    let two = [
        Proxy {
            labels: &labels,
            answer: Some(&behind),
        },
        Proxy {
            labels: &labels,
            answer: None,
        },
    ];
    let again = desired_propagation(&flag, Some(&config), &two, at(20)).expect("status");
    assert_eq!(again.conditions[0].last_transition_time, Time(at(10)));
    // Flipped: the time moves.
    let flipped =
        desired_propagation(&flag, Some(&config), &one(&current), at(30)).expect("status");
    assert_eq!(flipped.conditions[0].last_transition_time, Time(at(30)));
}

#[test]
fn only_the_owned_part_is_compared() {
    let (flag, config) = served_flag();
    let labels = app("summarizer");
    let current = Answer::Serving(config.revision.clone());
    let proxies = [Proxy {
        labels: &labels,
        answer: Some(&current),
    }];
    let desired = desired_propagation(&flag, Some(&config), &proxies, at(0)).expect("status");
    // What the API holds: the reconciler's fields beside the owned ones.
    let ready = Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "Compiled".into(),
        message: "generation 1 compiled".into(),
        observed_generation: Some(1),
        last_transition_time: Time(at(0)),
    };
    let mut stored = desired.clone();
    stored.conditions.insert(0, ready);
    stored.phase = Some(aiflags_api::Phase::Healthy);
    stored.config_revision = Some(config.revision.clone());
    assert_eq!(propagation_part(Some(&stored)), desired);
    // A resync with nothing new writes nothing.
    let flag = flag.with_status(stored);
    let again = desired_propagation(&flag, Some(&config), &proxies, at(99)).expect("status");
    assert_eq!(propagation_part(flag.status.as_ref()), again);
    assert_eq!(propagation_part(None), AIFeatureFlagStatus::default());
}

proptest! {
    #[test]
    fn counts_add_up_and_propagated_means_all_of_them(
        answers in prop::collection::vec((any::<bool>(), 0u8..5), 0..40),
    ) {
        let (flag, config) = served_flag();
        let (summarizer, other) = (app("summarizer"), app("other"));
        let kinds = [
            Some(Answer::Serving(config.revision.clone())),
            Some(Answer::Serving("0000000000000000".into())),
            Some(Answer::NoConfig),
            Some(Answer::Unreachable("x".into())),
            None,
        ];
        let proxies: Vec<Proxy> = answers
            .iter()
            .map(|(matches, kind)| Proxy {
                labels: if *matches { &summarizer } else { &other },
                answer: kinds[usize::from(*kind)].as_ref(),
            })
            .collect();
        let status = desired_propagation(&flag, Some(&config), &proxies, at(0)).expect("status");
        let count = status.proxies.clone().expect("counted");
        let matching = answers.iter().filter(|(m, _)| *m).count() as u32;
        let current = answers.iter().filter(|(m, k)| *m && *k == 0).count() as u32;
        prop_assert_eq!((count.total, count.at_revision), (matching, current));
        let (condition, _, _) = propagated(&status);
        prop_assert_eq!(condition == "True", matching > 0 && current == matching);
    }
}
