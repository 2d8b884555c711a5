//! Operator overrides: tenant pins and region holds, restored at start and persisted before they apply.

use std::sync::Arc;
use std::time::Instant;

use pairgate_failover::{Mode, RegionOverride, Side};

use super::Controller;
use super::protocol::{ControlError, RegionChange};
use super::views::{RegionView, TenantView};
use crate::events::EventKind;
use crate::state::{Override, PersistedState, now_unix_ms, save};

impl Controller {
    /// Applies persisted pins and region states; entries naming tenants or regions that no
    /// longer exist are dropped with a warning.
    pub(super) fn restore(&mut self, restored: PersistedState) {
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

    pub(super) fn set_mode(
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

    /// Takes or releases a hold; the region is down while any hold remains.
    pub(super) fn set_region(
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

    /// Makes `next` the operator overrides, writing it to the state file first. A change that
    /// cannot be written is refused ([`ControlError::NotPersisted`]) and recorded as an event,
    /// and the caller applies nothing: an acknowledged change must survive a restart. In fleet
    /// mode etcd is the durable copy and every replica must apply what the fleet committed, so
    /// there a failed write is recorded and the change applied anyway.
    pub(super) fn commit(
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

    pub(super) fn persist(&self) {
        let Some(path) = &self.state_path else { return };
        if let Err(err) = save(path, &self.overrides) {
            tracing::error!(path = %path.display(), error = %err, "cannot write the state file; overrides will not survive a restart");
        }
    }
}
