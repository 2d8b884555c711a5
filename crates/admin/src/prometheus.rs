//! Prometheus text exposition (format 0.0.4) of every pairgate metric.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use pairgate_failover::{Health, Side};
use pairgate_health::{ControllerStats, Monitor};
use pairgate_proxy::Shared;
use pairgate_proxy::metrics::{CLASSES, DURATION_BUCKETS, Histogram, NO_REGION, class_label};

/// Reload counters: (accepted, rejected).
pub type ReloadCounts = (u64, u64);

/// Renders the whole exposition.
pub fn render(
    proxy: &Shared,
    monitor: &Monitor,
    controller: &ControllerStats,
    reloads: ReloadCounts,
    generation: u64,
) -> String {
    let mut out = String::with_capacity(4096);

    requests(&mut out, proxy);
    header(
        &mut out,
        "pairgate_account_healthy",
        "gauge",
        "1 healthy, 0 unhealthy, -1 not yet known.",
    );
    for (account, region, health) in &controller.accounts {
        let v = match health {
            Health::Healthy => 1,
            Health::Unhealthy => 0,
            Health::Unknown => -1,
        };
        let _ = writeln!(
            out,
            "pairgate_account_healthy{{account=\"{}\",region=\"{}\"}} {v}",
            esc(account),
            esc(region)
        );
    }
    header(
        &mut out,
        "pairgate_account_health_info",
        "gauge",
        "Always 1: what tipped the account's last verdict (a probe result, passive, passive_5xx, fleet).",
    );
    for (account, cause) in &controller.causes {
        let _ = writeln!(
            out,
            "pairgate_account_health_info{{account=\"{}\",cause=\"{cause}\"}} 1",
            esc(account)
        );
    }
    header(
        &mut out,
        "pairgate_region_down",
        "gauge",
        "1 when the region counts as down (marked, or by the outage ratio).",
    );
    for (region, down) in &controller.regions {
        let _ = writeln!(
            out,
            "pairgate_region_down{{region=\"{}\"}} {}",
            esc(region),
            u8::from(*down)
        );
    }
    header(
        &mut out,
        "pairgate_tenant_active_side",
        "gauge",
        "0 primary, 1 secondary; the first metrics.tenant_label_limit tenants.",
    );
    for (tenant, side) in &controller.tenants {
        let _ = writeln!(
            out,
            "pairgate_tenant_active_side{{tenant=\"{}\"}} {}",
            esc(tenant),
            u8::from(*side == Side::Secondary)
        );
    }
    header(
        &mut out,
        "pairgate_tenants_on_side",
        "gauge",
        "Tenants on each side, all tenants.",
    );
    let listed_secondary = controller
        .tenants
        .iter()
        .filter(|(_, s)| *s == Side::Secondary)
        .count() as u64;
    let listed_primary = controller.tenants.len() as u64 - listed_secondary;
    let _ = writeln!(
        out,
        "pairgate_tenants_on_side{{side=\"primary\"}} {}",
        listed_primary + controller.other_tenants.0
    );
    let _ = writeln!(
        out,
        "pairgate_tenants_on_side{{side=\"secondary\"}} {}",
        listed_secondary + controller.other_tenants.1
    );
    transitions(&mut out, controller);
    header(
        &mut out,
        "pairgate_replays_total",
        "counter",
        "Requests replayed on the other account, by outcome.",
    );
    let stats = proxy.stats();
    let _ = writeln!(
        out,
        "pairgate_replays_total{{outcome=\"succeeded\"}} {}",
        stats.replays_succeeded.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "pairgate_replays_total{{outcome=\"failed\"}} {}",
        stats.replays_failed.load(Ordering::Relaxed)
    );
    let table = proxy.routes();
    header(
        &mut out,
        "pairgate_probes_total",
        "counter",
        "Active health probes, by account and result.",
    );
    for account in table.accounts() {
        for (result, n) in account.counters.probes() {
            let _ = writeln!(
                out,
                "pairgate_probes_total{{account=\"{}\",result=\"{result}\"}} {n}",
                esc(&account.name)
            );
        }
    }
    header(
        &mut out,
        "pairgate_passive_failures_total",
        "counter",
        "Failed live requests reported to the health checker, by account and kind (5xx, or the error code).",
    );
    for account in table.accounts() {
        for (kind, n) in account.counters.passive() {
            let _ = writeln!(
                out,
                "pairgate_passive_failures_total{{account=\"{}\",kind=\"{kind}\"}} {n}",
                esc(&account.name)
            );
        }
    }
    header(
        &mut out,
        "pairgate_upstream_connections_open",
        "gauge",
        "Connections open from the gateway's upstream pools to the account (idle or in use); accounts sharing an http:// authority share connections and show the same number.",
    );
    for account in table.accounts() {
        let _ = writeln!(
            out,
            "pairgate_upstream_connections_open{{account=\"{}\"}} {}",
            esc(&account.name),
            account.counters.connections_open()
        );
    }
    let probes = monitor.stats();
    header(
        &mut out,
        "pairgate_passive_ejections_total",
        "counter",
        "Accounts ejected for consecutive 5xx answers or gateway errors from live traffic.",
    );
    let _ = writeln!(
        out,
        "pairgate_passive_ejections_total {}",
        probes.ejections.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "pairgate_local_resource_errors_total",
        "counter",
        "Failures for want of the gateway's own file descriptors (emfile: process limit, enfile: system limit), by where they happened; never counted against an account.",
    );
    for (kind, at, n) in pairgate_routing::local::LOCAL_ERRORS.counts() {
        let _ = writeln!(
            out,
            "pairgate_local_resource_errors_total{{kind=\"{kind}\",at=\"{at}\"}} {n}"
        );
    }
    header(
        &mut out,
        "pairgate_log_lines_dropped_total",
        "counter",
        "Log lines (access log included) dropped because the log writer's queue was full: stderr did not keep up.",
    );
    let _ = writeln!(
        out,
        "pairgate_log_lines_dropped_total {}",
        pairgate_proxy::metrics::LOG_LINES_DROPPED.load(Ordering::Relaxed)
    );
    let credentials = proxy.account_credentials();
    header(
        &mut out,
        "pairgate_account_token_expiry_seconds",
        "gauge",
        "Seconds until the account's minted access token expires (0: no valid token), for accounts with auth.",
    );
    for (account, credential) in &credentials {
        let _ = writeln!(
            out,
            "pairgate_account_token_expiry_seconds{{account=\"{}\"}} {:.3}",
            esc(account),
            credential.provider.seconds_left()
        );
    }
    header(
        &mut out,
        "pairgate_token_refreshes_total",
        "counter",
        "Token fetches of each account's credential by result (success, failure, throttled); accounts sharing a credential show the same counts.",
    );
    for (account, credential) in &credentials {
        for result in [
            pairgate_credentials::RefreshResult::Success,
            pairgate_credentials::RefreshResult::Failure,
            pairgate_credentials::RefreshResult::Throttled,
        ] {
            let _ = writeln!(
                out,
                "pairgate_token_refreshes_total{{account=\"{}\",result=\"{}\"}} {}",
                esc(account),
                result.label(),
                credential.provider.refreshes(result)
            );
        }
    }
    header(
        &mut out,
        "pairgate_config_reloads_total",
        "counter",
        "Config reloads, by result.",
    );
    let _ = writeln!(
        out,
        "pairgate_config_reloads_total{{result=\"success\"}} {}",
        reloads.0
    );
    let _ = writeln!(
        out,
        "pairgate_config_reloads_total{{result=\"failure\"}} {}",
        reloads.1
    );
    header(
        &mut out,
        "pairgate_config_generation",
        "gauge",
        "The config generation serving traffic (1 at start).",
    );
    let _ = writeln!(out, "pairgate_config_generation {generation}");
    out
}

