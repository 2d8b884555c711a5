//! The controller: the single writer of failover state. It owns the pure [`Engine`], applies
//! verdicts (and later operator commands) to it, and publishes each transition with one store
//! into the tenant's [`ActiveSlot`](pairgate_routing::ActiveSlot).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use pairgate_config::{BothDown as ConfBothDown, Config, Failback as ConfFailback};
use pairgate_failover::{
    AccountDef, BothDown, Cause, Engine, Failback, Health, Policy, RegionDef, TenantDef, Transition,
};
use pairgate_routing::{Active, RouteTable};
use tokio::sync::{mpsc, oneshot};

use crate::events::{CauseInfo, EventKind, EventLog};
use crate::monitor::Verdict;

/// Transitions in one batch above which each one is logged at debug level and only a summary
/// at info: a region move of 100k tenants must not flood the log.
const LOG_EACH_UP_TO: usize = 64;

/// What the controller is asked to do.
#[derive(Debug)]
pub enum Command {
    /// A prober's verdict changed.
    Verdict(Verdict),
    /// Read one tenant's state.
    Tenant {
        /// Tenant name.
        name: String,
        /// Where the answer goes.
        reply: oneshot::Sender<Option<TenantView>>,
    },
}

/// One tenant as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantView {
    /// Tenant name.
    pub name: Arc<str>,
    /// The engine's state (side, reject, generation, mode).
    pub state: pairgate_failover::TenantState,
    /// Primary account name and health.
    pub primary: (Arc<str>, Health),
    /// Secondary account name and health, if any.
    pub secondary: Option<(Arc<str>, Health)>,
    /// When an automatic failback is due, if one is pending.
    pub pending_failback_in: Option<std::time::Duration>,
}

/// Sends commands to the controller task.
#[derive(Clone)]
pub struct ControlHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl ControlHandle {
    /// The raw command channel (probers report through it).
    pub fn sender(&self) -> mpsc::UnboundedSender<Command> {
        self.tx.clone()
    }

    /// One tenant's current state, or `None` for an unknown tenant (or a stopped controller).
    pub async fn tenant(&self, name: &str) -> Option<TenantView> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Tenant {
                name: name.to_owned(),
                reply,
            })
            .ok()?;
        rx.await.ok().flatten()
    }
}

/// The controller task's state.
pub struct Controller {
    engine: Engine,
    table: Arc<RouteTable>,
    events: Arc<EventLog>,
    tenant_index: HashMap<Arc<str>, usize>,
}

impl Controller {
    /// A controller for `config`, compiled as `table`; every tenant starts on its primary with
    /// every account's health unknown.
    pub fn new(config: &Config, table: Arc<RouteTable>, events: Arc<EventLog>) -> Controller {
        let (regions, accounts, tenants) = defs(config, &table);
        let engine = Engine::new(
            regions,
            accounts,
            tenants,
            config.failover.region_outage_ratio,
            Instant::now(),
        );
        let tenant_index = table
            .tenants()
            .iter()
            .enumerate()
            .map(|(i, t)| (Arc::clone(&t.name), i))
            .collect();
        Controller {
            engine,
            table,
            events,
            tenant_index,
        }
    }

