//! Operator overrides: tenant pins and region holds, restored at start and persisted before they apply.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use pairgate_failover::{Mode, RegionOverride, Side};
use tokio::sync::oneshot;

use super::Controller;
use super::persist::Written;
use super::protocol::{ControlError, RegionChange};
use super::views::{AccountView, RegionView, TenantView};
use crate::events::EventKind;
use crate::state::{Note, Overrides, PersistedState, Pin, now_unix_ms};

impl Controller {
    /// Applies persisted pins and region states; entries naming tenants or regions that no
    /// longer exist are dropped with a warning.
    pub(super) fn restore(&mut self, restored: PersistedState) {
        let now = Instant::now();
        let mut transitions = Vec::new();
        let (restored, unreadable) = Overrides::from_persisted(restored);
        for entry in unreadable {
            tracing::warn!(entry = ?entry, "dropping a persisted override pairgate cannot read");
        }
        for (name, holds) in restored.holds {
            match self.region_index.get(name.as_str()) {
                Some(&r) => {
                    transitions.extend(self.engine.set_region(r, RegionOverride::Down, now));
                    self.overrides.holds.insert(name, holds);
                }
                None => {
                    tracing::warn!(region = %name, "dropping persisted region holds: unknown region")
                }
            }
        }
        for (name, holds) in restored.account_holds {
            match self.account_by_name.get(name.as_str()) {
                Some(&a) => {
                    self.overrides.account_holds.insert(name, holds);
                    let account = &self.table.accounts()[a];
                    account.health.store(pairgate_failover::Health::Unhealthy);
                    transitions.extend(self.engine.set_health(
                        a,
                        pairgate_failover::Health::Unhealthy,
                        now,
                    ));
                }
                None => {
                    tracing::warn!(account = %name, "dropping persisted account holds: unknown account")
                }
            }
        }
        for (name, pin) in restored.pins {
            match self.tenant_index.get(name.as_str()) {
                Some(&t) => {
                    transitions.extend(self.engine.set_mode(t, Mode::Pinned(pin.side), now));
                    self.overrides.pins.insert(name, pin);
                }
                None => {
                    tracing::warn!(tenant = %name, "dropping persisted pin: unknown tenant")
                }
            }
        }
        self.publish(&transitions);
    }

    /// Pins or unpins a tenant: checked now, applied once the state file holds it.
    pub(super) fn set_mode(
        &mut self,
        tenant: String,
        mode: Mode,
        reason: String,
        reply: oneshot::Sender<Result<TenantView, ControlError>>,
    ) {
        if let Err(err) = self.check_mode(&tenant, mode) {
            let _ = reply.send(Err(err));
            return;
        }
        self.request(Waiter::Mode {
            tenant,
            mode,
            reason,
            at_unix_ms: now_unix_ms(),
            reply,
        });
    }

    /// Takes or releases a hold (the region is down while any hold remains): checked now,
    /// applied once the state file holds it.
    pub(super) fn set_region(
        &mut self,
        region: String,
        change: RegionChange,
        reason: String,
        source: &'static str,
        reply: oneshot::Sender<Result<RegionView, ControlError>>,
    ) {
        if !self.region_index.contains_key(region.as_str()) {
            let _ = reply.send(Err(ControlError::UnknownRegion));
            return;
        }
        self.request(Waiter::Region {
            region,
            change,
            reason,
            source,
            at_unix_ms: now_unix_ms(),
            reply,
        });
    }

    /// Takes or releases a hold on an account (held down while any hold remains): checked now,
    /// applied once the state file holds it.
    pub(super) fn set_account(
        &mut self,
        account: String,
        change: RegionChange,
        reason: String,
        source: &'static str,
        reply: oneshot::Sender<Result<AccountView, ControlError>>,
    ) {
        if !self.account_by_name.contains_key(account.as_str()) {
            let _ = reply.send(Err(ControlError::UnknownAccount));
            return;
        }
        self.request(Waiter::Account {
            account,
            change,
            reason,
            source,
            at_unix_ms: now_unix_ms(),
            reply,
        });
    }

    /// The tenant's index, if `mode` can apply to it.
    fn check_mode(&self, tenant: &str, mode: Mode) -> Result<usize, ControlError> {
        let &t = self
            .tenant_index
            .get(tenant)
            .ok_or(ControlError::UnknownTenant)?;
        if mode == Mode::Pinned(Side::Secondary) && self.table.tenants()[t].secondary.is_none() {
            return Err(ControlError::NoSecondary);
        }
        Ok(t)
    }

    /// Queues an override for the next write, and starts it unless one is in flight.
    fn request(&mut self, waiter: Waiter) {
        self.persister.queue(waiter);
        self.kick();
    }

    /// The committed overrides changed without anyone waiting (a reload dropped entries of
    /// removed tenants or regions): write them; a failure is only logged.
    pub(super) fn persist(&mut self) {
        self.persister.mark_dirty();
        self.kick();
    }

