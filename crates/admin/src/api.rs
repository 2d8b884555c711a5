//! The admin listener and its routes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use pairgate_config::Config;
use pairgate_failover::{Health, Mode, RegionOverride, Side};
use pairgate_health::state::INCIDENT_REASON_PREFIX;
use pairgate_health::{
    ControlError, ControlHandle, EventKind, EventLog, Holder, Monitor, RegionChange, RegionView,
    TenantView,
};
use pairgate_proxy::Shared;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::alerts::{self, IncidentStage, Parsed};
use crate::auth::{self, Verdict};
use crate::prometheus;

/// Largest admin request body.
const MAX_BODY: usize = 1 << 20;
/// Default and largest page of `GET /v1/tenants` and `GET /v1/events`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// A boxed future, for the [`Reloader`] trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a successful reload reports.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The new config generation.
    pub generation: u64,
    /// Tenant transitions the new config caused.
    pub transitions: usize,
    /// Warnings from validation, and notes such as "listen address change needs a restart".
    pub warnings: Vec<String>,
}

/// Why a reload was refused: the problems `pairgate check` would print (at most
/// [`ReloadRejected::MAX_PROBLEMS`]) and how many more there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRejected {
    /// The first problems, in the order `pairgate check` lists them.
    pub problems: Vec<pairgate_config::FileProblem>,
    /// Problems left out of `problems`.
    pub more: usize,
}

impl ReloadRejected {
    /// The most problems a rejected reload reports (the log, the event and the 422 answer all
    /// carry them); `pairgate check` lists them all.
    pub const MAX_PROBLEMS: usize = 100;

    /// `problems`, bounded to [`Self::MAX_PROBLEMS`] and the count of the rest.
    pub fn new(mut problems: Vec<pairgate_config::FileProblem>) -> ReloadRejected {
        let more = problems.len().saturating_sub(Self::MAX_PROBLEMS);
        problems.truncate(Self::MAX_PROBLEMS);
        ReloadRejected { problems, more }
    }

    /// One line per problem, as `pairgate check` prints them, and a last line counting the
    /// ones left out.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        if self.more > 0 {
            lines.push(format!(
                "... and {} more; `pairgate check --config FILE` lists them all",
                self.more
            ));
        }
        lines
    }
}

/// One problem of a rejected reload as the admin API answers it: its fields, and the line a
/// human reads.
fn problem_json(p: &pairgate_config::FileProblem) -> Value {
    let location = p.problem.location;
    json!({
        "severity": p.problem.severity.as_str(),
        "path": p.problem.path,
        "message": p.problem.message,
        "line": location.map(|l| l.line),
        "column": location.map(|l| l.column),
        "rendered": p.to_string(),
    })
}

/// Re-reads and applies the config; implemented by the binary's wiring.
pub trait Reloader: Send + Sync {
    /// Reloads; `Err` carries the problems while the running config keeps serving.
    fn reload(&self) -> BoxFuture<'_, Result<Reloaded, ReloadRejected>>;
    /// The config currently serving.
    fn config(&self) -> Arc<Config>;
    /// (accepted, rejected) reloads since start.
    fn counts(&self) -> (u64, u64);
}

/// Why a fleet write failed.
#[derive(Debug, Clone)]
pub enum FleetWriteError {
    /// Someone else changed it since the revision the caller saw (409).
    Conflict(String),
    /// etcd cannot be reached (503): fleet state cannot change while cut off.
    Unavailable(String),
}

/// Fleet mode: operator changes go to etcd (with a revision check) and every replica applies
/// them from its watch.
pub trait FleetWrites: Send + Sync {
    /// Pins or unpins `tenant`; `revision` is the pin revision the caller saw (`None`: the
    /// current one).
    fn set_mode<'a>(
        &'a self,
        tenant: &'a str,
        mode: Mode,
        reason: &'a str,
        revision: Option<i64>,
    ) -> BoxFuture<'a, Result<i64, FleetWriteError>>;
    /// Marks `region` down or auto, like `set_mode`.
    fn set_region<'a>(
        &'a self,
        region: &'a str,
        state: RegionOverride,
        reason: &'a str,
        source: &'static str,
        revision: Option<i64>,
    ) -> BoxFuture<'a, Result<i64, FleetWriteError>>;
    /// The revision of `tenant`'s pin key (0 when it has none).
    fn pin_revision(&self, tenant: &str) -> i64;
    /// Accounts on which this replica's verdict differs from the fleet's.
    fn disagreements(&self) -> u64;
    /// Whether the replica sees etcd now (`pairgate_fleet_connected`).
    fn connected(&self) -> bool;
    /// Whether the replica has joined once (loaded the fleet's objects and decisions):
    /// `/readyz` waits for it.
    fn synced(&self) -> bool;
    /// Recent events of every replica, newest last.
    fn fleet_events(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Value>, FleetWriteError>>;
}

