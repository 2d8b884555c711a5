//! Stream wrappers: [`Linger`] ends a TCP connection with RST on request, [`CapturedStream`]
//! records the first bytes a connection receives (above TLS, for TLS mocks).

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

/// The accepted socket. When `reset_on_drop` is set by the time it drops, the socket is closed
/// with `SO_LINGER 0`, i.e. an RST instead of a FIN (and, for TLS, without `close_notify`).
pub(crate) struct Linger {
    inner: TcpStream,
    reset_on_drop: Arc<AtomicBool>,
}

impl Linger {
    pub(crate) fn new(inner: TcpStream, reset_on_drop: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            reset_on_drop,
        }
    }
}

impl Drop for Linger {
    fn drop(&mut self) {
        if self.reset_on_drop.load(Ordering::Acquire) {
            // Best effort: if it fails the peer sees a FIN instead, which the reset tests catch.
            let _ = self.inner.set_zero_linger();
        }
    }
}

/// A stream plus its capture buffer: the plain socket, or the TLS stream (so the capture holds
/// the decrypted bytes).
///
/// Invariant: `buffer` holds exactly the first `min(received, CAPTURE_LIMIT)` bytes read from
/// `inner`, in order; `captured` mirrors its length so a full buffer costs no lock per read.
pub(crate) struct CapturedStream<S> {
    inner: S,
    buffer: Arc<Mutex<Vec<u8>>>,
    captured: usize,
}

impl<S> CapturedStream<S> {
    /// Wraps `inner`; received bytes go to `buffer`.
    pub(crate) fn new(inner: S, buffer: Arc<Mutex<Vec<u8>>>) -> Self {
        Self {
            inner,
            buffer,
            captured: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CapturedStream<S> {
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

/// Forwards every write to `$inner`.
macro_rules! forward_writes {
    ($ty:ty, $($generics:tt)*) => {
        impl $($generics)* AsyncWrite for $ty {
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
    };
}

forward_writes!(Linger,);
forward_writes!(CapturedStream<S>, <S: AsyncWrite + Unpin>);

impl AsyncRead for Linger {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}
