//! The mutating admission webhook that injects the aiflags sidecar into
//! pods, served by the operator over TLS at `/mutate-pods`.
//!
//! The decisions are pure: [`select`] (is the pod opted in), [`annotations`]
//! (its overrides), [`inject`] (the JSON patch), [`sidecar`] (the
//! container), [`review`] (AdmissionReview in and out). [`Webhook`] adds
//! the namespace's labels and Events; [`server`] and [`tls`] are the shell.

pub mod annotations;
pub mod config;
pub mod inject;
pub mod metrics;
pub mod preview;
pub mod quantity;
pub mod review;
pub mod select;
pub mod server;
pub mod sidecar;
pub mod tls;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_patch;
#[cfg(test)]
mod tests_review;
#[cfg(test)]
mod tests_server;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};

use self::config::InjectionConfig;
use self::metrics::WebhookMetrics;
use self::review::{Notice, Outcome, ReviewError};

/// How long an admission may wait for a namespace missing from the cache.
const NAMESPACE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What every admission shares.
pub struct Webhook {
    pub config: InjectionConfig,
    /// The operator's cache of namespaces; a miss (a namespace created a
    /// moment ago) falls back to one GET.
    pub namespaces: Store<Namespace>,
    pub client: Client,
    /// Shared, so the same warning for every pod of a ReplicaSet becomes
    /// one Event series instead of an Event per pod.
    pub recorder: Recorder,
    pub metrics: WebhookMetrics,
}

impl Webhook {
    /// Answers one AdmissionReview body with the AdmissionReview to send back.
    pub async fn review(&self, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
        let started = Instant::now();
        let request = match review::parse(body) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%error, "refusing a malformed AdmissionReview");
                self.metrics
                    .admitted(Outcome::Malformed, started.elapsed().as_secs_f64());
                return Err(error);
            }
        };
        let labels = self.namespace_labels(request.namespace()).await;
        let answer = review::answer(&request, &labels, &self.config);
        let json = serde_json::to_vec(&answer.review)
            .map_err(|e| ReviewError::NotAReview(format!("serializing the answer: {e}")))?;
        self.metrics
            .admitted(answer.outcome, started.elapsed().as_secs_f64());
        tracing::debug!(
            namespace = request.namespace(),
            result = answer.outcome.label(),
            "pod admitted"
        );
        if let Some(notice) = answer.notice {
            // Not awaited: the API server is waiting for this admission.
            tokio::spawn(publish(self.recorder.clone(), notice));
        }
        Ok(json)
    }

    async fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        if namespace.is_empty() {
            return BTreeMap::new();
        }
        if let Some(cached) = self.namespaces.get(&ObjectRef::new(namespace)) {
            return cached.metadata.labels.clone().unwrap_or_default();
        }
        let api = Api::<Namespace>::all(self.client.clone());
        match tokio::time::timeout(NAMESPACE_LOOKUP_TIMEOUT, api.get(namespace)).await {
            Ok(Ok(found)) => found.metadata.labels.unwrap_or_default(),
            Ok(Err(error)) => {
                tracing::warn!(namespace, %error, "reading the namespace's labels failed");
                BTreeMap::new()
            }
            Err(_) => {
                tracing::warn!(namespace, "reading the namespace's labels timed out");
                BTreeMap::new()
            }
        }
    }
}

/// Events are informative: failing to publish one changes no admission.
async fn publish(recorder: Recorder, notice: Notice) {
    let (type_, reason) = if notice.warning {
        (EventType::Warning, "InjectionSkipped")
    } else {
        (EventType::Normal, "InjectedWithWarnings")
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(&notice.lines.join("; "), 1024)),
        action: "InjectSidecar".to_string(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &notice.regarding).await {
        tracing::warn!(%error, "publishing an injection event failed");
    }
}

/// Events' notes are limited to 1 kB.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
