//! One probe: an HTTP request or a TCP connect, bounded by the check's timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pairgate_config::{HealthCheck, ProbeKind};
use pairgate_credentials::AccountCredential;
use pairgate_routing::{Account, local};

/// The longest failure reason a probe keeps, in bytes (it goes into verdicts, events and the
/// tenant detail).
pub const MAX_PROBE_REASON: usize = 256;

/// What one probe found: the result (its label is the metric and verdict label) and, for a
/// failure, why, bounded to [`MAX_PROBE_REASON`] (`tls: invalid peer certificate: Expired`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// What the probe found.
    pub result: ProbeResult,
    /// Why it failed; `None` on success.
    pub reason: Option<Arc<str>>,
}

impl ProbeReport {
    fn failed(result: ProbeResult, reason: impl Into<Arc<str>>) -> ProbeReport {
        ProbeReport {
            result,
            reason: Some(reason.into()),
        }
    }

    /// A failure caused by `err`, its cause chain described.
    fn failed_by(result: ProbeResult, err: &(dyn std::error::Error + 'static)) -> ProbeReport {
        ProbeReport::failed(
            result,
            pairgate_tls::describe_bounded(err, MAX_PROBE_REASON),
        )
    }
}

impl From<ProbeResult> for ProbeReport {
    fn from(result: ProbeResult) -> ProbeReport {
        ProbeReport {
            result,
            reason: None,
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// The account answered as expected.
    Success,
    /// The connection failed or was refused.
    ConnectFailed,
    /// No answer within the timeout.
    Timeout,
    /// An HTTP answer with a status outside the expected ranges.
    BadStatus(u16),
    /// The connection broke mid-exchange.
    Broken,
    /// The gateway itself is out of file descriptors: the probe says nothing about the account
    /// and counts neither way.
    LocalResource,
    /// The account's minted credential has no valid token (its fetch fails, or it expired):
    /// requests cannot be sent there, so the account is as good as down.
    Credential,
}

impl ProbeResult {
    /// Whether the probe counts as a success.
    pub fn is_success(self) -> bool {
        self == ProbeResult::Success
    }

    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            ProbeResult::Success => "success",
            ProbeResult::ConnectFailed => "connect_failed",
            ProbeResult::Timeout => "timeout",
            ProbeResult::BadStatus(_) => "bad_status",
            ProbeResult::Broken => "broken",
            ProbeResult::LocalResource => "local_resource",
            ProbeResult::Credential => "credential",
        }
    }
}

/// Everything needed to probe one account, prepared once.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The account's identity (name and endpoint).
    pub key: Arc<str>,
    /// The account's name, for logs.
    pub name: Arc<str>,
    /// `host:port` to connect to.
    pub authority: http::uri::Authority,
    /// The HTTP probe's full URI (`None` for TCP checks).
    uri: Option<Uri>,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    expect: Vec<(u16, u16)>,
    /// The check's timing and thresholds.
    pub check: HealthCheck,
    /// For `https://` accounts: a client with exactly the data path's TLS settings.
    tls_client: Option<TlsProbeClient>,
    /// The account's health cell, shared with the data plane: its count of consecutive live
    /// 5xx is restarted when the prober ejects the account.
    pub cell: Arc<pairgate_routing::HealthCell>,
    /// The account's minted credential: a probe without a valid token fails with
    /// [`ProbeResult::Credential`]; HTTP probes carry the token as requests do.
    pub credential: Option<AccountCredential>,
    /// The account's counters (probes by result), shared with the metrics.
    pub counters: Arc<pairgate_routing::counters::AccountCounters>,
}

type TlsProbeClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

impl ProbeTarget {
    /// Whether `other` sends the same probe: same check, and the same headers (an account
    /// header from a rotated `${file:...}` secret changes these, not the check).
    pub fn same_probe(&self, other: &ProbeTarget) -> bool {
        self.check == other.check && self.headers == other.headers
    }

