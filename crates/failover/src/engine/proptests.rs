//! Property tests: random inputs over small random topologies, checked against a model of
//! health, overrides and region up-times kept independently of the engine.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;

use super::Engine;
use crate::{
    AccountDef, BothDown, Cause, Failback, Health, Mode, Policy, RegionDef, RegionOverride, Side,
    TenantDef, TenantState, Transition,
};

const REGIONS: usize = 3;
const RATIOS: [f64; 3] = [0.34, 0.5, 1.0];

#[derive(Debug, Clone)]
enum Op {
    Health(Index, Health),
    Region(Index, RegionOverride),
    Mode(Index, Mode),
    Failback(Index),
    Tick,
}

#[derive(Debug, Clone)]
struct Topology {
    accounts: Vec<usize>,
    tenants: Vec<(Index, Option<Index>, Policy)>,
}

impl Topology {
    fn defs(&self) -> (Vec<RegionDef>, Vec<AccountDef>, Vec<TenantDef>) {
        let regions = (0..REGIONS)
            .map(|i| RegionDef {
                name: format!("r{i}"),
            })
            .collect();
        let accounts = self
            .accounts
            .iter()
            .enumerate()
            .map(|(i, &region)| AccountDef {
                key: format!("a{i}"),
                region,
            })
            .collect();
        let n = self.accounts.len();
        let tenants = self
            .tenants
            .iter()
            .enumerate()
            .map(|(i, (p, s, policy))| TenantDef {
                name: format!("t{i}"),
                primary: p.index(n),
                secondary: s.as_ref().map(|s| s.index(n)),
                policy: *policy,
            })
            .collect();
        (regions, accounts, tenants)
    }
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        1 => Just(Health::Unknown),
        3 => Just(Health::Healthy),
        3 => Just(Health::Unhealthy),
    ]
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Primary), Just(Side::Secondary)]
}

fn policy() -> impl Strategy<Value = Policy> {
    (any::<bool>(), 0u64..=20, any::<bool>(), 0..RATIOS.len()).prop_map(|(auto, hold, stay, r)| {
        Policy {
            failback: if auto {
                Failback::Auto
            } else {
                Failback::Manual
            },
            hold_down: Duration::from_secs(hold),
            both_down: if stay {
                BothDown::Stay
            } else {
                BothDown::Reject
            },
            region_outage_ratio: RATIOS[r],
        }
    })
}

fn topology() -> impl Strategy<Value = Topology> {
    (
        prop::collection::vec(0..REGIONS, 1..=6),
        prop::collection::vec(
            (
                any::<Index>(),
                prop::option::weighted(0.8, any::<Index>()),
                policy(),
            ),
            1..=5,
        ),
    )
        .prop_map(|(accounts, tenants)| Topology { accounts, tenants })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<Index>(), health()).prop_map(|(a, h)| Op::Health(a, h)),
        2 => (any::<Index>(), prop_oneof![Just(RegionOverride::Auto), Just(RegionOverride::Down)])
            .prop_map(|(r, o)| Op::Region(r, o)),
        2 => (any::<Index>(), prop_oneof![Just(Mode::Auto), side().prop_map(Mode::Pinned)])
            .prop_map(|(t, m)| Op::Mode(t, m)),
        1 => any::<Index>().prop_map(Op::Failback),
        3 => Just(Op::Tick),
    ]
}

fn ops() -> impl Strategy<Value = Vec<(u64, Op)>> {
    prop::collection::vec((0u64..=12, op()), 0..40)
}

/// Applies one op to the engine.
fn apply(engine: &mut Engine, op: &Op, now: Instant) -> Vec<Transition> {
    match op {
        Op::Health(a, h) => engine.set_health(a.index(engine.account_count()), *h, now),
        Op::Region(r, o) => engine.set_region(r.index(engine.region_count()), *o, now),
        Op::Mode(t, m) => engine.set_mode(t.index(engine.tenant_count()), *m, now),
        Op::Failback(t) => engine.request_failback(t.index(engine.tenant_count()), now),
        Op::Tick => engine.tick(now),
    }
}

