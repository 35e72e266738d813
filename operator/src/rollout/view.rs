//! The flag's status and its proxies as the rollout engine sees them: pure
//! functions of the flag, the status the engine writes and the config the
//! operator last wrote. The reconciler's turn (`controller::rollout_turn`)
//! and the simulations use them.

use aiflags_api::{AIFeatureFlag, AIFeatureFlagStatus, SidecarConfig};

use super::conditions::{ABORTED, PROGRESSING};
use super::engine::Proxies;
use crate::propagation::status::PROPAGATED;

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

    use k8s_openapi::jiff::Timestamp;

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
