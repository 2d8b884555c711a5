//! Table-driven scenarios for [`Engine`], all run through [`check`].

use std::time::{Duration, Instant};

use super::Engine;
use crate::{
    AccountDef, BothDown, Cause, Failback, Health, Mode, Policy, RegionDef, RegionOverride, Side,
    TenantDef, Transition,
};

const P: Side = Side::Primary;
const S: Side = Side::Secondary;
const UP: Health = Health::Healthy;
const DOWN: Health = Health::Unhealthy;

/// A tenant of a scenario: `(primary, secondary, policy)`.
type TenantRow = (usize, Option<usize>, Policy);

/// One input of a scenario.
#[derive(Debug, Clone)]
enum In {
    Health(usize, Health),
    Region(usize, RegionOverride),
    Mode(usize, Mode),
    Failback(usize),
    Tick,
}

/// An input at `at` seconds, and what must hold after it.
struct Step {
    at: u64,
    input: In,
    /// `(tenant, side, reject)` after the step.
    want: Vec<(usize, Side, bool)>,
    /// Exactly the `(tenant, cause)` of the transitions the step emitted, in order.
    causes: Option<Vec<(usize, Cause)>>,
    /// `next_deadline()` after the step, in seconds.
    deadline: Option<Option<u64>>,
}

fn at(at: u64, input: In) -> Step {
    Step {
        at,
        input,
        want: Vec::new(),
        causes: None,
        deadline: None,
    }
}

impl Step {
    fn want(mut self, want: &[(usize, Side, bool)]) -> Step {
        self.want = want.to_vec();
        self
    }
    fn causes(mut self, causes: &[(usize, Cause)]) -> Step {
        self.causes = Some(causes.to_vec());
        self
    }
    fn deadline(mut self, deadline: Option<u64>) -> Step {
        self.deadline = Some(deadline);
        self
    }
}

fn health(account: usize, h: Health) -> In {
    In::Health(account, h)
}

fn policy(failback: Failback, hold_secs: u64, both_down: BothDown, ratio: f64) -> Policy {
    Policy {
        failback,
        hold_down: Duration::from_secs(hold_secs),
        both_down,
        region_outage_ratio: ratio,
    }
}

/// Auto failback with this hold-down, stay on both down, ratio 0.5.
fn hold(secs: u64) -> Policy {
    policy(Failback::Auto, secs, BothDown::Stay, 0.5)
}

/// A topology: account regions, and tenants `(primary, secondary, policy)`.
fn defs(
    regions: usize,
    accounts: &[usize],
    tenants: &[TenantRow],
) -> (Vec<RegionDef>, Vec<AccountDef>, Vec<TenantDef>) {
    let regions = (0..regions)
        .map(|i| RegionDef {
            name: format!("r{i}"),
        })
        .collect();
    let accounts = accounts
        .iter()
        .enumerate()
        .map(|(i, &region)| AccountDef {
            key: format!("a{i}"),
            region,
        })
        .collect();
    let tenants = tenants
        .iter()
        .enumerate()
        .map(|(i, &(primary, secondary, policy))| TenantDef {
            name: format!("t{i}"),
            primary,
            secondary,
            policy,
        })
        .collect();
    (regions, accounts, tenants)
}

fn apply(engine: &mut Engine, input: &In, now: Instant) -> Vec<Transition> {
    match *input {
        In::Health(a, h) => engine.set_health(a, h, now),
        In::Region(r, o) => engine.set_region(r, o, now),
        In::Mode(t, m) => engine.set_mode(t, m, now),
        In::Failback(t) => engine.request_failback(t, now),
        In::Tick => engine.tick(now),
    }
}

