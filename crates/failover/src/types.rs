//! The engine's vocabulary: configuration it is built from, inputs it takes, state it reports.

use std::time::{Duration, Instant};

/// Which of a tenant's two accounts serves its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The tenant's home account.
    Primary,
    /// The account in the paired region.
    Secondary,
}

impl Side {
    /// `"primary"` or `"secondary"`, as logs and the admin API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Secondary => "secondary",
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Primary => Side::Secondary,
            Side::Secondary => Side::Primary,
        }
    }
}

/// An account's health verdict, as produced by a [`HealthCounter`](crate::HealthCounter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// No verdict yet: neither usable nor bad.
    Unknown,
    /// Enough consecutive successes.
    Healthy,
    /// Enough consecutive failures.
    Unhealthy,
}

impl Health {
    /// `"unknown"`, `"healthy"` or `"unhealthy"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// How a tenant's side is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The decision rules in the crate docs choose the side.
    Auto,
    /// An operator pinned the tenant to this side; it never moves by itself.
    Pinned(Side),
}

/// The operator's override for a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegionOverride {
    /// The region is down only if the outage ratio says so.
    Auto,
    /// The region is down, whatever its accounts' health.
    Down,
}

/// What happens once the primary is usable again while a tenant is on its secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failback {
    /// Return to the primary once it has been usable for [`Policy::hold_down`].
    Auto,
    /// Stay on the secondary until [`Engine::request_failback`](crate::Engine::request_failback)
    /// or a pin.
    Manual,
}

/// What happens when the active side is bad and the other side is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BothDown {
    /// Keep the active side and keep sending it requests.
    Stay,
    /// Keep the active side but answer 503 ([`TenantState::reject`]).
    Reject,
}

/// A tenant's failover policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Automatic or manual failback.
    pub failback: Failback,
    /// Uninterrupted usability the primary needs before an automatic failback.
    pub hold_down: Duration,
    /// Stay or reject when no side is usable.
    pub both_down: BothDown,
    /// For this tenant, a region counts as down when more than this share of its accounts, and
    /// at least two of them, are unhealthy (all of them at 1). Expected within (0, 1]; a NaN
    /// never matches.
    pub region_outage_ratio: f64,
}

impl Default for Policy {
    /// The config defaults: auto failback, 30 s hold-down, stay, ratio 0.5.
    fn default() -> Self {
        Policy {
            failback: Failback::Auto,
            hold_down: Duration::from_secs(30),
            both_down: BothDown::Stay,
            region_outage_ratio: 0.5,
        }
    }
}

/// A region, as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionDef {
    /// Unique name; the identity its override is carried by on rebuild.
    pub name: String,
}

/// An account, as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDef {
    /// Identity its health is carried by on rebuild (account name plus endpoint).
    pub key: String,
    /// Index of its region in the region definitions.
    pub region: usize,
}

/// A tenant, as the engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantDef {
    /// Unique name; the identity its state is carried by on rebuild.
    pub name: String,
    /// Index of its primary account.
    pub primary: usize,
    /// Index of its secondary account, if it has failover.
    pub secondary: Option<usize>,
    /// Its failover policy.
    pub policy: Policy,
}

/// What the data plane needs to know about a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantState {
    /// The side requests go to.
    pub side: Side,
    /// [`BothDown::Reject`] is in force: answer 503 instead of forwarding.
    pub reject: bool,
    /// Incremented by exactly one on every change of (`side`, `reject`).
    pub generation: u64,
    /// Automatic or pinned.
    pub mode: Mode,
}

/// Why a tenant's (side, reject) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The primary became bad; moved to a usable secondary.
    PrimaryUnhealthy,
    /// The primary's region reached the tenant's outage ratio; moved to a usable secondary.
    RegionOutage {
        /// Index of the region.
        region: usize,
    },
    /// The operator marked the primary's region down; moved to a usable secondary.
    RegionMarkedDown {
        /// Index of the region.
        region: usize,
    },
    /// The secondary became bad while active; moved back to a usable primary at once.
    SecondaryUnhealthy,
    /// Automatic failback after the hold-down.
    Failback,
    /// An operator pin.
    Pinned,
    /// An operator unpin, re-evaluated by the automatic rules.
    Unpinned,
    /// [`Engine::request_failback`](crate::Engine::request_failback).
    ManualFailback,
    /// The active side is bad and the other is not usable; reject is now in force.
    BothDown,
    /// Reject was lifted without a move: the active side is no longer bad.
    Recovered,
    /// A rebuild changed the tenant's accounts; it restarts on its primary.
    Reconfigured,
    /// Fleet mode: the fleet's committed decision was adopted.
    Fleet,
}

/// One change of a tenant's (side, reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transition {
    /// Index of the tenant.
    pub tenant: usize,
    /// Side before.
    pub from: Side,
    /// Side after (equal to `from` when only `reject` changed).
    pub to: Side,
    /// Reject after.
    pub reject: bool,
    /// Why.
    pub cause: Cause,
    /// The tenant's generation after this transition.
    pub generation: u64,
    /// The `now` of the input that caused it.
    pub at: Instant,
}
