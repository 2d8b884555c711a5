//! [`ConfigSpec`] to [`Config`]: every semantic check, every problem reported at once.
//!
//! A value that fails a check is replaced by its default (or index 0 for a reference) so that
//! checking can go on; the half-built [`Config`] is thrown away when any error was found.
//! Duplicate detection uses hash maps, so validation is linear in the size of the config.

mod auth;
mod client_auth;
mod control;
mod policy;
mod rules;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::time::Duration;

use crate::model::{
    AccountConfig, Config, Limits, Listen, RegionConfig, Routing, Runtime, Scheme, TenantConfig,
    TenantLimits, Upstream,
};
use crate::spec::{AccountSpec, ConfigSpec, RegionSpec, TenantSpec};
use crate::{Loaded, Problem, Severity};

use policy::HealthBase;
use rules::{Host, PrefixOf};

/// How `validate` looks up `${VAR}`.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Checks `spec` and builds the [`Config`].
///
/// `env` resolves `${VAR}` in header values; pass `&|name| std::env::var(name).ok()` in the
/// binary and a map lookup in tests. `Ok` carries the warnings; `Err` carries every error and
/// every warning, errors first, each group in the order found. No problem from `validate` has a
/// [`Location`](crate::Location) ([`load`](crate::load) adds them from the text).
pub fn validate(
    spec: &ConfigSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Vec<Problem>> {
    let mut problems = Problems::default();
    let config = build(spec, env, &mut problems);
    problems.finish(config)
}

fn build(spec: &ConfigSpec, env: Env<'_>, problems: &mut Problems) -> Config {
    let listen = Listen {
        http: match &spec.listen.http {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                problems.error(
                    "listen.http",
                    format!(
                        "{raw:?} is not a socket address; expected IP:PORT, e.g. 127.0.0.1:8080"
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }),
        },
        https: spec.listen.https.as_ref().and_then(|raw| {
            raw.parse()
                .map_err(|_| {
                    problems.error(
                        "listen.https",
                        format!(
                            "{raw:?} is not a socket address; expected IP:PORT, e.g. 127.0.0.1:8443"
                        ),
                    );
                })
                .ok()
        }),
        client_ca: spec.listen.client_ca.as_ref().and_then(|raw| {
            if raw.is_empty() {
                problems.error("listen.client_ca", "must not be empty");
                return None;
            }
            Some(std::path::PathBuf::from(raw))
        }),
    };
    let routing = Routing {
        tenant_header: spec.routing.tenant_header.as_ref().and_then(|raw| {
            rules::header_name(raw)
                .map_err(|message| problems.error("routing.tenant_header", message))
                .ok()
        }),
        forward_tenant_header: spec.routing.forward_tenant_header.unwrap_or(false),
    };
    let runtime = Runtime {
        worker_threads: spec
            .runtime
            .worker_threads
            .and_then(|n| count(n, 1, "runtime.worker_threads", problems)),
        shutdown_grace: duration(
            &spec.runtime.shutdown_grace,
            "runtime.shutdown_grace",
            Duration::from_secs(30),
            problems,
        ),
        // May be "0s" (the default: close the listeners at once).
        shutdown_delay: spec
            .runtime
            .shutdown_delay
            .as_ref()
            .map_or(Duration::ZERO, |raw| {
                crate::duration::parse_duration(raw).unwrap_or_else(|message| {
                    problems.error("runtime.shutdown_delay", message);
                    Duration::ZERO
                })
            }),
    };
    let certificates = control::certificates(&spec.certificates, listen.https.is_some(), problems);
    let admin = control::admin(&spec.admin, problems);
    let state = control::state(&spec.state, problems);
    let alerts = control::alerts(&spec.alerts, problems);
    let metrics = control::metrics(&spec.metrics, problems);
    let log = control::log(&spec.log, problems);
    let cluster = control::cluster(&spec.cluster, env, problems);
    let azure = auth::azure(&spec.azure, problems);
    let limits = Limits {
        header_read_timeout: duration(
            &spec.limits.header_read_timeout,
            "limits.header_read_timeout",
            Duration::from_secs(10),
            problems,
        ),
        max_request_header_bytes: spec
            .limits
            .max_request_header_bytes
            .and_then(|n| count(n, 1024, "limits.max_request_header_bytes", problems))
            .unwrap_or(64 * 1024),
        max_request_headers: spec
            .limits
            .max_request_headers
            .and_then(|n| count(n, 1, "limits.max_request_headers", problems))
            .unwrap_or(100),
        max_uri_bytes: spec
            .limits
            .max_uri_bytes
            .and_then(|n| count(n, 64, "limits.max_uri_bytes", problems))
            .unwrap_or(8 * 1024),
        max_request_body_bytes: spec
            .limits
            .max_request_body_bytes
            .and_then(|n| count(n, 0, "limits.max_request_body_bytes", problems))
            .map_or(2 << 30, |n| n as u64),
        body_idle_timeout: duration(
            &spec.limits.body_idle_timeout,
            "limits.body_idle_timeout",
            Duration::from_secs(30),
            problems,
        ),
        send_timeout: duration(
            &spec.limits.send_timeout,
            "limits.send_timeout",
            Duration::from_secs(60),
            problems,
        ),
        max_connections: spec
            .limits
            .max_connections
            .and_then(|n| count(n, 1, "limits.max_connections", problems))
            .filter(|&n| {
                // Far past any descriptor limit; also keeps the connection semaphore in range.
                let fits = n <= MAX_CONNECTIONS;
                if !fits {
                    let message = format!("must be at most {MAX_CONNECTIONS}");
                    problems.error("limits.max_connections", message);
                }
                fits
            })
            .unwrap_or(10_000),
        tenant_max_in_flight: spec
            .limits
            .tenant_max_in_flight
            .and_then(|n| count(n, 1, "limits.tenant_max_in_flight", problems))
            .unwrap_or(1000),
        http2_max_concurrent_streams: spec
            .limits
            .http2_max_concurrent_streams
            .and_then(|n| count(n, 1, "limits.http2_max_concurrent_streams", problems))
            .map_or(100, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        idle_timeout: duration(
            &spec.limits.idle_timeout,
            "limits.idle_timeout",
            Duration::from_secs(60),
            problems,
        ),
        http2_keepalive_interval: duration(
            &spec.limits.http2_keepalive_interval,
            "limits.http2_keepalive_interval",
            Duration::from_secs(30),
            problems,
        ),
        http2_keepalive_timeout: duration(
            &spec.limits.http2_keepalive_timeout,
            "limits.http2_keepalive_timeout",
            Duration::from_secs(20),
            problems,
        ),
    };
    let up = &spec.upstream;
    let upstream = Upstream {
        connect_timeout: duration(
            &up.connect_timeout,
            "upstream.connect_timeout",
            Duration::from_secs(2),
            problems,
        ),
        response_header_timeout: duration(
            &up.response_header_timeout,
            "upstream.response_header_timeout",
            Duration::from_secs(30),
            problems,
        ),
        read_timeout: duration(
            &up.read_timeout,
            "upstream.read_timeout",
            Duration::from_secs(60),
            problems,
        ),
        idle_timeout: duration(
            &up.idle_timeout,
            "upstream.idle_timeout",
            Duration::from_secs(90),
            problems,
        ),
        max_idle_per_account: up
            .max_idle_per_account
            .and_then(|n| count(n, 0, "upstream.max_idle_per_account", problems))
            .unwrap_or(256),
        max_replay_body: up
            .max_replay_body
            .and_then(|n| count(n, 0, "upstream.max_replay_body", problems))
            .unwrap_or(64 * 1024),
        retry_on_status: up
            .retry_on_status
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, &code)| {
                // Only refusals of the account: a 4xx is about the request itself.
                if code == 429 || (500..=599).contains(&code) {
                    u16::try_from(code).ok()
                } else {
                    problems.error(
                        format!("upstream.retry_on_status[{i}]"),
                        format!("{code} is not retried; expected 429 or a status from 500 to 599"),
                    );
                    None
                }
            })
            .collect(),
    };

    let health_base = policy::health(
        &spec.health,
        &HealthBase::defaults(),
        "health",
        true,
        env,
        problems,
    );
    let health = health_base.to_check();
    let failover = policy::failover(
        &spec.failover,
        &policy::failover_defaults(),
        "failover",
        problems,
    );

    let regions = regions(&spec.regions, problems);
    let region_index = regions.index;
    let accounts = accounts(
        &spec.accounts,
        &region_index,
        &health_base,
        &health,
        env,
        problems,
    );
    let client_auth = client_auth::client_auth(
        &spec.client_auth,
        &spec.jwt_issuers,
        listen.client_ca.as_ref(),
        listen.https.is_some(),
        problems,
    );
    let mut tenants = tenants(
        &spec.tenants,
        &accounts,
        &regions.configs,
        &failover,
        &limits,
        routing.tenant_header.is_some(),
        problems,
    );
    client_auth::tenants(&spec.tenants, &mut tenants, &client_auth, problems);
    if alerts.azure_monitor_scope == crate::model::AlertScope::Subscription {
        if cluster.is_some() {
            problems.error(
                "alerts.azure_monitor.scope",
                "\"subscription\" is not available in fleet mode yet: account holds are kept by \
                 each replica, and only region states are shared through etcd",
            );
        }
        for (i, account) in accounts.configs.iter().enumerate() {
            if account.subscription.is_none() {
                problems.warning(
                    format!("account[{i}]"),
                    "no subscription (set subscription, or auth.resource_id): with \
                     alerts.azure_monitor.scope = \"subscription\" no Service Health incident \
                     can move its tenants",
                );
            }
        }
    }
    outage_warnings(
        spec,
        &regions.configs,
        &accounts.regions,
        failover.region_outage_ratio,
        &tenants,
        problems,
    );

    Config {
        listen,
        routing,
        runtime,
        limits,
        upstream,
        health,
        failover,
        certificates,
        azure,
        admin,
        state,
        alerts,
        metrics,
        log,
        cluster,
        regions: regions.configs,
        accounts: accounts.configs,
        tenants,
        client_auth,
    }
}

