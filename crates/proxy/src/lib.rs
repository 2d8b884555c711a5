//! pairgate's data plane: the listener, tenant resolution, forwarding and error responses.
//!
//! A request's whole way through is in [`forward`], readable top to bottom. State the data plane
//! reads lives in [`Shared`]: one `ArcSwap<RouteTable>` loaded once per request, and the pooled
//! upstream clients.
//!
//! Invariants:
//! - no lock on the request path: one `arc_swap` load for the snapshot, one atomic load for the
//!   tenant's active side;
//! - bodies stream both ways; nothing is buffered whole;
//! - an unknown tenant is answered 404 and no upstream is contacted;
//! - every error becomes a response in one place, [`ProxyError::into_response`].
//!
//! Non-goals here: health checking and failover decisions (they only store into the tenant's
//! `ActiveSlot`), certificate loading (`pairgate-tls`), the admin API.

mod body;
mod conn;
mod error;
mod forward;
mod guard;
mod head_wait;
pub mod headers;
mod idle;
pub mod metrics;
mod server;
mod upstream_conn;
pub mod uri;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pairgate_config::Config;
use pairgate_routing::RouteTable;
use upstream_conn::{ByAuthority, Counting};

pub use error::{ErrorKind, ProxyError};
pub use forward::{Observer, UpstreamOutcome};
pub use server::{serve, serve_tls};

/// Boxed error used by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response the proxy handles.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Data-plane settings, fixed for the process (listeners and clients are built once).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `limits.header_read_timeout`.
    pub header_read_timeout: Duration,
    /// `limits.max_request_header_bytes`.
    pub max_request_header_bytes: usize,
    /// `limits.max_request_headers`.
    pub max_request_headers: usize,
    /// `limits.max_uri_bytes`.
    pub max_uri_bytes: usize,
    /// `limits.body_idle_timeout`.
    pub body_idle_timeout: Duration,
    /// `limits.send_timeout`.
    pub send_timeout: Duration,
    /// `limits.max_connections`.
    pub max_connections: usize,
    /// `limits.http2_max_concurrent_streams`.
    pub http2_max_concurrent_streams: u32,
    /// `limits.idle_timeout`: an HTTP/2 connection with no open stream this long is closed.
    pub client_idle_timeout: Duration,
    /// `limits.http2_keepalive_interval`.
    pub http2_keepalive_interval: Duration,
    /// `limits.http2_keepalive_timeout`.
    pub http2_keepalive_timeout: Duration,
    /// `upstream.connect_timeout`.
    pub connect_timeout: Duration,
    /// `upstream.response_header_timeout`.
    pub response_header_timeout: Duration,
    /// `upstream.read_timeout`.
    pub read_timeout: Duration,
    /// `upstream.idle_timeout`.
    pub idle_timeout: Duration,
    /// `upstream.max_idle_per_account`.
    pub max_idle_per_account: usize,
    /// `upstream.max_replay_body`.
    pub max_replay_body: usize,
    /// `upstream.retry_on_status`.
    pub retry_on_status: Vec<u16>,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// `metrics.tenant_label_limit`.
    pub tenant_label_limit: usize,
    /// `[log]`: which requests the access log writes.
    pub access_log: AccessLog,
}

/// Which requests get an access-log line (`[log]`).
#[derive(Debug, Clone, Copy)]
pub struct AccessLog {
    /// `log.access`.
    pub mode: pairgate_config::AccessLogMode,
    /// `log.sample_successes`, percent.
    pub sample_successes: u8,
    /// `log.query`.
    pub query: bool,
}

impl AccessLog {
    /// Whether a request that ended with `status` (and an error code, `failed`) gets a line;
    /// `seen` counts successes for the sampling (the first `sample_successes` of every 100).
    pub fn wants(&self, status: u16, failed: bool, seen: &AtomicU64) -> bool {
        use pairgate_config::AccessLogMode;
        let failure = failed || status >= 400;
        match self.mode {
            AccessLogMode::Off => false,
            AccessLogMode::Errors => failure,
            AccessLogMode::On if failure || self.sample_successes >= 100 => true,
            AccessLogMode::On => {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100
                    < u64::from(self.sample_successes)
            }
        }
    }
}

