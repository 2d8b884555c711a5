//! Test helpers: start a real gateway in-process on `127.0.0.1:0`, locate the real `pairgate`
//! binary, and speak HTTP to them. Mock regions come from `pairgate-mock`.
//!
//! Every wait here has a timeout; nothing picks a port and re-binds it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pairgate::Gateway;

pub mod jwt;
pub mod relay;
pub mod tls;
use tokio::net::TcpListener;

pub use pairgate_mock::{Behavior, MockAzure, MockConfig, MockUpstream, azure};

/// Default bound on any single wait in tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// The admin token every [`TestGateway`] uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-6a1f";

/// A gateway running in this process on ephemeral loopback ports, with its admin API, started
/// from a config file it wrote (so reload works).
pub struct TestGateway {
    gateway: Gateway,
    config_path: PathBuf,
}

impl TestGateway {
    /// Writes `toml` to a temp file, validates it (with `env` for `${VAR}`), and starts a
    /// gateway on `127.0.0.1:0` with the admin API on another `127.0.0.1:0`.
    pub async fn start_with_env(toml: &str, env: &[(&str, &str)]) -> anyhow::Result<TestGateway> {
        let config_path = temp_file("gateway.toml");
        std::fs::write(&config_path, toml)?;
        Self::start_from_file(config_path, env).await
    }

    /// Starts from an existing config file.
    pub async fn start_from_file(
        config_path: PathBuf,
        env: &[(&str, &str)],
    ) -> anyhow::Result<TestGateway> {
        let toml = std::fs::read_to_string(&config_path)?;
        let vars: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = |name: &str| vars.get(name).cloned();
        let loaded = pairgate_config::load(&toml, &lookup).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("test config invalid:\n{}", lines.join("\n"))
        })?;
        let base = config_path.parent().unwrap_or(std::path::Path::new("."));
        let (tls, _warnings) = pairgate::load_tls(&loaded.config, base).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("test TLS files invalid:\n{}", lines.join("\n"))
        })?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let admin = TcpListener::bind("127.0.0.1:0").await?;
        // Whatever address the config names, tests listen on ephemeral ports.
        let https = match loaded.config.listen.https {
            Some(_) => Some(TcpListener::bind("127.0.0.1:0").await?),
            None => None,
        };
        let gateway = Gateway::start(
            loaded.config,
            listener,
            pairgate::Options {
                admin: Some(admin),
                admin_token: Some(ADMIN_TOKEN.to_owned()),
                config_path: Some(config_path.clone()),
                https,
                tls,
            },
        )
        .await?;
        Ok(TestGateway {
            gateway,
            config_path,
        })
    }

    /// [`TestGateway::start_with_env`] with an empty environment.
    pub async fn start(toml: &str) -> anyhow::Result<TestGateway> {
        Self::start_with_env(toml, &[]).await
    }

    /// The data-plane address.
    pub fn addr(&self) -> SocketAddr {
        self.gateway.http_addr()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The HTTPS address, when the config has `listen.https`.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.gateway.https_addr()
    }

    /// `http://127.0.0.1:ADMIN_PORT{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        let addr = self
            .gateway
            .admin_addr()
            .expect("test gateways run the admin API");
        format!("http://{addr}{path}")
    }

    /// The config file this gateway reloads from.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// An admin call with the test token: `method path` with an optional JSON body.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<Reply> {
        admin_call(&self.admin_url(path), method, body, Some(ADMIN_TOKEN)).await
    }

    /// The running gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Graceful shutdown.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(40), self.gateway.shutdown())
            .await
            .context("shutdown timed out")?
    }
}

/// An admin-style call: `method url` with an optional JSON body and bearer token.
pub async fn admin_call(
    url: &str,
    method: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<Reply> {
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))?;
    send(&client(), req).await
}

/// A fresh path under the system temp dir, unique within this process.
pub fn temp_file(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pairgate-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{n}-{name}"))
}

/// A buffered response, for assertions.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body parsed as JSON; panics with the body text when it is not JSON (tests only).
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(err) => panic!("not JSON ({err}): {}", self.text()),
        }
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A plain HTTP/1.1 client with its own pool.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `req` and buffers the reply, bounded by [`WAIT`].
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<Reply> {
    let resp: Response<hyper::body::Incoming> = tokio::time::timeout(WAIT, client.request(req))
        .await
        .context("request timed out")??;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .context("body timed out")??
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `GET url` with a `Host` header.
pub async fn get(url: &str, host: &str) -> anyhow::Result<Reply> {
    let req = Request::get(url)
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))?;
    send(&client(), req).await
}

