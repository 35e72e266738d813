//! Test pods as the API server hands them to the webhook (after the
//! ServiceAccount admission plugin added its token volume), AdmissionReviews
//! around them, and the patch applied back onto the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use serde_json::{Value, json};

use super::config::InjectionConfig;
use super::inject::{Verdict, decide};
use super::review::{Answer, answer, parse};

pub(crate) const NAMESPACE: &str = "shop";

/// A pod of Deployment `summarizer`, labelled for injection.
pub(crate) fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "summarizer-7d9f8b6c5-",
            "namespace": NAMESPACE,
            "labels": {"app": "summarizer", "aiflags.dev/inject": "enabled"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "summarizer-7d9f8b6c5",
                "uid": "rs-uid", "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "serviceAccountName": "default",
            "containers": [{
                "name": "app",
                "image": "registry.example/summarizer:1.2",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "openai", "key": "key"}}}],
                "volumeMounts": [{
                    "name": "kube-api-access-x2k9q", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                }],
            }],
            "volumes": [{
                "name": "kube-api-access-x2k9q",
                "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]},
            }],
        },
    })
}

/// Small edits of a pod's JSON, as the fixtures need them.
pub(crate) trait PodJson {
    fn set(self, pointer: &str, value: Value) -> Self;
    fn remove(self, pointer: &str) -> Self;
    fn annotate(self, key: &str, value: &str) -> Self;
}

impl PodJson for Value {
    fn set(mut self, pointer: &str, value: Value) -> Self {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        let parent = self.pointer_mut(parent).expect("parent exists");
        match parent {
            Value::Object(map) => {
                map.insert(key.replace("~1", "/"), value);
            }
            Value::Array(items) => {
                let index: usize = key.parse().expect("index");
                if index == items.len() {
                    items.push(value);
                } else {
                    items[index] = value;
                }
            }
            other => panic!("cannot set {pointer} in {other}"),
        }
        self
    }

    fn remove(mut self, pointer: &str) -> Self {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        let parent = self.pointer_mut(parent).expect("parent exists");
        parent
            .as_object_mut()
            .expect("an object")
            .remove(&key.replace("~1", "/"))
            .expect("present");
        self
    }

    fn annotate(mut self, key: &str, value: &str) -> Self {
        let metadata = self["metadata"].as_object_mut().expect("metadata");
        let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
        annotations[key] = json!(value);
        self
    }
}

pub(crate) fn typed(pod: &Value) -> Pod {
    serde_json::from_value(pod.clone()).expect("a valid Pod")
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The verdict for `pod` in `shop`, whose namespace has `ns_labels`.
pub(crate) fn verdict(pod: &Value, ns_labels: &[(&str, &str)]) -> Verdict {
    decide(
        &typed(pod),
        NAMESPACE,
        &labels(ns_labels),
        &InjectionConfig::default(),
    )
}

/// The pod after the webhook's patch, and the warnings it gave; fails the
/// test unless the verdict is to inject.
pub(crate) fn injected_with(pod: &Value, config: &InjectionConfig) -> (Pod, Value, Vec<String>) {
    let Verdict::Inject { patch, warnings } =
        decide(&typed(pod), NAMESPACE, &BTreeMap::new(), config)
    else {
        panic!("expected an injection");
    };
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).expect("the patch applies to the pod it was made for");
    (typed(&patched), patched, warnings)
}

pub(crate) fn injected(pod: &Value) -> (Pod, Value, Vec<String>) {
    injected_with(pod, &InjectionConfig::default())
}

pub(crate) fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub(crate) fn env_value(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

/// An AdmissionReview as the API server sends it for creating `pod`.
pub(crate) fn review_of(pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    })
}

pub(crate) fn answer_to(review: &Value, ns_labels: &[(&str, &str)]) -> Answer {
    let body = serde_json::to_vec(review).expect("json");
    let request = parse(&body).expect("a readable review");
    answer(&request, &labels(ns_labels), &InjectionConfig::default())
}

/// The response as the API server reads it.
pub(crate) fn response_json(review: &AdmissionReview<DynamicObject>) -> Value {
    serde_json::to_value(review).expect("serializable")["response"].clone()
}

/// The injected sidecar of a patched pod.
pub(crate) fn sidecar_of(pod: &Pod) -> &Container {
    let spec = pod.spec.as_ref().expect("spec");
    container(
        spec.init_containers.as_deref().expect("init containers"),
        super::inject::CONTAINER_NAME,
    )
}
