//! The AIFeatureFlag reconciler: every change to a flag recompiles its
//! namespace into the `aiflags-config` ConfigMap and updates the flag's status.
//!
//! The decisions live in [`config_map`], [`status`] and [`backoff`]; this
//! module only moves data between them and the API server.

pub mod backoff;
pub mod config_map;
mod context;
pub mod fit;
pub mod rbac;
mod rollout_turn;
pub mod status;
pub mod triggers;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
pub(crate) mod mock_api;
#[cfg(test)]
mod mock_rollout;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cleanup;
#[cfg(test)]
mod tests_rbac;
#[cfg(test)]
mod tests_rollout;
#[cfg(test)]
mod tests_size;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aiflags_api::{
    AIFeatureFlag, AIFeatureFlagStatus, CONFIG_MAP_NAME, Compilation, FlagInput, FlagOutcome,
    compile,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use self::config_map::{
    MANAGER, desired_config_map, flags_to_compile, nothing_left_to_clean, previous_config,
    stale_key_removal,
};
pub use self::context::Context;
use self::fit::{Fitted, Limits, Refusal, fit_config};
use self::status::{Notice, desired_status, notice_for, reconciled_part, removal_notice};

/// Keeps a deleted flag until it has left its namespace's config.
pub const FINALIZER: &str = "aiflags.dev/config";
/// Recheck each flag this often even without changes, to repair drift.
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
    #[error("AIFeatureFlag {0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    /// The `reason` label of `aiflags_operator_reconcile_errors_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) => match status.code {
                404 => "not_found",
                403 => "forbidden",
                409 => "conflict",
                429 => "throttled",
                code if code >= 500 => "server_error",
                _ => "client_error",
            },
            Error::Kube(_) => "transport",
            Error::Finalizer(error) => match error.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.metric_reason()
                }
                _ => "finalizer",
            },
            Error::NoNamespace(_) => "no_namespace",
        }
    }
}

fn key(flag: &AIFeatureFlag) -> String {
    format!(
        "{}/{}",
        flag.namespace().unwrap_or_default(),
        flag.name_any()
    )
}

/// Brings one flag's namespace config and status up to date.
pub async fn reconcile(flag: Arc<AIFeatureFlag>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_started();
    let key = key(&flag);
    let result = reconcile_flag(flag, &ctx).await;
    ctx.metrics
        .reconcile_finished(timer, result.as_ref().err().map(Error::metric_reason));
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    result
}