/// Everything the admin API reads or drives.
pub struct AdminState {
    /// The failover controller.
    pub control: ControlHandle,
    /// The event log.
    pub events: Arc<EventLog>,
    /// Probers (readiness, probe counters).
    pub monitor: Arc<Monitor>,
    /// The data plane (routing snapshot, request metrics).
    pub proxy: Arc<Shared>,
    /// The bearer token; `None` means `/v1` is closed (every call 401/403). Swapped when a
    /// reload re-reads `admin.token_file`.
    pub token: Arc<arc_swap::ArcSwapOption<String>>,
    /// Config reloads.
    pub reloader: Arc<dyn Reloader>,
    /// Fleet mode, when configured.
    pub fleet: Option<Arc<dyn FleetWrites>>,
    /// Set at SIGTERM/SIGINT: `/readyz` answers 503 from then on (`runtime.shutdown_delay`).
    pub draining: Arc<AtomicBool>,
    /// The running build, for `pairgate_build_info`.
    pub build: crate::BuildInfo,
    /// Every service name seen in Service Health alerts, counted
    /// (`pairgate_alert_services_seen_total`), so an operator learns Azure's exact names.
    pub alert_services: ServicesSeen,
}

/// Service names seen in Service Health alerts, with counts; bounded (past
/// [`ServicesSeen::MAX`] names, the rest count under `_other`).
#[derive(Debug, Default)]
pub struct ServicesSeen(std::sync::Mutex<std::collections::BTreeMap<String, u64>>);

impl ServicesSeen {
    /// Distinct names kept.
    pub const MAX: usize = 256;

    fn note(&self, services: &[String]) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for service in services {
            let key = if seen.contains_key(service) || seen.len() < Self::MAX {
                service.clone()
            } else {
                "_other".to_owned()
            };
            *seen.entry(key).or_default() += 1;
        }
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Serves the admin API until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let state = Arc::clone(&state);
        let service = service_fn(move |req| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(route(&state, req).await) }
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

type Resp = Response<Full<Bytes>>;

async fn route(state: &AdminState, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["healthz"]) => json_resp(StatusCode::OK, &json!({"status": "ok"})),
        (Method::GET, ["readyz"]) => {
            if state.draining.load(Ordering::Acquire) {
                json_resp(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "draining": true}),
                )
            } else if state.fleet.as_ref().is_some_and(|f| !f.synced()) {
                json_resp(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "waiting_for": "joining the fleet"}),
                )
            } else if state.monitor.first_round_done() {
                json_resp(StatusCode::OK, &json!({"ready": true}))
            } else {
                json_resp(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "waiting_for": "first probe round"}),
                )
            }
        }
        (Method::GET, ["metrics"]) => metrics(state).await,
        (method, ["v1", rest @ ..]) => {
            // Action groups cannot always send headers: the alert receiver also takes ?token=.
            let query_token = (rest == ["alerts", "azure-monitor"])
                .then(|| query_param(&query, "token"))
                .flatten();
            let token = state.token.load_full();
            let token = token.as_deref().map(String::as_str);
            match auth::check(token, req.headers(), query_token.as_deref()) {
                Verdict::Allowed => {}
                Verdict::Missing => {
                    let hint = if token.is_some() {
                        "send Authorization: Bearer <token>"
                    } else {
                        "no admin token is configured, so every /v1 call is refused (set the variable named by [admin] token_env, or token_file)"
                    };
                    let mut resp = error(StatusCode::UNAUTHORIZED, "unauthorized", hint);
                    resp.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return resp;
                }
                Verdict::Wrong => {
                    let hint = if token.is_some() {
                        "wrong token"
                    } else {
                        "no admin token is configured (set [admin] token_env or token_file)"
                    };
                    return error(StatusCode::FORBIDDEN, "forbidden", hint);
                }
            }
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "admin request bodies are limited to 1 MiB",
                    );
                }
            };
            v1(state, &method, rest, &query, &body).await
        }
        _ => no_route(&segments),
    }
}

/// The methods a known path answers (for `Allow`), `None` for an unknown path.
fn allowed_methods(path: &[&str]) -> Option<&'static str> {
    match path {
        ["healthz" | "readyz" | "metrics"]
        | ["v1", "tenants" | "regions" | "events" | "accounts"]
        | ["v1", "tenants", _] => Some("GET"),
        ["v1", "tenants", _, "mode"] | ["v1", "regions", _] | ["v1", "accounts", _] => Some("PUT"),
        ["v1", "tenants", _, "failback"] | ["v1", "reload"] | ["v1", "alerts", "azure-monitor"] => {
            Some("POST")
        }
        _ => None,
    }
}

