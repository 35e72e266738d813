//! The Kubernetes watch of the namespace's `aiflags-config` ConfigMap: a
//! config change reaches the sidecar in about a second, where the mounted
//! file takes kubelet's one to two minutes.
//!
//! kube-runtime's watcher lists then watches the one ConfigMap (a field
//! selector on its name, which is all the operator's Role allows), relists
//! after a `410 Gone`, and backs off on errors. Every outcome becomes a
//! [`WatchUpdate`] for the reloader, which keeps serving the last good
//! snapshot through any error and falls back to the mounted file while the
//! API is unreachable. The service-account token comes from the projected
//! volume mounted into the sidecar only (kube's in-cluster config reads it
//! and follows its rotation).

use std::pin::pin;

use aiflags_api::{CONFIG_MAP_GZIP_KEY, CONFIG_MAP_KEY, SidecarConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};

/// Which ConfigMap to watch, and where the API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WatchTarget {
    pub name: String,
    pub namespace: String,
    /// The API server; `None` for the in-cluster config (service-account
    /// token, `KUBERNETES_SERVICE_HOST`).
    pub api_url: Option<http::Uri>,
}

/// What the watch has to say.
#[derive(Debug)]
pub(crate) enum WatchUpdate {
    /// The ConfigMap as it now is; an empty config when it does not exist.
    Config(SidecarConfig),
    /// The ConfigMap holds a document that does not load: keep serving.
    Invalid(String),
    /// The API cannot be reached or the watch failed; the watcher retries.
    Lost(String),
}

/// Watches until `stop` flips, sending every update to `updates`.
pub(crate) fn spawn_watch(
    target: WatchTarget,
    updates: mpsc::Sender<WatchUpdate>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = run(&target, &updates) => {}
            _ = stop.changed() => {}
        }
    })
}

async fn run(target: &WatchTarget, updates: &mpsc::Sender<WatchUpdate>) {
    let client = match client(target).await {
        Ok(client) => client,
        Err(e) => {
            let _ = updates
                .send(WatchUpdate::Lost(format!("no Kubernetes client: {e}")))
                .await;
            return;
        }
    };
    let api: Api<ConfigMap> = Api::namespaced(client, &target.namespace);
    let selector = format!("metadata.name={}", target.name);
    let stream =
        watcher::watcher(api, watcher::Config::default().fields(&selector)).default_backoff();
    let mut stream = pin!(stream);
    // Whether the current list (after an `Init`) has shown the ConfigMap.
    let mut listed = false;
    while let Some(event) = stream.next().await {
        let update = match event {
            Ok(Event::Init) => {
                listed = false;
                continue;
            }
            Ok(Event::InitApply(config_map) | Event::Apply(config_map)) => {
                listed = true;
                from_config_map(&config_map)
            }
            Ok(Event::Delete(_)) => WatchUpdate::Config(SidecarConfig::empty(None)),
            // Listed, and it is not there: the namespace has no flags.
            Ok(Event::InitDone) if !listed => WatchUpdate::Config(SidecarConfig::empty(None)),
            Ok(Event::InitDone) => continue,
            Err(e) => WatchUpdate::Lost(e.to_string()),
        };
        if updates.send(update).await.is_err() {
            return;
        }
    }
}

async fn client(target: &WatchTarget) -> Result<Client, String> {
    let config = match &target.api_url {
        Some(url) => kube::Config::new(url.clone()),
        None => kube::Config::incluster().map_err(|e| e.to_string())?,
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

/// The namespace the sidecar runs in, as its service-account volume says.
pub(crate) fn own_namespace() -> Option<String> {
    let text =
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()?;
    let namespace = text.trim();
    (!namespace.is_empty()).then(|| namespace.to_string())
}

/// The compiled config a ConfigMap holds: `data["config.json"]`, or
/// `binaryData["config.json.gz"]` when the operator compressed it.
pub(crate) fn from_config_map(config_map: &ConfigMap) -> WatchUpdate {
    let plain = config_map
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIG_MAP_KEY))
        .map(|text| text.as_bytes().to_vec());
    let gzip = config_map
        .binary_data
        .as_ref()
        .and_then(|d| d.get(CONFIG_MAP_GZIP_KEY))
        .map(|bytes| bytes.0.clone());
    match plain.or(gzip) {
        None => WatchUpdate::Invalid(format!(
            "ConfigMap {} has neither data[{CONFIG_MAP_KEY}] nor binaryData[{CONFIG_MAP_GZIP_KEY}]",
            config_map.metadata.name.as_deref().unwrap_or_default()
        )),
        Some(bytes) => match aiflags_api::decode_config(&bytes) {
            Ok(config) => WatchUpdate::Config(config),
            Err(e) => WatchUpdate::Invalid(format!(
                "ConfigMap {}: {e}",
                config_map.metadata.name.as_deref().unwrap_or_default()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aiflags_api::{EncodedConfig, compile_manifests, encode_config, parse_manifests};
    use k8s_openapi::ByteString;

    use super::*;

    /// A config large enough for the operator to store it gzipped.
    fn large_config() -> SidecarConfig {
        let yaml: String = (0..2000)
            .map(|i| format!("apiVersion: aiflags.dev/v1alpha1\nkind: AIFeatureFlag\nmetadata: {{name: f{i}}}\nspec:\n  defaultVariant: a\n  variants: [{{name: a, model: model-{i}}}]\n---\n"))
            .collect();
        let (manifests, errors) = parse_manifests("t", &yaml);
        assert!(errors.is_empty());
        compile_manifests(&manifests, None).0
    }

    fn config_map(data: Option<(&str, String)>, binary: Option<(&str, Vec<u8>)>) -> ConfigMap {
        ConfigMap {
            data: data.map(|(k, v)| BTreeMap::from([(k.to_string(), v)])),
            binary_data: binary.map(|(k, v)| BTreeMap::from([(k.to_string(), ByteString(v))])),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn reads_what_the_operator_writes_plain_or_gzipped() {
        let config = large_config();
        let EncodedConfig::Gzip { bytes, .. } = encode_config(&config) else {
            panic!("expected the gzip form");
        };
        let gzipped = config_map(None, Some((CONFIG_MAP_GZIP_KEY, bytes)));
        assert!(
            matches!(from_config_map(&gzipped), WatchUpdate::Config(c) if c.revision == config.revision)
        );
        let plain = config_map(Some((CONFIG_MAP_KEY, config.to_json())), None);
        assert!(
            matches!(from_config_map(&plain), WatchUpdate::Config(c) if c.revision == config.revision)
        );
    }

    #[test]
    fn a_config_map_without_a_usable_document_is_invalid_not_empty() {
        assert!(matches!(
            from_config_map(&config_map(None, None)),
            WatchUpdate::Invalid(_)
        ));
        let broken = config_map(Some((CONFIG_MAP_KEY, "{\"schema\": \"x\"}".into())), None);
        let WatchUpdate::Invalid(message) = from_config_map(&broken) else {
            panic!("a broken document must not load");
        };
        assert!(message.contains("not supported"), "{message}");
    }
}