/// The request counter, the latency histogram, the tenant counter and the error counter, read
/// from the counters the current routing table carries (accounts and tenants that left the
/// config at a reload leave with their series).
fn requests(out: &mut String, proxy: &Shared) {
    let table = proxy.routes();
    let m = proxy.metrics();
    // (region, account, side, class, histogram) for every series with a count.
    let mut series: Vec<(&str, &str, &str, usize, &Histogram)> = Vec::new();
    for account in table.accounts() {
        let region = &*table.region(account.region).name;
        for side in [Side::Primary, Side::Secondary] {
            for class in 0..CLASSES {
                let h = account.counters.histogram(side, class);
                if h.count() > 0 {
                    series.push((region, &account.name, side.as_str(), class, h));
                }
            }
        }
    }
    for class in 0..CLASSES {
        let h = m.unrouted(class);
        if h.count() > 0 {
            series.push((NO_REGION, NO_REGION, NO_REGION, class, h));
        }
    }
    header(
        out,
        "pairgate_requests_total",
        "counter",
        "Requests answered, by the region, account and side that answered (none: no account) and status class.",
    );
    for (region, account, side, class, h) in &series {
        let _ = writeln!(
            out,
            "pairgate_requests_total{{region=\"{}\",account=\"{}\",side=\"{side}\",code=\"{}\"}} {}",
            esc(region),
            esc(account),
            class_label(*class),
            h.count()
        );
    }
    header(
        out,
        "pairgate_request_duration_seconds",
        "histogram",
        "Time from request head to response head, including replays, by the same labels as pairgate_requests_total.",
    );
    for (region, account, side, class, h) in &series {
        let labels = format!(
            "region=\"{}\",account=\"{}\",side=\"{side}\",code=\"{}\"",
            esc(region),
            esc(account),
            class_label(*class)
        );
        let (buckets, sum) = h.snapshot();
        for (le, n) in DURATION_BUCKETS.iter().zip(&buckets) {
            let _ = writeln!(
                out,
                "pairgate_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}"
            );
        }
        let count = buckets.last().copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "pairgate_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "pairgate_request_duration_seconds_sum{{{labels}}} {sum}"
        );
        let _ = writeln!(
            out,
            "pairgate_request_duration_seconds_count{{{labels}}} {count}"
        );
    }
    header(
        out,
        "pairgate_tenant_requests_total",
        "counter",
        "Requests by tenant and status class; tenants past metrics.tenant_label_limit (config order) share tenant=\"_other\".",
    );
    for tenant in table.tenants() {
        let Some(counters) = &tenant.counters else {
            continue;
        };
        for class in 0..CLASSES {
            let n = counters.count(class);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "pairgate_tenant_requests_total{{tenant=\"{}\",code=\"{}\"}} {n}",
                    esc(&tenant.name),
                    class_label(class)
                );
            }
        }
    }
    for class in 0..CLASSES {
        let n = m.other_tenants(class);
        if n > 0 {
            let _ = writeln!(
                out,
                "pairgate_tenant_requests_total{{tenant=\"_other\",code=\"{}\"}} {n}",
                class_label(class)
            );
        }
    }
    header(
        out,
        "pairgate_client_auth_total",
        "counter",
        "Client authentications of tenants with client_auth, by tenant and result (ok, missing, invalid, wrong_tenant, unavailable); tenants past metrics.tenant_label_limit share tenant=\"_other\".",
    );
    for tenant in table.tenants() {
        let Some(counters) = &tenant.counters else {
            continue;
        };
        for (i, label) in AUTH_LABELS.iter().enumerate() {
            let n = counters.auth_count(i);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "pairgate_client_auth_total{{tenant=\"{}\",result=\"{label}\"}} {n}",
                    esc(&tenant.name),
                );
            }
        }
    }
    for (i, label) in AUTH_LABELS.iter().enumerate() {
        let n = m.other_tenants_auth(i);
        if n > 0 {
            let _ = writeln!(
                out,
                "pairgate_client_auth_total{{tenant=\"_other\",result=\"{label}\"}} {n}"
            );
        }
    }
    header(
        out,
        "pairgate_request_errors_total",
        "counter",
        "Requests that failed, by error code (the code in the error response and the access log).",
    );
    for (code, n) in m.errors() {
        let _ = writeln!(out, "pairgate_request_errors_total{{error=\"{code}\"}} {n}");
    }
    header(
        out,
        "pairgate_client_connections_open",
        "gauge",
        "Client connections open now (HTTP and HTTPS listeners), admitted under limits.max_connections.",
    );
    let _ = writeln!(
        out,
        "pairgate_client_connections_open {}",
        proxy.stats().client_connections.load(Ordering::Relaxed)
    );
}

