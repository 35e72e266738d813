//! The webhook's decision for one pod, and the JSON patch that injects the
//! sidecar. Pure: the pod, its namespace's labels and the injection config
//! in, a [`Verdict`] out.
//!
//! The patch only adds: the sidecar container, its volumes, a label, and
//! the base URLs on app containers that do not set them. Paths are built
//! against the pod as the API server sent it, so the API server applies the
//! patch to exactly the object we looked at.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::{Value, json};

use super::annotations::{ProxySettings, proxy_settings};
use super::config::InjectionConfig;
use super::select::{Skip, selected};
pub use super::sidecar::CONTAINER_NAME;
use super::sidecar::{VOLUME_NAMES, sidecar_container, sidecar_volumes};

/// Set on every injected pod, so monitors and the operator can find them.
pub const PROXY_LABEL: &str = "aiflags.dev/proxy";
pub const PROXY_LABEL_VALUE: &str = "injected";
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";

#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Admit with this patch; the warnings tell the pod's author what was
    /// left alone (an app's own base URL, say).
    Inject { patch: Patch, warnings: Vec<String> },
    /// Admit unchanged: the pod is not for us.
    Skip(Skip),
    /// Selected, but cannot be injected as asked: admit unchanged, and say why.
    Refuse(Vec<String>),
}

/// What to do with `pod`, created in `namespace`.
pub fn decide(
    pod: &Pod,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectionConfig,
) -> Verdict {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    if let Err(skip) = selected(namespace, labels, namespace_labels, config) {
        return Verdict::Skip(skip);
    }
    let Some(spec) = &pod.spec else {
        return Verdict::Refuse(vec!["the pod has no spec".to_string()]);
    };
    if spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| c.name == CONTAINER_NAME)
    {
        return Verdict::Skip(Skip::AlreadyInjected);
    }
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let settings = match proxy_settings(annotations, config) {
        Ok(settings) => settings,
        Err(errors) => return Verdict::Refuse(errors),
    };
    let conflicts = conflicts(spec, &settings);
    if !conflicts.is_empty() {
        return Verdict::Refuse(conflicts);
    }
    let mut warnings = Vec::new();
    match injection_patch(pod, spec, &settings, config, &mut warnings) {
        Ok(patch) => Verdict::Inject { patch, warnings },
        Err(error) => Verdict::Refuse(vec![format!("building the patch failed: {error}")]),
    }
}

/// Reasons the sidecar cannot join this pod as it is.
fn conflicts(spec: &PodSpec, settings: &ProxySettings) -> Vec<String> {
    let mut problems = Vec::new();
    if spec.host_network == Some(true) {
        problems.push(
            "the pod uses the host network, where every pod on the node would share the proxy's ports"
                .to_string(),
        );
    }
    for volume in spec.volumes.iter().flatten() {
        if VOLUME_NAMES.contains(&volume.name.as_str()) {
            problems.push(format!(
                "the pod already has a volume named {:?}, which the proxy needs",
                volume.name
            ));
        }
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    for container in containers {
        for port in container.ports.iter().flatten() {
            let taken = [settings.proxy_port, settings.admin_port]
                .into_iter()
                .any(|p| i32::from(p) == port.container_port);
            if taken {
                problems.push(format!(
                    "container {:?} uses port {}, which the proxy needs \
                     (move the proxy with proxy.aiflags.dev/proxy-port or admin-port)",
                    container.name, port.container_port
                ));
            }
        }
    }
    problems
}

fn injection_patch(
    pod: &Pod,
    spec: &PodSpec,
    settings: &ProxySettings,
    config: &InjectionConfig,
    warnings: &mut Vec<String>,
) -> Result<Patch, serde_json::Error> {
    let mut ops = Vec::new();
    match &pod.metadata.labels {
        None => add(
            &mut ops,
            &["metadata", "labels"],
            json!({PROXY_LABEL: PROXY_LABEL_VALUE}),
        ),
        Some(_) => add(
            &mut ops,
            &["metadata", "labels", PROXY_LABEL],
            json!(PROXY_LABEL_VALUE),
        ),
    }
    let volumes = sidecar_volumes()
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    append_all(
        &mut ops,
        &["spec", "volumes"],
        spec.volumes.is_some(),
        volumes,
    );

    // The app containers' env first: their indices do not move when the
    // sidecar is appended to the containers in regular-container mode.
    for (index, container) in spec.containers.iter().enumerate() {
        base_url_ops(&mut ops, index, container, settings, warnings);
    }

    let sidecar = serde_json::to_value(sidecar_container(settings, config))?;
    if config.native_sidecar {
        // First of the init containers: the others may already call an LLM.
        match &spec.init_containers {
            None => add(&mut ops, &["spec", "initContainers"], json!([sidecar])),
            Some(_) => add(&mut ops, &["spec", "initContainers", "0"], sidecar),
        }
    } else {
        // Last, so `kubectl logs` and `exec` still default to the app.
        append_all(&mut ops, &["spec", "containers"], true, [sidecar]);
    }
    Ok(Patch(ops))
}

/// Points the app's OpenAI and Anthropic SDKs at the sidecar, leaving a
/// value the app may set itself alone unless the pod asks otherwise.
fn base_url_ops(
    ops: &mut Vec<PatchOperation>,
    index: usize,
    container: &Container,
    settings: &ProxySettings,
    warnings: &mut Vec<String>,
) {
    let index = index.to_string();
    let env_path = ["spec", "containers", index.as_str(), "env"];
    let port = settings.proxy_port;
    let wanted = [
        (OPENAI_BASE_URL, format!("http://127.0.0.1:{port}/v1")),
        (ANTHROPIC_BASE_URL, format!("http://127.0.0.1:{port}")),
    ];
    let env = container.env.as_deref().unwrap_or_default();
    if !settings.override_base_url && container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        warnings.push(format!(
            "container {:?} takes variables from envFrom, which may set the base URLs: left as is \
             (annotate proxy.aiflags.dev/override-base-url=true to route it through aiflags)",
            container.name
        ));
        return;
    }
    let mut missing = Vec::new();
    for (name, url) in wanted {
        let entry = json!({"name": name, "value": url});
        match env.iter().position(|e| e.name == name) {
            None => missing.push(entry),
            Some(at) if settings.override_base_url => {
                let at = at.to_string();
                ops.push(PatchOperation::Replace(ReplaceOperation {
                    path: pointer(&["spec", "containers", index.as_str(), "env", at.as_str()]),
                    value: entry,
                }));
            }
            Some(_) => warnings.push(format!(
                "container {:?} sets {name} itself: left as is \
                 (annotate proxy.aiflags.dev/override-base-url=true to route it through aiflags)",
                container.name
            )),
        }
    }
    append_all(ops, &env_path, container.env.is_some(), missing);
}

/// Adds `items` to the array at `path`, creating it when `exists` is false.
fn append_all(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    exists: bool,
    items: impl IntoIterator<Item = Value>,
) {
    let items: Vec<Value> = items.into_iter().collect();
    if items.is_empty() {
        return;
    }
    if !exists {
        add(ops, path, Value::Array(items));
        return;
    }
    let mut end = path.to_vec();
    end.push("-");
    for item in items {
        add(ops, &end, item);
    }
}

fn add(ops: &mut Vec<PatchOperation>, path: &[&str], value: Value) {
    ops.push(PatchOperation::Add(AddOperation {
        path: pointer(path),
        value,
    }));
}

/// A JSON pointer from unescaped tokens (`aiflags.dev/proxy` becomes `aiflags.dev~1proxy`).
fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}
