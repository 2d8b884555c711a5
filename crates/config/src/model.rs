//! The validated configuration: what `validate` produces and `pairgate-routing` compiles.
//!
//! Everything here is already checked: names are unique, references resolve to indices, URLs are
//! parsed, durations are durations and `${VAR}` references are expanded into [`Secret`]s.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A value that came from the environment (`${VAR}`) or is otherwise sensitive.
///
/// `Debug` and `Display` print `***`, so a secret cannot leak through a log line or an error
/// message by accident; [`Secret::expose`] is the one explicit way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a sensitive value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself. Call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[listen]`.
    pub listen: Listen,
    /// `[routing]`.
    pub routing: Routing,
    /// `[runtime]`.
    pub runtime: Runtime,
    /// `[limits]`: what a client may send and how long it may take.
    pub limits: Limits,
    /// `[upstream]`: how pairgate talks to accounts.
    pub upstream: Upstream,
    /// `[health]`: the default health check; each account holds its merged copy.
    pub health: HealthCheck,
    /// `[failover]`: the default policy; each tenant holds its merged copy.
    pub failover: FailoverPolicy,
    /// `[admin]`.
    pub admin: Admin,
    /// `[state]`.
    pub state: StateConfig,
    /// `[alerts]`.
    pub alerts: Alerts,
    /// `[metrics]`.
    pub metrics: Metrics,
    /// `[log]`.
    pub log: LogConfig,
    /// `[cluster]`: fleet mode, when set.
    pub cluster: Option<Cluster>,
    /// `[[region]]`, in file order.
    pub regions: Vec<RegionConfig>,
    /// `[[account]]`, in file order.
    pub accounts: Vec<AccountConfig>,
    /// `[[tenant]]`, in file order.
    pub tenants: Vec<TenantConfig>,
    /// `[[certificate]]`, in file order.
    pub certificates: Vec<CertificateConfig>,
    /// `[azure]`: endpoints of the Azure credential kinds.
    pub azure: crate::AzureEndpoints,
    /// `[client_auth]` and `[[jwt_issuer]]`: how clients authenticate.
    pub client_auth: crate::ClientAuth,
}

/// `[listen]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Plain HTTP listener (HTTP/1.1 and h2c prior knowledge). Default `127.0.0.1:8080`.
    pub http: SocketAddr,
    /// HTTPS listener (TLS 1.2/1.3, ALPN h2 and http/1.1), when set; needs `[[certificate]]`s.
    pub https: Option<SocketAddr>,
    /// CA bundle client certificates are verified against, as written (relative to the
    /// config file's directory); `None`: no client certificate is asked for.
    pub client_ca: Option<std::path::PathBuf>,
}

/// One `[[certificate]]`. Paths are as written: relative ones are relative to the config file's
/// directory, resolved by whoever reads the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateConfig {
    /// Exact host names, lower-cased.
    pub hosts: Vec<String>,
    /// Wildcard suffixes: `*.example.com` stored as `example.com`.
    pub wildcards: Vec<String>,
    /// PEM chain file.
    pub cert: std::path::PathBuf,
    /// PEM key file.
    pub key: std::path::PathBuf,
    /// Served when SNI matches nothing.
    pub default: bool,
}

