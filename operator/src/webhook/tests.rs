//! The injection patch, applied to fixture pods and read back as typed
//! `Pod`s, field by field.

use k8s_openapi::api::core::v1::Volume;
use serde_json::json;

use super::config::InjectionConfig;
use super::fixtures::{
    PodJson, container, env_value, injected, injected_with, pod, sidecar_of, typed,
};
use super::inject::{Verdict, decide};
use super::select::Skip;

const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn volume<'a>(pod: &'a k8s_openapi::api::core::v1::Pod, name: &str) -> &'a Volume {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .expect("volumes");
    volumes
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

#[test]
fn a_plain_pod_gets_a_native_sidecar_first_among_init_containers() {
    let (pod, _, warnings) = injected(&pod());
    assert!(warnings.is_empty(), "{warnings:?}");
    let spec = pod.spec.as_ref().expect("spec");
    let init = spec.init_containers.as_deref().expect("init containers");
    assert_eq!(init.len(), 1);
    let sidecar = &init[0];
    assert_eq!(sidecar.name, "aiflags-proxy");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(sidecar.image.as_deref(), Some(super::config::DEFAULT_IMAGE));
    assert_eq!(
        spec.containers.len(),
        1,
        "the app is still the only container"
    );
    let labels = pod.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["aiflags.dev/proxy"], "injected");
    assert_eq!(labels["app"], "summarizer");
}

#[test]
fn the_sidecar_gets_its_settings_as_documented() {
    let (pod, _, _) = injected(&pod());
    let sidecar = sidecar_of(&pod);
    let env = |name| env_value(sidecar, name);
    assert_eq!(env("AIFLAGS_LISTEN").as_deref(), Some("127.0.0.1:15080"));
    assert_eq!(
        env("AIFLAGS_ADMIN_LISTEN").as_deref(),
        Some("0.0.0.0:15090")
    );
    assert_eq!(
        env("AIFLAGS_CONFIG_FILE").as_deref(),
        Some("/etc/aiflags/config/config.json")
    );
    assert_eq!(
        env("AIFLAGS_WATCH_CONFIG_MAP").as_deref(),
        Some("aiflags-config")
    );
    assert_eq!(
        env("AIFLAGS_POD_LABELS").as_deref(),
        Some("/etc/aiflags/podinfo/labels")
    );
    assert_eq!(
        env("AIFLAGS_CREDENTIALS_DIR").as_deref(),
        Some("/etc/aiflags/credentials")
    );
    assert_eq!(env("AIFLAGS_LOG_FORMAT").as_deref(), Some("json"));
    assert_eq!(env("AIFLAGS_WORKERS").as_deref(), Some("1"));
    assert_eq!(env("AIFLAGS_OPENAI_UPSTREAM"), None, "only when overridden");
    assert_eq!(env("AIFLAGS_ANTHROPIC_UPSTREAM"), None);
    let namespace = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "AIFLAGS_NAMESPACE");
    let field = namespace
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .expect("AIFLAGS_NAMESPACE from the downward API");
    assert_eq!(field.field_path, "metadata.namespace");

    let ports = sidecar.ports.as_deref().expect("ports");
    assert_eq!(
        ports.len(),
        1,
        "only the admin port is reachable from outside the pod"
    );
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].container_port),
        (Some("aiflags-admin"), 15090)
    );

    let http_path = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        probe
            .and_then(|p| p.http_get.as_ref())
            .and_then(|g| g.path.clone())
    };
    assert_eq!(
        http_path(sidecar.startup_probe.as_ref()).as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        http_path(sidecar.readiness_probe.as_ref()).as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        http_path(sidecar.liveness_probe.as_ref()).as_deref(),
        Some("/healthz")
    );
}

