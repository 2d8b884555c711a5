//! The pairgate application: wiring of config, routing, data plane and (later) health, failover
//! and admin into one running gateway, plus the demo.
//!
//! The binary (`main.rs`), the demo and the integration tests all start a gateway through
//! [`Gateway::start`], so tests exercise the same wiring as production.

pub mod demo;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use pairgate_config::Config;
use pairgate_health::{ControlHandle, Controller, EventLog, Monitor};
use pairgate_proxy::{Observer, ProxyError, Settings, Shared, UpstreamOutcome};
use pairgate_routing::{Account, RouteTable};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Events kept in memory for `GET /v1/events` and tests.
const EVENT_LOG_CAPACITY: usize = 10_000;

/// A running gateway.
pub struct Gateway {
    http_addr: SocketAddr,
    shared: Arc<Shared>,
    monitor: Arc<Monitor>,
    control: ControlHandle,
    events: Arc<EventLog>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

/// Forwards the data plane's upstream outcomes to the health monitor as passive signals:
/// refused, reset and timed-out attempts and 502/503/504 answers count as failures.
struct PassiveSignals(Arc<Monitor>);

impl Observer for PassiveSignals {
    fn upstream_outcome(&self, account: &Account, outcome: UpstreamOutcome) {
        let failed = match outcome {
            UpstreamOutcome::Response(status) => matches!(status.as_u16(), 502..=504),
            UpstreamOutcome::Failed(err) => err != ProxyError::ClientBody,
        };
        if failed {
            self.0.passive_failure(&account.key);
        }
    }
}

impl Gateway {
    /// Starts serving `config` on an already-bound listener (bind once at start; tests hand
    /// over a `127.0.0.1:0` listener).
    pub async fn start(config: Config, http: TcpListener) -> anyhow::Result<Gateway> {
        let http_addr = http.local_addr().context("listener address")?;
        let table = Arc::new(RouteTable::compile(&config, 1, None).context("compiling routes")?);
        let events = Arc::new(EventLog::new(EVENT_LOG_CAPACITY));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let monitor = Arc::new(Monitor::new(
            config.upstream.connect_timeout,
            commands.clone(),
        ));
        let controller = Controller::new(&config, Arc::clone(&table), Arc::clone(&events));
        let (control, _controller_task) = controller.spawn(commands, command_rx);
        // Probers start after the controller exists, so no verdict is lost; the first probe
        // round runs at once.
        monitor.sync(&config, &table);
        let shared = Shared::new(
            table,
            Settings::from_config(&config),
            Arc::new(PassiveSignals(Arc::clone(&monitor))),
        );
        let (shutdown, mut rx) = watch::channel(false);
        let server = tokio::spawn(pairgate_proxy::serve(
            http,
            Arc::clone(&shared),
            async move {
                // Resolves when the sender says so or is dropped.
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ));
        tracing::info!(
            listen = %http_addr,
            tenants = config.tenants.len(),
            accounts = config.accounts.len(),
            regions = config.regions.len(),
            "pairgate serving"
        );
        Ok(Gateway {
            http_addr,
            shared,
            monitor,
            control,
            events,
            shutdown,
            server,
        })
    }

    /// Binds `config.listen.http` and starts.
    pub async fn bind_and_start(config: Config) -> anyhow::Result<Gateway> {
        let addr = config.listen.http;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the HTTP listener on {addr}"))?;
        Gateway::start(config, listener).await
    }

    /// The data-plane address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The data plane's shared state (routing snapshot, clients).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The health monitor (probers, passive signals, probe counters).
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// Commands and queries for the failover controller.
    pub fn control(&self) -> &ControlHandle {
        &self.control
    }

    /// The event log (transitions, health changes).
    pub fn events(&self) -> &Arc<EventLog> {
        &self.events
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.monitor.shutdown();
        self.server.await.context("server task")??;
        Ok(())
    }
}

/// Reads and validates a config file with the process environment for `${VAR}`. On failure the
/// error lists every problem, rendered `FILE:LINE:COL: PATH: message`.
pub fn load_config_file(
    path: &std::path::Path,
) -> Result<pairgate_config::Loaded, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigFileError::Read {
        path: path.display().to_string(),
        err,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    pairgate_config::load(&text, &env).map_err(|problems| ConfigFileError::Invalid {
        rendered: problems
            .iter()
            .map(|p| pairgate_config::render(p, &path.display().to_string()))
            .collect(),
    })
}

/// Why a config file could not be loaded.
#[derive(Debug)]
pub enum ConfigFileError {
    /// The file could not be read.
    Read {
        /// The file.
        path: String,
        /// The IO error.
        err: std::io::Error,
    },
    /// The file is not a valid config; one rendered line per problem.
    Invalid {
        /// `FILE:LINE:COL: PATH: message` lines.
        rendered: Vec<String>,
    },
}