/// An `https://` account's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountTls {
    /// CA bundle file; `None` means the webpki roots.
    pub ca: Option<std::path::PathBuf>,
    /// SNI and verified name; `None` means the URL's host.
    pub sni: Option<String>,
    /// Client certificate chain and key files, for mTLS.
    pub client_auth: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// `[routing]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    /// Lower-cased header name that names the tenant, for trusted front ends.
    pub tenant_header: Option<String>,
    /// Whether the tenant header is sent on to the account (default: removed).
    pub forward_tenant_header: bool,
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// Tokio worker threads; `None` means one per core.
    pub worker_threads: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT. Default 30s.
    pub shutdown_grace: Duration,
    /// How long `/readyz` answers 503 after SIGTERM/SIGINT while the listeners still accept,
    /// so a load balancer stops sending before they close. Default 0s.
    pub shutdown_delay: Duration,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Admin API listener. Default `127.0.0.1:9901`.
    pub listen: SocketAddr,
    /// Environment variable that holds the bearer token. Default `PAIRGATE_ADMIN_TOKEN`.
    pub token_env: String,
    /// A file holding the token (trailing whitespace ignored); used when the variable is unset.
    pub token_file: Option<std::path::PathBuf>,
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateConfig {
    /// Where tenant pins and region states persist across restarts; `None` keeps them in memory.
    pub path: Option<std::path::PathBuf>,
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Alerts {
    /// `[alerts.azure_monitor] services`: when non-empty, only incidents that name one of these
    /// services (case-insensitive) act on regions.
    pub azure_monitor_services: Vec<String>,
    /// `[alerts.azure_monitor] scope`: what a Service Health incident acts on.
    pub azure_monitor_scope: AlertScope,
    /// `[alerts.azure_monitor] degraded = "down"`: a Resource Health `Degraded` or `Unknown`
    /// holds the account down like `Unavailable` (default false: ignored).
    pub degraded_is_down: bool,
}

/// What a Service Health incident acts on (`[alerts.azure_monitor] scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertScope {
    /// Every account of the impacted regions: the region is held down (the default).
    #[default]
    Region,
    /// Only the impacted regions' accounts in the subscription the incident was sent for:
    /// each is held down, other subscriptions' accounts are untouched.
    Subscription,
}

/// What a replica cut off from etcd does (`isolated_failover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolatedFailover {
    /// Keep the last committed decisions (the default): a replica that cannot see the fleet
    /// cannot tell its own network trouble from an account's, and acting alone is exactly how
    /// replicas drift apart.
    Hold,
    /// Decide alone from local probes until etcd is back (then the fleet's decisions win).
    Act,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// etcd client URLs (`http://host:port`).
    pub endpoints: Vec<String>,
    /// Key prefix, ending in `/`. Default `/pairgate/`.
    pub prefix: String,
    /// This replica's name; `None` means the host name (resolved by the binary).
    pub name: Option<String>,
    /// Per-call etcd timeout. Default 2s.
    pub timeout: Duration,
    /// Lease TTL of this replica's presence and health verdicts. Default 5s.
    pub lease_ttl: Duration,
    /// Default `hold`.
    pub isolated_failover: IsolatedFailover,
    /// How many live replicas probe each account (rendezvous hashing). Default 2.
    pub probers_per_account: usize,
    /// etcd user name and password (from `${VAR}`), when etcd has authentication on.
    pub credentials: Option<(String, Secret)>,
    /// TLS to `https://` endpoints: CA bundle and client certificate (no `sni`: each endpoint's
    /// host is verified).
    pub tls: AccountTls,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Tenants that get their own label value in per-tenant metrics; the rest share `_other`.
    /// Default 100.
    pub tenant_label_limit: usize,
}

/// `[log]`: which requests the access log writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Which requests get a line.
    pub access: AccessLogMode,
    /// Percent (0..=100) of successful requests (status below 400, no error) logged.
    pub sample_successes: u8,
    /// Whether the query string is logged (it may carry tokens). Default false.
    pub query: bool,
}

