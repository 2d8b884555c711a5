//! `[admin]`, `[state]`, `[alerts]`, `[metrics]`: the control plane's keys.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::collections::HashMap;
use std::time::Duration;

use super::rules::{self, Host};
use super::{Problems, count};
use crate::model::{
    AccessLogMode, AccountTls, Admin, AlertScope, Alerts, CertificateConfig, Cluster,
    IsolatedFailover, LogConfig, Metrics, Scheme, StateConfig,
};
use crate::spec::{
    AccountSpec, AdminSpec, AlertsSpec, CertificateSpec, ClusterSpec, LogSpec, MetricsSpec,
    StateSpec,
};

/// `[cluster]`: the etcd backend only, at least one `http://` endpoint.
pub(super) fn cluster(
    spec: &Option<ClusterSpec>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<Cluster> {
    let spec = spec.as_ref()?;
    match spec.backend.as_deref() {
        Some("etcd") => {}
        Some(other) => problems.error(
            "cluster.backend",
            format!("{other:?} is not supported; use \"etcd\""),
        ),
        None => problems.error("cluster.backend", "missing: backend = \"etcd\""),
    }
    if spec.endpoints.is_empty() {
        problems.error(
            "cluster.endpoints",
            "at least one etcd endpoint is needed, e.g. \"http://127.0.0.1:2379\"",
        );
    }
    for (i, e) in spec.endpoints.iter().enumerate() {
        if !e.starts_with("http://") && !e.starts_with("https://") {
            problems.error(
                format!("cluster.endpoints[{i}]"),
                "must be an http:// or https:// URL",
            );
        }
    }
    let path = |v: &Option<String>, key: &str, problems: &mut Problems| match v {
        Some(p) if p.trim().is_empty() => {
            problems.error(format!("cluster.{key}"), "must not be empty");
            None
        }
        other => other.as_ref().map(PathBuf::from),
    };
    let client_auth = match (
        path(&spec.client_cert, "client_cert", problems),
        path(&spec.client_key, "client_key", problems),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            problems.error(
                "cluster.client_key",
                "missing: client_cert needs client_key",
            );
            None
        }
        (None, Some(_)) => {
            problems.error(
                "cluster.client_cert",
                "missing: client_key needs client_cert",
            );
            None
        }
    };
    let tls = AccountTls {
        ca: path(&spec.ca, "ca", problems),
        sni: None,
        client_auth,
    };
    let prefix = spec
        .prefix
        .clone()
        .unwrap_or_else(|| "/pairgate/".to_owned());
    if !prefix.starts_with('/') || !prefix.ends_with('/') {
        problems.error("cluster.prefix", "must start and end with '/'");
    }
    let duration =
        |raw: &Option<String>, at: &str, default: Duration, problems: &mut Problems| match raw {
            None => default,
            Some(r) => crate::parse_duration(r).unwrap_or_else(|m| {
                problems.error(at, m);
                default
            }),
        };
    let isolated_failover = match spec.isolated_failover.as_deref() {
        None | Some("hold") => IsolatedFailover::Hold,
        Some("act") => IsolatedFailover::Act,
        Some(other) => {
            problems.error(
                "cluster.isolated_failover",
                format!("{other:?} is not \"hold\" or \"act\""),
            );
            IsolatedFailover::Hold
        }
    };
    let credentials = match (&spec.username, &spec.password) {
        (None, None) => None,
        (Some(user), Some(raw)) => match rules::expand(raw, env) {
            Ok(password) => Some((user.clone(), crate::Secret::new(password))),
            Err(messages) => {
                for m in messages {
                    problems.error("cluster.password", m);
                }
                None
            }
        },
        (Some(_), None) => {
            problems.error(
                "cluster.password",
                "missing: username needs a password (use ${VAR})",
            );
            None
        }
        (None, Some(_)) => {
            problems.error("cluster.username", "missing: password needs a username");
            None
        }
    };
    Some(Cluster {
        credentials,
        tls,
        endpoints: spec.endpoints.clone(),
        prefix,
        name: spec.name.clone(),
        timeout: duration(
            &spec.timeout,
            "cluster.timeout",
            Duration::from_secs(2),
            problems,
        ),
        lease_ttl: lease_ttl(&spec.lease_ttl, problems),
        isolated_failover,
        probers_per_account: spec
            .probers_per_account
            .and_then(|n| count(n, 1, "cluster.probers_per_account", problems))
            .unwrap_or(2),
    })
}

