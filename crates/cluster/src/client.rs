//! [`Etcd`]: the client, one JSON POST per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::b64;
use crate::error::{CODE_NOT_FOUND, EtcdError};
use crate::types::{CasOutcome, KeyValue, Status};
use crate::watch::{LineReader, WatchStream};
use crate::wire;

/// A client for an etcd v3 cluster, speaking its JSON gateway (`/v3/...`) over HTTP/1.1.
///
/// Cheap to clone: clones share the connection pool and the endpoint preference.
///
/// Every call is bounded by the `timeout` given to [`Etcd::new`] (for a watch: until the watch
/// is established). A call goes to the endpoint that last answered; when connecting to it fails
/// it tries the others in order, so one dead member costs a refused connect, not an error. Only
/// connect failures move on: a request that may have reached etcd is never sent twice.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    /// Base URIs, `http://host:port`.
    endpoints: Vec<Uri>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    /// Index of the endpoint that answered last; calls start there.
    preferred: AtomicUsize,
    /// User name and password, when etcd has authentication enabled.
    credentials: Option<(String, String)>,
    /// The token from `/v3/auth/authenticate`, sent as `Authorization` on every call.
    token: std::sync::Mutex<Option<String>>,
}

/// gRPC status etcd answers for a missing or expired auth token.
const CODE_UNAUTHENTICATED: i32 = 16;

/// The gateway's path prefix, after the endpoint's `/`. etcd 3.4 serves `/v3/` (and the
/// deprecated `/v3beta/`); 3.5 and later serve only `/v3/`.
const API: &str = "v3";

