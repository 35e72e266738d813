//! `aiflags-dev demo`: the sidecar on the example flags in front of the
//! built-in upstream, driven by simulated users, on loopback only.
//!
//! Every variant's provider is replaced by the built-in upstream, so the demo
//! never sends a byte past this machine whatever the flags say. One model
//! (`claude-sonnet-4-5`) fails every fourth request, so the assistant flag's
//! fallback chain shows in the report.
//!
//! The terminal stays the person's: a progress line, then the report. The
//! sidecar's log, one access-log line per request included, goes to a file
//! the demo names (see [`screen`]).

mod report;
mod screen;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiflags_api::{Operation, SidecarConfig, compile_manifests, parse_manifests};
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::Semaphore;

use aiflags_sidecar::ConfigSource;
use aiflags_sidecar::Metrics;
use aiflags_sidecar::Settings;
use aiflags_sidecar::Sidecar;
use aiflags_sidecar::Sink;
use aiflags_sidecar::Upstreams;
use aiflags_sidecar::usage_from_response;
use aiflags_sidecar::{Args, Env, Layered, Source};

use crate::mock_upstream::{Behaviour, MockUpstream};
use crate::shutdown_signal;

pub use report::{Observed, Report, SplitRow};
use screen::Progress;
pub use screen::{default_log_file, init_logging};

/// The examples, built in so the demo runs from any directory.
const EXAMPLES: [(&str, &str); 3] = [
    (
        "examples/summarizer-split.yaml",
        include_str!("../../../examples/summarizer-split.yaml"),
    ),
    (
        "examples/support-canary.yaml",
        include_str!("../../../examples/support-canary.yaml"),
    ),
    (
        "examples/assistant-fallback.yaml",
        include_str!("../../../examples/assistant-fallback.yaml"),
    ),
];

/// Settings of `demo`; the proxy's own settings (listeners, `--flags`) apply too.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Requests to send.
    #[arg(long, default_value_t = 3000)]
    pub requests: u32,
    /// Distinct simulated users (each sticks to its variant).
    #[arg(long, default_value_t = 2000)]
    pub users: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u32,
    /// Print the report and exit instead of serving /metrics until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// Where the sidecar's log goes (its access log: one line per request),
    /// replaced on each run; the terminal shows only its warnings and errors.
    /// Default: aiflags-demo.log in the temp directory.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

impl DemoArgs {
    /// `--log-file`, or the default.
    pub fn log_path(&self) -> PathBuf {
        self.log_file.clone().unwrap_or_else(default_log_file)
    }
}

/// What simulated users ask for: (share in percent, requested model).
const TRAFFIC: [(u32, &str); 3] = [(50, "gpt-4o-mini"), (30, "gpt-4o"), (20, "gpt-4.1")];

