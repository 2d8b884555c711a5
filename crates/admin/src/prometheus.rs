//! Prometheus text exposition (format 0.0.4) of every pairgate metric.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use pairgate_failover::{Health, Side};
use pairgate_health::{ControllerStats, Monitor};
use pairgate_proxy::Shared;
use pairgate_proxy::metrics::DURATION_BUCKETS;

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
    let m = proxy.metrics();

    header(
        &mut out,
        "pairgate_requests_total",
        "counter",
        "Requests answered, by the region of the account that served them (none: no tenant) and status class.",
    );
    for (region, class, n) in m.by_region() {
        let _ = writeln!(
            out,
            "pairgate_requests_total{{region=\"{}\",class=\"{class}\"}} {n}",
            esc(&region)
        );
    }
    header(
        &mut out,
        "pairgate_tenant_requests_total",
        "counter",
        "Requests by tenant and status class; tenants past metrics.tenant_label_limit share tenant=\"_other\".",
    );
    for (tenant, class, n) in m.by_tenant() {
        let _ = writeln!(
            out,
            "pairgate_tenant_requests_total{{tenant=\"{}\",class=\"{class}\"}} {n}",
            esc(&tenant)
        );
    }
    header(
        &mut out,
        "pairgate_request_duration_seconds",
        "histogram",
        "Time from request head to response head, including replays.",
    );
    let (buckets, sum, count) = m.duration();
    for (le, n) in DURATION_BUCKETS.iter().zip(&buckets) {
        let _ = writeln!(
            out,
            "pairgate_request_duration_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "pairgate_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(out, "pairgate_request_duration_seconds_sum {sum}");
    let _ = writeln!(out, "pairgate_request_duration_seconds_count {count}");

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
    header(
        &mut out,
        "pairgate_failovers_total",
        "counter",
        "Tenant transitions (side or reject changes), by cause.",
    );
    for (cause, n) in &controller.transitions {
        let _ = writeln!(out, "pairgate_failovers_total{{cause=\"{cause}\"}} {n}");
    }
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
    header(
        &mut out,
        "pairgate_probes_total",
        "counter",
        "Active health probes, by result.",
    );
    let probes = monitor.stats();
    let _ = writeln!(
        out,
        "pairgate_probes_total{{result=\"success\"}} {}",
        probes.success.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "pairgate_probes_total{{result=\"failure\"}} {}",
        probes.failure.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "pairgate_passive_failures_total",
        "counter",
        "Failed live requests reported to the health checker.",
    );
    let _ = writeln!(
        out,
        "pairgate_passive_failures_total {}",
        probes.passive.load(Ordering::Relaxed)
    );
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

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
