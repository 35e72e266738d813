//! The CLI against the mock API server: what it reads, what it writes,
//! what it prints.

use aiflags_api::{AIFeatureFlag, CheckResult, Phase, ProxyCount};
use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::{Cli, CliError, run};
use crate::controller::fixtures::FlagBuilder;
use crate::controller::mock_api::{ApiServer, finished};
use crate::controller::mock_api::{FLAGS_PATH, api_error, json_response};
use crate::rollout::sim::{Sim, Verdicts, canary_spec};

fn client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "shop"), ApiServer::new(handle))
}

/// `summarizer` at step 2 of 3 (50%), analysed every minute: two checks
/// passed at step 1, one inconclusive at step 2; 2 of 3 proxies caught up.
fn mid_rollout() -> AIFeatureFlag {
    let mut sim = Sim::new(canary_spec(
        &[(10.0, Some("2m")), (50.0, Some("10m")), (100.0, None)],
        Some("1m"),
    ));
    sim.tick(None);
    sim.propagate().tick(None);
    sim.at(60).tick(None);
    sim.at(60).tick(None);
    sim.propagate().tick(None);
    sim.verdicts = Verdicts::Always(CheckResult::Inconclusive);
    sim.at(60).tick(None);
    let mut flag = AIFeatureFlag::test().named("summarizer");
    flag.spec = sim.spec.clone();
    let mut status = sim.status.clone().expect("a status");
    status.phase = Some(Phase::Progressing);
    status.current_weights = Some([("stable".into(), 50.0), ("candidate".into(), 50.0)].into());
    status.config_revision = Some("3f1c0a9e5b7d2c41".into());
    status.serving_generation = Some(1);
    status.proxies = Some(ProxyCount {
        total: 3,
        at_revision: 2,
        revision: Some("3f1c0a9e5b7d2c41".into()),
        summary: Some("2/3".into()),
    });
    flag.status = Some(status);
    flag
}

async fn cli(
    args: &[&str],
    server: impl FnOnce(ApiServer) -> tokio::task::JoinHandle<()>,
) -> (Result<u8, CliError>, String) {
    let (client, api) = client();
    let scenario = server(api);
    let mut out = Vec::new();
    let cli = Cli::try_parse_from(std::iter::once("kubectl-aiflags").chain(args.iter().copied()))
        .expect("valid arguments");
    let result = run(cli, client, "shop", &mut out).await;
    finished(scenario).await;
    (result, String::from_utf8(out).expect("utf-8"))
}

fn answers_get(flag: AIFeatureFlag) -> impl FnOnce(ApiServer) -> tokio::task::JoinHandle<()> {
    move |server| {
        tokio::spawn(async move {
            server.flag_read(&flag).await;
        })
    }
}

#[tokio::test]
async fn get_shows_steps_weights_checks_proxies_and_conditions() {
    let (result, out) = cli(&["get", "summarizer"], answers_get(mid_rollout())).await;
    assert_eq!(result.expect("shown"), 0);
    let expected = "\
Name:          summarizer
Namespace:     shop
Status:        ◌ Progressing
Phase:         Progressing
Message:       step 2 (50%): pausing until 2025-06-01T12:12:00Z; last check inconclusive: inconclusive
Strategy:      Canary (candidate)
  Step:        2/3
  SetWeight:   50
  Weights:     candidate=50 stable=50
Analysis:      every 1m; 0 of 2 failed checks abort
Config:        revision 3f1c0a9e5b7d2c41, generation 1 serving (latest 1)
Proxies:       2/3 at revision 3f1c0a9e5b7d2c41

Steps:
  ✔ 1  weight 10%    pause 2m
  ● 2  weight 50%    pause 10m
    3  weight 100%

Checks (latest last):
  12:01:00  step 1  ✔ Pass          pass
  12:02:00  step 1  ✔ Pass          pass
  12:03:00  step 2  ? Inconclusive  inconclusive

Conditions:
  Progressing  True   AnalysisInconclusive  step 2 (50%): pausing until 2025-06-01T12:12:00Z; last check inconclusive: inconclusive
  Aborted      False  NotAborted            not aborted; 0 failed analysis checks since the rollout started
";
    assert_eq!(out, expected, "\n{out}");
}

