//! The controller: the single writer of failover state. It owns the pure [`Engine`], applies
//! verdicts and operator commands to it, and publishes each transition with one store
//! into the tenant's [`ActiveSlot`](pairgate_routing::ActiveSlot).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pairgate_config::{BothDown as ConfBothDown, Config, Failback as ConfFailback};
use pairgate_failover::{
    AccountDef, BothDown, Cause, Engine, Failback, Health, Mode, Policy, RegionDef, RegionOverride,
    Side, TenantDef, Transition,
};
use pairgate_routing::{Active, RouteTable};
use tokio::sync::{mpsc, oneshot};

use crate::events::{CauseInfo, EventKind, EventLog};
use crate::monitor::{PASSIVE_5XX, Verdict};
use crate::state::{
    INCIDENT_HOLDER_PREFIX, OPERATOR_HOLDER, Override, PersistedState, now_unix_ms, save,
};

/// Transitions in one batch above which each one is logged at debug level and only a summary
/// at info: a region move of 100k tenants must not flood the log.
const LOG_EACH_UP_TO: usize = 64;

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

/// Who holds a region down. A region is marked down while anyone holds it; each holder
/// releases only its own hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// The operator (admin API), one hold however often it is set.
    Operator,
    /// An Azure Service Health incident, by tracking id.
    Incident(String),
}

impl Holder {
    /// The id the hold is stored and shown under: `operator` or `incident:<tracking id>`.
    pub fn id(&self) -> String {
        match self {
            Holder::Operator => OPERATOR_HOLDER.to_owned(),
            Holder::Incident(id) => format!("{INCIDENT_HOLDER_PREFIX}{id}"),
        }
    }
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
    /// How long until an automatic failback, if one is pending.
    pub pending_failback_in: Option<std::time::Duration>,
    /// The operator's pin, with its reason and time.
    pub pin: Option<Override>,
    /// Why the primary is unhealthy (the failed probe's reason), while it is.
    pub primary_last_error: Option<Arc<str>>,
    /// Why the secondary is unhealthy, while it is.
    pub secondary_last_error: Option<Arc<str>>,
}

impl TenantView {
    /// The active account's name and health.
    pub fn active(&self) -> (Arc<str>, Health) {
        match (self.state.side, &self.secondary) {
            (Side::Secondary, Some(s)) => s.clone(),
            _ => self.primary.clone(),
        }
    }
}

/// One region as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionView {
    /// Region name.
    pub name: Arc<str>,
    /// Paired region.
    pub pair: Option<Arc<str>>,
    /// Who holds the region down, by holder id (`operator`, `incident:<tracking id>`); empty
    /// when it is in auto.
    pub holds: Vec<(String, Override)>,
    /// Whether the region counts as down (marked, or by the outage ratio).
    pub down: bool,
    /// Accounts in the region.
    pub accounts: usize,
    /// Of those, unhealthy.
    pub unhealthy: usize,
}

