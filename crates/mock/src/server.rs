//! Accept loop and per-connection serving: the task set `kill` tears down, TLS accept, black holes
//! and resets.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::Behavior;
use crate::capture::{CapturedStream, Linger};
use crate::handler;
use crate::state::{Shared, lock};

/// Listen backlog; generous so bursts of test connections are not refused while the server is up.
const BACKLOG: u32 = 1024;

/// Binds a listener on `addr` with `SO_REUSEADDR`, so a revived mock gets its old port back even
/// while connections from its previous life sit in `TIME_WAIT`.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Every task of one listening period (from `start`/`revive` to `kill`): connections, HTTP/2
/// streams (hyper spawns them through this set, see the `Executor` impl) and WebSocket sessions.
///
/// Invariant: once `take` has run the set is `None` and every later `spawn` drops its future, so a
/// task racing with `kill` cannot outlive it.
#[derive(Clone)]
pub(crate) struct Tasks(Arc<Mutex<Option<JoinSet<()>>>>);

impl Tasks {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Some(JoinSet::new()))))
    }

    /// Runs `fut` in this set, or drops it if the set has been shut down.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Some(set) = lock(&self.0).as_mut() {
            set.spawn(fut);
        }
    }

    /// Forgets finished tasks so the set does not grow with every connection ever accepted.
    fn reap(&self) {
        if let Some(set) = lock(&self.0).as_mut() {
            while set.try_join_next().is_some() {}
        }
    }

    fn take(&self) -> Option<JoinSet<()>> {
        lock(&self.0).take()
    }
}

impl<F> hyper::rt::Executor<F> for Tasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.spawn(async move {
            fut.await;
        });
    }
}

/// One listening period: the accept task (which owns the listener) and the task set.
pub(crate) struct Run {
    accept: JoinHandle<()>,
    tasks: Tasks,
}

impl Run {
    /// Starts accepting on `listener`, TLS-accepting each connection first when `tls` is set.
    pub(crate) fn start(
        listener: TcpListener,
        shared: Arc<Shared>,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let tasks = Tasks::new();
        let accept = tokio::spawn(accept_loop(listener, shared, tls, tasks.clone()));
        Self { accept, tasks }
    }

    /// Closes the listener and every connection, and returns once all of them are gone.
    pub(crate) async fn shutdown(self) {
        self.accept.abort();
        // The accept task's only way out is this abort; the result says nothing more.
        let _ = self.accept.await;
        if let Some(mut set) = self.tasks.take() {
            set.shutdown().await;
        }
    }

    /// Like `shutdown`, for `Drop`: requests the same teardown without waiting for it.
    pub(crate) fn abort(self) {
        self.accept.abort();
        drop(self.tasks.take());
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    tasks: Tasks,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::debug!(account = %shared.name, %error, "mock accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tasks.reap();
        tasks.spawn(accept(
            stream,
            Arc::clone(&shared),
            tls.clone(),
            tasks.clone(),
        ));
    }
}

/// Per-connection context the request handler needs.
pub(crate) struct ConnCtx {
    reset: Arc<AtomicBool>,
    reset_requested: Notify,
    closed: watch::Receiver<()>,
    /// Where the handler spawns WebSocket sessions.
    pub(crate) tasks: Tasks,
}

impl ConnCtx {
    /// Ends the connection with an RST as soon as the connection task sees it.
    pub(crate) fn reset(&self) {
        self.reset.store(true, Ordering::Release);
        self.reset_requested.notify_one();
    }

    /// Resolves once the connection is gone (closed, reset, killed).
    pub(crate) async fn closed(&self) {
        let mut closed = self.closed.clone();
        // The sender never sends; `changed` returns only when it is dropped with the connection.
        let _ = closed.changed().await;
    }
}

/// Takes one accepted connection through the black hole check and the TLS handshake (if any),
/// then serves it.
///
/// A connection accepted while black-holed is swallowed at the TCP level, before any TLS: the
/// client's handshake never gets an answer, as with a silently dead host.
async fn accept(stream: TcpStream, shared: Arc<Shared>, tls: Option<TlsAcceptor>, tasks: Tasks) {
    // Small responses should not wait for Nagle; failure only costs latency.
    let _ = stream.set_nodelay(true);
    let reset = Arc::new(AtomicBool::new(false));
    let capture = shared.new_connection();
    let stream = Linger::new(stream, Arc::clone(&reset));
    if shared.behavior() == Behavior::BlackHole {
        // Plain mocks capture what a black hole swallows; a TLS mock's capture holds decrypted
        // bytes only, so it stays empty here.
        if tls.is_some() {
            black_hole(stream).await;
        } else {
            black_hole(CapturedStream::new(stream, capture)).await;
        }
        return;
    }
    match tls {
        None => serve(CapturedStream::new(stream, capture), shared, reset, tasks).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => serve(CapturedStream::new(stream, capture), shared, reset, tasks).await,
            Err(error) => {
                shared.count_tls_handshake_failure();
                tracing::debug!(account = %shared.name, %error, "mock TLS handshake failed");
            }
        },
    }
}

/// Serves HTTP/1.1 and HTTP/2 (by preface; for TLS the client picked it by ALPN) on `stream`
/// until it closes or the handler asks for a reset.
async fn serve<S>(stream: S, shared: Arc<Shared>, reset: Arc<AtomicBool>, tasks: Tasks)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Dropped when this function returns, which wakes every `ConnCtx::closed`.
    let (_closed_tx, closed) = watch::channel(());
    let ctx = Arc::new(ConnCtx {
        reset,
        reset_requested: Notify::new(),
        closed,
        tasks: tasks.clone(),
    });
    let builder = auto::Builder::new(tasks);
    let service = {
        let ctx = Arc::clone(&ctx);
        service_fn(move |req| handler::handle(Arc::clone(&shared), Arc::clone(&ctx), req))
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::trace!(%error, "mock connection ended with an error");
            }
        }
        // Dropping `connection` drops the socket with its reset flag set: the peer gets an RST
        // (for TLS, without a close_notify first).
        () = ctx.reset_requested.notified() => {}
    }
}

/// Reads and discards everything, never writes, and holds the socket until the server is killed
/// or dropped (even after the peer's FIN, like a silently dead host would).
async fn black_hole<S: AsyncRead + Unpin>(mut stream: S) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return,
        }
    }
    std::future::pending::<()>().await;
}
