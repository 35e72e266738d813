//! `aiflags-dev rollout`: the operator's part in a progressive rollout,
//! without a Kubernetes API server, for tests and demos on one machine.
//!
//! It runs what the operator runs, in the same order: the propagation
//! pass (asks each sidecar's admin `/metrics` which revision it serves,
//! and derives `proxies` and `Propagated` as the operator does), the
//! rollout engine's turn (proxies at the canary weight, an analysis check
//! against Prometheus when due, the decision), then the compile of the
//! flag at the engine's canary weight, written to the sidecars' config
//! file (a rename, as kubelet's volume swap). The status lives in memory
//! where the API server would keep it (round-tripped through JSON, as the
//! API server stores it). Every decision is printed as one JSON line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aiflags_api::{
    AIFeatureFlagStatus, FlagInput, RolloutState, SidecarConfig, compile, parse_manifests,
};
use aiflags_operator::propagation::probe::{Answer, PollSettings, ask, http_client};
use aiflags_operator::propagation::status::{Proxy, desired_propagation};
use aiflags_operator::rollout::analysis::prometheus::{Prometheus, PrometheusSettings};
use aiflags_operator::rollout::analysis::{Request, analyse};
use aiflags_operator::rollout::engine::{Input, analysis_due, decide};
use aiflags_operator::rollout::view::{proxies_view, with_engine_part};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    /// The AIFeatureFlag manifest (one flag, with `rollout.steps`).
    #[arg(long)]
    pub flag: PathBuf,
    /// The compiled config file the sidecars read (`--config-file`).
    #[arg(long)]
    pub config_file: PathBuf,
    /// A sidecar's admin address (HOST:PORT), asked for its revision. Repeatable.
    #[arg(long = "sidecar")]
    pub sidecars: Vec<SocketAddr>,
    /// Prometheus' base URL; without it every check is inconclusive.
    #[arg(long)]
    pub prometheus_url: Option<String>,
    /// How often the harness reconciles (the operator is woken by events; this polls).
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub tick: Duration,
    /// Exit once the rollout completes or aborts (it is reported either way).
    #[arg(long)]
    pub exit_when_settled: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    aiflags_api::duration::parse_duration_ms(text).map(Duration::from_millis)
}