/// No route matched: 405 with `Allow` for a known path asked with another method (RFC 9110
/// 15.5.6), else 404.
fn no_route(path: &[&str]) -> Resp {
    match allowed_methods(path) {
        Some(allow) => {
            let mut resp = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not answer that method; see Allow",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

async fn v1(state: &AdminState, method: &Method, path: &[&str], query: &str, body: &[u8]) -> Resp {
    match (method, path) {
        (&Method::GET, ["tenants"]) => {
            let limit = page_limit(query);
            let after = query_param(query, "after");
            let (page, more) = state.control.tenants(after, limit).await;
            let next = if more {
                page.last().map(|t| Value::from(&*t.name))
            } else {
                None
            };
            json_resp(
                StatusCode::OK,
                &json!({
                    "tenants": page.iter().map(tenant_json).collect::<Vec<_>>(),
                    "next": next,
                }),
            )
        }
        (&Method::GET, ["tenants", name]) => match state.control.tenant(name).await {
            None => error(
                StatusCode::NOT_FOUND,
                "unknown_tenant",
                "no tenant by that name",
            ),
            Some(view) => {
                let mut detail = tenant_detail(state, &view);
                if let Some(fleet) = &state.fleet {
                    detail["pin_revision"] = json!(fleet.pin_revision(name));
                }
                json_resp(StatusCode::OK, &detail)
            }
        },
        (&Method::PUT, ["tenants", name, "mode"]) => {
            let (mode, reason) = match parse_mode(body) {
                Ok(v) => v,
                Err(msg) => return error(StatusCode::BAD_REQUEST, "bad_request", &msg),
            };
            if let Some(fleet) = &state.fleet {
                if state.control.tenant(name).await.is_none() {
                    return error(
                        StatusCode::NOT_FOUND,
                        "unknown_tenant",
                        "no tenant by that name",
                    );
                }
                match fleet.set_mode(name, mode, &reason, revision(body)).await {
                    Ok(_) => {}
                    Err(err) => return fleet_error(err),
                }
            }
            let applied = if state.fleet.is_some() {
                state
                    .control
                    .tenant(name)
                    .await
                    .ok_or(ControlError::UnknownTenant)
            } else {
                state.control.set_mode(name, mode, &reason).await
            };
            match applied {
                Ok(view) => {
                    let mut out = tenant_json(&view);
                    let active_health = view.active().1;
                    if matches!(mode, Mode::Pinned(_)) && active_health == Health::Unhealthy {
                        out["warning"] = json!(format!(
                            "pinned to account {} which is unhealthy; requests will go there anyway",
                            view.active().0
                        ));
                    }
                    json_resp(StatusCode::OK, &out)
                }
                Err(err) => control_error(err),
            }
        }
        (&Method::POST, ["tenants", name, "failback"]) => {
            // An empty or absent body is a failback without a reason.
            let given = match serde_json::from_slice::<Value>(body) {
                Ok(v) => reason(&v),
                Err(_) => Ok(String::new()),
            };
            let reason = match given {
                Ok(r) if r.is_empty() => "manual failback".to_owned(),
                Ok(r) => r,
                Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", &message),
            };
            match state.control.failback(name, &reason).await {
                Ok(view) => json_resp(StatusCode::OK, &tenant_json(&view)),
                Err(err) => control_error(err),
            }
        }
        (&Method::GET, ["regions"]) => {
            let regions = state.control.regions().await;
            json_resp(
                StatusCode::OK,
                &json!({"regions": regions.iter().map(region_json).collect::<Vec<_>>()}),
            )
        }
        (&Method::PUT, ["regions", name]) => {
            let (change, reason) = match parse_region_state(body) {
                Ok(v) => v,
                Err(msg) => return error(StatusCode::BAD_REQUEST, "bad_request", &msg),
            };
            if let Some(fleet) = &state.fleet {
                return fleet_region(state, fleet.as_ref(), name, &change, &reason, body).await;
            }
            match state
                .control
                .set_region(name, change, &reason, "operator")
                .await
            {
                Ok(view) => {
                    let mut out = region_json(&view);
                    if !view.holds.is_empty()
                        && view.holds.iter().all(|(h, _)| *h != Holder::Operator)
                    {
                        out["warning"] = json!(
                            "the region stays down: other holders (active incidents) still hold \
                             it; PUT {\"state\": \"auto\", \"force\": true} releases every hold"
                        );
                    }
                    json_resp(StatusCode::OK, &out)
                }
                Err(err) => control_error(err),
            }
        }
        (&Method::GET, ["accounts"]) => {
            let accounts = state.control.accounts().await;
            let config = state.reloader.config();
            json_resp(
                StatusCode::OK,
                &json!({"accounts": accounts.iter().map(|a| account_json(a, &config)).collect::<Vec<_>>()}),
            )
        }
        (&Method::PUT, ["accounts", name]) => {
            let (change, reason) = match parse_region_state(body) {
                Ok(v) => v,
                Err(msg) => return error(StatusCode::BAD_REQUEST, "bad_request", &msg),
            };
            if state.fleet.is_some() {
                return error(
                    StatusCode::CONFLICT,
                    "not_in_fleet_mode",
                    "account holds are kept by each replica and not shared through etcd yet; \
                     hold the region instead",
                );
            }
            match state
                .control
                .set_account(name, change, &reason, "operator")
                .await
            {
                Ok(view) => json_resp(
                    StatusCode::OK,
                    &account_json(&view, &state.reloader.config()),
                ),
                Err(err) => control_error(err),
            }
        }
        (&Method::GET, ["events"]) if query_param(query, "scope").as_deref() == Some("fleet") => {
            let Some(fleet) = &state.fleet else {
                return error(
                    StatusCode::NOT_FOUND,
                    "not_in_fleet_mode",
                    "scope=fleet needs [cluster]",
                );
            };
            match fleet.fleet_events(page_limit(query)).await {
                Ok(events) => json_resp(StatusCode::OK, &json!({"events": events})),
                Err(err) => fleet_error(err),
            }
        }
        (&Method::GET, ["events"]) => {
            let after = query_param(query, "after")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let events = state.events.after(after, page_limit(query));
            json_resp(
                StatusCode::OK,
                &json!({
                    "events": events.iter().map(event_json).collect::<Vec<_>>(),
                    "last_seq": state.events.last_seq(),
                }),
            )
        }
        (&Method::POST, ["reload"]) => match state.reloader.reload().await {
            Ok(r) => json_resp(
                StatusCode::OK,
                &json!({
                    "generation": r.generation, "transitions": r.transitions, "warnings": r.warnings,
                }),
            ),
            Err(rejected) => json_resp(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "error": "invalid_config",
                    "detail": "the running config keeps serving",
                    "problems": rejected.problems.iter().map(problem_json).collect::<Vec<_>>(),
                    "more_problems": rejected.more,
                }),
            ),
        },
        (&Method::POST, ["alerts", "azure-monitor"]) => azure_alert(state, body).await,
        _ => {
            let mut full = vec!["v1"];
            full.extend_from_slice(path);
            no_route(&full)
        }
    }
}

/// Fleet mode: a region's state is one key in etcd, `down` (one hold) or `auto` (releasing
/// every hold, `force` or not), written with a revision check; every replica applies it from
/// its watch, this one at once.
async fn fleet_region(
    state: &AdminState,
    fleet: &dyn FleetWrites,
    name: &str,
    change: &RegionChange,
    reason: &str,
    body: &[u8],
) -> Resp {
    let find = |regions: Vec<RegionView>| regions.into_iter().find(|v| &*v.name == name);
    if find(state.control.regions().await).is_none() {
        return control_error(ControlError::UnknownRegion);
    }
    let target = match change {
        RegionChange::Hold(_) => RegionOverride::Down,
        RegionChange::Release(_) | RegionChange::ReleaseAll => RegionOverride::Auto,
    };
    if let Err(err) = fleet
        .set_region(name, target, reason, "operator", revision(body))
        .await
    {
        return fleet_error(err);
    }
    match find(state.control.regions().await) {
        Some(view) => json_resp(StatusCode::OK, &region_json(&view)),
        None => control_error(ControlError::UnknownRegion),
    }
}

/// Marks the impacted regions down while an incident is active and returns them to auto when
/// the same incident resolves. Regions marked down by someone else are left alone on resolve.
async fn azure_alert(state: &AdminState, body: &[u8]) -> Resp {
    let alert = match alerts::parse_azure_monitor(body) {
        Ok(Parsed::ServiceHealth(alert)) => {
            state.alert_services.note(&alert.services);
            alert
        }
        Ok(Parsed::ResourceHealth(alert)) => return resource_health_alert(state, &alert).await,
        Ok(Parsed::Irrelevant(why)) => {
            return json_resp(
                StatusCode::ACCEPTED,
                &json!({"status": "ignored", "reason": why}),
            );
        }
        Err(err) => return error(StatusCode::BAD_REQUEST, "malformed_alert", &err.to_string()),
    };
    let config = state.reloader.config();
    // Only the regions listed next to a service we care about: an incident that names Video
    // Indexer in East US and Storage in West Europe must not move East US when we filter on
    // Storage.
    let impacted = alert.regions_for(&config.alerts.azure_monitor_services);
    if config.alerts.azure_monitor_scope == pairgate_config::AlertScope::Subscription {
        return subscription_alert(state, &config, &alert, &impacted).await;
    }
    if impacted.is_empty() {
        return json_resp(
            StatusCode::ACCEPTED,
            &json!({"status": "ignored", "reason": "no impacted region for the services in alerts.azure_monitor.services"}),
        );
    }
    let table = state.proxy.routes();
    let regions: Vec<String> = table
        .regions()
        .iter()
        .filter(|r| {
            impacted
                .iter()
                .any(|a| alerts::region_matches(a, &r.name, r.azure_name.as_deref()))
        })
        .map(|r| r.name.to_string())
        .collect();
    if regions.is_empty() {
        return json_resp(
            StatusCode::ACCEPTED,
            &json!({"status": "ignored", "reason": "no configured region is impacted"}),
        );
    }
    let reason = format!("{INCIDENT_REASON_PREFIX}{}", alert.tracking_id);
    let holder = Holder::Incident(alert.tracking_id.clone());
    let target = match &alert.stage {
        IncidentStage::Active => RegionOverride::Down,
        IncidentStage::Resolved => RegionOverride::Auto,
        IncidentStage::Other(stage) => {
            return json_resp(
                StatusCode::ACCEPTED,
                &json!({"status": "ignored", "reason": format!("incident stage {stage}")}),
            );
        }
    };
    let current = state.control.regions().await;
    if let Some(fleet) = &state.fleet {
        return fleet_alert(
            fleet.as_ref(),
            &current,
            regions,
            target,
            &reason,
            &alert.tracking_id,
        )
        .await;
    }
    let mut applied = Vec::new();
    let mut failed = false;
    for region in regions {
        let change = if target == RegionOverride::Auto {
            // An incident releases only its own hold: the operator's and other incidents'
            // holds keep the region down.
            let ours = current
                .iter()
                .any(|v| *v.name == *region && v.holds.iter().any(|(h, _)| *h == holder));
            if !ours {
                continue;
            }
            RegionChange::Release(holder.clone())
        } else {
            RegionChange::Hold(holder.clone())
        };
        match state
            .control
            .set_region(&region, change, &reason, "azure-monitor")
            .await
        {
            Ok(_) => applied.push(region),
            Err(ControlError::NotPersisted) => failed = true,
            Err(_) => {}
        }
    }
    if failed {
        // Azure retries a webhook that fails: the change can be saved on a later delivery.
        return control_error(ControlError::NotPersisted);
    }
    let state_name = if target == RegionOverride::Down {
        "down"
    } else {
        "auto"
    };
    json_resp(
        StatusCode::OK,
        &json!({
            "status": "applied", "tracking_id": alert.tracking_id, "state": state_name, "regions": applied,
        }),
    )
}

/// `scope = "subscription"`: the incident holds down only the accounts of the impacted regions
/// whose subscription is the one Azure sent it for; `Resolved` releases exactly those holds.
async fn subscription_alert(
    state: &AdminState,
    config: &pairgate_config::Config,
    alert: &alerts::ServiceHealthAlert,
    impacted: &[&str],
) -> Resp {
    let Some(subscription) = alert.subscription.as_deref() else {
        return error(
            StatusCode::BAD_REQUEST,
            "malformed_alert",
            "alerts.azure_monitor.scope is \"subscription\" but the payload names no \
             subscription (data.essentials.alertTargetIDs, or \
             data.context.activityLog.subscriptionId)",
        );
    };
    let in_region = |region: usize| {
        let r = &config.regions[region];
        impacted
            .iter()
            .any(|a| alerts::region_matches(a, &r.name, r.azure_name.as_deref()))
    };
    // An incident holds the impacted regions' accounts of its subscription; its Resolved
    // releases every hold it placed in the subscription, whatever regions (or services) the
    // Resolved notification lists.
    let resolved = alert.stage == IncidentStage::Resolved;
    let accounts: Vec<&str> = config
        .accounts
        .iter()
        .filter(|a| {
            a.subscription.as_deref() == Some(subscription) && (resolved || in_region(a.region))
        })
        .map(|a| a.name.as_str())
        .collect();
    if accounts.is_empty() {
        return json_resp(
            StatusCode::ACCEPTED,
            &json!({"status": "ignored", "subscription": subscription,
                    "reason": "no configured account of that subscription is in an impacted region"}),
        );
    }
    let holder = Holder::Incident(alert.tracking_id.clone());
    let change = match &alert.stage {
        IncidentStage::Active => RegionChange::Hold(holder.clone()),
        IncidentStage::Resolved => RegionChange::Release(holder.clone()),
        IncidentStage::Other(stage) => {
            return json_resp(
                StatusCode::ACCEPTED,
                &json!({"status": "ignored", "reason": format!("incident stage {stage}")}),
            );
        }
    };
    let reason = format!(
        "{INCIDENT_REASON_PREFIX}{} (subscription {subscription})",
        alert.tracking_id
    );
    let current = state.control.accounts().await;
    let mut applied = Vec::new();
    for name in accounts {
        if matches!(change, RegionChange::Release(_)) {
            // An incident releases only its own hold: the operator's and other incidents'
            // keep the account down.
            let ours = current
                .iter()
                .any(|v| *v.name == *name && v.holds.iter().any(|(h, _)| *h == holder));
            if !ours {
                continue;
            }
        }
        match state
            .control
            .set_account(name, change.clone(), &reason, "azure-service-health")
            .await
        {
            Ok(_) => applied.push(name),
            // Azure retries a webhook that fails: the change can be saved on a later delivery.
            Err(ControlError::NotPersisted) => return control_error(ControlError::NotPersisted),
            Err(_) => {}
        }
    }
    let state_name = if matches!(change, RegionChange::Hold(_)) {
        "down"
    } else {
        "auto"
    };
    json_resp(
        StatusCode::OK,
        &json!({
            "status": "applied", "tracking_id": alert.tracking_id, "subscription": subscription,
            "state": state_name, "accounts": applied,
        }),
    )
}

/// A Resource Health alert: `Unavailable` holds the account whose `resource_id` it names down
/// (source `azure-resource-health`), `Available` releases that hold; `Degraded` and `Unknown`
/// follow `[alerts.azure_monitor] degraded`. Other resources are acknowledged and ignored.
async fn resource_health_alert(state: &AdminState, alert: &alerts::ResourceHealthAlert) -> Resp {
    use alerts::ResourceStatus;
    let config = state.reloader.config();
    let Some(account) = config
        .accounts
        .iter()
        .find(|a| a.resource_id.as_deref() == Some(alert.resource_id.as_str()))
    else {
        return json_resp(
            StatusCode::ACCEPTED,
            &json!({"status": "ignored", "reason": "no configured account has that resource_id"}),
        );
    };
    if state.fleet.is_some() {
        tracing::warn!(account = %account.name, status = alert.status.as_str(), "Resource Health alert ignored: account holds are not shared in fleet mode yet");
        return json_resp(
            StatusCode::ACCEPTED,
            &json!({"status": "ignored", "reason": "fleet mode: account holds are not shared through etcd yet"}),
        );
    }
    let down = match alert.status {
        ResourceStatus::Unavailable => true,
        ResourceStatus::Available => false,
        ResourceStatus::Degraded | ResourceStatus::Unknown if config.alerts.degraded_is_down => {
            true
        }
        ResourceStatus::Degraded | ResourceStatus::Unknown => {
            return json_resp(
                StatusCode::ACCEPTED,
                &json!({"status": "ignored", "account": account.name,
                        "reason": format!("{} is ignored (alerts.azure_monitor.degraded = \"ignore\")", alert.status.as_str())}),
            );
        }
    };
    let mut reason = format!("azure resource health {}", alert.status.as_str());
    if let Some(cause) = &alert.cause {
        reason.push_str(&format!(" ({cause})"));
    }
    if let Some(title) = &alert.title {
        reason.push_str(&format!(": {title}"));
    }
    let change = if down {
        RegionChange::Hold(Holder::ResourceHealth)
    } else {
        RegionChange::Release(Holder::ResourceHealth)
    };
    // Several pairgate accounts may front one Azure resource (other endpoints or paths): the
    // resource's health is each one's.
    let mut applied = Vec::new();
    let mut state_name = "auto";
    for same in config
        .accounts
        .iter()
        .filter(|a| a.resource_id == account.resource_id)
    {
        match state
            .control
            .set_account(&same.name, change.clone(), &reason, "azure-resource-health")
            .await
        {
            Ok(view) => {
                if !view.holds.is_empty() {
                    state_name = "down";
                }
                applied.push(same.name.as_str());
            }
            Err(err) => return control_error(err),
        }
    }
    json_resp(
        StatusCode::OK,
        &json!({"status": "applied", "account": account.name, "accounts": applied,
                "state": state_name, "health_status": alert.status.as_str()}),
    )
}

fn account_json(v: &pairgate_health::AccountView, config: &pairgate_config::Config) -> Value {
    let subscription = config
        .accounts
        .iter()
        .find(|a| a.name == *v.name)
        .and_then(|a| a.subscription.as_deref());
    json!({
        "name": &*v.name,
        "region": &*v.region,
        "subscription": subscription,
        "state": if v.holds.is_empty() { "auto" } else { "down" },
        "health": v.health.as_str(),
        "probed_health": v.probed.as_str(),
        "holds": v.holds.iter().map(|(holder, o)| json!({
            "holder": holder.id(), "reason": o.reason, "source": o.source, "at_unix_ms": o.at_unix_ms,
        })).collect::<Vec<_>>(),
    })
}

/// Fleet mode: the alert writes the regions' state to etcd, so every replica applies it. A
/// region already down (by an operator or another incident) is left as it is, and an incident
/// that resolves returns to auto only the regions it marked down (their hold has its reason).
async fn fleet_alert(
    fleet: &dyn FleetWrites,
    current: &[RegionView],
    regions: Vec<String>,
    target: RegionOverride,
    reason: &str,
    tracking_id: &str,
) -> Resp {
    let mut applied = Vec::new();
    for region in regions {
        let Some(view) = current.iter().find(|v| *v.name == *region) else {
            continue;
        };
        let ours = view.holds.iter().any(|(_, o)| o.reason == reason);
        let skip = match target {
            RegionOverride::Down => !view.holds.is_empty() && !ours,
            RegionOverride::Auto => !ours,
        };
        if skip {
            continue;
        }
        if let Err(err) = fleet
            .set_region(&region, target, reason, "azure-monitor", None)
            .await
        {
            // Azure retries a webhook that fails.
            return fleet_error(err);
        }
        applied.push(region);
    }
    let state_name = if target == RegionOverride::Down {
        "down"
    } else {
        "auto"
    };
    json_resp(
        StatusCode::OK,
        &json!({
            "status": "applied", "tracking_id": tracking_id, "state": state_name, "regions": applied,
        }),
    )
}

async fn metrics(state: &AdminState) -> Resp {
    let config = state.reloader.config();
    let stats = state.control.stats(config.metrics.tenant_label_limit).await;
    let mut text = prometheus::render(
        &state.proxy,
        &state.monitor,
        &stats,
        state.reloader.counts(),
        state.proxy.routes().generation(),
    );
    crate::process::render(&mut text, &state.build);
    {
        use std::fmt::Write as _;
        let _ = writeln!(
            text,
            "# HELP pairgate_account_holds Holds keeping an account down (Service Health incidents sent for its subscription, the operator); 0 when it is in auto.\n# TYPE pairgate_account_holds gauge"
        );
        let _ = writeln!(
            text,
            "# HELP pairgate_alert_services_seen_total Service names seen in Service Health alerts (Azure's exact spelling, for alerts.azure_monitor.services).\n# TYPE pairgate_alert_services_seen_total counter"
        );
        for (service, n) in state.alert_services.snapshot() {
            let _ = writeln!(
                text,
                "pairgate_alert_services_seen_total{{service=\"{}\"}} {n}",
                prometheus::esc(&service)
            );
        }
        for account in state.control.accounts().await {
            let subscription = config
                .accounts
                .iter()
                .find(|a| a.name == *account.name)
                .and_then(|a| a.subscription.as_deref())
                .unwrap_or("");
            let _ = writeln!(
                text,
                "pairgate_account_holds{{account=\"{}\",subscription=\"{}\"}} {}",
                prometheus::esc(&account.name),
                prometheus::esc(subscription),
                account.holds.len()
            );
        }
    }
    if let Some(fleet) = &state.fleet {
        use std::fmt::Write as _;
        let _ = writeln!(
            text,
            "# HELP pairgate_failover_disagreement Accounts on which this replica's verdict differs from the fleet's.\n# TYPE pairgate_failover_disagreement gauge\npairgate_failover_disagreement {}",
            fleet.disagreements()
        );
        let _ = writeln!(
            text,
            "# HELP pairgate_fleet_connected Whether this replica sees etcd (0: cut off, serving its last decisions).\n# TYPE pairgate_fleet_connected gauge\npairgate_fleet_connected {}",
            u8::from(fleet.connected())
        );
    }
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

fn parse_mode(body: &[u8]) -> Result<(Mode, String), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let mode = match v.get("mode").and_then(Value::as_str) {
        Some("auto") => Mode::Auto,
        Some("primary") => Mode::Pinned(Side::Primary),
        Some("secondary") => Mode::Pinned(Side::Secondary),
        Some(other) => {
            return Err(format!(
                "mode {other:?} is not one of \"auto\", \"primary\", \"secondary\""
            ));
        }
        None => {
            return Err("missing \"mode\": one of \"auto\", \"primary\", \"secondary\"".to_owned());
        }
    };
    Ok((mode, reason(&v)?))
}

/// `{"state": "down"}` takes the operator's hold, `{"state": "auto"}` releases it, and
/// `{"state": "auto", "force": true}` releases every hold (incidents' too).
fn parse_region_state(body: &[u8]) -> Result<(RegionChange, String), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let force = match v.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"force\" must be true or false".to_owned()),
    };
    let change = match (v.get("state").and_then(Value::as_str), force) {
        (Some("auto"), false) => RegionChange::Release(Holder::Operator),
        (Some("auto"), true) => RegionChange::ReleaseAll,
        (Some("down"), false) => RegionChange::Hold(Holder::Operator),
        (Some("down"), true) => {
            return Err("\"force\" only goes with \"state\": \"auto\"".to_owned());
        }
        (Some(other), _) => {
            return Err(format!("state {other:?} is not one of \"auto\", \"down\""));
        }
        (None, _) => return Err("missing \"state\": \"auto\" or \"down\"".to_owned()),
    };
    Ok((change, reason(&v)?))
}