/// Runs a scenario; besides each step's expectations, checks after every step that transitions
/// are real changes, generations go up by one per transition, and `next_deadline` is the earliest
/// `pending_failback`.
fn check(name: &str, regions: usize, accounts: &[usize], tenants: &[TenantRow], steps: Vec<Step>) {
    let base = Instant::now();
    let (r, a, t) = defs(regions, accounts, tenants);
    let mut engine = Engine::new(r, a, t, 0.5, base);
    let mut counts = vec![0u64; tenants.len()];
    for (i, step) in steps.iter().enumerate() {
        let ctx = format!("{name}: step {i} ({:?} at {}s)", step.input, step.at);
        let now = base + Duration::from_secs(step.at);
        let before: Vec<_> = (0..tenants.len()).map(|t| engine.tenant(t)).collect();
        let out = apply(&mut engine, &step.input, now);
        let mut last = before.clone();
        for tr in &out {
            let prev = last[tr.tenant];
            assert_eq!(tr.from, prev.side, "{ctx}: from");
            assert!(
                (tr.to, tr.reject) != (prev.side, prev.reject),
                "{ctx}: no-op {tr:?}"
            );
            assert_eq!(
                tr.generation,
                prev.generation + 1,
                "{ctx}: generation of {tr:?}"
            );
            assert_eq!(tr.at, now, "{ctx}");
            last[tr.tenant].side = tr.to;
            last[tr.tenant].reject = tr.reject;
            last[tr.tenant].generation = tr.generation;
            counts[tr.tenant] += 1;
        }
        for (t, &count) in counts.iter().enumerate() {
            let state = engine.tenant(t);
            assert_eq!(
                (state.side, state.reject),
                (last[t].side, last[t].reject),
                "{ctx}: tenant {t} changed without a transition"
            );
            assert_eq!(state.generation, count, "{ctx}: tenant {t} generation");
        }
        for &(t, side, reject) in &step.want {
            let state = engine.tenant(t);
            assert_eq!(
                (state.side, state.reject),
                (side, reject),
                "{ctx}: tenant {t}"
            );
        }
        if let Some(causes) = &step.causes {
            let got: Vec<_> = out.iter().map(|tr| (tr.tenant, tr.cause)).collect();
            assert_eq!(&got, causes, "{ctx}: causes");
        }
        let earliest = (0..tenants.len())
            .filter_map(|t| engine.pending_failback(t))
            .min();
        assert_eq!(engine.next_deadline(), earliest, "{ctx}: next_deadline");
        if let Some(want) = step.deadline {
            let want = want.map(|s| base + Duration::from_secs(s));
            assert_eq!(engine.next_deadline(), want, "{ctx}: deadline");
        }
    }
}

/// One tenant, primary account 0 in region 0, secondary account 1 in region 1.
fn check_pair(name: &str, policy: Policy, steps: Vec<Step>) {
    check(name, 2, &[0, 1], &[(0, Some(1), policy)], steps);
}

#[test]
fn failover_on_primary_unhealthy() {
    check_pair(
        "failover",
        hold(30),
        vec![
            at(0, health(1, UP)).want(&[(0, P, false)]).causes(&[]),
            at(1, health(0, UP)).want(&[(0, P, false)]).causes(&[]),
            at(2, health(0, DOWN))
                .want(&[(0, S, false)])
                .causes(&[(0, Cause::PrimaryUnhealthy)])
                .deadline(None),
        ],
    );
}

#[test]
fn no_failover_onto_unknown_or_unhealthy_secondary() {
    check_pair(
        "unknown secondary",
        hold(30),
        vec![
            at(0, health(0, DOWN)).want(&[(0, P, false)]).causes(&[]),
            at(1, health(1, DOWN)).want(&[(0, P, false)]).causes(&[]),
            at(2, In::Region(1, RegionOverride::Down)).want(&[(0, P, false)]),
            at(3, health(1, UP)).want(&[(0, P, false)]).causes(&[]),
            at(4, In::Region(1, RegionOverride::Auto))
                .want(&[(0, S, false)])
                .causes(&[(0, Cause::PrimaryUnhealthy)]),
        ],
    );
}

