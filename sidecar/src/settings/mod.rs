//! The sidecar's settings, parsed and validated without I/O.
//!
//! Every setting is one entry of [`SETTINGS`]: an `AIFLAGS_*` variable and a
//! `--flag`. They arrive as text through a [`source::Source`] and are all
//! checked here, so one run reports every bad setting at once.

pub(crate) mod source;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aiflags_api::duration::parse_duration_ms;
use clap::Parser;
use http::HeaderName;

use self::source::{Args, Source};
use crate::config::source::ConfigSource;
use crate::telemetry::access_log::{Format, Sink};
use crate::upstream::target::{Upstreams, base_url};

/// One setting: its variable, its flag, its default and what it does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setting {
    pub env: &'static str,
    pub flag: &'static str,
    pub value: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

const fn setting(
    env: &'static str,
    flag: &'static str,
    value: &'static str,
    default: Option<&'static str>,
    help: &'static str,
) -> Setting {
    Setting {
        env,
        flag,
        value,
        default,
        help,
    }
}

/// Every setting the sidecar reads.
#[rustfmt::skip]
pub(crate) const SETTINGS: &[Setting] = &[
    setting("AIFLAGS_LISTEN", "listen", "ADDR", Some("127.0.0.1:15080"),
        "Data listener the application's SDKs talk to"),
    setting("AIFLAGS_ADMIN_LISTEN", "admin-listen", "ADDR", Some("0.0.0.0:15090"),
        "Admin listener: /healthz, /readyz, /config, /metrics"),
    setting("AIFLAGS_WORKERS", "workers", "N", Some("1"),
        "Worker threads; 1 runs a single-threaded runtime"),
    setting("AIFLAGS_CONFIG_FILE", "config-file", "PATH", None,
        "The mounted compiled config (ConfigMap aiflags-config, key config.json or config.json.gz)"),
    setting("AIFLAGS_FLAGS", "flags", "PATH", None,
        "Local mode: AIFeatureFlag YAML file or directory, compiled in the sidecar"),
    setting("AIFLAGS_WATCH_CONFIG_MAP", "watch-config-map", "NAME", None,
        "Watch this ConfigMap through the Kubernetes API (seconds); the mounted --config-file is the fallback"),
    setting("AIFLAGS_NAMESPACE", "namespace", "NAME", None,
        "Namespace of the watched ConfigMap (default: the service account's)"),
    setting("AIFLAGS_KUBE_API_URL", "kube-api-url", "URL", None,
        "Kubernetes API server for the watch (default: the in-cluster config)"),
    setting("AIFLAGS_POD_LABELS", "pod-labels", "PATH", None,
        "Downward-API file of the pod's labels"),
    setting("AIFLAGS_RELOAD_INTERVAL", "reload-interval", "DURATION", Some("1s"),
        "How often config files are checked for changes"),
    setting("AIFLAGS_OPENAI_UPSTREAM", "openai-upstream", "URL", Some("https://api.openai.com"),
        "Default upstream of OpenAI-protocol requests"),
    setting("AIFLAGS_ANTHROPIC_UPSTREAM", "anthropic-upstream", "URL", Some("https://api.anthropic.com"),
        "Default upstream of Anthropic /v1/messages requests"),
    setting("AIFLAGS_CREDENTIALS_DIR", "credentials-dir", "PATH", None,
        "The mounted Secret aiflags-credentials: one file per key"),
    setting("AIFLAGS_CREDENTIAL_HEADERS", "credential-headers", "NAMES", None,
        "More headers (comma-separated) that carry credentials: they reach only the origin the app addressed"),
    setting("AIFLAGS_MAX_BODY_BYTES", "max-body-bytes", "BYTES", Some("33554432"),
        "Largest request body accepted (decoded, too); larger ones get 413"),
    setting("AIFLAGS_MAX_RESPONSE_BYTES", "max-response-bytes", "BYTES", Some("33554432"),
        "Largest non-streamed response held to read it; past it the attempt fails with a clear error"),
    setting("AIFLAGS_BUFFER_BUDGET_BYTES", "buffer-budget-bytes", "BYTES", Some("268435456"),
        "Bytes of request and response bodies held in memory at once, process-wide; past it requests get 503"),
    setting("AIFLAGS_MAX_CONNECTIONS", "max-connections", "N", Some("4096"),
        "Open client connections on the data listener; past it new ones are refused"),
    setting("AIFLAGS_ADMIN_MAX_CONNECTIONS", "admin-max-connections", "N", Some("64"),
        "Open connections on the admin listener, counted apart from the data listener's"),
    setting("AIFLAGS_FIRST_BYTE_TIMEOUT", "first-byte-timeout", "DURATION", Some("10s"),
        "A new connection must send its first byte within this"),
    setting("AIFLAGS_IDLE_TIMEOUT", "idle-timeout", "DURATION", Some("90s"),
        "A connection with no request in flight is closed after this"),
    setting("AIFLAGS_BODY_IDLE_TIMEOUT", "body-idle-timeout", "DURATION", Some("5m"),
        "A passed-through body (either way) may go this long without a byte"),
    setting("AIFLAGS_DRAIN_TIMEOUT", "drain-timeout", "DURATION", Some("25s"),
        "Grace period for in-flight requests after SIGTERM"),
    setting("AIFLAGS_BREAKER_THRESHOLD", "breaker-threshold", "N", Some("5"),
        "Consecutive failures that open a target's circuit"),
    setting("AIFLAGS_BREAKER_COOLDOWN", "breaker-cooldown", "DURATION", Some("30s"),
        "How long an open circuit skips its target before one probe"),
    setting("AIFLAGS_LOG_FORMAT", "log-format", "FORMAT", Some("text"),
        "text or json"),
    setting("AIFLAGS_ACCESS_LOG", "access-log", "SINK", Some("stderr"),
        "Where access-log lines go: stderr, off, or a file path"),
];