#[tokio::test]
async fn get_as_json_or_yaml_carries_the_same_view() {
    let (result, out) = cli(
        &["get", "summarizer", "-o", "json"],
        answers_get(mid_rollout()),
    )
    .await;
    assert_eq!(result.expect("shown"), 0);
    let view: Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(view["state"], "Progressing");
    assert_eq!(
        (view["currentStep"].clone(), view["canaryWeight"].clone()),
        (json!(2), json!(50.0))
    );
    assert_eq!(
        view["steps"][0],
        json!({"weight": 10.0, "pause": "2m", "state": "done"})
    );
    assert_eq!(view["checks"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        view["proxies"],
        json!({"atRevision": 2, "total": 3, "revision": "3f1c0a9e5b7d2c41"})
    );

    let (_, out) = cli(
        &["get", "summarizer", "-o", "yaml", "-n", "shop"],
        answers_get(mid_rollout()),
    )
    .await;
    let yaml: Value = serde_yaml::from_str(out.trim_start_matches("---\n")).expect("YAML");
    assert_eq!(yaml, view);
}

#[tokio::test]
async fn status_watch_prints_each_change_until_the_rollout_aborts() {
    let flag = mid_rollout();
    let mut aborted = flag.clone();
    let rollout = aborted
        .status
        .as_mut()
        .and_then(|s| s.rollout.as_mut())
        .expect("rollout");
    rollout.state = aiflags_api::RolloutState::Aborted;
    rollout.canary_weight = 0.0;
    rollout.message = "2 failed analysis checks at step 2: the canary gets 0%".into();
    let mut paused = flag.clone();
    paused
        .status
        .as_mut()
        .and_then(|s| s.rollout.as_mut())
        .expect("rollout")
        .state = aiflags_api::RolloutState::Paused;
    let scenario = move |server: ApiServer| {
        tokio::spawn(async move {
            let mut server = server.flag_read(&flag).await;
            let (method, uri, respond) = server.next_any().await;
            assert_eq!(method, Method::GET);
            assert!(uri.starts_with(&format!("{FLAGS_PATH}?")), "{uri}");
            for part in [
                "watch=true",
                "fieldSelector=metadata.name%3Dsummarizer",
                "resourceVersion=1",
            ] {
                assert!(uri.contains(part), "{part} in {uri}");
            }
            // A status write that changes nothing shown, then two that do.
            let events: String = [&flag, &paused, &aborted]
                .iter()
                .map(|f| format!("{}\n", json!({"type": "MODIFIED", "object": f})))
                .collect();
            let mut response = Response::new(Body::from(events.into_bytes()));
            *response.status_mut() = StatusCode::OK;
            respond.send_response(response);
        })
    };
    let (result, out) = cli(&["status", "summarizer", "--watch"], scenario).await;
    assert_eq!(result.expect("watched"), 1, "an aborted rollout exits 1");
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("◌ Progressing - step 2/3, canary 50%: step 2 (50%): pausing"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("॥ Paused - step 2/3, canary 50%"),
        "{out}"
    );
    assert_eq!(
        lines[2],
        "✖ Aborted - step 2/3, canary 0%: 2 failed analysis checks at step 2: the canary gets 0%"
    );
}

#[tokio::test]
async fn promote_annotates_the_flag_for_the_operator() {
    let flag = mid_rollout();
    let scenario = move |server: ApiServer| {
        tokio::spawn(async move {
            let mut server = server.flag_read(&flag).await;
            let (body, respond) = server
                .next(Method::PATCH, &format!("{FLAGS_PATH}/summarizer?"))
                .await;
            let annotations = body["metadata"]["annotations"]
                .as_object()
                .expect("annotations");
            assert_eq!(
                annotations.keys().collect::<Vec<_>>(),
                ["aiflags.dev/promote"]
            );
            let at = annotations["aiflags.dev/promote"]
                .as_str()
                .unwrap_or_default();
            assert!(at.parse::<k8s_openapi::jiff::Timestamp>().is_ok(), "{at}");
            respond.send_response(json_response(StatusCode::OK, &flag));
        })
    };
    let (result, out) = cli(&["promote", "summarizer"], scenario).await;
    assert_eq!(result.expect("requested"), 0);
    assert_eq!(
        out,
        "shop/summarizer: promote requested (aiflags.dev/promote); the operator acts on it and removes the annotation\n"
    );
}

#[tokio::test]
async fn commands_on_flags_without_a_rollout_or_missing_flags_are_refused() {
    let fixed = AIFeatureFlag::test();
    let (result, out) = cli(&["abort", "summarizer"], answers_get(fixed)).await;
    assert_eq!(
        result.expect_err("refused").to_string(),
        "shop/summarizer has no rollout.steps: there is no rollout to abort"
    );
    assert_eq!(out, "");

    let missing = |mut server: ApiServer| {
        tokio::spawn(async move {
            let (_, respond) = server
                .next(Method::GET, &format!("{FLAGS_PATH}/nope"))
                .await;
            respond.send_response(api_error(404, "NotFound", "not found"));
        })
    };
    let (result, _) = cli(&["pause", "nope", "-n", "shop"], missing).await;
    assert_eq!(
        result.expect_err("not found").to_string(),
        "aifeatureflag \"nope\" not found in namespace \"shop\""
    );
}