/// Counters and gauges for metrics.
#[derive(Debug, Clone, Default)]
pub struct ControllerStats {
    /// Accounts: name, region, health.
    pub accounts: Vec<(Arc<str>, Arc<str>, Health)>,
    /// Regions: name, down.
    pub regions: Vec<(Arc<str>, bool)>,
    /// The first `tenant_limit` tenants: name and side.
    pub tenants: Vec<(Arc<str>, Side)>,
    /// Tenants beyond the limit, counted per side: (primary, secondary).
    pub other_tenants: (u64, u64),
    /// Transitions since start, by cause label.
    pub transitions: BTreeMap<&'static str, u64>,
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

/// The controller task's state.
pub struct Controller {
    engine: Engine,
    table: Arc<RouteTable>,
    events: Arc<EventLog>,
    tenant_index: HashMap<Arc<str>, usize>,
    region_index: HashMap<Arc<str>, usize>,
    /// Operator overrides, mirrored to the state file.
    overrides: PersistedState,
    state_path: Option<PathBuf>,
    transitions: BTreeMap<&'static str, u64>,
    account_by_name: HashMap<Arc<str>, usize>,
    fleet: Option<FleetLink>,
    /// True while the transitions of an outlier ejection are published (see `label`).
    ejection: bool,
    /// Why each unhealthy account is (by account key): the verdict's detail, else its reason.
    last_error: HashMap<Arc<str>, Arc<str>>,
}

impl Controller {
    /// A controller for `config`, compiled as `table`: every tenant starts on its primary with
    /// every account's health unknown, then the persisted overrides (`restored`) are applied.
    pub fn new(
        config: &Config,
        table: Arc<RouteTable>,
        events: Arc<EventLog>,
        restored: PersistedState,
    ) -> Controller {
        let (regions, accounts, tenants) = defs(config, &table);
        let engine = Engine::new(
            regions,
            accounts,
            tenants,
            config.failover.region_outage_ratio,
            Instant::now(),
        );
        let mut controller = Controller {
            engine,
            table: Arc::clone(&table),
            events,
            tenant_index: HashMap::new(),
            region_index: HashMap::new(),
            overrides: PersistedState::default(),
            state_path: config.state.path.clone(),
            transitions: BTreeMap::new(),
            account_by_name: HashMap::new(),
            fleet: None,
            ejection: false,
            last_error: HashMap::new(),
        };
        controller.index();
        controller.restore(restored);
        controller
    }

    /// Fleet mode: decisions come from the fleet, not from this replica's own verdicts.
    pub fn with_fleet(mut self, link: FleetLink) -> Self {
        self.fleet = Some(link);
        self
    }

    fn index(&mut self) {
        self.account_by_name = self
            .table
            .accounts()
            .iter()
            .enumerate()
            .map(|(i, a)| (Arc::clone(&a.name), i))
            .collect();
        self.tenant_index = self
            .table
            .tenants()
            .iter()
            .enumerate()
            .map(|(i, t)| (Arc::clone(&t.name), i))
            .collect();
        self.region_index = self
            .table
            .regions()
            .iter()
            .enumerate()
            .map(|(i, r)| (Arc::clone(&r.name), i))
            .collect();
    }

