//! Request metrics, recorded once per request at the end. The per-account and per-tenant
//! counters live in the compiled table (`pairgate_routing::counters`); this holds what has no
//! account or no labelled tenant, and the error counter.
//!
//! No lock and no map lookup on the request path: a request adds to the counters its account
//! and tenant carry (two atomic adds for the histogram, one for the tenant). The error counter is
//! a fixed array of slots claimed once per error code (a `OnceLock` each; the codes are
//! `&'static str`s from `ErrorKind::code`, a bounded set), scanned only by failed requests.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use pairgate_routing::counters::{CLASSES, DURATION_BUCKETS, Histogram, class_label};
use pairgate_routing::counters::{TenantCounters, class_index};

/// The label of requests that never reached an account (unknown tenant, bad request).
pub const NO_REGION: &str = "none";

/// Log lines (access log and every other event) dropped because the log writer's queue was
/// full: the writer never blocks the thread that logs (`pairgate::log_writer`). A static, like
/// `pairgate_routing::local::LOCAL_ERRORS`: stderr is a process resource, written by one thread
/// for the whole process, and the binary sets the writer up before any gateway exists.
pub static LOG_LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Slots of the error counter: more than the `ErrorKind` codes (a test holds the margin).
const ERROR_SLOTS: usize = 32;

/// Request metrics not carried by an account or tenant.
pub struct RequestMetrics {
    /// Requests that reached no account, by status class.
    unrouted: [Histogram; CLASSES],
    /// Tenants past `metrics.tenant_label_limit`, by status class.
    other_tenants: TenantCounters,
    errors: [(OnceLock<&'static str>, AtomicU64); ERROR_SLOTS],
    /// Errors whose code found no free slot (never expected; counted so it shows).
    errors_overflow: AtomicU64,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            unrouted: Default::default(),
            other_tenants: TenantCounters::default(),
            errors: std::array::from_fn(|_| (OnceLock::new(), AtomicU64::new(0))),
            errors_overflow: AtomicU64::new(0),
        }
    }
}

impl RequestMetrics {
    /// Records a request that reached no account.
    pub fn record_unrouted(&self, status: u16, elapsed: Duration) {
        self.unrouted[class_index(status)].record(elapsed);
    }

    /// Counts a request of a tenant without its own label.
    pub fn record_other_tenant(&self, status: u16) {
        self.other_tenants.record(status);
    }

    /// Counts a client authentication of a tenant without its own label.
    pub fn record_other_tenant_auth(&self, result: usize) {
        self.other_tenants.record_auth(result);
    }

    /// Client authentications of tenants without their own label, for result index `result`.
    pub fn other_tenants_auth(&self, result: usize) -> u64 {
        self.other_tenants.auth_count(result)
    }

    /// Counts one failed request by its error code.
    pub fn record_error(&self, code: &'static str) {
        for (slot, count) in &self.errors {
            if *slot.get_or_init(|| code) == code {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.errors_overflow.fetch_add(1, Ordering::Relaxed);
    }

    /// The histogram of requests without an account, for class index `class`.
    pub fn unrouted(&self, class: usize) -> &Histogram {
        &self.unrouted[class.min(CLASSES - 1)]
    }

    /// Requests of unlabelled tenants for class index `class`.
    pub fn other_tenants(&self, class: usize) -> u64 {
        self.other_tenants.count(class)
    }

    /// `(error code, count)` for every code seen, sorted; an overflow shows as `_other`.
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self
            .errors
            .iter()
            .filter_map(|(slot, n)| Some((*slot.get()?, n.load(Ordering::Relaxed))))
            .collect();
        let overflow = self.errors_overflow.load(Ordering::Relaxed);
        if overflow > 0 {
            v.push(("_other", overflow));
        }
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_by_code() {
        let m = RequestMetrics::default();
        m.record_error("upstream_timeout");
        m.record_error("unknown_tenant");
        m.record_error("upstream_timeout");
        assert_eq!(
            m.errors(),
            vec![("unknown_tenant", 1), ("upstream_timeout", 2)]
        );
    }

    #[test]
    fn error_slots_outnumber_the_error_codes() {
        use crate::ErrorKind;
        let kinds = [
            ErrorKind::UnknownTenant,
            ErrorKind::BadRequest(""),
            ErrorKind::BothDown,
            ErrorKind::UpstreamUnreachable,
            ErrorKind::UpstreamConnectTimeout,
            ErrorKind::UpstreamTimeout,
            ErrorKind::UpstreamReset,
            ErrorKind::UpstreamProtocol,
            ErrorKind::UpstreamDown,
            ErrorKind::ClientBody,
            ErrorKind::UriTooLong,
            ErrorKind::PayloadTooLarge,
            ErrorKind::RequestTimeout,
            ErrorKind::TenantOverloaded,
            ErrorKind::Misdirected,
            ErrorKind::LocalResources,
        ];
        assert!(
            kinds.len() + 1 + 8 <= ERROR_SLOTS,
            "room for client_closed and new kinds"
        );
        let m = RequestMetrics::default();
        m.record_unrouted(404, Duration::from_millis(1));
        m.record_other_tenant(200);
        assert_eq!(m.unrouted(3).count(), 1);
        assert_eq!(m.other_tenants(1), 1);
    }
}
