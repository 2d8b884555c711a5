//! The request's way through, top to bottom: resolve, pick the active account, rewrite, send,
//! stream back.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pairgate_routing::{Account, AccountId, Health, RouteTable, Side, Tenant, TenantId};

use crate::body::BodyVerdict;
use crate::body::{HoldingBody, InFlight, LimitedBody, Prefixed};
use crate::head_wait::{Head, wait_for_head};
use crate::headers::{is_upgrade_request, rewrite_request, strip_hop_by_hop};
use crate::{AccountCredential, Body, ErrorKind, ProxyError, Shared, Snapshot};
use pairgate_credentials::{Rejection, Token};

/// What happened when a request was sent to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// A response head arrived with this status.
    Response(StatusCode),
    /// The attempt failed before a response head.
    Failed(ErrorKind),
    /// The account answered 401 to a token minted after it had rejected the one before: it
    /// refuses the gateway's credential (a passive failure signal).
    CredentialRefused,
}

/// Hears every upstream outcome: the passive health signal from live traffic.
pub trait Observer: Send + Sync + 'static {
    /// Called once per upstream attempt, on the request's task. Must not block.
    fn upstream_outcome(&self, account: &Account, outcome: UpstreamOutcome);
}

/// An [`Observer`] that ignores everything.
impl Observer for () {
    fn upstream_outcome(&self, _: &Account, _: UpstreamOutcome) {}
}

/// What the access log and the metrics say about one request.
#[derive(Default)]
struct Trace {
    /// The snapshot the request was routed with: names and counters are read from it at the
    /// end (one `Arc` clone instead of one per name).
    table: Option<Arc<RouteTable>>,
    tenant: Option<TenantId>,
    /// The account that answered (the replay's target after a replay).
    account: Option<AccountId>,
    /// The side of `account` (the other side after a replay).
    side: Option<Side>,
    generation: u64,
    /// Why the request failed, with its cause.
    error: Option<ProxyError>,
    /// Set when the request was replayed on the other account after this failure.
    replayed_after: Option<ProxyError>,
    /// The request id sent upstream (the client's when valid, else generated).
    request_id: Option<HeaderValue>,
    /// When the request was first sent upstream, and how long until the response head.
    sent: Option<Instant>,
    ttfb: Option<std::time::Duration>,
    /// Request body bytes, when known (declared or read ahead).
    bytes_in: Option<u64>,
}

impl Trace {
    fn note_account(&mut self, account: AccountId, side: Side) {
        self.account = Some(account);
        self.side = Some(side);
    }
}

/// The client connection a request arrived on.
pub(crate) struct ConnInfo {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The client's IP as an `X-Forwarded-For` value, formatted once per connection.
    pub(crate) client_ip: HeaderValue,
    /// The TLS server name the client asked for, on HTTPS connections.
    pub(crate) sni: Option<Arc<str>>,
    /// Whether the connection is TLS.
    pub(crate) https: bool,
    /// The names of the client certificate the TLS handshake verified, if any.
    pub(crate) client_cert: Option<Arc<crate::PeerIdentity>>,
}

/// The status the access log and the metrics give a request whose client went away before
/// its response head was ready (nginx's "client closed request"); nothing is sent.
const CLIENT_CLOSED: u16 = 499;

/// One metrics record per request, written when the response head is ready, or on drop when
/// the request ends without one (the client left while it waited); and one access-log line,
/// handed to the response body ([`AccessLine`]) or written at once when there is no body to
/// wait for.
struct Record<'a> {
    shared: &'a Shared,
    conn: &'a ConnInfo,
    started: Instant,
    method: Method,
    /// The client's `Host` (or `:authority`) and target, kept for the log.
    host: Option<HeaderValue>,
    uri: Uri,
    trace: Trace,
    written: bool,
}

impl Record<'_> {
    /// Records the request's metrics, and returns its access-log line when `[log]` wants one.
    /// The line takes the request's fields (moved, not copied).
    fn finish(&mut self, status: u16, error: Option<&'static str>) -> Option<AccessLine> {
        self.written = true;
        let trace = &self.trace;
        let elapsed = self.started.elapsed();
        let metrics = &self.shared.metrics;
        let table = trace.table.as_deref();
        let account = table.zip(trace.account).map(|(t, id)| t.account(id));
        let tenant = table.zip(trace.tenant).map(|(t, id)| t.tenant(id));
        match (account, trace.side) {
            (Some(account), Some(side)) => account.counters.record(side, status, elapsed),
            _ => metrics.record_unrouted(status, elapsed),
        }
        match tenant.map(|t| t.counters.as_deref()) {
            Some(Some(counters)) => counters.record(status),
            Some(None) => metrics.record_other_tenant(status),
            None => {}
        }
        if let Some(code) = error {
            metrics.record_error(code);
        }
        let log = &self.shared.settings.access_log;
        if !log.wants(status, error.is_some(), &self.shared.stats.access_sampled) {
            return None;
        }
        Some(AccessLine {
            client: self.conn.peer,
            query: log.query,
            method: std::mem::take(&mut self.method),
            host: self.host.take(),
            uri: std::mem::take(&mut self.uri),
            trace: std::mem::take(&mut self.trace),
            status,
            error,
            elapsed,
        })
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        if !self.written
            && let Some(line) = self.finish(CLIENT_CLOSED, Some("client_closed"))
        {
            line.write(None, None);
        }
    }
}

