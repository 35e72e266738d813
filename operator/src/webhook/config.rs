//! The injection config: what the webhook puts into a pod unless the pod's
//! annotations say otherwise. The chart renders it from its values into a
//! ConfigMap the operator reads at start (`--injection-config`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::quantity::parse_quantity;

/// The sidecar image the chart installs by default.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/aiflags/aiflags-sidecar:",
    env!("CARGO_PKG_VERSION")
);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectionConfig {
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; unset = the cluster's default.
    pub image_pull_policy: Option<String>,
    /// An init container with `restartPolicy: Always` (Kubernetes 1.29+),
    /// or else a regular container for older clusters.
    pub native_sidecar: bool,
    /// The data listener on 127.0.0.1 that apps' base URLs point at.
    pub proxy_port: u16,
    /// `/metrics`, `/healthz`, `/readyz`, `/config` on every interface.
    pub admin_port: u16,
    pub workers: u16,
    /// `json` or `text`.
    pub log_format: String,
    /// `requests`/`limits` by resource name, as in a container spec.
    pub resources: Resources,
    /// The sidecar's user and group; `None` leaves them to the image and
    /// the pod (e.g. OpenShift's assigned range).
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub upstreams: Upstreams,
    /// Never injected, whatever their labels say.
    pub excluded_namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

/// Default upstream per protocol; `None` = the provider's public API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstreams {
    pub openai: Option<String>,
    pub anthropic: Option<String>,
}

impl Default for InjectionConfig {
    fn default() -> Self {
        let amounts = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        InjectionConfig {
            image: DEFAULT_IMAGE.to_string(),
            image_pull_policy: None,
            native_sidecar: true,
            proxy_port: 15080,
            admin_port: 15090,
            workers: 1,
            log_format: "json".to_string(),
            resources: Resources {
                requests: amounts(&[("cpu", "20m"), ("memory", "32Mi")]),
                limits: amounts(&[("memory", "128Mi")]),
            },
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            upstreams: Upstreams::default(),
            excluded_namespaces: ["kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl InjectionConfig {
    /// Reads and checks the file, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("reading {}: {e}", path.display())])?;
        Self::from_json(&text).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect()
        })
    }

    pub fn from_json(text: &str) -> Result<Self, Vec<String>> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let config: InjectionConfig = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| vec![format!("{}: {}", e.path(), e.inner())])?;
        let errors = config.problems();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Everything wrong with this config, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = check_image(&self.image) {
            errors.push(format!("image: {e}"));
        }
        if let Some(policy) = &self.image_pull_policy
            && !["Always", "IfNotPresent", "Never"].contains(&policy.as_str())
        {
            errors.push(format!(
                "imagePullPolicy: {policy:?} is not Always, IfNotPresent or Never"
            ));
        }
        for (field, port) in [
            ("proxyPort", self.proxy_port),
            ("adminPort", self.admin_port),
        ] {
            if let Err(e) = check_port(port) {
                errors.push(format!("{field}: {e}"));
            }
        }
        if self.proxy_port == self.admin_port {
            errors.push(format!(
                "adminPort: {} is also the proxyPort",
                self.admin_port
            ));
        }
        if let Err(e) = check_workers(self.workers) {
            errors.push(format!("workers: {e}"));
        }
        if !["json", "text"].contains(&self.log_format.as_str()) {
            errors.push(format!(
                "logFormat: {:?} is not json or text",
                self.log_format
            ));
        }
        errors.extend(
            resource_problems(&self.resources)
                .into_iter()
                .map(|e| format!("resources.{e}")),
        );
        for (field, url) in [
            ("openai", &self.upstreams.openai),
            ("anthropic", &self.upstreams.anthropic),
        ] {
            if let Some(Err(e)) = url.as_deref().map(check_upstream) {
                errors.push(format!("upstreams.{field}: {e}"));
            }
        }
        errors
    }
}

pub fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Err(format!("{image:?} is not an image reference"));
    }
    Ok(())
}

/// Ports below 1024 need a capability the non-root sidecar does not have.
pub fn check_port(port: u16) -> Result<(), String> {
    if port < 1024 {
        return Err(format!("{port} is below 1024"));
    }
    Ok(())
}

pub fn check_workers(workers: u16) -> Result<(), String> {
    if !(1..=64).contains(&workers) {
        return Err(format!("{workers} is not between 1 and 64"));
    }
    Ok(())
}

/// An `http(s)://host[:port][/path]` URL, as the sidecar's upstream settings take.
pub fn check_upstream(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} names no host"));
    }
    Ok(())
}

/// Malformed quantities, and requests above their limit (which the API
/// server would reject the whole pod for).
pub fn resource_problems(resources: &Resources) -> Vec<String> {
    let mut errors = Vec::new();
    for (kind, amounts) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        for (name, amount) in amounts {
            if parse_quantity(amount).is_none_or(|v| v < 0.0) {
                errors.push(format!("{kind}.{name}: {amount:?} is not a quantity"));
            }
        }
    }
    for (name, request) in &resources.requests {
        let limit = resources.limits.get(name);
        if let (Some(r), Some(l)) = (
            parse_quantity(request),
            limit.and_then(|l| parse_quantity(l)),
        ) && r > l
        {
            errors.push(format!(
                "requests.{name}: {request} is above the limit {}",
                limit.map_or("", String::as_str)
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::InjectionConfig;

    #[test]
    fn a_partial_file_takes_the_defaults() {
        let config = InjectionConfig::from_json(r#"{"nativeSidecar": false, "proxyPort": 16080}"#)
            .expect("valid");
        assert!(!config.native_sidecar);
        assert_eq!(config.proxy_port, 16080);
        assert_eq!(config.admin_port, 15090);
        assert_eq!(config.image, super::DEFAULT_IMAGE);
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let errors = InjectionConfig::from_json(
            r#"{"image": "", "imagePullPolicy": "Sometimes", "proxyPort": 80, "adminPort": 80,
                "workers": 0, "logFormat": "xml",
                "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1", "memory": "lots"}},
                "upstreams": {"openai": "api.openai.com"}}"#,
        )
        .expect_err("invalid");
        assert_eq!(
            errors,
            [
                "image: \"\" is not an image reference",
                "imagePullPolicy: \"Sometimes\" is not Always, IfNotPresent or Never",
                "proxyPort: 80 is below 1024",
                "adminPort: 80 is below 1024",
                "adminPort: 80 is also the proxyPort",
                "workers: 0 is not between 1 and 64",
                "logFormat: \"xml\" is not json or text",
                "resources.limits.memory: \"lots\" is not a quantity",
                "resources.requests.cpu: 2 is above the limit 1",
                "upstreams.openai: \"api.openai.com\" is not an http:// or https:// URL",
            ]
        );
    }

    #[test]
    fn unknown_and_mistyped_fields_are_errors_with_their_path() {
        let errors = InjectionConfig::from_json(r#"{"proxyPrt": 1}"#).expect_err("unknown");
        assert!(
            errors[0].starts_with("proxyPrt: unknown field `proxyPrt`"),
            "{errors:?}"
        );
        let errors =
            InjectionConfig::from_json(r#"{"upstreams": {"openai": 5}}"#).expect_err("mistyped");
        assert!(
            errors[0].starts_with("upstreams.openai: invalid type"),
            "{errors:?}"
        );
    }
}
