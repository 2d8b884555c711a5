//! The pairgate application: wiring of config, routing, data plane, health, failover, admin and
//! fleet mode into one running gateway, plus the demo.
//!
//! The binary (`main.rs`), the demo and the integration tests all start a gateway through
//! [`Gateway::start`], so tests exercise the same wiring as production.

mod credentials;
pub mod demo;
/// Fleet mode lives in its own crate; re-exported for `pairgate cluster` and the tests.
pub use pairgate_fleet as fleet;
pub mod log_writer;
pub mod supervise;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use pairgate_admin::{AdminState, BoxFuture, ReloadRejected, Reloaded, Reloader};
use pairgate_config::{Config, FileProblem};
use pairgate_health::state::{self, PersistedState};
use pairgate_health::{ControlHandle, Controller, EventKind, EventLog, Monitor, PassiveHint};
use pairgate_proxy::{ErrorKind, Observer, Settings, Shared, UpstreamOutcome};
use pairgate_routing::{Account, RouteTable};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Events kept in memory for `GET /v1/events` and tests.
const EVENT_LOG_CAPACITY: usize = 10_000;

/// A running gateway.
pub struct Gateway {
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    https: Option<JoinHandle<std::io::Result<()>>>,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    monitor: Arc<Monitor>,
    control: ControlHandle,
    events: Arc<EventLog>,
    reloader: Arc<FileReloader>,
    shutdown: watch::Sender<bool>,
    draining: Arc<AtomicBool>,
    server: JoinHandle<std::io::Result<()>>,
    admin: Option<JoinHandle<()>>,
    /// The controller and the fleet member: a task of these that ends while serving is a bug.
    tasks: supervise::Supervisor,
}

/// How to start a [`Gateway`] beyond its config.
#[derive(Default)]
pub struct Options {
    /// The already-bound admin listener; `None` runs without an admin API.
    pub admin: Option<TcpListener>,
    /// The admin bearer token; `None` keeps `/v1` closed.
    pub admin_token: Option<String>,
    /// The config file `POST /v1/reload` and SIGHUP re-read; `None` when started from an
    /// embedded config (reload is then refused).
    pub config_path: Option<PathBuf>,
    /// The already-bound HTTPS listener; needs `tls.server`.
    pub https: Option<TcpListener>,
    /// Certificates and upstream TLS settings.
    pub tls: TlsFiles,
}

/// Forwards the data plane's upstream outcomes to the health monitor as passive signals:
/// refused, reset and timed-out attempts and 502/503/504 answers count toward `fall`; any 5xx
/// or gateway error adds to the account's consecutive-5xx count (outlier ejection), which any
/// other answer resets. A success costs one atomic load (and a store only after failures).
struct PassiveSignals(Arc<Monitor>);

impl Observer for PassiveSignals {
    fn upstream_outcome(&self, account: &Account, outcome: UpstreamOutcome) {
        let fall = match outcome {
            UpstreamOutcome::Response(status) if status.is_server_error() => {
                matches!(status.as_u16(), 502..=504)
            }
            UpstreamOutcome::Response(_) => {
                account.health.note_success();
                return;
            }
            // The client's body broke: says nothing about the account.
            UpstreamOutcome::Failed(ErrorKind::ClientBody) => return,
            UpstreamOutcome::Failed(_) => true,
            // The account refuses the gateway's freshly minted token.
            UpstreamOutcome::CredentialRefused => true,
        };
        account.counters.record_passive(match outcome {
            UpstreamOutcome::Response(_) => "5xx",
            UpstreamOutcome::Failed(kind) => kind.code(),
            UpstreamOutcome::CredentialRefused => "credential_refused",
        });
        let consecutive_5xx = account.health.note_5xx();
        self.0.passive_failure(
            &account.key,
            PassiveHint {
                fall,
                consecutive_5xx,
            },
        );
    }
}

