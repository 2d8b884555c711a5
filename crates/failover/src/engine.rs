//! The per-tenant active-side state machine and its indices.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::{
    AccountDef, BothDown, Cause, Failback, Health, Mode, Policy, RegionDef, RegionOverride, Side,
    TenantDef, TenantState, Transition,
};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// The failover decision engine for every tenant of one config generation.
///
/// See the crate docs for the decision rules and the cost of each input. Indices (tenant, account,
/// region) are positions in the definition vectors the engine was built from; an index out of range
/// panics like slice indexing.
#[derive(Debug, Clone)]
pub struct Engine {
    regions: Vec<RegionSlot>,
    accounts: Vec<AccountSlot>,
    views: Vec<View>,
    tenants: Vec<TenantSlot>,
    /// `(deadline, tenant)` for every tenant with a pending automatic failback; mirrors
    /// `TenantSlot::pending` exactly (eager removal, so no stale entries).
    pending: BTreeSet<(Instant, usize)>,
    default_ratio: f64,
}

#[derive(Debug, Clone)]
struct RegionSlot {
    name: String,
    over: RegionOverride,
    accounts: usize,
    unhealthy: usize,
    /// Views of this region, one per distinct outage ratio among its tenants.
    views: Vec<usize>,
}

#[derive(Debug, Clone)]
struct AccountSlot {
    key: String,
    region: usize,
    health: Health,
    /// When the current Healthy verdict started; `None` unless Healthy.
    healthy_since: Option<Instant>,
    /// Tenants using this account as primary or secondary, each once.
    tenants: Vec<usize>,
}

/// A region as seen through one outage ratio. Tenants sharing a ratio share the region's
/// down/up history, so a change of the unhealthy count only touches the tenants whose ratio it
/// crosses.
#[derive(Debug, Clone)]
struct View {
    region: usize,
    ratio: f64,
    down: bool,
    /// When the view last stopped being down (or when it was built).
    up_since: Instant,
    /// Tenants with an account in this region and this ratio, each once.
    tenants: Vec<usize>,
}

#[derive(Debug, Clone)]
struct TenantSlot {
    name: String,
    primary: usize,
    secondary: Option<usize>,
    policy: Policy,
    primary_view: usize,
    secondary_view: Option<usize>,
    state: TenantState,
    pending: Option<Instant>,
}

/// How an account stands for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Healthy and its region is not down.
    Usable,
    /// Unknown health, region up.
    Neither,
    /// Unhealthy, or its region is down (or, for a secondary, absent).
    Bad,
}

impl Engine {
    /// An engine with every account [`Health::Unknown`], every region [`RegionOverride::Auto`] and
    /// every tenant on [`Side::Primary`], generation 0, [`Mode::Auto`].
    ///
    /// `default_ratio` is the outage ratio [`Engine::region_down`] answers with; tenants use their
    /// own [`Policy::region_outage_ratio`].
    ///
    /// # Panics
    /// If a definition refers to an account or region index out of range.
    pub fn new(
        regions: Vec<RegionDef>,
        accounts: Vec<AccountDef>,
        tenants: Vec<TenantDef>,
        default_ratio: f64,
        now: Instant,
    ) -> Engine {
        let mut engine = Engine::assemble(regions, accounts, tenants, default_ratio, now);
        // All Unknown and all Auto: nothing is down and no tenant can move, so no evaluation.
        engine.refresh_all_views(now, None);
        engine
    }