/// Health, overrides and per-(region, ratio) up-times, tracked from the inputs alone.
struct Model {
    region_of: Vec<usize>,
    health: Vec<Health>,
    healthy_since: Vec<Option<Instant>>,
    over: Vec<RegionOverride>,
    /// (region, ratio index) -> (down, up since).
    views: HashMap<(usize, usize), (bool, Instant)>,
}

impl Model {
    fn new(region_of: Vec<usize>, base: Instant) -> Model {
        let n = region_of.len();
        let mut views = HashMap::new();
        for r in 0..REGIONS {
            for q in 0..RATIOS.len() {
                views.insert((r, q), (false, base));
            }
        }
        Model {
            region_of,
            health: vec![Health::Unknown; n],
            healthy_since: vec![None; n],
            over: vec![RegionOverride::Auto; REGIONS],
            views,
        }
    }

    fn region_down(&self, region: usize, ratio: f64) -> bool {
        let members: Vec<_> = (0..self.health.len())
            .filter(|&a| self.region_of[a] == region)
            .collect();
        let bad = members
            .iter()
            .filter(|&&a| self.health[a] == Health::Unhealthy)
            .count();
        self.over[region] == RegionOverride::Down
            || (bad >= 2 && (bad as f64 / members.len() as f64 > ratio || bad == members.len()))
    }

    fn unhealthy_in(&self, region: usize) -> usize {
        (0..self.health.len())
            .filter(|&a| self.region_of[a] == region && self.health[a] == Health::Unhealthy)
            .count()
    }

    fn usable(&self, account: usize, ratio: f64) -> bool {
        self.health[account] == Health::Healthy && !self.region_down(self.region_of[account], ratio)
    }

    fn bad(&self, account: Option<usize>, ratio: f64) -> bool {
        account.is_none_or(|a| {
            self.health[a] == Health::Unhealthy || self.region_down(self.region_of[a], ratio)
        })
    }

    fn step(&mut self, op: &Op, now: Instant) {
        match op {
            Op::Health(a, h) => {
                let a = a.index(self.health.len());
                if self.health[a] != *h {
                    self.health[a] = *h;
                    self.healthy_since[a] = (*h == Health::Healthy).then_some(now);
                }
            }
            Op::Region(r, o) => self.over[r.index(REGIONS)] = *o,
            _ => {}
        }
        for r in 0..REGIONS {
            for (q, &ratio) in RATIOS.iter().enumerate() {
                let down = self.region_down(r, ratio);
                let view = self
                    .views
                    .get_mut(&(r, q))
                    .expect("all views are seeded in Model::new");
                if view.0 && !down {
                    view.1 = now;
                }
                view.0 = down;
            }
        }
    }

    /// The earliest instant an automatic failback to `primary` may happen.
    fn failback_allowed_at(&self, primary: usize, policy: &Policy) -> Option<Instant> {
        let q = RATIOS
            .iter()
            .position(|&r| r == policy.region_outage_ratio)?;
        let up = self.views[&(self.region_of[primary], q)].1;
        Some(self.healthy_since[primary]?.max(up) + policy.hold_down)
    }
}

type Run = (Vec<Vec<Transition>>, Vec<TenantState>);

fn replay(topo: &Topology, ops: &[(u64, Op)], base: Instant) -> Run {
    let (r, a, t) = topo.defs();
    let mut engine = Engine::new(r, a, t, 0.5, base);
    let mut now = base;
    let mut outs = Vec::new();
    for (dt, op) in ops {
        now += Duration::from_secs(*dt);
        outs.push(apply(&mut engine, op, now));
    }
    let states = (0..engine.tenant_count())
        .map(|t| engine.tenant(t))
        .collect();
    (outs, states)
}