impl Gateway {
    /// Starts serving `config` on an already-bound listener (bind once at start; tests hand
    /// over `127.0.0.1:0` listeners).
    pub async fn start(
        config: Config,
        http: TcpListener,
        options: Options,
    ) -> anyhow::Result<Gateway> {
        let http_addr = http.local_addr().context("listener address")?;
        let table = Arc::new(RouteTable::compile(&config, 1, None).context("compiling routes")?);
        let events = Arc::new(EventLog::new(EVENT_LOG_CAPACITY));
        let restored = restore_state(&config, &events);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let monitor = Arc::new(Monitor::new(
            config.upstream.connect_timeout,
            commands.clone(),
        ));
        let mut controller =
            Controller::new(&config, Arc::clone(&table), Arc::clone(&events), restored);
        let mut fleet_inputs = None;
        if config.cluster.is_some() {
            let (local_tx, local_rx) = mpsc::unbounded_channel();
            let (proposal_tx, proposal_rx) = mpsc::unbounded_channel();
            controller = controller.with_fleet(pairgate_health::FleetLink {
                local_verdicts: local_tx,
                proposals: proposal_tx,
            });
            fleet_inputs = Some((local_rx, proposal_rx));
        }
        let (control, controller_task) = controller.spawn(commands, command_rx);
        let mut tasks = supervise::Supervisor::default();
        tasks.own("controller", controller_task);
        // Tokens are fetched from now on; each prober's first probe waits for its account's.
        let credentials = credentials::Credentials::start(&config);
        // Probers start after the controller exists, so no verdict is lost; the first probe
        // round runs at once.
        monitor.sync(&config, &table, &options.tls.upstream, credentials.map());
        // JWT issuers' key sets: files read now, URLs fetched by their refreshers.
        let base = config_dir(options.config_path.as_deref());
        let issuers = pairgate_clientauth::Issuers::for_config(&config, &base, None);
        let gate = Arc::new(pairgate_clientauth::Gate::new(&config, &issuers));
        let shared = Shared::new(
            table,
            &options.tls.upstream,
            credentials.map(),
            &gate,
            Settings::from_config(&config),
            Arc::new(PassiveSignals(Arc::clone(&monitor))),
        );
        let resolver = options.tls.server.map(pairgate_tls::SniResolver::new);
        let client_certs = pairgate_tls::ClientCertPolicy::new(options.tls.client_certs.clone());
        let config = Arc::new(config);
        let admin_token = Arc::new(arc_swap::ArcSwapOption::from(
            options.admin_token.map(Arc::new),
        ));
        let reloader = Arc::new(FileReloader {
            path: options.config_path,
            current: ArcSwap::new(Arc::clone(&config)),
            shared: Arc::clone(&shared),
            control: control.clone(),
            monitor: Arc::clone(&monitor),
            events: Arc::clone(&events),
            resolver: resolver.clone(),
            fleet_objects: std::sync::Mutex::new(None),
            last_tls: std::sync::Mutex::new(options.tls.upstream.clone()),
            credentials: std::sync::Mutex::new(Some(credentials)),
            issuers: std::sync::Mutex::new(Some(issuers)),
            client_certs: Arc::clone(&client_certs),
            admin_token: Arc::clone(&admin_token),
            lock: tokio::sync::Mutex::new(()),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        });
        let fleet = match (&config.cluster, fleet_inputs) {
            (Some(cluster), Some((local_rx, proposal_rx))) => {
                let name = cluster.name.clone().unwrap_or_else(host_name);
                let parts = fleet::Parts {
                    control: control.clone(),
                    monitor: Arc::clone(&monitor),
                    events: Arc::clone(&events),
                    reloader: Arc::clone(&reloader) as Arc<dyn fleet::Reload>,
                };
                let (fleet, fleet_task) = fleet::Fleet::start(
                    cluster.clone(),
                    options.tls.etcd.clone(),
                    name,
                    parts,
                    local_rx,
                    proposal_rx,
                )?;
                tasks.own("fleet", fleet_task);
                Some(fleet)
            }
            _ => None,
        };
        let (shutdown, rx) = watch::channel(false);
        let server = tokio::spawn(pairgate_proxy::serve(
            http,
            Arc::clone(&shared),
            stopped(rx.clone()),
        ));
        let mut https_addr = None;
        let https = match (options.https, &resolver) {
            (Some(listener), Some(resolver)) => {
                https_addr = Some(listener.local_addr().context("https listener address")?);
                let tls = pairgate_tls::server_config(Arc::clone(resolver), client_certs);
                Some(tokio::spawn(pairgate_proxy::serve_tls(
                    listener,
                    Arc::clone(&shared),
                    tls,
                    stopped(rx.clone()),
                )))
            }
            (Some(_), None) => anyhow::bail!("an HTTPS listener needs [[certificate]]s"),
            (None, _) => None,
        };
        let draining = Arc::new(AtomicBool::new(false));
        let mut admin_addr = None;
        let admin = match options.admin {
            Some(listener) => {
                admin_addr = Some(listener.local_addr().context("admin listener address")?);
                let state = Arc::new(AdminState {
                    control: control.clone(),
                    events: Arc::clone(&events),
                    monitor: Arc::clone(&monitor),
                    proxy: Arc::clone(&shared),
                    token: admin_token,
                    reloader: Arc::clone(&reloader) as Arc<dyn Reloader>,
                    fleet: fleet
                        .as_ref()
                        .map(|f| Arc::clone(f) as Arc<dyn pairgate_admin::FleetWrites>),
                    draining: Arc::clone(&draining),
                    build: pairgate_admin::BuildInfo {
                        version: env!("CARGO_PKG_VERSION"),
                        commit: env!("PAIRGATE_COMMIT"),
                        rustc: env!("PAIRGATE_RUSTC"),
                    },
                    alert_services: pairgate_admin::ServicesSeen::default(),
                });
                Some(tokio::spawn(pairgate_admin::serve(
                    listener,
                    state,
                    stopped(rx),
                )))
            }
            None => None,
        };
        tracing::info!(
            listen = %http_addr,
            https = https_addr.map(|a| a.to_string()).as_deref().unwrap_or("-"),
            admin = admin_addr.map(|a| a.to_string()).as_deref().unwrap_or("-"),
            tenants = config.tenants.len(),
            accounts = config.accounts.len(),
            regions = config.regions.len(),
            "pairgate serving"
        );
        Ok(Gateway {
            http_addr,
            https_addr,
            https,
            admin_addr,
            shared,
            monitor,
            control,
            events,
            reloader,
            shutdown,
            draining,
            server,
            admin,
            tasks,
        })
    }

