//! `[health]` and `[failover]`, and their per-account and per-tenant overrides.
//!
//! An override table is resolved against the already-resolved global one: each key it sets is
//! checked at the override's path, each key it leaves out is inherited. Cross-key checks
//! (`timeout < interval`) run on an override only when it sets one of the keys involved, so a
//! bad global value is reported once, not once per account.

use std::time::Duration;

use crate::model::{BothDown, Failback, FailoverPolicy, HealthCheck, ProbeKind};
use crate::spec::{FailoverSpec, HealthSpec};
use crate::{Secret, parse_duration};

use super::{Env, Problems, join, rules};

const MIN_FAST_INTERVAL: Duration = Duration::from_millis(100);

/// A resolved health table. Unlike [`HealthCheck`] it keeps the HTTP keys of a `tcp` check (an
/// override may switch back to `http`) and whether `fast_interval` was set or derived.
#[derive(Clone)]
pub(super) struct HealthBase {
    http: bool,
    method: String,
    path: String,
    expect: Vec<(u16, u16)>,
    headers: Vec<(String, Secret)>,
    interval: Duration,
    fast_interval: Option<Duration>,
    timeout: Duration,
    rise: u32,
    fall: u32,
    passive_consecutive_5xx: u32,
    passive_ejection: Duration,
    use_account_prefix: bool,
    use_account_headers: bool,
}

/// Bounds of `passive_consecutive_5xx` (0 disables) and `passive_ejection`.
const MAX_PASSIVE_5XX: i64 = 10_000;
const MAX_PASSIVE_EJECTION: Duration = Duration::from_secs(3600);

impl HealthBase {
    /// The built-in defaults (see `model::HealthCheck`).
    pub(super) fn defaults() -> Self {
        Self {
            http: true,
            method: "GET".to_owned(),
            path: "/healthz".to_owned(),
            expect: vec![(200, 399)],
            headers: Vec::new(),
            interval: Duration::from_secs(2),
            fast_interval: None,
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            passive_consecutive_5xx: 5,
            passive_ejection: Duration::from_secs(30),
            use_account_prefix: false,
            use_account_headers: false,
        }
    }

    /// The check as the rest of pairgate sees it.
    pub(super) fn to_check(&self) -> HealthCheck {
        let kind = if self.http {
            ProbeKind::Http {
                method: self.method.clone(),
                path: self.path.clone(),
                expect: self.expect.clone(),
                headers: self.headers.clone(),
                use_account_prefix: self.use_account_prefix,
                use_account_headers: self.use_account_headers,
            }
        } else {
            ProbeKind::Tcp
        };
        let derived = (self.interval / 4)
            .max(MIN_FAST_INTERVAL)
            .min(self.interval);
        HealthCheck {
            kind,
            interval: self.interval,
            fast_interval: self.fast_interval.unwrap_or(derived),
            timeout: self.timeout,
            rise: self.rise,
            fall: self.fall,
            passive_consecutive_5xx: self.passive_consecutive_5xx,
            passive_ejection: self.passive_ejection,
        }
    }
}