/// A request's access-log line, complete but for the response body: the body that carries it
/// (`HoldingBody`) writes it once, when the body ends or is dropped, with the bytes it sent.
/// Owned, so it can outlive the request's handler. It holds the routing table the request was
/// routed with (names are read from it only when the line is written, which saves copying
/// them): after a reload, the old table stays in memory until the last logged body routed with
/// it ends.
pub(crate) struct AccessLine {
    client: SocketAddr,
    /// `[log] query`: whether the path is logged with its query string.
    query: bool,
    method: Method,
    host: Option<HeaderValue>,
    uri: Uri,
    trace: Trace,
    status: u16,
    error: Option<&'static str>,
    /// Request head to response head.
    elapsed: Duration,
}

impl AccessLine {
    /// Writes the line. `bytes_out`: response body bytes sent (`None` when no response was);
    /// `body_complete`: whether the body was sent to its end (`false`: the client left or the
    /// upstream broke off mid-body).
    pub(crate) fn write(&self, bytes_out: Option<u64>, body_complete: Option<bool>) {
        let trace = &self.trace;
        let table = trace.table.as_deref();
        let account = table.zip(trace.account).map(|(t, id)| t.account(id));
        let tenant = table.zip(trace.tenant).map(|(t, id)| t.tenant(id));
        let region = table.zip(account).map(|(t, a)| &*t.region(a.region).name);
        let path = if self.query {
            self.uri.path_and_query().map_or("-", |pq| pq.as_str())
        } else {
            self.uri.path()
        };
        let status = self.status;
        let error = self.error;
        tracing::info!(
            target: "pairgate::access",
            request_id = trace.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            client = %self.client,
            method = %self.method,
            host = self
                .host
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .or_else(|| self.uri.authority().map(|a| a.as_str()))
                .unwrap_or("-"),
            path,
            tenant = tenant.map_or("-", |t| &*t.name),
            account = account.map_or("-", |a| &*a.name),
            region = region.unwrap_or("-"),
            side = trace.side.map_or("-", Side::as_str),
            generation = trace.generation,
            status,
            bytes_in = trace.bytes_in,
            bytes_out,
            body_complete,
            duration_us = u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX),
            ttfb_us = trace.ttfb.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            error,
            error.cause = trace.error.as_ref().and_then(cause).map(|c| tracing::field::debug(c.to_string())),
            replayed = trace.replayed_after.is_some(),
            replayed_after = trace.replayed_after.as_ref().map(|e| e.kind().code()),
            replayed_after.cause = trace
                .replayed_after
                .as_ref()
                .and_then(cause)
                .map(|c| tracing::field::debug(c.to_string())),
        );
    }
}

/// What caused `err`, as the access log shows it.
fn cause(err: &ProxyError) -> Option<pairgate_tls::Describe<'_>> {
    StdError::source(err).map(pairgate_tls::Describe)
}

/// Serves one client request: never fails, every error becomes a response.
pub(crate) async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut record = Record {
        shared,
        conn,
        started: Instant::now(),
        method: req.method().clone(),
        host: req.headers().get(header::HOST).cloned(),
        uri: req.uri().clone(),
        trace: Trace::default(),
        written: false,
    };
    // 2. One snapshot per request: the routing table and its accounts' TLS clients.
    let snapshot = shared.routes.load_full();
    record.trace.table = Some(Arc::clone(&snapshot.table));
    match forward(shared, &snapshot, conn, req, &mut record.trace).await {
        Ok(resp) => {
            // 9. The metrics now; the log line when the body has been sent (bytes_out).
            let line = record.finish(resp.status().as_u16(), None);
            resp.map(|body| body.with_access_line(line).boxed())
        }
        Err(err) => {
            let resp = err.into_response();
            let code = err.kind().code();
            record.trace.error = Some(err);
            // An error body is a few bytes, whole in memory: logged now.
            if let Some(line) = record.finish(resp.status().as_u16(), Some(code)) {
                line.write(http_body::Body::size_hint(resp.body()).exact(), Some(true));
            }
            resp
        }
    }
}

