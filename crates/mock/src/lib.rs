//! `pairgate-mock`: a real HTTP server playing one regional cloud account, for the gateway's
//! integration tests (as a fault-injectable upstream) and for `pairgate demo`.
//!
//! A [`MockUpstream`] serves HTTP/1.1 and h2c (prior knowledge) on one port of 127.0.0.1 (or the
//! address given to [`MockUpstream::start_on`]); one started with [`MockUpstream::start_tls`]
//! serves the same over TLS (HTTP/1.1 or HTTP/2, as negotiated by ALPN), with the caller's
//! `rustls::ServerConfig`. Every path echoes the request as JSON; a few
//! paths do more (see the endpoint list below). Faults are injected through [`Behavior`], through
//! [`MockUpstream::kill`] / [`MockUpstream::revive`] / [`MockUpstream::flap`] and through
//! [`MockUpstream::set_health`].
//!
//! # Endpoints (any host, any method)
//!
//! - the probe path (default `/healthz`): `200 ok`, or `503 unhealthy` after `set_health(false)`;
//!   counted by `probe_count`, never recorded.
//! - `/download?bytes=N`: `N` bytes of the pattern [`pattern_byte`], streamed in 64 KiB chunks with
//!   `content-length`; check it with [`pattern_fnv64`]. With `&stall_after=K`, only the first `K`
//!   bytes are sent and then nothing, the connection left open (a stalled upstream). With
//!   `&chunked=1`, no length is declared: the body goes out chunked (HTTP/1.1).
//! - `/status/{code}`: the JSON echo with that status.
//! - `/delay/{ms}`: the JSON echo after `ms` milliseconds.
//! - `/ws` with a WebSocket handshake: 101, then every text and binary message is echoed back.
//! - anything else: `200` with a JSON echo `{account, region, method, path, query, version,
//!   authority, headers, body_bytes, body_fnv64}`; `headers` maps each name to its value, or to an
//!   array when repeated; `body_fnv64` is [`Fnv64`] of the body as 16 hex digits.
//!
//! Every answer carries `x-mock-account` and `x-mock-region`.
//!
//! [`MockAzure`] (module [`azure`]) is a second kind of fake: the Azure endpoints that mint and
//! check Video Indexer credentials (Entra ID, IMDS, ARM `generateAccessToken`, the classic API-key
//! token endpoint) and Video Indexer accounts that accept only their own unexpired token.
//!
//! # Invariants
//!
//! - Request bodies are consumed as a stream (counted and hashed), never buffered whole, and
//!   download bodies never hold more than one chunk: a 1 GiB transfer costs no memory.
//! - After [`MockUpstream::kill`] returns, connects are refused and no connection, HTTP/2 stream
//!   or WebSocket session of the killed period is left: all run in one task set that `kill` shuts
//!   down and waits for.
//! - Connection tasks hold the statistics, never the server: dropping the last handle stops it.
//!
//! # Non-goals
//!
//! Choosing certificates or ALPN for TLS mocks (the caller's `ServerConfig` decides), HTTP/3,
//! WebSocket over HTTP/2 (RFC 8441), and exact wire order of repeated headers in
//! [`Recorded::headers`] (hyper groups them by name; [`MockUpstream::raw_capture`] has the wire).

use std::time::Duration;

pub mod azure;
mod capture;
mod handler;
mod pattern;
mod server;
mod state;
mod upstream;

#[cfg(test)]
mod tests;

pub use azure::MockAzure;
pub use pattern::{Fnv64, fnv64, pattern_byte, pattern_fnv64};
pub use upstream::{FlapHandle, MockUpstream};

/// The probe path a new mock answers, until [`MockUpstream::set_probe_path`].
pub const DEFAULT_PROBE_PATH: &str = "/healthz";

/// Identity of a mock account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockConfig {
    /// Account name: echoed as `account` and sent as `x-mock-account`. Must be a valid header value.
    pub name: String,
    /// Region name: echoed as `region` and sent as `x-mock-region`. Must be a valid header value.
    pub region: String,
}

impl MockConfig {
    /// A config for account `name` in `region`.
    pub fn new(name: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
        }
    }
}

impl Default for MockConfig {
    /// Account `mock` in region `local`.
    fn default() -> Self {
        Self::new("mock", "local")
    }
}

/// How the mock treats requests; see [`MockUpstream::set_behavior`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    /// Serve every endpoint normally.
    #[default]
    Normal,
    /// Accept and read, never answer; sockets are held open until `kill` or drop. A connection
    /// accepted while black-holed never even gets an HTTP/2 preface; a request on an existing
    /// connection has its body consumed and then hangs. Applies to probes too.
    BlackHole,
    /// Read the request head, then close the connection with an RST (`SO_LINGER 0`) before
    /// answering. Applies to probes too.
    Reset,
    /// Answer every non-probe request with this status (and the JSON echo as body); probes still
    /// follow [`MockUpstream::set_health`]. Codes outside 200..=999 become 500.
    Status(u16),
    /// Consume the request, wait this long, then answer normally. Applies to probes too: a slow
    /// account is slow for its prober.
    Delay(Duration),
}

/// One request as the mock received it (probes are not recorded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path and query as received (origin-form; for absolute-form and HTTP/2 requests the scheme
    /// and authority are stripped, see `authority`).
    pub uri: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The request authority: from the URI (HTTP/2 `:authority`, absolute-form) or else `Host`.
    pub authority: Option<String>,
    /// Headers with lower-case names, duplicates kept, grouped by name in order of first
    /// appearance (hyper's order). Non-UTF-8 bytes are replaced with U+FFFD.
    pub headers: Vec<(String, String)>,
    /// Body bytes received (up to the body's end or its first error).
    pub body_len: u64,
    /// [`Fnv64`] checksum of those bytes.
    pub body_fnv64: u64,
}

impl Recorded {
    /// The first value of header `name` (matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (matched case-insensitively), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
