//! AdmissionReview in, AdmissionReview out. Pure.
//!
//! The webhook never denies: a pod it cannot read or inject is admitted as
//! it is, with warnings that say why. Only a body that is not an
//! AdmissionReview at all (so has no uid to answer) is an error.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use super::config::InjectionConfig;
use super::inject::{Verdict, decide};
use super::select::Skip;

/// Shown before every warning, so `kubectl` users see who speaks.
const WARNING_PREFIX: &str = "aiflags: ";

/// A body that cannot be answered with an AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// How an admission ended: the `result` label of
/// `aiflags_operator_webhook_admissions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    AlreadyInjected,
    /// Not selected, opted out, excluded, or not a pod being created.
    Skipped,
    /// Selected but admitted without the sidecar (bad annotations, conflicts,
    /// an object that is not a pod).
    Refused,
    /// The body was not an AdmissionReview.
    Malformed,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Injected,
        Outcome::AlreadyInjected,
        Outcome::Skipped,
        Outcome::Refused,
        Outcome::Malformed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::AlreadyInjected => "already_injected",
            Outcome::Skipped => "skipped",
            Outcome::Refused => "refused",
            Outcome::Malformed => "malformed",
        }
    }
}

/// The parts of a request the shell needs before [`answer`]: which
/// namespace's labels to look up.
pub struct Request {
    pub inner: AdmissionRequest<DynamicObject>,
}

impl Request {
    pub fn namespace(&self) -> &str {
        self.inner.namespace.as_deref().unwrap_or_default()
    }
}

/// The answer, plus what the shell reports about it.
pub struct Answer {
    pub review: AdmissionReview<DynamicObject>,
    pub outcome: Outcome,
    /// Worth an Event on the pod's owner: the reason an opted-in pod went
    /// without the sidecar, or what was left alone. `None` on dry runs.
    pub notice: Option<Notice>,
}

pub struct Notice {
    pub warning: bool,
    pub lines: Vec<String>,
    /// The pod's controller (a ReplicaSet, say), where its author looks;
    /// else the pod, which at admission may not have its final name yet.
    pub regarding: ObjectReference,
}

pub fn parse(body: &[u8]) -> Result<Request, ReviewError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let review: AdmissionReview<DynamicObject> =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let at = match path.as_str() {
                "." | "?" => String::new(),
                path => format!("at {path}: "),
            };
            ReviewError::NotAReview(format!("{at}{}", e.inner()))
        })?;
    // Carries the review's apiVersion and kind over, for the answer to echo.
    let inner = review.try_into().map_err(|_| ReviewError::NoRequest)?;
    Ok(Request { inner })
}

/// Answers `request`, given the labels of its namespace.
pub fn answer(
    request: &Request,
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectionConfig,
) -> Answer {
    let request = &request.inner;
    let response = AdmissionResponse::from(request);
    let done = |response: AdmissionResponse, outcome, notice: Option<Notice>| Answer {
        review: response.into_review(),
        outcome,
        notice: notice.filter(|_| !request.dry_run),
    };
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.operation != Operation::Create || request.sub_resource.is_some() {
        return done(response, Outcome::Skipped, None);
    }
    let pod = match read_pod(request) {
        Ok(pod) => pod,
        Err(problem) => {
            let lines = vec![problem];
            return done(warn(response, &lines), Outcome::Refused, None);
        }
    };
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let regarding = owner_or_pod(&pod, namespace);
    match decide(&pod, namespace, namespace_labels, config) {
        Verdict::Skip(Skip::AlreadyInjected) => done(response, Outcome::AlreadyInjected, None),
        Verdict::Skip(_) => done(response, Outcome::Skipped, None),
        Verdict::Refuse(problems) => {
            let lines: Vec<String> = problems
                .into_iter()
                .map(|p| format!("{p}; the pod was admitted without the aiflags proxy"))
                .collect();
            let notice = Notice {
                warning: true,
                lines: lines.clone(),
                regarding,
            };
            done(warn(response, &lines), Outcome::Refused, Some(notice))
        }
        Verdict::Inject { patch, warnings } => {
            let warned = warn(response.clone(), &warnings);
            match warned.with_patch(patch) {
                Ok(response) => {
                    let notice = (!warnings.is_empty()).then_some(Notice {
                        warning: false,
                        lines: warnings,
                        regarding,
                    });
                    done(response, Outcome::Injected, notice)
                }
                Err(error) => {
                    let lines = vec![format!(
                        "serializing the patch failed ({error}); the pod was admitted without the aiflags proxy"
                    )];
                    done(warn(response, &lines), Outcome::Refused, None)
                }
            }
        }
    }
}

/// The pod in the request, or why it cannot be read.
fn read_pod(request: &AdmissionRequest<DynamicObject>) -> Result<Pod, String> {
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| "the request carries no pod".to_string())?;
    let value = serde_json::to_value(object).map_err(|e| format!("reading the pod: {e}"))?;
    serde_path_to_error::deserialize(value)
        .map_err(|e| format!("the pod cannot be read at {}: {}", e.path(), e.inner()))
}

fn owner_or_pod(pod: &Pod, namespace: &str) -> ObjectReference {
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match owner {
        Some(owner) => ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: Some(namespace.to_string()),
            uid: Some(owner.uid.clone()),
            ..ObjectReference::default()
        },
        None => ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            name: meta.name.clone().or_else(|| meta.generate_name.clone()),
            namespace: Some(namespace.to_string()),
            uid: meta.uid.clone(),
            ..ObjectReference::default()
        },
    }
}

fn warn(mut response: AdmissionResponse, lines: &[String]) -> AdmissionResponse {
    if !lines.is_empty() {
        response.warnings = Some(
            lines
                .iter()
                .map(|line| format!("{WARNING_PREFIX}{line}"))
                .collect(),
        );
    }
    response
}