/// Tenant transitions split by kind, and the side gauges that go with them.
fn transitions(out: &mut String, controller: &ControllerStats) {
    let is_failback = |cause: &str| matches!(cause, "failback" | "manual_failback");
    let is_pin = |cause: &str| matches!(cause, "pinned" | "unpinned");
    header(
        out,
        "pairgate_failovers_total",
        "counter",
        "Tenant side or reject changes caused by health, outages, alerts, reconfiguration or the fleet, by the region of the tenant's primary and cause.",
    );
    for ((region, cause), n) in &controller.transitions {
        if !is_failback(cause) && !is_pin(cause) {
            let _ = writeln!(
                out,
                "pairgate_failovers_total{{region=\"{}\",cause=\"{cause}\"}} {n}",
                esc(region)
            );
        }
    }
    header(
        out,
        "pairgate_failbacks_total",
        "counter",
        "Tenants moved back to their primary (automatic or manual failback), by the primary's region.",
    );
    let mut failbacks: std::collections::BTreeMap<&str, u64> =
        controller.regions.iter().map(|(r, _)| (&**r, 0)).collect();
    for ((region, cause), n) in &controller.transitions {
        if is_failback(cause) {
            *failbacks.entry(region).or_default() += n;
        }
    }
    for (region, n) in failbacks {
        let _ = writeln!(
            out,
            "pairgate_failbacks_total{{region=\"{}\"}} {n}",
            esc(region)
        );
    }
    header(
        out,
        "pairgate_pins_total",
        "counter",
        "Tenant moves made by operator pins and unpins (source=\"operator\": the admin API).",
    );
    let pins: u64 = controller
        .transitions
        .iter()
        .filter(|((_, cause), _)| is_pin(cause))
        .map(|(_, n)| n)
        .sum();
    let _ = writeln!(out, "pairgate_pins_total{{source=\"operator\"}} {pins}");
    header(
        out,
        "pairgate_tenants_pinned",
        "gauge",
        "Tenants with an operator pin.",
    );
    let _ = writeln!(out, "pairgate_tenants_pinned {}", controller.pinned);
    header(
        out,
        "pairgate_tenants_on_secondary",
        "gauge",
        "Tenants serving from their secondary, by the region of their primary.",
    );
    for (region, n) in &controller.on_secondary {
        let _ = writeln!(
            out,
            "pairgate_tenants_on_secondary{{region=\"{}\"}} {n}",
            esc(region)
        );
    }
    header(
        out,
        "pairgate_requests_in_flight",
        "gauge",
        "Requests in flight (until their response body ends), by the region of the tenant's active account.",
    );
    for (region, n) in &controller.in_flight {
        let _ = writeln!(
            out,
            "pairgate_requests_in_flight{{region=\"{}\"}} {n}",
            esc(region)
        );
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
pub(crate) fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `result` labels of `pairgate_client_auth_total`, by `pairgate_clientauth::AuthResult` index.
const AUTH_LABELS: [&str; pairgate_routing::counters::AUTH_RESULTS] =
    ["ok", "missing", "invalid", "wrong_tenant", "unavailable"];
