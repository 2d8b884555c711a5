//! Upstream connections counted per account (`pairgate_upstream_connections_open`): a connector
//! wrapper whose connections raise their account's gauge when made and lower it when dropped.
//!
//! The count is paid per connection, never per request: the connector runs only when a pool has
//! no idle connection to give, and a request on a pooled connection touches nothing here.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::Uri;
use http::uri::{Authority, Scheme};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use pairgate_routing::RouteTable;
use pairgate_routing::counters::AccountCounters;

/// The gauges one connection raises: one account's, or every account that shares the
/// connection's pool key (accounts with the same `http://` authority share the plain pools'
/// connections, so each of them counts those connections).
type Gauges = Arc<[Arc<AccountCounters>]>;

/// The plain (`http://`) accounts of the current routing table, by authority; swapped with
/// the snapshot (`Shared::swap_routes`).
#[derive(Default)]
pub(crate) struct ByAuthority(HashMap<Authority, Gauges>);

impl ByAuthority {
    /// The `http://` accounts of `table`, grouped by authority.
    pub(crate) fn of(table: &RouteTable) -> ByAuthority {
        let mut groups: HashMap<Authority, Vec<Arc<AccountCounters>>> = HashMap::new();
        for account in table.accounts() {
            if account.scheme == Scheme::HTTP {
                groups
                    .entry(account.authority.clone())
                    .or_default()
                    .push(Arc::clone(&account.counters));
            }
        }
        ByAuthority(groups.into_iter().map(|(a, g)| (a, g.into())).collect())
    }
}

/// Where a connector finds the gauges of the connections it makes.
#[derive(Clone)]
enum Target {
    /// One account's own pool (each `https://` account has its own client).
    Account(Gauges),
    /// The shared plain pools: the account is looked up by the target's authority in the
    /// current table, once per new connection.
    Shared(Arc<ArcSwap<ByAuthority>>),
}

/// A connector whose connections are counted in their accounts' gauges.
#[derive(Clone)]
pub(crate) struct Counting<C> {
    inner: C,
    target: Target,
}

impl<C> Counting<C> {
    /// Connections of one account's own pool.
    pub(crate) fn account(inner: C, counters: &Arc<AccountCounters>) -> Self {
        Counting {
            inner,
            target: Target::Account(Arc::from([Arc::clone(counters)])),
        }
    }

    /// Connections of the shared plain pools, counted under the accounts `map` names for
    /// their authority.
    pub(crate) fn shared(inner: C, map: Arc<ArcSwap<ByAuthority>>) -> Self {
        Counting {
            inner,
            target: Target::Shared(map),
        }
    }

    fn gauges(&self, uri: &Uri) -> Option<Gauges> {
        match &self.target {
            Target::Account(gauges) => Some(Arc::clone(gauges)),
            Target::Shared(map) => map.load().0.get(uri.authority()?).cloned(),
        }
    }
}

impl<C> tower_service::Service<Uri> for Counting<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Unpin,
{
    type Response = Counted<C::Response>;
    type Error = C::Error;
    type Future = Connecting<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let gauges = self.gauges(&uri);
        Connecting {
            inner: self.inner.call(uri),
            gauges,
        }
    }
}

/// A connection being made; counted once made.
pub(crate) struct Connecting<F> {
    inner: F,
    gauges: Option<Gauges>,
}

impl<F, T, E> Future for Connecting<F>
where
    F: Future<Output = Result<T, E>> + Unpin,
{
    type Output = Result<Counted<T>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let io = std::task::ready!(Pin::new(&mut this.inner).poll(cx))?;
        Poll::Ready(Ok(Counted::new(io, this.gauges.take())))
    }
}

/// An upstream connection, counted in its accounts' gauges while it lives.
pub(crate) struct Counted<T> {
    io: T,
    gauges: Option<Gauges>,
}

impl<T> Counted<T> {
    fn new(io: T, gauges: Option<Gauges>) -> Self {
        for g in gauges.iter().flat_map(|g| g.iter()) {
            g.connection_opened();
        }
        Counted { io, gauges }
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        for g in self.gauges.iter().flat_map(|g| g.iter()) {
            g.connection_closed();
        }
    }
}

impl<T: Connection> Connection for Counted<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read + Unpin> Read for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