#[test]
fn both_down_stay_or_reject_and_recover() {
    let reject = policy(Failback::Auto, 30, BothDown::Reject, 0.5);
    check(
        "both down",
        2,
        &[0, 1],
        &[(0, Some(1), hold(30)), (0, Some(1), reject)],
        vec![
            at(0, health(1, DOWN)),
            at(1, health(0, DOWN))
                .want(&[(0, P, false), (1, P, true)])
                .causes(&[(1, Cause::BothDown)]),
            at(2, health(0, UP))
                .want(&[(0, P, false), (1, P, false)])
                .causes(&[(1, Cause::Recovered)]),
            at(3, health(0, DOWN)).want(&[(1, P, true)]),
            // The other side becoming usable lifts reject by moving.
            at(4, health(1, UP))
                .want(&[(0, S, false), (1, S, false)])
                .causes(&[(0, Cause::PrimaryUnhealthy), (1, Cause::PrimaryUnhealthy)]),
            // Both bad while on the secondary.
            at(5, health(1, DOWN))
                .want(&[(0, S, false), (1, S, true)])
                .causes(&[(1, Cause::BothDown)]),
            at(6, health(1, UP))
                .want(&[(0, S, false), (1, S, false)])
                .causes(&[(1, Cause::Recovered)]),
        ],
    );
}

#[test]
fn auto_failback_after_hold_down() {
    check_pair(
        "auto failback",
        hold(30),
        vec![
            at(0, health(1, UP)),
            at(0, health(0, UP)),
            at(1, health(0, DOWN)).want(&[(0, S, false)]),
            at(5, health(0, UP))
                .want(&[(0, S, false)])
                .deadline(Some(35)),
            at(34, In::Tick).want(&[(0, S, false)]).causes(&[]),
            at(35, In::Tick)
                .want(&[(0, P, false)])
                .causes(&[(0, Cause::Failback)])
                .deadline(None),
        ],
    );
}

#[test]
fn flapping_primary_fails_over_once_and_back_after_stable_hold_down() {
    let mut steps = vec![
        at(0, health(1, UP)),
        at(0, health(0, UP)),
        at(1, health(0, DOWN))
            .want(&[(0, S, false)])
            .causes(&[(0, Cause::PrimaryUnhealthy)]),
    ];
    for s in 2..=20 {
        let h = if s % 2 == 0 { UP } else { DOWN };
        let deadline = (h == UP).then_some(s + 30);
        steps.push(
            at(s, health(0, h))
                .want(&[(0, S, false)])
                .causes(&[])
                .deadline(deadline),
        );
        steps.push(at(s, In::Tick).causes(&[]));
    }
    steps.push(at(49, In::Tick).want(&[(0, S, false)]).causes(&[]));
    steps.push(
        at(50, In::Tick)
            .want(&[(0, P, false)])
            .causes(&[(0, Cause::Failback)]),
    );
    check_pair("flapping", hold(30), steps);
}

#[test]
fn manual_failback_waits_for_request() {
    check_pair(
        "manual",
        policy(Failback::Manual, 30, BothDown::Stay, 0.5),
        vec![
            at(0, health(1, UP)),
            at(0, health(0, DOWN)).want(&[(0, S, false)]),
            at(1, In::Failback(0)).want(&[(0, S, false)]).causes(&[]),
            at(2, health(0, UP)).deadline(None),
            at(500, In::Tick).want(&[(0, S, false)]).causes(&[]),
            at(501, In::Failback(0))
                .want(&[(0, P, false)])
                .causes(&[(0, Cause::ManualFailback)]),
            at(502, In::Failback(0)).want(&[(0, P, false)]).causes(&[]),
        ],
    );
}

#[test]
fn request_failback_skips_hold_down() {
    check_pair(
        "manual inside hold-down",
        hold(30),
        vec![
            at(0, health(1, UP)),
            at(0, health(0, DOWN)).want(&[(0, S, false)]),
            at(10, health(0, UP)).deadline(Some(40)),
            at(11, In::Failback(0))
                .want(&[(0, P, false)])
                .causes(&[(0, Cause::ManualFailback)])
                .deadline(None),
        ],
    );
}