/// Unhealthy accounts that make a region of `accounts` accounts down at `ratio`: at least two,
/// and more than the ratio (all of them at 1). The rule is `pairgate_failover`'s; `None` when
/// the region can never be down by ratio.
fn outage_threshold(accounts: usize, ratio: f64) -> Option<usize> {
    (2..=accounts).find(|&k| k as f64 / accounts as f64 > ratio || (k == accounts && ratio >= 1.0))
}

/// Warns where a minority of a region's accounts is enough for a region outage: unrelated
/// account failures (one tenant's revoked key, another's exhausted quota) then add up to moving
/// every tenant of the region. One account alone can never do it (the rule needs two).
fn outage_warnings(
    spec: &ConfigSpec,
    regions: &[RegionConfig],
    account_regions: &[Option<usize>],
    global_ratio: f64,
    tenants: &[TenantConfig],
    problems: &mut Problems,
) {
    let mut sizes = vec![0usize; regions.len()];
    for r in account_regions.iter().flatten() {
        if let Some(n) = sizes.get_mut(*r) {
            *n += 1;
        }
    }
    let minority = |region: usize, ratio: f64| -> Option<String> {
        let n = *sizes.get(region)?;
        let k = outage_threshold(n, ratio)?;
        (2 * k <= n).then(|| {
            format!(
                "{k} unhealthy accounts of the {n} in region {:?} are enough to mark it down \
                 (ratio {ratio}) and move every tenant whose primary is there, though they are \
                 not a majority; unrelated account failures can add up to a region outage. A \
                 ratio of 0.5 or more needs a majority",
                regions[region].name
            )
        })
    };
    for region in 0..regions.len() {
        if let Some(message) = minority(region, global_ratio) {
            problems.warning("failover.region_outage_ratio", message);
        }
    }
    for (i, (tenant, tspec)) in tenants.iter().zip(&spec.tenants).enumerate() {
        let own = tspec
            .failover
            .as_ref()
            .is_some_and(|f| f.region_outage_ratio.is_some());
        let Some(Some(region)) = account_regions.get(tenant.primary) else {
            continue;
        };
        if own && let Some(message) = minority(*region, tenant.failover.region_outage_ratio) {
            problems.warning(format!("tenant[{i}].failover.region_outage_ratio"), message);
        }
    }
}

