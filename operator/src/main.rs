//! aiflags-operator: `run` the controller (and the injection webhook),
//! print the CRD (`crdgen`), compile flags offline (`render`), or show what
//! the webhook would do to a pod (`inject`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use aiflags_operator::crdgen::crd_yaml;
use aiflags_operator::injection::InjectionOptions;
use aiflags_operator::leader::LeaseSettings;
use aiflags_operator::render::{read_sources, render};
use aiflags_operator::rollout::analysis::prometheus::{Prometheus, PrometheusSettings};
use aiflags_operator::run::{RunOptions, run};
use aiflags_operator::telemetry::{self, LogFormat};
use aiflags_operator::webhook::config::InjectionConfig;
use aiflags_operator::webhook::preview::{parse_labels, preview};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "aiflags-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile AIFeatureFlags into each namespace's aiflags-config ConfigMap.
    Run(Box<RunArgs>),
    /// Print the AIFeatureFlag CustomResourceDefinition as YAML.
    Crdgen,
    /// Compile AIFeatureFlag manifests offline and print the config JSON,
    /// or print every error and exit 1.
    Render {
        /// A manifest file, or a directory of *.yaml/*.yml files. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print a Pod manifest as the injection webhook would admit it, and what
    /// it would warn about; exit 1 if it would admit the pod without the sidecar
    /// for a reason the pod can fix.
    Inject {
        /// A Pod manifest (YAML or JSON); `-` reads stdin.
        #[arg(short = 'f', long = "filename")]
        path: PathBuf,
        /// The injection config (JSON), as the operator reads it.
        #[arg(long, env = "AIFLAGS_INJECTION_CONFIG")]
        injection_config: Option<PathBuf>,
        /// A label of the pod's namespace, key=value. Repeatable.
        #[arg(long = "namespace-label")]
        namespace_labels: Vec<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "AIFLAGS_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Log line format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "AIFLAGS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve the injection webhook (HTTPS, POST /mutate-pods) on this address.
    #[arg(long, env = "AIFLAGS_WEBHOOK_LISTEN")]
    webhook_listen: Option<SocketAddr>,
    /// Directory with the webhook's tls.crt and tls.key; reloaded when they change.
    #[arg(
        long,
        env = "AIFLAGS_WEBHOOK_CERT_DIR",
        default_value = "/etc/aiflags-operator/tls"
    )]
    webhook_cert_dir: PathBuf,
    /// The injection config (JSON; the chart renders it). Default: built-in defaults.
    #[arg(long, env = "AIFLAGS_INJECTION_CONFIG")]
    injection_config: Option<PathBuf>,
    /// Least time between two workload restarts offered for injection, cluster-wide.
    #[arg(long, env = "AIFLAGS_RESTART_SPACING", default_value = "30s", value_parser = parse_duration)]
    restart_spacing: Duration,
    /// Never restart workloads for injection, whatever their annotations say.
    #[arg(long, env = "AIFLAGS_DISABLE_RESTARTS")]
    disable_restarts: bool,
    #[command(flatten)]
    prometheus: PrometheusArgs,
    #[command(flatten)]
    election: ElectionArgs,
}

/// Where the rollout analysis queries the sidecars' metrics.
#[derive(clap::Args)]
struct PrometheusArgs {
    /// Prometheus' base URL, e.g. http://prometheus-operated.monitoring:9090.
    /// Without it, every analysis check is inconclusive and rollouts with
    /// `analysis` hold at their first step.
    #[arg(long, env = "AIFLAGS_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// A file holding a bearer token for Prometheus (read at every query).
    #[arg(long, env = "AIFLAGS_PROMETHEUS_TOKEN_FILE")]
    prometheus_token_file: Option<PathBuf>,
    /// PEM certificates to trust for an https:// Prometheus, besides the system's.
    #[arg(long, env = "AIFLAGS_PROMETHEUS_CA_FILE")]
    prometheus_ca_file: Option<PathBuf>,
    /// Longest wait for one query's answer.
    #[arg(long, env = "AIFLAGS_PROMETHEUS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    prometheus_timeout: Duration,
}

impl PrometheusArgs {
    fn settings(self) -> Option<PrometheusSettings> {
        let url = self.prometheus_url.filter(|u| !u.is_empty())?;
        Some(PrometheusSettings {
            url,
            token_file: self.prometheus_token_file,
            ca_file: self.prometheus_ca_file,
            timeout: self.prometheus_timeout,
        })
    }
}

/// Leader election among replicas (a coordination.k8s.io Lease).
#[derive(clap::Args)]
struct ElectionArgs {
    /// Elect a leader: only it reconciles, steps rollouts and writes;
    /// every replica serves the webhook.
    #[arg(long, env = "AIFLAGS_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease (the chart passes the operator's own).
    #[arg(
        long,
        env = "AIFLAGS_LEADER_ELECTION_NAMESPACE",
        default_value = "aiflags-system"
    )]
    leader_election_namespace: String,
    /// Name of the Lease.
    #[arg(
        long,
        env = "AIFLAGS_LEADER_ELECTION_LEASE",
        default_value = "aiflags-operator"
    )]
    leader_election_lease: String,
    /// This replica's identity in the Lease (the chart passes the pod's name).
    #[arg(long, env = "AIFLAGS_LEADER_ELECTION_IDENTITY")]
    leader_election_identity: Option<String>,
}