#[test]
fn pins_never_move() {
    let reject = policy(Failback::Auto, 0, BothDown::Reject, 0.5);
    check_pair(
        "pins",
        reject,
        vec![
            // Pin onto an Unknown secondary is honoured.
            at(0, In::Mode(0, Mode::Pinned(S)))
                .want(&[(0, S, false)])
                .causes(&[(0, Cause::Pinned)]),
            at(1, health(1, DOWN)).want(&[(0, S, false)]).causes(&[]),
            at(2, health(0, UP)).want(&[(0, S, false)]).causes(&[]),
            at(3, In::Region(1, RegionOverride::Down))
                .want(&[(0, S, false)])
                .causes(&[]),
            at(100, In::Tick).want(&[(0, S, false)]).deadline(None),
            at(101, In::Failback(0)).want(&[(0, S, false)]).causes(&[]),
            // Pin to an unhealthy primary: no reject either.
            at(102, health(0, DOWN)),
            at(103, In::Mode(0, Mode::Pinned(P)))
                .want(&[(0, P, false)])
                .causes(&[(0, Cause::Pinned)]),
            at(104, health(1, UP)).want(&[(0, P, false)]).causes(&[]),
            at(105, In::Region(1, RegionOverride::Auto))
                .want(&[(0, P, false)])
                .causes(&[]),
        ],
    );
}

#[test]
fn pin_to_missing_secondary_is_ignored() {
    check(
        "no secondary pin",
        1,
        &[0],
        &[(0, None, hold(0))],
        vec![
            at(0, In::Mode(0, Mode::Pinned(S)))
                .want(&[(0, P, false)])
                .causes(&[]),
        ],
    );
}

#[test]
fn unpin_reevaluates() {
    check_pair(
        "unpin",
        hold(30),
        vec![
            at(0, In::Mode(0, Mode::Pinned(P))),
            at(0, health(0, DOWN)),
            at(1, health(1, UP)).want(&[(0, P, false)]).causes(&[]),
            at(2, In::Mode(0, Mode::Auto))
                .want(&[(0, S, false)])
                .causes(&[(0, Cause::Unpinned)]),
            // Pinned back to a primary healthy for only 5 s; unpinning respects the hold-down.
            at(10, health(0, UP)),
            at(15, In::Mode(0, Mode::Pinned(P)))
                .want(&[(0, P, false)])
                .deadline(None),
            at(15, In::Mode(0, Mode::Pinned(S))).want(&[(0, S, false)]),
            at(16, In::Mode(0, Mode::Auto))
                .want(&[(0, S, false)])
                .causes(&[])
                .deadline(Some(40)),
            at(40, In::Tick)
                .want(&[(0, P, false)])
                .causes(&[(0, Cause::Failback)]),
            // Unpinning after the hold-down fails back at once, as an unpin.
            at(50, In::Mode(0, Mode::Pinned(S))),
            at(51, In::Mode(0, Mode::Auto))
                .want(&[(0, P, false)])
                .causes(&[(0, Cause::Unpinned)]),
        ],
    );
}

#[test]
fn region_outage_by_ratio() {
    // r0: accounts 0, 1, 2; r1: accounts 3, 4, 5. Tenant i: account i -> account i + 3.
    let tenants: Vec<_> = (0..3).map(|i| (i, Some(i + 3), hold(10))).collect();
    let mut steps: Vec<Step> = (0..6).map(|a| at(0, health(a, UP))).collect();
    steps.extend([
        at(1, health(0, DOWN))
            .want(&[(0, S, false), (1, P, false), (2, P, false)])
            .causes(&[(0, Cause::PrimaryUnhealthy)]),
        at(2, health(1, DOWN))
            .want(&[(0, S, false), (1, S, false), (2, S, false)])
            .causes(&[
                (1, Cause::RegionOutage { region: 0 }),
                (2, Cause::RegionOutage { region: 0 }),
            ])
            .deadline(None),
        // Back to 1 of 3: the region is up since 5 s; account 2 was healthy all along.
        at(5, health(1, UP)).deadline(Some(15)),
        at(14, In::Tick).causes(&[]),
        at(15, In::Tick)
            .want(&[(0, S, false), (1, P, false), (2, P, false)])
            .causes(&[(1, Cause::Failback), (2, Cause::Failback)]),
    ]);
    check("ratio", 2, &[0, 0, 0, 1, 1, 1], &tenants, steps);
}