    /// Applies persisted pins and region states; entries naming tenants or regions that no
    /// longer exist are dropped with a warning.
    fn restore(&mut self, restored: PersistedState) {
        let now = Instant::now();
        let mut transitions = Vec::new();
        let restored = restored.holds();
        for (name, holds) in restored.region_holds {
            match self.region_index.get(name.as_str()) {
                Some(&r) if !holds.is_empty() => {
                    transitions.extend(self.engine.set_region(r, RegionOverride::Down, now));
                    self.overrides.region_holds.insert(name, holds);
                }
                _ => {
                    tracing::warn!(region = %name, "dropping persisted region holds: unknown region")
                }
            }
        }
        for (name, o) in restored.tenants {
            let side = match o.value.as_str() {
                "primary" => Some(Side::Primary),
                "secondary" => Some(Side::Secondary),
                _ => None,
            };
            match (self.tenant_index.get(name.as_str()).copied(), side) {
                (Some(t), Some(side)) => {
                    transitions.extend(self.engine.set_mode(t, Mode::Pinned(side), now));
                    self.overrides.tenants.insert(name, o);
                }
                _ => {
                    tracing::warn!(tenant = %name, "dropping persisted pin: unknown tenant or side")
                }
            }
        }
        self.publish(&transitions);
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
            Command::Verdict(verdict) => match &self.fleet {
                // Fleet mode: this replica's view is one vote; the fleet's verdict decides.
                Some(link) => {
                    if let Some(id) = self.table.account_id_by_key(&verdict.key) {
                        let name = Arc::clone(&self.table.account(id).name);
                        tracing::info!(
                            account = &*name,
                            health = verdict.health.as_str(),
                            reason = verdict.reason,
                            "local verdict changed"
                        );
                        let _ = link.local_verdicts.send((name, verdict.health));
                    }
                }
                None => self.apply_verdict(&verdict),
            },
            Command::FleetVerdict { account, health } => {
                if let Some(&id) = self.account_by_name.get(account.as_str()) {
                    let key = Arc::clone(
                        &self
                            .table
                            .account(pairgate_routing::AccountId::from_index(id))
                            .key,
                    );
                    self.apply_verdict(&Verdict {
                        key,
                        health,
                        reason: "fleet",
                        detail: None,
                    });
                }
            }
            Command::Adopt {
                tenant,
                side,
                reject,
                epoch,
                cause,
            } => self.adopt(&tenant, side, reject, epoch, &cause),
            Command::Tenant { name, reply } => {
                let _ = reply.send(self.view(&name));
            }
            Command::Tenants {
                after,
                limit,
                reply,
            } => {
                let start = after
                    .and_then(|a| self.tenant_index.get(a.as_str()).map(|&i| i + 1))
                    .unwrap_or(0);
                let names: Vec<Arc<str>> = self.table.tenants()
                    [start.min(self.table.tenants().len())..]
                    .iter()
                    .take(limit)
                    .map(|t| Arc::clone(&t.name))
                    .collect();
                let more = start + names.len() < self.table.tenants().len();
                let page = names.iter().filter_map(|n| self.view(n)).collect();
                let _ = reply.send((page, more));
            }
            Command::SetMode {
                tenant,
                mode,
                reason,
                reply,
            } => {
                let _ = reply.send(self.set_mode(&tenant, mode, reason));
            }
            Command::Failback {
                tenant,
                reason,
                reply,
            } => {
                let _ = reply.send(self.manual_failback(&tenant, &reason));
            }
            Command::SetRegion {
                region,
                change,
                reason,
                source,
                reply,
            } => {
                let _ = reply.send(self.set_region(&region, &change, reason, source));
            }
            Command::Regions { reply } => {
                let views = (0..self.table.regions().len())
                    .map(|r| self.region_view(r))
                    .collect();
                let _ = reply.send(views);
            }
            Command::Reload {
                config,
                table,
                reply,
            } => {
                let _ = reply.send(self.reload(&config, table));
            }
            Command::Stats {
                tenant_limit,
                reply,
            } => {
                let _ = reply.send(self.stats(tenant_limit));
            }
        }
    }

    fn set_mode(
        &mut self,
        tenant: &str,
        mode: Mode,
        reason: String,
    ) -> Result<TenantView, ControlError> {
        let &t = self
            .tenant_index
            .get(tenant)
            .ok_or(ControlError::UnknownTenant)?;
        if mode == Mode::Pinned(Side::Secondary) && self.table.tenants()[t].secondary.is_none() {
            return Err(ControlError::NoSecondary);
        }
        let value = match mode {
            Mode::Auto => "auto",
            Mode::Pinned(side) => side.as_str(),
        };
        let record = Override {
            value: value.to_owned(),
            reason: reason.clone(),
            source: "operator".to_owned(),
            at_unix_ms: now_unix_ms(),
        };
        let mut next = self.overrides.clone();
        match mode {
            Mode::Auto => next.tenants.remove(tenant),
            Mode::Pinned(_) => next.tenants.insert(tenant.to_owned(), record),
        };
        self.commit(next, || format!("tenant {tenant} mode {value}"))?;
        let transitions = self.engine.set_mode(t, mode, Instant::now());
        self.events.push(EventKind::Pin {
            tenant: Arc::clone(&self.table.tenants()[t].name),
            mode: value,
            reason,
        });
        self.publish(&transitions);
        self.view(tenant).ok_or(ControlError::UnknownTenant)
    }

    fn manual_failback(&mut self, tenant: &str, reason: &str) -> Result<TenantView, ControlError> {
        let &t = self
            .tenant_index
            .get(tenant)
            .ok_or(ControlError::UnknownTenant)?;
        let transitions = self.engine.request_failback(t, Instant::now());
        tracing::info!(
            tenant,
            reason,
            moved = !transitions.is_empty(),
            "manual failback requested"
        );
        self.publish(&transitions);
        self.view(tenant).ok_or(ControlError::UnknownTenant)
    }