impl ElectionArgs {
    fn settings(self) -> Result<Option<LeaseSettings>, Vec<String>> {
        if !self.leader_election {
            return Ok(None);
        }
        let identity = match self.leader_election_identity.filter(|i| !i.is_empty()) {
            Some(identity) => identity,
            None => std::env::var("HOSTNAME").map_err(|_| {
                vec!["--leader-election-identity (AIFLAGS_LEADER_ELECTION_IDENTITY): needed when HOSTNAME is not set".to_string()]
            })?,
        };
        Ok(Some(LeaseSettings::new(
            self.leader_election_namespace,
            self.leader_election_lease,
            identity,
        )))
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    aiflags_api::duration::parse_duration_ms(text).map(Duration::from_millis)
}

fn injection_config(path: Option<&PathBuf>) -> Result<InjectionConfig, Vec<String>> {
    match path {
        Some(path) => InjectionConfig::load(path),
        None => Ok(InjectionConfig::default()),
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => {
            let RunArgs {
                metrics_listen,
                log_format,
                webhook_listen,
                webhook_cert_dir,
                injection_config: config_path,
                restart_spacing,
                disable_restarts,
                prometheus,
                election,
            } = *args;
            let config = match injection_config(config_path.as_ref()) {
                Ok(config) => config,
                Err(errors) => return fail(&errors),
            };
            let prometheus = match prometheus.settings().map(|s| Prometheus::new(&s)) {
                Some(Ok(prometheus)) => Some(prometheus),
                Some(Err(errors)) => return fail(&errors),
                None => None,
            };
            let leader_election = match election.settings() {
                Ok(settings) => settings,
                Err(errors) => return fail(&errors),
            };
            let options = RunOptions {
                metrics_listen,
                injection: InjectionOptions {
                    config,
                    webhook: webhook_listen.map(|listen| (listen, webhook_cert_dir)),
                    restart_spacing: (!disable_restarts).then_some(restart_spacing),
                },
                prometheus,
                leader_election,
            };
            run_controller(options, log_format)
        }
        Command::Inject {
            path,
            injection_config: config_path,
            namespace_labels,
        } => inject(&path, config_path.as_ref(), &namespace_labels),
        Command::Crdgen => match crd_yaml() {
            Ok(yaml) => print_stdout(&yaml),
            Err(error) => fail(&[format!("error: serializing the CRD: {error}")]),
        },
        Command::Render { paths } => {
            let (sources, mut errors) = read_sources(&paths);
            match render(&sources) {
                Ok(json) if errors.is_empty() => print_stdout(&format!("{json}\n")),
                Ok(_) => fail(&errors),
                Err(render_errors) => {
                    errors.extend(render_errors);
                    fail(&errors)
                }
            }
        }
    }
}

fn inject(path: &PathBuf, config_path: Option<&PathBuf>, namespace_labels: &[String]) -> ExitCode {
    let config = match injection_config(config_path) {
        Ok(config) => config,
        Err(errors) => return fail(&errors),
    };
    let labels = match parse_labels(namespace_labels) {
        Ok(labels) => labels,
        Err(errors) => return fail(&errors),
    };
    let manifest = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    let manifest = match manifest {
        Ok(text) => text,
        Err(error) => return fail(&[format!("error: reading {}: {error}", path.display())]),
    };
    match preview(&manifest, &labels, &config) {
        Ok(preview) => {
            let mut stderr = std::io::stderr().lock();
            for note in &preview.notes {
                let _ = writeln!(stderr, "{note}");
            }
            match serde_yaml::to_string(&preview.pod) {
                Ok(yaml) => print_stdout(&yaml),
                Err(error) => fail(&[format!("error: writing the pod: {error}")]),
            }
        }
        Err(problems) => {
            let mut lines =
                vec!["the webhook would admit this pod without the aiflags proxy:".to_string()];
            lines.extend(problems.into_iter().map(|p| format!("  {p}")));
            fail(&lines)
        }
    }
}

fn run_controller(options: RunOptions, log_format: LogFormat) -> ExitCode {
    if let Err(error) = telemetry::init(log_format) {
        return fail(&[format!("error: initialising logs: {error}")]);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&[format!("error: starting the runtime: {error}")]),
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "operator failed");
            ExitCode::FAILURE
        }
    }
}

fn print_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&[format!("error: writing to stdout: {error}")]),
    }
}

/// Prints each line to stderr and exits 1.
fn fail(lines: &[String]) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    for line in lines {
        let _ = writeln!(stderr, "{line}");
    }
    ExitCode::FAILURE
}