struct Regions<'s> {
    configs: Vec<RegionConfig>,
    index: HashMap<&'s str, usize>,
}

fn regions<'s>(specs: &'s [RegionSpec], problems: &mut Problems) -> Regions<'s> {
    let names: Vec<&str> = specs
        .iter()
        .map(|r| r.name.as_deref().unwrap_or(""))
        .collect();
    let index = unique_names("region", specs.iter().map(|r| r.name.as_deref()), problems);
    let known: Vec<Option<&crate::catalogue::AzureRegion>> =
        names.iter().map(|n| crate::catalogue::lookup(n)).collect();
    // Each region's pair: its own `pair`, else its documented pair when that region is
    // configured too and does not pair elsewhere (a one-way documented pair needs nothing
    // back).
    let wanted: Vec<Option<&str>> = specs
        .iter()
        .zip(&known)
        .enumerate()
        .map(|(i, (spec, known))| {
            spec.pair.as_deref().or_else(|| {
                // A duplicate name is reported; it gets no defaults.
                if index.get(names[i]) != Some(&i) {
                    return None;
                }
                let known = (*known)?;
                let p = known.pair?;
                // The configured spelling of the documented pair (`WestUS` for `westus`).
                let j = names.iter().position(|n| n.eq_ignore_ascii_case(p))?;
                let back = specs[j].pair.as_deref();
                (known.one_way() || back.is_none() || back == Some(names[i])).then_some(names[j])
            })
        })
        .collect();
    let mut configs = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let pair = wanted[i].and_then(|pair| {
            let at = format!("region[{i}].pair");
            let Some(&j) = index.get(pair) else {
                problems.error(at, format!("unknown region {pair:?}"));
                return None;
            };
            if j == i {
                problems.error(at, "a region cannot pair with itself");
                return None;
            }
            let documented = known[i].and_then(|k| k.pair);
            let back = wanted[j];
            // Azure pairs a few regions one way only (West US 3 -> East US, ...): such a pair
            // is allowed when it is the documented one.
            let one_way_documented =
                documented == Some(pair) && known[i].is_some_and(|k| k.one_way());
            if back.and_then(|b| index.get(b)) != Some(&i) && !one_way_documented {
                let message = match back {
                    None => format!(
                        "pairs with {pair:?}, but {pair:?} does not pair back (set its pair = {:?})",
                        names[i]
                    ),
                    Some(other) => format!(
                        "pairs with {pair:?}, but {pair:?} pairs with {other:?}; pairs must be mutual"
                    ),
                };
                problems.error(at, message);
            } else if let Some(documented) = documented.filter(|d| *d != pair) {
                problems.warning(
                    at,
                    format!(
                        "Azure pairs {:?} with {documented:?}, not {pair:?} (see `pairgate regions`)",
                        names[i]
                    ),
                );
            }
            Some(j)
        });
        let azure_name = match &spec.azure_name {
            Some(n) if n.trim().is_empty() => {
                problems.error(format!("region[{i}].azure_name"), "must not be empty");
                None
            }
            Some(n) => Some(n.trim().to_owned()),
            // A known Azure region's alerts name it by its display name.
            None => known[i].map(|k| k.display.to_owned()),
        };
        configs.push(RegionConfig {
            name: names[i].to_owned(),
            pair,
            azure_name,
        });
    }
    Regions { configs, index }
}

