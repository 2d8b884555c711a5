//! Health checking and the failover controller.
//!
//! [`Monitor`] runs one prober per distinct account (however many tenants share it): HTTP or TCP
//! probes on a jittered interval, a faster one while a verdict is in transition, and passive
//! failures from live traffic that count toward `fall` at once and pull the next probe forward.
//! Probers report verdict *changes* to the [`Controller`], the single writer of failover state:
//! it feeds the pure [`pairgate_failover::Engine`], stores each transition into the tenant's
//! `ActiveSlot` with one atomic store, updates the account's `HealthCell`, and appends to the
//! bounded [`EventLog`].
//!
//! Invariants:
//! - recovery comes only from active probes; live traffic can only report failures (and reset
//!   the count of consecutive 5xx that ejects an account);
//! - one task writes failover state; the data plane only loads it;
//! - this crate never depends on the data plane (`pairgate-proxy`): the wiring crate forwards
//!   the proxy's upstream outcomes to [`Monitor::passive_failure`].

pub mod control;
pub mod events;
pub mod monitor;
pub mod probe;
pub mod state;

pub use control::{
    AccountView, Command, ControlError, ControlHandle, Controller, ControllerStats, FleetLink,
    Holder, Proposal, RegionChange, RegionView, TenantView, defs as engine_defs,
};
pub use events::{CauseInfo, Event, EventKind, EventLog};
pub use monitor::{Monitor, PASSIVE_5XX, PassiveHint, ProbeStats, Verdict};