/// Runs the rollout until it settles (with `--exit-when-settled`) or forever.
pub async fn run(args: RolloutArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.flag)
        .map_err(|e| format!("reading {}: {e}", args.flag.display()))?;
    let (mut manifests, errors) = parse_manifests(&args.flag.display().to_string(), &text);
    if let Some(error) = errors.first() {
        return Err(error.to_string());
    }
    let mut flag = match manifests.len() {
        1 => manifests.remove(0).flag,
        n => {
            return Err(format!(
                "{}: {n} flags; one is expected",
                args.flag.display()
            ));
        }
    };
    flag.metadata.generation = Some(1);
    let namespace = flag.metadata.namespace.clone().unwrap_or_default();
    let prometheus = match &args.prometheus_url {
        Some(url) => Some(
            Prometheus::new(&PrometheusSettings {
                url: url.clone(),
                timeout: Duration::from_secs(2),
                ..PrometheusSettings::default()
            })
            .map_err(|errors| errors.join("; "))?,
        ),
        None => None,
    };
    let poll = PollSettings {
        timeout: Duration::from_secs(2),
        ..PollSettings::default()
    };
    let http = http_client(&poll);
    let mut written: Option<SidecarConfig> = None;
    let mut reported = Value::Null;
    let mut was_settled = false;
    emit(json!({"kind": "started", "flag": flag.metadata.name, "namespace": namespace}));

    loop {
        let now = Timestamp::now();
        // The propagation pass.
        if let Some(config) = &written {
            let mut answers = Vec::with_capacity(args.sidecars.len());
            for addr in &args.sidecars {
                answers.push(ask(&http, *addr, &poll).await);
            }
            let labels = Default::default();
            let proxies: Vec<Proxy<'_>> = answers
                .iter()
                .map(|answer| Proxy {
                    labels: &labels,
                    answer: Some(answer),
                })
                .collect();
            if let Some(part) = desired_propagation(&flag, Some(config), &proxies, now) {
                let status = flag.status.get_or_insert_with(AIFeatureFlagStatus::default);
                status.proxies = part.proxies;
                status.conditions.retain(|c| c.type_ != "Propagated");
                status.conditions.extend(part.conditions);
            }
            let at = answers
                .iter()
                .filter(|a| matches!(a, Answer::Serving(r) if *r == config.revision))
                .count();
            report(
                &mut reported,
                "proxies",
                json!({"atRevision": at, "total": answers.len(), "revision": config.revision}),
            );
        }

        // The engine's turn.
        let input = Input {
            spec: &flag.spec,
            status: flag.status.as_ref(),
            generation: 1,
            now,
            proxies: proxies_view(&flag, written.as_ref()),
            command: None,
        };
        let verdict = match Request::for_flag(&flag).filter(|_| analysis_due(&input)) {
            Some(request) => Some(analyse(prometheus.as_ref(), &request).await),
            None => None,
        };
        let decision = decide(&input, verdict);
        for event in &decision.events {
            emit(
                json!({"kind": "event", "reason": event.reason, "warning": event.warning, "note": event.note}),
            );
        }
        if let Some(check) = &decision.check {
            emit(json!({"kind": "check", "check": check}));
        }
        let status = with_engine_part(flag.status.take(), &decision.status);
        flag.status = Some(stored(&status)?);

        // The compile, at the engine's canary weight.
        let compilation = compile(
            Some(&namespace),
            &[FlagInput::from_resource(&flag)],
            written.as_ref(),
        );
        if let Some(errors) = compilation.flags.values().find(|o| !o.is_valid()) {
            let errors: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
            return Err(errors.join("; "));
        }
        let config = compilation.config;
        if written.as_ref().map(|w| &w.revision) != Some(&config.revision) {
            write_config(&args.config_file, &config)?;
            let weights = config
                .flags
                .first()
                .map(|f| f.weights.clone())
                .unwrap_or_default();
            emit(json!({"kind": "config", "revision": config.revision, "weights": weights}));
            written = Some(config);
        }

        let rollout = flag.status.as_ref().and_then(|s| s.rollout.as_ref());
        let state = rollout.map(|r| r.state);
        report(
            &mut reported,
            "status",
            json!({
                "state": state,
                "step": flag.status.as_ref().and_then(|s| s.current_step),
                "canaryWeight": rollout.map(|r| r.canary_weight),
                "failedChecks": flag.status.as_ref().and_then(|s| s.failed_checks),
                "reason": flag.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Progressing")).map(|c| c.reason.clone()),
                "message": rollout.map(|r| r.message.clone()),
            }),
        );
        let settled = matches!(state, Some(RolloutState::Completed | RolloutState::Aborted));
        if settled && !was_settled {
            emit(json!({"kind": "settled", "status": flag.status}));
            if args.exit_when_settled {
                return Ok(());
            }
        }
        was_settled = settled;
        tokio::time::sleep(args.tick).await;
    }
}

/// The status as the API server would store it (times in whole seconds).
fn stored(status: &AIFeatureFlagStatus) -> Result<AIFeatureFlagStatus, String> {
    let json = serde_json::to_string(status).map_err(|e| e.to_string())?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

/// Writes beside the file, then renames over it: readers see the old
/// document or the new one, never half of one.
fn write_config(path: &PathBuf, config: &SidecarConfig) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, config.to_compact_json())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Prints `value` as a `kind` line when it differs from the last one.
fn report(last: &mut Value, kind: &str, value: Value) {
    if last.get(kind) != Some(&value) {
        emit(json!({"kind": kind, kind: &value}));
        if let Value::Object(map) = last {
            map.insert(kind.to_string(), value);
        } else {
            *last = json!({kind: value});
        }
    }
}

#[allow(clippy::print_stdout)] // the harness's protocol is its stdout
fn emit(line: Value) {
    println!("{line}");
}
