//! The command protocol: what the controller is asked, how it answers, and the handle that asks.

use std::sync::Arc;

use pairgate_config::Config;
use pairgate_failover::{Health, Mode, Side};
use pairgate_routing::RouteTable;
use tokio::sync::{mpsc, oneshot};

use super::views::{AccountView, ControllerStats, RegionView, TenantView};
use crate::monitor::Verdict;
pub use crate::state::Holder;

/// What the controller is asked to do. Every command is answered through its `reply`.
#[derive(Debug)]
pub enum Command {
    /// A prober's verdict changed.
    Verdict(Verdict),
    /// Read one tenant's state and recent history.
    Tenant {
        /// Tenant name.
        name: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Option<TenantView>>,
    },
    /// A page of tenants in config order, after the tenant named `after`.
    Tenants {
        /// Cursor: the last name of the previous page.
        after: Option<String>,
        /// Page size.
        limit: usize,
        /// Where the answer goes: the page, and whether more follow.
        reply: oneshot::Sender<(Vec<TenantView>, bool)>,
    },
    /// Pin a tenant to a side, or unpin it (`Mode::Auto`).
    SetMode {
        /// Tenant name.
        tenant: String,
        /// The new mode.
        mode: Mode,
        /// Why (kept with the override and in the event).
        reason: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<TenantView, ControlError>>,
    },
    /// Ask a tenant on its secondary to return to its primary now (manual failback).
    Failback {
        /// Tenant name.
        tenant: String,
        /// Why.
        reason: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<TenantView, ControlError>>,
    },
    /// Hold a region down, or release a hold.
    SetRegion {
        /// Region name.
        region: String,
        /// Which hold is taken or released.
        change: RegionChange,
        /// Why (an alert's tracking id, an operator's note).
        reason: String,
        /// Who: `operator` or `azure-monitor`.
        source: &'static str,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<RegionView, ControlError>>,
    },
    /// Every region.
    Regions {
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<RegionView>>,
    },
    /// Hold an account down (it counts as unhealthy whatever its probes say), or release a
    /// hold.
    SetAccount {
        /// Account name.
        account: String,
        /// Which hold is taken or released.
        change: RegionChange,
        /// Why (an alert's tracking id and subscription, an operator's note).
        reason: String,
        /// Who: `operator` or `azure-monitor`.
        source: &'static str,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<AccountView, ControlError>>,
    },
    /// Every account's holds.
    Accounts {
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<AccountView>>,
    },
    /// Adopt a new config and its compiled table (the table is published by the caller after
    /// this answers, so slots are set before any request can see the new table).
    Reload {
        /// The new config.
        config: Arc<Config>,
        /// Its compiled table (slots and health cells carried from the current one).
        table: Arc<RouteTable>,
        /// Where the answer goes: the number of transitions the reload caused.
        reply: oneshot::Sender<usize>,
    },
    /// Fleet mode: the fleet's verdict on an account (majority of reporting replicas).
    FleetVerdict {
        /// Account name.
        account: String,
        /// The fleet's verdict.
        health: Health,
    },
    /// Fleet mode: a decision the fleet committed; every replica adopts it.
    Adopt {
        /// Tenant name.
        tenant: String,
        /// Committed side.
        side: Side,
        /// Committed reject flag.
        reject: bool,
        /// The decision's epoch (becomes the tenant's generation).
        epoch: u64,
        /// The cause label the proposing replica gave.
        cause: String,
    },
    /// Counters and gauges for `/metrics`.
    Stats {
        /// How many tenants to list individually.
        tenant_limit: usize,
        /// Where the answer goes.
        reply: oneshot::Sender<ControllerStats>,
    },
}

/// What a [`Command::SetRegion`] does to a region's holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionChange {
    /// Take (or renew) this holder's hold: the region is down.
    Hold(Holder),
    /// Release this holder's hold; the region returns to auto when no other hold remains.
    Release(Holder),
    /// Release every hold (the operator's way out of an alert that never resolves).
    ReleaseAll,
}

/// A decision the local engine wants, to be committed by the fleet (fleet mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Tenant name.
    pub tenant: Arc<str>,
    /// Proposed side.
    pub side: Side,
    /// Proposed reject flag.
    pub reject: bool,
    /// Why (cause label).
    pub cause: &'static str,
}

