//! Fleet mode: replicas share config, pins, region states and failover decisions through etcd.
//!
//! The crate is a **pure core** and a thin **IO shell**. The core ([`schema`], [`votes`],
//! [`view`]) does no IO and reads no clock: keys and values in, [`Effect`]s out, unit-tested
//! without etcd. The shell ([`member`]) keeps the lease, reads then watches the prefix, writes,
//! and carries the effects out in order; [`objects`] is `pairgate cluster import`/`export`
//! and the composition of the fleet's objects with a replica's local file.
//!
//! Keys under the prefix (default `/pairgate/`, see [`Key`]):
//! - `config/region/NAME`, `config/account/NAME`, `config/tenant/NAME`: one TOML object each;
//!   they replace the local file's objects;
//! - `pins/TENANT`, `regions/REGION`: operator overrides, written with a revision check;
//! - `replicas/NAME`: presence, under this replica's lease;
//! - `heartbeat/NAME`: a counter this replica bumps every `lease_ttl / 3` and expects back on
//!   its own watch before the next bump (a silent watch is restarted), under its lease;
//! - `health/ACCOUNT/REPLICA`: each prober's verdict, under its lease;
//! - `decisions/TENANT`: [`Decision`] `{side, reject, epoch, cause, by}`, written only by
//!   compare-and-swap;
//! - `events/REPLICA/SEQ`: what each replica did (bounded per replica).
//!
//! Every replica turns the health votes into a fleet verdict per account (a majority of the
//! replicas assigned to probe it), feeds that verdict to its engine, and sends the engine's
//! transitions as proposals; the first replica to commit a decision with the next epoch wins,
//! and every replica adopts committed decisions from its watch, so all serve the same side at
//! the same epoch. A replica whose own verdict differs from the fleet's reports it (once per
//! change) instead of acting alone. Cut off from etcd, a replica keeps serving its last
//! decisions; with `isolated_failover = "act"` it decides alone until etcd is back, then
//! resyncs.
//!
//! Non-goals: talking etcd's protocol (`pairgate-cluster` does), parsing or validating config
//! (the binary's reloader composes the fleet's objects with its file and validates the result),
//! deciding failover (the controller's engine does; the fleet commits and spreads its choices).
//!
//! Invariants: the core never touches etcd, a clock or the controller; decisions, pins and
//! region states reach the controller in the order of their etcd revisions (one channel,
//! sent with the view locked, older revisions of a key dropped); the member's one task is
//! returned to the caller to own, and it spawns none.

pub mod member;
pub mod objects;
pub mod schema;
pub mod view;
pub mod votes;

pub use member::{Fleet, Parts, Reload, connect};
pub use objects::{ObjectsError, compose, export, import};
pub use schema::{Decision, Key, Pin, RegionState};
pub use view::{Effect, View};