/// The request's way through, one call per step of ARCHITECTURE.md's walk (step 2, the
/// snapshot, is loaded by [`handle`]; step 9, the record, is written by it).
async fn forward(
    shared: &Shared,
    snapshot: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    trace: &mut Trace,
) -> Result<Response<HoldingBody>, ProxyError> {
    let table = &*snapshot.table;
    // 1.
    check_shape(&req, &shared.settings)?;
    // 3.
    let resolved = resolve(table, conn, &req, trace)?;
    let tenant = table.tenant(resolved.tenant);
    let identity = authenticate(shared, snapshot, conn, tenant, resolved.tenant, &req).await?;
    let admitted = admit(tenant, resolved, &req)?;
    // 4.
    let accounts = active_account(tenant, trace)?;
    // 5.
    let (mut rewritten, body) = rewrite(shared, conn, tenant, admitted.strip, req);
    if let Some(name) = table.strip_tenant_header() {
        rewritten.template.parts.headers.remove(name);
    }
    client_credentials(
        &snapshot.client_auth,
        admitted.tenant,
        identity,
        &mut rewritten.template.parts.headers,
    );
    trace.request_id = Some(request_id(&mut rewritten.template.parts.headers));
    // 6.
    let (body, replay_body) = read_ahead(body, &rewritten, admitted.declared, shared).await?;
    trace.bytes_in = admitted
        .declared
        .or_else(|| replay_body.as_ref().map(|b| b.len() as u64));
    trace.sent = Some(Instant::now());
    // 7.
    let (resp, replayed) = send_with_replay(
        shared,
        snapshot,
        trace,
        &mut rewritten,
        accounts,
        body,
        replay_body,
    )
    .await?;
    trace.ttfb = trace.sent.map(|sent| sent.elapsed());
    // 8.
    respond(
        shared,
        resp,
        replayed,
        rewritten.client_upgrade,
        admitted.slot,
    )
}

/// 1. Shape check: only origin-form requests are forwarded.
fn check_shape(req: &Request<Incoming>, settings: &crate::Settings) -> Result<(), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ErrorKind::BadRequest("CONNECT is not supported").into());
    }
    if !req.uri().path().starts_with('/') {
        return Err(ErrorKind::BadRequest("request target must be a path").into());
    }
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > settings.max_uri_bytes {
        return Err(ErrorKind::UriTooLong.into());
    }
    if req.version() == Version::HTTP_2
        && let (Some(authority), Some(host)) =
            (req.uri().authority(), req.headers().get(header::HOST))
        && !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Err(ErrorKind::BadRequest(":authority and host disagree").into());
    }
    Ok(())
}

/// The tenant a request resolved to (step 3).
struct Resolved {
    tenant: TenantId,
    /// Bytes of the path that are the tenant's prefix, stripped upstream.
    strip: usize,
}

/// A tenant that took the request (step 3).
struct Admitted {
    tenant: TenantId,
    /// Bytes of the path that are the tenant's prefix, stripped upstream.
    strip: usize,
    /// The tenant's in-flight slot, held until the response body ends.
    slot: InFlight,
    /// The request's `Content-Length`, parsed once here.
    declared: Option<u64>,
}

/// 3. Tenant: resolve it (a miss never falls through to a default upstream) and check the
///    connection's SNI names it.
fn resolve(
    table: &RouteTable,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    trace: &mut Trace,
) -> Result<Resolved, ProxyError> {
    let resolved = table
        .resolve_tenant(req.uri(), req.headers())
        .map_err(|_| ErrorKind::UnknownTenant)?;
    trace.tenant = Some(resolved.tenant);
    // A connection set up for one tenant's name must not carry another tenant's requests
    // (RFC 9110 15.5.20).
    if let Some(sni) = &conn.sni
        && table
            .resolve_host(sni)
            .is_some_and(|t| t != resolved.tenant)
    {
        return Err(ErrorKind::Misdirected.into());
    }
    Ok(Resolved {
        tenant: resolved.tenant,
        strip: resolved.strip,
    })
}

