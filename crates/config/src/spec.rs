//! TOML schema types: the shape of the file, with values kept loose for `validate`.
//!
//! Every field is optional and every value stays raw (durations and URLs are strings, integers
//! are `i64`), so that serde only fails on TOML syntax and gross type mismatches; everything else
//! is checked by [`validate`](crate::validate), which reports every problem at once. Unknown keys
//! are accepted here and collected by [`parse`](crate::parse) through `serde_ignored`
//! (`deny_unknown_fields` would stop at the first one).

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ConfigSpec {
    /// `[listen]`.
    pub listen: ListenSpec,
    /// `[routing]`.
    pub routing: RoutingSpec,
    /// `[runtime]`.
    pub runtime: RuntimeSpec,
    /// `[limits]`.
    pub limits: LimitsSpec,
    /// `[upstream]`.
    pub upstream: UpstreamSpec,
    /// `[health]`: the default health check of every account.
    pub health: HealthSpec,
    /// `[failover]`: the default failover policy of every tenant.
    pub failover: FailoverSpec,
    /// `[admin]`: the admin API listener and its token.
    pub admin: AdminSpec,
    /// `[state]`: where pins and region states persist.
    pub state: StateSpec,
    /// `[alerts]`: cloud service-health alert receivers.
    pub alerts: AlertsSpec,
    /// `[metrics]`.
    pub metrics: MetricsSpec,
    /// `[log]`: the access log.
    pub log: LogSpec,
    /// `[cluster]`: fleet mode through etcd.
    pub cluster: Option<ClusterSpec>,
    /// `[[region]]`, in file order.
    #[serde(rename = "region")]
    pub regions: Vec<RegionSpec>,
    /// `[[account]]`, in file order.
    #[serde(rename = "account")]
    pub accounts: Vec<AccountSpec>,
    /// `[[tenant]]`, in file order.
    #[serde(rename = "tenant")]
    pub tenants: Vec<TenantSpec>,
    /// `[[certificate]]`, in file order.
    #[serde(rename = "certificate")]
    pub certificates: Vec<CertificateSpec>,
    /// `[azure]`: endpoints of the Azure credential kinds.
    pub azure: AzureSpec,
    /// `[client_auth]`: how clients prove which tenant they are.
    pub client_auth: ClientAuthSpec,
    /// `[[jwt_issuer]]`, in file order.
    #[serde(rename = "jwt_issuer")]
    pub jwt_issuers: Vec<JwtIssuerSpec>,
}

/// `[client_auth]`: gateway-wide client authentication settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ClientAuthSpec {
    /// `required = true`: every tenant must accept at least one credential kind.
    pub required: Option<bool>,
    /// `api_key_header = "x-api-key"`.
    pub api_key_header: Option<String>,
    /// `mtls = "optional" | "required"` (with `[listen] client_ca`).
    pub mtls: Option<String>,
    /// `identity_header = "x-pairgate-client"`; `""` sends no identity upstream.
    pub identity_header: Option<String>,
    /// `jwt_cache_entries = 10000`: verified tokens remembered.
    pub jwt_cache_entries: Option<i64>,
}

/// One `[[jwt_issuer]]`: a token issuer and where its signing keys are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct JwtIssuerSpec {
    /// Unique name, referenced by tenants' `client_auth.jwt_issuers`.
    pub name: Option<String>,
    /// The exact `iss` claim.
    pub issuer: Option<String>,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// A JWKS file.
    pub jwks_file: Option<String>,
    /// A JWKS URL.
    pub jwks_url: Option<String>,
    /// `jwks_refresh = "5m"`.
    pub jwks_refresh: Option<String>,
    /// `jwks_min_refresh = "30s"`.
    pub jwks_min_refresh: Option<String>,
    /// `algorithms = ["ES256", "RS256"]`.
    pub algorithms: Option<Vec<String>>,
    /// `tenant_claim = "tenant"`.
    pub tenant_claim: Option<String>,
    /// `leeway = "30s"`.
    pub leeway: Option<String>,
}

/// `client_auth = { ... }` inside a `[[tenant]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TenantClientAuthSpec {
    /// `"sha256:<hex>"` digests of the tenant's API keys.
    pub api_keys: Vec<String>,
    /// Names of `[[jwt_issuer]]`s whose tokens the tenant accepts.
    pub jwt_issuers: Vec<String>,
    /// `"CN=..."` or URI SANs (`"spiffe://..."`) of accepted client certificates.
    pub mtls_subjects: Vec<String>,
    /// Refuse requests without a credential even when `[client_auth] required` is false.
    pub required: Option<bool>,
}

