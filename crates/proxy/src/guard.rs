//! A framing guard under hyper's HTTP/1 parser: rejects ambiguous request framing with 400.
//!
//! hyper already rejects invalid and conflicting `Content-Length` values, transfer codings that
//! do not end in `chunked`, obs-fold, bad bytes and bad chunk sizes. Three ambiguous shapes it
//! accepts, and that request-smuggling attacks use, are refused here (RFC 9112 §6.1 permits a
//! server to reject them, and nginx does):
//! - `Content-Length` together with `Transfer-Encoding` (hyper drops the length, then closes);
//! - `Content-Length` sent more than once, even with equal values, or as a list;
//! - any `Transfer-Encoding` other than one header whose value is exactly `chunked`.
//!
//! The guard holds back each request head until it is complete (hyper cannot parse it earlier
//! anyway), checks it with `httparse`, then either releases it unchanged or replaces it with a
//! head hyper cannot parse, so that hyper answers `400 Bad Request` and closes the connection;
//! nothing of that request reaches an upstream. To find the next pipelined head it follows body
//! framing (a length countdown, or a chunked-encoding state machine). Where the stream stops
//! being HTTP/1 requests (HTTP/2 prior knowledge, an upgrade, CONNECT) or where hyper will reject
//! the bytes itself (unparseable, oversized head, bad chunk syntax), it steps aside and passes
//! bytes through untouched.
//!
//! Cost: bytes are copied once through an 8 KiB buffer; body bytes are skipped by count, not
//! inspected (chunk data included).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::ConnState;
use crate::idle::IdleTimer;

/// Sent to a client whose request head did not complete within the header-read timeout.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// What hyper receives instead of a rejected head: an invalid method token, so its parser
/// answers 400 and closes.
const POISON: &[u8] = b"BAD\x01REQUEST / HTTP/1.1\r\n\r\n";
/// The HTTP/2 connection preface up to its first empty line (RFC 9113 §3.4).
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";
/// Headers a head may carry for the guard to check it; more is hyper's business (431).
const MAX_HEADERS: usize = 256;

/// Where the guard is in the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a request head.
    Head,
    /// Passing `n` more body bytes.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not HTTP/1 requests any more, or hyper will reject what comes: pass everything.
    Passthrough,
    /// A head was rejected: hyper answers 400 and closes; drop everything after it.
    Rejected,
}

/// The chunked-body scanner (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a chunk size (`digits` so far).
    Size { size: u64, digits: u8 },
    /// After the size: extensions until CR.
    Extension { size: u64 },
    /// Expecting LF after the size line.
    SizeLf { size: u64 },
    /// Chunk data left.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// In the trailer section, at the start of a line.
    TrailerLineStart,
    /// In a trailer field line.
    TrailerLine,
    /// Expecting LF that ends a trailer line.
    TrailerLf,
    /// Expecting the LF that ends the message.
    EndLf,
}

/// Wraps a client connection; see the module docs.
pub struct FramingGuard<S> {
    inner: S,
    state: State,
    /// Bytes of the head being collected, withheld from hyper.
    head: Vec<u8>,
    /// Bytes released to hyper, not yet read by it.
    out: VecDeque<u8>,
    /// After the current request's body, stop inspecting (an upgrade may follow).
    passthrough_after_body: bool,
    max_head: usize,
    eof: bool,
    /// Times a head wait: from its first stall until the head is complete (also the keep-alive
    /// idle limit).
    head_timeout: Option<IdleTimer>,
    /// Times a write to the client that makes no progress (the client stopped reading).
    send_timeout: Option<IdleTimer>,
    /// The connection's open requests: no head is timed while one waits for its answer.
    conn: Option<Arc<ConnState>>,
}

impl<S> FramingGuard<S> {
    /// Guards `inner`; heads longer than `max_head` bytes are left to hyper (which answers 431).
    pub fn new(inner: S, max_head: usize) -> Self {
        FramingGuard {
            inner,
            state: State::Head,
            head: Vec::new(),
            out: VecDeque::new(),
            passthrough_after_body: false,
            max_head,
            eof: false,
            head_timeout: None,
            send_timeout: None,
            conn: None,
        }
    }

