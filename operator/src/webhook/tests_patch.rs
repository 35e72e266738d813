//! Where the patch puts things: base URLs on app containers, the sidecar's
//! place among containers, and per-pod overrides.

use serde_json::json;

use super::config::InjectionConfig;
use super::fixtures::{PodJson, container, env_value, injected, injected_with, pod, sidecar_of};
use super::inject::Verdict;
use super::select::Skip;

#[test]
fn app_containers_get_both_base_urls_after_their_own_env() {
    let (pod, _, _) = injected(&pod());
    let app = container(&pod.spec.as_ref().expect("spec").containers, "app");
    let names: Vec<&str> = app.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"]
    );
    assert_eq!(
        env_value(app, "OPENAI_BASE_URL").as_deref(),
        Some("http://127.0.0.1:15080/v1")
    );
    assert_eq!(
        env_value(app, "ANTHROPIC_BASE_URL").as_deref(),
        Some("http://127.0.0.1:15080")
    );
}

#[test]
fn an_app_that_sets_its_base_url_keeps_it_and_is_told() {
    let own = json!({"name": "OPENAI_BASE_URL", "value": "https://azure.example/openai/v1"});
    let pod_json = pod().set("/spec/containers/0/env/1", own);
    let (pod, _, warnings) = injected(&pod_json);
    let app = container(&pod.spec.as_ref().expect("spec").containers, "app");
    assert_eq!(
        env_value(app, "OPENAI_BASE_URL").as_deref(),
        Some("https://azure.example/openai/v1")
    );
    assert_eq!(
        env_value(app, "ANTHROPIC_BASE_URL").as_deref(),
        Some("http://127.0.0.1:15080")
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("\"app\" sets OPENAI_BASE_URL itself"),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains("proxy.aiflags.dev/override-base-url=true"),
        "{warnings:?}"
    );

    let asked = pod_json.annotate("proxy.aiflags.dev/override-base-url", "true");
    let (pod, _, warnings) = injected(&asked);
    let app = container(&pod.spec.as_ref().expect("spec").containers, "app");
    assert_eq!(
        env_value(app, "OPENAI_BASE_URL").as_deref(),
        Some("http://127.0.0.1:15080/v1")
    );
    let count = app
        .env
        .iter()
        .flatten()
        .filter(|e| e.name == "OPENAI_BASE_URL")
        .count();
    assert_eq!(count, 1, "replaced in place, not duplicated");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn a_container_with_env_from_is_left_alone_unless_asked() {
    let env_from = json!([{"configMapRef": {"name": "settings"}}]);
    let pod_json = pod().set("/spec/containers/0/envFrom", env_from);
    let (pod, _, warnings) = injected(&pod_json);
    let app = container(&pod.spec.as_ref().expect("spec").containers, "app");
    assert_eq!(env_value(app, "OPENAI_BASE_URL"), None);
    assert!(warnings[0].contains("envFrom"), "{warnings:?}");

    let asked = pod_json.annotate("proxy.aiflags.dev/override-base-url", "true");
    let (pod, _, _) = injected(&asked);
    let app = container(&pod.spec.as_ref().expect("spec").containers, "app");
    assert_eq!(
        env_value(app, "OPENAI_BASE_URL").as_deref(),
        Some("http://127.0.0.1:15080/v1")
    );
}

#[test]
fn existing_init_containers_run_after_the_sidecar() {
    let migrate = json!([{"name": "migrate", "image": "registry.example/migrate:1"}]);
    let (pod, _, _) = injected(&pod().set("/spec/initContainers", migrate));
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.clone())
        .expect("init");
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["aiflags-proxy", "migrate"]);
}