/// One `[[certificate]]`: a PEM chain and key served for some host names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CertificateSpec {
    /// Host names (exact or `*.` wildcards) this certificate is served for, by SNI.
    pub hosts: Vec<String>,
    /// PEM certificate chain file.
    pub cert: Option<String>,
    /// PEM private key file (PKCS#8, RSA or EC).
    pub key: Option<String>,
    /// Serve this one when SNI matches no entry (or is absent).
    pub default: Option<bool>,
}

/// `[listen]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ListenSpec {
    /// `http = "IP:PORT"`.
    pub http: Option<String>,
    /// `https = "IP:PORT"`.
    pub https: Option<String>,
    /// `client_ca = "clients-ca.pem"`: CA bundle the HTTPS listener verifies client
    /// certificates against.
    pub client_ca: Option<String>,
}

/// `[routing]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RoutingSpec {
    /// `tenant_header = "x-tenant-id"`.
    pub tenant_header: Option<String>,
    /// `forward_tenant_header = true` keeps the tenant header on forwarded requests.
    pub forward_tenant_header: Option<bool>,
}

/// `[runtime]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RuntimeSpec {
    /// `worker_threads = N`.
    pub worker_threads: Option<i64>,
    /// `shutdown_grace = "30s"`.
    pub shutdown_grace: Option<String>,
    /// `shutdown_delay = "2s"`.
    pub shutdown_delay: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AdminSpec {
    /// `listen = "127.0.0.1:9901"`.
    pub listen: Option<String>,
    /// `token_env = "PAIRGATE_ADMIN_TOKEN"`: the environment variable holding the token.
    pub token_env: Option<String>,
    /// `token_file = "/run/secrets/pairgate-admin-token"`.
    pub token_file: Option<String>,
}

/// `[state]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct StateSpec {
    /// `path = "/var/lib/pairgate/state.json"`.
    pub path: Option<String>,
}

/// `[alerts]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AlertsSpec {
    /// `[alerts.azure_monitor]`.
    pub azure_monitor: AzureMonitorSpec,
}

/// `[alerts.azure_monitor]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AzureMonitorSpec {
    /// `services = ["Video Indexer"]`: only incidents naming one of these services count.
    pub services: Option<Vec<String>>,
    /// `scope = "region" | "subscription"`: what an incident acts on.
    pub scope: Option<String>,
    /// `degraded = "ignore" | "down"`: what a Resource Health `Degraded` or `Unknown` does.
    pub degraded: Option<String>,
}