/// 3. Client: when the tenant authenticates its clients, the request must carry one of its
///    credentials (after the tenant is known, before it takes a slot: refused requests cost
///    no capacity and reach no upstream). Counted per tenant; refusals logged at a bounded
///    rate, without the credential.
async fn authenticate(
    shared: &Shared,
    snapshot: &Snapshot,
    conn: &ConnInfo,
    tenant: &Tenant,
    id: TenantId,
    req: &Request<Incoming>,
) -> Result<Option<pairgate_clientauth::Identity>, ProxyError> {
    use pairgate_clientauth::{AuthResult, Refusal};
    let gate = &snapshot.client_auth;
    if !gate.enabled(id.index()) {
        return Ok(None);
    }
    let result = gate
        .authenticate(
            id.index(),
            &tenant.name,
            req.headers(),
            conn.client_cert.as_deref(),
        )
        .await;
    let counted = result
        .as_ref()
        .map_or_else(|r| r.result(), |_| AuthResult::Ok);
    match tenant.counters.as_deref() {
        Some(counters) => counters.record_auth(counted.index()),
        None => shared.metrics.record_other_tenant_auth(counted.index()),
    }
    result.map_err(|refusal| {
        gate.log_refusal(&tenant.name, refusal, conn.peer);
        let challenge = gate.challenge(id.index());
        match refusal {
            Refusal::Missing => ErrorKind::Unauthenticated {
                reason: None,
                challenge,
            },
            Refusal::Invalid(reason) => ErrorKind::Unauthenticated {
                reason: Some(reason),
                challenge,
            },
            Refusal::WrongTenant => ErrorKind::WrongTenant,
            Refusal::Unavailable => ErrorKind::ClientAuthUnavailable,
        }
        .into()
    })
}

/// 5. The client's credential never travels upstream (its API key header always, and the
///    `Authorization` header when it carried the JWT that authenticated it); the identity
///    header carries who it was, and a client's own identity header is always dropped.
fn client_credentials(
    gate: &crate::ClientGate,
    tenant: TenantId,
    identity: Option<pairgate_clientauth::Identity>,
    headers: &mut http::HeaderMap,
) {
    if let Some(name) = gate.identity_header() {
        headers.remove(name);
    }
    if !gate.enabled(tenant.index()) {
        gate.strip_known_key(headers);
        return;
    }
    headers.remove(gate.api_key_header());
    let Some(identity) = identity else { return };
    if identity.strip_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    if let (Some(name), Some(id)) = (gate.identity_header(), identity.id) {
        headers.insert(name.clone(), id);
    }
}

/// 3. Admission: take the tenant's in-flight slot and check its body limit.
fn admit(
    tenant: &Tenant,
    resolved: Resolved,
    req: &Request<Incoming>,
) -> Result<Admitted, ProxyError> {
    // One tenant's flood cannot take every connection's worth of upstream capacity.
    let slot = InFlight::acquire(&tenant.in_flight, tenant.limits.max_in_flight)
        .ok_or(ErrorKind::TenantOverloaded)?;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > tenant.limits.max_request_body_bytes) {
        return Err(ErrorKind::PayloadTooLarge.into());
    }
    Ok(Admitted {
        tenant: resolved.tenant,
        strip: resolved.strip,
        slot,
        declared,
    })
}

/// 4. Active side: one atomic load; the account it names, and the other one (a replay's
///    target) when the tenant has two.
fn active_account(
    tenant: &Tenant,
    trace: &mut Trace,
) -> Result<(AccountId, Option<AccountId>), ProxyError> {
    let active = tenant.slot.load();
    trace.side = Some(active.side);
    trace.generation = active.generation;
    if active.reject {
        return Err(ErrorKind::BothDown.into());
    }
    let account_id = tenant.account_for(active.side);
    trace.note_account(account_id, active.side);
    let other_id = tenant
        .secondary
        .map(|_| tenant.account_for(active.side.other()));
    Ok((account_id, other_id))
}

/// The request after step 5, and what steps 6 to 8 need of the client's request.
struct Rewritten {
    template: Template,
    /// Why the body failed, if it broke the tenant's limits.
    verdict: BodyVerdict,
    /// The client's side of an upgrade (HTTP/1.1 `Upgrade`).
    client_upgrade: Option<OnUpgrade>,
}

