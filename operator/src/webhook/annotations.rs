//! Per-pod overrides of the injection config, read from annotations under
//! `proxy.aiflags.dev/`. A bad one is reported by name, and the pod is then
//! admitted without the sidecar: injecting with a setting silently ignored
//! would be a surprise, and rejecting the pod would break a deploy.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::config::{
    InjectionConfig, Resources, check_image, check_port, check_upstream, check_workers,
    resource_problems,
};
use super::quantity::parse_quantity;

pub const ANNOTATION_PREFIX: &str = "proxy.aiflags.dev/";

/// The annotations this build reads, without the prefix.
pub const ANNOTATION_KEYS: [&str; 11] = [
    "image",
    "proxy-port",
    "admin-port",
    "workers",
    "cpu-request",
    "cpu-limit",
    "memory-request",
    "memory-limit",
    "openai-upstream",
    "anthropic-upstream",
    "override-base-url",
];

/// What one pod's sidecar gets: the config with its annotations applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySettings {
    pub image: String,
    pub proxy_port: u16,
    pub admin_port: u16,
    pub workers: u16,
    pub resources: Resources,
    pub openai_upstream: Option<String>,
    pub anthropic_upstream: Option<String>,
    /// Replace an `OPENAI_BASE_URL`/`ANTHROPIC_BASE_URL` the app sets itself.
    pub override_base_url: bool,
}

/// The settings for a pod with these annotations, or every problem with them.
pub fn proxy_settings(
    annotations: &BTreeMap<String, String>,
    config: &InjectionConfig,
) -> Result<ProxySettings, Vec<String>> {
    let mut settings = ProxySettings {
        image: config.image.clone(),
        proxy_port: config.proxy_port,
        admin_port: config.admin_port,
        workers: config.workers,
        resources: config.resources.clone(),
        openai_upstream: config.upstreams.openai.clone(),
        anthropic_upstream: config.upstreams.anthropic.clone(),
        override_base_url: false,
    };
    let mut errors = Vec::new();
    for (full_key, value) in annotations {
        let Some(key) = full_key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let applied = apply(&mut settings, key, value.trim());
        if let Err(problem) = applied {
            errors.push(format!("annotation {full_key}: {problem}"));
        }
    }
    if errors.is_empty() {
        if settings.proxy_port == settings.admin_port {
            errors.push(format!(
                "annotations: proxy port and admin port are both {}",
                settings.proxy_port
            ));
        }
        errors.extend(
            resource_problems(&settings.resources)
                .into_iter()
                .map(|e| format!("annotations: resources.{e}")),
        );
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

fn apply(settings: &mut ProxySettings, key: &str, value: &str) -> Result<(), String> {
    let mut amount = |kind: &str, resource: &str| {
        if parse_quantity(value).is_none_or(|v| v < 0.0) {
            return Err(format!("{value:?} is not a quantity (like 100m or 64Mi)"));
        }
        let amounts = match kind {
            "requests" => &mut settings.resources.requests,
            _ => &mut settings.resources.limits,
        };
        amounts.insert(resource.to_string(), value.to_string());
        Ok(())
    };
    match key {
        "image" => {
            check_image(value)?;
            settings.image = value.to_string();
            Ok(())
        }
        "proxy-port" => parse_port(value).map(|p| settings.proxy_port = p),
        "admin-port" => parse_port(value).map(|p| settings.admin_port = p),
        "workers" => {
            let workers = parse::<u16>(value, "a number of threads")?;
            check_workers(workers)?;
            settings.workers = workers;
            Ok(())
        }
        "cpu-request" => amount("requests", "cpu"),
        "cpu-limit" => amount("limits", "cpu"),
        "memory-request" => amount("requests", "memory"),
        "memory-limit" => amount("limits", "memory"),
        "openai-upstream" => {
            check_upstream(value)?;
            settings.openai_upstream = Some(value.to_string());
            Ok(())
        }
        "anthropic-upstream" => {
            check_upstream(value)?;
            settings.anthropic_upstream = Some(value.to_string());
            Ok(())
        }
        "override-base-url" => {
            settings.override_base_url = match value {
                "true" => true,
                "false" => false,
                other => return Err(format!("{other:?} is not \"true\" or \"false\"")),
            };
            Ok(())
        }
        unknown => Err(format!(
            "unknown setting {unknown:?} (known: {})",
            ANNOTATION_KEYS.join(", ")
        )),
    }
}

fn parse_port(value: &str) -> Result<u16, String> {
    let port = parse::<u16>(value, "a port number")?;
    check_port(port)?;
    Ok(port)
}

fn parse<T: FromStr>(value: &str, what: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not {what}"))
}
