use std::collections::BTreeMap;

use aiflags_api::{CompiledFallback, CompiledVariant};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn flag(key: &str, models: &[&str]) -> CompiledFlag {
    let variant = |name: &str, model: &str| CompiledVariant {
        name: name.into(),
        model: model.into(),
        params: None,
        provider: None,
        pricing: None,
    };
    CompiledFlag {
        key: key.into(),
        namespace: None,
        generation: 1,
        enabled: true,
        pod_selector: None,
        models: models.iter().map(|m| m.to_string()).collect(),
        operations: Vec::new(),
        default_variant: "stable".into(),
        variants: vec![
            variant("stable", "gpt-4o-mini"),
            variant("candidate", "gpt-4.1-mini"),
        ],
        sticky_by: vec![
            StickySource::Header("x-user-id".into()),
            StickySource::Body(vec!["metadata".into(), "user_id".into()]),
            StickySource::Body(vec!["user".into()]),
        ],
        weights: vec![5_000, 5_000],
        targeting: Vec::new(),
        fallback: CompiledFallback::default(),
    }
}

fn config(flags: Vec<CompiledFlag>) -> SidecarConfig {
    SidecarConfig::new(None, flags)
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

fn view<'a>(
    model: Option<&'a str>,
    headers: &'a HeaderMap,
    body: Option<&'a Value>,
) -> RequestView<'a> {
    RequestView {
        operation: Some(Operation::Chat),
        model,
        headers,
        body,
    }
}

fn selected_key(selection: FlagSelection<'_>) -> Option<String> {
    match selection {
        FlagSelection::Selected(flag) => Some(flag.key.clone()),
        FlagSelection::None => None,
        FlagSelection::UnknownFlag(name) => Some(format!("unknown:{name}")),
    }
}

#[test]
fn glob_matches_like_a_shell() {
    assert!(glob_match("gpt-4o*", "gpt-4o-mini"));
    assert!(glob_match("gpt-4o*", "gpt-4o"));
    assert!(glob_match("*", ""));
    assert!(glob_match("gpt-?o", "gpt-4o"));
    assert!(glob_match("*-mini", "gpt-4.1-mini"));
    assert!(glob_match("a*b*c", "aXXbYYbc"));
    assert!(glob_match(
        "claude-*-sonnet-*",
        "claude-3-5-sonnet-20241022"
    ));
    assert!(glob_match("π?", "πα"));
    assert!(!glob_match("gpt-?o", "gpt-o"));
    assert!(!glob_match("gpt-4o", "gpt-4o-mini"));
    assert!(!glob_match("*-mini", "gpt-4.1-nano"));
    assert!(!glob_match("GPT*", "gpt-4o"));
    assert!(!glob_match("a*b", "aXbY"));
    assert!(!glob_match("?", ""));
}

#[test]
fn most_specific_model_match_wins() {
    let config = config(vec![
        flag("any", &[]),
        flag("broad", &["gpt-*"]),
        flag("narrow", &["gpt-4o*"]),
        flag("exact", &["gpt-4o-mini"]),
    ]);
    let h = HeaderMap::new();
    let pick = |model| selected_key(select_flag(&config, &view(Some(model), &h, None)));
    assert_eq!(pick("gpt-4o-mini").as_deref(), Some("exact"));
    assert_eq!(pick("gpt-4o").as_deref(), Some("narrow"));
    assert_eq!(pick("gpt-3.5-turbo").as_deref(), Some("broad"));
    assert_eq!(pick("claude-sonnet-4").as_deref(), Some("any"));
}

#[test]
fn ties_go_to_the_smallest_key_whatever_the_order() {
    let mut flags = vec![flag("b", &["gpt-*"]), flag("a", &["gpt-*"])];
    let h = HeaderMap::new();
    for _ in 0..2 {
        let mut config = config(flags.clone());
        config.flags = flags.clone();
        let picked = selected_key(select_flag(&config, &view(Some("gpt-4o"), &h, None)));
        assert_eq!(picked.as_deref(), Some("a"));
        flags.reverse();
    }
}

#[test]
fn operations_filter_flags() {
    let mut embeddings = flag("embed", &["text-*"]);
    embeddings.operations = vec![Operation::Embeddings];
    let config = config(vec![embeddings]);
    let h = HeaderMap::new();
    let mut v = view(Some("text-embedding-3-small"), &h, None);
    assert_eq!(select_flag(&config, &v), FlagSelection::None);
    v.operation = Some(Operation::Embeddings);
    assert_eq!(
        selected_key(select_flag(&config, &v)).as_deref(),
        Some("embed")
    );
    v.operation = None;
    assert_eq!(select_flag(&config, &v), FlagSelection::None);
}

