//! The mock API server of the reconciler tests: it plays a scenario's
//! requests in order, asserting each one's method, path (with query) and
//! body, and answers as the API server would; and a [`Context`] whose client
//! talks to it.

use std::sync::Arc;
use std::time::Duration;

use aiflags_api::{
    AIFeatureFlag, AIFeatureFlagStatus, CONFIG_MAP_GZIP_KEY, CONFIG_MAP_KEY, EncodedConfig,
    SidecarConfig, decode_config, encode_config,
};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::client::Body;
use kube::runtime::reflector::{self, store::Writer};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::config_map::desired_config_map;
use super::fixtures::{FlagBuilder, NAMESPACE};
use super::{Context, FINALIZER};
use crate::metrics::Metrics;

pub(crate) const FLAGS_PATH: &str = "/apis/aiflags.dev/v1alpha1/namespaces/shop/aifeatureflags";
const CONFIG_MAP_PATH: &str = "/api/v1/namespaces/shop/configmaps/aiflags-config";
pub(crate) const APPLY_QUERY: &str = "?&force=true&fieldManager=aiflags-operator";
const RBAC_PATH: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/shop";

/// The API server side of [`Context::test`]: answers requests one by one.
pub(crate) struct ApiServer(tower_test::mock::Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    pub(crate) fn new(handle: tower_test::mock::Handle<Request<Body>, Response<Body>>) -> Self {
        ApiServer(handle)
    }
}

/// Fails the test instead of hanging when the reconciler makes fewer calls
/// than the scenario expects (or a scenario assertion panics).
pub(crate) async fn finished(scenario: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(5), scenario)
        .await
        .expect("scenario timed out: the reconciler made fewer requests than expected")
        .expect("scenario assertions hold");
}

pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("serializable");
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response
}

