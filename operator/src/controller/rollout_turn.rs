//! The engine's turn in a flag's reconcile: read the commands, see whether
//! the proxies serve the canary weight, ask Prometheus when a check is
//! due, decide, and write the engine's part of the status before the
//! reconciler compiles the namespace (so the config follows the status,
//! and a restarted operator resumes from it). The decisions are
//! [`crate::rollout::engine`]'s; this module, the I/O shell the reconciler
//! runs, moves data.

use std::time::Duration;

use aiflags_api::{AIFeatureFlag, AIFeatureFlagStatus, FlagInput, compile_flag};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, publish};
use crate::rollout::analysis::{Request, analyse};
use crate::rollout::commands::{Requested, removal, requested};
use crate::rollout::conditions::engine_part;
use crate::rollout::engine::{Input, analysis_due, decide, notice};
use crate::rollout::view::{proxies_view, with_engine_part};

/// Field manager of the engine's part of the status.
pub(super) const FIELD_MANAGER: &str = "aiflags-operator-rollout";

/// What the engine's turn leaves for the rest of the reconcile.
#[derive(Clone, Debug)]
pub(super) struct Turn {
    /// The flag with the engine's part of the status as now written.
    pub(super) flag: AIFeatureFlag,
    /// Look again after this, at the latest.
    pub(super) requeue: Option<Duration>,
}

/// The engine's turn for `flag` (the freshest cached copy). `None` for a
/// flag that has no progressive rollout and no record of one.
pub(super) async fn engine_turn(
    ctx: &Context,
    flag: &AIFeatureFlag,
) -> Result<Option<Turn>, kube::Error> {
    let namespace = flag.namespace().unwrap_or_default();
    let name = flag.name_any();
    let asked = requested(flag.metadata.annotations.as_ref());
    let has_steps = flag
        .spec
        .rollout
        .as_ref()
        .is_some_and(|r| r.canary.is_some() && r.steps.is_some());
    let recorded = flag.status.as_ref().is_some_and(|s| s.rollout.is_some());
    if !has_steps && !recorded {
        if !asked.present.is_empty() {
            let note = format!(
                "{} ignored: the flag has no rollout.steps to control",
                asked.present.join(", ")
            );
            publish(ctx, flag, notice(true, "CommandIgnored", note)).await;
            remove_commands(ctx, flag, &asked).await?;
        }
        ctx.metrics
            .rollout
            .observed(&namespace, &name, &AIFeatureFlagStatus::default());
        return Ok(None);
    }
    if has_steps && compile_flag(&FlagInput::from_resource(flag)).is_err() {
        // The served version is an older one the engine cannot move;
        // commands wait for a valid spec (the Ready condition says why).
        return Ok(Some(Turn {
            flag: flag.clone(),
            requeue: None,
        }));
    }

    let written = ctx.written.get(&namespace);
    let now = Timestamp::now();
    let mut current = flag.clone();
    let mut verdict = None;
    // A second try decides again on the fresh flag when another writer
    // changed it meanwhile (the propagation pass, say): the decision then
    // includes whatever that writer recorded, so nothing is stepped twice.
    for attempt in 0..2 {
        let asked = requested(current.metadata.annotations.as_ref());
        let input = Input {
            spec: &current.spec,
            status: current.status.as_ref(),
            generation: current.metadata.generation.unwrap_or_default(),
            now,
            proxies: proxies_view(&current, written.as_deref()),
            command: asked.command,
        };
        if verdict.is_none()
            && let Some(request) = Request::for_flag(&current).filter(|_| analysis_due(&input))
        {
            verdict = Some(analyse(ctx.prometheus.as_deref(), &request).await);
        }
        let decision = decide(&input, verdict.clone());
        if engine_part(current.status.as_ref()) != decision.status {
            match write_engine_part(ctx, &current, &decision.status).await {
                Ok(()) => {}
                Err(kube::Error::Api(status)) if status.code == 409 && attempt == 0 => {
                    let api: Api<AIFeatureFlag> = Api::namespaced(ctx.client.clone(), &namespace);
                    match api.get_opt(&name).await? {
                        Some(fresh) if fresh.metadata.deletion_timestamp.is_none() => {
                            current = fresh;
                            continue;
                        }
                        _ => return Ok(None),
                    }
                }
                Err(error) => return Err(error),
            }
            if let Some(check) = &decision.check {
                ctx.metrics.rollout.checked(&namespace, &name, check.result);
                tracing::info!(flag = %name, %namespace, result = ?check.result, message = %check.message, "analysis check");
            }
            if decision.aborted {
                ctx.metrics.rollout.aborted(&namespace, &name);
            }
            current.status = Some(with_engine_part(current.status.clone(), &decision.status));
            ctx.engine_written(&current);
            for event in &decision.events {
                publish(ctx, &current, event.clone()).await;
            }
        }
        if !asked.present.is_empty() {
            remove_commands(ctx, &current, &asked).await?;
        }
        let status = current.status.clone().unwrap_or_default();
        ctx.metrics.rollout.observed(&namespace, &name, &status);
        return Ok(Some(Turn {
            flag: current,
            requeue: decision.requeue,
        }));
    }
    Ok(None)
}

/// Server-side applies the engine's part, on the condition that the flag
/// is still the one decided from (its `resourceVersion`): a second
/// operator, or a stale cache, gets a conflict instead of stepping twice.
async fn write_engine_part(
    ctx: &Context,
    flag: &AIFeatureFlag,
    status: &AIFeatureFlagStatus,
) -> Result<(), kube::Error> {
    let api: Api<AIFeatureFlag> =
        Api::namespaced(ctx.client.clone(), &flag.namespace().unwrap_or_default());
    let mut body = json!({
        "apiVersion": AIFeatureFlag::api_version(&()),
        "kind": AIFeatureFlag::kind(&()),
        "status": status,
    });
    if let Some(version) = &flag.metadata.resource_version {
        body["metadata"] = json!({"resourceVersion": version});
    }
    let patch = Patch::Apply(body);
    api.patch_status(
        &flag.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &patch,
    )
    .await
    .map(drop)
}

async fn remove_commands(
    ctx: &Context,
    flag: &AIFeatureFlag,
    asked: &Requested,
) -> Result<(), kube::Error> {
    let api: Api<AIFeatureFlag> =
        Api::namespaced(ctx.client.clone(), &flag.namespace().unwrap_or_default());
    api.patch(
        &flag.name_any(),
        &PatchParams::default(),
        &Patch::Merge(removal(&asked.present)),
    )
    .await
    .map(drop)
}
