//! [`EtcdServer`]: a real single-member etcd on loopback, for tests (feature `testing`).
//!
//! Finds `etcd` through `PAIRGATE_ETCD_BIN` or `PATH`; when it is missing, starting fails with
//! a message naming `scripts/etcd.sh install`, so tests fail loudly instead of skipping.
//!
//! Departure from "never pick a port and re-bind": etcd cannot be handed a listener, so the
//! ports are found by binding `127.0.0.1:0` and closing. If another process takes one in
//! between, etcd exits and [`EtcdServer::start`] retries with fresh ports.

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::Etcd;

/// How long etcd gets to answer `status` with a leader after a (re)start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Tries at [`EtcdServer::start`] when etcd exits at once (a port taken in between).
const START_ATTEMPTS: u32 = 3;

/// A running etcd process, killed (and its data dir removed) on drop.
pub struct EtcdServer {
    binary: PathBuf,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    tls: Option<ServerTls>,
}

/// TLS for the client port of a test etcd.
#[derive(Clone)]
pub struct ServerTls {
    /// PEM certificate (with `127.0.0.1` among its names).
    pub cert: PathBuf,
    /// PEM key.
    pub key: PathBuf,
    /// Require client certificates signed by this CA.
    pub client_ca: Option<PathBuf>,
    /// The client configuration the harness itself uses to see that etcd is ready.
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

impl EtcdServer {
    /// Turns authentication on with a `root` user holding the root role; afterwards every call
    /// needs credentials.
    pub async fn enable_auth(&self, password: &str) -> Result<(), crate::EtcdError> {
        let etcd = crate::Etcd::new(&[self.endpoint()], Duration::from_secs(3))?;
        etcd.call("/auth/role/add", serde_json::json!({ "name": "root" }))
            .await?;
        etcd.call(
            "/auth/user/add",
            serde_json::json!({ "name": "root", "password": password }),
        )
        .await?;
        etcd.call(
            "/auth/user/grant",
            serde_json::json!({ "user": "root", "role": "root" }),
        )
        .await?;
        etcd.call("/auth/enable", serde_json::json!({})).await?;
        Ok(())
    }

    /// Starts etcd on free loopback ports with a fresh data dir and waits until it answers
    /// `status` with a leader (at most [`READY_TIMEOUT`]).
    pub async fn start() -> io::Result<EtcdServer> {
        Self::start_with(None).await
    }

    /// Starts etcd serving clients over TLS (`https://` endpoint).
    pub async fn start_tls(tls: ServerTls) -> io::Result<EtcdServer> {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<ServerTls>) -> io::Result<EtcdServer> {
        let binary = find_binary()?;
        let dir = temp_dir()?;
        let mut server = EtcdServer {
            binary,
            dir,
            client_port: 0,
            peer_port: 0,
            child: None,
            tls,
        };
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            server.client_port = free_port()?;
            server.peer_port = free_port()?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                // Exited at once: probably a port race. Start over with a clean data dir.
                Err(e) if server.child.is_none() => {
                    let _ = std::fs::remove_dir_all(server.data_path());
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    /// `http://127.0.0.1:PORT` (`https://` when started with TLS), the client URL.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// A client for this server.
    pub fn client(&self, timeout: Duration) -> Etcd {
        Etcd::new(&[self.endpoint()], timeout).expect("endpoint() is always a valid http URL")
    }

    /// The directory holding the data dir (`data/`) and the log (`etcd.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// etcd's log file; kept across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills etcd with SIGKILL (no graceful shutdown) and reaps it. The data dir stays, for
    /// [`EtcdServer::restart`].
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts etcd again on the same ports and data dir (killing it first if it runs) and waits
    /// until it is ready.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        self.spawn_and_wait().await
    }

    fn data_path(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Spawns etcd and waits for a status with a leader. On an early exit `self.child` is None.
    async fn spawn_and_wait(&mut self) -> io::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(&self.binary);
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()));
            if let Some(ca) = &tls.client_ca {
                command
                    .arg("--client-cert-auth")
                    .arg(format!("--trusted-ca-file={}", ca.display()));
            }
        }
        let child = command
            .arg("--name=pairgate-test")
            .arg(format!("--data-dir={}", self.data_path().display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=pairgate-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg(format!(
                "--initial-cluster-token=pairgate-{}",
                self.client_port
            ))
            // Faster election after a restart; lease TTLs can go down to 1 s (1.5 × election).
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("starting {}: {e}", self.binary.display()))
            })?;
        self.child = Some(child);

        let tls = self.tls.as_ref().map(|t| std::sync::Arc::clone(&t.client));
        let client = Etcd::connect(&[client_url], Duration::from_millis(500), None, tls)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running() {
                self.child = None;
                return Err(io::Error::other(format!(
                    "etcd exited during start-up; log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail()
                )));
            }
            let last = match client.status().await {
                Ok(status) if status.leader != 0 => return Ok(()),
                Ok(_) => "no leader yet".to_owned(),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                let _ = self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd not ready within {READY_TIMEOUT:?} ({last}); log {}:\n{}",
                        self.log_path().display(),
                        self.log_tail()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `PAIRGATE_ETCD_BIN`, else `etcd` on `PATH`.
fn find_binary() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PAIRGATE_ETCD_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "etcd not found: PAIRGATE_ETCD_BIN={} is not a file (run scripts/etcd.sh install)",
                    path.display()
                ),
            ))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "etcd not found: run scripts/etcd.sh install (or set PAIRGATE_ETCD_BIN)",
            )
        })
}

/// A port nobody listens on right now.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A new, empty directory under the system temp dir.
fn temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "pairgate-etcd-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}