#[test]
fn one_account_region_is_never_down_by_ratio() {
    let ratio_one = policy(Failback::Auto, 0, BothDown::Stay, 1.0);
    check(
        "single",
        2,
        &[0, 1],
        &[(0, Some(1), ratio_one)],
        vec![
            at(0, health(1, UP)),
            at(1, health(0, DOWN))
                .want(&[(0, S, false)])
                .causes(&[(0, Cause::PrimaryUnhealthy)]),
        ],
    );
}

#[test]
fn per_tenant_ratio() {
    // r0 holds accounts 0..4; tenants differ only in their ratio.
    let r = |ratio| policy(Failback::Auto, 0, BothDown::Stay, ratio);
    check(
        "per-tenant ratio",
        2,
        &[0, 0, 0, 0, 1],
        &[(1, Some(4), r(0.25)), (2, Some(4), r(0.5))],
        vec![
            at(0, health(4, UP)),
            at(0, health(1, UP)),
            at(0, health(2, UP)),
            // One of four (0.25 > 0.25 would not hold anyway): one account is never an outage.
            at(1, health(0, DOWN)).want(&[(0, P, false), (1, P, false)]),
            // Two of four: more than 0.25, not more than 0.5.
            at(2, health(3, DOWN))
                .want(&[(0, S, false), (1, P, false)])
                .causes(&[(0, Cause::RegionOutage { region: 0 })]),
            at(3, health(3, UP))
                .want(&[(0, P, false), (1, P, false)])
                .causes(&[(0, Cause::Failback)]),
        ],
    );
}

#[test]
fn one_unhealthy_account_of_two_never_takes_its_region_down() {
    // r0: accounts 0, 1; r1: accounts 2, 3. Tenant i: account i -> account i + 2, ratio 0.5.
    // Account 0's tenant moves alone (its key was revoked, say); tenant 1 stays home. Both
    // unhealthy is an outage of all of r0.
    let tenants: Vec<_> = (0..2).map(|i| (i, Some(i + 2), hold(10))).collect();
    let mut steps: Vec<Step> = (0..4).map(|a| at(0, health(a, UP))).collect();
    steps.extend([
        at(1, health(0, DOWN))
            .want(&[(0, S, false), (1, P, false)])
            .causes(&[(0, Cause::PrimaryUnhealthy)]),
        at(2, health(1, DOWN))
            .want(&[(0, S, false), (1, S, false)])
            .causes(&[(1, Cause::RegionOutage { region: 0 })]),
    ]);
    check("one of two", 2, &[0, 0, 1, 1], &tenants, steps);
}

#[test]
fn ratio_needs_two_unhealthy_and_more_than_the_ratio() {
    // (unhealthy, accounts, ratio, down)
    let rows: &[(usize, usize, f64, bool)] = &[
        (0, 2, 0.5, false),
        (1, 1, 0.5, false),
        (1, 1, 1.0, false),
        (1, 2, 0.5, false),
        (1, 2, 0.1, false),
        (1, 10, 0.01, false),
        (2, 2, 0.5, true),
        (2, 2, 1.0, true),
        (2, 3, 0.5, true),
        (2, 3, 1.0, false),
        (3, 3, 1.0, true),
        (2, 4, 0.5, false),
        (3, 4, 0.5, true),
        (2, 4, 0.25, true),
        (5, 10, 0.5, false),
        (6, 10, 0.5, true),
        (9, 10, f64::NAN, false),
    ];
    for &(unhealthy, accounts, ratio, want) in rows {
        assert_eq!(
            super::ratio_down(unhealthy, accounts, ratio),
            want,
            "{unhealthy} of {accounts} at ratio {ratio}"
        );
    }
}