/// `[log] access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogMode {
    /// Every request (subject to `sample_successes`). The default.
    On,
    /// No access log.
    Off,
    /// Only failed requests (an error code, or a status of 400 and above).
    Errors,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a complete request head; also the HTTP/1 keep-alive idle
    /// timeout, since hyper starts the same timer while waiting for the next request.
    /// Default 10s.
    pub header_read_timeout: Duration,
    /// Largest request head (request line plus headers) in bytes; larger gets 431. Default 64 KiB.
    pub max_request_header_bytes: usize,
    /// Most header fields in a request; more gets 431. Default 100.
    pub max_request_headers: usize,
    /// Longest request target (path and query) in bytes; longer gets 414. Default 8 KiB.
    pub max_uri_bytes: usize,
    /// Largest request body in bytes; larger gets 413. Default 2 GiB; per tenant overridable.
    pub max_request_body_bytes: u64,
    /// Longest wait for the next piece of a request body; then 408. Default 30s.
    pub body_idle_timeout: Duration,
    /// Longest a write to a client may wait (a client that stopped reading); then the
    /// connection closes. Default 60s.
    pub send_timeout: Duration,
    /// Most client connections open at once; beyond it new ones get 503 and are closed.
    /// Default 10 000.
    pub max_connections: usize,
    /// Most requests of one tenant in flight at once; beyond it 503 at once. Default 1000; per
    /// tenant overridable.
    pub tenant_max_in_flight: usize,
    /// HTTP/2 streams a client may open at once on one connection. Default 100.
    pub http2_max_concurrent_streams: u32,
    /// An HTTP/2 connection with no open stream for this long gets GOAWAY and is closed
    /// (HTTP/1 connections are governed by `header_read_timeout`). Default 60s.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is PINGed. Default 30s.
    pub http2_keepalive_interval: Duration,
    /// How long an HTTP/2 PING may go unanswered before the connection is closed. Default 20s.
    pub http2_keepalive_timeout: Duration,
}

/// A tenant's limits: `[limits]` merged with the tenant's `limits = { ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// Largest request body in bytes.
    pub max_request_body_bytes: u64,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
}

/// `[upstream]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// TCP connect timeout to an account. Default 2s.
    pub connect_timeout: Duration,
    /// Time from sending the request until the response head arrives. Default 30s.
    pub response_header_timeout: Duration,
    /// Longest pause between two pieces of a response body; then the response is cut (the
    /// client's connection closes). Default 60s.
    pub read_timeout: Duration,
    /// How long an idle pooled upstream connection is kept. Default 90s.
    pub idle_timeout: Duration,
    /// Idle pooled connections kept per account endpoint. Default 256.
    pub max_idle_per_account: usize,
    /// Largest request body buffered so a failed request can be replayed on the other account.
    /// Default 64 KiB; larger bodies are streamed and never replayed.
    pub max_replay_body: usize,
    /// `retry_on_status`: a replay-safe request answered with one of these statuses is sent
    /// once to the tenant's other account (when healthy). Default empty.
    pub retry_on_status: Vec<u16>,
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// An HTTP request; healthy when the status falls in one of `expect`.
    Http {
        /// Request method, upper-case. Default `GET`.
        method: String,
        /// Path (and query) probed, `/`-led. Sent as is unless `use_account_prefix`. Default
        /// `/healthz`.
        path: String,
        /// Inclusive status ranges that count as healthy. Default `[200..=399]`.
        expect: Vec<(u16, u16)>,
        /// Extra request headers; values may come from `${VAR}`. They replace account headers
        /// of the same name when `use_account_headers` is on.
        headers: Vec<(String, Secret)>,
        /// Prepend the account's `path_prefix` to `path`, so the probe reaches the same
        /// per-account URL space as requests. Default false.
        use_account_prefix: bool,
        /// Send the account's injected headers (its credentials) with the probe. Default false.
        use_account_headers: bool,
    },
    /// A TCP connect; healthy when it completes within the timeout.
    Tcp,
}

/// An active health check (`[health]`, or `health = { ... }` in an `[[account]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `type = "http" | "tcp"` plus the HTTP fields.
    pub kind: ProbeKind,
    /// Time between probes (each jittered by about ±10%). Default 2s.
    pub interval: Duration,
    /// Time between probes while the account is in transition (rise or fall counting has
    /// started). Default: a quarter of `interval`, at least 100ms.
    pub fast_interval: Duration,
    /// Probe timeout. Default 1s; must be less than `interval`.
    pub timeout: Duration,
    /// Consecutive successes to become healthy. Default 2.
    pub rise: u32,
    /// Consecutive failures to become unhealthy. Default 3.
    pub fall: u32,
    /// Consecutive 5xx answers or gateway errors from live traffic that eject the account
    /// (unhealthy for `passive_ejection`, whatever the probes say); a success from live traffic
    /// resets the count. 0 disables. Default 5.
    pub passive_consecutive_5xx: u32,
    /// How long an ejection lasts; then probes must pass `rise` times again. Default 30s.
    pub passive_ejection: Duration,
}