    /// Prepares the probe of `account` with its merged `check`; `tls` is the account's TLS
    /// client settings (the same the data path uses), required for `https://` accounts.
    pub fn new(
        account: &Account,
        check: &HealthCheck,
        tls: Option<&pairgate_tls::UpstreamTls>,
        credential: Option<&AccountCredential>,
        connect_timeout: Duration,
    ) -> ProbeTarget {
        let (uri, method, headers, expect) = match &check.kind {
            ProbeKind::Http {
                method,
                path,
                expect,
                headers,
                use_account_prefix,
                use_account_headers,
            } => {
                // The account's prefix is `/`-led without a trailing `/` (or empty), the path
                // `/`-led: joined, they are the URL a request for `path` would reach.
                let path = if *use_account_prefix {
                    format!("{}{path}", account.path_prefix)
                } else {
                    path.clone()
                };
                let uri = Uri::builder()
                    .scheme(account.scheme.clone())
                    .authority(account.authority.clone())
                    .path_and_query(path)
                    .build()
                    .ok();
                let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
                // Account headers first: the probe's own headers, inserted later, replace them.
                let account_headers = use_account_headers
                    .then_some(account.headers.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .cloned();
                let headers = account_headers
                    .chain(headers.iter().filter_map(|(n, v)| {
                        let name = HeaderName::try_from(n.as_str()).ok()?;
                        let mut value = HeaderValue::from_str(v.expose()).ok()?;
                        value.set_sensitive(true);
                        Some((name, value))
                    }))
                    .collect();
                (uri, method, headers, expect.clone())
            }
            ProbeKind::Tcp => (None, Method::GET, Vec::new(), Vec::new()),
        };
        let tls_client = tls.map(|t| tls_probe_client(t, connect_timeout));
        ProbeTarget {
            tls_client,
            key: Arc::clone(&account.key),
            name: Arc::clone(&account.name),
            authority: account.authority.clone(),
            uri,
            method,
            headers,
            expect,
            check: check.clone(),
            cell: Arc::clone(&account.health),
            credential: credential.cloned(),
            counters: Arc::clone(&account.counters),
        }
    }

    /// Whether `other` probes with the same credential (the same provider, sent the same way).
    pub(crate) fn same_credential(&self, other: Option<&AccountCredential>) -> bool {
        match (&self.credential, other) {
            (None, None) => true,
            (Some(a), Some(b)) => a.provider.same_as(&b.provider) && a.send_as == b.send_as,
            _ => false,
        }
    }
}

/// The probes' HTTP client. Pooling is off: every probe opens a fresh connection, so a dead or
/// black-holed listener is seen at once rather than hidden behind a pooled connection.
#[derive(Clone)]
pub struct ProbeClient(Client<HttpConnector, Empty<Bytes>>);

impl ProbeClient {
    /// A client with connect bounded by `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> ProbeClient {
        ProbeClient(unpooled_client(probe_connector(connect_timeout)))
    }
}

/// The probes' TCP connector: connect bounded by `connect_timeout`.
fn probe_connector(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector
}

/// The one builder of probe clients: no pooling, no retry of a canceled request.
fn unpooled_client<C>(connector: C) -> Client<C, Empty<Bytes>>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(0)
        .retry_canceled_requests(false)
        .set_host(true)
        .build(connector)
}

/// A probe client for one TLS account: no pooling, the account's roots, client certificate,
/// SNI and ALPN, so a certificate problem fails the probe exactly as it fails requests.
fn tls_probe_client(tls: &pairgate_tls::UpstreamTls, connect_timeout: Duration) -> TlsProbeClient {
    unpooled_client(pairgate_tls::https_connector(
        tls,
        probe_connector(connect_timeout),
    ))
}

/// A probe that failed for want of the gateway's own descriptors: counted and logged as such.
fn local_failure(kind: local::LocalKind) -> ProbeReport {
    local::LOCAL_ERRORS.record(kind, local::LocalSite::Probe);
    ProbeResult::LocalResource.into()
}

/// Why a credential has no valid token, as a probe failure reason (no secret in it: the
/// provider's errors are scrubbed).
#[derive(Debug)]
struct CredentialProblem(pairgate_credentials::CredentialState);

impl std::fmt::Display for CredentialProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use pairgate_credentials::CredentialState;
        match &self.0 {
            CredentialState::Pending => f.write_str("credential: no token obtained yet"),
            CredentialState::Valid => f.write_str("credential: valid"),
            CredentialState::Expired => f.write_str("credential: the token expired"),
            CredentialState::Failing { cause } => write!(f, "{cause}"),
        }
    }
}

impl std::error::Error for CredentialProblem {}