#[test]
fn region_marked_down_and_back_to_auto() {
    // r0: accounts 0, 1; r1: account 2.
    let manual = policy(Failback::Manual, 10, BothDown::Stay, 0.5);
    check(
        "override",
        2,
        &[0, 0, 1],
        &[
            (0, Some(2), hold(10)),
            (1, Some(2), hold(10)),
            (1, Some(2), manual),
        ],
        vec![
            at(0, health(0, UP)),
            at(0, health(1, UP)),
            at(0, health(2, UP)),
            at(5, In::Region(0, RegionOverride::Down))
                .want(&[(0, S, false), (1, S, false), (2, S, false)])
                .causes(&[
                    (0, Cause::RegionMarkedDown { region: 0 }),
                    (1, Cause::RegionMarkedDown { region: 0 }),
                    (2, Cause::RegionMarkedDown { region: 0 }),
                ]),
            at(7, In::Region(0, RegionOverride::Auto))
                .want(&[(0, S, false), (1, S, false), (2, S, false)])
                .causes(&[])
                .deadline(Some(17)),
            at(16, In::Tick).causes(&[]),
            at(17, In::Tick)
                .want(&[(0, P, false), (1, P, false), (2, S, false)])
                .causes(&[(0, Cause::Failback), (1, Cause::Failback)])
                .deadline(None),
        ],
    );
}

#[test]
fn dead_secondary_returns_to_healthy_primary_at_once() {
    check_pair(
        "secondary dies",
        hold(30),
        vec![
            at(0, health(0, UP)),
            at(0, health(1, UP)),
            at(1, health(0, DOWN)).want(&[(0, S, false)]),
            at(2, health(0, UP)).deadline(Some(32)),
            at(3, health(1, DOWN))
                .want(&[(0, P, false)])
                .causes(&[(0, Cause::SecondaryUnhealthy)])
                .deadline(None),
        ],
    );
}

#[test]
fn tenant_without_secondary_never_moves() {
    let reject = policy(Failback::Auto, 0, BothDown::Reject, 0.5);
    check(
        "no secondary",
        2,
        &[0, 0],
        &[(0, None, hold(0)), (1, None, reject)],
        vec![
            // One unhealthy account of two is not a region outage: tenant 1 is untouched.
            at(0, health(0, DOWN))
                .want(&[(0, P, false), (1, P, false)])
                .causes(&[]),
            at(1, health(1, DOWN))
                .want(&[(0, P, false), (1, P, true)])
                .causes(&[(1, Cause::BothDown)]),
            at(2, In::Region(0, RegionOverride::Down)).causes(&[]),
            at(3, health(0, UP)).want(&[(0, P, false), (1, P, true)]),
            at(4, In::Region(0, RegionOverride::Auto)).causes(&[]),
            at(5, health(1, UP))
                .want(&[(0, P, false), (1, P, false)])
                .causes(&[(1, Cause::Recovered)]),
        ],
    );
}

#[test]
fn region_move_of_100k_tenants() {
    const N: usize = 100_000;
    let base = Instant::now();
    let (r, a, _) = defs(2, &[0, 1], &[]);
    let tenants = (0..N)
        .map(|i| TenantDef {
            name: format!("t{i}"),
            primary: 0,
            secondary: Some(1),
            policy: Policy::default(),
        })
        .collect();
    let mut engine = Engine::new(r, a, tenants, 0.5, base);
    assert!(engine.set_health(1, UP, base).is_empty());
    let out = engine.set_region(0, RegionOverride::Down, base);
    assert_eq!(out.len(), N);
    assert!(out.iter().all(|t| t.to == S && t.generation == 1));
    assert_eq!(engine.tenant(N - 1).side, S);
}

mod rebuild {
    use super::*;

