//! `[admin]`, `[state]`, `[alerts]`, `[metrics]`: the control plane's keys.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Problems, count};
use crate::model::{Admin, Alerts, Metrics, StateConfig};
use crate::spec::{AdminSpec, AlertsSpec, MetricsSpec, StateSpec};

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
    Alerts {
        azure_monitor_services: services.iter().map(|s| s.trim().to_owned()).collect(),
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

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