#[test]
fn no_model_means_no_flag_unless_named() {
    let config = config(vec![flag("any", &[])]);
    let none = HeaderMap::new();
    assert_eq!(
        select_flag(&config, &view(None, &none, None)),
        FlagSelection::None
    );
    let named = headers(&[("x-aiflags-flag", "any")]);
    assert_eq!(
        selected_key(select_flag(&config, &view(None, &named, None))).as_deref(),
        Some("any")
    );
}

#[test]
fn flag_header_overrides_model_matching() {
    let config = config(vec![
        flag("exact", &["gpt-4o-mini"]),
        flag("other", &["claude-*"]),
    ]);
    let named = headers(&[("x-aiflags-flag", " other ")]);
    let picked = select_flag(&config, &view(Some("gpt-4o-mini"), &named, None));
    assert_eq!(selected_key(picked).as_deref(), Some("other"));
    let unknown = headers(&[("x-aiflags-flag", "nope")]);
    let picked = select_flag(&config, &view(Some("gpt-4o-mini"), &unknown, None));
    assert_eq!(picked, FlagSelection::UnknownFlag("nope".into()));
    // A blank header is ignored rather than treated as a flag name.
    let blank = headers(&[("x-aiflags-flag", "")]);
    let picked = select_flag(&config, &view(Some("gpt-4o-mini"), &blank, None));
    assert_eq!(selected_key(picked).as_deref(), Some("exact"));
}

#[test]
fn flag_header_still_respects_operations() {
    let mut chat_only = flag("chat-only", &[]);
    chat_only.operations = vec![Operation::Chat];
    let config = config(vec![chat_only]);
    let named = headers(&[("x-aiflags-flag", "chat-only")]);
    let mut v = view(Some("m"), &named, None);
    v.operation = Some(Operation::Embeddings);
    assert_eq!(select_flag(&config, &v), FlagSelection::None);
}

#[test]
fn kill_switch_serves_the_default_before_targeting() {
    let mut f = flag("f", &[]);
    f.enabled = false;
    f.targeting = vec![rule(&[("x-tenant", &["beta"])], &[], "candidate")];
    let h = headers(&[("x-tenant", "beta"), ("x-user-id", "u1")]);
    let decision = decide(&f, &view(Some("m"), &h, None), u32::MAX);
    assert_eq!(
        decision,
        Decision {
            variant: 0,
            reason: DecisionReason::Disabled
        }
    );
}

fn rule(headers: &[(&str, &[&str])], body: &[(&str, &[&str])], variant: &str) -> CompiledTargeting {
    let map = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect()
    };
    CompiledTargeting {
        headers: map(headers),
        body: map(body),
        variant: variant.into(),
    }
}

#[test]
fn targeting_rules_apply_in_order_and_need_every_condition() {
    let mut f = flag("f", &[]);
    f.weights = vec![10_000, 0];
    f.targeting = vec![
        rule(
            &[("x-tenant", &["beta-corp"])],
            &[("metadata.tier", &["gold", "3"])],
            "candidate",
        ),
        rule(&[("x-tenant", &["beta-corp", "other"])], &[], "stable"),
        rule(&[], &[("user", &["vip"])], "candidate"),
    ];
    let both = json!({"metadata": {"tier": 3}, "user": "vip"});
    let beta = headers(&[("x-tenant", "alpha"), ("x-tenant", "beta-corp")]);
    let d = decide(&f, &view(Some("m"), &beta, Some(&both)), 0);
    assert_eq!(
        d,
        Decision {
            variant: 1,
            reason: DecisionReason::Targeting(0)
        }
    );

    let silver = json!({"metadata": {"tier": "silver"}, "user": "vip"});
    let d = decide(&f, &view(Some("m"), &beta, Some(&silver)), 0);
    assert_eq!(
        d,
        Decision {
            variant: 0,
            reason: DecisionReason::Targeting(1)
        }
    );

    let none = HeaderMap::new();
    let d = decide(&f, &view(Some("m"), &none, Some(&silver)), 0);
    assert_eq!(
        d,
        Decision {
            variant: 1,
            reason: DecisionReason::Targeting(2)
        }
    );

    let d = decide(&f, &view(Some("m"), &none, None), 0);
    assert_eq!(
        d,
        Decision {
            variant: 0,
            reason: DecisionReason::Random
        }
    );
}

#[test]
fn booleans_in_the_body_match_their_json_text() {
    let mut f = flag("f", &[]);
    f.targeting = vec![rule(&[], &[("metadata.beta", &["true"])], "candidate")];
    let body = json!({"metadata": {"beta": true}});
    let h = HeaderMap::new();
    assert_eq!(
        decide(&f, &view(Some("m"), &h, Some(&body)), 0).reason,
        DecisionReason::Targeting(0)
    );
}