    /// A new engine for a new config, carrying state over by identity, plus the transitions that
    /// re-evaluating every tenant under the new config caused.
    ///
    /// Carried: account health and healthy-since by [`AccountDef::key`]; region override by
    /// [`RegionDef::name`]; tenant side, reject, generation and mode by [`TenantDef::name`]. A
    /// tenant whose primary or secondary key changed restarts on its primary (with a
    /// [`Cause::Reconfigured`] transition if that changes its side or reject), keeping its
    /// generation and its mode; a pin to a secondary it no longer has becomes [`Mode::Auto`].
    /// Health is copied, never recomputed, so an unhealthy account stays unhealthy.
    ///
    /// # Panics
    /// If a definition refers to an account or region index out of range.
    pub fn rebuild(
        &self,
        regions: Vec<RegionDef>,
        accounts: Vec<AccountDef>,
        tenants: Vec<TenantDef>,
        default_ratio: f64,
        now: Instant,
    ) -> (Engine, Vec<Transition>) {
        let mut next = Engine::assemble(regions, accounts, tenants, default_ratio, now);

        let old_regions: HashMap<&str, &RegionSlot> =
            self.regions.iter().map(|r| (r.name.as_str(), r)).collect();
        for region in &mut next.regions {
            if let Some(old) = old_regions.get(region.name.as_str()) {
                region.over = old.over;
            }
        }

        let old_accounts: HashMap<&str, &AccountSlot> =
            self.accounts.iter().map(|a| (a.key.as_str(), a)).collect();
        for account in &mut next.accounts {
            if let Some(old) = old_accounts.get(account.key.as_str()) {
                account.health = old.health;
                account.healthy_since = old.healthy_since;
            }
            if account.health == Health::Unhealthy {
                next.regions[account.region].unhealthy += 1;
            }
        }

        next.refresh_all_views(now, Some(self));

        let old_tenants: HashMap<&str, usize> = self
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let mut out = Vec::new();
        for t in 0..next.tenants.len() {
            let Some(&old_index) = old_tenants.get(next.tenants[t].name.as_str()) else {
                continue;
            };
            let old = &self.tenants[old_index];
            let same_accounts = {
                let new = &next.tenants[t];
                self.accounts[old.primary].key == next.accounts[new.primary].key
                    && old.secondary.map(|a| self.accounts[a].key.as_str())
                        == new.secondary.map(|a| next.accounts[a].key.as_str())
            };
            if same_accounts {
                next.tenants[t].state = old.state;
                continue;
            }
            let mut mode = old.state.mode;
            if mode == Mode::Pinned(Side::Secondary) && next.tenants[t].secondary.is_none() {
                mode = Mode::Auto;
            }
            let slot = &mut next.tenants[t];
            slot.state = TenantState { mode, ..old.state };
            next.apply(t, Side::Primary, false, Cause::Reconfigured, now, &mut out);
        }

        for t in 0..next.tenants.len() {
            next.evaluate(t, now, None, &mut out);
        }
        (next, out)
    }

    /// Records an account's new verdict and re-evaluates the tenants it affects: the tenants of
    /// that account and, when the region's down status changes for some outage ratio, the
    /// tenants with an account in that region and that ratio.
    pub fn set_health(&mut self, account: usize, health: Health, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        let slot = &mut self.accounts[account];
        if slot.health == health {
            return out;
        }
        let was_unhealthy = slot.health == Health::Unhealthy;
        slot.health = health;
        slot.healthy_since = (health == Health::Healthy).then_some(now);
        let region = slot.region;
        if was_unhealthy != (health == Health::Unhealthy) {
            let r = &mut self.regions[region];
            if was_unhealthy {
                r.unhealthy -= 1;
            } else {
                r.unhealthy += 1;
            }
            self.refresh_region(region, now, &mut out);
        }
        for i in 0..self.accounts[account].tenants.len() {
            let t = self.accounts[account].tenants[i];
            self.evaluate(t, now, None, &mut out);
        }
        out
    }

    /// Sets the operator's override for a region and re-evaluates the tenants whose view of the
    /// region changed.
    pub fn set_region(
        &mut self,
        region: usize,
        over: RegionOverride,
        now: Instant,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        if self.regions[region].over != over {
            self.regions[region].over = over;
            self.refresh_region(region, now, &mut out);
        }
        out
    }

    /// Pins a tenant to a side or returns it to automatic mode.
    ///
    /// A resulting change carries [`Cause::Pinned`] or [`Cause::Unpinned`] (the usual causes if
    /// the tenant was already in [`Mode::Auto`]). Pinning a tenant without a secondary to
    /// [`Side::Secondary`] is ignored: there is nothing to send its requests to.
    pub fn set_mode(&mut self, tenant: usize, mode: Mode, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        let slot = &mut self.tenants[tenant];
        if mode == Mode::Pinned(Side::Secondary) && slot.secondary.is_none() {
            return out;
        }
        let old = slot.state.mode;
        slot.state.mode = mode;
        let cause = match (old, mode) {
            (_, Mode::Pinned(_)) => Some(Cause::Pinned),
            (Mode::Pinned(_), Mode::Auto) => Some(Cause::Unpinned),
            (Mode::Auto, Mode::Auto) => None,
        };
        self.evaluate(tenant, now, cause, &mut out);
        out
    }

    /// The operator's manual failback: moves an automatic tenant on its secondary to its primary
    /// if the primary is usable, whatever the failback mode and hold-down. A no-op otherwise,
    /// including for pinned tenants (unpin first).
    pub fn request_failback(&mut self, tenant: usize, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        let slot = &self.tenants[tenant];
        if slot.state.mode == Mode::Auto
            && slot.state.side == Side::Secondary
            && self.standing(slot.primary, slot.primary_view) == Standing::Usable
        {
            self.apply(
                tenant,
                Side::Primary,
                false,
                Cause::ManualFailback,
                now,
                &mut out,
            );
            self.sync_pending(tenant, now);
        }
        out
    }

