//! Command-line and environment settings, parsed and validated without I/O.
//!
//! Every setting arrives as text (flag or `AIFLAGS_*` variable) and is checked
//! here, so one run reports every bad setting at once rather than the first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aiflags_api::duration::parse_duration_ms;
use clap::{Args, Parser};
use http::Uri;

#[derive(Parser, Debug)]
#[command(
    name = "aiflags-sidecar",
    version,
    about = "Per-pod LLM proxy applying aiflags config"
)]
pub struct Cli {
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// The proxy's settings as given; see [`ProxyArgs::validate`].
#[derive(Args, Debug, Clone)]
pub struct ProxyArgs {
    /// Data listener the application's SDKs talk to.
    #[arg(long, env = "AIFLAGS_LISTEN", default_value = "127.0.0.1:15080")]
    pub listen: String,
    /// Admin listener (/healthz, /readyz, /config, /metrics); the kubelet probes it.
    #[arg(long, env = "AIFLAGS_ADMIN_LISTEN", default_value = "0.0.0.0:15090")]
    pub admin_listen: String,
    /// Worker threads; 1 runs a single-threaded runtime.
    #[arg(long, env = "AIFLAGS_WORKERS", default_value = "1")]
    pub workers: String,
    /// The mounted compiled config (ConfigMap aiflags-config, key config.json).
    #[arg(long, env = "AIFLAGS_CONFIG_FILE")]
    pub config_file: Option<String>,
    /// Local mode: AIFeatureFlag YAML file or directory, compiled in the sidecar.
    #[arg(long, env = "AIFLAGS_FLAGS")]
    pub flags: Option<String>,
    /// Downward-API file of the pod's labels.
    #[arg(long, env = "AIFLAGS_POD_LABELS")]
    pub pod_labels: Option<String>,
    /// How often config sources are checked for changes.
    #[arg(long, env = "AIFLAGS_RELOAD_INTERVAL", default_value = "1s")]
    pub reload_interval: String,
    #[arg(
        long,
        env = "AIFLAGS_OPENAI_UPSTREAM",
        default_value = "https://api.openai.com"
    )]
    pub openai_upstream: String,
    #[arg(
        long,
        env = "AIFLAGS_ANTHROPIC_UPSTREAM",
        default_value = "https://api.anthropic.com"
    )]
    pub anthropic_upstream: String,
    /// The mounted Secret aiflags-credentials: one file per key.
    #[arg(long, env = "AIFLAGS_CREDENTIALS_DIR")]
    pub credentials_dir: Option<String>,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "AIFLAGS_MAX_BODY_BYTES", default_value = "33554432")]
    pub max_body_bytes: String,
    /// Grace period for in-flight requests after SIGTERM.
    #[arg(long, env = "AIFLAGS_DRAIN_TIMEOUT", default_value = "25s")]
    pub drain_timeout: String,
    /// Consecutive failures that open a target's circuit.
    #[arg(long, env = "AIFLAGS_BREAKER_THRESHOLD", default_value = "5")]
    pub breaker_threshold: String,
    /// How long an open circuit skips its target before one probe.
    #[arg(long, env = "AIFLAGS_BREAKER_COOLDOWN", default_value = "30s")]
    pub breaker_cooldown: String,
    /// text or json.
    #[arg(long, env = "AIFLAGS_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub workers: usize,
    pub source: ConfigSource,
    pub pod_labels: Option<PathBuf>,
    pub reload_interval: Duration,
    pub upstreams: Upstreams,
    pub credentials_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub drain_timeout: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The ConfigMap mounted as a volume.
    File(PathBuf),
    /// Local mode.
    Flags(PathBuf),
    /// No flags: everything passes through.
    None,
}

/// Default upstreams per protocol: origin plus optional path prefix.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub openai: Uri,
    pub anthropic: Uri,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings:\n  {}", .problems.join("\n  "))]
pub struct SettingsError {
    pub problems: Vec<String>,
}

