//! What one client connection knows about its own requests: how many are open (from the
//! service call until the response body is dropped), for the HTTP/1 head timeout (which must not
//! run while a request waits for its answer) and the HTTP/2 idle timeout (which closes a
//! connection with no open stream).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Frame, SizeHint};

use crate::{Body, BoxError};

/// Shared by a connection's framing guard, its service and its idle watch.
#[derive(Default)]
pub(crate) struct ConnState {
    /// Requests open: the service was called and the response body is not dropped yet.
    open: AtomicUsize,
    /// Requests ever started (the idle watch compares it between ticks).
    started: AtomicU64,
    /// The client sent the HTTP/2 preface.
    h2: AtomicBool,
    /// The framing guard's read, woken when the last open request ends (its head timer starts).
    reader: AtomicWaker,
}

impl ConnState {
    /// A request starts; it stays open until the returned guard is dropped.
    pub(crate) fn open(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::Relaxed);
        OpenRequest(Arc::clone(self))
    }

    /// Whether a request is open.
    pub(crate) fn busy(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0
    }

    /// Whether a request is open; if none, nothing to do; if one is, `cx` is woken when the
    /// last one ends.
    pub(crate) fn busy_or_register(&self, cx: &Context<'_>) -> bool {
        if !self.busy() {
            return false;
        }
        self.reader.register(cx.waker());
        // The last request may have ended between the check and the registration.
        self.busy()
    }

    /// The connection speaks HTTP/2.
    pub(crate) fn set_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
    }

    /// Resolves once the connection is HTTP/2 and has had no open stream for at least `idle`
    /// (at most `idle * 5 / 4`: it is checked every quarter of it). HTTP/1 connections never
    /// resolve here: their idle time is the head timeout's business.
    pub(crate) async fn idle_h2(&self, idle: Duration) {
        let tick = (idle / 4).max(Duration::from_millis(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut last_started = self.started.load(Ordering::Relaxed);
        // Ticks in a row that saw no open stream and no new one.
        let mut quiet = 0u32;
        loop {
            interval.tick().await;
            let started = self.started.load(Ordering::Relaxed);
            let idle_now = self.h2.load(Ordering::Relaxed) && !self.busy();
            quiet = if idle_now && started == last_started {
                quiet + 1
            } else {
                0
            };
            last_started = started;
            // The first quiet tick only says the connection was idle at some point since the
            // previous one: four more make a full `idle`.
            if quiet >= 5 {
                return;
            }
        }
    }
}

/// One open request of a connection; dropping it closes it.
pub(crate) struct OpenRequest(Arc<ConnState>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

/// A response body that keeps its request open until it is dropped.
pub(crate) struct TrackedBody {
    inner: Body,
    _open: OpenRequest,
}

impl TrackedBody {
    pub(crate) fn new(inner: Body, open: OpenRequest) -> Self {
        TrackedBody { inner, _open: open }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
