//! Read models: what the admin API and metrics see of tenants, regions and the controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use pairgate_failover::{Health, Side};

use super::Controller;
use crate::state::{Holder, Note, Pin};

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
    pub pin: Option<Pin>,
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
    pub holds: Vec<(Holder, Note)>,
    /// Whether the region counts as down (marked, or by the outage ratio).
    pub down: bool,
    /// Accounts in the region.
    pub accounts: usize,
    /// Of those, unhealthy.
    pub unhealthy: usize,
}

/// One account's holds as the controller sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// Account name.
    pub name: Arc<str>,
    /// Its region's name.
    pub region: Arc<str>,
    /// Who holds it down (`operator`, `incident:<tracking id>`); empty when none does.
    pub holds: Vec<(Holder, Note)>,
    /// The health the engine decides with (unhealthy while held).
    pub health: Health,
    /// The probes' own verdict, whatever the holds.
    pub probed: Health,
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
    /// Transitions since start, by the region of the tenant's primary and cause label.
    pub transitions: BTreeMap<(Arc<str>, &'static str), u64>,
    /// Each account's last verdict reason (a probe result label, `passive`, `passive_5xx`,
    /// `fleet`): account name and reason, for accounts with a verdict.
    pub causes: Vec<(Arc<str>, &'static str)>,
    /// Tenants whose active side is the secondary, by the region of their primary (every
    /// region listed).
    pub on_secondary: Vec<(Arc<str>, u64)>,
    /// Requests in flight, by the region of the tenants' active account (every region listed).
    pub in_flight: Vec<(Arc<str>, u64)>,
    /// Tenants with an operator pin.
    pub pinned: u64,
}

impl Controller {
    pub(super) fn stats(&self, tenant_limit: usize) -> ControllerStats {
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
        let causes = self
            .table
            .accounts()
            .iter()
            .filter_map(|a| Some((Arc::clone(&a.name), *self.last_cause.get(&a.key)?)))
            .collect();
        let n = self.table.regions().len();
        let (mut on_secondary, mut in_flight) = (vec![0u64; n], vec![0u64; n]);
        for t in self.table.tenants() {
            let active = t.slot.load();
            if active.side == Side::Secondary && t.secondary.is_some() {
                on_secondary[self.table.account(t.primary).region.index()] += 1;
            }
            let region = self.table.account(t.account_for(active.side)).region;
            in_flight[region.index()] +=
                t.in_flight.load(std::sync::atomic::Ordering::Relaxed) as u64;
        }
        let by_region = |counts: Vec<u64>| {
            self.table
                .regions()
                .iter()
                .zip(counts)
                .map(|(r, c)| (Arc::clone(&r.name), c))
                .collect()
        };
        ControllerStats {
            accounts,
            regions,
            tenants,
            other_tenants: other,
            transitions: self.transitions.clone(),
            causes,
            on_secondary: by_region(on_secondary),
            in_flight: by_region(in_flight),
            pinned: self.overrides.pins.len() as u64,
        }
    }

    pub(super) fn region_view(&self, r: usize) -> RegionView {
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
                .holds
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

    pub(super) fn account_view(&self, a: usize) -> AccountView {
        let account = &self.table.accounts()[a];
        AccountView {
            name: Arc::clone(&account.name),
            region: Arc::clone(&self.table.region(account.region).name),
            holds: self
                .overrides
                .account_holds
                .get(&*account.name)
                .map(|h| h.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            health: self.engine.account_health(a),
            probed: self.probed(a),
        }
    }

    pub(super) fn view(&self, name: &str) -> Option<TenantView> {
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
            pin: self.overrides.pins.get(name).cloned(),
            primary_last_error: last_error(tenant.primary),
            secondary_last_error: tenant.secondary.and_then(last_error),
        })
    }
}