struct Accounts<'s> {
    configs: Vec<AccountConfig>,
    index: HashMap<&'s str, usize>,
    /// Region of each account, `None` when its `region` did not resolve.
    regions: Vec<Option<usize>>,
}

fn accounts<'s>(
    specs: &'s [AccountSpec],
    region_index: &HashMap<&str, usize>,
    health_base: &HealthBase,
    health: &crate::model::HealthCheck,
    env: Env<'_>,
    problems: &mut Problems,
) -> Accounts<'s> {
    let index = unique_names("account", specs.iter().map(|a| a.name.as_deref()), problems);
    let mut configs = Vec::with_capacity(specs.len());
    let mut regions = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = |key: &str| format!("account[{i}].{key}");
        let region = reference(
            spec.region.as_deref(),
            &at("region"),
            "region",
            region_index,
            problems,
        );
        regions.push(region);
        let (scheme, authority) = match spec.url.as_deref() {
            None => {
                problems.error(
                    at("url"),
                    "missing; every account needs a url such as http://host:port",
                );
                (Scheme::Http, String::new())
            }
            Some(raw) => rules::account_url(raw).unwrap_or_else(|message| {
                problems.error(at("url"), message);
                (Scheme::Http, String::new())
            }),
        };
        let path_prefix = spec.path_prefix.as_deref().map_or_else(String::new, |raw| {
            rules::path_prefix(raw, PrefixOf::Account).unwrap_or_else(|message| {
                problems.error(at("path_prefix"), message);
                String::new()
            })
        });
        let headers = spec
            .headers
            .as_ref()
            .map(|h| rules::headers(h, &at("headers"), env, problems))
            .unwrap_or_default();
        let health = match &spec.health {
            None => health.clone(),
            Some(own) => {
                policy::health(own, health_base, &at("health"), false, env, problems).to_check()
            }
        };
        configs.push(AccountConfig {
            name: spec.name.clone().unwrap_or_default(),
            region: region.unwrap_or(0),
            scheme,
            authority,
            path_prefix,
            headers,
            http2: spec.http2.unwrap_or(false),
            health,
            tls: control::account_tls(spec, scheme, &at, problems),
            subscription: None,
            resource_id: None,
            auth: spec
                .auth
                .as_ref()
                .and_then(|a| auth::account_auth(a, &at("auth"), env, problems)),
        });
        let account = configs.last_mut().expect("just pushed");
        account.resource_id = resource_id(spec, account.auth.as_ref(), &at, problems);
        account.subscription =
            subscription(spec, account.auth.as_ref(), &at, problems).or_else(|| {
                // The subscription of an explicit `resource_id`.
                let id = account.resource_id.as_deref()?;
                crate::ArmResourceId::parse(id)
                    .ok()
                    .map(|r| r.subscription.to_ascii_lowercase())
            });
    }
    Accounts {
        configs,
        index,
        regions,
    }
}