    /// A write to the client that makes no progress for `timeout` fails (`TimedOut`), which
    /// ends the connection: a client that stops reading cannot hold it, its upstream
    /// connection and its tenant's in-flight slot forever.
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(IdleTimer::new(timeout));
        self
    }

    /// Passes a write's outcome through, timing how long writes stay `Pending`.
    fn timed_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let Some(timer) = &mut self.send_timeout else {
            return outcome;
        };
        if outcome.is_ready() {
            timer.progress();
            return outcome;
        }
        if timer.expired(cx) {
            tracing::debug!("client did not read for the send timeout; closing");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading (limits.send_timeout)",
            )));
        }
        Poll::Pending
    }

    /// A client must complete each request head within `timeout` of the connection opening or
    /// the previous request ending (its body read and, with [`Self::with_conn_state`], its
    /// response done): a partial head then gets `408` and the connection closes; an idle
    /// connection just closes.
    pub fn with_head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = Some(IdleTimer::new(timeout));
        self
    }

    /// The connection's request count: while a request is open (waiting for or sending its
    /// response), the next head is not timed; its time starts when the last one ends. Also
    /// told when the client turns out to speak HTTP/2.
    pub(crate) fn with_conn_state(mut self, conn: Arc<ConnState>) -> Self {
        self.conn = Some(conn);
        self
    }

    /// Processes newly read bytes: releases what hyper may see, withholds an incomplete head.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Passthrough => {
                    self.out.extend(bytes);
                    return;
                }
                State::Rejected => return,
                State::Head => {
                    if self.head.is_empty() {
                        // Empty lines before a request line are allowed (RFC 9112 §2.2).
                        let skip = bytes
                            .iter()
                            .take_while(|b| matches!(b, b'\r' | b'\n'))
                            .count();
                        self.out.extend(&bytes[..skip]);
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            return;
                        }
                    }
                    let searched = self.head.len().saturating_sub(3);
                    self.head.extend_from_slice(bytes);
                    bytes = &[];
                    let Some(end) = find_head_end(&self.head[searched..]).map(|e| e + searched)
                    else {
                        if self.head.len() > self.max_head {
                            self.release_head_and_pass();
                        }
                        return;
                    };
                    let rest = self.head.split_off(end);
                    self.check_head();
                    // Whatever followed the head is body or the next request: run it through
                    // the new state (recursion depth 1: `rest` is owned here).
                    if !rest.is_empty() {
                        self.feed(&rest);
                    }
                }
                State::Body(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(bytes.len());
                    self.out.extend(&bytes[..take]);
                    bytes = &bytes[take..];
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        self.after_body()
                    } else {
                        State::Body(left)
                    };
                }
                State::Chunked(Chunk::Data(n)) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(bytes.len());
                    self.out.extend(&bytes[..take]);
                    bytes = &bytes[take..];
                    let left = n - take as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    });
                }
                State::Chunked(chunk) => {
                    let b = bytes[0];
                    self.out.push_back(b);
                    bytes = &bytes[1..];
                    self.state = match step(chunk, b) {
                        Some(Some(next)) => State::Chunked(next),
                        Some(None) => self.after_body(),
                        // Bad chunk syntax: hyper's decoder rejects it; stop following.
                        None => State::Passthrough,
                    };
                }
            }
        }
    }

    fn after_body(&mut self) -> State {
        if std::mem::take(&mut self.passthrough_after_body) {
            State::Passthrough
        } else {
            State::Head
        }
    }

    fn release_head_and_pass(&mut self) {
        self.out.extend(self.head.drain(..));
        self.state = State::Passthrough;
    }

    /// Decides about the complete head in `self.head`.
    fn check_head(&mut self) {
        // The head arrived in time: the next one gets a fresh deadline (armed when it is awaited),
        // whether or not a body sits between them.
        if let Some(timer) = &mut self.head_timeout {
            timer.progress();
        }
        let Some(head) = inspect(&self.head) else {
            // Not an HTTP/1 request head (HTTP/2 preface, garbage, too many headers): hyper
            // decides, and the guard stops following the stream.
            if self.head.starts_with(H2_PREFACE_START)
                && let Some(conn) = &self.conn
            {
                conn.set_h2();
            }
            self.release_head_and_pass();
            return;
        };
        if head.ambiguous {
            tracing::debug!("rejecting a request with ambiguous framing");
            self.head.clear();
            self.out.extend(POISON);
            self.state = State::Rejected;
            return;
        }
        self.out.extend(self.head.drain(..));
        self.passthrough_after_body = head.leaves_http;
        self.state = match head.body {
            Framing::Chunked => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
            Framing::Length(n) if n > 0 => State::Body(n),
            Framing::Length(_) | Framing::None => self.after_body(),
        };
    }
}

/// How a request's body is framed.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// What the guard needs to know about one head.
struct Head {
    ambiguous: bool,
    body: Framing,
    /// An upgrade or CONNECT: after this request the stream may stop being HTTP/1.
    leaves_http: bool,
}

