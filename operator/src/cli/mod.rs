//! `kubectl-aiflags`, a kubectl plugin (`kubectl aiflags ...`) for
//! progressive rollouts: shows a flag's rollout, and gives the manual
//! commands by annotation, which the operator acts on and removes. It
//! talks to the API server with the user's kubeconfig, so it can do what
//! the user's RBAC allows: `get`/`watch` and `patch` on `aifeatureflags`.

pub mod view;

use std::io::Write;

use aiflags_api::AIFeatureFlag;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};

use self::view::RolloutView;
use crate::rollout::Command;
use crate::rollout::commands::{annotation, request_patch};

#[derive(clap::Parser, Debug)]
#[command(
    name = "kubectl-aiflags",
    version,
    about = "Progressive rollouts of AIFeatureFlags: show them, promote, abort, pause, resume"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: CliCommand,
    /// The flag's namespace. Default: the kubeconfig context's.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum CliCommand {
    /// Show a flag's rollout: status, steps, weights, analysis checks,
    /// proxies at revision and conditions.
    Get(Show),
    /// One line of status. With --watch, a line per change until the
    /// rollout completes (exit 0) or aborts (exit 1).
    Status(Show),
    /// Skip the remaining steps: the canary gets 100%.
    Promote(Target),
    /// Send all traffic back to the stable variant (canary 0%).
    Abort(Target),
    /// Hold the current step (analysis keeps running).
    Pause(Target),
    /// Go on after a pause; at a step without pause, go to the next step;
    /// after an abort, start again at step 1.
    Resume(Target),
}

#[derive(clap::Args, Debug)]
pub struct Show {
    /// The AIFeatureFlag.
    pub name: String,
    /// Keep showing it as it changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Output format instead of text.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

#[derive(clap::Args, Debug)]
pub struct Target {
    /// The AIFeatureFlag.
    pub name: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("aifeatureflag {name:?} not found in namespace {namespace:?}")]
    NotFound { name: String, namespace: String },
    #[error("{0}")]
    Refused(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("encoding the output: {0}")]
    Encode(String),
}

/// Runs one command; returns the exit code (1: `status --watch` ended
/// on an aborted rollout).
pub async fn run(
    cli: Cli,
    client: Client,
    default_namespace: &str,
    out: &mut impl Write,
) -> Result<u8, CliError> {
    let namespace = cli
        .namespace
        .unwrap_or_else(|| default_namespace.to_string());
    let api: Api<AIFeatureFlag> = Api::namespaced(client, &namespace);
    match cli.command {
        CliCommand::Get(show) => {
            show_flag(&api, &namespace, &show, out, |view, format| match format {
                None => Ok(view.render()),
                Some(format) => encode(view, format),
            })
            .await?;
            Ok(0)
        }
        CliCommand::Status(show) => {
            let last = show_flag(&api, &namespace, &show, out, |view, format| match format {
                None => Ok(format!("{}\n", view.summary())),
                Some(format) => encode(view, format),
            })
            .await?;
            Ok(u8::from(show.watch && last.state == "Aborted"))
        }
        CliCommand::Promote(t) => request(&api, &namespace, &t.name, Command::Promote, out).await,
        CliCommand::Abort(t) => request(&api, &namespace, &t.name, Command::Abort, out).await,
        CliCommand::Pause(t) => request(&api, &namespace, &t.name, Command::Pause, out).await,
        CliCommand::Resume(t) => request(&api, &namespace, &t.name, Command::Resume, out).await,
    }
}

/// Prints the flag (and, watching, every change of what is shown, until
/// the rollout settles); returns the last view.
async fn show_flag(
    api: &Api<AIFeatureFlag>,
    namespace: &str,
    show: &Show,
    out: &mut impl Write,
    format: impl Fn(&RolloutView, Option<Format>) -> Result<String, CliError>,
) -> Result<RolloutView, CliError> {
    let mut flag = fetch(api, namespace, &show.name).await?;
    let mut view = RolloutView::of(&flag);
    out.write_all(format(&view, show.output)?.as_bytes())?;
    out.flush()?;
    if !show.watch {
        return Ok(view);
    }
    let params = WatchParams::default()
        .fields(&format!("metadata.name={}", show.name))
        .timeout(290);
    while !view.settled() {
        let version = flag.resource_version().unwrap_or_default();
        let mut events = api.watch(&params, &version).await?.boxed();
        while let Some(event) = events.try_next().await? {
            match event {
                WatchEvent::Added(changed) | WatchEvent::Modified(changed) => {
                    flag = changed;
                    let next = RolloutView::of(&flag);
                    if next != view {
                        view = next;
                        out.write_all(b"\n")?;
                        out.write_all(format(&view, show.output)?.as_bytes())?;
                        out.flush()?;
                    }
                    if view.settled() {
                        return Ok(view);
                    }
                }
                WatchEvent::Deleted(_) => {
                    return Err(CliError::NotFound {
                        name: show.name.clone(),
                        namespace: namespace.to_string(),
                    });
                }
                WatchEvent::Bookmark(_) => {}
                // An expired version: read the flag again, watch from there.
                WatchEvent::Error(_) => {
                    flag = fetch(api, namespace, &show.name).await?;
                    break;
                }
            }
        }
    }
    Ok(view)
}

/// Gives `command` by annotation, after checking the flag has a rollout to control.
async fn request(
    api: &Api<AIFeatureFlag>,
    namespace: &str,
    name: &str,
    command: Command,
    out: &mut impl Write,
) -> Result<u8, CliError> {
    let flag = fetch(api, namespace, name).await?;
    let has_steps = flag
        .spec
        .rollout
        .as_ref()
        .is_some_and(|r| r.steps.is_some());
    if !has_steps {
        return Err(CliError::Refused(format!(
            "{namespace}/{name} has no rollout.steps: there is no rollout to {}",
            verb(command)
        )));
    }
    let value = Timestamp::now().to_string();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(request_patch(command, &value)),
    )
    .await?;
    writeln!(
        out,
        "{namespace}/{name}: {} requested ({}); the operator acts on it and removes the annotation",
        verb(command),
        annotation(command)
    )?;
    Ok(0)
}

async fn fetch(
    api: &Api<AIFeatureFlag>,
    namespace: &str,
    name: &str,
) -> Result<AIFeatureFlag, CliError> {
    api.get_opt(name).await?.ok_or_else(|| CliError::NotFound {
        name: name.to_string(),
        namespace: namespace.to_string(),
    })
}

fn verb(command: Command) -> &'static str {
    match command {
        Command::Promote => "promote",
        Command::Abort => "abort",
        Command::Pause => "pause",
        Command::Resume => "resume",
    }
}

fn encode(view: &RolloutView, format: Format) -> Result<String, CliError> {
    match format {
        Format::Json => serde_json::to_string(view)
            .map(|json| format!("{json}\n"))
            .map_err(|e| CliError::Encode(e.to_string())),
        Format::Yaml => serde_yaml::to_string(view)
            .map(|yaml| format!("---\n{yaml}"))
            .map_err(|e| CliError::Encode(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