    /// Binds `config.listen.http` and `config.admin.listen`, then starts.
    pub async fn bind_and_start(
        config: Config,
        tls: TlsFiles,
        admin_token: Option<String>,
        config_path: Option<PathBuf>,
    ) -> anyhow::Result<Gateway> {
        let addr = config.listen.http;
        let listener = bind("HTTP", addr).await?;
        let admin_addr = config.admin.listen;
        if !admin_addr.ip().is_loopback() && admin_token.is_none() {
            anyhow::bail!(
                "refusing to start: the admin API would listen on {admin_addr}, which is not loopback, \
                 and no token is configured (set the variable named by admin.token_env, or admin.token_file)"
            );
        }
        let admin = bind("admin", admin_addr).await?;
        let https = match config.listen.https {
            Some(addr) => Some(bind("HTTPS", addr).await?),
            None => None,
        };
        Gateway::start(
            config,
            listener,
            Options {
                admin: Some(admin),
                admin_token,
                config_path,
                https,
                tls,
            },
        )
        .await
    }

    /// The data-plane address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The HTTPS address, when it runs.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The admin API address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
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

    /// Waits until a long-lived task (the controller, the fleet member) ends or panics, which
    /// none does while the gateway serves: the caller should log it and exit non-zero. Pending
    /// forever while they run.
    pub async fn task_exit(&mut self) -> supervise::TaskExit {
        self.tasks.next_exit().await
    }

    /// Re-reads the config file and applies it (what SIGHUP and `POST /v1/reload` do).
    pub async fn reload(&self) -> Result<Reloaded, ReloadRejected> {
        self.reloader.reload().await
    }