/// `cluster.lease_ttl`: positive, and large enough that a third of it (the fleet member's
/// keepalive and heartbeat period) is not zero: a zero period would stop the member's timer.
fn lease_ttl(raw: &Option<String>, problems: &mut Problems) -> Duration {
    const AT: &str = "cluster.lease_ttl";
    const DEFAULT: Duration = Duration::from_secs(5);
    let ttl = super::duration(raw, AT, DEFAULT, problems);
    if (ttl / 3).is_zero() {
        problems.error(
            AT,
            format!(
                "too small: lease_ttl / 3 (the keepalive and heartbeat period) rounds to zero; \
                 use at least \"1ms\" (seconds in practice: etcd leases count whole seconds), \
                 got {ttl:?}"
            ),
        );
        return DEFAULT;
    }
    ttl
}

/// `[[certificate]]`s: files present in the config (read later, by the TLS loader), hosts valid
/// and claimed once, at most one default.
pub(super) fn certificates(
    specs: &[CertificateSpec],
    https_listener: bool,
    problems: &mut Problems,
) -> Vec<CertificateConfig> {
    if https_listener && specs.is_empty() {
        problems.error(
            "listen.https",
            "an HTTPS listener needs at least one [[certificate]]",
        );
    }
    if !https_listener && !specs.is_empty() {
        problems.warning(
            "certificate",
            "certificates are configured but listen.https is not set; they are not served",
        );
    }
    let mut claimed: HashMap<String, usize> = HashMap::new();
    let mut default_at: Option<usize> = None;
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let mut hosts = Vec::new();
        let mut wildcards = Vec::new();
        for (j, raw) in spec.hosts.iter().enumerate() {
            let at = format!("certificate[{i}].hosts[{j}]");
            let key = match rules::host(raw) {
                Ok(Host::Exact(h)) => {
                    hosts.push(h.clone());
                    h
                }
                Ok(Host::Wildcard(h)) => {
                    wildcards.push(h.clone());
                    format!("*.{h}")
                }
                Err(message) => {
                    problems.error(at, message);
                    continue;
                }
            };
            if let Some(&other) = claimed.get(&key) {
                if other != i {
                    problems.error(
                        at,
                        format!("{key:?} is already served by certificate[{other}]"),
                    );
                }
            } else {
                claimed.insert(key, i);
            }
        }
        let default = spec.default.unwrap_or(false);
        if default {
            if let Some(first) = default_at {
                problems.error(
                    format!("certificate[{i}].default"),
                    format!("certificate[{first}] is already the default"),
                );
            }
            default_at.get_or_insert(i);
        }
        if hosts.is_empty() && wildcards.is_empty() && !default {
            problems.error(
                format!("certificate[{i}].hosts"),
                "lists no host and the certificate is not the default",
            );
        }
        let path = |value: &Option<String>, key: &str, problems: &mut Problems| match value {
            Some(p) if !p.trim().is_empty() => PathBuf::from(p),
            _ => {
                problems.error(
                    format!("certificate[{i}].{key}"),
                    "missing: a PEM file path is required",
                );
                PathBuf::new()
            }
        };
        let cert = path(&spec.cert, "cert", problems);
        let key = path(&spec.key, "key", problems);
        out.push(CertificateConfig {
            hosts,
            wildcards,
            cert,
            key,
            default,
        });
    }
    out
}

/// An account's TLS keys: only for `https://` URLs; client certificate and key come together.
pub(super) fn account_tls(
    spec: &AccountSpec,
    scheme: Scheme,
    at: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<AccountTls> {
    let set = [
        ("ca", spec.ca.is_some()),
        ("sni", spec.sni.is_some()),
        ("client_cert", spec.client_cert.is_some()),
        ("client_key", spec.client_key.is_some()),
    ];
    if scheme == Scheme::Http {
        for (key, present) in set {
            if present {
                problems.error(at(key), "only applies to https:// accounts");
            }
        }
        return None;
    }
    let nonempty = |v: &Option<String>, key: &str, problems: &mut Problems| match v {
        Some(p) if p.trim().is_empty() => {
            problems.error(at(key), "must not be empty");
            None
        }
        other => other.clone(),
    };
    let ca = nonempty(&spec.ca, "ca", problems).map(PathBuf::from);
    let sni = nonempty(&spec.sni, "sni", problems).and_then(|s| match rules::host(&s) {
        Ok(Host::Exact(h)) => Some(h),
        Ok(Host::Wildcard(_)) => {
            problems.error(at("sni"), "must be a host name, not a wildcard");
            None
        }
        Err(message) => {
            problems.error(at("sni"), message);
            None
        }
    });
    let client_cert = nonempty(&spec.client_cert, "client_cert", problems);
    let client_key = nonempty(&spec.client_key, "client_key", problems);
    let client_auth = match (client_cert, client_key) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        (Some(_), None) => {
            problems.error(at("client_key"), "missing: client_cert needs client_key");
            None
        }
        (None, Some(_)) => {
            problems.error(at("client_cert"), "missing: client_key needs client_cert");
            None
        }
    };
    Some(AccountTls {
        ca,
        sni,
        client_auth,
    })
}

