//! Request counters preallocated in the compiled table: per account (by side and status class,
//! with the latency histogram) and per labelled tenant. Carried across reloads by identity like
//! the in-flight slot, so the request path adds to them with plain atomics: no lock, no lookup.
//! Claim: a request's record (account histogram and tenant counter) costs several times less than
//! the `DashMap` lookups by region and tenant name it replaced; the `request_metrics` group of
//! `benches/benches/micro.rs` defends it (7.8 ns against 48 ns, one thread, 2-core shared VM).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pairgate_failover::Side;

/// Upper bounds (seconds) of the request-duration histogram buckets; `+Inf` is implied.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Status classes 1xx..5xx.
pub const CLASSES: usize = 5;

/// The index of `status`'s class (`0` for 1xx .. `4` for 5xx; out-of-range codes clamp).
pub fn class_index(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

/// The label of class index `i`: `"1xx"` .. `"5xx"`.
pub fn class_label(i: usize) -> &'static str {
    ["1xx", "2xx", "3xx", "4xx", "5xx"][i.min(CLASSES - 1)]
}

/// A latency histogram. The count is the sum of the buckets, so a record is two atomic adds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Cumulative bucket counts (one per [`DURATION_BUCKETS`] entry, then `+Inf`, which is the
    /// count) and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut acc = 0;
        for b in &self.buckets {
            acc += b.load(Ordering::Relaxed);
            cumulative.push(acc);
        }
        let sum = Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)).as_secs_f64();
        (cumulative, sum)
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

/// Probe result labels counted per account (a probe that failed for want of the gateway's
/// own descriptors is no evidence and is counted elsewhere).
pub const PROBE_RESULTS: [&str; 6] = [
    "success",
    "connect_failed",
    "timeout",
    "bad_status",
    "broken",
    "credential",
];

/// Kinds of passive failure counted per account: a 5xx answer, or the error code of a failed
/// attempt; `other` for any code not listed.
pub const PASSIVE_KINDS: [&str; 8] = [
    "5xx",
    "upstream_unreachable",
    "upstream_connect_timeout",
    "upstream_timeout",
    "upstream_reset",
    "upstream_protocol_error",
    "credential_refused",
    "other",
];

/// Requests answered by one account (a histogram per side and status class), its probes by
/// result, its passive failures by kind, and the data plane's connections open to it.
#[derive(Debug, Default)]
pub struct AccountCounters {
    by_side: [[Histogram; CLASSES]; 2],
    probes: [AtomicU64; PROBE_RESULTS.len()],
    passive: [AtomicU64; PASSIVE_KINDS.len()],
    /// Upstream connections open now (idle in a pool or in use): raised when a connection is
    /// made, lowered when it is dropped, by the data plane's connector. A gauge carried across
    /// reloads like the counters, so a connection made before a reload is uncounted from the
    /// same number after it.
    connections_open: AtomicU64,
}

impl AccountCounters {
    /// Records a request this account answered (or failed) while serving `side`.
    pub fn record(&self, side: Side, status: u16, elapsed: Duration) {
        self.histogram(side, class_index(status)).record(elapsed);
    }

    /// Counts a probe by its result label; labels outside [`PROBE_RESULTS`] are not counted.
    pub fn record_probe(&self, result: &str) {
        if let Some(i) = PROBE_RESULTS.iter().position(|r| *r == result) {
            self.probes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a passive failure by kind (see [`PASSIVE_KINDS`]).
    pub fn record_passive(&self, kind: &str) {
        let i = PASSIVE_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(PASSIVE_KINDS.len() - 1);
        self.passive[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(result, count)` for every entry of [`PROBE_RESULTS`].
    pub fn probes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        PROBE_RESULTS
            .iter()
            .zip(&self.probes)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
    }

    /// `(kind, count)` for every entry of [`PASSIVE_KINDS`].
    pub fn passive(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        PASSIVE_KINDS
            .iter()
            .zip(&self.passive)
            .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
    }

    /// One more upstream connection to this account is open.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// An upstream connection counted by [`Self::connection_opened`] closed.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Upstream connections open to this account now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// The histogram of `side` and class index `class`.
    pub fn histogram(&self, side: Side, class: usize) -> &Histogram {
        let s = usize::from(side == Side::Secondary);
        &self.by_side[s][class.min(CLASSES - 1)]
    }
}

/// Requests of one labelled tenant, by status class.
#[derive(Debug, Default)]
pub struct TenantCounters {
    classes: [AtomicU64; CLASSES],
    /// Client authentications by result (`pairgate_clientauth::AuthResult::index`).
    auth: [AtomicU64; AUTH_RESULTS],
}

/// Client-authentication results counted per tenant: ok, missing, invalid, wrong_tenant,
/// unavailable.
pub const AUTH_RESULTS: usize = 5;

impl TenantCounters {
    /// Counts one client authentication with result index `result`.
    pub fn record_auth(&self, result: usize) {
        self.auth[result.min(AUTH_RESULTS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of authentication result index `result`.
    pub fn auth_count(&self, result: usize) -> u64 {
        self.auth[result.min(AUTH_RESULTS - 1)].load(Ordering::Relaxed)
    }

    /// Counts one request.
    pub fn record(&self, status: u16) {
        self.classes[class_index(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of class index `class`.
    pub fn count(&self, class: usize) -> u64 {
        self.classes[class.min(CLASSES - 1)].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_sum_and_count() {
        let h = Histogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_millis(20));
        h.record(Duration::from_secs(9));
        let (buckets, sum) = h.snapshot();
        assert_eq!(h.count(), 3);
        assert_eq!(buckets[0], 1, "100us falls in the first bucket");
        assert_eq!(*buckets.last().expect("+Inf"), 3);
        assert!((sum - 9.0201).abs() < 0.001, "{sum}");
    }

    #[test]
    fn account_counters_split_side_and_class() {
        let c = AccountCounters::default();
        c.record(Side::Primary, 200, Duration::from_millis(1));
        c.record(Side::Secondary, 503, Duration::from_millis(1));
        c.record(Side::Secondary, 999, Duration::from_millis(1));
        assert_eq!(c.histogram(Side::Primary, 1).count(), 1);
        assert_eq!(c.histogram(Side::Secondary, 4).count(), 2);
        assert_eq!(c.histogram(Side::Primary, 4).count(), 0);
        assert_eq!(class_label(class_index(101)), "1xx");
        c.record_probe("timeout");
        c.record_probe("local_resource");
        c.record_passive("upstream_reset");
        c.record_passive("something_new");
        assert_eq!(c.probes().map(|(_, n)| n).sum::<u64>(), 1);
        assert!(c.probes().any(|p| p == ("timeout", 1)));
        assert!(c.passive().any(|p| p == ("upstream_reset", 1)));
        assert!(c.passive().any(|p| p == ("other", 1)));
    }
}