/// 5. Rewrite into a template that can be aimed at either account: hop-by-hop headers
///    stripped, the client's `Host` kept for `X-Forwarded-Host`, the body under the tenant's
///    limits.
fn rewrite(
    shared: &Shared,
    conn: &ConnInfo,
    tenant: &Tenant,
    strip: usize,
    mut req: Request<Incoming>,
) -> (Rewritten, LimitedBody) {
    let upgrade = req.version() == Version::HTTP_11 && is_upgrade_request(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let (body, verdict) = LimitedBody::new(
        body,
        tenant.limits.max_request_body_bytes,
        shared.settings.body_idle_timeout,
    );
    let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        let authority = parts.uri.authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let rewritten = Rewritten {
        template: Template {
            parts,
            client_host,
            client_ip: conn.client_ip.clone(),
            https: conn.https,
            strip,
        },
        verdict,
        client_upgrade,
    };
    (rewritten, body)
}

/// 6. Read a small body ahead (clean framing upstream, and a replay copy); larger ones, and
///    upgrades, stream.
async fn read_ahead(
    body: LimitedBody,
    rewritten: &Rewritten,
    declared: Option<u64>,
    shared: &Shared,
) -> Result<(Body, Option<Bytes>), ProxyError> {
    if rewritten.client_upgrade.is_some() {
        return Ok((body.boxed(), None));
    }
    buffer_for_replay(body, declared, shared)
        .await
        .map_err(|kind| rewritten.verdict.error().unwrap_or(kind).into())
}

/// 7. Send on the shared pool, bounded by the response-header timeout; on a failure before the
///    response head, replay once on the other account when the rules allow it. The template is
///    kept (and its headers copied) only when a replay is possible. Returns the response and
///    whether it came from a replay.
async fn send_with_replay(
    shared: &Shared,
    snapshot: &Snapshot,
    trace: &mut Trace,
    rewritten: &mut Rewritten,
    (account_id, other_id): (AccountId, Option<AccountId>),
    body: Body,
    replay_body: Option<Bytes>,
) -> Result<(Response<Incoming>, bool), ProxyError> {
    let table = &*snapshot.table;
    let template = &mut rewritten.template;
    // An account whose minted token is unavailable gets nothing; its tenant's other account
    // takes the request when it can (the prober turns the account unhealthy meanwhile).
    let (account_id, other_id, minted, rerouted) = match minted_for(snapshot, account_id) {
        Ok(minted) => (account_id, other_id, minted, false),
        Err(err) => {
            let Some(other_id) =
                other_id.filter(|o| table.account(*o).health.load() != Health::Unhealthy)
            else {
                return Err(err);
            };
            let Ok(minted) = minted_for(snapshot, other_id) else {
                return Err(err);
            };
            trace.replayed_after = Some(err);
            let side = trace.side.map_or(Side::Secondary, Side::other);
            trace.note_account(other_id, side);
            (other_id, None, minted, true)
        }
    };
    let account = table.account(account_id);
    let replayable = other_id.is_some() && replay_body.is_some();
    let first = if replayable {
        template.aim(account, minted.as_ref(), body)?
    } else {
        template.aim_once(account, minted.as_ref(), body)?
    };
    // A request that could be replayed stops waiting on an account the moment it is declared
    // unhealthy (a black hole answers nothing until the response-header timeout).
    let give_up_if_down = replayable && may_replay(ErrorKind::UpstreamDown, &template.parts);
    let err = match send(shared, snapshot, account_id, first, give_up_if_down).await {
        Ok(resp) => {
            note_rejection(shared, account, minted.as_ref(), &resp);
            if replayable
                && shared
                    .settings
                    .retry_on_status
                    .contains(&resp.status().as_u16())
                && let (Some(other_id), Some(body)) = (other_id, replay_body)
                && let Some(retried) =
                    retry_refused(shared, snapshot, trace, template, other_id, body).await
            {
                return Ok((retried, true));
            }
            return Ok((resp, rerouted));
        }
        Err(err) => err,
    };
    // The client's body broke the tenant's limits: that is the answer, not a replay.
    if let Some(kind) = rewritten.verdict.error() {
        return Err(kind.into());
    }
    let Some(other_id) = other_id else {
        return Err(err);
    };
    let other = table.account(other_id);
    let Some(body) = replay_body.filter(|_| may_replay(err.kind(), &template.parts)) else {
        return Err(err);
    };
    if other.health.load() == Health::Unhealthy {
        tracing::debug!(
            account = &*other.name,
            "not replaying onto an unhealthy account"
        );
        return Err(err);
    }
    let Ok(other_minted) = minted_for(snapshot, other_id) else {
        tracing::debug!(
            account = &*other.name,
            "not replaying onto an account without a valid credential"
        );
        return Err(err);
    };
    trace.replayed_after = Some(err);
    // The replay's answer comes from the other side: the log and metrics name that one.
    let side = trace.side.map_or(Side::Secondary, Side::other);
    trace.note_account(other_id, side);
    let retry = template.aim(
        other,
        other_minted.as_ref(),
        Full::new(body).map_err(|never| match never {}).boxed(),
    )?;
    let result = send(shared, snapshot, other_id, retry, false).await;
    let counter = if result.is_ok() {
        &shared.stats.replays_succeeded
    } else {
        &shared.stats.replays_failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Ok(resp) = &result {
        note_rejection(shared, other, other_minted.as_ref(), resp);
    }
    Ok((result?, true))
}

/// `upstream.retry_on_status`: the first account answered a refusal (a 503 while it flaps,
/// say). A request that may be replayed after it was sent (idempotent, or with an
/// `Idempotency-Key`) is sent once to the tenant's other account when that one is healthy and
/// has its credential; its answer replaces the refusal. `None` leaves the first answer as the
/// answer (nothing retried, or the retry failed: never worse than not retrying).
async fn retry_refused(
    shared: &Shared,
    snapshot: &Snapshot,
    trace: &mut Trace,
    template: &mut Template,
    other_id: AccountId,
    body: Bytes,
) -> Option<Response<Incoming>> {
    // Sent and answered: the same rules as a request sent and lost.
    if !may_replay(ErrorKind::UpstreamReset, &template.parts) {
        return None;
    }
    let other = snapshot.table.account(other_id);
    if other.health.load() == Health::Unhealthy {
        return None;
    }
    let other_minted = minted_for(snapshot, other_id).ok()?;
    let retry = template
        .aim(
            other,
            other_minted.as_ref(),
            Full::new(body).map_err(|never| match never {}).boxed(),
        )
        .ok()?;
    match send(shared, snapshot, other_id, retry, false).await {
        Ok(resp) => {
            note_rejection(shared, other, other_minted.as_ref(), &resp);
            shared
                .stats
                .replays_succeeded
                .fetch_add(1, Ordering::Relaxed);
            trace.replayed_after = Some(ErrorKind::UpstreamRetryableStatus.into());
            let side = trace.side.map_or(Side::Secondary, Side::other);
            trace.note_account(other_id, side);
            Some(resp)
        }
        Err(_) => {
            shared.stats.replays_failed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// An account's minted token, taken for one request.
struct Minted<'a> {
    credential: &'a AccountCredential,
    token: Arc<Token>,
}

/// The token `account` needs when the gateway mints its credential (`None` for accounts
/// without one): one `ArcSwap` load, never a fetch. No valid token cached is
/// [`ErrorKind::CredentialUnavailable`].
fn minted_for(snapshot: &Snapshot, account: AccountId) -> Result<Option<Minted<'_>>, ProxyError> {
    let Some(credential) = snapshot.credential(account) else {
        return Ok(None);
    };
    let token = credential
        .provider
        .current()
        .ok_or(ErrorKind::CredentialUnavailable)?;
    Ok(Some(Minted { credential, token }))
}

/// A 401 to a token the gateway minted: the first one asks its provider for one refresh at
/// once; a 401 to a token minted after such a refresh is a passive failure signal (the account
/// refuses the credential).
fn note_rejection(
    shared: &Shared,
    account: &Account,
    minted: Option<&Minted<'_>>,
    resp: &Response<Incoming>,
) {
    let Some(minted) = minted.filter(|_| resp.status() == StatusCode::UNAUTHORIZED) else {
        return;
    };
    if minted.credential.provider.rejected(&minted.token) == Rejection::Refused {
        shared
            .observer
            .upstream_outcome(account, UpstreamOutcome::CredentialRefused);
    }
}

/// 8. Stream the response back (holding the tenant's in-flight slot, cut when the upstream
///    stalls for `upstream.read_timeout`); splice upgraded connections together.
fn respond(
    shared: &Shared,
    mut resp: Response<Incoming>,
    replayed: bool,
    client_upgrade: Option<OnUpgrade>,
    slot: InFlight,
) -> Result<Response<HoldingBody>, ProxyError> {
    if ambiguous_response_framing(resp.headers()) {
        return Err(ErrorKind::UpstreamProtocol.into());
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        match client_upgrade {
            Some(client_upgrade) => {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                let held = shared.tunnels.subscribe();
                tokio::spawn(tunnel(client_upgrade, upstream_upgrade, held));
            }
            None => return Err(ErrorKind::UpstreamProtocol.into()),
        }
    } else {
        strip_hop_by_hop(resp.headers_mut(), false);
    }
    if replayed {
        resp.headers_mut()
            .insert(&X_PAIRGATE_REPLAYED, HeaderValue::from_static("1"));
    }
    let read_timeout = shared.settings.read_timeout;
    Ok(resp.map(|body| HoldingBody::new(body, slot, read_timeout)))
}

/// An upstream response whose framing hyper might have settled one way while another hop reads
/// it another: `Content-Length` together with `Transfer-Encoding`, or several lengths.
fn ambiguous_response_framing(headers: &http::HeaderMap) -> bool {
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    lengths > 1 || (lengths > 0 && headers.contains_key(header::TRANSFER_ENCODING))
}

/// The request's id: the client's `x-request-id` when it is a sane token (1 to 128 visible
/// ASCII characters), else a generated one, set on the request so the account sees it too.
fn request_id(headers: &mut http::HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID)
        && (1..=128).contains(&v.len())
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    let id = generate_request_id();
    headers.insert(&X_REQUEST_ID, id.clone());
    id
}

/// 16 hex digits: a process-wide counter hashed with a per-process random seed, so ids are
/// unique within a run and do not repeat across restarts (in practice).
fn generate_request_id() -> HeaderValue {
    use std::hash::BuildHasher as _;
    static SEED: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let hash = SEED.get_or_init(Default::default).hash_one(n);
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        let nibble = (hash >> (60 - 4 * i)) & 0xf;
        *b = b"0123456789abcdef"[nibble as usize];
    }
    HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_PAIRGATE_REPLAYED: HeaderName = HeaderName::from_static("x-pairgate-replayed");
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The client's request after hop-by-hop stripping, before any account-specific rewrite.
struct Template {
    parts: http::request::Parts,
    client_host: Option<HeaderValue>,
    client_ip: HeaderValue,
    https: bool,
    strip: usize,
}

impl Template {
    /// The request as `account` must receive it, when no replay can follow: the headers are
    /// moved, not copied.
    fn aim_once(
        &mut self,
        account: &Account,
        minted: Option<&Minted<'_>>,
        body: Body,
    ) -> Result<Request<Body>, ProxyError> {
        let headers = std::mem::take(&mut self.parts.headers);
        self.build(account, minted, body, headers)
    }

    /// The request as `account` must receive it, keeping the template for a replay.
    fn aim(
        &self,
        account: &Account,
        minted: Option<&Minted<'_>>,
        body: Body,
    ) -> Result<Request<Body>, ProxyError> {
        self.build(account, minted, body, self.parts.headers.clone())
    }

    /// With a minted credential, the client's own (`accessToken` in the query,
    /// `Authorization`) is removed and the account's token sent where it expects it.
    fn build(
        &self,
        account: &Account,
        minted: Option<&Minted<'_>>,
        body: Body,
        mut headers: http::HeaderMap,
    ) -> Result<Request<Body>, ProxyError> {
        let mut req = Request::new(body);
        *req.method_mut() = self.parts.method.clone();
        let uri = match minted {
            None => upstream_uri(account, &self.parts.uri, self.strip, None)?,
            Some(m) => {
                let send_as = m.credential.send_as;
                pairgate_credentials::set_authorization(&mut headers, &m.token, send_as);
                let query = pairgate_credentials::query_with_token(
                    self.parts.uri.query(),
                    &m.token,
                    send_as,
                );
                upstream_uri(account, &self.parts.uri, self.strip, Some(query.as_deref()))?
            }
        };
        *req.uri_mut() = uri;
        *req.version_mut() = if account.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        *req.headers_mut() = headers;
        rewrite_request(
            req.headers_mut(),
            account,
            &self.client_ip,
            self.client_host.clone(),
            self.parts.version == Version::HTTP_2,
        );
        if self.https {
            crate::headers::mark_https(req.headers_mut());
        }
        Ok(req)
    }
}

/// Reads the body ahead, up to `upstream.max_replay_body`, before anything goes upstream: a body
/// that ends inside that window is sent with a fixed length and can be replayed, and a body that
/// breaks its framing inside it is refused with nothing forwarded. A body declared larger, or
/// that turns out larger, streams (already-read frames first) and is never replayed.
async fn buffer_for_replay(
    mut body: LimitedBody,
    declared: Option<u64>,
    shared: &Shared,
) -> Result<(Body, Option<Bytes>), ErrorKind> {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Ok((empty(), Some(Bytes::new())));
    }
    let window = shared.settings.max_replay_body;
    if declared.is_some_and(|len| len > window as u64) {
        return Ok((body.boxed(), None));
    }
    let mut frames = std::collections::VecDeque::new();
    let mut read = 0usize;
    let mut whole = bytes::BytesMut::new();
    let mut trailers = false;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(_)) => return Err(ErrorKind::ClientBody),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read += data.len();
                    whole.extend_from_slice(data);
                } else {
                    trailers = true;
                }
                frames.push_back(frame);
                if read > window {
                    let streamed = Prefixed::new(frames, Some(body), declared);
                    return Ok((streamed.boxed(), None));
                }
            }
        }
    }
    let replay = (!trailers).then(|| whole.freeze());
    Ok((Prefixed::new(frames, None, declared).boxed(), replay))
}

fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Replay rules: nothing was sent (any method), or it was sent and the method is idempotent
/// (RFC 9110 9.2.2) or the client supplied an `Idempotency-Key`.
fn may_replay(err: ErrorKind, parts: &http::request::Parts) -> bool {
    if err.before_send() {
        return true;
    }
    let sent_and_lost = matches!(
        err,
        ErrorKind::UpstreamReset
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamProtocol
            | ErrorKind::UpstreamDown
    );
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || parts.headers.contains_key(&IDEMPOTENCY_KEY);
    sent_and_lost && idempotent
}

/// One attempt at one account, bounded by the response-header timeout (and, with
/// `give_up_if_down`, by the account being declared unhealthy); the outcome goes to the
/// observer either way.
async fn send(
    shared: &Shared,
    snapshot: &Snapshot,
    account_id: AccountId,
    req: Request<Body>,
    give_up_if_down: bool,
) -> Result<Response<Incoming>, ProxyError> {
    let account = snapshot.table.account(account_id);
    // Created before the request starts, so a verdict that lands in between is not missed:
    // `Notified` remembers the `notify_waiters` count at creation. Creating it is one atomic
    // load; it joins the waiter list (a lock, and another to leave) only once polled, which
    // `wait_for_head` does only when the head is late.
    let turned_unhealthy = give_up_if_down.then(|| account.health.turned_unhealthy());
    let tls = snapshot
        .tls
        .get(account_id.index())
        .and_then(Option::as_ref);
    let request = async {
        match tls {
            Some(client) => Ok(client.request(req).await),
            // An https account without TLS settings would be a wiring bug: never downgrade.
            None if account.scheme == http::uri::Scheme::HTTPS => Err(()),
            None if account.http2 => Ok(shared.http2.request(req).await),
            None => Ok(shared.http1.request(req).await),
        }
    };
    let result = match wait_for_head(
        request,
        shared.settings.response_header_timeout,
        turned_unhealthy,
    )
    .await
    {
        Head::Arrived(Ok(Ok(resp))) => Ok(resp),
        Head::Arrived(Ok(Err(err))) => Err(ProxyError::with_source(classify(&err), err)),
        Head::TimedOut => Err(ProxyError::from(ErrorKind::UpstreamTimeout)),
        Head::Arrived(Err(())) => {
            tracing::error!(account = &*account.name, "https account has no TLS client");
            return Err(ErrorKind::UpstreamUnreachable.into());
        }
        Head::AccountDown => {
            tracing::debug!(
                account = &*account.name,
                "account declared unhealthy while a request waited on it; giving up on it"
            );
            return Err(ErrorKind::UpstreamDown.into());
        }
    };
    match &result {
        Ok(resp) => shared
            .observer
            .upstream_outcome(account, UpstreamOutcome::Response(resp.status())),
        Err(err) if err.kind().is_upstream_failure() => shared
            .observer
            .upstream_outcome(account, UpstreamOutcome::Failed(err.kind())),
        Err(_) => {}
    }
    result
}

