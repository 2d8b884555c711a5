//! `pairgate-cluster`: the etcd v3 client behind fleet mode, where several pairgate replicas
//! share config, pins and failover decisions through one etcd cluster.
//!
//! [`Etcd`] speaks etcd's built-in JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`,
//! `/v3/watch`, ...) over plain HTTP/1.1 with the workspace's hyper client, rather than gRPC:
//! one HTTP stack in the tree, and nothing generated at build time. It offers reads (one key or
//! a prefix, with the revision read at), writes, compare-and-swap on `mod_revision`
//! ([`Etcd::put_if_revision`]), leases, and prefix watches that resume from a revision.
//!
//! Non-goals: TLS and authentication to etcd, member management, paging of large ranges, and
//! deciding anything: what the keys mean belongs to the crates that use this one.
//!
//! Invariants:
//! - Every call is bounded by the client's timeout (a watch, until it is established); a dead
//!   endpoint is skipped on a connect failure, and a request that may have reached etcd is never
//!   sent twice.
//! - A watch never ends silently: it ends with an error ([`EtcdError::Unavailable`] or
//!   [`EtcdError::Compacted`]), and the revision it reports with each batch is a safe resume
//!   point.
//! - No IO happens in [`Etcd::new`]; nothing here reads the environment except the `testing`
//!   harness, which looks for the `etcd` binary.
//!
//! The `testing` feature adds [`testing::EtcdServer`], a real single-member etcd for tests.

mod b64;
mod client;
mod error;
mod types;
mod watch;
mod wire;

#[cfg(feature = "testing")]
pub mod testing;

pub use client::Etcd;
pub use error::{CODE_NOT_FOUND, EtcdError};
pub use types::{CasOutcome, EventKind, KeyValue, Status, WatchEvent};
pub use watch::WatchStream;
