//! What a flag's `status.proxies` and `Propagated` condition should say,
//! from what its proxies last answered. Pure.
//!
//! These fields belong to the propagation pass's own field manager, so the
//! reconciler's status writes leave them alone and the other way round.
//! `Propagated` is `True` once every running injected pod the flag's
//! `podSelector` matches serves the latest config revision the operator
//! wrote for the namespace: the moment a rollout step's pause may start.

use std::collections::BTreeMap;

use aiflags_api::{AIFeatureFlag, AIFeatureFlagStatus, ProxyCount, SidecarConfig};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::probe::Answer;

pub const PROPAGATED: &str = "Propagated";
/// True: every proxy serves the revision.
pub const AT_REVISION: &str = "AtRevision";
/// False: some proxies do not serve it (yet).
pub const PROXIES_BEHIND: &str = "ProxiesBehind";
/// False: no running injected pod matches the flag's `podSelector`.
pub const NO_PROXIES: &str = "NoProxies";
/// False: the flag is not in the namespace's config (see `Ready`).
pub const NOT_SERVED: &str = "NotServed";

/// One running injected pod of the namespace, as propagation sees it.
#[derive(Clone, Copy, Debug)]
pub struct Proxy<'a> {
    pub labels: &'a BTreeMap<String, String>,
    /// Its sidecar's last answer; `None` if not asked since the pod changed.
    pub answer: Option<&'a Answer>,
}

/// The proxies a flag applies to, by what they serve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub at_revision: u32,
    pub other_revision: u32,
    pub no_config: u32,
    pub unreachable: u32,
    pub not_asked: u32,
}

impl Tally {
    pub fn total(&self) -> u32 {
        self.at_revision + self.other_revision + self.no_config + self.unreachable + self.not_asked
    }

    fn add(&mut self, answer: Option<&Answer>, revision: &str) {
        let count = match answer {
            Some(Answer::Serving(r)) if r == revision => &mut self.at_revision,
            Some(Answer::Serving(_)) => &mut self.other_revision,
            Some(Answer::NoConfig) => &mut self.no_config,
            Some(Answer::Unreachable(_)) => &mut self.unreachable,
            None => &mut self.not_asked,
        };
        *count = count.saturating_add(1);
    }
}

/// `proxies` and `Propagated` for `flag`, given the config the operator
/// last wrote for its namespace and that namespace's proxies. `None` when
/// the operator has written no config there yet (say, just after it
/// started): nothing to compare with.
pub fn desired_propagation(
    flag: &AIFeatureFlag,
    written: Option<&SidecarConfig>,
    proxies: &[Proxy<'_>],
    now: Timestamp,
) -> Option<AIFeatureFlagStatus> {
    let written = written?;
    let name = flag.metadata.name.as_deref().unwrap_or_default();
    let revision = &written.revision;
    let served = written
        .flag(name)
        .filter(|f| f.namespace == flag.metadata.namespace);
    let Some(served) = served else {
        let message = format!(
            "the flag is not in the namespace's config revision {revision} (see the Ready condition)"
        );
        return Some(owned(flag, None, "False", NOT_SERVED, message, now));
    };
    let mut tally = Tally::default();
    for proxy in proxies {
        let applies = served
            .pod_selector
            .as_ref()
            .is_none_or(|s| s.matches(proxy.labels));
        if applies {
            tally.add(proxy.answer, revision);
        }
    }
    let total = tally.total();
    let count = ProxyCount {
        total,
        at_revision: tally.at_revision,
        revision: Some(revision.clone()),
        summary: Some(format!("{}/{total}", tally.at_revision)),
    };
    let (status, reason, message) = if total == 0 {
        let message = "no running injected pod matches the flag's podSelector".to_string();
        ("False", NO_PROXIES, message)
    } else if tally.at_revision == total {
        let message = format!("all {total} proxies serve config revision {revision}");
        ("True", AT_REVISION, message)
    } else {
        ("False", PROXIES_BEHIND, behind(&tally, revision))
    };
    Some(owned(flag, Some(count), status, reason, message, now))
}

/// `2 of 5 proxies serve config revision abc; 1 on another revision, 2 not yet asked`.
fn behind(tally: &Tally, revision: &str) -> String {
    let others = [
        (tally.other_revision, "on another revision"),
        (tally.no_config, "without config yet"),
        (tally.unreachable, "unreachable"),
        (tally.not_asked, "not yet asked"),
    ];
    let others: Vec<String> = others
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    format!(
        "{} of {} proxies serve config revision {revision}; {}",
        tally.at_revision,
        tally.total(),
        others.join(", ")
    )
}

fn owned(
    flag: &AIFeatureFlag,
    proxies: Option<ProxyCount>,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> AIFeatureFlagStatus {
    // The time moves only when the status flips.
    let last_transition_time = propagated(flag.status.as_ref())
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    AIFeatureFlagStatus {
        proxies,
        conditions: vec![Condition {
            type_: PROPAGATED.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: flag.metadata.generation,
            last_transition_time,
        }],
        ..AIFeatureFlagStatus::default()
    }
}

fn propagated(status: Option<&AIFeatureFlagStatus>) -> Option<&Condition> {
    status?.conditions.iter().find(|c| c.type_ == PROPAGATED)
}

/// The part of `status` that [`desired_propagation`] computes, to tell
/// whether a write is due.
pub fn propagation_part(status: Option<&AIFeatureFlagStatus>) -> AIFeatureFlagStatus {
    AIFeatureFlagStatus {
        proxies: status.and_then(|s| s.proxies.clone()),
        conditions: propagated(status).into_iter().cloned().collect(),
        ..AIFeatureFlagStatus::default()
    }
}

#[cfg(test)]
mod tests;
