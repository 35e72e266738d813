//! The sidecar container and its volumes, as SIDECAR_INTERFACE lays them
//! out: settings as `AIFLAGS_*` variables, the config ConfigMap mounted
//! whole (no subPath, so kubelet's updates reach it), the pod's labels, the
//! optional credentials Secret, and a service-account token of its own.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort,
    DownwardAPIProjection, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::annotations::ProxySettings;
use super::config::InjectionConfig;

/// The sidecar's container name; its presence marks a pod as injected.
pub const CONTAINER_NAME: &str = "aiflags-proxy";
pub const CONFIG_VOLUME: &str = "aiflags-config";
pub const PODINFO_VOLUME: &str = "aiflags-podinfo";
pub const CREDENTIALS_VOLUME: &str = "aiflags-credentials";
pub const TOKEN_VOLUME: &str = "aiflags-token";
pub const VOLUME_NAMES: [&str; 4] = [
    CONFIG_VOLUME,
    PODINFO_VOLUME,
    CREDENTIALS_VOLUME,
    TOKEN_VOLUME,
];

pub const CONFIG_DIR: &str = "/etc/aiflags/config";
pub const PODINFO_DIR: &str = "/etc/aiflags/podinfo";
pub const CREDENTIALS_DIR: &str = "/etc/aiflags/credentials";
/// Where kube's in-cluster config looks for the token, CA and namespace.
pub const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The admin port's name, which the PodMonitor scrapes.
pub const ADMIN_PORT_NAME: &str = "aiflags-admin";
/// The namespace's compiled config, written by the operator.
pub const CONFIG_MAP: &str = aiflags_api::CONFIG_MAP_NAME;
pub const CREDENTIALS_SECRET: &str = "aiflags-credentials";
/// Just over an hour, as the kubelet's own token volume asks for, so the
/// API server can tell tokens of old clients that never re-read the file.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

pub fn sidecar_container(settings: &ProxySettings, config: &InjectionConfig) -> Container {
    let mut env = vec![
        value(
            "AIFLAGS_LISTEN",
            format!("127.0.0.1:{}", settings.proxy_port),
        ),
        value(
            "AIFLAGS_ADMIN_LISTEN",
            format!("0.0.0.0:{}", settings.admin_port),
        ),
        value("AIFLAGS_CONFIG_FILE", format!("{CONFIG_DIR}/config.json")),
        value("AIFLAGS_WATCH_CONFIG_MAP", CONFIG_MAP.to_string()),
        EnvVar {
            name: "AIFLAGS_NAMESPACE".to_string(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(field("metadata.namespace")),
                ..EnvVarSource::default()
            }),
        },
        value("AIFLAGS_POD_LABELS", format!("{PODINFO_DIR}/labels")),
        value("AIFLAGS_CREDENTIALS_DIR", CREDENTIALS_DIR.to_string()),
        value("AIFLAGS_LOG_FORMAT", config.log_format.clone()),
        value("AIFLAGS_WORKERS", settings.workers.to_string()),
    ];
    if let Some(url) = &settings.openai_upstream {
        env.push(value("AIFLAGS_OPENAI_UPSTREAM", url.clone()));
    }
    if let Some(url) = &settings.anthropic_upstream {
        env.push(value("AIFLAGS_ANTHROPIC_UPSTREAM", url.clone()));
    }
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(settings.image.clone()),
        image_pull_policy: config.image_pull_policy.clone(),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(ADMIN_PORT_NAME.to_string()),
            container_port: i32::from(settings.admin_port),
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: quantities(&settings.resources.requests),
            limits: quantities(&settings.resources.limits),
            ..ResourceRequirements::default()
        }),
        // A native sidecar: started before, and stopped after, the app.
        restart_policy: config.native_sidecar.then(|| "Always".to_string()),
        // Native sidecars start in order: the app waits until this passes.
        startup_probe: Some(probe("/readyz", 1, 120)),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        security_context: Some(security_context(config)),
        volume_mounts: Some(vec![
            mount(CONFIG_VOLUME, CONFIG_DIR),
            mount(PODINFO_VOLUME, PODINFO_DIR),
            mount(CREDENTIALS_VOLUME, CREDENTIALS_DIR),
            mount(TOKEN_VOLUME, TOKEN_DIR),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Container::default()
    }
}

/// Non-root, read-only, no privileges: the proxy needs none.
fn security_context(config: &InjectionConfig) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: config.run_as_user,
        run_as_group: config.run_as_group,
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

pub fn sidecar_volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: CONFIG_VOLUME.to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: CONFIG_MAP.to_string(),
                // A namespace without flags has no ConfigMap yet.
                optional: Some(true),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: PODINFO_VOLUME.to_string(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "labels".to_string(),
                    field_ref: Some(field("metadata.labels")),
                    ..DownwardAPIVolumeFile::default()
                }]),
                ..DownwardAPIVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: CREDENTIALS_VOLUME.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(CREDENTIALS_SECRET.to_string()),
                optional: Some(true),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: TOKEN_VOLUME.to_string(),
            projected: Some(token_projection()),
            ..Volume::default()
        },
    ]
}

/// What the kubelet's own `kube-api-access-*` volume holds, for the sidecar
/// alone: it works when the pod sets `automountServiceAccountToken: false`,
/// and the app containers get nothing new.
fn token_projection() -> ProjectedVolumeSource {
    ProjectedVolumeSource {
        default_mode: Some(0o444),
        sources: Some(vec![
            VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".to_string(),
                    expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                    audience: None,
                }),
                ..VolumeProjection::default()
            },
            VolumeProjection {
                config_map: Some(ConfigMapProjection {
                    name: "kube-root-ca.crt".to_string(),
                    items: Some(vec![KeyToPath {
                        key: "ca.crt".to_string(),
                        path: "ca.crt".to_string(),
                        mode: None,
                    }]),
                    optional: None,
                }),
                ..VolumeProjection::default()
            },
            VolumeProjection {
                downward_api: Some(DownwardAPIProjection {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "namespace".to_string(),
                        field_ref: Some(field("metadata.namespace")),
                        ..DownwardAPIVolumeFile::default()
                    }]),
                }),
                ..VolumeProjection::default()
            },
        ]),
    }
}

fn value(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value),
        value_from: None,
    }
}

fn field(path: &str) -> ObjectFieldSelector {
    ObjectFieldSelector {
        api_version: Some("v1".to_string()),
        field_path: path.to_string(),
    }
}

fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn quantities(amounts: &BTreeMap<String, String>) -> Option<BTreeMap<String, Quantity>> {
    (!amounts.is_empty()).then(|| {
        amounts
            .iter()
            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
            .collect()
    })
}
