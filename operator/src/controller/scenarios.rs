//! Named API-server scenarios the reconciler tests play, in the style of
//! kube-rs/controller-rs: each lists, in order, the requests the reconciler
//! must make, asserts them, and answers as the API server would. The flags
//! of the namespace come from the controller's cache, which the tests fill:
//! no scenario answers a LIST.

use aiflags_api::{AIFeatureFlag, SidecarConfig};
use serde_json::{Value, json};

use super::fixtures::FlagBuilder;
use super::mock_api::ApiServer;

pub(crate) enum Scenario {
    /// A new flag: the first reconcile only adds the finalizer; the second
    /// finds no ConfigMap, applies one holding the flag, applies the
    /// status Ready=True, publishes `Compiled`, and applies the Role and
    /// RoleBinding that let the namespace's sidecars read the ConfigMap.
    Create(AIFeatureFlag),
    /// `first` (generation 1) is served, then `second` (a valid generation 2
    /// at 50/50) replaces it with a fresh `Compiled` Event.
    Update {
        first: AIFeatureFlag,
        second: AIFeatureFlag,
    },
    /// `updated` does not compile; `served` holds its last valid version,
    /// which must stay in the ConfigMap.
    InvalidUpdate {
        updated: AIFeatureFlag,
        served: SidecarConfig,
    },
    /// A resync that changes nothing: the ConfigMap is applied (a no-op for
    /// the API server) but neither the status nor an Event is written. (The
    /// Role and RoleBinding are applied: the context is fresh.)
    Unchanged(SidecarConfig),
    /// `flag` reports an older revision and a rollout engine's fields; the
    /// status apply carries the served revision and none of those fields.
    StatusRefreshed {
        flag: AIFeatureFlag,
        served: SidecarConfig,
    },
    /// The cache still shows the flag without the status `written` holds
    /// (this operator's own last write): one GET of the flag shows it, so
    /// neither the status nor an Event is written again.
    StatusAlreadyWritten {
        written: AIFeatureFlag,
        served: SidecarConfig,
    },
    /// The reconciled flag was deleted after its reconcile was queued: the
    /// cache shows it deleting, so the config leaves it out and no status is
    /// written.
    DeletedMeanwhile,
    /// `deleted` (finalizer present) leaves the config `served` with it and
    /// `other`; `other` stays; then the finalizer is removed.
    Delete {
        deleted: AIFeatureFlag,
        served: SidecarConfig,
    },
    /// `deleted`, the namespace's last flag, leaves `served` empty, the
    /// RoleBinding and Role are deleted (answered with `reader_code`: 200, or
    /// 404 when already gone), then the finalizer is removed.
    DeleteLast {
        deleted: AIFeatureFlag,
        served: SidecarConfig,
        reader_code: u16,
    },
    /// The namespace of `deleted` is terminating and its ConfigMap already
    /// gone: the apply (a create) is refused with `code`, so there is no
    /// config left to clean and the finalizer is removed all the same.
    DeleteInTerminatingNamespace { deleted: AIFeatureFlag, code: u16 },
    /// The ConfigMap holds `served`, but the apply leaving the deleted flag
    /// out is refused (403): the reconcile fails and the finalizer stays.
    DeleteForbidden(SidecarConfig),
    /// Two flags of one namespace, reconciled one after the other, share one ConfigMap.
    TwoFlags(AIFeatureFlag, AIFeatureFlag),
    /// The ConfigMap apply fails with each code in turn, then succeeds.
    ConfigMapRejected {
        flag: AIFeatureFlag,
        codes: Vec<u16>,
    },
}

fn served_flags(config: &SidecarConfig) -> Vec<(&str, i64, Vec<u32>)> {
    config
        .flags
        .iter()
        .map(|f| (f.key.as_str(), f.generation, f.weights.clone()))
        .collect()
}

/// The status of `shop/summarizer` generation 1 serving 90/10 at `revision`.
pub(crate) fn healthy_status(revision: &str) -> Value {
    json!({
        "observedGeneration": 1,
        "phase": "Healthy",
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Compiled",
            "message": "generation 1 compiled", "observedGeneration": 1,
        }],
        "servingGeneration": 1,
        "configRevision": revision,
        "currentWeights": {"stable": 90.0, "candidate": 10.0},
        "split": "stable=90 candidate=10",
        "message": format!("generation 1 serves stable=90 candidate=10 in config revision {revision}"),
    })
}