#[derive(Parser, Debug)]
#[command(
    name = "aiflags-sidecar",
    version,
    about = "Per-pod LLM proxy applying aiflags config"
)]
pub struct Cli {
    #[command(flatten)]
    pub args: Args,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub workers: usize,
    pub source: ConfigSource,
    pub pod_labels: Option<PathBuf>,
    /// The ConfigMap to watch: (name, namespace if given, API URL if given).
    pub watch: Option<WatchSettings>,
    pub reload_interval: Duration,
    pub upstreams: Upstreams,
    pub credentials_dir: Option<PathBuf>,
    pub credential_headers: Vec<HeaderName>,
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    pub buffer_budget_bytes: usize,
    pub max_connections: usize,
    pub admin_max_connections: usize,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub log_format: Format,
    /// `None`: the access log is off.
    pub access_log: Option<Sink>,
}

/// The Kubernetes watch of the compiled config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSettings {
    pub config_map: String,
    /// `None`: the service account's namespace.
    pub namespace: Option<String>,
    /// `None`: the in-cluster config.
    pub api_url: Option<http::Uri>,
}

/// Every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings:\n  {}", .problems.join("\n  "))]
pub struct SettingsError {
    pub problems: Vec<String>,
}

/// Reads settings one by one, recording every problem and carrying on.
struct Reader<'a> {
    source: &'a dyn Source,
    problems: Vec<String>,
}

impl Reader<'_> {
    /// The setting's text, or its default.
    fn text(&self, env: &str) -> Option<String> {
        self.source.get(env).or_else(|| {
            SETTINGS
                .iter()
                .find(|s| s.env == env)?
                .default
                .map(str::to_string)
        })
    }

    fn parse<T>(
        &mut self,
        env: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
        fallback: T,
    ) -> T {
        let Some(text) = self.text(env) else {
            return fallback;
        };
        match parse(&text) {
            Ok(value) => value,
            Err(e) => {
                let flag = SETTINGS
                    .iter()
                    .find(|s| s.env == env)
                    .map_or("", |s| s.flag);
                self.problems.push(format!("--{flag} ({env}): {e}"));
                fallback
            }
        }
    }

    fn path(&self, env: &str) -> Option<PathBuf> {
        self.text(env).filter(|p| !p.is_empty()).map(PathBuf::from)
    }
}