/// `failback = "auto" | "manual"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    /// Return to the primary once it has been healthy for `hold_down`.
    Auto,
    /// Stay on the secondary until an operator acts.
    Manual,
}

/// `both_down = "stay" | "reject"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BothDown {
    /// Keep the current side and still attempt requests.
    Stay,
    /// Answer 503 with `Retry-After`.
    Reject,
}

/// A failover policy (`[failover]`, or the same keys inside a `[[tenant]]`'s `failover = { ... }`).
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverPolicy {
    /// Default `auto`.
    pub failback: Failback,
    /// Uninterrupted health the primary needs before an automatic failback. Default 30s.
    pub hold_down: Duration,
    /// Default `stay`.
    pub both_down: BothDown,
    /// Share of a region's accounts that must be unhealthy for the region to count as down; only
    /// for regions with two or more accounts. Default 0.5, within (0, 1].
    pub region_outage_ratio: f64,
}

/// One `[[region]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionConfig {
    /// Unique name, e.g. `eastus`.
    pub name: String,
    /// Index into [`Config::regions`] of the paired region, if any.
    pub pair: Option<usize>,
    /// The region's name in cloud alerts (`azure_name`), if set.
    pub azure_name: Option<String>,
}

/// URL scheme of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://` (TLS lands with the TLS issue; until then validation rejects it).
    Https,
}

/// One `[[account]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// Unique name.
    pub name: String,
    /// Index into [`Config::regions`].
    pub region: usize,
    /// Scheme of `url`.
    pub scheme: Scheme,
    /// `host[:port]` of `url`, lower-cased, exactly as it is sent in `Host`.
    pub authority: String,
    /// Prepended to every forwarded path; empty or `/`-led without a trailing `/`.
    pub path_prefix: String,
    /// Headers injected into every request to this account, replacing client values. Names are
    /// lower-cased and valid header names; values are valid header values.
    pub headers: Vec<(String, Secret)>,
    /// Speak HTTP/2 (h2c prior knowledge for `http://`) to this account. Default false.
    pub http2: bool,
    /// `[health]` merged with this account's `health = { ... }`.
    pub health: HealthCheck,
    /// TLS settings, for `https://` accounts only.
    pub tls: Option<AccountTls>,
    /// `auth = { ... }`: a credential the gateway mints for this account; `None` when unset.
    pub auth: Option<crate::AccountAuth>,
    /// The Azure subscription id the account lives in, lower-cased: `subscription`, else the
    /// one in `auth.resource_id`. Service Health incidents with
    /// `[alerts.azure_monitor] scope = "subscription"` act only on their subscription's accounts.
    pub subscription: Option<String>,
    /// The account's ARM resource id, lower-cased (ARM ids compare case-insensitively):
    /// `resource_id`, else `auth.resource_id`. Resource Health alerts for it hold it down.
    pub resource_id: Option<String>,
}

/// One `[[tenant]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    /// Unique name; also the value of the tenant header.
    pub name: String,
    /// Exact host names, lower-cased, without port or trailing dot.
    pub hosts: Vec<String>,
    /// Wildcard suffixes: `*.contoso.example.com` is stored as `contoso.example.com`.
    pub wildcards: Vec<String>,
    /// `/`-led path prefix without a trailing `/`, or `None`.
    pub path_prefix: Option<String>,
    /// Index into [`Config::accounts`].
    pub primary: usize,
    /// Index into [`Config::accounts`], if the tenant has failover.
    pub secondary: Option<usize>,
    /// `[failover]` merged with this tenant's `failover = { ... }`.
    pub failover: FailoverPolicy,
    /// `[limits]` merged with this tenant's `limits = { ... }`.
    pub limits: TenantLimits,
    /// `client_auth = { ... }`: who may call as this tenant.
    pub client_auth: crate::TenantClientAuth,
}
