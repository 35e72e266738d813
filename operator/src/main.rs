//! aiflags-operator: `run` the controller, print the CRD (`crdgen`), or
//! compile flags offline (`render`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use aiflags_operator::crdgen::crd_yaml;
use aiflags_operator::render::{read_sources, render};
use aiflags_operator::run::{RunOptions, run};
use aiflags_operator::telemetry::{self, LogFormat};
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
    Run {
        /// Address of the /metrics, /healthz and /readyz endpoint.
        #[arg(long, env = "AIFLAGS_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
        metrics_listen: SocketAddr,
        /// Log line format; the level comes from RUST_LOG (default info).
        #[arg(long, env = "AIFLAGS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print the AIFeatureFlag CustomResourceDefinition as YAML.
    Crdgen,
    /// Compile AIFeatureFlag manifests offline and print the config JSON,
    /// or print every error and exit 1.
    Render {
        /// A manifest file, or a directory of *.yaml/*.yml files. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            metrics_listen,
            log_format,
        } => run_controller(metrics_listen, log_format),
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

fn run_controller(metrics_listen: SocketAddr, log_format: LogFormat) -> ExitCode {
    if let Err(error) = telemetry::init(log_format) {
        return fail(&[format!("error: initialising logs: {error}")]);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&[format!("error: starting the runtime: {error}")]),
    };
    match runtime.block_on(run(RunOptions { metrics_listen })) {
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
