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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::client::legacy::connect::HttpConnector;
    use tower_service::Service as _;

    /// Bound on every connect (loopback: instant unless something is badly wrong).
    const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    /// Accounts `a` and `b` share `shared`'s authority; `c` has its own.
    fn table(shared: std::net::SocketAddr, other: std::net::SocketAddr) -> RouteTable {
        let toml = format!(
            "[[region]]\nname = \"r\"\n\
             [[account]]\nname = \"a\"\nregion = \"r\"\nurl = \"http://{shared}\"\n\
             [[account]]\nname = \"b\"\nregion = \"r\"\nurl = \"http://{shared}\"\npath_prefix = \"/b\"\n\
             [[account]]\nname = \"c\"\nregion = \"r\"\nurl = \"http://{other}\"\n\
             [[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"a\"\n"
        );
        let loaded = pairgate_config::load(&toml, &|_| None).expect("valid");
        RouteTable::compile(&loaded.config, 1, None).expect("compiles")
    }

    fn open(table: &RouteTable, name: &str) -> u64 {
        table
            .accounts()
            .iter()
            .find(|a| &*a.name == name)
            .expect("account")
            .counters
            .connections_open()
    }

    #[tokio::test]
    async fn a_connection_counts_under_its_authoritys_accounts_while_it_lives() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let other = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let table = table(addr, other.local_addr().expect("addr"));
        let map = Arc::new(ArcSwap::from_pointee(ByAuthority::of(&table)));
        let mut connector = Counting::shared(HttpConnector::new(), map);

        let uri: Uri = format!("http://{addr}/").parse().expect("uri");
        let first = tokio::time::timeout(WAIT, connector.call(uri.clone()))
            .await
            .expect("connects in time")
            .expect("connects");
        let second = tokio::time::timeout(WAIT, connector.call(uri))
            .await
            .expect("connects in time")
            .expect("connects");
        assert_eq!(
            [open(&table, "a"), open(&table, "b"), open(&table, "c")],
            [2, 2, 0],
            "both accounts of the authority count its connections; the other none"
        );
        drop(first);
        assert_eq!(open(&table, "a"), 1);
        drop(second);
        assert_eq!([open(&table, "a"), open(&table, "b")], [0, 0]);
    }

    #[tokio::test]
    async fn an_accounts_own_connector_counts_only_that_account() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let table = table(addr, addr);
        let c = table
            .accounts()
            .iter()
            .find(|a| &*a.name == "c")
            .expect("account");
        let mut connector = Counting::account(HttpConnector::new(), &c.counters);
        let uri: Uri = format!("http://{addr}/").parse().expect("uri");
        let io = tokio::time::timeout(WAIT, connector.call(uri))
            .await
            .expect("connects in time")
            .expect("connects");
        assert_eq!(
            [open(&table, "a"), open(&table, "b"), open(&table, "c")],
            [0, 0, 1]
        );
        drop(io);
        assert_eq!(open(&table, "c"), 0);
    }
}
