//! The real `aiflags-sidecar` binary as a child process, on ports the kernel
//! picks: the listening line of its JSON log says where it ended up.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;

use crate::support::{Reply, TestClient, eventually, within};

/// A running sidecar process; killed when dropped.
pub struct SidecarProcess {
    child: Child,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub client: TestClient,
    log: Arc<Mutex<Vec<String>>>,
}

pub struct SidecarCommand {
    command: Command,
}

impl SidecarProcess {
    /// `aiflags-sidecar --flags <flags>` with both upstreams at `upstream`.
    pub fn flags(flags: &Path, upstream: &str) -> SidecarCommand {
        let mut command = Command::new(env!("CARGO_BIN_EXE_aiflags-sidecar"));
        command
            .arg("--listen=127.0.0.1:0")
            .arg("--admin-listen=127.0.0.1:0")
            .arg("--log-format=json")
            .arg(format!("--flags={}", flags.display()))
            .arg(format!("--openai-upstream={upstream}"))
            .arg(format!("--anthropic-upstream={upstream}"))
            // The test decides the whole environment, not the machine it runs
            // on: no stray `AIFLAGS_*` setting, no `SSL_CERT_*` trust.
            .env_clear()
            .env("AIFLAGS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        SidecarCommand { command }
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub async fn admin(&self, path: &str) -> Reply {
        let url = format!("http://{}{path}", self.admin_addr);
        self.client
            .send(Request::get(url).body(Full::new(Bytes::new())).unwrap())
            .await
    }
}

impl SidecarCommand {
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    /// Spawns the binary and waits until it listens and `/readyz` says a
    /// config is loaded.
    pub async fn start(mut self) -> SidecarProcess {
        let mut child = self.command.spawn().expect("spawn aiflags-sidecar");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (listening, addrs) = tokio::sync::oneshot::channel();
        let lines = log.clone();
        // Drains stderr for the whole life of the process: a full pipe would
        // block the sidecar's access log.
        std::thread::spawn(move || {
            let mut listening = Some(listening);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addrs) = listening_addrs(&line)
                    && let Some(tx) = listening.take()
                {
                    let _ = tx.send(addrs);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let (addr, admin_addr) = match within("the sidecar to listen", addrs).await {
            Ok(addrs) => addrs,
            Err(_) => panic!(
                "aiflags-sidecar exited before listening ({:?}):\n{}",
                child.wait(),
                log.lock().unwrap().join("\n")
            ),
        };
        let process = SidecarProcess {
            child,
            addr,
            admin_addr,
            client: TestClient::new(addr),
            log,
        };
        eventually("/readyz", || async {
            process.admin("/readyz").await.status == 200
        })
        .await;
        process
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `addr` and `admin_addr` from the JSON log line "aiflags sidecar listening".
fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let event: Value = serde_json::from_str(line).ok()?;
    let fields = event.get("fields")?;
    if fields.get("message")?.as_str()? != "aiflags sidecar listening" {
        return None;
    }
    let addr = |name: &str| fields.get(name)?.as_str()?.parse().ok();
    Some((addr("addr")?, addr("admin_addr")?))
}