    /// Adopts a decision committed by the fleet (fleet mode): the tenant is on `side` with
    /// `reject`, at generation `max(epoch, generation)`. Emits a transition ([`Cause::Fleet`])
    /// when (side, reject) changes. A decision equal to the tenant's state at an `epoch` not
    /// newer than its generation changes nothing (a replay, or this replica's own proposal
    /// committed). A decision that differs is adopted whatever its epoch: the generation also
    /// counts this replica's own moves (proposals the fleet may never commit), so it can run
    /// ahead of the fleet's epochs, and refusing the decision would leave the engine on a side
    /// the fleet did not commit. The fleet delivers a tenant's decisions in epoch order (watch
    /// order; a resync reads the latest), so an older decision never follows a newer one.
    pub fn adopt(
        &mut self,
        tenant: usize,
        side: Side,
        reject: bool,
        epoch: u64,
        now: Instant,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let slot = &self.tenants[tenant];
        if epoch <= slot.state.generation && (slot.state.side, slot.state.reject) == (side, reject)
        {
            return out;
        }
        let state = &mut self.tenants[tenant].state;
        let from = state.side;
        let changed = (state.side, state.reject) != (side, reject);
        state.side = side;
        state.reject = reject;
        state.generation = epoch.max(state.generation);
        if changed {
            out.push(Transition {
                tenant,
                from,
                to: side,
                reject,
                cause: Cause::Fleet,
                generation: state.generation,
                at: now,
            });
        }
        self.sync_pending(tenant, now);
        out
    }

    /// Performs every automatic failback whose hold-down has expired by `now`.
    ///
    /// Costs O(d log p) for d due failbacks among p pending ones.
    pub fn tick(&mut self, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        while let Some(&(deadline, tenant)) = self.pending.first() {
            if deadline > now {
                break;
            }
            self.pending.pop_first();
            self.tenants[tenant].pending = None;
            // Entries are kept in sync eagerly, so this fails back; should it not, `evaluate`
            // registers a deadline later than `now` or none, so the loop terminates.
            self.evaluate(tenant, now, None, &mut out);
        }
        out
    }

