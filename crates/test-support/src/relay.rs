//! [`Relay`]: a TCP forwarder between a client and a real server that can make the
//! connections that carried a given request go silent without closing them, the way a
//! half-open connection or a proxy that dropped a stream looks to both ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One relayed connection: whether it has carried the marked request, and its switch.
struct Link {
    marked: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
}

/// Forwards every connection accepted on `127.0.0.1:0` to `target`, byte for byte.
pub struct Relay {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<Link>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Starts relaying to `target`; connections whose client bytes ever contain `mark` (for
    /// example `b"POST /v3/watch "`) can later be silenced with [`Relay::silence_marked`].
    pub async fn start(target: SocketAddr, mark: &'static [u8]) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let registry = Arc::clone(&links);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue; // the client sees its connection close
                };
                let marked = Arc::new(AtomicBool::new(false));
                let silent = Arc::new(AtomicBool::new(false));
                registry
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Link {
                        marked: Arc::clone(&marked),
                        silent: Arc::clone(&silent),
                    });
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(
                    client_read,
                    server_write,
                    Some((mark, Arc::clone(&marked))),
                    Arc::clone(&silent),
                ));
                tokio::spawn(pump(server_read, client_write, None, silent));
            }
        });
        Ok(Relay {
            addr,
            links,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding anything, either way, on every connection that has carried the mark so
    /// far; the sockets stay open. Returns how many connections went silent.
    pub fn silence_marked(&self) -> usize {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for link in links.iter().filter(|l| l.marked.load(Ordering::Acquire)) {
            link.silent.store(true, Ordering::Release);
            n += 1;
        }
        n
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to` until either closes; once `silent`, holds both open and forwards
/// nothing more. With `mark`, flags the link when the bytes going through contain it.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mark: Option<(&'static [u8], Arc<AtomicBool>)>,
    silent: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if silent.load(Ordering::Acquire) {
            // Keep the halves (and so the sockets) alive, as a half-open path would.
            std::future::pending::<()>().await;
        }
        if let Some((mark, marked)) = &mark
            && buf[..n].windows(mark.len()).any(|w| w == *mark)
        {
            marked.store(true, Ordering::Release);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
