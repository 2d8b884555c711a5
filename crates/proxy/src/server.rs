//! The client-facing listener: HTTP/1.1 and h2c prior knowledge on one port.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use tokio::sync::{Semaphore, watch};

use pairgate_routing::local;
use tokio_rustls::TlsAcceptor;

use crate::Shared;
use crate::conn::{ConnState, TrackedBody};
use crate::forward::{ConnInfo, handle};
use crate::guard::FramingGuard;

/// First and longest pause after a failed accept (doubling in between).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// hyper refuses read buffers smaller than this; `max_request_header_bytes` below it is raised.
const MIN_HYPER_BUF: usize = 8192;

/// Serves the data plane on `listener` until `shutdown` resolves, then stops accepting and gives
/// in-flight requests up to `settings.shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    accept_loop(listener, shared, None, shutdown).await
}

/// [`serve`] over TLS: certificates by SNI from `tls` (its resolver can be swapped on reload),
/// ALPN h2 or http/1.1.
pub async fn serve_tls(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    accept_loop(listener, shared, Some(TlsAcceptor::from(tls)), shutdown).await
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = Arc::new(server_builder(&shared));
    // `true` once the listener stops: every connection then shuts down gracefully (GOAWAY,
    // or close after the request in progress); `closed()` tells when the last one has ended.
    let (stopping, stop) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(shared.settings.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut refused = Refusals::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => {
                backoff = ACCEPT_BACKOFF_MIN;
                conn
            }
            Err(err) => {
                // Out of descriptors (EMFILE, ENFILE) the error repeats until connections
                // close: back off exponentially instead of spinning, and warn at most once a
                // second (LOCAL_ERRORS does).
                match local::io_local_kind(&err) {
                    Some(kind) => local::LOCAL_ERRORS.record(kind, local::LocalSite::Accept),
                    None => tracing::warn!(error = %err, ?backoff, "accept failed"),
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "set_nodelay failed");
        }
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            refused.note();
            tokio::spawn(refuse(stream));
            continue;
        };
        let (shared, builder, watcher, tls) = (
            Arc::clone(&shared),
            Arc::clone(&builder),
            stop.clone(),
            tls.clone(),
        );
        let open = OpenConnection::new(&shared);
        tokio::spawn(async move {
            let _open = open;
            match tls {
                None => {
                    let info = ConnInfo {
                        peer,
                        client_ip: crate::headers::client_ip_value(peer.ip()),
                        sni: None,
                        https: false,
                        client_cert: None,
                    };
                    serve_conn(stream, info, &shared, &builder, watcher).await;
                }
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        shared.settings.header_read_timeout,
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            let session = tls_stream.get_ref().1;
                            let sni = session.server_name().map(Arc::from);
                            // rustls verified the chain against `client_ca`; the leaf's
                            // names are read once for the connection's requests.
                            let client_cert = session
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| Arc::new(crate::PeerIdentity::from_der(leaf)));
                            let info = ConnInfo {
                                peer,
                                client_ip: crate::headers::client_ip_value(peer.ip()),
                                sni,
                                https: true,
                                client_cert,
                            };
                            serve_conn(tls_stream, info, &shared, &builder, watcher).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, %peer, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    drop(stop);
    let grace = shared.settings.shutdown_grace;
    let _ = stopping.send(true);
    let _ = shared.tunnels.send(true);
    // Connections first (each finishes its request in progress), then the upgraded tunnels,
    // which hyper no longer counts as connections: both within the one grace period.
    let drained = tokio::time::timeout(grace, async {
        stopping.closed().await;
        shared.tunnels.closed().await;
    });
    if drained.await.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; dropping remaining connections and tunnels"
        );
    }
    Ok(())
}

