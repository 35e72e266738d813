//! The mock API server's answers to the rollout engine's requests: its
//! status apply (own field manager, fenced by `resourceVersion`) and the
//! removal of command annotations.

use aiflags_api::{AIFeatureFlag, AIFeatureFlagStatus};
use http::{Method, StatusCode};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::mock_api::{ApiServer, FLAGS_PATH, api_error, json_response};
use crate::rollout::commands::removal;
use crate::rollout::view::with_engine_part;

const ENGINE_QUERY: &str = "?&force=true&fieldManager=aiflags-operator-rollout";

impl ApiServer {
    /// Checks the engine's server-side apply of `flag`'s status: its own
    /// field manager, the flag's `resourceVersion` as precondition, and
    /// only the engine's fields. Answers with `flag` so updated; returns
    /// it and the applied status (condition times removed).
    pub(crate) async fn engine_applied(
        mut self,
        flag: &AIFeatureFlag,
    ) -> (Self, AIFeatureFlag, Value) {
        let path = format!("{FLAGS_PATH}/{}/status{ENGINE_QUERY}", flag.name_any());
        let (mut body, respond) = self.next(Method::PATCH, &path).await;
        assert_eq!(body["apiVersion"], "aiflags.dev/v1alpha1");
        assert_eq!(body["kind"], "AIFeatureFlag");
        assert_eq!(
            body["metadata"],
            json!({"resourceVersion": flag.resource_version()}),
            "fenced by the resourceVersion decided from"
        );
        let engine: AIFeatureFlagStatus =
            serde_json::from_value(body["status"].clone()).expect("a valid status");
        let status = body["status"].as_object_mut().expect("a status");
        let fields: Vec<&str> = status.keys().map(String::as_str).collect();
        assert!(
            fields
                .iter()
                .all(|f| ["conditions", "currentStep", "failedChecks", "rollout"].contains(f)),
            "only the engine's fields: {fields:?}"
        );
        let conditions = status["conditions"].as_array_mut().expect("conditions");
        let types: Vec<&str> = conditions
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(types, ["Progressing", "Aborted"]);
        for condition in conditions.iter_mut() {
            condition
                .as_object_mut()
                .and_then(|c| c.remove("lastTransitionTime"));
        }
        let mut updated = flag.clone();
        updated.status = Some(with_engine_part(flag.status.clone(), &engine));
        updated.metadata.resource_version =
            Some(format!("{}1", flag.resource_version().unwrap_or_default()));
        respond.send_response(json_response(StatusCode::OK, &updated));
        (self, updated, body["status"].take())
    }

    /// Answers the engine's status apply with an API error of this code.
    pub(crate) async fn engine_rejected(mut self, flag: &AIFeatureFlag, code: u16) -> Self {
        let path = format!("{FLAGS_PATH}/{}/status{ENGINE_QUERY}", flag.name_any());
        let (_, respond) = self.next(Method::PATCH, &path).await;
        respond.send_response(api_error(code, "Conflict", "the object has been modified"));
        self
    }

    /// Checks the merge patch that removes the command annotations `keys`.
    pub(crate) async fn commands_removed(mut self, flag: &AIFeatureFlag, keys: &[&str]) -> Self {
        let path = format!("{FLAGS_PATH}/{}?", flag.name_any());
        let (body, respond) = self.next(Method::PATCH, &path).await;
        assert_eq!(body, removal(keys));
        respond.send_response(json_response(StatusCode::OK, flag));
        self
    }
}
