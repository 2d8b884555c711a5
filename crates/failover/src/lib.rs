//! The failover decision engine: per tenant, which side (primary or secondary account) is active.
//!
//! [`HealthCounter`] turns probe results into per-account [`Health`] verdicts (rise/fall
//! hysteresis). [`Engine`] takes those verdicts, the operator's region overrides and pins, and the
//! time, and decides each tenant's [`TenantState`]: its side, whether it rejects (503), and a
//! generation the data plane can pack next to the side in one atomic.
//!
//! Non-goals: this crate does no IO, spawns no threads, reads no clock and takes no locks. Time
//! comes in as [`std::time::Instant`] arguments; the caller (the health task) owns the loop,
//! sleeps until [`Engine::next_deadline`], and copies each [`Transition`] into the data plane's
//! slot. It does not decide which probe results count (passive failures, probe-only recovery):
//! that is the caller's policy.
//!
//! Invariants:
//! - every input returns the transitions it caused; a transition is emitted exactly when a
//!   tenant's (side, reject) changes, and then its generation increments by exactly one;
//! - an automatic tenant never moves onto a secondary that is not usable, and is never left on a
//!   bad side while the other side is usable;
//! - an automatic failback never happens before the primary has been usable for `hold_down`;
//! - a pinned tenant never moves by itself;
//! - [`Engine::rebuild`] copies health by identity and never turns an unhealthy account into a
//!   healthy or unknown one;
//! - the engine is deterministic: the same inputs give the same states and transitions.
//!
//! # Decision rules
//!
//! - *usable(account)*: [`Health::Healthy`] and its region is not down. *bad(account)*:
//!   [`Health::Unhealthy`] or its region is down. Unknown is neither. A missing secondary is bad.
//! - *Region down* (for a tenant): the operator's override is [`RegionOverride::Down`], or the
//!   outage is corroborated: at least two accounts of the region are unhealthy
//!   ([`MIN_OUTAGE_ACCOUNTS`]) and unhealthy / all is **more than** the tenant's
//!   [`Policy::region_outage_ratio`] (a strict majority at the default 0.5; all accounts at 1).
//!   So a single unhealthy account (one tenant's revoked key) never takes a region down, and a
//!   one-account region is never down by ratio. [`Engine::region_down`] answers with the
//!   engine's default ratio.
//! - [`Mode::Pinned`]: the tenant is on that side, reject off, even if the side is unusable.
//! - [`Mode::Auto`] on the primary: if the primary is bad and the secondary usable, move
//!   ([`Cause::RegionMarkedDown`] or [`Cause::RegionOutage`] if the primary's region is down,
//!   else [`Cause::PrimaryUnhealthy`]). If the primary is bad and the secondary not usable, stay;
//!   reject if [`BothDown::Reject`] ([`Cause::BothDown`]).
//! - [`Mode::Auto`] on the secondary: if the secondary is bad and the primary usable, move back at
//!   once, whatever the failback policy ([`Cause::SecondaryUnhealthy`]); if the secondary is bad
//!   and the primary not usable, stay, reject per [`BothDown`]. Otherwise, with
//!   [`Failback::Auto`], move back ([`Cause::Failback`]) once the primary is usable and has been
//!   so for [`Policy::hold_down`], measured from the later of the moment it became Healthy and the
//!   moment its region (for this tenant's ratio) last stopped being down. [`Failback::Manual`]
//!   waits for [`Engine::request_failback`] or a pin.
//! - Reject is lifted as soon as the active side is no longer bad ([`Cause::Recovered`]) or the
//!   other side becomes usable (the tenant moves, with the move's cause).
//! - [`Engine::set_mode`] re-evaluates with these rules; a change it causes carries
//!   [`Cause::Pinned`] or [`Cause::Unpinned`].
//!
//! # Cost
//!
//! The engine keeps indices account -> tenants and (region, outage ratio) -> tenants, so an input
//! only evaluates the tenants it can affect, each in O(1) plus O(log p) to keep the pending
//! failback set (p pending failbacks) in sync:
//! - [`Engine::set_health`]: the account's tenants, plus — only when the unhealthy count crosses a
//!   tenant's outage ratio — the tenants with an account in that region and that ratio;
//! - [`Engine::set_region`]: the region's tenants whose down status changed;
//! - [`Engine::tick`]: only the due failbacks; [`Engine::next_deadline`]: O(log p), no scan;
//! - no per-tenant allocation beyond the returned `Vec<Transition>`; a region-wide move of
//!   100 000 tenants is one pass (see the `region_move_of_100k_tenants` test).

mod counter;
mod engine;
mod types;

pub use counter::HealthCounter;
pub use engine::{Engine, MIN_OUTAGE_ACCOUNTS};
pub use types::{
    AccountDef, BothDown, Cause, CauseLabel, Failback, Health, Mode, Policy, RegionDef,
    RegionOverride, Side, TenantDef, TenantState, Transition, UnknownCause,
};