/// `[cluster]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ClusterSpec {
    /// `backend = "etcd"`.
    pub backend: Option<String>,
    /// `endpoints = ["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// `prefix = "/pairgate/"`.
    pub prefix: Option<String>,
    /// `name = "replica-1"` (default: the host name).
    pub name: Option<String>,
    /// `timeout = "2s"`: each etcd call.
    pub timeout: Option<String>,
    /// `lease_ttl = "5s"`: how long a silent replica counts as live.
    pub lease_ttl: Option<String>,
    /// `isolated_failover = "hold" | "act"`.
    pub isolated_failover: Option<String>,
    /// `probers_per_account = 2`.
    pub probers_per_account: Option<i64>,
    /// `username = "pairgate"`: etcd authentication.
    pub username: Option<String>,
    /// `password = "${ETCD_PASSWORD}"`.
    pub password: Option<String>,
    /// PEM CA bundle for `https://` endpoints.
    pub ca: Option<String>,
    /// PEM client certificate for etcd's `--client-cert-auth`.
    pub client_cert: Option<String>,
    /// PEM key of `client_cert`.
    pub client_key: Option<String>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MetricsSpec {
    /// `tenant_label_limit = 100`.
    pub tenant_label_limit: Option<i64>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LogSpec {
    /// `access = "on" | "off" | "errors"`.
    pub access: Option<String>,
    /// Percent of successful requests logged, 0 to 100.
    pub sample_successes: Option<i64>,
    /// Whether the query string is logged.
    pub query: Option<bool>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LimitsSpec {
    /// Duration string, e.g. `"10s"`.
    pub header_read_timeout: Option<String>,
    /// Bytes.
    pub max_request_header_bytes: Option<i64>,
    /// `max_request_headers = 100`.
    pub max_request_headers: Option<i64>,
    /// `max_uri_bytes = 8192`.
    pub max_uri_bytes: Option<i64>,
    /// `max_request_body_bytes = 2147483648`.
    pub max_request_body_bytes: Option<i64>,
    /// `body_idle_timeout = "30s"`.
    pub body_idle_timeout: Option<String>,
    /// `send_timeout = "60s"`.
    pub send_timeout: Option<String>,
    /// `max_connections = 10000`.
    pub max_connections: Option<i64>,
    /// `tenant_max_in_flight = 1000`.
    pub tenant_max_in_flight: Option<i64>,
    /// `http2_max_concurrent_streams = 100`.
    pub http2_max_concurrent_streams: Option<i64>,
    /// `idle_timeout = "60s"`.
    pub idle_timeout: Option<String>,
    /// `http2_keepalive_interval = "30s"`.
    pub http2_keepalive_interval: Option<String>,
    /// `http2_keepalive_timeout = "20s"`.
    pub http2_keepalive_timeout: Option<String>,
}

/// `[upstream]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct UpstreamSpec {
    /// Duration string.
    pub connect_timeout: Option<String>,
    /// Duration string.
    pub response_header_timeout: Option<String>,
    /// Duration string.
    pub read_timeout: Option<String>,
    /// Duration string.
    pub idle_timeout: Option<String>,
    /// Connections.
    pub max_idle_per_account: Option<i64>,
    /// Bytes.
    pub max_replay_body: Option<i64>,
    /// `retry_on_status = [502, 503, 504]`: statuses a replay-safe request is retried on.
    pub retry_on_status: Option<Vec<i64>>,
}

/// `[health]`, or an account's `health = { ... }`; every key unset means "inherit".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct HealthSpec {
    /// `type = "http" | "tcp"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// `/`-led path (and query) probed.
    pub path: Option<String>,
    /// Healthy statuses, each `"NNN"` or `"NNN-NNN"`.
    pub expect: Option<Vec<String>>,
    /// Extra probe headers; values may use `${VAR}`.
    pub headers: Option<HeadersSpec>,
    /// Duration string.
    pub interval: Option<String>,
    /// Duration string.
    pub fast_interval: Option<String>,
    /// Duration string.
    pub timeout: Option<String>,
    /// Consecutive successes.
    pub rise: Option<i64>,
    /// Consecutive failures.
    pub fall: Option<i64>,
    /// Consecutive 5xx or gateway errors from live traffic that eject the account; 0 disables.
    pub passive_consecutive_5xx: Option<i64>,
    /// Duration string: how long an ejection lasts.
    pub passive_ejection: Option<String>,
    /// Prepend the account's `path_prefix` to the probe path.
    pub use_account_prefix: Option<bool>,
    /// Send the account's injected `headers` with the probe.
    pub use_account_headers: Option<bool>,
}

/// `[failover]`, or a tenant's `failover = { ... }`; every key unset means "inherit".
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct FailoverSpec {
    /// `"auto" | "manual"`.
    pub failback: Option<String>,
    /// Duration string.
    pub hold_down: Option<String>,
    /// `"stay" | "reject"`.
    pub both_down: Option<String>,
    /// A number in (0, 1].
    pub region_outage_ratio: Option<f64>,
}

/// One `[[region]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RegionSpec {
    /// Unique name.
    pub name: Option<String>,
    /// Name of the paired region.
    pub pair: Option<String>,
    /// The region's display name in cloud alerts, e.g. `"East US"`.
    pub azure_name: Option<String>,
}

/// One `[[account]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AccountSpec {
    /// Unique name.
    pub name: Option<String>,
    /// Name of a `[[region]]`.
    pub region: Option<String>,
    /// `http://host[:port]`.
    pub url: Option<String>,
    /// Prepended to every forwarded path.
    pub path_prefix: Option<String>,
    /// Injected request headers; values may use `${VAR}`.
    pub headers: Option<HeadersSpec>,
    /// Speak HTTP/2 to the account.
    pub http2: Option<bool>,
    /// Overrides of `[health]` keys.
    pub health: Option<HealthSpec>,
    /// PEM CA bundle to verify this account's certificate (default: the webpki roots).
    pub ca: Option<String>,
    /// Server name sent in SNI and verified (default: the URL's host).
    pub sni: Option<String>,
    /// PEM client certificate chain for mTLS.
    pub client_cert: Option<String>,
    /// PEM client key for mTLS.
    pub client_key: Option<String>,
    /// `auth = { type = "...", ... }` or `[account.auth]`: a credential the gateway mints.
    pub auth: Option<AuthSpec>,
    /// `subscription = "<Azure subscription id>"`: the subscription the account lives in.
    pub subscription: Option<String>,
    /// `resource_id = "/subscriptions/.../providers/Microsoft.VideoIndexer/accounts/..."`: the
    /// account's ARM resource, matched against Resource Health alerts.
    pub resource_id: Option<String>,
}