#[test]
fn the_sidecar_is_small_and_unprivileged() {
    let (pod, _, _) = injected(&pod());
    let sidecar = sidecar_of(&pod);
    let resources = sidecar.resources.as_ref().expect("resources");
    let requests = resources.requests.as_ref().expect("requests");
    assert_eq!(requests["cpu"].0, "20m");
    assert_eq!(requests["memory"].0, "32Mi");
    assert_eq!(
        resources.limits.as_ref().expect("limits")["memory"].0,
        "128Mi"
    );

    let security = sidecar.security_context.as_ref().expect("securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.privileged, Some(false));
    let drop = security.capabilities.as_ref().and_then(|c| c.drop.clone());
    assert_eq!(drop, Some(vec!["ALL".to_string()]));
    let seccomp = security.seccomp_profile.as_ref().expect("seccomp");
    assert_eq!(seccomp.type_, "RuntimeDefault");
}

#[test]
fn volumes_are_whole_optional_and_mounted_in_the_sidecar_only() {
    let (pod, _, _) = injected(&pod());
    let config = volume(&pod, "aiflags-config")
        .config_map
        .as_ref()
        .expect("configMap");
    assert_eq!(
        (config.name.as_str(), config.optional),
        ("aiflags-config", Some(true))
    );
    let podinfo = volume(&pod, "aiflags-podinfo")
        .downward_api
        .as_ref()
        .expect("downwardAPI");
    let items = podinfo.items.as_deref().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].path, "labels");
    assert_eq!(
        items[0].field_ref.as_ref().map(|f| f.field_path.as_str()),
        Some("metadata.labels")
    );
    let credentials = volume(&pod, "aiflags-credentials")
        .secret
        .as_ref()
        .expect("secret");
    assert_eq!(
        credentials.secret_name.as_deref(),
        Some("aiflags-credentials")
    );
    assert_eq!(credentials.optional, Some(true));
    assert!(
        pod.spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .expect("volumes")
            .iter()
            .any(|v| v.name == "kube-api-access-x2k9q"),
        "the pod's own volumes stay"
    );

    let sidecar = sidecar_of(&pod);
    let mounts: Vec<(&str, &str)> = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            assert_eq!(m.read_only, Some(true));
            assert_eq!(m.sub_path, None, "kubelet never updates a subPath mount");
            (m.name.as_str(), m.mount_path.as_str())
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("aiflags-config", "/etc/aiflags/config"),
            ("aiflags-podinfo", "/etc/aiflags/podinfo"),
            ("aiflags-credentials", "/etc/aiflags/credentials"),
            ("aiflags-token", TOKEN_DIR),
        ]
    );
    let app = container(&pod.spec.as_ref().expect("spec").containers, "app");
    let app_mounts: Vec<&str> = app
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        app_mounts,
        ["kube-api-access-x2k9q"],
        "credentials never reach the app"
    );
}

#[test]
fn the_token_volume_has_the_in_cluster_config_layout() {
    let (_, patched, _) = injected(&pod());
    let volumes = patched["spec"]["volumes"].as_array().expect("volumes");
    let token = volumes
        .iter()
        .find(|v| v["name"] == "aiflags-token")
        .expect("token volume");
    assert_eq!(
        token["projected"],
        json!({
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        })
    );
}

#[test]
fn without_a_token_automount_only_the_sidecar_gets_api_access() {
    let pod_json = pod()
        .set("/spec/automountServiceAccountToken", json!(false))
        .remove("/spec/volumes")
        .remove("/spec/containers/0/volumeMounts");
    let (pod, patched, _) = injected(&pod_json);
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(
        spec.automount_service_account_token,
        Some(false),
        "left as the pod set it"
    );
    let app = container(&spec.containers, "app");
    assert_eq!(app.volume_mounts, None);
    let sidecar = sidecar_of(&pod);
    assert!(
        sidecar
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == TOKEN_DIR && m.name == "aiflags-token")
    );
    let names: Vec<&str> = patched["spec"]["volumes"]
        .as_array()
        .expect("volumes created")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "aiflags-config",
            "aiflags-podinfo",
            "aiflags-credentials",
            "aiflags-token"
        ]
    );
}

#[test]
fn reinjecting_an_injected_pod_changes_nothing() {
    let (_, patched, _) = injected(&pod());
    assert_eq!(
        decide(
            &typed(&patched),
            "shop",
            &Default::default(),
            &InjectionConfig::default()
        ),
        Verdict::Skip(Skip::AlreadyInjected)
    );
    let legacy = InjectionConfig {
        native_sidecar: false,
        ..InjectionConfig::default()
    };
    let (_, patched, _) = injected_with(&pod(), &legacy);
    assert_eq!(
        decide(&typed(&patched), "shop", &Default::default(), &legacy),
        Verdict::Skip(Skip::AlreadyInjected)
    );
}