    /// Takes or releases a hold; the region is down while any hold remains.
    fn set_region(
        &mut self,
        region: &str,
        change: &RegionChange,
        reason: String,
        source: &'static str,
    ) -> Result<RegionView, ControlError> {
        let &r = self
            .region_index
            .get(region)
            .ok_or(ControlError::UnknownRegion)?;
        let mut next = self.overrides.clone();
        let holds = next.region_holds.entry(region.to_owned()).or_default();
        let (action, holder) = match change {
            RegionChange::Hold(holder) => {
                let id = holder.id();
                holds.insert(
                    id.clone(),
                    Override {
                        value: "down".to_owned(),
                        reason: reason.clone(),
                        source: source.to_owned(),
                        at_unix_ms: now_unix_ms(),
                    },
                );
                ("hold", id)
            }
            RegionChange::Release(holder) => {
                let id = holder.id();
                holds.remove(&id);
                ("release", id)
            }
            RegionChange::ReleaseAll => {
                holds.clear();
                ("release_all", "*".to_owned())
            }
        };
        if holds.is_empty() {
            next.region_holds.remove(region);
        }
        let (state, value) = if next.region_holds.contains_key(region) {
            (RegionOverride::Down, "down")
        } else {
            (RegionOverride::Auto, "auto")
        };
        self.commit(next, || {
            format!("region {region} {action} {holder} ({source})")
        })?;
        let transitions = self.engine.set_region(r, state, Instant::now());
        tracing::info!(region, action, holder = %holder, state = value, reason = %reason, source, moved = transitions.len(), "region hold changed");
        self.events.push(EventKind::RegionState {
            region: Arc::clone(&self.table.regions()[r].name),
            state: value,
            action,
            holder,
            reason,
            source,
        });
        self.publish(&transitions);
        Ok(self.region_view(r))
    }

    /// Rebuilds the engine for a new config, carrying health, sides, generations, pins and
    /// region states by identity; then publishes the transitions the new config causes.
    fn reload(&mut self, config: &Config, table: Arc<RouteTable>) -> usize {
        let (regions, accounts, tenants) = defs(config, &table);
        let (engine, transitions) = self.engine.rebuild(
            regions,
            accounts,
            tenants,
            config.failover.region_outage_ratio,
            Instant::now(),
        );
        self.engine = engine;
        self.table = table;
        self.state_path = config.state.path.clone();
        self.index();
        let (tenants, regions) = (&self.tenant_index, &self.region_index);
        let before = (
            self.overrides.tenants.len(),
            self.overrides.region_holds.len(),
        );
        self.overrides
            .tenants
            .retain(|name, _| tenants.contains_key(name.as_str()));
        self.overrides
            .region_holds
            .retain(|name, _| regions.contains_key(name.as_str()));
        if before
            != (
                self.overrides.tenants.len(),
                self.overrides.region_holds.len(),
            )
        {
            self.persist();
        }
        self.publish(&transitions);
        transitions.len()
    }

    /// Makes `next` the operator overrides, writing it to the state file first. A change that
    /// cannot be written is refused ([`ControlError::NotPersisted`]) and recorded as an event,
    /// and the caller applies nothing: an acknowledged change must survive a restart. In fleet
    /// mode etcd is the durable copy and every replica must apply what the fleet committed, so
    /// there a failed write is recorded and the change applied anyway.
    fn commit(
        &mut self,
        next: PersistedState,
        change: impl FnOnce() -> String,
    ) -> Result<(), ControlError> {
        if next == self.overrides {
            return Ok(());
        }
        if let Some(path) = &self.state_path
            && let Err(err) = save(path, &next)
        {
            let change = change();
            tracing::error!(path = %path.display(), error = %err, change = %change, "cannot write the state file; change refused");
            self.events.push(EventKind::StateNotPersisted {
                change,
                error: err.to_string(),
            });
            if self.fleet.is_none() {
                return Err(ControlError::NotPersisted);
            }
        }
        self.overrides = next;
        Ok(())
    }

