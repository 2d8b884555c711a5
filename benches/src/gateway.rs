//! The gateway under test: a `pairgate run --config FILE` child process (killed on drop), or a
//! gateway that is already running.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::client::one_shot;

/// How long the gateway may take to report its listeners and then to become ready.
const START_WAIT: Duration = Duration::from_secs(60);

/// Where the gateway is and how to reach its admin API.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Data-plane address.
    pub addr: SocketAddr,
    /// Admin API address.
    pub admin: Option<SocketAddr>,
    /// Bearer token for `/v1`.
    pub token: String,
    /// The process id, when it runs on this machine and we know it.
    pub pid: Option<u32>,
}

/// A gateway child process.
pub struct GatewayProcess {
    child: Child,
    /// How to reach it.
    pub endpoint: Endpoint,
    stderr: Arc<Mutex<String>>,
}

/// How to start the gateway.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `pairgate` binary.
    pub bin: PathBuf,
    /// Run it under `taskset -c CPUS`.
    pub cpus: Option<String>,
    /// Keep the per-request access log (off by default: it is a stderr line per request and
    /// nginx and HAProxy are benchmarked without theirs).
    pub access_log: bool,
    /// The admin token passed in `PAIRGATE_ADMIN_TOKEN`.
    pub token: String,
}

impl GatewayProcess {
    /// Writes `config` to `path`, starts the gateway and waits until `/readyz` says ready
    /// (the first probe round is done).
    pub async fn start(launch: &Launch, path: &Path, config: &str) -> anyhow::Result<Self> {
        std::fs::write(path, config).with_context(|| format!("writing {}", path.display()))?;
        let mut cmd = match &launch.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&launch.bin);
                c
            }
            None => Command::new(&launch.bin),
        };
        cmd.arg("run")
            .arg("--config")
            .arg(path)
            .env("PAIRGATE_ADMIN_TOKEN", &launch.token)
            .env(
                "RUST_LOG",
                if launch.access_log {
                    "info"
                } else {
                    "info,pairgate::access=off"
                },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", launch.bin.display()))?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let collected = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&collected);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("pairgate serving")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send((field(&line, "listen="), field(&line, "admin=")));
                }
                if let Ok(mut s) = sink.lock() {
                    // Keep the start and any warnings, not an unbounded log.
                    if s.len() < 256 * 1024 {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            }
        });
        let got = tokio::task::spawn_blocking(move || rx.recv_timeout(START_WAIT)).await?;
        let Ok((Some(addr), admin)) = got else {
            let _ = child.kill();
            let _ = child.wait();
            let log = collected.lock().map(|s| s.clone()).unwrap_or_default();
            bail!("pairgate did not report its listeners; stderr:\n{log}");
        };
        let endpoint = Endpoint {
            addr,
            admin,
            token: launch.token.clone(),
            pid: Some(child.id()),
        };
        let gw = GatewayProcess {
            child,
            endpoint,
            stderr: collected,
        };
        gw.endpoint.wait_ready().await?;
        Ok(gw)
    }

    /// What the process wrote to stderr (the first 256 KiB).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `listen=127.0.0.1:1234` (possibly quoted) from a log line.
fn field(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|a| a.trim_matches(|c| c == '"' || c == ',').parse().ok())
}

impl Endpoint {
    /// Polls `/readyz` on the admin API (or the data plane's TCP port when there is no admin
    /// address) until it is ready, for at most a minute.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_WAIT;
        loop {
            let ready = match self.admin {
                Some(admin) => one_shot(admin, "GET", "/readyz", &[], b"", Duration::from_secs(2))
                    .await
                    .is_ok_and(|(status, _)| status == 200),
                None => tokio::net::TcpStream::connect(self.addr).await.is_ok(),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("gateway not ready within {START_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An admin call with the bearer token: status and body.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let admin = self.admin.context("no admin address (use --admin)")?;
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("Authorization", auth.as_str())];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        let (status, raw) = one_shot(
            admin,
            method,
            path,
            &headers,
            body.as_bytes(),
            Duration::from_secs(5),
        )
        .await?;
        let value = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
        Ok((status, value))
    }
}

/// The `pairgate` binary: `explicit`, else next to this executable (same target directory),
/// else built with `cargo build --release -p pairgate` into that target directory.
pub fn find_gateway_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe.parent().context("executable has a directory")?;
    let candidate = dir.join("pairgate");
    if candidate.exists() {
        return Ok(candidate);
    }
    let target_dir = dir.parent().context("target directory")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    eprintln!(
        "pairgate-bench: {} not found; building it (cargo build --release -p pairgate)",
        candidate.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["build", "--release", "-p", "pairgate"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace)
        .status()
        .context("running cargo")?;
    if !status.success() || !candidate.exists() {
        bail!(
            "could not build {}; pass --gateway-bin",
            candidate.display()
        );
    }
    Ok(candidate)
}
