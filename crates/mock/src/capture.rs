//! A `TcpStream` wrapper that records the first bytes a connection receives and can end it with RST.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::state::lock;

/// How many received bytes are kept per connection (64 KiB).
pub(crate) const CAPTURE_LIMIT: usize = 64 * 1024;

/// The accepted socket plus its capture buffer.
///
/// Invariant: `buffer` holds exactly the first `min(received, CAPTURE_LIMIT)` bytes read from the
/// socket, in order; `captured` mirrors its length so a full buffer costs no lock per read.
pub(crate) struct CapturedStream {
    inner: TcpStream,
    buffer: Arc<Mutex<Vec<u8>>>,
    captured: usize,
    reset_on_drop: Arc<AtomicBool>,
}

impl CapturedStream {
    /// Wraps `inner`; received bytes go to `buffer`. When `reset_on_drop` is set by the time the
    /// stream drops, the socket is closed with `SO_LINGER 0`, i.e. an RST instead of a FIN.
    pub(crate) fn new(
        inner: TcpStream,
        buffer: Arc<Mutex<Vec<u8>>>,
        reset_on_drop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            inner,
            buffer,
            captured: 0,
            reset_on_drop,
        }
    }
}

impl Drop for CapturedStream {
    fn drop(&mut self) {
        if self.reset_on_drop.load(Ordering::Acquire) {
            // Best effort: if it fails the peer sees a FIN instead, which the reset tests catch.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for CapturedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && this.captured < CAPTURE_LIMIT
        {
            let fresh = &buf.filled()[before..];
            let take = fresh.len().min(CAPTURE_LIMIT - this.captured);
            if take > 0 {
                lock(&this.buffer).extend_from_slice(&fresh[..take]);
                this.captured += take;
            }
        }
        result
    }
}

impl AsyncWrite for CapturedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