fn check_run(topo: &Topology, ops: &[(u64, Op)]) -> Result<(), TestCaseError> {
    let base = Instant::now();
    let (r, a, tenants) = topo.defs();
    let mut engine = Engine::new(r, a, tenants.clone(), 0.5, base);
    let mut model = Model::new(topo.accounts.clone(), base);
    let mut counts = vec![0u64; tenants.len()];
    let mut now = base;
    let mut outs = Vec::new();
    for (i, (dt, op)) in ops.iter().enumerate() {
        now += Duration::from_secs(*dt);
        let before: Vec<_> = (0..tenants.len()).map(|t| engine.tenant(t)).collect();
        let out = apply(&mut engine, op, now);
        model.step(op, now);
        let ctx = format!("step {i}: {op:?}");

        // (f) a region outage is corroborated: a single unhealthy account never makes a region
        // down, whatever the ratio; and the engine agrees with the model on every region.
        for r in 0..REGIONS {
            for &ratio in &RATIOS {
                let down = engine.region_down_at(r, ratio);
                prop_assert_eq!(down, model.region_down(r, ratio), "{}: region {}", ctx, r);
                if model.over[r] == RegionOverride::Auto && model.unhealthy_in(r) < 2 {
                    prop_assert!(!down, "{}: region {} down with < 2 unhealthy", ctx, r);
                }
            }
        }

        // (e) generations: one per transition, and transitions are real changes.
        let mut last = before.clone();
        for tr in &out {
            let prev = last[tr.tenant];
            prop_assert_eq!(tr.from, prev.side, "{}", ctx);
            prop_assert!(
                (tr.to, tr.reject) != (prev.side, prev.reject),
                "{}: no-op {:?}",
                ctx,
                tr
            );
            prop_assert_eq!(tr.generation, prev.generation + 1, "{}", ctx);
            last[tr.tenant] = TenantState {
                side: tr.to,
                reject: tr.reject,
                generation: tr.generation,
                ..prev
            };
            counts[tr.tenant] += 1;
        }

        for (t, def) in tenants.iter().enumerate() {
            let state = engine.tenant(t);
            let ratio = def.policy.region_outage_ratio;
            prop_assert_eq!(state.generation, counts[t], "{}: tenant {}", ctx, t);
            prop_assert_eq!(
                (state.side, state.reject),
                (last[t].side, last[t].reject),
                "{}",
                ctx
            );

            // (c) a pinned tenant never moves by itself; a pin puts it on its side.
            let mode_op = matches!(op, Op::Mode(x, _) if x.index(tenants.len()) == t);
            if let Mode::Pinned(side) = before[t].mode {
                if !mode_op {
                    prop_assert_eq!(state, before[t], "{}: pinned tenant {} changed", ctx, t);
                }
                prop_assert!(!before[t].reject, "{}: pinned tenant rejects", ctx);
                prop_assert_eq!(before[t].side, side, "{}", ctx);
            }
            if let Mode::Pinned(side) = state.mode {
                prop_assert_eq!(
                    (state.side, state.reject),
                    (side, false),
                    "{}: tenant {}",
                    ctx,
                    t
                );
            }

            // (a) an automatic tenant is never on a bad side while the other side is usable,
            // and rejects exactly when its policy says so and nothing better exists.
            if state.mode == Mode::Auto {
                let (active, other) = match state.side {
                    Side::Primary => (Some(def.primary), def.secondary),
                    Side::Secondary => (def.secondary, Some(def.primary)),
                };
                let active_bad = model.bad(active, ratio);
                let other_usable = other.is_some_and(|o| model.usable(o, ratio));
                prop_assert!(
                    !(active_bad && other_usable),
                    "{}: tenant {} stuck on a bad side",
                    ctx,
                    t
                );
                let want_reject = def.policy.both_down == BothDown::Reject && active_bad;
                prop_assert_eq!(state.reject, want_reject, "{}: tenant {} reject", ctx, t);
            }
        }

        // (a), (b): every move is justified by its cause.
        for tr in &out {
            let def = &tenants[tr.tenant];
            let ratio = def.policy.region_outage_ratio;
            let p_usable = model.usable(def.primary, ratio);
            let s_bad = model.bad(def.secondary, ratio);
            match (tr.from, tr.to, tr.cause) {
                (_, _, Cause::Pinned) => {}
                (Side::Primary, Side::Secondary, _) => {
                    let s = def.secondary.expect("moved to a secondary it has");
                    prop_assert!(
                        model.usable(s, ratio),
                        "{}: moved onto unusable secondary {:?}",
                        ctx,
                        tr
                    );
                    prop_assert!(
                        model.bad(Some(def.primary), ratio),
                        "{}: left a good primary {:?}",
                        ctx,
                        tr
                    );
                }
                (Side::Secondary, Side::Primary, Cause::ManualFailback) => {
                    prop_assert!(p_usable, "{}: {:?}", ctx, tr);
                }
                (Side::Secondary, Side::Primary, Cause::SecondaryUnhealthy) => {
                    prop_assert!(p_usable && s_bad, "{}: {:?}", ctx, tr);
                }
                (Side::Secondary, Side::Primary, Cause::Failback | Cause::Unpinned) => {
                    prop_assert!(p_usable, "{}: {:?}", ctx, tr);
                    if !s_bad {
                        prop_assert_eq!(def.policy.failback, Failback::Auto, "{}: {:?}", ctx, tr);
                        let allowed = model.failback_allowed_at(def.primary, &def.policy);
                        prop_assert!(
                            allowed.is_some_and(|at| now >= at),
                            "{}: failback inside hold-down {:?}",
                            ctx,
                            tr
                        );
                    }
                }
                (from, to, cause) => {
                    prop_assert_eq!(from, to, "{}: unexpected move {:?}", ctx, tr);
                    let want = if tr.reject {
                        Cause::BothDown
                    } else {
                        Cause::Recovered
                    };
                    prop_assert!(
                        cause == want || cause == Cause::Unpinned,
                        "{}: {:?}",
                        ctx,
                        tr
                    );
                }
            }
        }

        // next_deadline is exact: nothing happens before it, something happens at it.
        let earliest = (0..tenants.len())
            .filter_map(|t| engine.pending_failback(t))
            .min();
        prop_assert_eq!(engine.next_deadline(), earliest, "{}", ctx);
        let mut probe = engine.clone();
        match engine.next_deadline() {
            None => prop_assert!(
                probe.tick(now + Duration::from_secs(10_000)).is_empty(),
                "{}",
                ctx
            ),
            Some(d) => {
                // `d <= now` is fine: only `tick` performs due failbacks.
                prop_assert!(
                    probe.tick(d - Duration::from_nanos(1)).is_empty(),
                    "{}",
                    ctx
                );
                prop_assert!(!probe.tick(d).is_empty(), "{}", ctx);
            }
        }
        outs.push(out);
    }

    // (d) determinism.
    let states: Vec<_> = (0..tenants.len()).map(|t| engine.tenant(t)).collect();
    let (replayed_outs, replayed_states) = replay(topo, ops, base);
    prop_assert_eq!(&replayed_outs, &outs);
    prop_assert_eq!(&replayed_states, &states);

    // Rebuilding with the same config changes nothing and heals nothing (after the due
    // failbacks, which a rebuild would otherwise perform).
    engine.tick(now);
    let (r, a, t) = topo.defs();
    let (rebuilt, out) = engine.rebuild(r, a, t, 0.5, now);
    prop_assert_eq!(out, Vec::new());
    for t in 0..tenants.len() {
        prop_assert_eq!(rebuilt.tenant(t), engine.tenant(t));
        prop_assert_eq!(rebuilt.pending_failback(t), engine.pending_failback(t));
    }
    for a in 0..engine.account_count() {
        prop_assert_eq!(rebuilt.account_health(a), engine.account_health(a));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn engine_invariants(topo in topology(), ops in ops()) {
        check_run(&topo, &ops)?;
    }
}