fn reason(v: &Value) -> Result<String, String> {
    match v.get("reason") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) if s.len() <= 1024 => Ok(s.clone()),
        Some(Value::String(_)) => Err("\"reason\" is longer than 1024 bytes".to_owned()),
        Some(_) => Err("\"reason\" must be a string".to_owned()),
    }
}

fn mode_str(mode: Mode) -> &'static str {
    match mode {
        Mode::Auto => "auto",
        Mode::Pinned(side) => side.as_str(),
    }
}

fn tenant_json(v: &TenantView) -> Value {
    let account = |a: &(Arc<str>, Health)| json!({"account": &*a.0, "health": a.1.as_str()});
    json!({
        "name": &*v.name,
        "active_side": v.state.side.as_str(),
        "active_account": &*v.active().0,
        "mode": mode_str(v.state.mode),
        "generation": v.state.generation,
        "rejecting": v.state.reject,
        "primary": account(&v.primary),
        "secondary": v.secondary.as_ref().map(account),
    })
}

/// The tenant plus why it is where it is: pin, pending failback, recent transitions.
fn tenant_detail(state: &AdminState, v: &TenantView) -> Value {
    let mut out = tenant_json(v);
    out["pin"] = v.pin.as_ref().map_or(Value::Null, |p| {
        json!({
            "mode": p.side.as_str(), "reason": p.note.reason, "source": p.note.source,
            "at_unix_ms": p.note.at_unix_ms,
        })
    });
    out["pending_failback_in_ms"] = v.pending_failback_in.map_or(Value::Null, |d| {
        json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    // The subscription each account lives in (what `scope = "subscription"` incidents match).
    let config = state.reloader.config();
    let subscription = |name: &str| {
        config
            .accounts
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.subscription.clone())
    };
    out["primary"]["subscription"] = json!(subscription(&v.primary.0));
    if let Some(secondary) = &v.secondary {
        out["secondary"]["subscription"] = json!(subscription(&secondary.0));
    }
    // Why an unhealthy account is (`tls: invalid peer certificate: Expired`), `null` otherwise.
    out["primary"]["last_error"] = json!(v.primary_last_error.as_deref());
    if v.secondary.is_some() {
        out["secondary"]["last_error"] = json!(v.secondary_last_error.as_deref());
    }
    let accounts = [Some(&v.primary.0), v.secondary.as_ref().map(|s| &s.0)];
    let mut history: Vec<Value> = state
        .events
        .after(0, usize::MAX)
        .iter()
        .filter(|e| match &e.kind {
            EventKind::Transition { tenant, .. } | EventKind::Pin { tenant, .. } => {
                *tenant == v.name
            }
            EventKind::AccountHealth { account, .. } | EventKind::AccountState { account, .. } => {
                accounts.contains(&Some(account))
            }
            EventKind::RegionState { .. }
            | EventKind::Reload { .. }
            | EventKind::StateNotPersisted { .. }
            | EventKind::Disagreement { .. } => false,
        })
        .map(event_json)
        .collect();
    let keep = history.len().saturating_sub(20);
    out["history"] = Value::Array(history.split_off(keep));
    out
}

fn region_json(v: &RegionView) -> Value {
    let hold = |o: &pairgate_health::state::Note| json!({"reason": o.reason, "source": o.source, "at_unix_ms": o.at_unix_ms});
    // The latest hold, as `marked_down` (what clients read before holds existed).
    let latest = v.holds.iter().map(|(_, o)| o).max_by_key(|o| o.at_unix_ms);
    json!({
        "name": &*v.name,
        "pair": v.pair.as_deref(),
        "state": if v.holds.is_empty() { "auto" } else { "down" },
        "down": v.down,
        "marked_down": latest.map(hold),
        "holds": v.holds.iter().map(|(holder, o)| {
            let mut h = hold(o);
            h["holder"] = json!(holder.id());
            h
        }).collect::<Vec<_>>(),
        "accounts": v.accounts,
        "unhealthy_accounts": v.unhealthy,
    })
}

fn event_json(e: &pairgate_health::Event) -> Value {
    let mut v = match &e.kind {
        EventKind::Transition {
            tenant,
            from,
            to,
            reject,
            cause,
            generation,
        } => json!({
            "type": "transition", "tenant": &**tenant, "from": from.as_str(), "to": to.as_str(),
            "rejecting": reject, "cause": cause.label, "region": cause.region.as_deref(), "generation": generation,
        }),
        EventKind::AccountHealth {
            account,
            health,
            reason,
            detail,
        } => json!({
            "type": "account_health", "account": &**account, "health": health.as_str(), "reason": reason,
            "detail": detail.as_deref(),
        }),
        EventKind::Pin {
            tenant,
            mode,
            reason,
        } => json!({
            "type": "pin", "tenant": &**tenant, "mode": mode, "reason": reason,
        }),
        EventKind::RegionState {
            region,
            state,
            action,
            holder,
            reason,
            source,
        } => json!({
            "type": "region_state", "region": &**region, "state": state, "action": action,
            "holder": holder, "reason": reason, "source": source,
        }),
        EventKind::AccountState {
            account,
            state,
            action,
            holder,
            reason,
            source,
        } => json!({
            "type": "account_state", "account": &**account, "state": state, "action": action,
            "holder": holder, "reason": reason, "source": source,
        }),
        EventKind::Disagreement {
            account,
            local,
            fleet,
        } => json!({
            "type": "disagreement", "account": &**account, "local": local.as_str(), "fleet": fleet.as_str(),
        }),
        EventKind::StateNotPersisted { change, error } => json!({
            "type": "state_not_persisted", "change": change, "error": error,
        }),
        EventKind::Reload {
            generation,
            accepted,
            problems,
        } => json!({
            "type": "reload", "generation": generation, "accepted": accepted, "problems": problems,
        }),
    };
    v["seq"] = json!(e.seq);
    v["at_unix_ms"] = json!(e.at_unix_ms);
    v
}

/// The optional `"revision"` of a PUT body: the revision the caller saw.
fn revision(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("revision")?
        .as_i64()
}

fn fleet_error(err: FleetWriteError) -> Resp {
    match err {
        FleetWriteError::Conflict(detail) => error(StatusCode::CONFLICT, "conflict", &detail),
        FleetWriteError::Unavailable(detail) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "fleet_unavailable",
            &detail,
        ),
    }
}

fn control_error(err: ControlError) -> Resp {
    match err {
        ControlError::UnknownTenant => error(
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            "no tenant by that name",
        ),
        ControlError::UnknownRegion => error(
            StatusCode::NOT_FOUND,
            "unknown_region",
            "no region by that name",
        ),
        ControlError::UnknownAccount => error(
            StatusCode::NOT_FOUND,
            "unknown_account",
            "no account by that name",
        ),
        ControlError::NoSecondary => error(
            StatusCode::CONFLICT,
            "no_secondary",
            "the tenant has no secondary account",
        ),
        ControlError::NotPersisted => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "state_not_persisted",
            "the change could not be written to the state file, so it was not applied; see \
             GET /v1/events",
        ),
        ControlError::Stopped => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the controller is not running",
        ),
    }
}

fn page_limit(query: &str) -> usize {
    query_param(query, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAX_PAGE)
}

/// The first value of `key` in a query string (no percent-decoding beyond what names and
/// tokens need: they are plain ASCII).
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
}

fn json_resp(status: StatusCode, body: &Value) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, code: &str, detail: &str) -> Resp {
    json_resp(status, &json!({"error": code, "detail": detail}))
}
