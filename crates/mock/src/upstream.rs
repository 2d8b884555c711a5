//! The `MockUpstream` handle: start, fault controls (behaviour, kill, revive, flap) and statistics.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::server::{Run, bind};
use crate::state::{Shared, lock};
use crate::{Behavior, MockConfig, Recorded};

/// A running mock regional account: an HTTP/1.1 + h2c server (or, from [`MockUpstream::start_tls`],
/// an HTTPS server) on one port with fault injection. Its endpoints are listed in the
/// [crate documentation](crate).
///
/// Cheap to clone (all clones control the same server). Dropping the last clone stops the
/// listener and aborts every connection, like [`MockUpstream::kill`] but without waiting.
#[derive(Clone)]
pub struct MockUpstream {
    inner: Arc<Inner>,
}

/// Owned by the handles (and, briefly, by a flapping task). Connection tasks hold only `shared`,
/// so they never keep the server alive.
struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// `Some` for a TLS mock; every listening period (start and each revive) uses it.
    tls: Option<TlsAcceptor>,
    /// `Some` while listening.
    run: Mutex<Option<Run>>,
    /// Serialises `kill` and `revive`, which await between reading and writing `run`.
    ops: tokio::sync::Mutex<()>,
}

impl MockUpstream {
    /// Starts a mock on an ephemeral port of 127.0.0.1.
    pub async fn start(cfg: MockConfig) -> io::Result<Self> {
        Self::start_on(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts a mock on `addr` (port 0 picks a free one). Fails if the port is taken or the name or
    /// region is not a valid header value.
    pub async fn start_on(cfg: MockConfig, addr: SocketAddr) -> io::Result<Self> {
        Self::start_with(cfg, addr, None)
    }

    /// Starts an HTTPS mock on an ephemeral port of 127.0.0.1: every accepted connection is
    /// TLS-accepted with `tls` first, then served exactly like a plain mock, HTTP/1.1 or HTTP/2
    /// (whichever the client speaks; offering ALPN `h2` / `http/1.1` is `tls`'s job).
    ///
    /// A failed handshake closes that connection and counts in
    /// [`tls_handshake_failures`](Self::tls_handshake_failures). [`Behavior::BlackHole`] swallows
    /// new connections before the handshake (the client's ClientHello is never answered) and
    /// requests on established ones after it; [`Behavior::Reset`] reads the request head over TLS,
    /// then resets the TCP connection without a TLS `close_notify`. [`revive`](Self::revive)
    /// serves TLS again with the same configuration.
    pub async fn start_tls(cfg: MockConfig, tls: Arc<ServerConfig>) -> io::Result<Self> {
        Self::start_tls_on(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), tls).await
    }

    /// [`start_tls`](Self::start_tls) on `addr` (port 0 picks a free one).
    pub async fn start_tls_on(
        cfg: MockConfig,
        addr: SocketAddr,
        tls: Arc<ServerConfig>,
    ) -> io::Result<Self> {
        Self::start_with(cfg, addr, Some(TlsAcceptor::from(tls)))
    }

    fn start_with(cfg: MockConfig, addr: SocketAddr, tls: Option<TlsAcceptor>) -> io::Result<Self> {
        let shared = Arc::new(Shared::new(cfg)?);
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let run = Run::start(listener, Arc::clone(&shared), tls.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                addr,
                tls,
                run: Mutex::new(Some(run)),
                ops: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The address the mock listens on; it stays the same across `kill` and `revive`.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://IP:PORT`, or `https://IP:PORT` for a TLS mock, without a trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.inner.addr)
    }

    /// Whether the mock serves TLS ([`start_tls`](Self::start_tls)).
    pub fn is_tls(&self) -> bool {
        self.inner.tls.is_some()
    }

    /// The account name from the config (also sent as `x-mock-account`).
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The region from the config (also sent as `x-mock-region`).
    pub fn region(&self) -> &str {
        &self.inner.shared.region
    }

    /// Sets the fault behaviour; it applies to requests that arrive from now on, on new and
    /// existing connections. Requests already being answered are not affected.
    pub fn set_behavior(&self, b: Behavior) {
        self.inner.shared.set_behavior(b);
    }

    /// The current fault behaviour.
    pub fn behavior(&self) -> Behavior {
        self.inner.shared.behavior()
    }

    /// Stops listening (new connects get `ECONNREFUSED`) and closes every open connection,
    /// WebSocket sessions included. Returns once all of that is done. No-op if already killed.
    pub async fn kill(&self) {
        self.inner.kill().await;
    }

    /// Listens again on the same address and resets the behaviour to [`Behavior::Normal`]
    /// (health flag, probe path and statistics are kept). No-op, apart from the behaviour reset,
    /// if the mock is listening. Fails if the port was taken in the meantime.
    pub async fn revive(&self) -> io::Result<()> {
        self.inner.revive().await
    }

    /// Whether the mock is listening (not killed, or revived since).
    pub fn is_listening(&self) -> bool {
        lock(&self.inner.run).is_some()
    }

    /// Alternates kill and revive every `period`, starting with a kill now, until the returned
    /// handle is stopped or dropped; then the mock is revived (if it is down) and left listening.
    /// While it runs it owns the up/down state: a `kill` or `revive` in between is undone at the
    /// next toggle. A failed revive (port taken) is retried at the next toggle.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime.
    pub fn flap(&self, period: Duration) -> FlapHandle {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(flap_loop(Arc::downgrade(&self.inner), period, stopped));
        FlapHandle { stop, task }
    }

    /// Sets what the probe path answers: 200 `ok` when healthy, 503 `unhealthy` when not. Other
    /// paths are not affected.
    pub fn set_health(&self, healthy: bool) {
        self.inner.shared.set_healthy(healthy);
    }

    /// Sets the path answered as a health probe (default [`DEFAULT_PROBE_PATH`](crate::DEFAULT_PROBE_PATH)).
    /// The match is exact, on the path without the query.
    pub fn set_probe_path(&self, p: &str) {
        self.inner.shared.set_probe_path(p);
    }

    /// The last 10 000 non-probe requests, oldest first, in the order their bodies were consumed.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.shared.requests()
    }

    /// Non-probe requests whose head arrived (counted before any behaviour applies, so black-holed
    /// and reset requests count too).
    pub fn request_count(&self) -> u64 {
        self.inner.shared.request_count()
    }

    /// Requests to the probe path whose head arrived.
    pub fn probe_count(&self) -> u64 {
        self.inner.shared.probe_count()
    }

    /// The raw bytes each connection sent (the first 64 KiB of each, for the last 1000
    /// connections, oldest first). Connections still open keep appending to their entry. For a
    /// TLS mock these are the decrypted bytes, and a connection whose handshake never completed
    /// has an empty entry.
    pub fn raw_capture(&self) -> Vec<Vec<u8>> {
        self.inner.shared.raw_capture()
    }

    /// Clears recorded requests, raw captures and every counter.
    pub fn reset_stats(&self) {
        self.inner.shared.reset_stats();
    }

    /// TCP connections accepted (since start or the last `reset_stats`), including those whose
    /// TLS handshake then failed.
    pub fn connections_accepted(&self) -> u64 {
        self.inner.shared.connections_accepted()
    }

    /// TLS handshakes that failed (since start or the last `reset_stats`); always 0 for a plain
    /// mock.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.inner.shared.tls_handshake_failures()
    }
}

