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

impl Cause {
    /// How events, logs and metrics name this cause.
    pub fn label(&self) -> CauseLabel {
        match self {
            Cause::PrimaryUnhealthy => CauseLabel::PrimaryUnhealthy,
            Cause::RegionOutage { .. } => CauseLabel::RegionOutage,
            Cause::RegionMarkedDown { .. } => CauseLabel::RegionMarkedDown,
            Cause::SecondaryUnhealthy => CauseLabel::SecondaryUnhealthy,
            Cause::Failback => CauseLabel::Failback,
            Cause::Pinned => CauseLabel::Pinned,
            Cause::Unpinned => CauseLabel::Unpinned,
            Cause::ManualFailback => CauseLabel::ManualFailback,
            Cause::BothDown => CauseLabel::BothDown,
            Cause::Recovered => CauseLabel::Recovered,
            Cause::Reconfigured => CauseLabel::Reconfigured,
            Cause::Fleet => CauseLabel::Fleet,
        }
    }
}

/// Defines [`CauseLabel`] from one list: each variant with its spelling.
macro_rules! cause_labels {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)+) => {
        /// A [`Cause`] without its details, as events, logs, metrics and fleet decisions name it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CauseLabel {
            $($(#[$doc])* $variant,)+
        }

        impl CauseLabel {
            /// Every label.
            pub const ALL: &[CauseLabel] = &[$(CauseLabel::$variant,)+];

            /// The label's spelling (`primary_unhealthy`, ...).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(CauseLabel::$variant => $text,)+
                }
            }
        }
    };
}

cause_labels! {
    /// [`Cause::PrimaryUnhealthy`].
    PrimaryUnhealthy => "primary_unhealthy",
    /// [`Cause::PrimaryUnhealthy`] or [`Cause::SecondaryUnhealthy`] when the account was ejected
    /// for consecutive live 5xx (the caller's policy; the engine never gives this label).
    PassiveEjection => "passive_5xx",
    /// [`Cause::RegionOutage`].
    RegionOutage => "region_outage",
    /// [`Cause::RegionMarkedDown`].
    RegionMarkedDown => "region_marked_down",
    /// [`Cause::SecondaryUnhealthy`].
    SecondaryUnhealthy => "secondary_unhealthy",
    /// [`Cause::Failback`].
    Failback => "failback",
    /// [`Cause::Pinned`].
    Pinned => "pinned",
    /// [`Cause::Unpinned`].
    Unpinned => "unpinned",
    /// [`Cause::ManualFailback`].
    ManualFailback => "manual_failback",
    /// [`Cause::BothDown`].
    BothDown => "both_down",
    /// [`Cause::Recovered`].
    Recovered => "recovered",
    /// [`Cause::Reconfigured`].
    Reconfigured => "reconfigured",
    /// [`Cause::Fleet`].
    Fleet => "fleet_decision",
}

impl std::fmt::Display for CauseLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A label that names no [`CauseLabel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCause;

impl std::fmt::Display for UnknownCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unknown cause label")
    }
}

impl std::error::Error for UnknownCause {}

impl std::str::FromStr for CauseLabel {
    type Err = UnknownCause;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CauseLabel::ALL
            .iter()
            .copied()
            .find(|label| label.as_str() == text)
            .ok_or(UnknownCause)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_label_and_every_label_parses_back() {
        let cases = [
            (Cause::PrimaryUnhealthy, "primary_unhealthy"),
            (Cause::RegionOutage { region: 3 }, "region_outage"),
            (Cause::RegionMarkedDown { region: 1 }, "region_marked_down"),
            (Cause::SecondaryUnhealthy, "secondary_unhealthy"),
            (Cause::Failback, "failback"),
            (Cause::Pinned, "pinned"),
            (Cause::Unpinned, "unpinned"),
            (Cause::ManualFailback, "manual_failback"),
            (Cause::BothDown, "both_down"),
            (Cause::Recovered, "recovered"),
            (Cause::Reconfigured, "reconfigured"),
            (Cause::Fleet, "fleet_decision"),
        ];
        for (cause, text) in cases {
            assert_eq!(cause.label().as_str(), text, "{cause:?}");
            assert_eq!(text.parse::<CauseLabel>(), Ok(cause.label()), "{text}");
        }
        assert_eq!("passive_5xx".parse(), Ok(CauseLabel::PassiveEjection));
        for &label in CauseLabel::ALL {
            assert_eq!(label.as_str().parse(), Ok(label));
            assert_eq!(label.to_string(), label.as_str());
        }
        assert_eq!(CauseLabel::ALL.len(), cases.len() + 1);
        for unknown in ["", "Pinned", "pinned ", "fleet"] {
            assert_eq!(
                unknown.parse::<CauseLabel>(),
                Err(UnknownCause),
                "{unknown:?}"
            );
        }
    }
}
