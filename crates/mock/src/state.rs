//! State shared by the handle, the accept loop and every connection: behaviour, flags, statistics.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::HeaderValue;

use crate::pattern::pattern_table;
use crate::{Behavior, MockConfig, Recorded};

/// How many recorded requests are kept (the oldest go first).
pub(crate) const MAX_RECORDED: usize = 10_000;
/// How many connections' raw captures are kept (the oldest go first).
pub(crate) const MAX_CAPTURES: usize = 1_000;

/// Locks `m`, ignoring poisoning: every critical section here is a plain read or write of data
/// that is valid at every point, so a panic elsewhere cannot leave it half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the request path reads or updates. Holds no task handles, so connection tasks can
/// keep it alive without keeping the server alive (see `upstream::Inner`).
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) region: String,
    /// `x-mock-account` value, validated once at start.
    pub(crate) account_header: HeaderValue,
    /// `x-mock-region` value, validated once at start.
    pub(crate) region_header: HeaderValue,
    /// Table the `/download` bodies are sliced from.
    pub(crate) pattern: Bytes,
    behavior: Mutex<Behavior>,
    healthy: AtomicBool,
    probe_path: Mutex<String>,
    requests: Mutex<VecDeque<Recorded>>,
    request_count: AtomicU64,
    probe_count: AtomicU64,
    captures: Mutex<VecDeque<Arc<Mutex<Vec<u8>>>>>,
    connections: AtomicU64,
    tls_handshake_failures: AtomicU64,
}

impl Shared {
    /// Fresh state for `cfg`; fails if the name or region cannot be sent as a header value.
    pub(crate) fn new(cfg: MockConfig) -> io::Result<Self> {
        let header = |what: &str, v: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("mock {what} {v:?} is not a valid header value"),
                )
            })
        };
        Ok(Self {
            account_header: header("name", &cfg.name)?,
            region_header: header("region", &cfg.region)?,
            name: cfg.name,
            region: cfg.region,
            pattern: pattern_table(),
            behavior: Mutex::new(Behavior::Normal),
            healthy: AtomicBool::new(true),
            probe_path: Mutex::new(crate::DEFAULT_PROBE_PATH.to_owned()),
            requests: Mutex::new(VecDeque::new()),
            request_count: AtomicU64::new(0),
            probe_count: AtomicU64::new(0),
            captures: Mutex::new(VecDeque::new()),
            connections: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
        })
    }

    pub(crate) fn behavior(&self) -> Behavior {
        *lock(&self.behavior)
    }

    pub(crate) fn set_behavior(&self, b: Behavior) {
        *lock(&self.behavior) = b;
    }

    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    pub(crate) fn is_probe(&self, path: &str) -> bool {
        *lock(&self.probe_path) == path
    }

    pub(crate) fn set_probe_path(&self, path: &str) {
        path.clone_into(&mut lock(&self.probe_path));
    }

    /// Counts a request whose head has arrived, as a probe or as a normal request.
    pub(crate) fn count(&self, probe: bool) {
        let counter = if probe {
            &self.probe_count
        } else {
            &self.request_count
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, r: Recorded) {
        let mut requests = lock(&self.requests);
        if requests.len() >= MAX_RECORDED {
            requests.pop_front();
        }
        requests.push_back(r);
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        lock(&self.requests).iter().cloned().collect()
    }

    pub(crate) fn request_count(&self) -> u64 {
        self.request_count.load(Ordering::Relaxed)
    }

    pub(crate) fn probe_count(&self) -> u64 {
        self.probe_count.load(Ordering::Relaxed)
    }

    /// Counts an accepted connection and returns the buffer its received bytes go to.
    pub(crate) fn new_connection(&self) -> Arc<Mutex<Vec<u8>>> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let mut captures = lock(&self.captures);
        if captures.len() >= MAX_CAPTURES {
            captures.pop_front();
        }
        captures.push_back(Arc::clone(&buffer));
        buffer
    }

    pub(crate) fn connections_accepted(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn count_tls_handshake_failure(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn raw_capture(&self) -> Vec<Vec<u8>> {
        let buffers: Vec<_> = lock(&self.captures).iter().cloned().collect();
        buffers.iter().map(|b| lock(b).clone()).collect()
    }

    pub(crate) fn reset_stats(&self) {
        lock(&self.requests).clear();
        lock(&self.captures).clear();
        self.request_count.store(0, Ordering::Relaxed);
        self.probe_count.store(0, Ordering::Relaxed);
        self.connections.store(0, Ordering::Relaxed);
        self.tls_handshake_failures.store(0, Ordering::Relaxed);
    }
}
