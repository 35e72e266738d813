//! Test-only: a Lease API as the API server keeps it (one lease, a
//! `resourceVersion` bumped by every write, `409` for a stale `PUT` or a
//! second create), shared by several clients, one per replica. Each
//! request's method and path are checked; a replica can be cut off (its
//! requests answered `500`) to play a network partition.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::client::Body;
use serde_json::json;

pub(crate) const NAMESPACE: &str = "aiflags-system";
pub(crate) const NAME: &str = "aiflags-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/aiflags-system/leases";

#[derive(Default)]
struct State {
    lease: Option<Lease>,
    version: u64,
    cut_off: HashSet<String>,
    /// `(replica, what)` of every successful write.
    writes: Vec<(String, &'static str)>,
}

#[derive(Clone, Default)]
pub(crate) struct FakeLeases(Arc<Mutex<State>>);

impl FakeLeases {
    /// A client for `replica`, answered by this fake.
    pub(crate) fn client(&self, replica: &str) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = self.0.clone();
        let replica = replica.to_string();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.unwrap_or_default();
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                respond.send_response(state.answer(
                    &replica,
                    &parts.method,
                    &parts.uri.to_string(),
                    &body,
                ));
            }
        });
        Client::new(service, NAMESPACE)
    }

    pub(crate) fn cut_off(&self, replica: &str, cut: bool) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if cut {
            state.cut_off.insert(replica.to_string());
        } else {
            state.cut_off.remove(replica);
        }
    }

    pub(crate) fn lease(&self) -> Option<Lease> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lease
            .clone()
    }

    pub(crate) fn writes(&self) -> Vec<(String, &'static str)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .writes
            .clone()
    }
}

impl State {
    fn answer(&mut self, replica: &str, method: &Method, uri: &str, body: &[u8]) -> Response<Body> {
        if self.cut_off.contains(replica) {
            return status(500, "InternalError", "the test cut this replica off");
        }
        let one = format!("{LEASES}/{NAME}");
        match (method, uri) {
            (&Method::GET, path) if path == one => match &self.lease {
                Some(lease) => ok(StatusCode::OK, lease),
                None => status(
                    404,
                    "NotFound",
                    "leases.coordination.k8s.io \"aiflags-operator\" not found",
                ),
            },
            (&Method::POST, path) if path == format!("{LEASES}?") => {
                if self.lease.is_some() {
                    return status(
                        409,
                        "AlreadyExists",
                        "leases.coordination.k8s.io \"aiflags-operator\" already exists",
                    );
                }
                let lease = self.store(body);
                self.writes.push((replica.to_string(), "create"));
                ok(StatusCode::CREATED, &lease)
            }
            (&Method::PUT, path) if path == format!("{one}?") => {
                let sent: Lease = serde_json::from_slice(body).expect("a Lease");
                let current = self
                    .lease
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone());
                if sent.metadata.resource_version != current {
                    return status(
                        409,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version",
                    );
                }
                let lease = self.store(body);
                self.writes.push((replica.to_string(), "replace"));
                ok(StatusCode::OK, &lease)
            }
            (method, uri) => panic!("unexpected request {method} {uri}"),
        }
    }

    fn store(&mut self, body: &[u8]) -> Lease {
        let mut lease: Lease = serde_json::from_slice(body).expect("a Lease");
        self.version += 1;
        lease.metadata.resource_version = Some(self.version.to_string());
        self.lease = Some(lease.clone());
        lease
    }
}

fn ok(code: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(value).expect("serializable")));
    *response.status_mut() = code;
    response
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    let mut response = Response::new(Body::from(serde_json::to_vec(&body).expect("serializable")));
    *response.status_mut() = StatusCode::from_u16(code).expect("a status code");
    response
}
