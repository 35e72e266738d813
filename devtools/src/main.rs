//! aiflags-dev: the mock upstream and the demo, for people and tests.

use std::net::SocketAddr;
use std::process::ExitCode;

use aiflags_devtools::demo::{self, DemoArgs};
use aiflags_devtools::rollout_harness::{self, RolloutArgs};
use aiflags_sidecar::Args;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The sidecar's allocator, so the bare proxy's floor is measured on the
/// same footing (the mock upstream and the demo do not care).
#[global_allocator]
static ALLOCATOR: aiflags_alloc::Mimalloc = aiflags_alloc::Mimalloc;

#[derive(Parser, Debug)]
#[command(
    name = "aiflags-dev",
    version,
    about = "Development tools for aiflags: a mock LLM upstream and the demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A deterministic OpenAI/Anthropic-compatible upstream; the model name
    /// picks its behaviour (mock-error-500, mock-429, mock-slow-stream, ...).
    MockUpstream {
        #[arg(long, default_value = "127.0.0.1:15081")]
        listen: SocketAddr,
    },
    /// The sidecar on the example flags (or --flags) in front of the mock
    /// upstream, driven by simulated users; prints the observed split,
    /// fallbacks, latency, tokens and cost, then serves /metrics until Ctrl-C.
    Demo(Box<DemoCommand>),
    /// The operator's part in one flag's progressive rollout without a
    /// Kubernetes API server: asks the sidecars which revision they serve,
    /// analyses the canary in Prometheus, steps, and writes their config
    /// file; prints every decision as a JSON line.
    Rollout(RolloutArgs),
    /// A reverse proxy on the sidecar's stack that only forwards: the
    /// benchmark's floor for what hyper and tokio cost per request.
    BareProxy {
        #[arg(long, default_value = "127.0.0.1:15082")]
        listen: SocketAddr,
        /// Where every request goes, `http://host:port`.
        #[arg(long)]
        upstream: http::Uri,
    },
    /// HTTP/1.1 forwarding without hyper (`httparse` and byte copies,
    /// `Content-Length` bodies only): what an HTTP layer of the sidecar's
    /// own could cost, for the benchmark's budget. Not a proxy to use.
    RawProxy {
        #[arg(long, default_value = "127.0.0.1:15083")]
        listen: SocketAddr,
        /// Where every request goes, `http://host:port`.
        #[arg(long)]
        upstream: http::Uri,
        /// CPU to spend on each request before forwarding it, in
        /// nanoseconds: a stand-in for a proxy's own work on this layer.
        #[arg(long, default_value_t = 0)]
        work_ns: u64,
    },
}

#[derive(clap::Args, Debug)]
struct DemoCommand {
    /// The sidecar's own settings (`--listen`, `--admin-listen`, `--flags`, ...).
    #[command(flatten)]
    proxy: Args,
    #[command(flatten)]
    demo: DemoArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        // The demo keeps the terminal for the person: the sidecar's log goes
        // to a file.
        Command::Demo(args) => {
            if let Err(e) = demo::init_logging(&args.demo.log_path()) {
                return fail(&e);
            }
        }
        Command::MockUpstream { .. }
        | Command::Rollout(_)
        | Command::BareProxy { .. }
        | Command::RawProxy { .. } => {
            let filter =
                EnvFilter::try_from_env("AIFLAGS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::MockUpstream { listen } => aiflags_devtools::mock_upstream::run(listen).await,
            Command::Demo(args) => demo::run(&args.proxy, &args.demo).await.map(|_| ()),
            Command::BareProxy { listen, upstream } => {
                aiflags_devtools::bare_proxy::run(listen, upstream).await
            }
            Command::RawProxy {
                listen,
                upstream,
                work_ns,
            } => {
                aiflags_devtools::raw_proxy::run(
                    listen,
                    upstream,
                    std::time::Duration::from_nanos(work_ns),
                )
                .await
            }
            Command::Rollout(args) => rollout_harness::run(args)
                .await
                .map_err(std::io::Error::other),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("aiflags-dev: {error}");
    ExitCode::FAILURE
}