    /// Starts the controller task; it runs until every [`ControlHandle`] and prober is gone.
    pub fn spawn(
        self,
        tx: mpsc::UnboundedSender<Command>,
        rx: mpsc::UnboundedReceiver<Command>,
    ) -> (ControlHandle, tokio::task::JoinHandle<()>) {
        let task = tokio::spawn(self.run(rx));
        (ControlHandle { tx }, task)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let command = match self.engine.next_deadline() {
                Some(deadline) => {
                    tokio::select! {
                        command = rx.recv() => command,
                        () = tokio::time::sleep_until(deadline.into()) => {
                            let transitions = self.engine.tick(Instant::now());
                            self.publish(&transitions);
                            continue;
                        }
                    }
                }
                None => rx.recv().await,
            };
            let Some(command) = command else { break };
            self.handle(command);
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Verdict(verdict) => self.apply_verdict(&verdict),
            Command::Tenant { name, reply } => {
                let _ = reply.send(self.view(&name));
            }
        }
    }

    fn apply_verdict(&mut self, verdict: &Verdict) {
        let Some(id) = self.table.account_id_by_key(&verdict.key) else {
            return; // a prober of an account that a reload removed
        };
        let account = self.table.account(id);
        account.health.store(verdict.health);
        tracing::info!(
            account = &*account.name,
            health = verdict.health.as_str(),
            reason = verdict.reason,
            "account health changed"
        );
        self.events.push(EventKind::AccountHealth {
            account: Arc::clone(&account.name),
            health: verdict.health,
            reason: verdict.reason,
        });
        let transitions = self
            .engine
            .set_health(id.index(), verdict.health, Instant::now());
        self.publish(&transitions);
    }

    /// Stores each transition into its tenant's slot (one atomic store each), then logs it.
    fn publish(&self, transitions: &[Transition]) {
        if transitions.is_empty() {
            return;
        }
        for t in transitions {
            self.table.tenants()[t.tenant].slot.store(Active {
                side: t.to,
                reject: t.reject,
                generation: t.generation,
            });
        }
        let quiet = transitions.len() > LOG_EACH_UP_TO;
        let events = transitions.iter().map(|t| {
            let tenant = &self.table.tenants()[t.tenant];
            let cause = self.cause_info(t.cause);
            if quiet {
                tracing::debug!(
                    tenant = &*tenant.name,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    reject = t.reject,
                    cause = cause.label,
                    generation = t.generation,
                    "tenant moved"
                );
            } else {
                tracing::info!(
                    tenant = &*tenant.name,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    reject = t.reject,
                    cause = cause.label,
                    region = cause.region.as_deref(),
                    generation = t.generation,
                    "tenant moved"
                );
            }
            EventKind::Transition {
                tenant: Arc::clone(&tenant.name),
                from: t.from,
                to: t.to,
                reject: t.reject,
                cause,
                generation: t.generation,
            }
        });
        self.events.extend(events);
        if quiet {
            tracing::info!(
                tenants = transitions.len(),
                "batch of tenant transitions published"
            );
        }
    }

    fn cause_info(&self, cause: Cause) -> CauseInfo {
        let region = |r: usize| Some(Arc::clone(&self.table.regions()[r].name));
        let (label, region) = match cause {
            Cause::PrimaryUnhealthy => ("primary_unhealthy", None),
            Cause::RegionOutage { region: r } => ("region_outage", region(r)),
            Cause::RegionMarkedDown { region: r } => ("region_marked_down", region(r)),
            Cause::SecondaryUnhealthy => ("secondary_unhealthy", None),
            Cause::Failback => ("failback", None),
            Cause::Pinned => ("pinned", None),
            Cause::Unpinned => ("unpinned", None),
            Cause::ManualFailback => ("manual_failback", None),
            Cause::BothDown => ("both_down", None),
            Cause::Recovered => ("recovered", None),
            Cause::Reconfigured => ("reconfigured", None),
        };
        CauseInfo { label, region }
    }

    fn view(&self, name: &str) -> Option<TenantView> {
        let &i = self.tenant_index.get(name)?;
        let tenant = &self.table.tenants()[i];
        let account = |id: pairgate_routing::AccountId| {
            (
                Arc::clone(&self.table.account(id).name),
                self.engine.account_health(id.index()),
            )
        };
        let now = Instant::now();
        Some(TenantView {
            name: Arc::clone(&tenant.name),
            state: self.engine.tenant(i),
            primary: account(tenant.primary),
            secondary: tenant.secondary.map(account),
            pending_failback_in: self
                .engine
                .pending_failback(i)
                .map(|at| at.saturating_duration_since(now)),
        })
    }
}

/// The engine's view of a config: regions, accounts by identity, tenants with their policies.
fn defs(config: &Config, table: &RouteTable) -> (Vec<RegionDef>, Vec<AccountDef>, Vec<TenantDef>) {
    let regions = config
        .regions
        .iter()
        .map(|r| RegionDef {
            name: r.name.clone(),
        })
        .collect();
    let accounts = table
        .accounts()
        .iter()
        .map(|a| AccountDef {
            key: a.key.to_string(),
            region: a.region.index(),
        })
        .collect();
    let tenants = config
        .tenants
        .iter()
        .map(|t| TenantDef {
            name: t.name.clone(),
            primary: t.primary,
            secondary: t.secondary,
            policy: Policy {
                failback: match t.failover.failback {
                    ConfFailback::Auto => Failback::Auto,
                    ConfFailback::Manual => Failback::Manual,
                },
                hold_down: t.failover.hold_down,
                both_down: match t.failover.both_down {
                    ConfBothDown::Stay => BothDown::Stay,
                    ConfBothDown::Reject => BothDown::Reject,
                },
                region_outage_ratio: t.failover.region_outage_ratio,
            },
        })
        .collect();
    (regions, accounts, tenants)
}