/// Runs one probe of `target`.
pub async fn probe(client: &ProbeClient, target: &ProbeTarget) -> ProbeReport {
    let timeout = target.check.timeout;
    let token = match &target.credential {
        None => None,
        Some(credential) => match credential.provider.current() {
            Some(token) => Some((token, credential.send_as)),
            None => {
                return ProbeReport::failed(
                    ProbeResult::Credential,
                    pairgate_tls::describe_bounded(
                        &CredentialProblem(credential.provider.state()),
                        MAX_PROBE_REASON,
                    ),
                );
            }
        },
    };
    let timed_out = || {
        ProbeReport::failed(
            ProbeResult::Timeout,
            format!("no answer within {timeout:?}"),
        )
    };
    match &target.uri {
        None => match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect(target.authority.as_str()),
        )
        .await
        {
            Err(_) => timed_out(),
            Ok(Err(err)) => match local::io_local_kind(&err) {
                Some(kind) => local_failure(kind),
                None => ProbeReport::failed_by(ProbeResult::ConnectFailed, &err),
            },
            Ok(Ok(_stream)) => ProbeResult::Success.into(),
        },
        Some(uri) => {
            let mut req = Request::new(Empty::new());
            *req.method_mut() = target.method.clone();
            *req.uri_mut() = uri.clone();
            for (name, value) in &target.headers {
                req.headers_mut().insert(name, value.clone());
            }
            if let Some((token, send_as)) = &token {
                pairgate_credentials::set_authorization(req.headers_mut(), token, *send_as);
                let query = pairgate_credentials::query_with_token(uri.query(), token, *send_as);
                let mut pq = uri.path().to_owned();
                if let Some(q) = query {
                    pq.push('?');
                    pq.push_str(&q);
                }
                let mut parts = uri.clone().into_parts();
                parts.path_and_query = pq.parse().ok();
                if let Ok(with_token) = Uri::from_parts(parts) {
                    *req.uri_mut() = with_token;
                }
            }
            let exchange = async {
                let sent = match &target.tls_client {
                    Some(tls) => tls.request(req).await,
                    None => client.0.request(req).await,
                };
                let resp = sent.map_err(|e| {
                    if let Some(kind) = local::local_kind(&e) {
                        local_failure(kind)
                    } else if e.is_connect() {
                        ProbeReport::failed_by(ProbeResult::ConnectFailed, &e)
                    } else {
                        ProbeReport::failed_by(ProbeResult::Broken, &e)
                    }
                })?;
                let status = resp.status().as_u16();
                // Drain the body so the exchange completes; its content does not matter.
                resp.into_body()
                    .collect()
                    .await
                    .map_err(|e| ProbeReport::failed_by(ProbeResult::Broken, &e))?;
                Ok::<u16, ProbeReport>(status)
            };
            match tokio::time::timeout(timeout, exchange).await {
                Err(_) => timed_out(),
                Ok(Err(report)) => report,
                Ok(Ok(status)) => {
                    if target
                        .expect
                        .iter()
                        .any(|&(lo, hi)| (lo..=hi).contains(&status))
                    {
                        ProbeResult::Success.into()
                    } else {
                        ProbeReport::failed(
                            ProbeResult::BadStatus(status),
                            format!("status {status} is not expected"),
                        )
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe of the only account of a config whose injected header is `key`.
    fn target(key: &str) -> ProbeTarget {
        let text = format!(
            "[health]\nuse_account_headers = true\n[[region]]\nname = \"r\"\n[[account]]\nname = \"a\"\nregion = \"r\"\nurl = \"http://127.0.0.1:9\"\nheaders = {{ x-key = \"{key}\" }}\n[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"a\"\n"
        );
        let config = pairgate_config::load(&text, &|_| None)
            .expect("valid config")
            .config;
        let table = pairgate_routing::RouteTable::compile(&config, 1, None).expect("compiles");
        ProbeTarget::new(
            &table.accounts()[0],
            &config.accounts[0].health,
            None,
            None,
            Duration::from_secs(1),
        )
    }

    /// A rotated account secret changes the probe, so `Monitor::sync` restarts its prober.
    #[test]
    fn a_rotated_account_header_is_another_probe() {
        assert!(target("k1").same_probe(&target("k1")));
        assert!(!target("k1").same_probe(&target("k2")));
    }
}