    /// Turns `/readyz` to 503 while everything keeps serving: the first step of a shutdown,
    /// `runtime.shutdown_delay` before [`Gateway::shutdown`], so a load balancer that checks
    /// `/readyz` stops sending new requests before the listeners close.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.monitor.shutdown();
        if let Some(admin) = self.admin {
            let _ = admin.await;
        }
        if let Some(https) = self.https {
            https.await.context("https server task")??;
        }
        self.server.await.context("server task")??;
        Ok(())
    }
}

/// This machine's host name (the default replica name), or `pairgate`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pairgate".to_owned())
}

/// Resolves once the watch says stop (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Loads the state file named by the config; a corrupt one is moved aside and reported.
fn restore_state(config: &Config, events: &EventLog) -> PersistedState {
    let Some(path) = &config.state.path else {
        return PersistedState::default();
    };
    for leftover in state::remove_leftovers(path) {
        tracing::warn!(path = %leftover.display(), "removed a temporary state file left by a crash");
    }
    match state::load(path) {
        state::Loaded::Missing => PersistedState::default(),
        state::Loaded::Found(found) => {
            tracing::info!(path = %path.display(), pins = found.tenants.len(), regions = found.regions.len() + found.region_holds.len(), "restored overrides");
            found
        }
        state::Loaded::Corrupt { error, moved_to } => {
            let moved = moved_to.as_ref().map(|p| p.display().to_string());
            tracing::error!(
                path = %path.display(),
                moved_to = moved.as_deref().unwrap_or("(could not move it)"),
                %error,
                "state file is corrupt; starting without overrides"
            );
            events.push(EventKind::Reload {
                generation: 1,
                accepted: true,
                problems: vec![format!(
                    "state file {} was corrupt ({error}); moved to {}",
                    path.display(),
                    moved.as_deref().unwrap_or("nowhere")
                )],
            });
            PersistedState::default()
        }
    }
}

/// Reloads from the config file: parse, validate and compile off the hot path, hand the new
/// table to the controller (which sets slots), resync probers, then publish with one store.
pub(crate) struct FileReloader {
    path: Option<PathBuf>,
    current: ArcSwap<Config>,
    shared: Arc<Shared>,
    control: ControlHandle,
    monitor: Arc<Monitor>,
    events: Arc<EventLog>,
    /// The HTTPS listener's certificate resolver, when it runs.
    resolver: Option<Arc<pairgate_tls::SniResolver>>,
    /// Fleet mode: regions, accounts and tenants from etcd, replacing the file's.
    fleet_objects: std::sync::Mutex<Option<std::collections::BTreeMap<String, String>>>,
    /// The upstream TLS settings last applied, for prober resyncs.
    last_tls: std::sync::Mutex<pairgate_tls::UpstreamTlsMap>,
    /// The account credentials of the applied config (`None` only while a reload rebuilds
    /// them, under `lock`).
    credentials: std::sync::Mutex<Option<credentials::Credentials>>,
    /// The JWT issuers' key stores of the applied config (carried across reloads while an
    /// issuer is unchanged; `None` only while a reload rebuilds them, under `lock`).
    issuers: std::sync::Mutex<Option<pairgate_clientauth::Issuers>>,
    /// The HTTPS listener's client-certificate policy, swapped by reloads.
    client_certs: Arc<pairgate_tls::ClientCertPolicy>,
    /// The admin API's token: re-read from `admin.token_file` at each reload (unless the
    /// variable named by `admin.token_env` sets it).
    admin_token: Arc<arc_swap::ArcSwapOption<String>>,
    /// One reload at a time: the single writer of the routing snapshot.
    lock: tokio::sync::Mutex<()>,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

impl fleet::Reload for FileReloader {
    fn set_fleet_objects(&self, objects: Option<std::collections::BTreeMap<String, String>>) {
        FileReloader::set_fleet_objects(self, objects);
    }

    fn reload_now(&self) -> BoxFuture<'_, Result<(), usize>> {
        Box::pin(async move {
            FileReloader::reload_now(self)
                .await
                .map(|_| ())
                .map_err(|rejected| rejected.problems.len() + rejected.more)
        })
    }