/// The ARM resource an account's `auth` mints its token for, if any.
fn arm_resource(auth: Option<&crate::AccountAuth>) -> Option<&crate::ArmResourceId> {
    match auth {
        Some(crate::AccountAuth::AzureVideoIndexer(arm)) => Some(&arm.resource_id),
        _ => None,
    }
}

/// An account's ARM resource id, lower-cased: `resource_id` (checked like `auth.resource_id`),
/// else the one in its `auth`; both set and different is an error.
fn resource_id(
    spec: &AccountSpec,
    auth: Option<&crate::AccountAuth>,
    at: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<String> {
    let from_auth = arm_resource(auth).map(|r| r.id.to_ascii_lowercase());
    let Some(raw) = spec.resource_id.as_deref() else {
        return from_auth;
    };
    match crate::ArmResourceId::parse(raw) {
        Err(message) => {
            problems.error(at("resource_id"), message);
            from_auth
        }
        Ok(parsed) => {
            let own = parsed.id.to_ascii_lowercase();
            if let Some(other) = from_auth.filter(|s| *s != own) {
                problems.error(
                    at("resource_id"),
                    format!("differs from auth.resource_id ({other})"),
                );
            }
            Some(own)
        }
    }
}

/// An account's subscription: `subscription` (a GUID, compared lower-cased), else the one in
/// its ARM `resource_id`; both set and different is an error.
fn subscription(
    spec: &AccountSpec,
    auth: Option<&crate::AccountAuth>,
    at: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<String> {
    let from_auth = arm_resource(auth).map(|r| r.subscription.to_ascii_lowercase());
    let Some(raw) = spec.subscription.as_deref() else {
        return from_auth;
    };
    let ok = raw.len() == 36
        && raw.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !ok {
        problems.error(
            at("subscription"),
            format!("{raw:?} is not a subscription id; expected a GUID such as \"00000000-0000-0000-0000-000000000000\""),
        );
        return from_auth;
    }
    let own = raw.to_ascii_lowercase();
    if let Some(other) = from_auth.filter(|s| *s != own) {
        problems.error(
            at("subscription"),
            format!("differs from the subscription of auth.resource_id ({other})"),
        );
    }
    Some(own)
}

fn tenants(
    specs: &[TenantSpec],
    accounts: &Accounts<'_>,
    regions: &[RegionConfig],
    failover: &crate::model::FailoverPolicy,
    limits: &Limits,
    has_tenant_header: bool,
    problems: &mut Problems,
) -> Vec<TenantConfig> {
    // Nothing refers to a tenant by name in the file; only the checks matter here.
    unique_names("tenant", specs.iter().map(|t| t.name.as_deref()), problems);
    // Who claimed what first: exact host / wildcard suffix / path prefix -> tenant index.
    let mut exact: HashMap<String, usize> = HashMap::with_capacity(specs.len());
    let mut wild: HashMap<String, usize> = HashMap::with_capacity(specs.len());
    let mut prefixes: HashMap<String, usize> = HashMap::new();
    let name_of = |i: usize| specs[i].name.as_deref().unwrap_or("");
    let mut out = Vec::with_capacity(specs.len());

    for (i, spec) in specs.iter().enumerate() {
        let mut hosts = Vec::new();
        let mut wildcards = Vec::new();
        for (j, raw) in spec.hosts.iter().enumerate() {
            let at = format!("tenant[{i}].hosts[{j}]");
            let (host, map, list, shown) = match rules::host(raw) {
                Err(message) => {
                    problems.error(at, message);
                    continue;
                }
                Ok(Host::Exact(h)) => {
                    let shown = format!("host {h:?}");
                    (h, &mut exact, &mut hosts, shown)
                }
                Ok(Host::Wildcard(h)) => {
                    let shown = format!("wildcard \"*.{h}\"");
                    (h, &mut wild, &mut wildcards, shown)
                }
            };
            match map.entry(host) {
                Entry::Vacant(slot) => {
                    list.push(slot.key().clone());
                    slot.insert(i);
                }
                Entry::Occupied(first) if *first.get() == i => {
                    problems.warning(at, format!("{shown} is listed twice"));
                }
                Entry::Occupied(first) => problems.error(
                    at,
                    format!(
                        "{shown} is claimed by both tenant {:?} and tenant {:?}",
                        name_of(*first.get()),
                        name_of(i)
                    ),
                ),
            }
        }

        let path_prefix = spec.path_prefix.as_deref().and_then(|raw| {
            let at = format!("tenant[{i}].path_prefix");
            let prefix = rules::path_prefix(raw, PrefixOf::Tenant)
                .map_err(|message| problems.error(at.clone(), message))
                .ok()?;
            match prefixes.entry(prefix.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
                Entry::Occupied(first) => problems.error(
                    at,
                    format!(
                        "path_prefix {prefix:?} is claimed by both tenant {:?} and tenant {:?}",
                        name_of(*first.get()),
                        name_of(i)
                    ),
                ),
            }
            Some(prefix)
        });

        if spec.hosts.is_empty() && spec.path_prefix.is_none() && !has_tenant_header {
            problems.warning(
                format!("tenant[{i}]"),
                "unreachable: no hosts and no path_prefix, and without a [routing] tenant_header \
                 no request can name it",
            );
        }

        let primary = match spec.primary.as_deref() {
            None => {
                problems.error(
                    format!("tenant[{i}].primary"),
                    "missing; every tenant needs a primary account",
                );
                None
            }
            Some(name) => reference(
                Some(name),
                &format!("tenant[{i}].primary"),
                "account",
                &accounts.index,
                problems,
            ),
        };
        let secondary = spec.secondary.as_deref().and_then(|name| {
            reference(
                Some(name),
                &format!("tenant[{i}].secondary"),
                "account",
                &accounts.index,
                problems,
            )
        });
        if let (Some(p), Some(s)) = (primary, secondary) {
            check_pairing(i, p, s, accounts, regions, problems);
        }

        let failover = match &spec.failover {
            None => failover.clone(),
            Some(own) => {
                policy::failover(own, failover, &format!("tenant[{i}].failover"), problems)
            }
        };
        let own = spec.limits.clone().unwrap_or_default();
        let tenant_limits = TenantLimits {
            max_request_body_bytes: own
                .max_request_body_bytes
                .and_then(|n| {
                    count(
                        n,
                        0,
                        &format!("tenant[{i}].limits.max_request_body_bytes"),
                        problems,
                    )
                })
                .map_or(limits.max_request_body_bytes, |n| n as u64),
            max_in_flight: own
                .max_in_flight
                .and_then(|n| count(n, 1, &format!("tenant[{i}].limits.max_in_flight"), problems))
                .unwrap_or(limits.tenant_max_in_flight),
        };
        out.push(TenantConfig {
            name: spec.name.clone().unwrap_or_default(),
            hosts,
            wildcards,
            path_prefix,
            primary: primary.unwrap_or(0),
            secondary,
            failover,
            limits: tenant_limits,
            // Filled by `client_auth::tenants`, which needs every tenant's name first.
            client_auth: Default::default(),
        });
    }
    out
}

/// Primary and secondary must be different accounts in different regions, ideally paired ones.
fn check_pairing(
    i: usize,
    primary: usize,
    secondary: usize,
    accounts: &Accounts<'_>,
    regions: &[RegionConfig],
    problems: &mut Problems,
) {
    let at = format!("tenant[{i}].secondary");
    let name = |a: usize| accounts.configs[a].name.as_str();
    if primary == secondary {
        problems.error(
            at,
            format!(
                "{:?} is also the primary; a secondary must be another account",
                name(secondary)
            ),
        );
        return;
    }
    let (Some(pr), Some(sr)) = (accounts.regions[primary], accounts.regions[secondary]) else {
        return;
    };
    if pr == sr {
        problems.error(
            at,
            format!(
                "primary {:?} and secondary {:?} are both in region {:?}; a secondary belongs in another region",
                name(primary),
                name(secondary),
                regions[pr].name
            ),
        );
    } else if regions[pr].pair != Some(sr) {
        problems.warning(
            at,
            format!(
                "primary region {:?} and secondary region {:?} are not a pair",
                regions[pr].name, regions[sr].name
            ),
        );
    }
}

/// Checks every `kind[i].name` and returns name -> index of its first use.
fn unique_names<'s>(
    kind: &str,
    names: impl ExactSizeIterator<Item = Option<&'s str>>,
    problems: &mut Problems,
) -> HashMap<&'s str, usize> {
    let mut index = HashMap::with_capacity(names.len());
    for (i, name) in names.enumerate() {
        let at = format!("{kind}[{i}].name");
        let Some(name) = name else {
            problems.error(at, format!("missing; every {kind} needs a name"));
            continue;
        };
        if let Err(message) = rules::name(name) {
            problems.error(at.clone(), message);
        }
        match index.entry(name) {
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
            Entry::Occupied(first) => problems.error(
                at,
                format!(
                    "duplicate {kind} {name:?} (first defined at {kind}[{}])",
                    first.get()
                ),
            ),
        }
    }
    index
}