/// The controller's link to the fleet (fleet mode): where local verdicts and proposals go.
pub struct FleetLink {
    /// This replica's own verdict changes, by account name.
    pub local_verdicts: mpsc::UnboundedSender<(Arc<str>, Health)>,
    /// Transitions the engine wants; the fleet commits or refuses them.
    pub proposals: mpsc::UnboundedSender<Proposal>,
}

/// Why an operator command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No tenant by that name.
    #[error("unknown tenant")]
    UnknownTenant,
    /// No region by that name.
    #[error("unknown region")]
    UnknownRegion,
    /// No account by that name.
    #[error("unknown account")]
    UnknownAccount,
    /// Pinning to the secondary of a tenant that has none.
    #[error("the tenant has no secondary account")]
    NoSecondary,
    /// The change could not be written to the state file, so it was not applied: it would not
    /// survive a restart.
    #[error("the change could not be saved to the state file and was not applied")]
    NotPersisted,
    /// The controller has stopped.
    #[error("the controller is not running")]
    Stopped,
}

/// Sends commands to the controller task.
#[derive(Clone)]
pub struct ControlHandle {
    pub(super) tx: mpsc::UnboundedSender<Command>,
}

impl ControlHandle {
    /// The raw command channel (probers report through it).
    pub fn sender(&self) -> mpsc::UnboundedSender<Command> {
        self.tx.clone()
    }

    /// One tenant's current state, or `None` for an unknown tenant (or a stopped controller).
    pub async fn tenant(&self, name: &str) -> Option<TenantView> {
        self.ask(|reply| Command::Tenant {
            name: name.to_owned(),
            reply,
        })
        .await
        .flatten()
    }

    /// A page of tenants after `after`, and whether more follow.
    pub async fn tenants(&self, after: Option<String>, limit: usize) -> (Vec<TenantView>, bool) {
        self.ask(|reply| Command::Tenants {
            after,
            limit,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    /// Pins or unpins a tenant.
    pub async fn set_mode(
        &self,
        tenant: &str,
        mode: Mode,
        reason: &str,
    ) -> Result<TenantView, ControlError> {
        self.ask(|reply| Command::SetMode {
            tenant: tenant.to_owned(),
            mode,
            reason: reason.to_owned(),
            reply,
        })
        .await
        .unwrap_or(Err(ControlError::Stopped))
    }

    /// Manual failback of a tenant to its primary.
    pub async fn failback(&self, tenant: &str, reason: &str) -> Result<TenantView, ControlError> {
        self.ask(|reply| Command::Failback {
            tenant: tenant.to_owned(),
            reason: reason.to_owned(),
            reply,
        })
        .await
        .unwrap_or(Err(ControlError::Stopped))
    }

    /// Takes or releases a hold on a region.
    pub async fn set_region(
        &self,
        region: &str,
        change: RegionChange,
        reason: &str,
        source: &'static str,
    ) -> Result<RegionView, ControlError> {
        self.ask(|reply| Command::SetRegion {
            region: region.to_owned(),
            change,
            reason: reason.to_owned(),
            source,
            reply,
        })
        .await
        .unwrap_or(Err(ControlError::Stopped))
    }

    /// Takes or releases a hold on `account` (by name).
    pub async fn set_account(
        &self,
        account: &str,
        change: RegionChange,
        reason: &str,
        source: &'static str,
    ) -> Result<AccountView, ControlError> {
        self.ask(|reply| Command::SetAccount {
            account: account.to_owned(),
            change,
            reason: reason.to_owned(),
            source,
            reply,
        })
        .await
        .unwrap_or(Err(ControlError::Stopped))
    }

    /// Every account, with its holds.
    pub async fn accounts(&self) -> Vec<AccountView> {
        self.ask(|reply| Command::Accounts { reply })
            .await
            .unwrap_or_default()
    }

    /// Every region.
    pub async fn regions(&self) -> Vec<RegionView> {
        self.ask(|reply| Command::Regions { reply })
            .await
            .unwrap_or_default()
    }

    /// Adopts a new config; returns the number of transitions it caused. Publish `table` to the
    /// data plane only after this returns.
    pub async fn reload(&self, config: Arc<Config>, table: Arc<RouteTable>) -> Option<usize> {
        self.ask(|reply| Command::Reload {
            config,
            table,
            reply,
        })
        .await
    }

    /// Counters and gauges for metrics.
    pub async fn stats(&self, tenant_limit: usize) -> ControllerStats {
        self.ask(|reply| Command::Stats {
            tenant_limit,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(command(reply)).ok()?;
        rx.await.ok()
    }
}