impl fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockUpstream")
            .field("name", &self.inner.shared.name)
            .field("region", &self.inner.shared.region)
            .field("addr", &self.inner.addr)
            .field("tls", &self.is_tls())
            .field("listening", &self.is_listening())
            .field("behavior", &self.behavior())
            .finish()
    }
}

impl Inner {
    async fn kill(&self) {
        let _ops = self.ops.lock().await;
        let run = lock(&self.run).take();
        if let Some(run) = run {
            run.shutdown().await;
        }
    }

    async fn revive(&self) -> io::Result<()> {
        let _ops = self.ops.lock().await;
        self.shared.set_behavior(Behavior::Normal);
        let mut run = lock(&self.run);
        if run.is_none() {
            let listener = bind(self.addr)?;
            *run = Some(Run::start(
                listener,
                Arc::clone(&self.shared),
                self.tls.clone(),
            ));
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let run = self.run.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(run) = run {
            run.abort();
        }
    }
}

/// Keeps a [`MockUpstream::flap`] going; dropping it (or [`FlapHandle::stop`]) ends the flapping
/// and leaves the mock listening.
#[must_use = "flapping stops as soon as the handle is dropped"]
#[derive(Debug)]
pub struct FlapHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl FlapHandle {
    /// Ends the flapping and waits until the mock is listening again (or found to be dropped).
    pub async fn stop(self) {
        let Self { stop, task } = self;
        drop(stop);
        // The task only ends by returning; a JoinError would mean it was cancelled by a runtime
        // shutdown, after which there is nothing left to wait for.
        let _ = task.await;
    }
}

async fn flap_loop(inner: Weak<Inner>, period: Duration, mut stopped: oneshot::Receiver<()>) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut down = false;
    loop {
        tokio::select! {
            // Resolves (with an error) when the handle drops its sender.
            _ = &mut stopped => break,
            _ = ticks.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        if down {
            match inner.revive().await {
                Ok(()) => down = false,
                Err(error) => tracing::debug!(%error, "mock flap: revive failed, retrying"),
            }
        } else {
            inner.kill().await;
            down = true;
        }
    }
    // Revive only a mock that is down, so a behaviour set during the flapping survives its end.
    if let Some(inner) = inner.upgrade()
        && lock(&inner.run).is_none()
        && let Err(error) = inner.revive().await
    {
        tracing::warn!(%error, "mock flap: final revive failed");
    }
}
