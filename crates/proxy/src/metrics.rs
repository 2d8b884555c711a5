//! Request counters and the latency histogram, recorded once per request at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

/// Label maps are read on every request: a fast hash (the keys are config names, not
/// attacker-chosen strings beyond the bounded tenant set).
type Labels = DashMap<Arc<str>, [AtomicU64; CLASSES], foldhash::fast::RandomState>;

/// Upper bounds (seconds) of the request-duration histogram buckets; `+Inf` is implied.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Status classes 1xx..5xx.
const CLASSES: usize = 5;

/// Request metrics. Label sets are bounded: regions by config, tenants by
/// `metrics.tenant_label_limit` (the rest share the `_other` label).
pub struct RequestMetrics {
    by_region: Labels,
    by_tenant: Labels,
    /// Labelled tenants so far; `DashMap::len` would lock every shard on each request.
    labelled: std::sync::atomic::AtomicUsize,
    other_tenants: [AtomicU64; CLASSES],
    tenant_limit: usize,
    /// The `none` region label, built once (unknown-tenant floods must not allocate per request).
    no_region: Arc<str>,
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// The region label of requests that never reached a region (unknown tenant, bad request).
pub const NO_REGION: &str = "none";

impl RequestMetrics {
    /// Empty metrics; at most `tenant_limit` tenants get their own label.
    pub fn new(tenant_limit: usize) -> Self {
        RequestMetrics {
            by_region: Labels::default(),
            by_tenant: Labels::default(),
            labelled: std::sync::atomic::AtomicUsize::new(0),
            other_tenants: Default::default(),
            tenant_limit,
            no_region: Arc::from(NO_REGION),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one finished request.
    pub fn record(
        &self,
        region: Option<&Arc<str>>,
        tenant: Option<&Arc<str>>,
        status: u16,
        elapsed: Duration,
    ) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        let region = region.unwrap_or(&self.no_region);
        // Regions are bounded by the config: look up by `&str`, clone the name only once.
        if let Some(counts) = self.by_region.get(&**region) {
            counts[class].fetch_add(1, Ordering::Relaxed);
        } else {
            self.by_region.entry(Arc::clone(region)).or_default()[class]
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(tenant) = tenant {
            if let Some(counts) = self.by_tenant.get(&**tenant) {
                counts[class].fetch_add(1, Ordering::Relaxed);
            } else if self.labelled.load(Ordering::Relaxed) < self.tenant_limit {
                let entry = self.by_tenant.entry(Arc::clone(tenant));
                if matches!(entry, dashmap::Entry::Vacant(_)) {
                    self.labelled.fetch_add(1, Ordering::Relaxed);
                }
                entry.or_default()[class].fetch_add(1, Ordering::Relaxed);
            } else {
                self.other_tenants[class].fetch_add(1, Ordering::Relaxed);
            }
        }
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
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `(region, status class "2xx", count)` for every region and class seen.
    pub fn by_region(&self) -> Vec<(Arc<str>, String, u64)> {
        let mut v = Vec::new();
        for e in &self.by_region {
            push_classes(&mut v, e.key(), e.value());
        }
        v.sort();
        v
    }

    /// `(tenant, status class, count)`; tenants beyond the label limit appear as `_other`.
    pub fn by_tenant(&self) -> Vec<(Arc<str>, String, u64)> {
        let mut v = Vec::new();
        for e in &self.by_tenant {
            push_classes(&mut v, e.key(), e.value());
        }
        push_classes(&mut v, &Arc::from("_other"), &self.other_tenants);
        v.sort();
        v
    }

    /// Cumulative bucket counts (one per [`DURATION_BUCKETS`] entry, then `+Inf`), the sum in
    /// seconds, and the count.
    pub fn duration(&self) -> (Vec<u64>, f64, u64) {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut acc = 0;
        for b in &self.buckets {
            acc += b.load(Ordering::Relaxed);
            cumulative.push(acc);
        }
        let sum = Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)).as_secs_f64();
        (cumulative, sum, self.count.load(Ordering::Relaxed))
    }
}

/// One `(label, "Nxx", count)` row per status class with a count.
fn push_classes(
    rows: &mut Vec<(Arc<str>, String, u64)>,
    label: &Arc<str>,
    counts: &[AtomicU64; CLASSES],
) {
    for (class, c) in counts.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        if n > 0 {
            rows.push((Arc::clone(label), format!("{}xx", class + 1), n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_region_class_and_caps_tenant_labels() {
        let m = RequestMetrics::new(1);
        let east: Arc<str> = "eastus".into();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        m.record(Some(&east), Some(&a), 200, Duration::from_millis(2));
        m.record(Some(&east), Some(&a), 503, Duration::from_millis(20));
        m.record(Some(&east), Some(&b), 200, Duration::from_secs(9));
        m.record(None, None, 404, Duration::from_micros(100));
        assert_eq!(
            m.by_region(),
            vec![
                (east.clone(), "2xx".to_owned(), 2),
                (east, "5xx".to_owned(), 1),
                (Arc::from(NO_REGION), "4xx".to_owned(), 1),
            ]
        );
        assert_eq!(
            m.by_tenant(),
            vec![
                (Arc::from("_other"), "2xx".to_owned(), 1),
                (a.clone(), "2xx".to_owned(), 1),
                (a, "5xx".to_owned(), 1),
            ]
        );
        let (buckets, sum, count) = m.duration();
        assert_eq!(count, 4);
        assert_eq!(*buckets.last().expect("+Inf"), 4);
        assert_eq!(buckets[0], 1, "100us falls in the first bucket");
        assert!((sum - 9.0221).abs() < 0.001, "{sum}");
    }
}
