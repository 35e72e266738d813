//! `kubectl-aiflags`: install it on the PATH and run `kubectl aiflags ...`.

use std::io::Write;
use std::process::ExitCode;

use aiflags_operator::cli::{Cli, run};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("starting the runtime: {error}")),
    };
    runtime.block_on(async {
        let config = match kube::Config::infer().await {
            Ok(config) => config,
            Err(error) => return fail(&format!("reading the kubeconfig: {error}")),
        };
        let namespace = config.default_namespace.clone();
        let client = match kube::Client::try_from(config) {
            Ok(client) => client,
            Err(error) => return fail(&format!("connecting to the Kubernetes API: {error}")),
        };
        let mut stdout = std::io::stdout().lock();
        match run(cli, client, &namespace, &mut stdout).await {
            Ok(code) => ExitCode::from(code),
            Err(error) => fail(&error.to_string()),
        }
    })
}

fn fail(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {message}");
    ExitCode::FAILURE
}