    /// Starts the next write when none is in flight and something waits: the committed
    /// overrides plus every queued change, in arrival order. Without a state file, or when the
    /// changes leave the overrides as they are, the queued changes apply at once.
    pub(super) fn kick(&mut self) {
        if self.persister.busy() || !self.persister.has_work() {
            return;
        }
        let mut next = self.overrides.clone();
        for waiter in self.persister.queued() {
            waiter.apply(&mut next);
        }
        match &self.state_path {
            Some(path) if next != self.overrides || self.persister.dirty() => {
                self.persister.start(path.clone(), next.to_persisted());
            }
            _ => {
                let waiters = self.persister.take_queued();
                self.written(Written {
                    result: Ok(()),
                    waiters,
                });
            }
        }
    }

    /// A write finished: on success its changes apply, in order, and their callers are
    /// answered; on failure each is refused ([`ControlError::NotPersisted`]) and recorded as an
    /// event, so nothing acknowledged is lost at a restart. In fleet mode etcd is the durable
    /// copy and every replica must apply what the fleet committed, so there a failed write is
    /// recorded and the changes applied anyway. Then the next write starts, if anything waits.
    pub(super) fn written(&mut self, written: Written<Waiter>) {
        let Written { result, waiters } = written;
        if let Err(error) = &result {
            let path = self.state_path.as_deref().unwrap_or(Path::new(""));
            if waiters.is_empty() {
                tracing::error!(path = %path.display(), error = %error, "cannot write the state file; overrides will not survive a restart");
            }
            for waiter in &waiters {
                let change = waiter.describe();
                tracing::error!(path = %path.display(), error = %error, change = %change, "cannot write the state file; change refused");
                self.events.push(EventKind::StateNotPersisted {
                    change,
                    error: error.clone(),
                });
            }
        }
        let apply = result.is_ok() || !self.publishing.refuses_unsaved();
        for waiter in waiters {
            if apply {
                self.apply_change(waiter);
            } else {
                waiter.refuse(ControlError::NotPersisted);
            }
        }
        self.kick();
    }

    /// Applies a written change to the overrides and the engine, and answers its caller. A
    /// reload may have removed its tenant or region meanwhile: then it is refused, and the
    /// state file rewritten without it once the whole batch is applied (a rewrite started
    /// mid-batch would miss the acknowledged changes after it).
    fn apply_change(&mut self, waiter: Waiter) {
        let now = Instant::now();
        match &waiter {
            Waiter::Mode {
                tenant,
                mode,
                reason,
                ..
            } => {
                let t = match self.check_mode(tenant, *mode) {
                    Ok(t) => t,
                    Err(err) => {
                        // Rewritten by the write `written` starts after the batch.
                        self.persister.mark_dirty();
                        waiter.refuse(err);
                        return;
                    }
                };
                waiter.apply(&mut self.overrides);
                let transitions = self.engine.set_mode(t, *mode, now);
                self.events.push(EventKind::Pin {
                    tenant: Arc::clone(&self.table.tenants()[t].name),
                    mode: mode_value(*mode),
                    reason: reason.clone(),
                });
                self.publish(&transitions);
                let view = self.view(tenant).ok_or(ControlError::UnknownTenant);
                if let Waiter::Mode { reply, .. } = waiter {
                    let _ = reply.send(view);
                }
            }
            Waiter::Region {
                region,
                change,
                reason,
                source,
                ..
            } => {
                let Some(&r) = self.region_index.get(region.as_str()) else {
                    self.persister.mark_dirty();
                    waiter.refuse(ControlError::UnknownRegion);
                    return;
                };
                waiter.apply(&mut self.overrides);
                let (state, value) = if self.overrides.holds.contains_key(region.as_str()) {
                    (RegionOverride::Down, "down")
                } else {
                    (RegionOverride::Auto, "auto")
                };
                let (action, holder) = change.action();
                let transitions = self.engine.set_region(r, state, now);
                tracing::info!(region, action, holder = %holder, state = value, reason = %reason, source, moved = transitions.len(), "region hold changed");
                self.events.push(EventKind::RegionState {
                    region: Arc::clone(&self.table.regions()[r].name),
                    state: value,
                    action,
                    holder,
                    reason: reason.clone(),
                    source,
                });
                self.publish(&transitions);
                let view = self.region_view(r);
                if let Waiter::Region { reply, .. } = waiter {
                    let _ = reply.send(Ok(view));
                }
            }
            Waiter::Account {
                account,
                change,
                reason,
                source,
                ..
            } => {
                let Some(&a) = self.account_by_name.get(account.as_str()) else {
                    self.persister.mark_dirty();
                    waiter.refuse(ControlError::UnknownAccount);
                    return;
                };
                waiter.apply(&mut self.overrides);
                let held = self.overrides.account_holds.contains_key(account.as_str());
                let (action, holder) = change.action();
                let value = if held { "down" } else { "auto" };
                let name = Arc::clone(&self.table.accounts()[a].name);
                tracing::info!(account = %name, action, holder = %holder, state = value, reason = %reason, source, "account hold changed");
                self.events.push(EventKind::AccountState {
                    account: name,
                    state: value,
                    action,
                    holder,
                    reason: reason.clone(),
                    source,
                });
                self.apply_effective_health(a);
                let view = self.account_view(a);
                if let Waiter::Account { reply, .. } = waiter {
                    let _ = reply.send(Ok(view));
                }
            }
        }
    }
}