    /// The earliest instant at which [`Engine::tick`] could change something, if any. O(log p).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.first().map(|&(deadline, _)| deadline)
    }

    /// When the tenant's pending automatic failback is due, if it has one.
    pub fn pending_failback(&self, tenant: usize) -> Option<Instant> {
        self.tenants[tenant].pending
    }

    /// The tenant's current state.
    pub fn tenant(&self, tenant: usize) -> TenantState {
        self.tenants[tenant].state
    }

    /// The tenant's name.
    pub fn tenant_name(&self, tenant: usize) -> &str {
        &self.tenants[tenant].name
    }

    /// The account's current verdict.
    pub fn account_health(&self, account: usize) -> Health {
        self.accounts[account].health
    }

    /// When the account's current Healthy verdict started; `None` unless Healthy.
    pub fn account_healthy_since(&self, account: usize) -> Option<Instant> {
        self.accounts[account].healthy_since
    }

    /// Whether the region is down: overridden down, or down by the default outage ratio.
    pub fn region_down(&self, region: usize) -> bool {
        self.region_down_at(region, self.default_ratio)
    }

    /// Whether the region is down for tenants with this outage ratio.
    pub fn region_down_at(&self, region: usize, ratio: f64) -> bool {
        let r = &self.regions[region];
        r.over == RegionOverride::Down || ratio_down(r.unhealthy, r.accounts, ratio)
    }

    /// The operator's override for the region.
    pub fn region_override(&self, region: usize) -> RegionOverride {
        self.regions[region].over
    }

    /// Number of tenants.
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// Number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Number of regions.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// Builds the slots and indices, with fresh state.
    fn assemble(
        regions: Vec<RegionDef>,
        accounts: Vec<AccountDef>,
        tenants: Vec<TenantDef>,
        default_ratio: f64,
        now: Instant,
    ) -> Engine {
        let mut regions: Vec<RegionSlot> = regions
            .into_iter()
            .map(|r| RegionSlot {
                name: r.name,
                over: RegionOverride::Auto,
                accounts: 0,
                unhealthy: 0,
                views: Vec::new(),
            })
            .collect();
        let mut accounts: Vec<AccountSlot> = accounts
            .into_iter()
            .map(|a| {
                regions[a.region].accounts += 1;
                AccountSlot {
                    key: a.key,
                    region: a.region,
                    health: Health::Unknown,
                    healthy_since: None,
                    tenants: Vec::new(),
                }
            })
            .collect();

        let mut views: Vec<View> = Vec::new();
        let mut view_ids: HashMap<(usize, u64), usize> = HashMap::new();
        let mut view_of = |region: usize, ratio: f64, regions: &mut Vec<RegionSlot>| -> usize {
            *view_ids
                .entry((region, ratio.to_bits()))
                .or_insert_with(|| {
                    views.push(View {
                        region,
                        ratio,
                        down: false,
                        up_since: now,
                        tenants: Vec::new(),
                    });
                    regions[region].views.push(views.len() - 1);
                    views.len() - 1
                })
        };
        let mut slots = Vec::with_capacity(tenants.len());
        let mut memberships = Vec::with_capacity(tenants.len());
        for (t, def) in tenants.into_iter().enumerate() {
            let ratio = def.policy.region_outage_ratio;
            let primary_view = view_of(accounts[def.primary].region, ratio, &mut regions);
            let secondary_view = def
                .secondary
                .map(|s| view_of(accounts[s].region, ratio, &mut regions));
            accounts[def.primary].tenants.push(t);
            if let Some(s) = def.secondary.filter(|&s| s != def.primary) {
                accounts[s].tenants.push(t);
            }
            memberships.push((primary_view, secondary_view));
            slots.push(TenantSlot {
                name: def.name,
                primary: def.primary,
                secondary: def.secondary,
                policy: def.policy,
                primary_view,
                secondary_view,
                state: TenantState {
                    side: Side::Primary,
                    reject: false,
                    generation: 0,
                    mode: Mode::Auto,
                },
                pending: None,
            });
        }
        for (t, (pv, sv)) in memberships.into_iter().enumerate() {
            views[pv].tenants.push(t);
            if let Some(sv) = sv.filter(|&sv| sv != pv) {
                views[sv].tenants.push(t);
            }
        }
        Engine {
            regions,
            accounts,
            views,
            tenants: slots,
            pending: BTreeSet::new(),
            default_ratio,
        }
    }

    /// Computes every view's down status from its region; `up_since` is carried from the same
    /// (region name, ratio) view of `old` when it was and is up, else `now`.
    fn refresh_all_views(&mut self, now: Instant, old: Option<&Engine>) {
        let old_views: HashMap<(&str, u64), &View> = old
            .map(|e| {
                e.views
                    .iter()
                    .map(|v| ((e.regions[v.region].name.as_str(), v.ratio.to_bits()), v))
                    .collect()
            })
            .unwrap_or_default();
        for view in &mut self.views {
            let r = &self.regions[view.region];
            view.down =
                r.over == RegionOverride::Down || ratio_down(r.unhealthy, r.accounts, view.ratio);
            view.up_since = match old_views.get(&(r.name.as_str(), view.ratio.to_bits())) {
                Some(o) if !o.down && !view.down => o.up_since,
                _ => now,
            };
        }
    }

    /// Recomputes the region's views and re-evaluates the tenants of those that flipped.
    fn refresh_region(&mut self, region: usize, now: Instant, out: &mut Vec<Transition>) {
        let r = &self.regions[region];
        let mut flipped = Vec::new();
        for &v in &r.views {
            let view = &mut self.views[v];
            let down =
                r.over == RegionOverride::Down || ratio_down(r.unhealthy, r.accounts, view.ratio);
            if down != view.down {
                view.down = down;
                if !down {
                    view.up_since = now;
                }
                flipped.push(v);
            }
        }
        // Every view is updated before any tenant is evaluated; a tenant is in at most one view
        // per region, so it is evaluated at most once here.
        for v in flipped {
            for i in 0..self.views[v].tenants.len() {
                let t = self.views[v].tenants[i];
                self.evaluate(t, now, None, out);
            }
        }
    }

    fn standing(&self, account: usize, view: usize) -> Standing {
        match self.accounts[account].health {
            _ if self.views[view].down => Standing::Bad,
            Health::Unhealthy => Standing::Bad,
            Health::Healthy => Standing::Usable,
            Health::Unknown => Standing::Neither,
        }
    }

    fn secondary_standing(&self, t: &TenantSlot) -> Standing {
        match (t.secondary, t.secondary_view) {
            (Some(a), Some(v)) => self.standing(a, v),
            _ => Standing::Bad,
        }
    }

    /// When an automatic failback of `t` would be due: the primary must be usable, and it has
    /// been usable since the later of its healthy-since and its region view's up-since.
    fn failback_deadline(&self, t: &TenantSlot) -> Option<Instant> {
        if self.standing(t.primary, t.primary_view) != Standing::Usable {
            return None;
        }
        let since = self.accounts[t.primary]
            .healthy_since?
            .max(self.views[t.primary_view].up_since);
        since.checked_add(t.policy.hold_down)
    }

    /// The (side, reject) the rules want for tenant `t` now, and the cause if it is a change.
    fn decide(&self, tenant: usize, now: Instant) -> (Side, bool, Cause) {
        let t = &self.tenants[tenant];
        let side = match t.state.mode {
            Mode::Pinned(side) => return (side, false, Cause::Pinned),
            Mode::Auto => t.state.side,
        };
        let primary = self.standing(t.primary, t.primary_view);
        let secondary = self.secondary_standing(t);
        let reject = t.policy.both_down == BothDown::Reject;
        match side {
            Side::Primary if primary == Standing::Bad => {
                if secondary == Standing::Usable {
                    (Side::Secondary, false, self.primary_bad_cause(t))
                } else {
                    (Side::Primary, reject, Cause::BothDown)
                }
            }
            Side::Primary => (Side::Primary, false, Cause::Recovered),
            Side::Secondary if secondary == Standing::Bad => {
                if primary == Standing::Usable {
                    (Side::Primary, false, Cause::SecondaryUnhealthy)
                } else {
                    (Side::Secondary, reject, Cause::BothDown)
                }
            }
            Side::Secondary => {
                let due = t.policy.failback == Failback::Auto
                    && self.failback_deadline(t).is_some_and(|d| now >= d);
                if due {
                    (Side::Primary, false, Cause::Failback)
                } else {
                    (Side::Secondary, false, Cause::Recovered)
                }
            }
        }
    }

    /// Why a tenant leaves a bad primary: the region's cause if its region is down, preferring
    /// the operator's override.
    fn primary_bad_cause(&self, t: &TenantSlot) -> Cause {
        let view = &self.views[t.primary_view];
        let region = view.region;
        if self.regions[region].over == RegionOverride::Down {
            Cause::RegionMarkedDown { region }
        } else if view.down {
            Cause::RegionOutage { region }
        } else {
            Cause::PrimaryUnhealthy
        }
    }

    /// Re-evaluates one tenant; `cause` replaces the rule's cause when given.
    fn evaluate(
        &mut self,
        tenant: usize,
        now: Instant,
        cause: Option<Cause>,
        out: &mut Vec<Transition>,
    ) {
        let (side, reject, rule_cause) = self.decide(tenant, now);
        self.apply(tenant, side, reject, cause.unwrap_or(rule_cause), now, out);
        self.sync_pending(tenant, now);
    }

    /// Sets (side, reject); on a change, bumps the generation and records the transition.
    fn apply(
        &mut self,
        tenant: usize,
        side: Side,
        reject: bool,
        cause: Cause,
        now: Instant,
        out: &mut Vec<Transition>,
    ) {
        let state = &mut self.tenants[tenant].state;
        if state.side == side && state.reject == reject {
            return;
        }
        let from = state.side;
        state.side = side;
        state.reject = reject;
        state.generation += 1;
        out.push(Transition {
            tenant,
            from,
            to: side,
            reject,
            cause,
            generation: state.generation,
            at: now,
        });
    }

    /// Makes the tenant's pending failback (and its entry in `pending`) match its state.
    fn sync_pending(&mut self, tenant: usize, now: Instant) {
        let t = &self.tenants[tenant];
        let want = if t.state.mode == Mode::Auto
            && t.state.side == Side::Secondary
            && t.policy.failback == Failback::Auto
            && self.secondary_standing(t) != Standing::Bad
        {
            self.failback_deadline(t).filter(|&d| d > now)
        } else {
            None
        };
        let slot = &mut self.tenants[tenant];
        if slot.pending == want {
            return;
        }
        if let Some(old) = slot.pending {
            self.pending.remove(&(old, tenant));
        }
        if let Some(new) = want {
            self.pending.insert((new, tenant));
        }
        slot.pending = want;
    }
}

/// The ratio test: a region outage needs corroboration. At least two accounts are unhealthy,
/// and they are more than `ratio` of the region's accounts (all of them when `ratio` is 1), so
/// one account (one tenant's revoked key or exhausted quota) never takes a region down.
fn ratio_down(unhealthy: usize, accounts: usize, ratio: f64) -> bool {
    unhealthy >= MIN_OUTAGE_ACCOUNTS
        && (unhealthy as f64 / accounts as f64 > ratio || (unhealthy == accounts && ratio >= 1.0))
}

/// Unhealthy accounts a region needs, at the least, to be down by ratio.
pub const MIN_OUTAGE_ACCOUNTS: usize = 2;