/// Resolves a reference to a named region or account.
fn reference(
    name: Option<&str>,
    at: &str,
    kind: &str,
    index: &HashMap<&str, usize>,
    problems: &mut Problems,
) -> Option<usize> {
    let Some(name) = name else {
        problems.error(at, format!("missing; name a {kind}"));
        return None;
    };
    let found = index.get(name).copied();
    if found.is_none() {
        problems.error(at, format!("unknown {kind} {name:?}"));
    }
    found
}

/// The largest `limits.max_connections`.
const MAX_CONNECTIONS: usize = 10_000_000;

/// An integer at least `min`, as usize.
fn count(n: i64, min: i64, at: &str, problems: &mut Problems) -> Option<usize> {
    if n < min {
        problems.error(at, format!("must be at least {min}"));
        return None;
    }
    usize::try_from(n)
        .map_err(|_| problems.error(at, "too large"))
        .ok()
}

/// An optional duration that must be positive, or `default`.
fn duration(
    raw: &Option<String>,
    at: &str,
    default: Duration,
    problems: &mut Problems,
) -> Duration {
    match raw {
        None => default,
        Some(raw) => policy::positive_duration(raw).unwrap_or_else(|message| {
            problems.error(at, message);
            default
        }),
    }
}

/// `prefix.key`, or `key` at the top level.
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Problems found so far.
#[derive(Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    fn push(&mut self, severity: Severity, path: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem {
            severity,
            path: path.into(),
            message: message.into(),
            location: None,
        });
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path, message);
    }

    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path, message);
    }

    fn finish(self, config: Config) -> Result<Loaded, Vec<Problem>> {
        let mut list = self.list;
        if list.iter().any(|p| p.severity == Severity::Error) {
            // Stable: errors first, each group in the order found.
            list.sort_by_key(|p| std::cmp::Reverse(p.severity));
            Err(list)
        } else {
            Ok(Loaded {
                config,
                warnings: list,
            })
        }
    }
}

/// The headers no `headers = { ... }` table may set, for tests.
#[cfg(test)]
pub(crate) const MANAGED_HEADER_NAMES: [&str; 9] = rules::MANAGED_HEADERS;