/// Data-plane counters (exported as metrics by the admin API).
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Replays on the other account that got a response.
    pub replays_succeeded: AtomicU64,
    /// Replays on the other account that failed too.
    pub replays_failed: AtomicU64,
    /// Successful requests seen by the access log's sampling.
    pub access_sampled: AtomicU64,
    /// Client connections open now (both listeners), from accept (once `max_connections`
    /// admitted it) until the connection ends.
    pub client_connections: AtomicU64,
}

impl Settings {
    /// The settings a config asks for.
    pub fn from_config(config: &Config) -> Self {
        Settings {
            header_read_timeout: config.limits.header_read_timeout,
            max_request_header_bytes: config.limits.max_request_header_bytes,
            max_request_headers: config.limits.max_request_headers,
            max_uri_bytes: config.limits.max_uri_bytes,
            body_idle_timeout: config.limits.body_idle_timeout,
            send_timeout: config.limits.send_timeout,
            max_connections: config.limits.max_connections,
            http2_max_concurrent_streams: config.limits.http2_max_concurrent_streams,
            client_idle_timeout: config.limits.idle_timeout,
            http2_keepalive_interval: config.limits.http2_keepalive_interval,
            http2_keepalive_timeout: config.limits.http2_keepalive_timeout,
            connect_timeout: config.upstream.connect_timeout,
            response_header_timeout: config.upstream.response_header_timeout,
            read_timeout: config.upstream.read_timeout,
            idle_timeout: config.upstream.idle_timeout,
            max_idle_per_account: config.upstream.max_idle_per_account,
            max_replay_body: config.upstream.max_replay_body,
            retry_on_status: config.upstream.retry_on_status.clone(),
            shutdown_grace: config.runtime.shutdown_grace,
            tenant_label_limit: config.metrics.tenant_label_limit,
            access_log: AccessLog {
                mode: config.log.access,
                sample_successes: config.log.sample_successes,
                query: config.log.query,
            },
        }
    }
}

type UpstreamClient = Client<Counting<HttpConnector>, Body>;
type TlsClient = Client<Counting<hyper_rustls::HttpsConnector<HttpConnector>>, Body>;

pub use pairgate_clientauth::{Gate as ClientGate, PeerIdentity};
pub use pairgate_credentials::{AccountCredential, CredentialMap};
pub use pairgate_tls::{UpstreamTls, UpstreamTlsMap};

/// What one request loads, with one `arc_swap` load: the routing table, and the TLS clients
/// and minted credentials of its accounts (indexed by `AccountId`), which must always agree.
pub(crate) struct Snapshot {
    pub(crate) table: Arc<RouteTable>,
    pub(crate) tls: Vec<Option<TlsClient>>,
    pub(crate) credentials: Vec<Option<AccountCredential>>,
    /// Who may call as each tenant, compiled from the same config as `table` (tenant indices
    /// agree).
    pub(crate) client_auth: Arc<ClientGate>,
}

impl Snapshot {
    fn new(
        table: Arc<RouteTable>,
        tls: &UpstreamTlsMap,
        credentials: &CredentialMap,
        client_auth: &Arc<ClientGate>,
        settings: &Settings,
    ) -> Snapshot {
        let connector = plain_connector(settings);
        Snapshot {
            client_auth: Arc::clone(client_auth),
            tls: tls_clients(&table, tls, settings, &connector),
            credentials: table
                .accounts()
                .iter()
                .map(|a| credentials.get(&a.key).cloned())
                .collect(),
            table,
        }
    }

    /// The credential minted for `account`, if it has one.
    pub(crate) fn credential(
        &self,
        account: pairgate_routing::AccountId,
    ) -> Option<&AccountCredential> {
        self.credentials
            .get(account.index())
            .and_then(Option::as_ref)
    }
}