/// One `[[tenant]]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TenantSpec {
    /// Unique name.
    pub name: Option<String>,
    /// Exact hosts and `*.`-led wildcards.
    pub hosts: Vec<String>,
    /// `/`-led path prefix.
    pub path_prefix: Option<String>,
    /// Name of the primary `[[account]]`.
    pub primary: Option<String>,
    /// Name of the secondary `[[account]]`.
    pub secondary: Option<String>,
    /// Overrides of `[failover]` keys.
    pub failover: Option<FailoverSpec>,
    /// Per-tenant limits.
    pub limits: Option<TenantLimitsSpec>,
    /// Who may call as this tenant.
    pub client_auth: Option<TenantClientAuthSpec>,
}

/// `limits = { ... }` inside a `[[tenant]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TenantLimitsSpec {
    /// Overrides `limits.max_request_body_bytes`.
    pub max_request_body_bytes: Option<i64>,
    /// Overrides `limits.tenant_max_in_flight`.
    pub max_in_flight: Option<i64>,
}

/// A `headers = { name = "value" }` table, in file order, before `${VAR}` expansion.
///
/// `Debug` prints the names only: a literal value may be a credential.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeadersSpec(pub Vec<(String, String)>);

impl fmt::Debug for HeadersSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, _)| (name, "***")))
            .finish()
    }
}

impl<'de> Deserialize<'de> for HeadersSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;

        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = HeadersSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of header names to string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeadersSpec, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, String>()? {
                    entries.push(entry);
                }
                Ok(HeadersSpec(entries))
            }
        }

        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// `[azure]`; every key unset means its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AzureSpec {
    /// Base URL of Azure Resource Manager.
    pub arm_endpoint: Option<String>,
    /// Base URL of Entra ID.
    pub login_endpoint: Option<String>,
    /// Base URL of the Instance Metadata Service.
    pub imds_endpoint: Option<String>,
    /// Base URL of the Video Indexer API.
    pub api_endpoint: Option<String>,
}

/// An account's `auth = { ... }`: every key of every `type`, checked per type by `validate`.
/// `Debug` hides `client_secret` and `api_key` (they may be literals).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AuthSpec {
    /// `static`, `azure-video-indexer`, `video-indexer-classic`, `oauth2-client-credentials`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// ARM id of a Video Indexer account.
    pub resource_id: Option<String>,
    /// `Contributor` or `Reader`.
    pub permission: Option<String>,
    /// `Account`, `Video`, `Project` (azure-video-indexer) or an OAuth 2.0 scope.
    pub scope: Option<String>,
    /// `managed-identity`, `client-secret`, `workload-identity`.
    pub credential: Option<String>,
    /// Entra tenant id.
    pub tenant_id: Option<String>,
    /// Entra application, user-assigned identity or OAuth 2.0 client id.
    pub client_id: Option<String>,
    /// Client secret, normally `${VAR}`.
    pub client_secret: Option<String>,
    /// Workload identity's projected token file.
    pub token_file: Option<String>,
    /// `query` or `header`.
    pub send_as: Option<String>,
    /// Classic API key, normally `${VAR}`.
    pub api_key: Option<String>,
    /// Classic account location.
    pub location: Option<String>,
    /// Classic account id.
    pub account_id: Option<String>,
    /// Classic: ask for an editing token.
    pub allow_edit: Option<bool>,
    /// OAuth 2.0 token endpoint.
    pub token_url: Option<String>,
}

impl fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("AuthSpec")
            .field("kind", &self.kind)
            .field("resource_id", &self.resource_id)
            .field("credential", &self.credential)
            .field("client_id", &self.client_id)
            .field("client_secret", &hidden(&self.client_secret))
            .field("api_key", &hidden(&self.api_key))
            .finish_non_exhaustive()
    }
}