#[test]
fn without_native_sidecars_the_proxy_is_the_last_regular_container() {
    let legacy = InjectionConfig {
        native_sidecar: false,
        ..InjectionConfig::default()
    };
    let second = json!({"name": "worker", "image": "registry.example/worker:1"});
    let (pod, _, _) = injected_with(&pod().set("/spec/containers/1", second), &legacy);
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.init_containers, None);
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "worker", "aiflags-proxy"]);
    assert_eq!(spec.containers[2].restart_policy, None);
    for app in &spec.containers[..2] {
        assert_eq!(
            env_value(app, "OPENAI_BASE_URL").as_deref(),
            Some("http://127.0.0.1:15080/v1"),
            "{}",
            app.name
        );
    }
    assert_eq!(
        env_value(&spec.containers[2], "OPENAI_BASE_URL"),
        None,
        "not on the proxy itself"
    );
}

#[test]
fn annotations_override_the_config_for_one_pod() {
    let pod_json = pod()
        .annotate(
            "proxy.aiflags.dev/image",
            "mirror.example/aiflags-sidecar:0.1.0",
        )
        .annotate("proxy.aiflags.dev/proxy-port", "16080")
        .annotate("proxy.aiflags.dev/admin-port", "16090")
        .annotate("proxy.aiflags.dev/workers", "2")
        .annotate("proxy.aiflags.dev/cpu-limit", "500m")
        .annotate("proxy.aiflags.dev/memory-request", "64Mi")
        .annotate(
            "proxy.aiflags.dev/openai-upstream",
            "http://vllm.models.svc:8000",
        )
        .annotate(
            "proxy.aiflags.dev/anthropic-upstream",
            "https://anthropic.example",
        );
    let (pod, _, _) = injected(&pod_json);
    let sidecar = sidecar_of(&pod);
    assert_eq!(
        sidecar.image.as_deref(),
        Some("mirror.example/aiflags-sidecar:0.1.0")
    );
    assert_eq!(
        env_value(sidecar, "AIFLAGS_LISTEN").as_deref(),
        Some("127.0.0.1:16080")
    );
    assert_eq!(
        env_value(sidecar, "AIFLAGS_ADMIN_LISTEN").as_deref(),
        Some("0.0.0.0:16090")
    );
    assert_eq!(env_value(sidecar, "AIFLAGS_WORKERS").as_deref(), Some("2"));
    assert_eq!(
        env_value(sidecar, "AIFLAGS_OPENAI_UPSTREAM").as_deref(),
        Some("http://vllm.models.svc:8000")
    );
    assert_eq!(
        env_value(sidecar, "AIFLAGS_ANTHROPIC_UPSTREAM").as_deref(),
        Some("https://anthropic.example")
    );
    assert_eq!(
        sidecar.ports.as_deref().expect("ports")[0].container_port,
        16090
    );
    let resources = sidecar.resources.as_ref().expect("resources");
    assert_eq!(resources.limits.as_ref().expect("limits")["cpu"].0, "500m");
    assert_eq!(
        resources.limits.as_ref().expect("limits")["memory"].0,
        "128Mi",
        "from the config"
    );
    assert_eq!(
        resources.requests.as_ref().expect("requests")["memory"].0,
        "64Mi"
    );
    let app = container(&pod.spec.as_ref().expect("spec").containers, "app");
    assert_eq!(
        env_value(app, "OPENAI_BASE_URL").as_deref(),
        Some("http://127.0.0.1:16080/v1")
    );
}

#[test]
fn a_namespace_opt_in_covers_unlabelled_pods() {
    let pod_json = pod().remove("/metadata/labels");
    assert_eq!(
        super::fixtures::verdict(&pod_json, &[]),
        Verdict::Skip(Skip::NotSelected)
    );
    let Verdict::Inject { patch, .. } =
        super::fixtures::verdict(&pod_json, &[("aiflags.dev/inject", "enabled")])
    else {
        panic!("the namespace opted in");
    };
    let mut patched = pod_json.clone();
    json_patch::patch(&mut patched, &patch).expect("applies");
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"aiflags.dev/proxy": "injected"})
    );
}
