//! The controller: the single writer of failover state. It owns the pure
//! [`Engine`](pairgate_failover::Engine), applies verdicts and operator commands to it, and
//! publishes each transition with one store into the tenant's
//! [`ActiveSlot`](pairgate_routing::ActiveSlot).
//!
//! - [`protocol`]: the commands, their errors and the [`ControlHandle`] that sends them;
//! - `actor`: the controller's state, its task loop and command dispatch;
//! - `overrides`: operator pins and region holds, restored and persisted;
//! - [`persist`]: the state file written on a blocking thread, one coalesced write at a time;
//! - `publish`: transitions to slots (or to fleet proposals), fleet adoption;
//! - [`views`]: read models for the admin API and metrics;
//! - [`defs`]: config-to-engine translation.

mod actor;
pub mod defs;
mod overrides;
pub mod persist;
pub mod protocol;
mod publish;
pub mod views;

pub use actor::Controller;
pub use defs::defs;
pub use persist::{StateWriter, file_writer};
pub use protocol::{
    Command, ControlError, ControlHandle, FleetLink, Holder, Proposal, RegionChange,
};
pub use views::{AccountView, ControllerStats, RegionView, TenantView};

#[cfg(test)]
mod tests;