/// Resolves `spec` (found at `path`, `health` or `account[i].health`) over `base`. `global` is
/// true for `[health]` itself.
pub(super) fn health(
    spec: &HealthSpec,
    base: &HealthBase,
    path: &str,
    global: bool,
    env: Env<'_>,
    problems: &mut Problems,
) -> HealthBase {
    let mut out = base.clone();
    let at = |key: &str| join(path, key);
    let mut timing_ok = true;

    if let Some(kind) = &spec.kind {
        match kind.as_str() {
            "http" => out.http = true,
            "tcp" => out.http = false,
            _ => problems.error(at("type"), r#"must be "http" or "tcp""#),
        }
    }
    if let Some(method) = &spec.method {
        let upper = method.to_ascii_uppercase();
        if http::Method::from_bytes(upper.as_bytes()).is_ok() {
            out.method = upper;
        } else {
            problems.error(
                at("method"),
                format!("{method:?} is not a valid HTTP method"),
            );
        }
    }
    if let Some(probe_path) = &spec.path {
        if !probe_path.starts_with('/') {
            problems.error(at("path"), format!("{probe_path:?} must start with \"/\""));
        } else if probe_path.contains('#') || probe_path.parse::<http::uri::PathAndQuery>().is_err()
        {
            problems.error(
                at("path"),
                format!("{probe_path:?} is not a valid request path"),
            );
        } else {
            out.path.clone_from(probe_path);
        }
    }
    if let Some(expect) = &spec.expect {
        out.expect = statuses(expect, &at("expect"), problems);
    }
    if let Some(headers) = &spec.headers {
        out.headers = rules::headers(headers, &at("headers"), env, problems);
    }
    for (key, value, target) in [
        ("interval", &spec.interval, &mut out.interval),
        ("timeout", &spec.timeout, &mut out.timeout),
    ] {
        if let Some(raw) = value {
            match positive_duration(raw) {
                Ok(d) => *target = d,
                Err(message) => {
                    problems.error(at(key), message);
                    timing_ok = false;
                }
            }
        }
    }
    if let Some(raw) = &spec.fast_interval {
        match positive_duration(raw) {
            Ok(d) => out.fast_interval = Some(d),
            Err(message) => {
                problems.error(at("fast_interval"), message);
                timing_ok = false;
            }
        }
    }
    for (key, value, target) in [
        ("rise", spec.rise, &mut out.rise),
        ("fall", spec.fall, &mut out.fall),
    ] {
        if let Some(n) = value {
            if n < 1 {
                problems.error(at(key), "must be at least 1");
            } else if let Ok(n) = u32::try_from(n) {
                *target = n;
            } else {
                problems.error(at(key), "too large");
            }
        }
    }

    if let Some(n) = spec.passive_consecutive_5xx {
        match u32::try_from(n) {
            Ok(n) if i64::from(n) <= MAX_PASSIVE_5XX => out.passive_consecutive_5xx = n,
            _ => problems.error(
                at("passive_consecutive_5xx"),
                format!("{n} is outside 0..={MAX_PASSIVE_5XX} (0 disables ejection)"),
            ),
        }
    }
    if let Some(raw) = &spec.passive_ejection {
        match positive_duration(raw) {
            Ok(d) if d <= MAX_PASSIVE_EJECTION => out.passive_ejection = d,
            Ok(d) => problems.error(
                at("passive_ejection"),
                format!("{d:?} is longer than {MAX_PASSIVE_EJECTION:?}"),
            ),
            Err(message) => problems.error(at("passive_ejection"), message),
        }
    }
    if let Some(on) = spec.use_account_prefix {
        out.use_account_prefix = on;
    }
    if let Some(on) = spec.use_account_headers {
        out.use_account_headers = on;
    }

    // Cross-key checks; the global table always runs them, an override only when it touches
    // one of the keys involved.
    if timing_ok {
        if (global || spec.timeout.is_some() || spec.interval.is_some())
            && out.timeout >= out.interval
        {
            let key = if spec.timeout.is_some() {
                "timeout"
            } else {
                "interval"
            };
            problems.error(
                at(key),
                format!(
                    "timeout ({:?}) must be less than interval ({:?})",
                    out.timeout, out.interval
                ),
            );
        }
        if let Some(fast) = out.fast_interval
            && (global || spec.fast_interval.is_some() || spec.interval.is_some())
            && fast > out.interval
        {
            let key = if spec.fast_interval.is_some() {
                "fast_interval"
            } else {
                "interval"
            };
            problems.error(
                at(key),
                format!(
                    "fast_interval ({fast:?}) must not exceed interval ({:?})",
                    out.interval
                ),
            );
        }
    }
    if !out.http {
        let http_keys = [
            ("method", spec.method.is_some()),
            ("path", spec.path.is_some()),
            ("expect", spec.expect.is_some()),
            ("headers", spec.headers.is_some()),
            ("use_account_prefix", spec.use_account_prefix.is_some()),
            ("use_account_headers", spec.use_account_headers.is_some()),
        ];
        for (key, _) in http_keys.iter().filter(|(_, set)| *set) {
            problems.warning(at(key), r#"ignored: the check's type is "tcp""#);
        }
    }
    out
}

/// `expect = ["200", "300-399"]`.
fn statuses(raw: &[String], path: &str, problems: &mut Problems) -> Vec<(u16, u16)> {
    if raw.is_empty() {
        problems.error(
            path,
            "must list at least one status or range, e.g. \"200-399\"",
        );
        return vec![(200, 399)];
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, item) in raw.iter().enumerate() {
        let status = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|n| s.len() == 3 && (100..=599).contains(n))
        };
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        match (status(lo), status(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => out.push((lo, hi)),
            (Some(_), Some(_)) => problems.error(
                format!("{path}[{i}]"),
                format!("{item:?}: the range is backwards"),
            ),
            _ => problems.error(
                format!("{path}[{i}]"),
                format!("{item:?}: expected a status 100-599 (\"200\") or a range (\"200-399\")"),
            ),
        }
    }
    out
}

/// The built-in `[failover]` defaults (see `model::FailoverPolicy`).
pub(super) fn failover_defaults() -> FailoverPolicy {
    FailoverPolicy {
        failback: Failback::Auto,
        hold_down: Duration::from_secs(30),
        both_down: BothDown::Stay,
        region_outage_ratio: 0.5,
    }
}

/// Resolves `spec` (found at `path`, `failover` or `tenant[i].failover`) over `base`.
pub(super) fn failover(
    spec: &FailoverSpec,
    base: &FailoverPolicy,
    path: &str,
    problems: &mut Problems,
) -> FailoverPolicy {
    let mut out = base.clone();
    if let Some(raw) = &spec.failback {
        match raw.as_str() {
            "auto" => out.failback = Failback::Auto,
            "manual" => out.failback = Failback::Manual,
            _ => problems.error(join(path, "failback"), r#"must be "auto" or "manual""#),
        }
    }
    if let Some(raw) = &spec.hold_down {
        match parse_duration(raw) {
            Ok(d) => out.hold_down = d,
            Err(message) => problems.error(join(path, "hold_down"), message),
        }
    }
    if let Some(raw) = &spec.both_down {
        match raw.as_str() {
            "stay" => out.both_down = BothDown::Stay,
            "reject" => out.both_down = BothDown::Reject,
            _ => problems.error(join(path, "both_down"), r#"must be "stay" or "reject""#),
        }
    }
    if let Some(ratio) = spec.region_outage_ratio {
        if ratio > 0.0 && ratio <= 1.0 {
            out.region_outage_ratio = ratio;
        } else {
            problems.error(
                join(path, "region_outage_ratio"),
                format!("{ratio} is outside (0, 1]: more than 0, at most 1"),
            );
        }
    }
    out
}

/// A duration that must be more than zero.
pub(super) fn positive_duration(raw: &str) -> Result<Duration, String> {
    let d = parse_duration(raw)?;
    if d.is_zero() {
        return Err("must be greater than 0".to_owned());
    }
    Ok(d)
}