    fn persist(&self) {
        let Some(path) = &self.state_path else { return };
        if let Err(err) = save(path, &self.overrides) {
            tracing::error!(path = %path.display(), error = %err, "cannot write the state file; overrides will not survive a restart");
        }
    }

    fn stats(&self, tenant_limit: usize) -> ControllerStats {
        let accounts = self
            .table
            .accounts()
            .iter()
            .enumerate()
            .map(|(i, a)| {
                (
                    Arc::clone(&a.name),
                    Arc::clone(&self.table.region(a.region).name),
                    self.engine.account_health(i),
                )
            })
            .collect();
        let regions = self
            .table
            .regions()
            .iter()
            .enumerate()
            .map(|(i, r)| (Arc::clone(&r.name), self.engine.region_down(i)))
            .collect();
        let mut other = (0, 0);
        let mut tenants = Vec::with_capacity(tenant_limit.min(self.table.tenants().len()));
        for (i, t) in self.table.tenants().iter().enumerate() {
            let side = self.engine.tenant(i).side;
            if i < tenant_limit {
                tenants.push((Arc::clone(&t.name), side));
            } else if side == Side::Primary {
                other.0 += 1;
            } else {
                other.1 += 1;
            }
        }
        ControllerStats {
            accounts,
            regions,
            tenants,
            other_tenants: other,
            transitions: self.transitions.clone(),
        }
    }

