//! [`EtcdError`]: what an etcd call can fail with.

/// gRPC status code `NOT_FOUND` (etcd: lease not found).
pub const CODE_NOT_FOUND: i32 = 5;

/// An etcd call's failure.
///
/// Transport problems are [`EtcdError::Unavailable`] or [`EtcdError::Timeout`]; answers etcd gave
/// are [`EtcdError::Status`] (the gRPC status the JSON gateway forwards) or, for a watch,
/// [`EtcdError::Compacted`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint could be reached, or the connection broke before the answer was complete
    /// (for a watch: the stream ended). The caller may retry; a write may or may not have been
    /// applied when the connection broke after the request was sent.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// The call did not complete within the client's timeout.
    #[error("etcd call timed out")]
    Timeout,
    /// A watch asked for revisions that compaction has removed: resync with a fresh read
    /// (`get_prefix`) and watch from its header revision + 1.
    #[error("etcd revision compacted (compact revision {compact_revision})")]
    Compacted {
        /// The oldest revision still available is `compact_revision`.
        compact_revision: i64,
    },
    /// etcd answered something this client does not understand.
    #[error("etcd protocol error: {0}")]
    Protocol(String),
    /// etcd refused the call with a gRPC status (for example `5` = lease not found).
    #[error("etcd error (code {code}): {message}")]
    Status {
        /// The gRPC status code (see [`CODE_NOT_FOUND`]).
        code: i32,
        /// etcd's message, for example `etcdserver: requested lease not found`.
        message: String,
    },
    /// An endpoint given to [`crate::Etcd::new`] is not a usable `http://host:port` URL.
    #[error("invalid etcd endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl EtcdError {
    /// True for etcd's `NOT_FOUND` status: an unknown or expired lease.
    pub fn is_not_found(&self) -> bool {
        matches!(self, EtcdError::Status { code, .. } if *code == CODE_NOT_FOUND)
    }
}