/// The `pairgate` binary built by this workspace (`target/<profile>/pairgate`), found next to
/// the test executable. `PAIRGATE_BIN` overrides it. Fails loudly when it was not built: the
/// README's test command builds it first.
pub fn pairgate_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PAIRGATE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/it-HASH -> target/<profile>/pairgate
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable has no profile dir")?;
    let bin = profile_dir.join("pairgate");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (`cargo build -p pairgate`), or run the README's test command",
            bin.display()
        );
    }
    Ok(bin)
}

/// The real `pairgate` binary running `run --config FILE`, its stderr collected in the
/// background. Killed on drop.
pub struct GatewayProcess {
    child: std::process::Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl GatewayProcess {
    /// Writes `toml` to `config_path`, starts the binary with `env`, and waits (bounded by
    /// [`WAIT`]) until it logs the address it serves on. Use `listen.http = "127.0.0.1:0"`.
    pub fn spawn(
        config_path: &std::path::Path,
        toml: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<GatewayProcess> {
        Self::spawn_cmd(
            std::process::Command::new(pairgate_bin()?),
            config_path,
            toml,
            env,
        )
    }

    /// [`GatewayProcess::spawn`] with soft and hard `RLIMIT_NOFILE` set to `nofile` (through
    /// `sh -c 'ulimit -n N; exec ...'`).
    pub fn spawn_with_fd_limit(
        config_path: &std::path::Path,
        toml: &str,
        env: &[(&str, &str)],
        nofile: u32,
    ) -> anyhow::Result<GatewayProcess> {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(r#"ulimit -n "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(nofile.to_string())
            .arg(pairgate_bin()?);
        Self::spawn_cmd(cmd, config_path, toml, env)
    }

    fn spawn_cmd(
        mut cmd: std::process::Command,
        config_path: &std::path::Path,
        toml: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<GatewayProcess> {
        use std::io::BufRead as _;
        std::fs::write(config_path, toml)?;
        cmd.arg("run")
            .arg("--config")
            .arg(config_path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let collected = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&collected);
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                // `key=addr` (pretty) or `"key":"addr"` (`--log-format json`).
                let field = |key: &str| {
                    let json_key = format!("\"{}\":", key.trim_end_matches('='));
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(key))
                        .or_else(|| line.split(json_key.as_str()).nth(1)?.split(',').next())
                        .and_then(|a| a.trim_matches('"').parse::<SocketAddr>().ok())
                };
                if let Some(addr) = field("listen=")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send((addr, field("admin=")));
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let Ok((addr, admin)) = rx.recv_timeout(WAIT) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = collected.lock().map(|s| s.clone()).unwrap_or_default();
            bail!("pairgate did not report its listen address; stderr:\n{log}");
        };
        Ok(GatewayProcess {
            child,
            addr,
            admin,
            stderr: collected,
            reader: Some(reader),
        })
    }

    /// The data-plane address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://ADMIN_ADDR{path}`, when the config has an `[admin] listen`.
    pub fn admin_url(&self, path: &str) -> anyhow::Result<String> {
        let admin = self.admin.context("the gateway runs no admin API")?;
        Ok(format!("http://{admin}{path}"))
    }

    /// `GET /metrics` on the admin API, as text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let url = self.admin_url("/metrics")?;
        let reply = send(&client(), Request::get(url).body(Full::new(Bytes::new()))?).await?;
        Ok(reply.text())
    }

    /// Polls stderr (every 20 ms, up to `within`) until `check` holds; returns whether it did.
    pub async fn wait_stderr(&self, within: Duration, check: impl Fn(&str) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if check(&self.stderr()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the process a signal by name (`"HUP"`, `"TERM"`) with kill(1).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{name} {} failed: {status}", self.pid());
        }
        Ok(())
    }

    /// A line of `/proc/PID/status` in KiB, e.g. `VmHWM` (peak RSS) or `VmRSS`.
    pub fn proc_status_kib(&self, key: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{key} not in /proc status"))
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits up to `within` for the process to exit by itself; its exit code (`None` if killed
    /// by a signal), or an error if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if std::time::Instant::now() >= deadline {
                bail!("still running after {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process and returns its whole stderr.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader ends at EOF, once the exited process's pipe is drained.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.stderr()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
