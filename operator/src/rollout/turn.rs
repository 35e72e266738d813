//! The engine's turn in a flag's reconcile: read the commands, see whether
//! the proxies serve the canary weight, ask Prometheus when a check is
//! due, decide, and write the engine's part of the status before the
//! reconciler compiles the namespace (so the config follows the status,
//! and a restarted operator resumes from it). The decisions are
//! [`super::engine`]'s; this module moves data.

use std::time::Duration;

use aiflags_api::{AIFeatureFlag, AIFeatureFlagStatus, FlagInput, SidecarConfig, compile_flag};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::analysis::{Request, analyse};
use super::commands::{Requested, removal, requested};
use super::conditions::{ABORTED, PROGRESSING, engine_part};
use super::engine::{Input, Proxies, analysis_due, decide, notice};
use crate::controller::{Context, publish};
use crate::propagation::status::PROPAGATED;

/// Field manager of the engine's part of the status.
pub const FIELD_MANAGER: &str = "aiflags-operator-rollout";

/// What the engine's turn leaves for the rest of the reconcile.
#[derive(Clone, Debug)]
pub struct Turn {
    /// The flag with the engine's part of the status as now written.
    pub flag: AIFeatureFlag,
    /// Look again after this, at the latest.
    pub requeue: Option<Duration>,
}

/// The engine's turn for `flag` (the freshest cached copy). `None` for a
/// flag that has no progressive rollout and no record of one.
pub async fn engine_turn(ctx: &Context, flag: &AIFeatureFlag) -> Result<Option<Turn>, kube::Error> {
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

/// `status` with the engine's fields replaced by `engine`'s, as the
/// engine's server-side apply leaves it.
pub fn with_engine_part(
    status: Option<AIFeatureFlagStatus>,
    engine: &AIFeatureFlagStatus,
) -> AIFeatureFlagStatus {
    let mut status = status.unwrap_or_default();
    status
        .conditions
        .retain(|c| c.type_ != PROGRESSING && c.type_ != ABORTED);
    status.conditions.extend(engine.conditions.iter().cloned());
    status.current_step = engine.current_step;
    status.failed_checks = engine.failed_checks;
    status.rollout = engine.rollout.clone();
    status
}

/// Whether every proxy the flag applies to serves the latest config the
/// operator wrote for its namespace, and that config holds this
/// generation of the flag: then they serve its canary weight there. Pure.
pub fn proxies_view(flag: &AIFeatureFlag, written: Option<&SidecarConfig>) -> Proxies {
    let Some(written) = written else {
        return Proxies::Behind(
            "the operator has not written the namespace's config since it started".into(),
        );
    };
    let name = flag.metadata.name.as_deref().unwrap_or_default();
    let Some(compiled) = written
        .flag(name)
        .filter(|f| f.namespace == flag.metadata.namespace)
    else {
        return Proxies::Behind("the flag is not in the namespace's config".into());
    };
    let generation = flag.metadata.generation.unwrap_or_default();
    if compiled.generation != generation {
        return Proxies::Behind(format!(
            "the config holds generation {} of the flag, not {generation} yet",
            compiled.generation
        ));
    }
    let canary = flag.spec.rollout.as_ref().and_then(|r| r.canary.as_deref());
    let weight = compiled
        .variants
        .iter()
        .zip(&compiled.weights)
        .find(|(v, _)| Some(v.name.as_str()) == canary)
        .map_or(0.0, |(_, bp)| f64::from(*bp) / 100.0);
    let status = flag.status.as_ref();
    let counted = status
        .and_then(|s| s.proxies.as_ref())
        .and_then(|p| p.revision.as_deref());
    if counted != Some(written.revision.as_str()) {
        return Proxies::Behind(format!(
            "the proxies are not yet counted against config revision {}",
            written.revision
        ));
    }
    match status.and_then(|s| s.conditions.iter().find(|c| c.type_ == PROPAGATED)) {
        Some(c) if c.status == "True" => Proxies::Serving(weight),
        Some(c) => Proxies::Behind(c.message.clone()),
        None => Proxies::Behind("the proxies are not counted yet".into()),
    }
}

#[cfg(test)]
mod tests {
    use aiflags_api::{FlagInput, ProxyCount, compile};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;
    use crate::controller::fixtures::FlagBuilder;

    fn canary() -> AIFeatureFlag {
        AIFeatureFlag::test().canary(&[(10.0, Some("1m")), (100.0, None)], None)
    }

    fn written(flag: &AIFeatureFlag) -> SidecarConfig {
        compile(Some("shop"), &[FlagInput::from_resource(flag)], None).config
    }

    /// `flag` as the propagation pass leaves it: counted against `revision`.
    fn counted(mut flag: AIFeatureFlag, revision: &str, propagated: bool) -> AIFeatureFlag {
        let status = flag.status.get_or_insert_with(Default::default);
        status.proxies = Some(ProxyCount {
            total: 3,
            at_revision: if propagated { 3 } else { 1 },
            revision: Some(revision.into()),
            summary: None,
        });
        status.conditions = vec![Condition {
            type_: PROPAGATED.into(),
            status: if propagated { "True" } else { "False" }.into(),
            reason: "test".into(),
            message: "1 of 3 proxies serve config revision x; 2 unreachable".into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }];
        flag
    }

    #[test]
    fn serving_means_every_proxy_at_the_latest_revision_holding_this_generation() {
        let flag = canary();
        let config = written(&flag);
        let at = |f: AIFeatureFlag| proxies_view(&f, Some(&config));
        assert_eq!(
            at(counted(flag.clone(), &config.revision, true)),
            Proxies::Serving(10.0)
        );
        assert_eq!(
            at(counted(flag.clone(), &config.revision, false)),
            Proxies::Behind("1 of 3 proxies serve config revision x; 2 unreachable".into())
        );
        assert_eq!(
            at(counted(flag.clone(), "an-older-revision", true)),
            Proxies::Behind(format!(
                "the proxies are not yet counted against config revision {}",
                config.revision
            ))
        );
        let newer = counted(flag.clone().generation(2), &config.revision, true);
        assert_eq!(
            at(newer),
            Proxies::Behind("the config holds generation 1 of the flag, not 2 yet".into())
        );
        assert!(matches!(proxies_view(&flag, None), Proxies::Behind(_)));
        let other = AIFeatureFlag::test().named("other");
        assert_eq!(
            proxies_view(&counted(other, &config.revision, true), Some(&config)),
            Proxies::Behind("the flag is not in the namespace's config".into())
        );
    }
}