    fn region_view(&self, r: usize) -> RegionView {
        let region = &self.table.regions()[r];
        let in_region: Vec<usize> = self
            .table
            .accounts()
            .iter()
            .enumerate()
            .filter(|(_, a)| a.region.index() == r)
            .map(|(i, _)| i)
            .collect();
        RegionView {
            name: Arc::clone(&region.name),
            pair: region.pair.map(|p| Arc::clone(&self.table.region(p).name)),
            holds: self
                .overrides
                .region_holds
                .get(&*region.name)
                .map(|h| h.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            down: self.engine.region_down(r),
            accounts: in_region.len(),
            unhealthy: in_region
                .iter()
                .filter(|&&a| self.engine.account_health(a) == Health::Unhealthy)
                .count(),
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
            detail = verdict.detail.as_deref(),
            "account health changed"
        );
        self.events.push(EventKind::AccountHealth {
            account: Arc::clone(&account.name),
            health: verdict.health,
            reason: verdict.reason,
            detail: verdict.detail.clone(),
        });
        if verdict.health == Health::Unhealthy {
            let why = verdict
                .detail
                .clone()
                .unwrap_or_else(|| verdict.reason.into());
            self.last_error.insert(Arc::clone(&account.key), why);
        } else {
            self.last_error.remove(&account.key);
        }
        let transitions = self
            .engine
            .set_health(id.index(), verdict.health, Instant::now());
        // Moves away from an ejected account say so: their cause is `passive_5xx`.
        self.ejection = verdict.reason == PASSIVE_5XX;
        self.publish(&transitions);
        self.ejection = false;
    }

    /// Fleet mode: sets a tenant to the fleet's committed decision and publishes it.
    fn adopt(&mut self, tenant: &str, side: Side, reject: bool, epoch: u64, cause: &str) {
        let Some(&t) = self.tenant_index.get(tenant) else {
            return;
        };
        let transitions = self.engine.adopt(t, side, reject, epoch, Instant::now());
        // The slot carries the epoch even when the side did not change here (this replica's
        // engine had already moved): every replica serves the same side at the same epoch.
        self.table.tenants()[t].slot.store(Active {
            side,
            reject,
            generation: self.engine.tenant(t).generation,
        });
        if transitions.is_empty() {
            return;
        }
        let label = KNOWN_CAUSES
            .iter()
            .copied()
            .find(|c| *c == cause)
            .unwrap_or("fleet_decision");
        tracing::info!(
            tenant,
            to = side.as_str(),
            reject,
            epoch,
            cause = label,
            "tenant moved by fleet decision"
        );
        *self.transitions.entry(label).or_default() += 1;
        self.events.push(EventKind::Transition {
            tenant: Arc::clone(&self.table.tenants()[t].name),
            from: side.other(),
            to: side,
            reject,
            cause: CauseInfo {
                label,
                region: None,
            },
            generation: self.engine.tenant(t).generation,
        });
    }

    /// Stores each transition into its tenant's slot (one atomic store each), then logs it. In
    /// fleet mode, transitions are proposals instead: nothing is stored until the fleet commits.
    fn publish(&mut self, transitions: &[Transition]) {
        if transitions.is_empty() {
            return;
        }
        if let Some(link) = &self.fleet {
            for t in transitions {
                let _ = link.proposals.send(Proposal {
                    tenant: Arc::clone(&self.table.tenants()[t.tenant].name),
                    side: t.to,
                    reject: t.reject,
                    cause: self.label(t.cause),
                });
            }
            return;
        }
        for t in transitions {
            *self.transitions.entry(self.label(t.cause)).or_default() += 1;
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
        let region = match cause {
            Cause::RegionOutage { region } | Cause::RegionMarkedDown { region } => {
                Some(Arc::clone(&self.table.regions()[region].name))
            }
            _ => None,
        };
        CauseInfo {
            label: self.label(cause),
            region,
        }
    }

    /// The cause's label; while an ejection is being published, a move away from the ejected
    /// account is `passive_5xx`.
    fn label(&self, cause: Cause) -> &'static str {
        match cause {
            Cause::PrimaryUnhealthy | Cause::SecondaryUnhealthy if self.ejection => PASSIVE_5XX,
            _ => cause_label(cause),
        }
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
        let last_error = |id: pairgate_routing::AccountId| {
            self.last_error.get(&self.table.account(id).key).cloned()
        };
        let now = Instant::now();
        // What is served is the slot: in fleet mode the engine may hold a proposal the fleet
        // has not committed yet.
        let served = tenant.slot.load();
        let mut state = self.engine.tenant(i);
        state.side = served.side;
        state.reject = served.reject;
        state.generation = served.generation;
        Some(TenantView {
            name: Arc::clone(&tenant.name),
            state,
            primary: account(tenant.primary),
            secondary: tenant.secondary.map(account),
            pending_failback_in: self
                .engine
                .pending_failback(i)
                .map(|at| at.saturating_duration_since(now)),
            pin: self.overrides.tenants.get(name).cloned(),
            primary_last_error: last_error(tenant.primary),
            secondary_last_error: tenant.secondary.and_then(last_error),
        })
    }
}

/// Every cause label, for adopting a label a remote replica sent.
const KNOWN_CAUSES: [&str; 13] = [
    "primary_unhealthy",
    PASSIVE_5XX,
    "region_outage",
    "region_marked_down",
    "secondary_unhealthy",
    "failback",
    "pinned",
    "unpinned",
    "manual_failback",
    "both_down",
    "recovered",
    "reconfigured",
    "fleet_decision",
];

/// How events, logs and metrics spell a cause.
pub fn cause_label(cause: Cause) -> &'static str {
    match cause {
        Cause::PrimaryUnhealthy => "primary_unhealthy",
        Cause::RegionOutage { .. } => "region_outage",
        Cause::RegionMarkedDown { .. } => "region_marked_down",
        Cause::SecondaryUnhealthy => "secondary_unhealthy",
        Cause::Failback => "failback",
        Cause::Pinned => "pinned",
        Cause::Unpinned => "unpinned",
        Cause::ManualFailback => "manual_failback",
        Cause::BothDown => "both_down",
        Cause::Recovered => "recovered",
        Cause::Reconfigured => "reconfigured",
        Cause::Fleet => "fleet_decision",
    }
}

/// The engine's view of a config: regions, accounts by identity, tenants with their policies.
pub fn defs(
    config: &Config,
    table: &RouteTable,
) -> (Vec<RegionDef>, Vec<AccountDef>, Vec<TenantDef>) {
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
