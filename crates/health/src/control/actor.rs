//! The actor: the controller's state, its task loop and command dispatch.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pairgate_config::Config;
use pairgate_failover::Engine;
use pairgate_routing::RouteTable;
use tokio::sync::mpsc;

use super::defs::defs;
use super::overrides::Waiter;
use super::persist::{Persister, StateWriter, Written, file_writer};
use super::protocol::{Command, ControlError, ControlHandle, FleetLink};
use super::publish::Publishing;
use super::views::TenantView;
use crate::events::{EventKind, EventLog};
use crate::monitor::{PASSIVE_5XX, Verdict};
use crate::state::{Overrides, PersistedState};

/// The controller task's state.
pub struct Controller {
    pub(super) engine: Engine,
    pub(super) table: Arc<RouteTable>,
    pub(super) events: Arc<EventLog>,
    pub(super) tenant_index: HashMap<Arc<str>, usize>,
    pub(super) region_index: HashMap<Arc<str>, usize>,
    /// Operator overrides, mirrored to the state file.
    pub(super) overrides: Overrides,
    pub(super) state_path: Option<PathBuf>,
    /// Transitions since start, by the region of the tenant's primary and cause label.
    pub(super) transitions: BTreeMap<(Arc<str>, &'static str), u64>,
    /// The reason of each account's last verdict (by account key), a bounded label.
    pub(super) last_cause: HashMap<Arc<str>, &'static str>,
    pub(super) account_by_name: HashMap<Arc<str>, usize>,
    /// Where decisions go: slots (standalone) or fleet proposals.
    pub(super) publishing: Publishing,
    /// Writes the state file off the runtime workers; overrides wait in it for their write.
    pub(super) persister: Persister<Waiter>,
    /// True while the transitions of an outlier ejection are published (see `label`).
    pub(super) ejection: bool,
    /// Why each unhealthy account is (by account key): the verdict's detail, else its reason.
    pub(super) last_error: HashMap<Arc<str>, Arc<str>>,
    /// Each account's last verdict from its probes (by account key). The engine and the data
    /// plane get the effective health: unhealthy while the account is held down, this
    /// otherwise.
    pub(super) probed: HashMap<Arc<str>, pairgate_failover::Health>,
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
            overrides: Overrides::default(),
            state_path: config.state.path.clone(),
            transitions: BTreeMap::new(),
            last_cause: HashMap::new(),
            account_by_name: HashMap::new(),
            publishing: Publishing::Local,
            persister: Persister::new(file_writer()),
            ejection: false,
            last_error: HashMap::new(),
            probed: HashMap::new(),
        };
        controller.index();
        controller.restore(restored);
        controller
    }

    /// Fleet mode: decisions come from the fleet, not from this replica's own verdicts.
    pub fn with_fleet(mut self, link: FleetLink) -> Self {
        self.publishing = Publishing::Fleet(link);
        self
    }

    /// Writes the state file with `writer` instead of [`crate::state::save`] (tests stand in a
    /// slow or failing filesystem).
    pub fn with_state_writer(mut self, writer: StateWriter) -> Self {
        self.persister.set_writer(writer);
        self
    }

    pub(super) fn index(&mut self) {
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
            let deadline = self.engine.next_deadline();
            let wake = tokio::select! {
                command = rx.recv() => Wake::Command(command),
                () = until(deadline) => Wake::Tick,
                written = self.persister.finished() => Wake::Written(written),
            };
            match wake {
                Wake::Command(Some(command)) => self.handle(command),
                Wake::Command(None) => break,
                Wake::Tick => {
                    let transitions = self.engine.tick(Instant::now());
                    self.publish(&transitions);
                }
                Wake::Written(written) => self.written(written),
            }
        }
        // Every handle is gone; finish the write in flight (and a last one for a reload).
        while self.persister.busy() {
            let written = self.persister.finished().await;
            self.written(written);
        }
    }

    pub(super) fn handle(&mut self, command: Command) {
        match command {
            Command::Verdict(verdict) => self.local_verdict(&verdict),
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
            } => self.set_mode(tenant, mode, reason, reply),
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
            } => self.set_region(region, change, reason, source, reply),
            Command::SetAccount {
                account,
                change,
                reason,
                source,
                reply,
            } => self.set_account(account, change, reason, source, reply),
            Command::Accounts { reply } => {
                let views = (0..self.table.accounts().len())
                    .map(|a| self.account_view(a))
                    .collect();
                let _ = reply.send(views);
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

    pub(super) fn manual_failback(
        &mut self,
        tenant: &str,
        reason: &str,
    ) -> Result<TenantView, ControlError> {
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

    /// Rebuilds the engine for a new config, carrying health, sides, generations, pins and
    /// region states by identity; then publishes the transitions the new config causes.
    pub(super) fn reload(&mut self, config: &Config, table: Arc<RouteTable>) -> usize {
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
        let accounts = &self.account_by_name;
        let count = |o: &Overrides| (o.pins.len(), o.holds.len(), o.account_holds.len());
        let before = count(&self.overrides);
        self.overrides
            .pins
            .retain(|name, _| tenants.contains_key(name.as_str()));
        self.overrides
            .holds
            .retain(|name, _| regions.contains_key(name.as_str()));
        self.overrides
            .account_holds
            .retain(|name, _| accounts.contains_key(name.as_str()));
        if before != count(&self.overrides) {
            self.persist();
        }
        // An account whose endpoint changed starts with unknown health: its holds apply now,
        // not at its new prober's first verdict.
        let held: Vec<usize> = self
            .overrides
            .account_holds
            .keys()
            .filter_map(|name| self.account_by_name.get(name.as_str()).copied())
            .collect();
        for a in held {
            self.apply_effective_health(a);
        }
        self.publish(&transitions);
        transitions.len()
    }

    pub(super) fn apply_verdict(&mut self, verdict: &Verdict) {
        let Some(id) = self.table.account_id_by_key(&verdict.key) else {
            return; // a prober of an account that a reload removed
        };
        let account = self.table.account(id);
        self.probed.insert(Arc::clone(&account.key), verdict.health);
        let held = self.overrides.account_holds.contains_key(&*account.name);
        let effective = if held {
            pairgate_failover::Health::Unhealthy
        } else {
            verdict.health
        };
        account.health.store(effective);
        self.last_cause
            .insert(Arc::clone(&account.key), verdict.reason);
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
        if verdict.health == pairgate_failover::Health::Unhealthy {
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
            .set_health(id.index(), effective, Instant::now());
        // Moves away from an ejected account say so: their cause is `passive_5xx`.
        self.ejection = verdict.reason == PASSIVE_5XX;
        self.publish(&transitions);
        self.ejection = false;
    }
}

impl Controller {
    /// The probes' last verdict on account `a` (unknown before the first).
    pub(super) fn probed(&self, a: usize) -> pairgate_failover::Health {
        let key = &self.table.accounts()[a].key;
        self.probed
            .get(key)
            .copied()
            .unwrap_or(pairgate_failover::Health::Unknown)
    }

    /// Gives the engine and the data plane account `a`'s effective health after its holds
    /// changed: unhealthy while held, its probes' verdict otherwise.
    pub(super) fn apply_effective_health(&mut self, a: usize) {
        let account = &self.table.accounts()[a];
        let effective = if self.overrides.account_holds.contains_key(&*account.name) {
            pairgate_failover::Health::Unhealthy
        } else {
            self.probed(a)
        };
        account.health.store(effective);
        let transitions = self.engine.set_health(a, effective, Instant::now());
        self.publish(&transitions);
    }
}

/// What woke the controller.
enum Wake {
    /// A command, or `None` when every sender is gone.
    Command(Option<Command>),
    /// The engine's next deadline (a failback's hold-down) passed.
    Tick,
    /// A state file write finished.
    Written(Written<Waiter>),
}

/// Sleeps until `deadline`; forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