#[test]
fn sticky_value_takes_the_first_present_source() {
    let f = flag("f", &[]);
    let body = json!({"metadata": {"user_id": 42}, "user": "u-body"});
    let h = headers(&[("x-user-id", "u-header")]);
    assert_eq!(
        sticky_value(&f, &view(None, &h, Some(&body))).as_deref(),
        Some("u-header")
    );
    let empty = headers(&[("x-user-id", "  ")]);
    assert_eq!(
        sticky_value(&f, &view(None, &empty, Some(&body))).as_deref(),
        Some("42")
    );
    let only_user = json!({"metadata": {"user_id": {"nested": 1}}, "user": "u-body"});
    assert_eq!(
        sticky_value(&f, &view(None, &empty, Some(&only_user))).as_deref(),
        Some("u-body")
    );
    assert_eq!(sticky_value(&f, &view(None, &empty, None)), None);
    let mut raw = HeaderMap::new();
    raw.insert(
        "x-user-id",
        HeaderValue::from_bytes("jürgen".as_bytes()).unwrap(),
    );
    assert_eq!(
        sticky_value(&f, &view(None, &raw, None)).as_deref(),
        Some("jürgen")
    );
}

#[test]
fn sticky_split_is_flagd_bucketing_of_the_flag_key() {
    let mut f = flag("fractional-flag", &[]);
    f.variants = ["clubs", "diamonds", "hearts", "spades"]
        .iter()
        .map(|name| CompiledVariant {
            name: name.to_string(),
            model: name.to_string(),
            params: None,
            provider: None,
            pricing: None,
        })
        .collect();
    f.default_variant = "clubs".into();
    f.weights = vec![2_500; 4];
    f.sticky_by = vec![StickySource::Body(vec!["user".into()])];
    let h = HeaderMap::new();
    // flagd-testbed v2 vectors for `fractional-flag`, see bucketing_tests.rs.
    for (user, expected) in [("jack", 2), ("queen", 3), ("ten", 0), ("nine", 1)] {
        let body = json!({"user": user});
        let d = decide(&f, &view(Some("m"), &h, Some(&body)), 0);
        assert_eq!(
            d,
            Decision {
                variant: expected,
                reason: DecisionReason::Sticky
            },
            "{user}"
        );
    }
}

#[test]
fn random_split_uses_the_callers_number() {
    let f = flag("f", &[]);
    let h = HeaderMap::new();
    assert_eq!(decide(&f, &view(Some("m"), &h, None), 0).variant, 0);
    assert_eq!(decide(&f, &view(Some("m"), &h, None), u32::MAX).variant, 1);
}

#[test]
fn broken_configs_fall_back_to_the_default() {
    let mut f = flag("f", &[]);
    f.weights = vec![0, 0];
    let h = HeaderMap::new();
    assert_eq!(decide(&f, &view(Some("m"), &h, None), 7).variant, 0);
    f.weights = vec![0, 0, 10_000];
    assert_eq!(decide(&f, &view(Some("m"), &h, None), 7).variant, 0);
    f.targeting = vec![rule(&[], &[], "missing")];
    assert_eq!(
        decide(&f, &view(Some("m"), &h, None), 7).reason,
        DecisionReason::Random
    );
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn decide_never_panics_and_stays_in_range(
        body in json_value(), user in prop::option::of("[ -~]{0,12}"), random in any::<u32>()
    ) {
        let mut f = flag("f", &[]);
        f.targeting = vec![rule(&[("x-tenant", &["a"])], &[("metadata.user_id", &["1"])], "candidate")];
        let mut h = HeaderMap::new();
        if let Some(value) = user.and_then(|u| HeaderValue::from_str(&u).ok()) {
            h.insert("x-user-id", value);
        }
        let d = decide(&f, &view(Some("m"), &h, Some(&body)), random);
        prop_assert!(d.variant < f.variants.len());
        prop_assert_eq!(d, decide(&f, &view(Some("m"), &h, Some(&body)), random));
    }

    #[test]
    fn glob_without_wildcards_is_equality(a in "[a-z0-9.-]{0,10}", b in "[a-z0-9.-]{0,10}") {
        prop_assert_eq!(glob_match(&a, &b), a == b);
        prop_assert!(glob_match("*", &b));
        let star_suffix = format!("{a}*");
        let with_suffix = format!("{a}{b}");
        prop_assert!(glob_match(&star_suffix, &with_suffix));
    }
}