    fn resync_probers(&self) {
        FileReloader::resync_probers(self);
    }
}

impl FileReloader {
    /// Fleet mode: the objects from etcd to use instead of the file's (`None`: the file's).
    pub(crate) fn set_fleet_objects(
        &self,
        objects: Option<std::collections::BTreeMap<String, String>>,
    ) {
        *self.fleet_objects.lock().unwrap_or_else(|p| p.into_inner()) = objects;
    }

    /// Reloads now (what SIGHUP does).
    pub(crate) async fn reload_now(&self) -> Result<Reloaded, ReloadRejected> {
        self.reload_file().await
    }

    /// Re-applies the probers' set to the current config (after the fleet's replica set, and so
    /// the accounts this replica probes, changed).
    pub(crate) fn resync_probers(&self) {
        let config = self.current.load_full();
        let tls = self
            .last_tls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let credentials = self.credential_map();
        self.monitor
            .sync(&config, &self.shared.routes(), &tls, &credentials);
    }

    /// Each account's minted credential, as last applied.
    fn credential_map(&self) -> pairgate_credentials::CredentialMap {
        self.credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.map().clone())
            .unwrap_or_default()
    }

    async fn reload_file(&self) -> Result<Reloaded, ReloadRejected> {
        let _one_at_a_time = self.lock.lock().await;
        // The log, the event and the 422 answer all carry this list: bound it here (each
        // problem is already bounded in length, `Problem::bounded`).
        let result = self.try_reload().await.map_err(ReloadRejected::new);
        let generation = self.shared.routes().generation();
        match &result {
            Ok(r) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    generation = r.generation,
                    transitions = r.transitions,
                    "config reloaded"
                );
            }
            Err(rejected) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    problems = rejected.problems.len() + rejected.more,
                    "config reload rejected; the running config keeps serving"
                );
                let lines = rejected.lines();
                for p in &lines {
                    tracing::error!("{p}");
                }
                self.events.push(EventKind::Reload {
                    generation,
                    accepted: false,
                    problems: lines,
                });
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<Reloaded, Vec<FileProblem>> {
        let Some(path) = self.path.clone() else {
            return Err(vec![FileProblem::error(
                "",
                "this gateway was started from an embedded config; there is no file to reload",
            )]);
        };
        let file = path.display().to_string();
        let current = self.shared.routes();
        let generation = current.generation() + 1;
        // Parsing 100k tenants takes a while: keep it off the async workers.
        let objects = self
            .fleet_objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let in_file = file.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let file = in_file;
            let prepared = match objects {
                None => prepare(&path),
                Some(objects) => read_config_text(&path)
                    .and_then(|local| {
                        fleet::compose(&local, &objects).map_err(|e| ConfigFileError::Invalid {
                            problems: vec![FileProblem::error(
                                &file,
                                format!("composing with the fleet's objects: {e}"),
                            )],
                        })
                    })
                    .and_then(|text| prepare_text(&text, &path)),
            }
            .map_err(|e| match e {
                ConfigFileError::Read { err, .. } => {
                    vec![FileProblem::error(&file, format!("cannot read: {err}"))]
                }
                ConfigFileError::Invalid { problems } => problems,
            })?;
            let table = RouteTable::compile(&prepared.config, generation, Some(&current))
                .map_err(|e| vec![FileProblem::error(&file, format!("compiling routes: {e}"))])?;
            Ok::<_, Vec<FileProblem>>((prepared, table))
        })
        .await
        .map_err(|e| {
            vec![FileProblem::error(
                &file,
                format!("reload task failed: {e}"),
            )]
        })??;
        let (prepared, table) = prepared;
        let Prepared {
            config,
            tls,
            warnings: mut rendered_warnings,
        } = prepared;
        let config = Arc::new(config);
        let table = Arc::new(table);
        let old = self.current.load_full();
        let mut warnings: Vec<String> = std::mem::take(&mut rendered_warnings);
        for (what, before, after) in [
            ("listen.http", old.listen.http, config.listen.http),
            ("admin.listen", old.admin.listen, config.admin.listen),
        ] {
            if before != after {
                warnings.push(format!("{what} changed from {before} to {after}; listeners are bound once, restart to move it"));
            }
        }
        if old.listen.https != config.listen.https {
            warnings.push(
                "listen.https changed; listeners are bound once, restart to apply it".to_owned(),
            );
        }
        if old.limits != config.limits
            || old.upstream != config.upstream
            || old.runtime != config.runtime
            || old.log != config.log
        {
            warnings.push(
                "[limits], [upstream], [log] and [runtime] changes take effect at the next restart"
                    .to_owned(),
            );
        }
        let transitions = self
            .control
            .reload(Arc::clone(&config), Arc::clone(&table))
            .await
            .ok_or_else(|| {
                vec![FileProblem::error(
                    "",
                    "the failover controller is not running",
                )]
            })?;
        // Unchanged credentials keep their provider and cached token; new ones start fetching.
        let credentials = {
            let mut slot = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
            let next = match slot.take() {
                Some(previous) => previous.reload(&config),
                None => credentials::Credentials::start(&config),
            };
            let map = next.map().clone();
            *slot = Some(next);
            map
        };
        self.monitor
            .sync(&config, &table, &tls.upstream, &credentials);
        let gate = {
            let mut slot = self.issuers.lock().unwrap_or_else(|p| p.into_inner());
            let base = config_dir(self.path.as_deref());
            let next = pairgate_clientauth::Issuers::for_config(&config, &base, slot.take());
            let gate = pairgate_clientauth::Gate::new(&config, &next);
            *slot = Some(next);
            Arc::new(gate)
        };
        self.shared
            .swap_routes(table, &tls.upstream, &credentials, &gate);
        self.client_certs.swap(tls.client_certs.clone());
        *self.last_tls.lock().unwrap_or_else(|p| p.into_inner()) = tls.upstream.clone();
        // New handshakes get the new certificates; open connections keep their session.
        if let (Some(resolver), Some(store)) = (&self.resolver, tls.server) {
            resolver.swap(store);
        }
        if let Some(warning) = self.reread_admin_token(&config) {
            warnings.push(warning);
        }
        self.current.store(config);
        self.events.push(EventKind::Reload {
            generation,
            accepted: true,
            problems: warnings.clone(),
        });
        Ok(Reloaded {
            generation,
            transitions,
            warnings,
        })
    }
}

