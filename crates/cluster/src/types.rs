//! The values etcd calls return.

use std::fmt;

/// A key and its value as stored in etcd, with etcd's bookkeeping.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key (pairgate only writes UTF-8 keys; a non-UTF-8 key is a protocol error).
    pub key: String,
    /// The value; empty for a delete event.
    pub value: Vec<u8>,
    /// The revision of the put that created the key (since its last delete).
    pub create_revision: i64,
    /// The revision of the last change to the key; the compare-and-swap token.
    pub mod_revision: i64,
    /// How many times the key was written since it was created (1 after the first put).
    pub version: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are usually JSON; print them as text when they are, as bytes otherwise.
        let mut d = f.debug_struct("KeyValue");
        d.field("key", &self.key);
        match std::str::from_utf8(&self.value) {
            Ok(text) => d.field("value", &text),
            Err(_) => d.field("value", &self.value),
        };
        d.field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .field("lease", &self.lease)
            .finish()
    }
}

/// What a [`WatchEvent`] did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or overwritten.
    Put,
    /// The key was deleted (explicitly or because its lease ended).
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put: the key as written. For a delete: the key and the `mod_revision` of the
    /// delete; the other fields are zero and the value empty.
    pub kv: KeyValue,
}

/// The answer of a compare-and-swap ([`crate::Etcd::put_if_revision`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The value was written at `revision` (the key's new `mod_revision`).
    Written {
        /// The revision of the write.
        revision: i64,
    },
    /// The key's `mod_revision` was not the expected one; nothing was written.
    Conflict {
        /// The key as it is now (`None`: it does not exist).
        current: Option<KeyValue>,
    },
}

/// The answer of [`crate::Etcd::status`]: the member that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The store's current revision.
    pub revision: i64,
    /// The member ID of the cluster leader (0: no leader known).
    pub leader: u64,
    /// The member ID of the member that answered.
    pub member_id: u64,
    /// The server version, for example `3.4.23`.
    pub version: String,
}
