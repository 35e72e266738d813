use std::collections::BTreeMap;

use aiflags_api::{
    CompiledFallback, CompiledFlag, CompiledTargeting, CompiledVariant, Operation, SidecarConfig,
    StickySource,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::decide::{Decision, DecisionReason, RequestView, decide, sticky_value};
use super::resolved::ResolvedFlag;
use super::*;
use crate::request::ScannedBody;
use crate::request::scan::Scanned;

fn upstreams() -> Upstreams {
    Upstreams {
        openai: "http://127.0.0.1:1".parse().unwrap(),
        anthropic: "http://127.0.0.1:2".parse().unwrap(),
    }
}

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

fn index(flags: Vec<CompiledFlag>) -> Flags {
    let flags = flags.into_iter().map(Arc::new).collect();
    Flags::new(SidecarConfig::new(None, flags).flags, &upstreams())
}

fn resolved(flag: CompiledFlag) -> ResolvedFlag {
    ResolvedFlag::new(Arc::new(flag), &upstreams().resolver())
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

fn body(value: &Value) -> ScannedBody {
    let bytes = Bytes::from(value.to_string());
    let scanned = Scanned::new(&bytes).unwrap();
    ScannedBody {
        bytes,
        scanned,
        decoded: false,
    }
}

fn pick(flags: &Flags, op: Operation, model: Option<&str>, h: &HeaderMap) -> Option<String> {
    match flags.select(op, model, h) {
        Selection::Selected(flag) => Some(flag.key.to_string()),
        Selection::None => None,
        Selection::UnknownFlag(name) => Some(format!("unknown:{name}")),
    }
}

fn choose(flag: &CompiledFlag, h: &HeaderMap, value: &Value, random: u32) -> Decision {
    let body = body(value);
    decide(
        &resolved(flag.clone()),
        &RequestView {
            headers: h,
            body: &body,
        },
        random,
    )
}

/// The shell-style matcher the model patterns mean: `*` any run, `?` one
/// character, everything else literal. An oracle independent of globset.
fn reference_glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

fn matches(pattern: &str, model: &str) -> bool {
    let flags = index(vec![flag("f", &[pattern])]);
    pick(&flags, Operation::Chat, Some(model), &HeaderMap::new()).is_some()
}

#[test]
fn globs_match_like_a_shell_and_nothing_else_is_special() {
    assert!(matches("gpt-4o*", "gpt-4o-mini"));
    assert!(matches("gpt-4o*", "gpt-4o"));
    assert!(matches("*", ""));
    assert!(matches("gpt-?o", "gpt-4o"));
    assert!(matches("claude-*-sonnet-*", "claude-3-5-sonnet-20241022"));
    assert!(matches("π?", "πα"));
    assert!(matches("org/*", "org/team/model"));
    assert!(!matches("gpt-?o", "gpt-o"));
    assert!(!matches("gpt-4o", "gpt-4o-mini"));
    assert!(!matches("GPT*", "gpt-4o"));
    assert!(!matches("?", ""));
    // Regex and glob syntax is literal in a model pattern.
    assert!(matches("m[1]*", "m[1]-x"));
    assert!(!matches("m[12]*", "m1-x"));
    assert!(matches("{a,b}*", "{a,b}c"));
    assert!(matches("a\\*", "a\\b"));
    assert!(matches("gpt-4.?", "gpt-4.1"));
    assert!(!matches("gpt-4.?", "gpt-4x1"));
    assert!(matches("line*", "line\nbreak"));
}

#[test]
fn most_specific_model_match_wins() {
    let flags = index(vec![
        flag("any", &[]),
        flag("broad", &["gpt-*"]),
        flag("narrow", &["gpt-4o*"]),
        flag("exact", &["gpt-4o-mini"]),
    ]);
    let h = HeaderMap::new();
    let pick = |model| pick(&flags, Operation::Chat, Some(model), &h);
    assert_eq!(pick("gpt-4o-mini").as_deref(), Some("exact"));
    assert_eq!(pick("gpt-4o").as_deref(), Some("narrow"));
    assert_eq!(pick("gpt-3.5-turbo").as_deref(), Some("broad"));
    assert_eq!(pick("claude-sonnet-4").as_deref(), Some("any"));
}

#[test]
fn ties_go_to_the_smallest_key_whatever_the_order() {
    let h = HeaderMap::new();
    for flags in [
        vec![flag("b", &["gpt-*"]), flag("a", &["gpt-*"])],
        vec![flag("a", &["gpt-*"]), flag("b", &["gpt-*"])],
        vec![flag("b", &["gpt-4o"]), flag("a", &["gpt-4o"])],
        vec![flag("b", &[]), flag("a", &[])],
    ] {
        let mut config = SidecarConfig::new(None, Vec::new());
        config.flags = flags.into_iter().map(Arc::new).collect();
        let index = Flags::new(config.flags.clone(), &upstreams());
        assert_eq!(
            pick(&index, Operation::Chat, Some("gpt-4o"), &h).as_deref(),
            Some("a")
        );
    }
}

#[test]
fn operations_filter_flags_at_every_tier() {
    let mut embeddings = flag("embed", &["text-*"]);
    embeddings.operations = vec![Operation::Embeddings];
    let mut chat_exact = flag("chat", &["text-embedding-3-small"]);
    chat_exact.operations = vec![Operation::Chat];
    let flags = index(vec![embeddings, chat_exact]);
    let h = HeaderMap::new();
    let model = Some("text-embedding-3-small");
    assert_eq!(
        pick(&flags, Operation::Embeddings, model, &h).as_deref(),
        Some("embed")
    );
    assert_eq!(
        pick(&flags, Operation::Chat, model, &h).as_deref(),
        Some("chat")
    );
    assert_eq!(pick(&flags, Operation::Messages, model, &h), None);
}

#[test]
fn no_model_means_no_flag_unless_named() {
    let flags = index(vec![flag("any", &[])]);
    assert_eq!(pick(&flags, Operation::Chat, None, &HeaderMap::new()), None);
    let named = headers(&[("x-aiflags-flag", "any")]);
    assert_eq!(
        pick(&flags, Operation::Chat, None, &named).as_deref(),
        Some("any")
    );
}

#[test]
fn flag_header_overrides_model_matching_but_not_operations() {
    let mut chat_only = flag("chat-only", &[]);
    chat_only.operations = vec![Operation::Chat];
    let flags = index(vec![
        flag("exact", &["gpt-4o-mini"]),
        flag("other", &["claude-*"]),
        chat_only,
    ]);
    let model = Some("gpt-4o-mini");
    let named = headers(&[("x-aiflags-flag", " other ")]);
    assert_eq!(
        pick(&flags, Operation::Chat, model, &named).as_deref(),
        Some("other")
    );
    let unknown = headers(&[("x-aiflags-flag", "nope")]);
    assert_eq!(
        pick(&flags, Operation::Chat, model, &unknown).as_deref(),
        Some("unknown:nope")
    );
    // A blank header is ignored rather than treated as a flag name.
    let blank = headers(&[("x-aiflags-flag", "")]);
    assert_eq!(
        pick(&flags, Operation::Chat, model, &blank).as_deref(),
        Some("exact")
    );
    // Named for another operation: model matching decides, as without it.
    let chat = headers(&[("x-aiflags-flag", "chat-only")]);
    assert_eq!(
        pick(&flags, Operation::Embeddings, model, &chat).as_deref(),
        Some("exact")
    );
    assert_eq!(
        pick(&flags, Operation::Embeddings, Some("other"), &chat),
        None
    );
}

#[test]
fn a_thousand_glob_flags_still_find_the_last_one() {
    let mut all: Vec<CompiledFlag> = (0..1000)
        .map(|i| flag(&format!("f{i:04}"), &[&format!("model-{i:04}-*")]))
        .collect();
    all.push(flag("zzz", &["target-*"]));
    let flags = index(all);
    let h = HeaderMap::new();
    assert_eq!(
        pick(&flags, Operation::Chat, Some("target-x"), &h).as_deref(),
        Some("zzz")
    );
    assert_eq!(
        pick(&flags, Operation::Chat, Some("model-0999-a"), &h).as_deref(),
        Some("f0999")
    );
    assert_eq!(pick(&flags, Operation::Chat, Some("unknown"), &h), None);
}

#[test]
fn globs_too_big_for_one_set_still_match_and_a_bad_one_costs_only_itself() {
    let regexes: Vec<String> = ["a-*", "b-?", &format!("c-{}", "?".repeat(300)), "d-*"]
        .iter()
        .map(|p| globs::glob_regex(p))
        .collect();
    let mut ids = vec![0, 1, 2, 3];
    // Too small a limit for the set, and for the long glob alone.
    let matcher = globs::GlobMatcher::new(&regexes, &mut ids, 20_000);
    assert!(matches!(matcher, globs::GlobMatcher::Each(_)));
    assert_eq!(
        ids,
        vec![0, 1, 3],
        "the glob that cannot compile is dropped"
    );
    assert_eq!(matcher.matches("b-x"), vec![1]);
    assert_eq!(matcher.matches("d-anything"), vec![2]);
    assert!(matcher.matches("c-x").is_empty());
    let mut ids = vec![0, 1, 2, 3];
    assert!(matches!(
        globs::GlobMatcher::new(&regexes, &mut ids, GLOB_SET_LIMIT),
        globs::GlobMatcher::Set(_)
    ));
}

#[test]
fn prefix_suffix_and_other_globs_all_match_and_the_most_literal_wins() {
    let glob_index = globs::GlobIndex::new(
        &[
            "gpt-*",
            "*-mini",
            "gpt-*-mini",
            "*",
            "gpt-4o*",
            "g?t*",
            "π*",
            "*α",
        ],
        GLOB_SET_LIMIT,
    );
    let found = |model: &str| {
        let mut ids = Vec::new();
        glob_index.each_match(model, |id| ids.push(id));
        ids.sort_unstable();
        ids
    };
    assert_eq!(found("gpt-4o-mini"), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(found("o4-mini"), vec![1, 3]);
    assert_eq!(found(""), vec![3]);
    // Cuts that fall inside a character match nothing and do not panic.
    assert_eq!(found("πα"), vec![3, 6, 7]);
    assert_eq!(found("απ"), vec![3]);

    let flags = index(vec![
        flag("any", &["*"]),
        flag("family", &["gpt-*"]),
        flag("mini", &["*-mini"]),
        flag("precise", &["gpt-*-mini"]),
    ]);
    let h = HeaderMap::new();
    let pick_model = |model| pick(&flags, Operation::Chat, Some(model), &h);
    assert_eq!(pick_model("gpt-4o-mini").as_deref(), Some("precise"));
    assert_eq!(pick_model("gpt-4o").as_deref(), Some("family"));
    assert_eq!(pick_model("o4-mini").as_deref(), Some("mini"));
    assert_eq!(pick_model("claude").as_deref(), Some("any"));
}

#[test]
fn kill_switch_serves_the_default_before_targeting() {
    let mut f = flag("f", &[]);
    f.enabled = false;
    f.targeting = vec![rule(&[("x-tenant", &["beta"])], &[], "candidate")];
    let h = headers(&[("x-tenant", "beta"), ("x-user-id", "u1")]);
    let decision = choose(&f, &h, &json!({}), u32::MAX);
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
    let beta = headers(&[("x-tenant", "alpha"), ("x-tenant", "beta-corp")]);
    let both = json!({"metadata": {"tier": 3}, "user": "vip"});
    assert_eq!(
        choose(&f, &beta, &both, 0),
        Decision {
            variant: 1,
            reason: DecisionReason::Targeting(0)
        }
    );
    let silver = json!({"metadata": {"tier": "silver"}, "user": "vip"});
    assert_eq!(
        choose(&f, &beta, &silver, 0),
        Decision {
            variant: 0,
            reason: DecisionReason::Targeting(1)
        }
    );
    let none = HeaderMap::new();
    assert_eq!(
        choose(&f, &none, &silver, 0),
        Decision {
            variant: 1,
            reason: DecisionReason::Targeting(2)
        }
    );
    assert_eq!(
        choose(&f, &none, &json!({}), 0),
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
    let h = HeaderMap::new();
    let d = choose(&f, &h, &json!({"metadata": {"beta": true}}), 0);
    assert_eq!(d.reason, DecisionReason::Targeting(0));
}

#[test]
fn sticky_value_takes_the_first_present_source() {
    let f = resolved(flag("f", &[]));
    let sticky = |h: &HeaderMap, v: &Value| {
        let body = body(v);
        sticky_value(
            &f,
            &RequestView {
                headers: h,
                body: &body,
            },
        )
        .map(|s| s.into_owned())
    };
    let full = json!({"metadata": {"user_id": 42}, "user": "u-body"});
    assert_eq!(
        sticky(&headers(&[("x-user-id", "u-header")]), &full).as_deref(),
        Some("u-header")
    );
    let empty = headers(&[("x-user-id", "  ")]);
    assert_eq!(sticky(&empty, &full).as_deref(), Some("42"));
    let nested = json!({"metadata": {"user_id": {"nested": 1}}, "user": "u-body"});
    assert_eq!(sticky(&empty, &nested).as_deref(), Some("u-body"));
    assert_eq!(sticky(&empty, &json!({"user": true})), None);
    assert_eq!(sticky(&empty, &json!({})), None);
    let mut raw = HeaderMap::new();
    raw.insert(
        "x-user-id",
        HeaderValue::from_bytes("jürgen".as_bytes()).unwrap(),
    );
    assert_eq!(sticky(&raw, &json!({})).as_deref(), Some("jürgen"));
    // Escapes in the body are the same user as the plain text.
    let escaped = Bytes::from_static(br#"{"user": "u\u002dbody"}"#);
    let scanned = ScannedBody {
        scanned: Scanned::new(&escaped).unwrap(),
        bytes: escaped,
        decoded: false,
    };
    let got = sticky_value(
        &f,
        &RequestView {
            headers: &empty,
            body: &scanned,
        },
    )
    .map(|s| s.into_owned());
    assert_eq!(got.as_deref(), Some("u-body"));
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
        let d = choose(&f, &h, &json!({"user": user}), 0);
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
fn random_split_uses_the_callers_number_and_broken_configs_fall_back() {
    let f = flag("f", &[]);
    let h = HeaderMap::new();
    assert_eq!(choose(&f, &h, &json!({}), 0).variant, 0);
    assert_eq!(choose(&f, &h, &json!({}), u32::MAX).variant, 1);
    let mut broken = flag("f", &[]);
    broken.weights = vec![0, 0];
    assert_eq!(choose(&broken, &h, &json!({}), 7).variant, 0);
    broken.targeting = vec![rule(&[], &[], "missing")];
    assert_eq!(
        choose(&broken, &h, &json!({}), 7).reason,
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
        fields in prop::collection::btree_map("[a-z_]{1,6}", json_value(), 0..5),
        user in prop::option::of("[ -~]{0,12}"),
        random in any::<u32>()
    ) {
        let mut f = flag("f", &[]);
        f.targeting = vec![rule(&[("x-tenant", &["a"])], &[("metadata.user_id", &["1"])], "candidate")];
        let mut h = HeaderMap::new();
        if let Some(value) = user.and_then(|u| HeaderValue::from_str(&u).ok()) {
            h.insert("x-user-id", value);
        }
        let value = Value::Object(fields.into_iter().collect());
        let d = choose(&f, &h, &value, random);
        prop_assert!(d.variant < f.variants.len());
        prop_assert_eq!(d, choose(&f, &h, &value, random));
    }

    #[test]
    fn compiled_patterns_agree_with_the_reference_matcher(
        pattern in "[abπ*?.\\[\\]{}\\\\-]{0,8}",
        text in "[abπα.\\[\\]{}\\\\-]{0,8}"
    ) {
        prop_assume!(pattern.contains(['*', '?']));
        prop_assert_eq!(matches(&pattern, &text), reference_glob(&pattern, &text), "{} vs {}", pattern, text);
    }
}

#[test]
fn a_resolved_flag_shares_its_compiled_form_and_reads_params_from_it() {
    let mut compiled = flag("f", &["m"]);
    compiled.variants[1].params = Some(serde_json::json!({"temperature": 0.2, "top_p": 1}));
    let compiled = Arc::new(compiled);
    let resolved = ResolvedFlag::new(compiled.clone(), &upstreams().resolver());
    assert!(
        Arc::ptr_eq(&resolved.compiled, &compiled),
        "copied, not shared"
    );
    let params = |i: usize| resolved.params(&resolved.variants[i]).map(|p| p.len());
    assert_eq!(params(1), Some(2));
    assert_eq!(params(0), None);
}