impl Settings {
    /// Parses every setting from `source`, reporting every problem.
    pub fn from_source(source: &dyn Source) -> Result<Settings, SettingsError> {
        let mut r = Reader {
            source,
            problems: Vec::new(),
        };
        let any_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let default_url = http::Uri::from_static("https://localhost");
        let settings = Settings {
            listen: r.parse("AIFLAGS_LISTEN", socket_addr, any_addr),
            admin_listen: r.parse("AIFLAGS_ADMIN_LISTEN", socket_addr, any_addr),
            workers: r.parse("AIFLAGS_WORKERS", |s| bounded(s, 1, 64), 1) as usize,
            source: config_source(&mut r),
            pod_labels: r.path("AIFLAGS_POD_LABELS"),
            watch: watch_settings(&mut r),
            reload_interval: r.parse(
                "AIFLAGS_RELOAD_INTERVAL",
                positive_duration,
                Duration::from_secs(1),
            ),
            upstreams: Upstreams {
                openai: r.parse("AIFLAGS_OPENAI_UPSTREAM", base_url, default_url.clone()),
                anthropic: r.parse("AIFLAGS_ANTHROPIC_UPSTREAM", base_url, default_url),
            },
            credentials_dir: r.path("AIFLAGS_CREDENTIALS_DIR"),
            credential_headers: r.parse("AIFLAGS_CREDENTIAL_HEADERS", header_names, Vec::new()),
            max_body_bytes: r.parse("AIFLAGS_MAX_BODY_BYTES", |s| bounded(s, 1024, 1 << 32), 0)
                as usize,
            max_response_bytes: r.parse(
                "AIFLAGS_MAX_RESPONSE_BYTES",
                |s| bounded(s, 1024, 1 << 32),
                0,
            ) as usize,
            buffer_budget_bytes: r.parse(
                "AIFLAGS_BUFFER_BUDGET_BYTES",
                |s| bounded(s, 1 << 20, 1 << 40),
                0,
            ) as usize,
            max_connections: r.parse("AIFLAGS_MAX_CONNECTIONS", |s| bounded(s, 1, 1_000_000), 1)
                as usize,
            admin_max_connections: r.parse(
                "AIFLAGS_ADMIN_MAX_CONNECTIONS",
                |s| bounded(s, 1, 10_000),
                1,
            ) as usize,
            first_byte_timeout: r.parse(
                "AIFLAGS_FIRST_BYTE_TIMEOUT",
                positive_duration,
                Duration::from_secs(10),
            ),
            idle_timeout: r.parse(
                "AIFLAGS_IDLE_TIMEOUT",
                positive_duration,
                Duration::from_secs(90),
            ),
            body_idle_timeout: r.parse(
                "AIFLAGS_BODY_IDLE_TIMEOUT",
                positive_duration,
                Duration::from_secs(300),
            ),
            drain_timeout: r.parse("AIFLAGS_DRAIN_TIMEOUT", duration, Duration::from_secs(25)),
            breaker_threshold: r.parse("AIFLAGS_BREAKER_THRESHOLD", |s| bounded(s, 1, 1_000_000), 5)
                as u32,
            breaker_cooldown: r.parse(
                "AIFLAGS_BREAKER_COOLDOWN",
                duration,
                Duration::from_secs(30),
            ),
            log_format: r.parse("AIFLAGS_LOG_FORMAT", log_format, Format::Text),
            access_log: r.parse("AIFLAGS_ACCESS_LOG", access_log, None),
        };
        if r.problems.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError {
                problems: r.problems,
            })
        }
    }
}

fn config_source(r: &mut Reader<'_>) -> ConfigSource {
    match (r.path("AIFLAGS_CONFIG_FILE"), r.path("AIFLAGS_FLAGS")) {
        (Some(_), Some(_)) => {
            r.problems
                .push("--config-file (AIFLAGS_CONFIG_FILE) and --flags (AIFLAGS_FLAGS): give one, not both".into());
            ConfigSource::None
        }
        (Some(file), None) => ConfigSource::File(file),
        (None, Some(flags)) => ConfigSource::Flags(flags),
        (None, None) => ConfigSource::None,
    }
}

fn watch_settings(r: &mut Reader<'_>) -> Option<WatchSettings> {
    let config_map = r
        .text("AIFLAGS_WATCH_CONFIG_MAP")
        .filter(|n| !n.is_empty())?;
    let api_url = r.parse("AIFLAGS_KUBE_API_URL", |s| base_url(s).map(Some), None);
    let namespace = r.text("AIFLAGS_NAMESPACE").filter(|n| !n.is_empty());
    Some(WatchSettings {
        config_map,
        namespace,
        api_url,
    })
}

pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address such as 127.0.0.1:15080"))
}

fn bounded(s: &str, min: u64, max: u64) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a whole number from {min} to {max}")),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration_ms(s).map(Duration::from_millis)
}

/// A timeout or interval that cannot be zero: `0s` would close every
/// connection at once, or spin a reload loop.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err(format!("{s:?} must be longer than zero")),
        d => Ok(d),
    }
}

fn log_format(s: &str) -> Result<Format, String> {
    match s {
        "text" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        _ => Err(format!("{s:?} is not text or json")),
    }
}

fn access_log(s: &str) -> Result<Option<Sink>, String> {
    match s {
        "off" => Ok(None),
        "stderr" => Ok(Some(Sink::Stderr)),
        "" => Err("give stderr, off, or a file path".into()),
        path => Ok(Some(Sink::File(PathBuf::from(path)))),
    }
}

fn header_names(s: &str) -> Result<Vec<HeaderName>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            HeaderName::try_from(name.to_ascii_lowercase())
                .map_err(|_| format!("{name:?} is not a header name"))
        })
        .collect()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
