//! A minimal HTTP/1.1 keep-alive client on a raw `TcpStream`: one request at a time, the
//! response head parsed with `httparse`, the body read and dropped. Cheaper than a general
//! client, so the load generator is not what gets measured; it understands `Content-Length`,
//! chunked bodies and `Connection: close`, which is all the mock, the gateway, nginx and HAProxy
//! send.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a request got no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// The connect was refused.
    ConnectRefused,
    /// The connect failed otherwise.
    ConnectError,
    /// The connect did not complete in time.
    ConnectTimeout,
    /// No complete response within the request timeout.
    Timeout,
    /// The connection was closed or reset before the response was complete.
    Closed,
    /// The response was not valid HTTP/1.1.
    Protocol,
    /// A scheduled request never sent: the generator was too far behind schedule at the end.
    Unsent,
}

impl Failure {
    /// Every kind, in report order.
    pub const ALL: [Failure; 7] = [
        Failure::ConnectRefused,
        Failure::ConnectError,
        Failure::ConnectTimeout,
        Failure::Timeout,
        Failure::Closed,
        Failure::Protocol,
        Failure::Unsent,
    ];

    /// Short name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::ConnectRefused => "connect_refused",
            Failure::ConnectError => "connect_error",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
            Failure::Protocol => "protocol",
            Failure::Unsent => "unsent",
        }
    }
}

/// What a response said that the harness cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Answered by the secondary side: `x-mock-region` names the secondary region.
    pub secondary: bool,
    /// `x-pairgate-replayed` was present.
    pub replayed: bool,
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

impl Conn {
    /// Connects to `addr` within `timeout`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, Failure> {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => Err(Failure::ConnectTimeout),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Err(Failure::ConnectRefused)
            }
            Ok(Err(_)) => Err(Failure::ConnectError),
            Ok(Ok(stream)) => {
                // Small requests and answers: do not let Nagle hold them back.
                stream
                    .set_nodelay(true)
                    .map_err(|_| Failure::ConnectError)?;
                Ok(Conn {
                    stream,
                    buf: Vec::with_capacity(4096),
                })
            }
        }
    }

    /// Sends `request` (a complete HTTP/1.1 request) and reads the whole response. Returns the
    /// reply and whether the connection may be reused. `secondary_region` is the value of
    /// `x-mock-region` that counts as served by the secondary.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        secondary_region: &[u8],
    ) -> Result<(Reply, bool), Failure> {
        self.stream
            .write_all(request)
            .await
            .map_err(|_| Failure::Closed)?;
        self.buf.clear();
        let (reply, keep_alive, body) = loop {
            if self.read_more().await? == 0 {
                return Err(Failure::Closed);
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = resp.code.ok_or(Failure::Protocol)?;
                    let mut reply = Reply {
                        status,
                        secondary: false,
                        replayed: false,
                    };
                    let mut keep_alive = resp.version == Some(1);
                    let mut body = if status == 204 || status == 304 || status < 200 {
                        Body::Length(0)
                    } else {
                        Body::UntilClose
                    };
                    for h in resp.headers.iter() {
                        let name = h.name;
                        if name.eq_ignore_ascii_case("content-length") {
                            let n = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .ok_or(Failure::Protocol)?;
                            body = Body::Length(n);
                        } else if name.eq_ignore_ascii_case("transfer-encoding") {
                            if h.value.eq_ignore_ascii_case(b"chunked") {
                                body = Body::Chunked;
                            }
                        } else if name.eq_ignore_ascii_case("connection") {
                            if h.value.eq_ignore_ascii_case(b"close") {
                                keep_alive = false;
                            }
                        } else if name.eq_ignore_ascii_case("x-mock-region") {
                            reply.secondary = h.value == secondary_region;
                        } else if name.eq_ignore_ascii_case("x-pairgate-replayed") {
                            reply.replayed = true;
                        }
                    }
                    self.buf.drain(..head_len);
                    break (reply, keep_alive, body);
                }
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => {}
                _ => return Err(Failure::Protocol),
            }
        };
        match body {
            Body::Length(n) => self.skip(n).await?,
            Body::Chunked => self.skip_chunked().await?,
            Body::UntilClose => {
                while self.read_more().await? > 0 {
                    self.buf.clear();
                }
                return Ok((reply, false));
            }
        }
        // Anything left over would be an unasked-for response: do not reuse the connection.
        Ok((reply, keep_alive && self.buf.is_empty()))
    }

    async fn read_more(&mut self) -> Result<usize, Failure> {
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(8192);
        }
        self.stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|_| Failure::Closed)
    }

    /// Consumes `n` body bytes.
    async fn skip(&mut self, mut n: usize) -> Result<(), Failure> {
        loop {
            let have = self.buf.len().min(n);
            self.buf.drain(..have);
            n -= have;
            if n == 0 {
                return Ok(());
            }
            if self.read_more().await? == 0 {
                return Err(Failure::Closed);
            }
        }
    }

    /// Consumes a chunked body, trailers included.
    async fn skip_chunked(&mut self) -> Result<(), Failure> {
        loop {
            let size = loop {
                if let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let line =
                        std::str::from_utf8(&self.buf[..eol]).map_err(|_| Failure::Protocol)?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16).map_err(|_| Failure::Protocol)?;
                    self.buf.drain(..eol + 2);
                    break size;
                }
                if self.buf.len() > MAX_HEAD || self.read_more().await? == 0 {
                    return Err(Failure::Protocol);
                }
            };
            if size == 0 {
                // Trailers, then an empty line.
                loop {
                    if let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        self.buf.drain(..eol + 2);
                        if eol == 0 {
                            return Ok(());
                        }
                        continue;
                    }
                    if self.buf.len() > MAX_HEAD || self.read_more().await? == 0 {
                        return Err(Failure::Protocol);
                    }
                }
            }
            self.skip(size + 2).await?;
        }
    }
}

enum Body {
    Length(usize),
    Chunked,
    UntilClose,
}

/// `GET path` with `Host: host`, keep-alive.
pub fn get_request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pairgate-bench\r\n\r\n")
        .into_bytes()
}

/// One request on a fresh connection (`Connection: close`): status and body. For the admin
/// API and readiness checks, not for load.
pub async fn one_shot(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<(u16, Vec<u8>)> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        // One write, no Nagle: a head and body in two writes would wait on the server's
        // delayed ACK before the body leaves, and that wait would land in the timings.
        stream.set_nodelay(true)?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        let mut req = req.into_bytes();
        req.extend_from_slice(body);
        stream.write_all(&req).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        let Ok(httparse::Status::Complete(head_len)) = resp.parse(&raw) else {
            return Err(bad("incomplete response head"));
        };
        let status = resp.code.ok_or_else(|| bad("no status"))?;
        let chunked = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && h.value.eq_ignore_ascii_case(b"chunked")
        });
        let rest = &raw[head_len..];
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        Ok((status, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request timed out"))?
}

/// Decodes a complete chunked body (extensions and trailers ignored).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