/// Runs the demo; returns the report it printed.
pub async fn run(proxy: &Args, args: &DemoArgs) -> std::io::Result<Report> {
    let flags = Layered(vec![proxy, &Env]).get("AIFLAGS_FLAGS");
    let config = demo_config(flags.as_deref())?;
    let dir = std::env::temp_dir().join(format!("aiflags-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_json())?;

    let behaviour = Behaviour {
        latency: Duration::from_millis(20),
        failing_model: Some(("claude-sonnet-4-5".into(), 4)),
    };
    let mock = MockUpstream::start_with(([127, 0, 0, 1], 0).into(), behaviour).await?;
    // The demo's config replaces --flags: the sidecar reads the compiled file.
    let proxy = proxy.clone().set("AIFLAGS_FLAGS", "");
    let mut settings =
        Settings::from_source(&Layered(vec![&proxy, &Env])).map_err(std::io::Error::other)?;
    settings.source = ConfigSource::File(config_path);
    // The access log goes to the log file, not the screen.
    settings.access_log = Some(Sink::File(args.log_path()));
    let mock_uri: Uri = mock.url().parse().map_err(std::io::Error::other)?;
    settings.upstreams = Upstreams {
        openai: mock_uri.clone(),
        anthropic: mock_uri,
    };
    let metrics = Arc::new(Metrics::new().map_err(std::io::Error::other)?);
    let sidecar = Sidecar::start(settings, metrics).await?;

    eprintln!(
        "aiflags demo: {} requests from {} simulated users through the sidecar at http://{}\n\
         the sidecar's log (one access-log line per request): {}",
        args.requests,
        args.users,
        sidecar.addr,
        args.log_path().display()
    );
    let results = drive(sidecar.addr.to_string(), args).await;
    let report = Report::new(&config, &results);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report.render())?;
    if !args.exit {
        writeln!(
            out,
            "metrics: http://{}/metrics   config: http://{}/config   proxy: http://{}/v1\nCtrl-C to stop.",
            sidecar.admin_addr, sidecar.admin_addr, sidecar.addr
        )?;
        out.flush()?;
        drop(out);
        shutdown_signal().await;
    }
    sidecar.shutdown().await;
    mock.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// The flags to demo, compiled, with every provider replaced by the
/// built-in upstream.
fn demo_config(flags: Option<&str>) -> std::io::Result<SidecarConfig> {
    let sources: Vec<(String, String)> = match flags {
        None => EXAMPLES
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect(),
        Some(path) => read_yaml(Path::new(path))?,
    };
    let mut manifests = Vec::new();
    for (name, text) in &sources {
        let (found, errors) = parse_manifests(name, text);
        if let Some(e) = errors.first() {
            return Err(std::io::Error::other(e.to_string()));
        }
        manifests.extend(found);
    }
    let (mut config, errors) = compile_manifests(&manifests, None);
    if let Some(e) = errors.first() {
        return Err(std::io::Error::other(e.to_string()));
    }
    for flag in &mut config.flags {
        for variant in &mut std::sync::Arc::make_mut(flag).variants {
            variant.provider = None;
        }
    }
    Ok(SidecarConfig::new(None, config.flags))
}

fn read_yaml(path: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    files
        .into_iter()
        .map(|p| Ok((p.display().to_string(), std::fs::read_to_string(&p)?)))
        .collect()
}

/// Sends the requests, `concurrency` at a time, with a progress line on stderr.
async fn drive(addr: String, args: &DemoArgs) -> Vec<Observed> {
    let started = Instant::now();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1) as usize));
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut tasks = Vec::with_capacity(args.requests as usize);
    for _ in 0..args.requests {
        let user = rng.below(args.users.max(1));
        let pick = rng.below(100);
        let model = pick_model(pick);
        // One user in twenty works for the beta tenant the summarizer targets.
        let targeted = model == "gpt-4o-mini" && user.is_multiple_of(20);
        let (client, addr, permits) = (client.clone(), addr.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            one_request(&client, &addr, user, model, targeted).await
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    let progress = Progress::new(tasks.len());
    for (done, task) in tasks.into_iter().enumerate() {
        if let Ok(observed) = task.await {
            results.push(observed);
        }
        progress.update(done + 1);
    }
    progress.finish(results.len(), started.elapsed());
    results
}

fn pick_model(percent: u32) -> &'static str {
    let mut cumulative = 0;
    for (share, model) in TRAFFIC {
        cumulative += share;
        if percent < cumulative {
            return model;
        }
    }
    TRAFFIC[0].1
}

async fn one_request(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: &str,
    user: u32,
    model: &str,
    targeted: bool,
) -> Observed {
    let user_id = format!("user-{user}");
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "Summarise this ticket in one line."}],
        "user": user_id,
    });
    let mut request = Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer demo-key-not-sent-anywhere")
        .header("x-user-id", &user_id);
    if targeted {
        request = request.header("x-tenant", "beta-corp");
    }
    let started = Instant::now();
    let mut observed = Observed {
        targeted,
        ..Observed::default()
    };
    let Ok(request) = request.body(Full::new(Bytes::from(body.to_string()))) else {
        return observed;
    };
    let Ok(response) = client.request(request).await else {
        return observed;
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    observed.status = response.status().as_u16();
    observed.flag = header("x-aiflags-flag");
    observed.variant = header("x-aiflags-variant");
    observed.model = header("x-aiflags-model");
    observed.attempts = header("x-aiflags-attempts").parse().unwrap_or(0);
    if let Ok(body) = response.into_body().collect().await
        && let Ok(json) = serde_json::from_slice(&body.to_bytes())
    {
        observed.usage = usage_from_response(Operation::Chat, &json);
    }
    observed.latency = started.elapsed();
    observed
}

/// A small deterministic generator: the same run sends the same traffic.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}