/// Parses a complete head; `None` when it is not a parseable HTTP/1 request head.
fn inspect(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(bytes) else {
        return None;
    };
    let mut lengths = 0usize;
    let mut length = None;
    let mut codings = 0usize;
    let mut chunked = false;
    let mut upgrade = false;
    let mut disguised = false;
    for h in req.headers.iter() {
        if h.name.contains('_') {
            let dashed = h.name.replace('_', "-");
            disguised |= dashed.eq_ignore_ascii_case("content-length")
                || dashed.eq_ignore_ascii_case("transfer-encoding");
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length = std::str::from_utf8(h.value).ok().and_then(parse_length);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            codings += 1;
            chunked = h.value.eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let bare_lf = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
    let ambiguous = disguised
        || bare_lf
        || (lengths > 0 && codings > 0)
        || lengths > 1
        || (lengths == 1 && length.is_none())
        || codings > 1
        || (codings == 1 && !chunked);
    let body = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::None,
    };
    Some(Head {
        ambiguous,
        body,
        leaves_http: upgrade || req.method == Some("CONNECT"),
    })
}

/// A `Content-Length` value: digits only (no sign, no list, no spaces inside).
fn parse_length(v: &str) -> Option<u64> {
    let v = v.trim_matches(|c| c == ' ' || c == '\t');
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Index just past the empty line that ends a head: a line end (`\n`, after `\r` or not)
/// followed by `\r\n` or `\n`, as httparse reads it.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

/// One byte of chunked framing: `Some(Some(next))` to go on, `Some(None)` at the message end,
/// `None` on a syntax error.
fn step(chunk: Chunk, b: u8) -> Option<Option<Chunk>> {
    let next = match chunk {
        Chunk::Size { size, digits } => match b {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                if digits >= 15 {
                    return None; // more than 2^60: hyper refuses it too
                }
                let d = u64::from((b as char).to_digit(16)?);
                Chunk::Size {
                    size: size * 16 + d,
                    digits: digits + 1,
                }
            }
            b';' | b' ' | b'\t' if digits > 0 => Chunk::Extension { size },
            b'\r' if digits > 0 => Chunk::SizeLf { size },
            _ => return None,
        },
        Chunk::Extension { size } => match b {
            b'\r' => Chunk::SizeLf { size },
            b'\n' => return None,
            _ => Chunk::Extension { size },
        },
        Chunk::SizeLf { size } => match (b, size) {
            (b'\n', 0) => Chunk::TrailerLineStart,
            (b'\n', n) => Chunk::Data(n),
            _ => return None,
        },
        // `feed` consumes chunk data in bulk and never steps through it.
        Chunk::Data(_) => return None,
        Chunk::DataCr => match b {
            b'\r' => Chunk::DataLf,
            _ => return None,
        },
        Chunk::DataLf => match b {
            b'\n' => Chunk::Size { size: 0, digits: 0 },
            _ => return None,
        },
        Chunk::TrailerLineStart => match b {
            b'\r' => Chunk::EndLf,
            b'\n' => return None,
            _ => Chunk::TrailerLine,
        },
        Chunk::TrailerLine => match b {
            b'\r' => Chunk::TrailerLf,
            _ => Chunk::TrailerLine,
        },
        Chunk::TrailerLf => match b {
            b'\n' => Chunk::TrailerLineStart,
            _ => return None,
        },
        Chunk::EndLf => match b {
            b'\n' => return Some(None),
            _ => return None,
        },
    };
    Some(Some(next))
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FramingGuard<S> {
    /// Reads straight into hyper's buffer: bytes of a body being counted down, or of a stream
    /// the guard no longer follows, stay there untouched; anything else is taken back out and
    /// run through `feed` (a head is withheld until complete).
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                let (a, b) = this.out.as_slices();
                let from_a = n.min(a.len());
                buf.put_slice(&a[..from_a]);
                buf.put_slice(&b[..n - from_a]);
                this.out.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if this.eof || this.state == State::Rejected {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(result) => result?,
                Poll::Pending => {
                    if this.state == State::Head
                        && let Some(timer) = &mut this.head_timeout
                    {
                        if this.conn.as_ref().is_some_and(|c| c.busy_or_register(cx)) {
                            // hyper reads on (for the next head, or to see the client leave)
                            // while a request waits for its answer: that wait is bounded by
                            // the upstream timeouts, not by this one. The next head's time
                            // starts once the last open request ends (which wakes this read).
                            timer.progress();
                        } else if timer.expired(cx) {
                            return Poll::Ready(Err(this.head_timed_out(cx)));
                        }
                    }
                    return Poll::Pending;
                }
            }
            let n = buf.filled().len() - before;
            if n == 0 {
                this.eof = true;
                // Let hyper see (and reject) whatever partial head there was.
                let partial = std::mem::take(&mut this.head);
                this.out.extend(partial);
                continue;
            }
            match this.state {
                State::Passthrough => return Poll::Ready(Ok(())),
                State::Body(left) if n as u64 <= left => {
                    this.state = if n as u64 == left {
                        this.after_body()
                    } else {
                        State::Body(left - n as u64)
                    };
                    return Poll::Ready(Ok(()));
                }
                _ => {
                    // Heads, chunked framing, a body end followed by the next head: inspect.
                    this.feed(&buf.filled()[before..]);
                    buf.set_filled(before);
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramingGuard<S> {
    /// The head deadline passed: tell a client that started a head (best effort, one write
    /// into the socket buffer), then end the connection.
    fn head_timed_out(&mut self, cx: &mut Context<'_>) -> io::Error {
        self.state = State::Rejected;
        if !self.head.is_empty() {
            let _ = Pin::new(&mut self.inner).poll_write(cx, REQUEST_TIMEOUT);
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramingGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.timed_write(cx, outcome)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_flush(cx);
        this.timed_write(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.timed_write(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.timed_write(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