impl FileReloader {
    /// Re-reads `admin.token_file` (when the variable named by `admin.token_env` does not set
    /// the token): a rotated token is in force once the reload is done. A file that cannot be
    /// read, or is empty, keeps the previous token and says so.
    fn reread_admin_token(&self, config: &Config) -> Option<String> {
        let path = config.admin.token_file.as_ref()?;
        if std::env::var(&config.admin.token_env).is_ok_and(|t| !t.trim().is_empty()) {
            return None;
        }
        match std::fs::read_to_string(path) {
            Ok(token) if !token.trim().is_empty() => {
                self.admin_token
                    .store(Some(Arc::new(token.trim().to_owned())));
                None
            }
            Ok(_) => Some(format!(
                "admin.token_file {} is empty; the previous admin token stays in force",
                path.display()
            )),
            Err(err) => Some(format!(
                "admin.token_file {} cannot be read ({err}); the previous admin token stays in force",
                path.display()
            )),
        }
    }
}

impl Reloader for FileReloader {
    fn reload(&self) -> BoxFuture<'_, Result<Reloaded, ReloadRejected>> {
        Box::pin(self.reload_file())
    }

    fn config(&self) -> Arc<Config> {
        self.current.load_full()
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

/// A listener that could not be bound (the binary exits 69, `EX_UNAVAILABLE`).
#[derive(Debug)]
pub struct BindError {
    /// Which listener: `HTTP`, `HTTPS` or `admin`.
    pub listener: &'static str,
    /// Where.
    pub addr: std::net::SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "binding the {} listener on {}: {}",
            self.listener, self.addr, self.source
        )
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

async fn bind(
    listener: &'static str,
    addr: std::net::SocketAddr,
) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        listener,
        addr,
        source,
    })
}

