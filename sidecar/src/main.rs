//! aiflags-sidecar: parse settings, build the proxy, run until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use aiflags_sidecar::metrics::Metrics;
use aiflags_sidecar::server::{Sidecar, shutdown_signal};
use aiflags_sidecar::settings::{Cli, LogFormat, Settings};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A proxy allocates and frees small buffers and header maps on every
/// request; mimalloc's thread-local free lists do that with less work than
/// glibc's malloc (see docs/benchmark.md for the measured difference).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match cli.proxy.validate() {
        Ok(settings) => settings,
        Err(e) => return fail(&e.to_string()),
    };
    init_logging(settings.log_format);
    run(settings.workers, serve(settings))
}

/// Serves until SIGTERM or ctrl-c, then drains.
async fn serve(settings: Settings) -> std::io::Result<()> {
    let drain = settings.drain_timeout;
    let metrics = Metrics::new().map_err(std::io::Error::other)?;
    let sidecar = Sidecar::start(settings, Arc::new(metrics)).await?;
    shutdown_signal().await;
    tracing::info!(
        drain_ms = drain.as_millis(),
        "shutting down: draining in-flight requests"
    );
    sidecar.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// A sidecar gets a fraction of a core: one worker runs a current-thread runtime.
fn run(workers: usize, main: impl Future<Output = std::io::Result<()>>) -> ExitCode {
    let runtime = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let result = match runtime {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("AIFLAGS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a pod they would
    // double the size of every access-log line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("aiflags-sidecar: {message}");
    ExitCode::FAILURE
}