    /// r0 = {a0}, r1 = {a1}; t0: a0 -> a1, t1: a0 -> a1 (manual).
    fn engine(base: Instant) -> Engine {
        let manual = policy(Failback::Manual, 30, BothDown::Stay, 0.5);
        let (r, a, t) = defs(2, &[0, 1], &[(0, Some(1), hold(30)), (0, Some(1), manual)]);
        let mut e = Engine::new(r, a, t, 0.5, base);
        e.set_health(1, UP, base);
        e.set_health(0, DOWN, base + Duration::from_secs(1));
        e.set_mode(1, Mode::Pinned(S), base);
        e.set_region(1, RegionOverride::Down, base + Duration::from_secs(2));
        e.set_region(1, RegionOverride::Auto, base + Duration::from_secs(3));
        e
    }

    #[test]
    fn carries_state_by_identity() {
        let base = Instant::now();
        let old = engine(base);
        assert_eq!(old.tenant(0).side, S);
        // Reordered regions, accounts and tenants, plus a new account and tenant.
        let regions = vec![
            RegionDef { name: "r1".into() },
            RegionDef { name: "r0".into() },
        ];
        let accounts = vec![
            AccountDef {
                key: "new".into(),
                region: 0,
            },
            AccountDef {
                key: "a1".into(),
                region: 0,
            },
            AccountDef {
                key: "a0".into(),
                region: 1,
            },
        ];
        let tenant = |name: &str, primary, secondary| TenantDef {
            name: name.into(),
            primary,
            secondary,
            policy: hold(30),
        };
        let tenants = vec![
            tenant("t9", 2, Some(0)),
            tenant("t1", 2, Some(1)),
            tenant("t0", 2, Some(1)),
        ];
        let now = base + Duration::from_secs(4);
        let (new, out) = old.rebuild(regions, accounts, tenants, 0.5, now);
        assert_eq!(out, Vec::new());
        assert_eq!(new.account_health(2), DOWN);
        assert_eq!(new.account_health(1), UP);
        assert_eq!(new.account_healthy_since(1), Some(base));
        assert_eq!(new.account_health(0), Health::Unknown);
        assert_eq!(new.tenant(2), old.tenant(0));
        assert_eq!(new.tenant(1), old.tenant(1));
        assert_eq!(new.tenant(1).mode, Mode::Pinned(S));
        assert_eq!(new.tenant(0).generation, 0);
        assert_eq!(new.region_override(1), RegionOverride::Auto);
    }

    #[test]
    fn never_heals_an_unhealthy_account() {
        let base = Instant::now();
        let mut old = engine(base);
        old.set_region(0, RegionOverride::Down, base);
        let (r, a, t) = defs(2, &[0, 1], &[(0, Some(1), hold(0))]);
        let (new, out) = old.rebuild(r, a, t, 0.5, base + Duration::from_secs(100));
        assert_eq!(new.account_health(0), DOWN);
        assert_eq!(new.region_override(0), RegionOverride::Down);
        assert!(new.region_down(0));
        assert_eq!(new.tenant(0).side, S);
        assert_eq!(out, Vec::new());
        assert_eq!(new.next_deadline(), None);
    }

    #[test]
    fn changed_accounts_restart_on_primary() {
        let base = Instant::now();
        let old = engine(base);
        let before = old.tenant(0);
        let (r, a, _) = defs(2, &[0, 1, 1], &[]);
        let t = vec![
            TenantDef {
                name: "t0".into(),
                primary: 0,
                secondary: Some(2),
                policy: hold(30),
            },
            TenantDef {
                name: "t1".into(),
                primary: 0,
                secondary: None,
                policy: hold(30),
            },
        ];
        let now = base + Duration::from_secs(10);
        let (new, out) = old.rebuild(r, a, t, 0.5, now);
        // t0 restarts on its primary (still unhealthy, a2 Unknown): one transition, generation
        // continues. t1 was pinned to a secondary it no longer has: Auto, on its primary.
        assert_eq!(new.tenant(0).side, P);
        assert_eq!(new.tenant(0).generation, before.generation + 1);
        assert_eq!(new.tenant(0).mode, Mode::Auto);
        assert_eq!(new.tenant(1).mode, Mode::Auto);
        assert_eq!(new.tenant(1).side, P);
        let causes: Vec<_> = out.iter().map(|t| (t.tenant, t.from, t.cause)).collect();
        assert_eq!(
            causes,
            vec![(0, S, Cause::Reconfigured), (1, S, Cause::Reconfigured)]
        );
    }