/// Serves one client connection (plain or TLS) behind the framing guard, until it ends, the
/// listener stops (`stop` turns true) or, for HTTP/2, it has no open stream for
/// `limits.idle_timeout`; the last two end it gracefully.
async fn serve_conn<S>(
    stream: S,
    info: ConnInfo,
    shared: &Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let head_limit = shared.settings.max_request_header_bytes.max(MIN_HYPER_BUF);
    let state = Arc::new(ConnState::default());
    let io = FramingGuard::new(stream, head_limit)
        .with_head_timeout(shared.settings.header_read_timeout)
        .with_send_timeout(shared.settings.send_timeout)
        .with_conn_state(Arc::clone(&state));
    let peer = info.peer;
    let info = Arc::new(info);
    let conn_shared = Arc::clone(shared);
    let service_state = Arc::clone(&state);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&conn_shared);
        let info = Arc::clone(&info);
        // Open from here until the response body is dropped (or this future is).
        let open = service_state.open();
        async move {
            let resp = handle(&shared, &info, req).await;
            Ok::<_, Infallible>(resp.map(|body| TrackedBody::new(body, open)))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let idle = state.idle_h2(shared.settings.client_idle_timeout);
    let mut idle = std::pin::pin!(idle);
    let mut draining = false;
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break ended,
            _ = stop.wait_for(|stopping| *stopping), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = idle.as_mut(), if !draining => {
                tracing::debug!(%peer, "HTTP/2 connection idle past limits.idle_timeout; closing");
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(err) = ended {
        tracing::debug!(error = %err, %peer, "client connection ended with an error");
    }
}

/// Counts a client connection in `ProxyStats::client_connections` while it lives.
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: &Arc<Shared>) -> OpenConnection {
        shared
            .stats
            .client_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenConnection(Arc::clone(shared))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0
            .stats
            .client_connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Over `max_connections`: a short 503 and close, rather than a silent backlog.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    // One literal for the body and the length it declares, checked at compile time.
    macro_rules! body {
        () => {
            r#"{"error":"too_many_connections"}"#
        };
    }
    const BUSY: &[u8] = concat!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n",
        "content-type: application/json\r\ncontent-length: 32\r\n\r\n",
        body!()
    )
    .as_bytes();
    const _: () = assert!(body!().len() == 32, "content-length must match the body");
    // Write the answer, then read what the client sent until it closes (bounded): closing a
    // socket with unread data makes the kernel send RST, which can discard the 503 before the
    // client reads it.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        use tokio::io::AsyncReadExt;
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Connections refused at `max_connections`, warned about at most once a second (a flood of
/// them would otherwise flood the log too).
#[derive(Default)]
struct Refusals {
    since_warning: u64,
    warned_at: Option<tokio::time::Instant>,
}

impl Refusals {
    fn note(&mut self) {
        self.since_warning += 1;
        let now = tokio::time::Instant::now();
        if self
            .warned_at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            tracing::warn!(
                refused = self.since_warning,
                "connection limit reached; refusing connections"
            );
            self.since_warning = 0;
            self.warned_at = Some(now);
        }
    }
}

fn server_builder(shared: &Shared) -> auto::Builder<TokioExecutor> {
    let settings = &shared.settings;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The framing guard owns the head timeout (a 408 for a partial head): it sees every
        // HTTP/1 head before hyper does. A second timer in hyper would cost a clock read and a
        // timer-wheel update per request and never fire first.
        .header_read_timeout(None)
        .max_buf_size(settings.max_request_header_bytes.max(MIN_HYPER_BUF))
        .max_headers(settings.max_request_headers)
        .keep_alive(true);
    let header_list = u32::try_from(settings.max_request_header_bytes).unwrap_or(u32::MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(header_list)
        .max_concurrent_streams(settings.http2_max_concurrent_streams)
        // Rapid reset (CVE-2023-44487): streams the client opens and resets before we accept
        // them, and streams we reset for its protocol errors, are bounded per connection.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024))
        .max_send_buf_size(256 * 1024)
        // A PING every interval; a client that does not answer within the timeout is gone.
        .keep_alive_interval(Some(settings.http2_keepalive_interval))
        .keep_alive_timeout(settings.http2_keepalive_timeout);
    builder
}