/// How events and the state file spell a tenant's mode.
fn mode_value(mode: Mode) -> &'static str {
    match mode {
        Mode::Auto => "auto",
        Mode::Pinned(side) => side.as_str(),
    }
}

/// An operator override waiting for the write that carries it: the change, when it was asked
/// for, and where its answer goes.
pub(super) enum Waiter {
    /// Pin a tenant to a side, or unpin it (`Mode::Auto`).
    Mode {
        /// Tenant name.
        tenant: String,
        /// The new mode.
        mode: Mode,
        /// Why.
        reason: String,
        /// When it was asked for.
        at_unix_ms: u64,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<TenantView, ControlError>>,
    },
    /// Take or release a hold on a region.
    Region {
        /// Region name.
        region: String,
        /// Which hold.
        change: RegionChange,
        /// Why.
        reason: String,
        /// Who: `operator` or `azure-monitor`.
        source: &'static str,
        /// When it was asked for.
        at_unix_ms: u64,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<RegionView, ControlError>>,
    },
    /// Take or release a hold on an account.
    Account {
        /// Account name.
        account: String,
        /// Which hold.
        change: RegionChange,
        /// Why.
        reason: String,
        /// Who: `operator` or `azure-monitor`.
        source: &'static str,
        /// When it was asked for.
        at_unix_ms: u64,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<AccountView, ControlError>>,
    },
}

impl Waiter {
    /// Applies the change to `overrides`, stamping new entries with the time it was asked for.
    pub(super) fn apply(&self, overrides: &mut Overrides) {
        match self {
            Waiter::Mode {
                tenant,
                mode,
                reason,
                at_unix_ms,
                ..
            } => match mode {
                Mode::Auto => {
                    overrides.pins.remove(tenant);
                }
                Mode::Pinned(side) => {
                    let note = Note {
                        reason: reason.clone(),
                        source: "operator".to_owned(),
                        at_unix_ms: *at_unix_ms,
                    };
                    overrides
                        .pins
                        .insert(tenant.clone(), Pin { side: *side, note });
                }
            },
            Waiter::Account {
                account,
                change,
                reason,
                source,
                at_unix_ms,
                ..
            } => {
                let holds = overrides.account_holds.entry(account.clone()).or_default();
                change_holds(holds, change, reason, source, *at_unix_ms);
                if holds.is_empty() {
                    overrides.account_holds.remove(account);
                }
            }
            Waiter::Region {
                region,
                change,
                reason,
                source,
                at_unix_ms,
                ..
            } => {
                let holds = overrides.holds.entry(region.clone()).or_default();
                change_holds(holds, change, reason, source, *at_unix_ms);
                if holds.is_empty() {
                    overrides.holds.remove(region);
                }
            }
        }
    }

    /// How a refused change is named in the log and the event.
    pub(super) fn describe(&self) -> String {
        match self {
            Waiter::Mode { tenant, mode, .. } => {
                format!("tenant {tenant} mode {}", mode_value(*mode))
            }
            Waiter::Region {
                region,
                change,
                source,
                ..
            } => {
                let (action, holder) = change.action();
                format!("region {region} {action} {holder} ({source})")
            }
            Waiter::Account {
                account,
                change,
                source,
                ..
            } => {
                let (action, holder) = change.action();
                format!("account {account} {action} {holder} ({source})")
            }
        }
    }

    /// Answers the caller with `err`: the change was not applied.
    pub(super) fn refuse(self, err: ControlError) {
        match self {
            Waiter::Mode { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Waiter::Region { reply, .. } => {
                let _ = reply.send(Err(err));
            }
            Waiter::Account { reply, .. } => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

/// Applies `change` to one region's or account's holds.
fn change_holds(
    holds: &mut std::collections::BTreeMap<crate::state::Holder, Note>,
    change: &RegionChange,
    reason: &str,
    source: &str,
    at_unix_ms: u64,
) {
    match change {
        RegionChange::Hold(holder) => {
            let note = Note {
                reason: reason.to_owned(),
                source: source.to_owned(),
                at_unix_ms,
            };
            holds.insert(holder.clone(), note);
        }
        RegionChange::Release(holder) => {
            holds.remove(holder);
        }
        RegionChange::ReleaseAll => holds.clear(),
    }
}

impl RegionChange {
    /// The action and holder id as events and logs spell them.
    pub(super) fn action(&self) -> (&'static str, String) {
        match self {
            RegionChange::Hold(holder) => ("hold", holder.id()),
            RegionChange::Release(holder) => ("release", holder.id()),
            RegionChange::ReleaseAll => ("release_all", "*".to_owned()),
        }
    }
}