    #[test]
    fn carries_failback_clock() {
        let base = Instant::now();
        let (r, a, t) = defs(2, &[0, 1], &[(0, Some(1), hold(30))]);
        let mut old = Engine::new(r.clone(), a.clone(), t.clone(), 0.5, base);
        old.set_health(1, UP, base);
        old.set_health(0, DOWN, base);
        old.set_health(0, UP, base + Duration::from_secs(5));
        let (mut new, out) = old.rebuild(r, a, t, 0.5, base + Duration::from_secs(20));
        assert_eq!(out, Vec::new());
        assert_eq!(new.next_deadline(), Some(base + Duration::from_secs(35)));
        assert_eq!(new.tick(base + Duration::from_secs(35)).len(), 1);
    }
}

/// [`Engine::adopt`]: a decision equal to the tenant's state changes nothing but may raise the
/// generation to its epoch; a decision that differs is adopted whatever its epoch (the local
/// generation also counts this replica's own moves, which the fleet may not have committed),
/// with one transition from the side the tenant was on, reject-only changes included.
#[test]
fn adopting_fleet_decisions() {
    /// A local health change, or a fleet decision `(side, reject, epoch)`.
    enum Do {
        Health(usize, Health),
        Adopt(Side, bool, u64),
    }
    use Do::{Adopt, Health as H};
    // (name, inputs, transitions of the last input as (from, to, reject), state after it as
    // (side, reject, generation)).
    type Row = (
        &'static str,
        Vec<Do>,
        Vec<(Side, Side, bool)>,
        (Side, bool, u64),
    );
    let rows: Vec<Row> = vec![
        (
            "first decision",
            vec![Adopt(S, false, 1)],
            vec![(P, S, false)],
            (S, false, 1),
        ),
        (
            "replay of the decision followed",
            vec![Adopt(S, false, 1), Adopt(S, false, 1)],
            vec![],
            (S, false, 1),
        ),
        (
            "same state at a newer epoch: no transition, generation follows the epoch",
            vec![Adopt(S, false, 1), Adopt(S, false, 4)],
            vec![],
            (S, false, 4),
        ),
        (
            "reject-only change is a transition from the side the tenant is on",
            vec![Adopt(S, false, 1), Adopt(S, true, 2)],
            vec![(S, S, true)],
            (S, true, 2),
        ),
        (
            "this replica already moved (its own proposal committed): nothing to do",
            vec![H(1, UP), H(0, DOWN), Adopt(S, false, 1)],
            vec![],
            (S, false, 1),
        ),
        (
            "local generation ran ahead: a differing decision at an older epoch is adopted",
            vec![
                H(1, UP),
                H(0, DOWN),
                H(1, DOWN),
                H(0, UP),
                H(1, UP),
                H(0, DOWN),
                Adopt(P, false, 2),
            ],
            vec![(S, P, false)],
            (P, false, 3),
        ),
    ];
    for (name, inputs, transitions, (side, reject, generation)) in rows {
        let base = Instant::now();
        let (r, a, t) = defs(2, &[0, 1], &[(0, Some(1), hold(0))]);
        let mut engine = Engine::new(r, a, t, 0.5, base);
        let mut out = Vec::new();
        for input in &inputs {
            out = match *input {
                H(account, health) => engine.set_health(account, health, base),
                Adopt(side, reject, epoch) => engine.adopt(0, side, reject, epoch, base),
            };
        }
        let got: Vec<_> = out.iter().map(|t| (t.from, t.to, t.reject)).collect();
        assert_eq!(got, transitions, "{name}: transitions");
        assert!(
            out.iter().all(|t| t.cause == Cause::Fleet),
            "{name}: causes"
        );
        let state = engine.tenant(0);
        assert_eq!(
            (state.side, state.reject, state.generation),
            (side, reject, generation),
            "{name}: state"
        );
    }
}