impl ProxyArgs {
    pub fn validate(&self) -> Result<Settings, SettingsError> {
        let mut problems = Problems(Vec::new());
        let listen = problems.check("listen", "LISTEN", socket_addr(&self.listen));
        let admin_listen = problems.check(
            "admin-listen",
            "ADMIN_LISTEN",
            socket_addr(&self.admin_listen),
        );
        let workers = problems.check("workers", "WORKERS", bounded(&self.workers, 1, 64));
        let source = problems.check("config-file", "CONFIG_FILE", self.source());
        let reload_interval = problems.check(
            "reload-interval",
            "RELOAD_INTERVAL",
            duration(&self.reload_interval),
        );
        let openai = problems.check(
            "openai-upstream",
            "OPENAI_UPSTREAM",
            base_url(&self.openai_upstream),
        );
        let anthropic = problems.check(
            "anthropic-upstream",
            "ANTHROPIC_UPSTREAM",
            base_url(&self.anthropic_upstream),
        );
        let max_body_bytes = problems.check(
            "max-body-bytes",
            "MAX_BODY_BYTES",
            bounded(&self.max_body_bytes, 1024, 1 << 32),
        );
        let drain_timeout = problems.check(
            "drain-timeout",
            "DRAIN_TIMEOUT",
            duration(&self.drain_timeout),
        );
        let breaker_threshold = problems.check(
            "breaker-threshold",
            "BREAKER_THRESHOLD",
            bounded(&self.breaker_threshold, 1, 1_000_000),
        );
        let breaker_cooldown = problems.check(
            "breaker-cooldown",
            "BREAKER_COOLDOWN",
            duration(&self.breaker_cooldown),
        );
        let log_format = problems.check("log-format", "LOG_FORMAT", log_format(&self.log_format));
        let path = |p: &Option<String>| p.as_deref().map(PathBuf::from);
        match (
            listen,
            admin_listen,
            workers,
            source,
            reload_interval,
            openai,
            anthropic,
            max_body_bytes,
            drain_timeout,
            breaker_threshold,
            breaker_cooldown,
            log_format,
        ) {
            (
                Some(listen),
                Some(admin_listen),
                Some(workers),
                Some(source),
                Some(reload_interval),
                Some(openai),
                Some(anthropic),
                Some(max_body_bytes),
                Some(drain_timeout),
                Some(breaker_threshold),
                Some(breaker_cooldown),
                Some(log_format),
            ) if problems.0.is_empty() => Ok(Settings {
                listen,
                admin_listen,
                workers: workers as usize,
                source,
                pod_labels: path(&self.pod_labels),
                reload_interval,
                upstreams: Upstreams { openai, anthropic },
                credentials_dir: path(&self.credentials_dir),
                max_body_bytes: max_body_bytes as usize,
                drain_timeout,
                breaker_threshold: breaker_threshold as u32,
                breaker_cooldown,
                log_format,
            }),
            _ => Err(SettingsError {
                problems: problems.0,
            }),
        }
    }

    fn source(&self) -> Result<ConfigSource, String> {
        match (&self.config_file, &self.flags) {
            (Some(_), Some(_)) => Err("give either --config-file or --flags, not both".into()),
            (Some(file), None) if !file.is_empty() => Ok(ConfigSource::File(file.into())),
            (None, Some(flags)) if !flags.is_empty() => Ok(ConfigSource::Flags(flags.into())),
            (None, None) => Ok(ConfigSource::None),
            _ => Err("the path is empty".into()),
        }
    }
}

/// Problems found so far; `check` records one and keeps going.
struct Problems(Vec<String>);

impl Problems {
    fn check<T>(&mut self, name: &str, env: &str, result: Result<T, String>) -> Option<T> {
        result
            .map_err(|e| self.0.push(format!("--{name} (AIFLAGS_{env}): {e}")))
            .ok()
    }
}

pub fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address such as 127.0.0.1:15080"))
}

fn bounded(s: &str, min: u64, max: u64) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a whole number from {min} to {max}")),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration_ms(s).map(Duration::from_millis)
}

fn log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not text or json")),
    }
}

/// An `http(s)://host[:port][/prefix]` URL without query or fragment.
pub fn base_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|_| format!("{s:?} is not a URL such as https://api.openai.com"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.authority().is_none() || uri.query().is_some() {
        return Err(format!(
            "{s:?} must be an http:// or https:// URL with a host and no query"
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ProxyArgs {
        let mut argv = vec!["aiflags-sidecar"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.proxy,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_single_threaded() {
        let s = args(&[]).validate().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:15080");
        assert_eq!(s.admin_listen.to_string(), "0.0.0.0:15090");
        assert_eq!(s.workers, 1);
        assert_eq!(s.source, ConfigSource::None);
        assert_eq!(s.max_body_bytes, 32 << 20);
        assert_eq!(s.upstreams.anthropic.host(), Some("api.anthropic.com"));
    }

    #[test]
    fn every_bad_setting_is_reported_with_its_name() {
        let err = args(&[
            "--listen=nope",
            "--workers=0",
            "--openai-upstream=ftp://x",
            "--drain-timeout=soon",
            "--log-format=xml",
            "--config-file=a",
            "--flags=b",
        ])
        .validate()
        .unwrap_err();
        let text = err.to_string();
        for name in [
            "--listen",
            "--workers",
            "--openai-upstream",
            "--drain-timeout",
        ] {
            assert!(text.contains(name), "{text}");
        }
        assert!(
            text.contains("AIFLAGS_LOG_FORMAT") && text.contains("not both"),
            "{text}"
        );
        assert_eq!(err.problems.len(), 6);
    }

    #[test]
    fn local_mode_and_paths() {
        let s = args(&["--flags", "flags/", "--pod-labels", "/etc/podinfo/labels"])
            .validate()
            .unwrap();
        assert_eq!(s.source, ConfigSource::Flags("flags/".into()));
        assert_eq!(s.pod_labels, Some(PathBuf::from("/etc/podinfo/labels")));
    }
}
