//! Body wrappers: request-body limits (size, idle time), and the response body that holds the
//! tenant's in-flight slot and writes the access-log line.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::forward::AccessLine;
use crate::idle::IdleTimer;
use crate::{BoxError, ErrorKind};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

const OK: u8 = 0;
const TOO_LARGE: u8 = 1;
const IDLE: u8 = 2;

/// Why a [`LimitedBody`] failed, readable after the body has been handed to the client pool.
#[derive(Clone, Default)]
pub(crate) struct BodyVerdict(Arc<AtomicU8>);

impl BodyVerdict {
    /// The error to answer with when the upstream attempt failed because of the body.
    pub(crate) fn error(&self) -> Option<ErrorKind> {
        match self.0.load(Ordering::Acquire) {
            TOO_LARGE => Some(ErrorKind::PayloadTooLarge),
            IDLE => Some(ErrorKind::RequestTimeout),
            _ => None,
        }
    }
}

/// The client's request body, failing once it exceeds `limit` bytes or stalls for `idle`.
pub(crate) struct LimitedBody {
    inner: Incoming,
    limit: u64,
    seen: u64,
    /// Armed the first time the body has nothing to give: a bodiless request never pays for a
    /// timer (nor for the clock read that sets it).
    idle: IdleTimer,
    verdict: BodyVerdict,
}

impl LimitedBody {
    pub(crate) fn new(inner: Incoming, limit: u64, idle: Duration) -> (Self, BodyVerdict) {
        let verdict = BodyVerdict::default();
        let body = LimitedBody {
            inner,
            limit,
            seen: 0,
            idle: IdleTimer::new(idle),
            verdict: verdict.clone(),
        };
        (body, verdict)
    }

    fn fail(&self, code: u8, msg: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.verdict.0.store(code, Ordering::Release);
        Poll::Ready(Some(Err(msg.into())))
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.verdict.0.load(Ordering::Relaxed) != OK {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        return this.fail(TOO_LARGE, "request body over the tenant's limit");
                    }
                }
                this.idle.progress();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.idle.expired(cx) => {
                this.fail(IDLE, "request body idle for too long")
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One of a tenant's in-flight slots; released when dropped.
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Takes a slot if fewer than `max` are taken.
    pub(crate) fn acquire(counter: &Arc<AtomicUsize>, max: usize) -> Option<InFlight> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(Arc::clone(counter)))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds the tenant's in-flight slot until it ends or is dropped, so a
/// long download counts against the tenant's concurrency like any other request; it fails
/// when the upstream sends nothing for `idle` (`upstream.read_timeout`), so a stalled upstream
/// cannot hold the slot and the client's connection forever.
///
/// It also carries the request's access-log line, written once: when the body ends, fails or
/// is dropped (the client left), with the body bytes handed to the client's connection. The
/// line lives inside this body (one allocation with it, when the body is boxed), and counting
/// is one add per data frame.
pub(crate) struct HoldingBody {
    inner: Incoming,
    _slot: InFlight,
    idle: IdleTimer,
    /// Data bytes passed on so far.
    sent: u64,
    /// Written and taken at the body's end; `None` once written, or when `[log]` wants none.
    line: Option<AccessLine>,
}

impl HoldingBody {
    pub(crate) fn new(inner: Incoming, slot: InFlight, idle: Duration) -> Self {
        HoldingBody {
            inner,
            _slot: slot,
            idle: IdleTimer::new(idle),
            sent: 0,
            line: None,
        }
    }

    /// Carries `line`, to be written when the body ends.
    pub(crate) fn with_access_line(mut self, line: Option<AccessLine>) -> Self {
        self.line = line;
        self
    }

    /// Writes the access-log line, if not yet written.
    fn log(&mut self, complete: bool) {
        if let Some(line) = self.line.take() {
            line.write(Some(self.sent), Some(complete));
        }
    }
}

impl Body for HoldingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                this.idle.progress();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.log(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                this.log(false);
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Pending if this.idle.expired(cx) => {
                tracing::debug!(
                    "upstream response body idle past upstream.read_timeout; cutting it"
                );
                this.log(false);
                Poll::Ready(Some(Err(
                    "upstream response body idle (upstream.read_timeout)".into(),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for HoldingBody {
    fn drop(&mut self) {
        // Dropped before its end was polled: complete only if nothing was left to send (a
        // bodiless response, or hyper stopped at the declared length); else the client left.
        let complete = self.inner.is_end_stream();
        self.log(complete);
    }
}

/// Frames already read from the client, then (when the body was larger than the read-ahead
/// window) the rest of the client's body, streamed.
pub(crate) struct Prefixed {
    frames: std::collections::VecDeque<Frame<Bytes>>,
    rest: Option<LimitedBody>,
    hint: SizeHint,
}

impl Prefixed {
    /// `frames` first, then `rest`; `declared` is the client's `Content-Length`, if any, so the
    /// upstream request keeps a fixed length.
    pub(crate) fn new(
        frames: std::collections::VecDeque<Frame<Bytes>>,
        rest: Option<LimitedBody>,
        declared: Option<u64>,
    ) -> Self {
        let hint = match (declared, &rest) {
            (Some(len), _) => SizeHint::with_exact(len),
            (None, None) => SizeHint::with_exact(
                frames
                    .iter()
                    .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
                    .sum(),
            ),
            (None, Some(_)) => SizeHint::default(),
        };
        Prefixed { frames, rest, hint }
    }
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut this.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}