/// The admin listener must be an address; a non-loopback listener is allowed here (the binary
/// refuses to start it without a token, since only the binary can see the environment).
pub(super) fn admin(spec: &AdminSpec, problems: &mut Problems) -> Admin {
    let default = SocketAddr::from(([127, 0, 0, 1], 9901));
    let listen = match &spec.listen {
        None => default,
        Some(raw) => raw.parse().unwrap_or_else(|_| {
            problems.error(
                "admin.listen",
                format!("{raw:?} is not a socket address; expected IP:PORT, e.g. 127.0.0.1:9901"),
            );
            default
        }),
    };
    let token_env = match &spec.token_env {
        None => "PAIRGATE_ADMIN_TOKEN".to_owned(),
        Some(name) if is_env_name(name) => name.clone(),
        Some(name) => {
            problems.error(
                "admin.token_env",
                format!("{name:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            );
            "PAIRGATE_ADMIN_TOKEN".to_owned()
        }
    };
    let token_file = spec.token_file.as_ref().and_then(|p| {
        if p.trim().is_empty() {
            problems.error("admin.token_file", "must not be empty");
            None
        } else {
            Some(PathBuf::from(p))
        }
    });
    Admin {
        listen,
        token_env,
        token_file,
    }
}

pub(super) fn state(spec: &StateSpec, problems: &mut Problems) -> StateConfig {
    StateConfig {
        path: spec.path.as_ref().and_then(|p| {
            if p.trim().is_empty() {
                problems.error("state.path", "must not be empty");
                None
            } else {
                Some(PathBuf::from(p))
            }
        }),
    }
}

pub(super) fn alerts(spec: &AlertsSpec, problems: &mut Problems) -> Alerts {
    let services = spec.azure_monitor.services.clone().unwrap_or_default();
    for (i, s) in services.iter().enumerate() {
        if s.trim().is_empty() {
            problems.error(
                format!("alerts.azure_monitor.services[{i}]"),
                "must not be empty",
            );
        }
    }
    let scope = match spec.azure_monitor.scope.as_deref() {
        None | Some("region") => AlertScope::Region,
        Some("subscription") => AlertScope::Subscription,
        Some(other) => {
            problems.error(
                "alerts.azure_monitor.scope",
                format!("{other:?} is not a scope; expected \"region\" or \"subscription\""),
            );
            AlertScope::Region
        }
    };
    let degraded_is_down = match spec.azure_monitor.degraded.as_deref() {
        None | Some("ignore") => false,
        Some("down") => true,
        Some(other) => {
            problems.error(
                "alerts.azure_monitor.degraded",
                format!("{other:?} is not a choice; expected \"ignore\" or \"down\""),
            );
            false
        }
    };
    Alerts {
        azure_monitor_services: services.iter().map(|s| s.trim().to_owned()).collect(),
        azure_monitor_scope: scope,
        degraded_is_down,
    }
}

pub(super) fn metrics(spec: &MetricsSpec, problems: &mut Problems) -> Metrics {
    Metrics {
        tenant_label_limit: spec
            .tenant_label_limit
            .and_then(|n| count(n, 0, "metrics.tenant_label_limit", problems))
            .unwrap_or(100),
    }
}

pub(super) fn log(spec: &LogSpec, problems: &mut Problems) -> LogConfig {
    let access = match spec.access.as_deref() {
        None | Some("on") => AccessLogMode::On,
        Some("off") => AccessLogMode::Off,
        Some("errors") => AccessLogMode::Errors,
        Some(other) => {
            problems.error(
                "log.access",
                format!("must be \"on\", \"off\" or \"errors\", not {other:?}"),
            );
            AccessLogMode::On
        }
    };
    let sample_successes = match spec.sample_successes {
        None => 100,
        Some(n @ 0..=100) => u8::try_from(n).unwrap_or(100),
        Some(n) => {
            problems.error(
                "log.sample_successes",
                format!("must be a percentage from 0 to 100, not {n}"),
            );
            100
        }
    };
    LogConfig {
        access,
        sample_successes,
        query: spec.query.unwrap_or(false),
    }
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
