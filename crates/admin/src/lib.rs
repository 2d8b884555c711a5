//! pairgate's admin API: authenticated JSON endpoints to see and steer tenants and regions,
//! reload the config and read events; Prometheus metrics; the Azure Monitor service-health
//! receiver.
//!
//! Invariants:
//! - every `/v1` call needs the bearer token (compared in constant time); only `/healthz`,
//!   `/readyz` and `/metrics` are open, and only `/v1/alerts/azure-monitor` also accepts the
//!   token as a query parameter;
//! - the admin API never writes failover state itself: it sends commands to the controller,
//!   the single writer.

pub mod alerts;
mod api;
pub mod auth;
pub mod process;
pub mod prometheus;

pub use api::{
    AdminState, BoxFuture, FleetWriteError, FleetWrites, ReloadRejected, Reloaded, Reloader,
    ServicesSeen, serve,
};
pub use process::BuildInfo;