/// Everything the data plane shares between connections.
pub struct Shared {
    routes: ArcSwap<Snapshot>,
    /// The plain accounts of the current snapshot by authority, for the shared pools'
    /// connector to count connections per account; stored with `routes`.
    plain_accounts: Arc<ArcSwap<ByAuthority>>,
    http1: UpstreamClient,
    http2: UpstreamClient,
    settings: Settings,
    observer: Arc<dyn Observer>,
    stats: ProxyStats,
    metrics: metrics::RequestMetrics,
    /// Every upgraded (WebSocket) tunnel holds a receiver of this channel until it ends, so
    /// shutdown can wait for the tunnels (`closed()`) within the grace period: hyper hands an
    /// upgraded connection over and no longer counts it.
    tunnels: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// Builds the shared state with its upstream clients. `observer` hears about every upstream
    /// outcome (passive health signals).
    pub fn new(
        routes: Arc<RouteTable>,
        tls: &UpstreamTlsMap,
        credentials: &CredentialMap,
        client_auth: &Arc<ClientGate>,
        settings: Settings,
        observer: Arc<dyn Observer>,
    ) -> Arc<Self> {
        let plain_accounts = Arc::new(ArcSwap::from_pointee(ByAuthority::of(&routes)));
        let connector = Counting::shared(plain_connector(&settings), Arc::clone(&plain_accounts));
        let snapshot = Snapshot::new(routes, tls, credentials, client_auth, &settings);
        Arc::new(Shared {
            routes: ArcSwap::from_pointee(snapshot),
            plain_accounts,
            http1: pooled_client(&settings, false, connector.clone()),
            http2: pooled_client(&settings, true, connector),
            observer,
            stats: ProxyStats::default(),
            metrics: metrics::RequestMetrics::default(),
            settings,
            tunnels: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The current routing snapshot.
    pub fn routes(&self) -> Arc<RouteTable> {
        Arc::clone(&self.routes.load().table)
    }

    /// Publishes a new routing snapshot, with TLS clients for its `https://` accounts, the
    /// credentials of its accounts and its client-authentication policy, with one store;
    /// requests in flight keep the one they loaded.
    pub fn swap_routes(
        &self,
        routes: Arc<RouteTable>,
        tls: &UpstreamTlsMap,
        credentials: &CredentialMap,
        client_auth: &Arc<ClientGate>,
    ) {
        // Before the snapshot: a connection its requests open is then counted under the
        // accounts they are sent to.
        self.plain_accounts
            .store(Arc::new(ByAuthority::of(&routes)));
        let snapshot = Snapshot::new(routes, tls, credentials, client_auth, &self.settings);
        self.routes.store(Arc::new(snapshot));
    }

    /// Each account of the current snapshot that has a minted credential, with it (for the
    /// token metrics).
    pub fn account_credentials(&self) -> Vec<(Arc<str>, AccountCredential)> {
        let snapshot = self.routes.load();
        snapshot
            .table
            .accounts()
            .iter()
            .zip(&snapshot.credentials)
            .filter_map(|(a, c)| Some((Arc::clone(&a.name), c.clone()?)))
            .collect()
    }

    /// Request counters and latency histogram.
    pub fn metrics(&self) -> &metrics::RequestMetrics {
        &self.metrics
    }

    /// Data-plane counters.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// The settings this data plane was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// A pooled upstream client over `connector`: the one builder of the plain HTTP/1.1 and h2 pools
/// and of every `https://` account's pool.
fn pooled_client<C>(settings: &Settings, http2_only: bool, connector: C) -> Client<C, Body>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(settings.idle_timeout)
        .pool_max_idle_per_host(settings.max_idle_per_account)
        .http2_only(http2_only)
        .set_host(false)
        .build(connector)
}

fn plain_connector(settings: &Settings) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(settings.connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector
}

/// One pooled TLS client per `https://` account, with that account's roots, client
/// certificate, SNI and ALPN. Accounts without TLS settings get `None`.
fn tls_clients(
    table: &RouteTable,
    tls: &UpstreamTlsMap,
    settings: &Settings,
    connector: &HttpConnector,
) -> Vec<Option<TlsClient>> {
    table
        .accounts()
        .iter()
        .map(|account| {
            let t = tls.get(&account.key)?;
            let https = pairgate_tls::https_connector(t, connector.clone());
            Some(pooled_client(
                settings,
                false,
                Counting::account(https, &account.counters),
            ))
        })
        .collect()
}
