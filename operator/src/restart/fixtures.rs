//! Test workloads, namespaces and pods, and a mock API server that asserts
//! each request the restart reconcile makes.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::client::Body;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::Context;
use super::workload::Workload;
use crate::webhook::config::InjectionConfig;

pub(crate) const SPACING: Duration = Duration::from_secs(30);
const PATIENCE: Duration = Duration::from_secs(5);

/// `shop`, labelled for injection, with these annotations.
pub(crate) fn namespace(annotations: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {
        "name": "shop",
        "labels": {"aiflags.dev/inject": "enabled"},
        "annotations": annotations,
    }}))
    .expect("namespace")
}

/// A settled workload of `kind` (Deployment, StatefulSet, DaemonSet) at
/// generation 3, its pods labelled `app: <name>`.
pub(crate) fn workload(kind: &str, name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": name, "namespace": "shop", "uid": format!("uid-{name}"),
            "generation": 3, "resourceVersion": "41", "annotations": annotations,
        },
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "serviceName": name,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
        "status": {"observedGeneration": 3, "replicas": 2},
    })
}

pub(crate) fn meta_of<K: Workload>(workload: &Value) -> Arc<PartialObjectMeta<K>> {
    Arc::new(PartialObjectMeta {
        types: None,
        metadata: serde_json::from_value(workload["metadata"].clone()).expect("metadata"),
        _phantom: std::marker::PhantomData,
    })
}

/// A running pod of `app`, with or without the sidecar.
pub(crate) fn pod(app: &str, injected: bool) -> Value {
    let init = if injected {
        json!([{"name": "aiflags-proxy", "image": "sidecar", "restartPolicy": "Always"}])
    } else {
        json!([])
    };
    json!({
        "metadata": {"name": format!("{app}-{injected}"), "namespace": "shop", "labels": {"app": app}},
        "spec": {"initContainers": init, "containers": [{"name": "app", "image": "registry.example/app:1"}]},
        "status": {"phase": "Running"},
    })
}

pub(crate) type ApiHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A context whose namespace cache holds `namespaces`, and its API server.
pub(crate) fn context(namespaces: &[Namespace]) -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (store, mut writer): (_, Writer<Namespace>) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for ns in namespaces {
        writer.apply_watcher_event(&watcher::Event::InitApply(ns.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let registry = prometheus::Registry::new();
    let ctx = Context::new(
        client,
        store,
        InjectionConfig::default(),
        SPACING,
        &registry,
    )
    .expect("context");
    (Arc::new(ctx), ApiServer { handle, registry })
}

pub(crate) struct ApiServer {
    handle: ApiHandle,
    pub(crate) registry: prometheus::Registry,
}

fn answer(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).expect("json")));
    *response.status_mut() = status;
    response
}

impl ApiServer {
    async fn next(
        &mut self,
        method: Method,
        path: &str,
    ) -> (Value, tower_test::mock::SendResponse<Response<Body>>) {
        let (request, respond) = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .expect("the reconcile made fewer requests than expected")
            .expect("a request");
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&method, path),
            "unexpected request"
        );
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (body, respond)
    }

    pub(crate) async fn workload_read(&mut self, workload: &Value) {
        let plural = format!(
            "{}s",
            workload["kind"].as_str().expect("kind").to_lowercase()
        );
        let path = format!(
            "/apis/apps/v1/namespaces/shop/{plural}/{}",
            workload["metadata"]["name"].as_str().expect("name")
        );
        let (_, respond) = self.next(Method::GET, &path).await;
        respond.send_response(answer(StatusCode::OK, workload));
    }

    pub(crate) async fn pods_listed(&mut self, app: &str, pods: Vec<Value>) {
        let path = format!("/api/v1/namespaces/shop/pods?&labelSelector=app%3D{app}");
        let (_, respond) = self.next(Method::GET, &path).await;
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods});
        respond.send_response(answer(StatusCode::OK, &list));
    }

    /// Checks the restart patch and answers with `code`; returns the patch.
    pub(crate) async fn restart_patched(&mut self, workload: &Value, code: u16) -> Value {
        let plural = format!(
            "{}s",
            workload["kind"].as_str().expect("kind").to_lowercase()
        );
        let name = workload["metadata"]["name"].as_str().expect("name");
        let path =
            format!("/apis/apps/v1/namespaces/shop/{plural}/{name}?&fieldManager=aiflags-operator");
        let (body, respond) = self.next(Method::PATCH, &path).await;
        let status = StatusCode::from_u16(code).expect("code");
        let reply = if status.is_success() {
            workload.clone()
        } else {
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "reason": "Conflict", "code": code, "message": "the object has been modified"})
        };
        respond.send_response(answer(status, &reply));
        body
    }

    pub(crate) async fn event_posted(&mut self, workload: &Value) -> Value {
        let (body, respond) = self
            .next(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events?",
            )
            .await;
        assert_eq!(body["regarding"]["kind"], workload["kind"]);
        assert_eq!(body["regarding"]["name"], workload["metadata"]["name"]);
        respond.send_response(answer(StatusCode::CREATED, &body));
        body
    }

    /// Passes once every client is gone without another request.
    pub(crate) async fn no_more_requests(mut self) {
        let next = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .expect("the reconcile kept its client");
        assert!(
            next.is_none(),
            "unexpected request: {:?}",
            next.map(|(r, _)| r.uri().to_string())
        );
    }
}