/// The largest config file pairgate reads. A 100k-tenant config is about 13 MB; parsing costs
/// tens of times the text in memory, so a file far beyond any real config (a mistake, or hostile)
/// is refused before it is read rather than parsed.
pub const MAX_CONFIG_FILE_BYTES: u64 = 64 << 20;

/// Reads a config file, refusing one over [`MAX_CONFIG_FILE_BYTES`] before reading it.
pub fn read_config_text(path: &std::path::Path) -> Result<String, ConfigFileError> {
    use std::io::Read;
    let read_err = |err| ConfigFileError::Read {
        path: path.display().to_string(),
        err,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    // `take` also bounds a file that grows while it is read (or a FIFO).
    let mut text = String::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "larger than the {} MiB a config file may have",
                MAX_CONFIG_FILE_BYTES >> 20
            ),
        )));
    }
    Ok(text)
}

/// What `${...}` in a config value stands for: `file:/path` is the file's contents (read now:
/// at start and at every reload, so a rotated file is picked up by the next reload), without
/// its trailing newline; anything else is an environment variable. A file others can read is
/// warned about. Values are never logged; `None` (unset, missing or unreadable) becomes a
/// config problem naming the variable or file.
pub fn resolve_secret(name: &str) -> Option<String> {
    let Some(path) = name.strip_prefix("file:") else {
        return std::env::var(name).ok();
    };
    let mut value = std::fs::read_to_string(path).ok()?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o004 != 0
        {
            tracing::warn!(
                file = path,
                "secret file is world-readable; restrict it (chmod o-r)"
            );
        }
    }
    Some(value)
}

/// Reads and validates a config file with the process environment for `${VAR}`. On failure the
/// error lists every problem, rendered `FILE:LINE:COL: PATH: message`.
pub fn load_config_file(
    path: &std::path::Path,
) -> Result<pairgate_config::Loaded, ConfigFileError> {
    let text = read_config_text(path)?;
    let env = resolve_secret;
    let file = path.display().to_string();
    pairgate_config::load(&text, &env).map_err(|problems| ConfigFileError::Invalid {
        problems: problems
            .into_iter()
            .map(|p| FileProblem::new(&file, p))
            .collect(),
    })
}

/// Files a config refers to, read and checked: server certificates and each `https://`
/// account's TLS client settings.
#[derive(Default)]
pub struct TlsFiles {
    /// Certificates for the HTTPS listener, by SNI (`None` without `[[certificate]]`s).
    pub server: Option<pairgate_tls::CertStore>,
    /// Client settings of every `https://` account, by account key.
    pub upstream: pairgate_tls::UpstreamTlsMap,
    /// Fleet mode: TLS settings for `https://` etcd endpoints.
    pub etcd: Option<Arc<rustls::ClientConfig>>,
    /// The HTTPS listener's client-certificate verifier (`[listen] client_ca`), if any.
    pub client_certs: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
}

/// A config and everything it refers to, checked together, every problem reported at once.
pub struct Prepared {
    /// The validated config.
    pub config: Config,
    /// Its TLS files.
    pub tls: TlsFiles,
    /// Warnings, rendered.
    pub warnings: Vec<String>,
}

/// Loads `path` and the TLS files it names (relative paths are relative to its directory).
pub fn prepare(path: &std::path::Path) -> Result<Prepared, ConfigFileError> {
    let text = read_config_text(path)?;
    prepare_text(&text, path)
}