impl Etcd {
    /// A client for the cluster reachable at `endpoints` (`http://host:port`, or `host:port`).
    /// Connects lazily: this does no IO.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Self, EtcdError> {
        Self::connect(endpoints, timeout, None, None)
    }

    /// A client for `http://` or `https://` endpoints: `tls` holds the roots (and client
    /// certificate) to use for `https://` (default: the webpki roots); `credentials` a user name
    /// and password when etcd has authentication on.
    pub fn connect(
        endpoints: &[String],
        timeout: Duration,
        credentials: Option<(&str, &str)>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::InvalidEndpoint {
                endpoint: String::new(),
                reason: "no endpoints given".to_owned(),
            });
        }
        let endpoints = endpoints
            .iter()
            .map(|e| parse_endpoint(e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // Split the budget so a black-holed first endpoint leaves time for the next one.
        let per_endpoint = timeout / u32::try_from(endpoints.len()).unwrap_or(u32::MAX);
        connector.set_connect_timeout(Some(per_endpoint.max(Duration::from_millis(1))));
        // Notices a peer that vanished without a FIN (a watch may idle for a long time).
        connector.set_keepalive(Some(Duration::from_secs(30)));
        connector.enforce_http(false);
        let mut tls = match tls {
            Some(config) => (*config).clone(),
            None => default_tls(),
        };
        // The connector sets ALPN itself.
        tls.alpn_protocols.clear();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Etcd {
            inner: Arc::new(Inner {
                endpoints,
                client,
                timeout,
                preferred: AtomicUsize::new(0),
                credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
                token: std::sync::Mutex::new(None),
            }),
        })
    }

    /// A client that authenticates as `user` (etcd with authentication enabled): it gets a
    /// token on first use and again whenever etcd says the token is no longer valid.
    pub fn new_with_credentials(
        endpoints: &[String],
        timeout: Duration,
        user: &str,
        password: &str,
    ) -> Result<Self, EtcdError> {
        Self::connect(endpoints, timeout, Some((user, password)), None)
    }

    /// Replaces the auth token with one etcd does not know (tests only: an expired token).
    #[cfg(feature = "testing")]
    pub fn invalidate_token_for_test(&self) {
        *self.inner.token.lock().unwrap_or_else(|p| p.into_inner()) = Some("expired.1".to_owned());
    }

    /// Gets a fresh token with the configured credentials.
    async fn authenticate(&self) -> Result<(), EtcdError> {
        let Some((user, password)) = &self.inner.credentials else {
            return Ok(());
        };
        // The stale token must not ride along: etcd refuses the request that carries it.
        *self.inner.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let deadline = Instant::now() + self.inner.timeout;
        let body = json!({ "name": user, "password": password });
        let response = self.send("/auth/authenticate", &body, deadline).await?;
        let bytes = tokio::time::timeout_at(deadline, response.into_body().collect())
            .await
            .map_err(|_| EtcdError::Timeout)?
            .map_err(|e| EtcdError::Unavailable(format!("authenticating: {}", chain(&e))))?
            .to_bytes();
        let answer = parse_json(&bytes)?;
        if let Some(err) = wire::error(&answer) {
            return Err(err);
        }
        let token = wire::string(&answer, "token").to_owned();
        if token.is_empty() {
            return Err(EtcdError::Protocol(
                "authenticate answered no token".to_owned(),
            ));
        }
        *self.inner.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
        Ok(())
    }

    /// Whether a call failed because the token is missing or expired (and credentials can fix
    /// that).
    fn needs_token(&self, err: &EtcdError) -> bool {
        self.inner.credentials.is_some()
            && matches!(err, EtcdError::Status { code, message }
                if *code == CODE_UNAUTHENTICATED || message.contains("auth token") || message.contains("user name is empty"))
    }

    /// The endpoints, as parsed.
    pub fn endpoints(&self) -> &[Uri] {
        &self.inner.endpoints
    }

    /// The answering member's status (`/v3/maintenance/status`): a health check.
    pub async fn status(&self) -> Result<Status, EtcdError> {
        let answer = self.call("/maintenance/status", json!({})).await?;
        Ok(Status {
            revision: wire::header_revision(&answer)?,
            leader: wire::uint(&answer, "leader")?,
            member_id: answer
                .get("header")
                .map_or(Ok(0), |h| wire::uint(h, "member_id"))?,
            version: wire::string(&answer, "version").to_owned(),
        })
    }

    /// The key `key`, if it exists (a linearizable read).
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let answer = self
            .call("/kv/range", json!({ "key": b64::encode(key.as_bytes()) }))
            .await?;
        Ok(wire::kvs(&answer)?.into_iter().next())
    }

    /// Every key starting with `prefix`, in key order, and the store revision they were read at
    /// (watch from that revision + 1 to see every later change).
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let (key, range_end) = prefix_range(prefix);
        let answer = self
            .call("/kv/range", json!({ "key": key, "range_end": range_end }))
            .await?;
        Ok((wire::kvs(&answer)?, wire::header_revision(&answer)?))
    }

    /// Writes `key`, attached to `lease` if given; returns the revision of the write.
    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<i64, EtcdError> {
        let answer = self.call("/kv/put", put_request(key, value, lease)).await?;
        wire::header_revision(&answer)
    }

    /// Deletes `key`; true if it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, EtcdError> {
        let answer = self
            .call(
                "/kv/deleterange",
                json!({ "key": b64::encode(key.as_bytes()) }),
            )
            .await?;
        Ok(wire::int(&answer, "deleted")? > 0)
    }

    /// Compare-and-swap: writes `value` only if the key's `mod_revision` is
    /// `expected_mod_revision` (0: only if the key does not exist). One transaction, so two
    /// writers with the same expectation cannot both win.
    pub async fn put_if_revision(
        &self,
        key: &str,
        value: &[u8],
        expected_mod_revision: i64,
        lease: Option<i64>,
    ) -> Result<CasOutcome, EtcdError> {
        let key64 = b64::encode(key.as_bytes());
        let txn = json!({
            "compare": [{
                "key": key64,
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": expected_mod_revision.to_string(),
            }],
            "success": [{ "request_put": put_request(key, value, lease) }],
            "failure": [{ "request_range": { "key": key64 } }],
        });
        let answer = self.call("/kv/txn", txn).await?;
        if wire::boolean(&answer, "succeeded") {
            return Ok(CasOutcome::Written {
                revision: wire::header_revision(&answer)?,
            });
        }
        let range = wire::list(&answer, "responses")
            .first()
            .and_then(|r| r.get("response_range"))
            .ok_or_else(|| EtcdError::Protocol("failed txn without its range".to_owned()))?;
        Ok(CasOutcome::Conflict {
            current: wire::kvs(range)?.into_iter().next(),
        })
    }

    /// Grants a lease of `ttl` (rounded up to whole seconds; etcd may raise it to its minimum,
    /// about 1.5 × the election timeout); returns its ID.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let answer = self
            .call("/lease/grant", json!({ "TTL": secs.max(1).to_string() }))
            .await?;
        match wire::int(&answer, "ID")? {
            0 => Err(EtcdError::Protocol("lease grant without an ID".to_owned())),
            id => Ok(id),
        }
    }

    /// Refreshes `lease` once; returns its remaining TTL. An expired or revoked lease is
    /// [`EtcdError::Status`] with [`CODE_NOT_FOUND`] (see [`EtcdError::is_not_found`]).
    pub async fn keep_alive(&self, lease: i64) -> Result<Duration, EtcdError> {
        // A bidirectional stream in gRPC; over the gateway the request body holds one request,
        // so etcd answers once and ends the stream.
        let deadline = Instant::now() + self.inner.timeout;
        let request = json!({ "ID": lease.to_string() });
        let response = self.send("/lease/keepalive", &request, deadline).await?;
        let mut lines = LineReader::new(response.into_body());
        let mut ttl = None;
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .map_err(|_| EtcdError::Timeout)?
                .map_err(|e| EtcdError::Unavailable(format!("keepalive stream: {e}")))?;
            let Some(line) = line else { break };
            let message = parse_json(&line)?;
            if let Some(err) = wire::error(&message) {
                return Err(err);
            }
            if let Some(result) = message.get("result")
                && ttl.is_none()
            {
                ttl = Some(wire::int(result, "TTL")?);
            }
        }
        match ttl {
            Some(ttl) if ttl > 0 => Ok(Duration::from_secs(ttl.unsigned_abs())),
            Some(_) => Err(EtcdError::Status {
                code: CODE_NOT_FOUND,
                message: format!("lease {lease} not found (expired or revoked)"),
            }),
            None => Err(EtcdError::Unavailable(
                "keepalive stream ended without an answer".to_owned(),
            )),
        }
    }

    /// Revokes `lease`, deleting every key attached to it. Idempotent: a lease that is already
    /// gone (expired or revoked) is not an error.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        match self
            .call("/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Compacts the history up to `revision`: older revisions can no longer be watched from.
    /// Mostly for tests; etcd's auto-compaction does this in production.
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        self.call(
            "/kv/compaction",
            json!({ "revision": revision.to_string(), "physical": true }),
        )
        .await
        .map(drop)
    }

    /// Watches every key starting with `prefix`, from `start_revision` (0: from now on).
    ///
    /// Returns once etcd confirmed the watch (bounded by the timeout). The stream then yields
    /// each revision's events in order and has no timeout; it ends with an error when the
    /// connection breaks ([`EtcdError::Unavailable`]) or the start revision was compacted away
    /// ([`EtcdError::Compacted`]). Either way the caller resyncs: [`Etcd::get_prefix`], then
    /// watch from its revision + 1.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<WatchStream, EtcdError> {
        let deadline = Instant::now() + self.inner.timeout;
        let (key, range_end) = prefix_range(prefix);
        let mut create = json!({ "key": key, "range_end": range_end });
        if start_revision > 0 {
            create["start_revision"] = Value::String(start_revision.to_string());
        }
        let request = json!({ "create_request": create });
        if self.inner.credentials.is_some()
            && self
                .inner
                .token
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
        {
            self.authenticate().await?;
        }
        let response = match self.send("/watch", &request, deadline).await {
            Err(err) if self.needs_token(&err) => {
                self.authenticate().await?;
                self.send("/watch", &request, deadline).await?
            }
            other => other?,
        };
        let mut stream = WatchStream::new(LineReader::new(response.into_body()));
        tokio::time::timeout_at(deadline, stream.created())
            .await
            .map_err(|_| EtcdError::Timeout)??;
        Ok(stream)
    }

    /// A unary call: POST `body` to the gateway's `path`, bounded by the timeout, and return
    /// the answer's JSON (an etcd error answer becomes [`EtcdError::Status`]).
    pub(crate) async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        if self.inner.credentials.is_some()
            && self
                .inner
                .token
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
        {
            self.authenticate().await?;
        }
        match self.call_once(path, &body).await {
            // An expired or revoked token was refused before anything ran: get a new one and
            // send again, once.
            Err(err) if self.needs_token(&err) => {
                self.authenticate().await?;
                self.call_once(path, &body).await
            }
            other => other,
        }
    }

    async fn call_once(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let body = body.clone();
        let deadline = Instant::now() + self.inner.timeout;
        let response = self.send(path, &body, deadline).await?;
        let bytes = tokio::time::timeout_at(deadline, response.into_body().collect())
            .await
            .map_err(|_| EtcdError::Timeout)?
            .map_err(|e| EtcdError::Unavailable(format!("reading {path}: {}", chain(&e))))?
            .to_bytes();
        let answer = parse_json(&bytes)?;
        match wire::error(&answer) {
            Some(err) => Err(err),
            None => Ok(answer),
        }
    }

    /// Sends `body` to `path` on the preferred endpoint, moving on to the next on a connect
    /// failure, until `deadline`. Returns the response head; a non-200 answer is turned into
    /// its error here.
    async fn send(
        &self,
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Response<Incoming>, EtcdError> {
        let inner = &*self.inner;
        let body = Bytes::from(body.to_string());
        let count = inner.endpoints.len();
        let first = inner.preferred.load(Ordering::Relaxed) % count;
        let mut failures = Vec::new();
        for index in (first..count).chain(0..first) {
            let base = &inner.endpoints[index];
            let uri = format!("{base}{API}{path}");
            let mut builder = Request::builder()
                .method(Method::POST)
                .uri(&uri)
                .header(header::CONTENT_TYPE, "application/json");
            let token = inner
                .token
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(token) = token {
                builder = builder.header(header::AUTHORIZATION, token);
            }
            let request = builder
                .body(Full::new(body.clone()))
                .map_err(|e| EtcdError::Protocol(format!("building request for {uri}: {e}")))?;
            let outcome = tokio::time::timeout_at(deadline, inner.client.request(request)).await;
            match outcome {
                Err(_) => return Err(EtcdError::Timeout),
                Ok(Ok(response)) => {
                    if index != first {
                        tracing::info!(endpoint = %base, "etcd: switched endpoint");
                        inner.preferred.store(index, Ordering::Relaxed);
                    }
                    return check_status(path, response, deadline).await;
                }
                Ok(Err(e)) if e.is_connect() => {
                    tracing::debug!(endpoint = %base, error = %chain(&e), "etcd: connect failed");
                    failures.push(format!("{base}: {}", chain(&e)));
                }
                Ok(Err(e)) => {
                    return Err(EtcdError::Unavailable(format!("{uri}: {}", chain(&e))));
                }
            }
        }
        Err(EtcdError::Unavailable(failures.join("; ")))
    }
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.inner.endpoints)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Passes a 200 through; reads any other answer's body as the gateway's error JSON.
async fn check_status(
    path: &str,
    response: Response<Incoming>,
    deadline: Instant,
) -> Result<Response<Incoming>, EtcdError> {
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(response);
    }
    let bytes = tokio::time::timeout_at(deadline, response.into_body().collect())
        .await
        .map_err(|_| EtcdError::Timeout)?
        .map_err(|e| EtcdError::Unavailable(format!("reading {path}: {}", chain(&e))))?
        .to_bytes();
    let error = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|answer| wire::error(&answer));
    Err(error.unwrap_or_else(|| {
        EtcdError::Protocol(format!(
            "{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    }))
}

/// TLS to etcd without a configured CA: the webpki roots, ring provider.
fn default_tls() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        // The ring provider supports the safe default versions: building cannot fail.
        .expect("ring supports TLS 1.2 and 1.3")
}

/// Parses one JSON answer.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, EtcdError> {
    serde_json::from_slice(bytes).map_err(|e| {
        EtcdError::Protocol(format!(
            "invalid JSON ({e}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    })
}

/// `key` and `range_end` (base64) selecting every key under `prefix`. etcd rejects an empty key,
/// so the empty prefix becomes `\0`..`\0`: the whole keyspace.
fn prefix_range(prefix: &str) -> (String, String) {
    let key: &[u8] = if prefix.is_empty() {
        b"\0"
    } else {
        prefix.as_bytes()
    };
    (
        b64::encode(key),
        b64::encode(&wire::prefix_end(prefix.as_bytes())),
    )
}

/// A `PutRequest`.
fn put_request(key: &str, value: &[u8], lease: Option<i64>) -> Value {
    let mut put = json!({ "key": b64::encode(key.as_bytes()), "value": b64::encode(value) });
    if let Some(lease) = lease {
        put["lease"] = Value::String(lease.to_string());
    }
    put
}

/// `http://host:port` (a bare `host:port` gets `http://`); https and paths are refused.
fn parse_endpoint(endpoint: &str) -> Result<Uri, EtcdError> {
    let invalid = |reason: &str| EtcdError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let text = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let uri: Uri = text
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("only http:// and https:// are supported"));
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("no host"));
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("an endpoint has no path"));
    }
    let scheme = uri.scheme_str().unwrap_or("http");
    format!("{scheme}://{authority}/")
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))
}

/// An error and its sources, joined: hyper's top-level messages alone say little.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let ok = |e: &str| parse_endpoint(e).unwrap().to_string();
        assert_eq!(ok("http://127.0.0.1:2379"), "http://127.0.0.1:2379/");
        assert_eq!(ok("127.0.0.1:2379"), "http://127.0.0.1:2379/");
        assert_eq!(ok("http://etcd-1:2379/"), "http://etcd-1:2379/");
        assert_eq!(ok("https://etcd-1:2379"), "https://etcd-1:2379/");
        for bad in [
            "ftp://h:2379",
            "http://h:2379/v3",
            "http://",
            "ht tp://x",
            "unix:///x",
        ] {
            assert!(
                matches!(parse_endpoint(bad), Err(EtcdError::InvalidEndpoint { .. })),
                "{bad}"
            );
        }
        assert!(Etcd::new(&[], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_range("a/"), (b64::encode(b"a/"), b64::encode(b"a0")));
        assert_eq!(prefix_range(""), (b64::encode(b"\0"), b64::encode(b"\0")));
    }
}
