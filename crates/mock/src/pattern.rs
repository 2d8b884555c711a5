//! The deterministic download pattern and the FNV-1a 64 checksum both sides use to compare bodies.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Period of the download pattern: byte `i` is `i % PATTERN_PERIOD`. A prime, so the pattern does
/// not line up with any power-of-two chunk or buffer size.
const PATTERN_PERIOD: u64 = 251;

/// Largest chunk a [`PatternBody`] yields (64 KiB).
pub(crate) const CHUNK: usize = 64 * 1024;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Byte `i` of the body served by `GET /download?bytes=N`: `i % 251`.
pub fn pattern_byte(i: u64) -> u8 {
    u8::try_from(i % PATTERN_PERIOD).expect("i % 251 is below 256")
}

/// FNV-1a 64 checksum of the first `n` bytes of the download pattern, i.e. what a client should
/// compute over the body of `GET /download?bytes=n`.
pub fn pattern_fnv64(n: u64) -> u64 {
    let table = pattern_table();
    let mut hasher = Fnv64::new();
    let mut pos = 0u64;
    while pos < n {
        let (start, len) = chunk_at(pos, n);
        hasher.update(&table[start..start + len]);
        pos += len as u64;
    }
    hasher.finish()
}

/// FNV-1a 64 checksum of `bytes` in one call; see [`Fnv64`] for the streaming form.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv64::new();
    hasher.update(bytes);
    hasher.finish()
}

/// Streaming FNV-1a 64 hasher: feed it the chunks of a body in order and the result equals
/// [`fnv64`] of their concatenation. Chosen because it is trivial to reimplement in any test or
/// tool, not for strength.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv64(u64);

impl Fnv64 {
    /// A hasher that has seen no bytes yet.
    pub const fn new() -> Self {
        Self(FNV_OFFSET_BASIS)
    }

    /// Feeds the next `bytes` of the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        self.0 = h;
    }

    /// The checksum of everything fed so far.
    pub const fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Self::new()
    }
}

/// One chunk's worth of pattern plus a period of slack, so that any chunk starting at any pattern
/// offset is a contiguous slice of it (and can be handed out with `Bytes::slice`, without copying).
pub(crate) fn pattern_table() -> Bytes {
    let len = CHUNK as u64 + PATTERN_PERIOD;
    (0..len).map(pattern_byte).collect::<Vec<u8>>().into()
}

/// Where in the table the chunk starting at stream offset `pos` begins, and how long it is.
fn chunk_at(pos: u64, total: u64) -> (usize, usize) {
    let start = usize::try_from(pos % PATTERN_PERIOD).expect("offset below 251 fits in usize");
    let remaining = total - pos;
    let len = usize::try_from(remaining.min(CHUNK as u64)).expect("length capped at CHUNK");
    (start, len)
}

/// Response body of `/download`: `len` pattern bytes, produced chunk by chunk on demand. It never
/// holds more than the shared table, and it reports an exact size so hyper sends `content-length`
/// (unless made [`PatternBody::chunked`]).
pub(crate) struct PatternBody {
    table: Bytes,
    pos: u64,
    len: u64,
    /// Send this many bytes, then nothing more (the connection stays open).
    stall_at: Option<u64>,
    /// Report no size, so hyper sends `transfer-encoding: chunked` (HTTP/1.1).
    chunked: bool,
}

impl PatternBody {
    /// A body of `len` pattern bytes cut from `table` (which must come from [`pattern_table`]).
    pub(crate) fn new(table: Bytes, len: u64) -> Self {
        Self {
            table,
            pos: 0,
            len,
            stall_at: None,
            chunked: false,
        }
    }

    /// The same body with no declared length: a streamed response of unknown size.
    pub(crate) fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// The same body that stops for good after `at` bytes: a stalled upstream.
    pub(crate) fn stalling_at(mut self, at: u64) -> Self {
        self.stall_at = Some(at);
        self
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.pos >= this.len {
            return Poll::Ready(None);
        }
        let end = this.stall_at.map_or(this.len, |at| at.min(this.len));
        if this.pos >= end {
            // Never woken: the stall lasts until the connection or the mock goes away.
            return Poll::Pending;
        }
        let (start, len) = chunk_at(this.pos, end);
        this.pos += len as u64;
        Poll::Ready(Some(Ok(Frame::data(this.table.slice(start..start + len)))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        if self.chunked {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.len - self.pos)
    }
}