impl ApiServer {
    pub(crate) fn run(self, scenario: Scenario) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            match scenario {
                Scenario::Create(flag) => self.create(flag).await,
                Scenario::Update { first, second } => {
                    let (server, served) = self.first_compile(&first).await;
                    server.update(second, served).await;
                }
                Scenario::InvalidUpdate { updated, served } => {
                    self.invalid_update(updated, served).await
                }
                Scenario::Unchanged(served) => {
                    let server = self.config_map_read(Some(&served)).await;
                    let (server, config) = server.config_map_applied().await;
                    assert_eq!(config, served);
                    server.reader_applied().await;
                }
                Scenario::StatusRefreshed { flag, served } => {
                    let server = self.config_map_read(Some(&served)).await;
                    let (server, config) = server.config_map_applied().await;
                    assert_eq!(config, served);
                    let (server, status) =
                        server.flag_read(&flag).await.status_applied(&flag).await;
                    // Exactly the reconciled fields: no proxies, currentStep, failedChecks.
                    assert_eq!(status, healthy_status(&served.revision));
                    server.reader_applied().await;
                }
                Scenario::StatusAlreadyWritten { written, served } => {
                    let server = self.config_map_read(Some(&served)).await;
                    let (server, config) = server.config_map_applied().await;
                    assert_eq!(config, served);
                    server.flag_read(&written).await.reader_applied().await;
                }
                Scenario::DeletedMeanwhile => {
                    let server = self.config_map_read(None).await;
                    let (_, config) = server.config_map_applied().await;
                    assert!(config.flags.is_empty());
                }
                Scenario::Delete { deleted, served } => self.delete(deleted, served).await,
                Scenario::DeleteLast {
                    deleted,
                    served,
                    reader_code,
                } => {
                    let server = self.config_map_read(Some(&served)).await;
                    let (server, config) = server.config_map_applied().await;
                    assert!(config.flags.is_empty());
                    // The last flag takes the sidecars' read access with it.
                    let server = server.reader_deleted(reader_code).await;
                    let (server, _) = server.event_posted(&deleted, "Normal", "Removed").await;
                    server.finalizer_removed(&deleted).await;
                }
                Scenario::DeleteInTerminatingNamespace { deleted, code } => {
                    self.config_map_read(None)
                        .await
                        .config_map_rejected(code)
                        .await
                        .finalizer_removed(&deleted)
                        .await;
                }
                Scenario::DeleteForbidden(served) => {
                    self.config_map_read(Some(&served))
                        .await
                        .config_map_rejected(403)
                        .await;
                }
                Scenario::TwoFlags(a, b) => self.two_flags(a, b).await,
                Scenario::ConfigMapRejected { flag, codes } => {
                    let mut server = self;
                    for code in codes {
                        server = server
                            .config_map_read(None)
                            .await
                            .config_map_rejected(code)
                            .await;
                    }
                    server.first_compile(&flag).await;
                }
            }
        })
    }

    async fn create(self, flag: AIFeatureFlag) {
        let server = self.finalizer_added(&flag).await;
        server.first_compile(&flag.finalized()).await;
    }

    /// GET 404 → ConfigMap with the flag → status Ready → Compiled → Role
    /// and RoleBinding (a fresh context has not applied them yet).
    pub(crate) async fn first_compile(self, flag: &AIFeatureFlag) -> (Self, SidecarConfig) {
        let server = self.config_map_read(None).await;
        let (server, config) = server.config_map_applied().await;
        assert_eq!(served_flags(&config), [("summarizer", 1, vec![9000, 1000])]);
        let (server, status) = server.flag_read(flag).await.status_applied(flag).await;
        assert_eq!(status, healthy_status(&config.revision));
        let (server, note) = server.event_posted(flag, "Normal", "Compiled").await;
        assert_eq!(
            note,
            format!(
                "generation 1 serves stable=90 candidate=10 in config revision {}",
                config.revision
            )
        );
        (server.reader_applied().await, config)
    }

    async fn update(self, updated: AIFeatureFlag, served: SidecarConfig) {
        let server = self.config_map_read(Some(&served)).await;
        let (server, config) = server.config_map_applied().await;
        assert_eq!(served_flags(&config), [("summarizer", 2, vec![5000, 5000])]);
        let (server, status) = server
            .flag_read(&updated)
            .await
            .status_applied(&updated)
            .await;
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!(status["servingGeneration"], 2);
        assert_eq!(status["conditions"][0]["message"], "generation 2 compiled");
        assert_eq!(status["split"], "stable=50 candidate=50");
        // A new Event (POST, not a PATCH of the first one's series) with its own note.
        let (_, note) = server.event_posted(&updated, "Normal", "Compiled").await;
        assert!(
            note.starts_with("generation 2 serves stable=50 candidate=50"),
            "{note}"
        );
    }

    async fn invalid_update(self, updated: AIFeatureFlag, served: SidecarConfig) {
        let server = self.config_map_read(Some(&served)).await;
        let (server, config) = server.config_map_applied().await;
        // Generation 1 keeps serving, untouched.
        assert_eq!(config, served);
        assert_eq!(served_flags(&config), [("summarizer", 1, vec![9000, 1000])]);
        let (server, status) = server
            .flag_read(&updated)
            .await
            .status_applied(&updated)
            .await;
        let errors = "spec.rollout.weights: weights sum to 95, not 100";
        let revision = &served.revision;
        assert_eq!(
            status,
            json!({
                "observedGeneration": 2,
                "phase": "Healthy",
                "conditions": [{
                    "type": "Ready", "status": "False", "reason": "InvalidSpec",
                    "message": errors, "observedGeneration": 2,
                }],
                "servingGeneration": 1,
                "configRevision": revision,
                "currentWeights": {"stable": 90.0, "candidate": 10.0},
                "split": "stable=90 candidate=10",
                "message": format!("generation 2 is invalid; generation 1 keeps serving stable=90 candidate=10 in config revision {revision}: {errors}"),
            })
        );
        let (server, note) = server
            .event_posted(&updated, "Warning", "InvalidSpec")
            .await;
        assert!(note.ends_with(errors), "{note}");
        server.reader_applied().await;
    }

    async fn delete(self, deleted: AIFeatureFlag, served: SidecarConfig) {
        assert_eq!(served.flags.len(), 2, "the served config holds both flags");
        let server = self.config_map_read(Some(&served)).await;
        let (server, config) = server.config_map_applied().await;
        assert_eq!(served_flags(&config), [("other", 1, vec![9000, 1000])]);
        let (server, note) = server.event_posted(&deleted, "Normal", "Removed").await;
        assert_eq!(
            note,
            format!(
                "removed from the config; config revision {}",
                config.revision
            )
        );
        server.finalizer_removed(&deleted).await;
    }

    async fn two_flags(self, a: AIFeatureFlag, b: AIFeatureFlag) {
        let server = self.config_map_read(None).await;
        let (server, config) = server.config_map_applied().await;
        let expected = [
            ("assistant", 1, vec![5000, 5000]),
            ("summarizer", 1, vec![9000, 1000]),
        ];
        assert_eq!(served_flags(&config), expected);
        let (server, status) = server.flag_read(&a).await.status_applied(&a).await;
        assert_eq!(status, healthy_status(&config.revision));
        let (server, _) = server.event_posted(&a, "Normal", "Compiled").await;
        let server = server.reader_applied().await;

        // The second flag's reconcile finds the shared config and keeps it
        // whole; the Role and RoleBinding are not applied again.
        let server = server.config_map_read(Some(&config)).await;
        let (server, again) = server.config_map_applied().await;
        assert_eq!(again, config);
        let (server, status) = server.flag_read(&b).await.status_applied(&b).await;
        assert_eq!(status["split"], "stable=50 candidate=50");
        assert_eq!(status["configRevision"], config.revision.as_str());
        server.event_posted(&b, "Normal", "Compiled").await;
    }
}