pub(crate) fn api_error(code: u16, reason: &str, message: &str) -> Response<Body> {
    let status = StatusCode::from_u16(code).expect("status code");
    json_response(
        status,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}

impl ApiServer {
    pub(crate) async fn next(
        &mut self,
        method: Method,
        path: &str,
    ) -> (Value, tower_test::mock::SendResponse<Response<Body>>) {
        let (request, respond) = self.0.next_request().await.expect("a request");
        assert_eq!(
            (request.method(), request.uri().to_string().as_str()),
            (&method, path),
            "unexpected request"
        );
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON request body")
        };
        (body, respond)
    }

    /// The next request, whatever its path: its method, URI (path and
    /// query) and the means to answer it.
    pub(crate) async fn next_any(
        &mut self,
    ) -> (
        Method,
        String,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        let (request, respond) = self.0.next_request().await.expect("a request");
        (request.method().clone(), request.uri().to_string(), respond)
    }

    pub(crate) async fn finalizer_added(mut self, flag: &AIFeatureFlag) -> Self {
        let path = format!("{FLAGS_PATH}/{}?", flag.name_any());
        let (body, respond) = self.next(Method::PATCH, &path).await;
        assert_eq!(
            body,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
            ])
        );
        respond.send_response(json_response(StatusCode::OK, &flag.clone().finalized()));
        self
    }

    pub(crate) async fn finalizer_removed(mut self, flag: &AIFeatureFlag) -> Self {
        let path = format!("{FLAGS_PATH}/{}?", flag.name_any());
        let (body, respond) = self.next(Method::PATCH, &path).await;
        assert_eq!(
            body,
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ])
        );
        respond.send_response(json_response(StatusCode::OK, flag));
        self
    }

    /// Answers the GET of one flag (made before a status write) with `flag`.
    pub(crate) async fn flag_read(mut self, flag: &AIFeatureFlag) -> Self {
        let path = format!("{FLAGS_PATH}/{}", flag.name_any());
        let (_, respond) = self.next(Method::GET, &path).await;
        respond.send_response(json_response(StatusCode::OK, flag));
        self
    }

    /// Answers the GET of the ConfigMap with `served`, or 404 when `None`.
    pub(crate) async fn config_map_read(mut self, served: Option<&SidecarConfig>) -> Self {
        let (_, respond) = self.next(Method::GET, CONFIG_MAP_PATH).await;
        respond.send_response(match served {
            Some(config) => json_response(
                StatusCode::OK,
                &desired_config_map(NAMESPACE, &encode_config(config)),
            ),
            None => api_error(404, "NotFound", "configmaps \"aiflags-config\" not found"),
        });
        self
    }

    /// Checks the server-side apply of the ConfigMap and returns the config it holds.
    pub(crate) async fn config_map_applied(self) -> (Self, SidecarConfig) {
        self.config_map_applied_beside(None).await
    }

    /// Checks the server-side apply of the ConfigMap: its metadata, and
    /// exactly one form of the config, the one its size calls for. Answers
    /// with the ConfigMap as applied plus `kept` (a key another field
    /// manager keeps). Returns the config it holds.
    pub(crate) async fn config_map_applied_beside(
        mut self,
        kept: Option<&ConfigMap>,
    ) -> (Self, SidecarConfig) {
        let (body, respond) = self
            .next(Method::PATCH, &format!("{CONFIG_MAP_PATH}{APPLY_QUERY}"))
            .await;
        let mut cm: ConfigMap = serde_json::from_value(body.clone()).expect("a ConfigMap");
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["kind"], "ConfigMap");
        assert_eq!(
            body["metadata"],
            json!({
                "name": "aiflags-config", "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "aiflags-operator"},
            })
        );
        let data = cm.data.clone().unwrap_or_default();
        let binary = cm.binary_data.clone().unwrap_or_default();
        let stored = match (data.get(CONFIG_MAP_KEY), binary.get(CONFIG_MAP_GZIP_KEY)) {
            (Some(json), None) => {
                assert_eq!(data.len(), 1, "only {CONFIG_MAP_KEY}");
                assert!(binary.is_empty(), "no binaryData beside {CONFIG_MAP_KEY}");
                assert!(!json.contains('\n'), "compact JSON");
                json.as_bytes().to_vec()
            }
            (None, Some(gzip)) => {
                assert_eq!(binary.len(), 1, "only {CONFIG_MAP_GZIP_KEY}");
                assert!(data.is_empty(), "no data beside {CONFIG_MAP_GZIP_KEY}");
                gzip.0.clone()
            }
            _ => panic!(
                "exactly one of data.{CONFIG_MAP_KEY} and binaryData.{CONFIG_MAP_GZIP_KEY}: {body}"
            ),
        };
        let config = decode_config(&stored).expect("the ConfigMap holds a valid config");
        assert_eq!(config.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(
            encode_config(&config),
            match data.get(CONFIG_MAP_KEY) {
                Some(json) => EncodedConfig::Json(json.clone()),
                None => EncodedConfig::Gzip {
                    bytes: stored,
                    json_len: config.to_compact_json().len(),
                },
            },
            "the form and bytes encode_config gives"
        );
        if let Some(kept) = kept {
            cm.data
                .get_or_insert_default()
                .extend(kept.data.clone().unwrap_or_default());
            cm.binary_data
                .get_or_insert_default()
                .extend(kept.binary_data.clone().unwrap_or_default());
        }
        respond.send_response(json_response(StatusCode::OK, &cm));
        (self, config)
    }

    /// Checks the merge patch that removes the form of the config not written.
    pub(crate) async fn stale_key_removed(mut self, expected: Value) -> Self {
        let (body, respond) = self
            .next(Method::PATCH, &format!("{CONFIG_MAP_PATH}?"))
            .await;
        assert_eq!(body, expected);
        respond.send_response(json_response(StatusCode::OK, &ConfigMap::default()));
        self
    }

    /// Answers the ConfigMap apply with an API error of this code, worded
    /// as the API server words it.
    pub(crate) async fn config_map_rejected(mut self, code: u16) -> Self {
        let (_, respond) = self
            .next(Method::PATCH, &format!("{CONFIG_MAP_PATH}{APPLY_QUERY}"))
            .await;
        let (reason, message) = match code {
            403 => (
                "Forbidden",
                "configmaps \"aiflags-config\" is forbidden: unable to create new content \
                 in namespace shop because it is being terminated",
            ),
            404 => ("NotFound", "namespaces \"shop\" not found"),
            409 => ("Conflict", "rejected by the test"),
            _ => ("InternalError", "rejected by the test"),
        };
        respond.send_response(api_error(code, reason, message));
        self
    }

    /// Checks the server-side apply of the status; returns the status with
    /// the (clock-dependent) `lastTransitionTime`s checked and removed.
    pub(crate) async fn status_applied(mut self, flag: &AIFeatureFlag) -> (Self, Value) {
        let path = format!("{FLAGS_PATH}/{}/status{APPLY_QUERY}", flag.name_any());
        let (mut body, respond) = self.next(Method::PATCH, &path).await;
        assert_eq!(body["apiVersion"], "aiflags.dev/v1alpha1");
        assert_eq!(body["kind"], "AIFeatureFlag");
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(3),
            "only apiVersion, kind, status: {body}"
        );
        let status: AIFeatureFlagStatus =
            serde_json::from_value(body["status"].clone()).expect("a valid status");
        respond.send_response(json_response(
            StatusCode::OK,
            &flag.clone().with_status(status),
        ));
        for condition in body["status"]["conditions"]
            .as_array_mut()
            .expect("conditions")
        {
            let time = condition
                .as_object_mut()
                .and_then(|c| c.remove("lastTransitionTime"))
                .expect("lastTransitionTime");
            assert!(time.as_str().is_some_and(|t| t.ends_with('Z')), "{time}");
        }
        (self, body["status"].take())
    }

    /// Checks the server-side apply of the Role, then of the RoleBinding,
    /// that let the namespace's service accounts read the ConfigMap.
    pub(crate) async fn reader_applied(mut self) -> Self {
        let path = format!("{RBAC_PATH}/roles/aiflags-config-reader{APPLY_QUERY}");
        let (body, respond) = self.next(Method::PATCH, &path).await;
        assert_eq!(
            body,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {
                    "name": "aiflags-config-reader", "namespace": NAMESPACE,
                    "labels": {"app.kubernetes.io/managed-by": "aiflags-operator"},
                },
                "rules": [{
                    "apiGroups": [""], "resources": ["configmaps"],
                    "resourceNames": ["aiflags-config"], "verbs": ["get", "list", "watch"],
                }],
            })
        );
        respond.send_response(json_response(StatusCode::OK, &body));
        let path = format!("{RBAC_PATH}/rolebindings/aiflags-config-reader{APPLY_QUERY}");
        let (body, respond) = self.next(Method::PATCH, &path).await;
        assert_eq!(
            body,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {
                    "name": "aiflags-config-reader", "namespace": NAMESPACE,
                    "labels": {"app.kubernetes.io/managed-by": "aiflags-operator"},
                },
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "aiflags-config-reader"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts:shop"}],
            })
        );
        respond.send_response(json_response(StatusCode::OK, &body));
        self
    }

    /// Answers the apply of the Role with an API error of this code.
    pub(crate) async fn reader_refused(mut self, code: u16) -> Self {
        let path = format!("{RBAC_PATH}/roles/aiflags-config-reader{APPLY_QUERY}");
        let (_, respond) = self.next(Method::PATCH, &path).await;
        respond.send_response(api_error(code, "Forbidden", "rejected by the test"));
        self
    }

    /// Checks the deletion of the RoleBinding, then of the Role, answering
    /// each with `code` (200, or 404 when already gone).
    pub(crate) async fn reader_deleted(mut self, code: u16) -> Self {
        for kind in ["rolebindings", "roles"] {
            let path = format!("{RBAC_PATH}/{kind}/aiflags-config-reader?");
            let (body, respond) = self.next(Method::DELETE, &path).await;
            assert_eq!(body, json!({}), "{kind}");
            respond.send_response(match code {
                200 => json_response(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
                _ => api_error(code, "NotFound", "not found"),
            });
        }
        self
    }

    /// Checks the propagation pass's server-side apply of `flag`'s status:
    /// its own field manager, only `proxies` and `Propagated`. Returns the
    /// status with `lastTransitionTime` checked and removed.
    pub(crate) async fn propagation_applied(mut self, flag: &AIFeatureFlag) -> (Self, Value) {
        let path = format!(
            "{FLAGS_PATH}/{}/status?&force=true&fieldManager=aiflags-operator-propagation",
            flag.name_any()
        );
        let (mut body, respond) = self.next(Method::PATCH, &path).await;
        assert_eq!(body["apiVersion"], "aiflags.dev/v1alpha1");
        assert_eq!(body["kind"], "AIFeatureFlag");
        let status = body["status"].as_object_mut().expect("a status");
        let fields: Vec<&str> = status.keys().map(String::as_str).collect();
        assert!(
            fields == ["conditions", "proxies"] || fields == ["conditions"],
            "only proxies and Propagated: {fields:?}"
        );
        let conditions = status["conditions"].as_array_mut().expect("conditions");
        assert_eq!(conditions.len(), 1, "only Propagated");
        let time = conditions[0]
            .as_object_mut()
            .and_then(|c| c.remove("lastTransitionTime"))
            .expect("lastTransitionTime");
        assert!(time.as_str().is_some_and(|t| t.ends_with('Z')), "{time}");
        respond.send_response(json_response(StatusCode::OK, flag));
        (self, body["status"].take())
    }

    /// Checks an Event was created about `flag`; returns its note.
    pub(crate) async fn event_posted(
        mut self,
        flag: &AIFeatureFlag,
        type_: &str,
        reason: &str,
    ) -> (Self, String) {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events?");
        let (body, respond) = self.next(Method::POST, &path).await;
        assert_eq!(body["type"], type_);
        assert_eq!(body["reason"], reason);
        assert_eq!(body["reportingController"], "aiflags-operator");
        assert_eq!(body["regarding"]["kind"], "AIFeatureFlag");
        assert_eq!(body["regarding"]["name"], flag.name_any().as_str());
        assert_eq!(
            body["regarding"]["uid"],
            flag.uid().unwrap_or_default().as_str()
        );
        let note = body["note"].as_str().unwrap_or_default().to_string();
        respond.send_response(json_response(StatusCode::CREATED, &body));
        (self, note)
    }
}

impl Context {
    /// A context whose client talks to the returned mock API server, and
    /// whose flag cache the returned writer fills.
    pub(crate) fn test() -> (Arc<Context>, ApiServer, Writer<AIFeatureFlag>) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let (store, writer) = reflector::store();
        let ctx = Context::new(client, metrics, store);
        (Arc::new(ctx), ApiServer::new(handle), writer)
    }
}