/// The request target at `account` (`uri::upstream_uri_with_query`), the query replaced when
/// `query` is given; an invalid one is the client's.
fn upstream_uri(
    account: &Account,
    uri: &Uri,
    strip: usize,
    query: Option<Option<&str>>,
) -> Result<Uri, ProxyError> {
    crate::uri::upstream_uri_with_query(account, uri, strip, query)
        .ok_or_else(|| ErrorKind::BadRequest("invalid request path").into())
}

/// Maps a client error to what happened, by walking its sources.
fn classify(err: &hyper_util::client::legacy::Error) -> ErrorKind {
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    let mut io_kind = None;
    let mut hyper_err = None;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            hyper_err.get_or_insert(h);
        }
        source = e.source();
    }
    if let Some(kind) = pairgate_routing::local::local_kind(err) {
        pairgate_routing::local::LOCAL_ERRORS
            .record(kind, pairgate_routing::local::LocalSite::Upstream);
        return ErrorKind::LocalResources;
    }
    if err.is_connect() {
        return match io_kind {
            Some(io::ErrorKind::TimedOut) => ErrorKind::UpstreamConnectTimeout,
            _ => ErrorKind::UpstreamUnreachable,
        };
    }
    match hyper_err {
        Some(h) if h.is_user() => ErrorKind::ClientBody,
        Some(h) if h.is_parse() || h.is_parse_status() => ErrorKind::UpstreamProtocol,
        Some(h) if h.is_timeout() => ErrorKind::UpstreamTimeout,
        _ => ErrorKind::UpstreamReset,
    }
}

/// Copies bytes both ways between an upgraded client and upstream until either side closes.
/// `_held` tells shutdown the tunnel is still open (see `Shared::tunnels`).
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, _held: tokio::sync::watch::Receiver<bool>) {
    let (client, upstream) = tokio::join!(client, upstream);
    let (Ok(client), Ok(upstream)) = (client, upstream) else {
        tracing::debug!("upgrade failed on one side; closing both");
        return;
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %err, "upgraded connection ended with an error");
    }
}