/// [`prepare`] for config text that stands for `path` (fleet mode composes it from the file
/// and etcd); relative TLS paths are relative to `path`'s directory.
pub fn prepare_text(text: &str, path: &std::path::Path) -> Result<Prepared, ConfigFileError> {
    let env = resolve_secret;
    let file = path.display().to_string();
    let loaded =
        pairgate_config::load(text, &env).map_err(|problems| ConfigFileError::Invalid {
            problems: problems
                .into_iter()
                .map(|p| FileProblem::new(&file, p))
                .collect(),
        })?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    let mut warnings: Vec<String> = loaded
        .warnings
        .iter()
        .map(|p| pairgate_config::render(p, &file))
        .collect();
    match load_tls(&loaded.config, base) {
        Ok((tls, tls_warnings)) => {
            warnings.extend(
                tls_warnings
                    .iter()
                    .map(|p| pairgate_config::render(p, &file)),
            );
            Ok(Prepared {
                config: loaded.config,
                tls,
                warnings,
            })
        }
        Err(problems) => Err(ConfigFileError::Invalid {
            problems: problems
                .into_iter()
                .map(|p| FileProblem::new(&file, p))
                .collect(),
        }),
    }
}

/// Reads and checks every certificate and CA file `config` names.
pub fn load_tls(
    config: &Config,
    base: &std::path::Path,
) -> Result<(TlsFiles, Vec<pairgate_config::Problem>), Vec<pairgate_config::Problem>> {
    let now = std::time::SystemTime::now();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let server = if config.certificates.is_empty() {
        None
    } else {
        match pairgate_tls::load_server_certs(&config.certificates, base, now) {
            Ok((store, w)) => {
                warnings.extend(w);
                Some(store)
            }
            Err(p) => {
                problems.extend(p);
                None
            }
        }
    };
    let mut upstream = pairgate_tls::UpstreamTlsMap::new();
    for (i, account) in config.accounts.iter().enumerate() {
        let Some(tls) = &account.tls else { continue };
        let host = account
            .authority
            .rsplit_once(':')
            .map_or(account.authority.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match pairgate_tls::client_config(i, tls, host, account.http2, base, now) {
            Ok((client, server_name)) => {
                upstream.insert(
                    pairgate_routing::account_key(account),
                    pairgate_tls::UpstreamTls {
                        config: client,
                        server_name,
                        allow_h2: account.http2,
                    },
                );
            }
            Err(p) => problems.extend(p),
        }
    }
    let mut etcd = None;
    if let Some(cluster) = &config.cluster
        && cluster.endpoints.iter().any(|e| e.starts_with("https://"))
    {
        match pairgate_tls::client_config(0, &cluster.tls, "localhost", false, base, now) {
            Ok((client, _name)) => etcd = Some(client),
            // The loader names account paths; these keys live in [cluster].
            Err(p) => problems.extend(p.into_iter().map(|mut p| {
                p.path = p.path.replace("account[0]", "cluster");
                p
            })),
        }
    }
    let client_certs = match pairgate_tls::client_verifier(
        config.listen.client_ca.as_deref(),
        config.client_auth.mtls,
        base,
    ) {
        Ok(v) => v,
        Err(p) => {
            problems.extend(p);
            None
        }
    };
    // The signing keys of file-based JWT issuers: a file that is not a key set is a config
    // problem like a missing certificate.
    for (i, err) in pairgate_clientauth::Issuers::check_files(config, base) {
        problems.push(pairgate_config::Problem {
            severity: pairgate_config::Severity::Error,
            path: format!("jwt_issuer[{i}].jwks_file"),
            message: err.to_string(),
            location: None,
        });
    }
    if problems.is_empty() {
        Ok((
            TlsFiles {
                server,
                upstream,
                etcd,
                client_certs,
            },
            warnings,
        ))
    } else {
        Err(problems)
    }
}

/// The directory relative paths of the config at `path` are resolved against.
fn config_dir(path: Option<&std::path::Path>) -> PathBuf {
    path.and_then(std::path::Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
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
    /// The file is not a valid config: every problem (`Display`: `FILE:LINE:COL: PATH: message`).
    Invalid {
        /// The problems, errors first.
        problems: Vec<FileProblem>,
    },
}

impl std::fmt::Display for ConfigFileError {
    /// `FILE: cannot read: reason`, or the rendered problems one per line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigFileError::Read { path, err } => write!(f, "{path}: cannot read: {err}"),
            ConfigFileError::Invalid { problems } => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigFileError {}
