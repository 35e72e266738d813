//! aiflags-sidecar: read settings, build the sidecar, run until SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use aiflags_sidecar::Format;
use aiflags_sidecar::Metrics;
use aiflags_sidecar::{Cli, Settings};
use aiflags_sidecar::{Env, Layered};
use aiflags_sidecar::{Sidecar, shutdown_signal};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A proxy allocates and frees small buffers and header maps on every
/// request; mimalloc's thread-local free lists do that with less work than
/// glibc's malloc (see docs/benchmark.md for the measured difference).
#[global_allocator]
static ALLOCATOR: aiflags_alloc::Mimalloc = aiflags_alloc::Mimalloc;

fn main() -> ExitCode {
    // The command line wins over the environment.
    let cli = Cli::parse();
    let settings = match Settings::from_source(&Layered(vec![&cli.args, &Env])) {
        Ok(settings) => settings,
        Err(e) => return fail(&e),
    };
    init_logging(settings.log_format);
    #[cfg(feature = "ablation")]
    if let Err(e) = aiflags_sidecar::init_ablation(&Layered(vec![&cli.args, &Env])) {
        return fail(&e);
    }
    let workers = settings.workers;
    // A sidecar gets a fraction of a core: one worker runs a current-thread runtime.
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
    let result = runtime.and_then(|runtime| runtime.block_on(serve(settings)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Serves until SIGTERM or ctrl-c, then drains.
async fn serve(settings: Settings) -> std::io::Result<()> {
    let drain = settings.drain_timeout;
    let metrics = Arc::new(Metrics::new().map_err(std::io::Error::other)?);
    let sidecar = Sidecar::start(settings, metrics).await?;
    shutdown_signal().await;
    tracing::info!(
        drain_ms = drain.as_millis(),
        "shutting down: draining in-flight requests"
    );
    sidecar.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

fn init_logging(format: Format) {
    let filter = EnvFilter::try_from_env("AIFLAGS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a pod they would
    // double the size of every line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        Format::Text => builder.init(),
        Format::Json => builder.json().init(),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("aiflags-sidecar: {error}");
    ExitCode::FAILURE
}