async fn reconcile_flag(flag: Arc<AIFeatureFlag>, ctx: &Context) -> Result<Action, Error> {
    let namespace = flag
        .namespace()
        .ok_or_else(|| Error::NoNamespace(flag.name_any()))?;
    let flags: Api<AIFeatureFlag> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&flags, FINALIZER, flag, |event| async {
        match event {
            FinalizerEvent::Apply(flag) => apply(&flag, &namespace, ctx).await,
            FinalizerEvent::Cleanup(flag) => cleanup(&flag, &namespace, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Retries a failed flag with exponential backoff of its own.
pub fn error_policy(flag: Arc<AIFeatureFlag>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&key(&flag));
    tracing::warn!(flag = %key(&flag), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn apply(flag: &AIFeatureFlag, namespace: &str, ctx: &Context) -> Result<Action, Error> {
    let name = flag.name_any();
    // The rollout engine first, and outside the namespace's lock: it may
    // wait on Prometheus. Its part of the status is written before the
    // config, which then compiles the canary at the weight it decided.
    let cached_self = freshest(&ctx.flags_in(namespace), flag);
    let turn = match cached_self.metadata.deletion_timestamp {
        None => rollout_turn::engine_turn(ctx, &cached_self).await?,
        Some(_) => None,
    };

    let lock = ctx.namespace_lock(namespace);
    let _guard = lock.lock().await;
    let cached = ctx.flags_in(namespace);
    let to_compile = flags_to_compile(&cached, flag, false);
    let overlaid: Vec<_> = to_compile
        .iter()
        .map(|f| ctx.with_engine_record(f))
        .collect();
    let to_compile: Vec<&AIFeatureFlag> = overlaid.iter().map(AsRef::as_ref).collect();
    let (compilation, fitted) = write_config(ctx, namespace, &to_compile).await?;

    // The cached copy (with the engine's latest part) is the freshest view of this flag.
    let current = to_compile
        .iter()
        .copied()
        .find(|f| f.metadata.name.as_deref() == Some(name.as_str()))
        .or_else(|| turn.as_ref().map(|t| &t.flag))
        .unwrap_or(flag);
    let deleting = cached.iter().any(|f| {
        f.metadata.name.as_deref() == Some(name.as_str()) && f.metadata.deletion_timestamp.is_some()
    });
    if deleting || current.metadata.deletion_timestamp.is_some() {
        // Deleted since this reconcile was queued: the config above already
        // left it out, and its cleanup (triggered by the deletion) follows.
        return Ok(Action::await_change());
    }
    let outcome = compilation.flags.get(&name).cloned().unwrap_or_default();
    let refusal = fitted.refused.get(&name);
    let status = desired_status(current, &outcome, refusal, &fitted.config, Timestamp::now());
    let status = if current.status.as_ref().map(reconciled_part) == Some(status.clone()) {
        status
    } else {
        match update_status(ctx, current, &outcome, refusal, &fitted).await? {
            Some(status) => status,
            None => return Ok(Action::await_change()),
        }
    };
    ctx.metrics.flag_observed(namespace, &name, &status);
    let now = Instant::now();
    if ctx.reader_due(namespace, now) {
        rbac::apply_reader(&ctx.client, namespace).await?;
        ctx.reader_applied(namespace, Some(now));
    }
    tracing::info!(flag = %key(current), valid = outcome.is_valid(), fits = refusal.is_none(), revision = %fitted.config.revision, "reconciled");
    let requeue = turn
        .and_then(|t| t.requeue)
        .map_or(RESYNC, |r| r.min(RESYNC));
    Ok(Action::requeue(requeue))
}

/// The cached copy of `flag`, the freshest view of it; `flag` itself if
/// the cache has not seen it yet.
fn freshest(cached: &[Arc<AIFeatureFlag>], flag: &AIFeatureFlag) -> AIFeatureFlag {
    cached
        .iter()
        .find(|f| f.metadata.name == flag.metadata.name)
        .map_or_else(|| flag.clone(), |f| f.as_ref().clone())
}

/// Writes and announces `cached`'s new status, unless the API shows it
/// written already: the cache may not have seen this operator's own last
/// write yet (a ConfigMap event can re-trigger a flag first), and announcing
/// a change twice would publish a duplicate Event. One GET of this flag, and
/// only when its status changes. `None` if the flag is gone or going.
async fn update_status(
    ctx: &Context,
    cached: &AIFeatureFlag,
    outcome: &FlagOutcome,
    refusal: Option<&Refusal>,
    fitted: &Fitted,
) -> Result<Option<AIFeatureFlagStatus>, Error> {
    let name = cached.name_any();
    let flags: Api<AIFeatureFlag> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let Some(fresh) = flags.get_opt(&name).await? else {
        return Ok(None);
    };
    if fresh.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    // The spec compiled is the cached one; only the status is fresher.
    let mut flag = cached.clone();
    flag.status = fresh.status;
    let status = desired_status(&flag, outcome, refusal, &fitted.config, Timestamp::now());
    if flag.status.as_ref().map(reconciled_part) != Some(status.clone()) {
        let patch = Patch::Apply(json!({
            "apiVersion": AIFeatureFlag::api_version(&()),
            "kind": AIFeatureFlag::kind(&()),
            "status": status,
        }));
        flags
            .patch_status(&name, &PatchParams::apply(MANAGER).force(), &patch)
            .await?;
        if let Some(notice) = notice_for(flag.status.as_ref(), &status) {
            publish(ctx, &flag, notice).await;
        }
    }
    Ok(Some(status))
}

async fn cleanup(flag: &AIFeatureFlag, namespace: &str, ctx: &Context) -> Result<Action, Error> {
    let lock = ctx.namespace_lock(namespace);
    let _guard = lock.lock().await;
    let cached = ctx.flags_in(namespace);
    let remaining = flags_to_compile(&cached, flag, true);
    let (_, fitted, config_map_existed) = compile_config(ctx, namespace, &remaining).await?;
    match apply_config(ctx, namespace, &fitted).await {
        Ok(()) => {
            // The last flag takes the sidecars' read access with it. A flag
            // created meanwhile applies it again in its own reconcile.
            if remaining.is_empty() {
                rbac::delete_reader(&ctx.client, namespace).await?;
                ctx.reader_applied(namespace, None);
                ctx.written.remove(namespace);
            }
            publish(ctx, flag, removal_notice(&fitted.config)).await;
            tracing::info!(flag = %key(flag), revision = %fitted.config.revision, "removed from config");
        }
        // Retrying could never succeed: a terminating namespace refuses to
        // create the ConfigMap again, and its finalizer would then hold the
        // namespace forever.
        // The namespace's deletion takes the Role and RoleBinding with it.
        Err(error) if nothing_left_to_clean(&error, config_map_existed) => {
            tracing::info!(flag = %key(flag), %error, "no {CONFIG_MAP_NAME} left to remove the flag from");
            ctx.reader_applied(namespace, None);
            ctx.written.remove(namespace);
        }
        Err(error) => return Err(error.into()),
    }
    ctx.metrics.flag_removed(namespace, &flag.name_any());
    ctx.forget_engine_record(flag);
    if remaining.is_empty() {
        ctx.forget_namespace_lock(namespace, &lock);
    }
    Ok(Action::await_change())
}

/// Compiles `flags` over the config now served and applies the result.
async fn write_config(
    ctx: &Context,
    namespace: &str,
    flags: &[&AIFeatureFlag],
) -> Result<(Compilation, Fitted), Error> {
    let (compilation, fitted, _) = compile_config(ctx, namespace, flags).await?;
    apply_config(ctx, namespace, &fitted).await?;
    Ok((compilation, fitted))
}

/// Compiles `flags` over the config now served and fits the result under
/// the ConfigMap size limit; says whether the ConfigMap exists.
async fn compile_config(
    ctx: &Context,
    namespace: &str,
    flags: &[&AIFeatureFlag],
) -> Result<(Compilation, Fitted, bool), Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = config_maps.get_opt(CONFIG_MAP_NAME).await?;
    let previous = previous_config(existing.as_ref()).unwrap_or_else(|error| {
        // Without a readable previous config, invalid flags lose their last
        // valid version; valid ones are unaffected.
        tracing::warn!(%namespace, %error, "ignoring unreadable {CONFIG_MAP_NAME}");
        None
    });
    let inputs: Vec<FlagInput> = flags.iter().map(|f| FlagInput::from_resource(f)).collect();
    let compilation = compile(Some(namespace), &inputs, previous.as_ref());
    let fitted = fit_config(
        &compilation.config,
        previous.as_ref(),
        &oldest_first(flags),
        Limits::default(),
    );
    Ok((compilation, fitted, existing.is_some()))
}

/// Flag names by `creationTimestamp`, then name: the order in which flags
/// are admitted when the config does not fit.
fn oldest_first<'a>(flags: &[&'a AIFeatureFlag]) -> Vec<&'a str> {
    let mut by_age: Vec<_> = flags
        .iter()
        .filter_map(|f| {
            let name = f.metadata.name.as_deref()?;
            Some((f.metadata.creation_timestamp.as_ref().map(|t| t.0), name))
        })
        .collect();
    by_age.sort();
    by_age.into_iter().map(|(_, name)| name).collect()
}

/// Server-side applies `fitted` as the namespace's ConfigMap, then removes
/// the other form of the config if anyone else kept it there.
async fn apply_config(ctx: &Context, namespace: &str, fitted: &Fitted) -> Result<(), kube::Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let desired = desired_config_map(namespace, &fitted.encoded);
    let written = config_maps
        .patch(
            CONFIG_MAP_NAME,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await?;
    if let Some(removal) = stale_key_removal(&written, &fitted.encoded) {
        config_maps
            .patch(
                CONFIG_MAP_NAME,
                &PatchParams::default(),
                &Patch::Merge(&removal),
            )
            .await?;
    }
    if !fitted.refused.is_empty() {
        tracing::warn!(%namespace, refused = fitted.refused.len(), "{CONFIG_MAP_NAME} would be too large; flags held back");
    }
    ctx.metrics.config_written(
        namespace,
        &fitted.config.revision,
        fitted.config.flags.len(),
        fitted.encoded.stored_len(),
        fitted.refused.len(),
    );
    ctx.written.set(namespace, fitted.config.clone());
    Ok(())
}

/// Events are informative: failing to publish one must not fail the reconcile.
pub(crate) async fn publish(ctx: &Context, flag: &AIFeatureFlag, notice: Notice) {
    let event = Event {
        type_: if notice.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: notice.reason.into(),
        note: Some(notice.note),
        action: notice.action.into(),
        secondary: None,
    };
    // A fresh Recorder per Event: a shared one folds events of the same
    // reason into a series that keeps the first note, and ours are already
    // published only on change.
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(error) = recorder.publish(&event, &flag.object_ref(&())).await {
        tracing::warn!(flag = %key(flag), %error, "publishing an event failed");
    }
}
