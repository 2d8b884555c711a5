//! Tests of the view: votes to verdicts, revision order, epochs, disagreement reports.

use std::sync::Arc;

use super::*;

const H: Health = Health::Healthy;
const U: Health = Health::Unhealthy;

/// A view with replicas `gw1..gwN` live, each assigned (probers_per_account = N).
fn view(n: usize) -> View {
    let mut v = View::new(n);
    let mut out = Vec::new();
    for i in 1..=n {
        v.apply(&format!("replicas/gw{i}"), b"", 1, false, &mut out);
    }
    v
}

fn vote(v: &mut View, account: &str, replica: &str, health: Health) -> Vec<Effect> {
    let mut out = Vec::new();
    v.apply(
        &format!("health/{account}/{replica}"),
        health.as_str().as_bytes(),
        1,
        false,
        &mut out,
    );
    out
}

fn put(v: &mut View, key: &str, value: &str, revision: i64) -> Vec<Effect> {
    let mut out = Vec::new();
    v.apply(key, value.as_bytes(), revision, false, &mut out);
    out
}

fn verdicts(effects: &[Effect]) -> Vec<Health> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::FleetVerdict { health, .. } => Some(*health),
            _ => None,
        })
        .collect()
}

#[test]
fn the_fleet_verdict_is_a_majority_of_the_assigned() {
    // (votes of gw1..gw3, verdict effects after the last vote)
    #[rustfmt::skip]
    let cases: &[(&[Health], &[Health])] = &[
        (&[U], &[]),             // 1 of 3: no majority
        (&[U, U], &[U]),         // 2 of 3
        (&[U, H, H], &[H]),      // the third vote turns it: 2 healthy
        (&[H, H], &[H]),
        (&[U, H], &[]),          // split: the previous verdict (none) stands
    ];
    for (votes, expected) in cases {
        let mut v = view(3);
        let mut last = Vec::new();
        for (i, h) in votes.iter().enumerate() {
            last = vote(&mut v, "east-a", &format!("gw{}", i + 1), *h);
        }
        assert_eq!(verdicts(&last), *expected, "votes {votes:?}");
    }
}

#[test]
fn only_assigned_replicas_count() {
    let replicas: BTreeSet<String> = ["gw1", "gw2", "gw3"].map(String::from).into();
    let two = votes::assigned(&replicas, "east-a", 2);
    assert_eq!(two.len(), 2);
    // Stable: the same set every time, and a subset of the assignment to three.
    assert_eq!(two, votes::assigned(&replicas, "east-a", 2));
    let three = votes::assigned(&replicas, "east-a", 3);
    assert!(two.iter().all(|r| three.contains(r)));
    let outsider = three
        .iter()
        .find(|r| !two.contains(r))
        .expect("one left out");

    let mut v = view(3);
    v.probers_per_account = 2;
    assert_eq!(verdicts(&vote(&mut v, "east-a", outsider, U)), []);
    assert_eq!(verdicts(&vote(&mut v, "east-a", &two[0], U)), []);
    assert_eq!(verdicts(&vote(&mut v, "east-a", &two[1], U)), [U]);
}

#[test]
fn rendezvous_moves_little_when_a_replica_leaves() {
    let all: BTreeSet<String> = (1..=5).map(|i| format!("gw{i}")).collect();
    let mut moved = 0;
    for a in 0..200 {
        let account = format!("account-{a}");
        let before = votes::assigned(&all, &account, 2);
        let mut fewer = all.clone();
        fewer.remove("gw5");
        let after = votes::assigned(&fewer, &account, 2);
        if !before.contains(&"gw5".to_owned()) {
            assert_eq!(before, after, "{account} moved though gw5 did not probe it");
        } else {
            moved += 1;
        }
    }
    assert!(moved > 0 && moved < 200, "{moved}");
}

#[test]
fn a_replica_leaving_recomputes_and_reassigns() {
    let mut v = view(2);
    vote(&mut v, "east-a", "gw1", U);
    vote(&mut v, "east-a", "gw2", H);
    let mut out = Vec::new();
    v.apply("replicas/gw2", b"", 9, true, &mut out);
    // gw1 alone is assigned now: its vote is the majority.
    assert_eq!(verdicts(&out), [U]);
    assert!(out.contains(&Effect::ReplicasChanged));
    // The same replica key written again (a new lease) changes nothing.
    let again = put(&mut v, "replicas/gw1", "gw1", 10);
    assert_eq!(again, []);
}

#[test]
fn epochs_grow_by_one_from_the_committed_decision() {
    let mut v = view(1);
    let proposal = |side, reject| Proposal {
        tenant: Arc::from("contoso"),
        side,
        reject,
        cause: "account_down",
    };
    // No decision yet: the default (primary) needs none.
    assert_eq!(v.decision_for(&proposal(Side::Primary, false), "gw1"), None);
    let (expected, first) = v
        .decision_for(&proposal(Side::Secondary, false), "gw1")
        .expect("a change");
    assert_eq!((expected, first.epoch, first.by.as_str()), (0, 1, "gw1"));
    assert_eq!(v.isolated_epoch("contoso"), 1);

    let adopt = v.committed("contoso", 40, &first);
    assert_eq!(
        adopt,
        Effect::Adopt {
            tenant: "contoso".to_owned(),
            side: Side::Secondary,
            reject: false,
            epoch: 1,
            cause: "account_down".to_owned(),
        }
    );
    // The same side again: nothing to commit. Back to primary: epoch 2 at revision 40.
    assert_eq!(
        v.decision_for(&proposal(Side::Secondary, false), "gw1"),
        None
    );
    let (expected, second) = v
        .decision_for(&proposal(Side::Primary, false), "gw2")
        .expect("a change");
    assert_eq!((expected, second.epoch), (40, 2));
    assert_eq!(v.isolated_epoch("contoso"), 2);
}

#[test]
fn an_older_decision_is_never_adopted_after_a_newer_one() {
    let mut v = view(1);
    let newer = r#"{"side":"secondary","epoch":2}"#;
    let older = r#"{"side":"primary","epoch":1}"#;
    assert_eq!(put(&mut v, "decisions/contoso", newer, 20).len(), 1);
    // Our own commit at 20 was adopted; the watch then brings 15 and 20 again.
    assert_eq!(put(&mut v, "decisions/contoso", older, 15), []);
    assert_eq!(put(&mut v, "decisions/contoso", newer, 20), []);
    assert_eq!(put(&mut v, "decisions/contoso", "not json", 21), []);
}

#[test]
fn pins_and_regions_apply_in_revision_order() {
    let mut v = view(1);
    let down = r#"{"state":"down","reason":"INC1","source":"azure-monitor"}"#;
    let auto = r#"{"state":"auto","reason":"resolved","source":"azure-monitor"}"#;
    let effects = put(&mut v, "regions/eastus", down, 10);
    assert_eq!(
        effects,
        [Effect::SetRegion {
            region: "eastus".to_owned(),
            change: RegionChange::Hold(Holder::Operator),
            reason: "INC1".to_owned(),
            source: "azure-monitor",
        }]
    );
    assert_eq!(v.region_revision("eastus"), 10);
    // This replica wrote `auto` at 12 and applied it; the watch's copy and any older change
    // are old news.
    assert!(v.wrote_region("eastus", 12));
    assert_eq!(put(&mut v, "regions/eastus", auto, 12), []);
    assert_eq!(put(&mut v, "regions/eastus", down, 10), []);
    assert!(!v.wrote_region("eastus", 11));
    assert_eq!(v.region_revision("eastus"), 12);

    let pin = r#"{"mode":"secondary","reason":"maintenance","by":"gw2"}"#;
    assert_eq!(
        put(&mut v, "pins/contoso", pin, 30),
        [Effect::SetMode {
            tenant: "contoso".to_owned(),
            mode: Mode::Pinned(Side::Secondary),
            reason: "maintenance".to_owned(),
        }]
    );
    assert_eq!(v.pin_revision("contoso"), 30);
    // A delete: the pin goes, and the next compare-and-swap expects no key.
    let mut out = Vec::new();
    v.apply("pins/contoso", b"", 31, true, &mut out);
    assert_eq!(
        out,
        [Effect::SetMode {
            tenant: "contoso".to_owned(),
            mode: Mode::Auto,
            reason: "pin removed".to_owned(),
        }]
    );
    assert_eq!(v.pin_revision("contoso"), 0);
    assert!(!v.wrote_pin("contoso", 30));
}

#[test]
fn a_resync_forgets_revisions_but_keeps_local_verdicts() {
    let mut v = view(1);
    put(&mut v, "pins/contoso", r#"{"mode":"primary"}"#, 30);
    v.record_local("east-a", U);
    v.reset();
    assert_eq!(v.pin_revision("contoso"), 0);
    assert_eq!(v.local(), [("east-a".to_owned(), U)]);
    // The full read after a reconnect applies the pin again, even at the same revision.
    assert_eq!(
        put(&mut v, "pins/contoso", r#"{"mode":"primary"}"#, 30).len(),
        1
    );
}

fn disagreements(effects: &[Effect]) -> Vec<(Health, Health)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Disagreement { local, fleet, .. } => Some((*local, *fleet)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_disagreement_is_reported_once_per_change() {
    let mut v = view(3);
    vote(&mut v, "east-a", "gw2", H);
    vote(&mut v, "east-a", "gw3", H);
    let mut out = Vec::new();
    v.set_local("east-a", U, &mut out);
    assert_eq!(disagreements(&out), [(U, H)]);
    assert_eq!(v.disagreements(), 1);

    // Every later round, vote and replica change with the same pair: no new report.
    for _ in 0..3 {
        let mut out = Vec::new();
        v.set_local("east-a", U, &mut out);
        out.extend(vote(&mut v, "east-a", "gw2", H));
        v.recompute_all(&mut out);
        assert_eq!(disagreements(&out), []);
    }
    // A prober restarting (unknown) and coming back to the same view: still no report, but
    // the gauge shows no disagreement while it has no opinion.
    let mut out = Vec::new();
    v.set_local("east-a", Health::Unknown, &mut out);
    assert_eq!(v.disagreements(), 0);
    v.set_local("east-a", U, &mut out);
    assert_eq!(disagreements(&out), []);
    assert_eq!(v.disagreements(), 1);

    // A resync (reconnect) rebuilds the view: the same disagreement is not news either.
    v.reset();
    let mut out = Vec::new();
    for i in 1..=3 {
        v.apply(&format!("replicas/gw{i}"), b"", 1, false, &mut out);
    }
    out.extend(vote(&mut v, "east-a", "gw2", H));
    out.extend(vote(&mut v, "east-a", "gw3", H));
    assert_eq!(disagreements(&out), []);
    assert_eq!(v.disagreements(), 1);

    // Agreement clears the report; disagreeing again is reported again.
    let mut out = Vec::new();
    v.set_local("east-a", H, &mut out);
    assert_eq!(v.disagreements(), 0);
    v.set_local("east-a", U, &mut out);
    assert_eq!(disagreements(&out), [(U, H)]);
}

#[test]
fn config_objects_are_kept_by_kind_and_name() {
    let mut v = view(1);
    let effects = put(
        &mut v,
        "config/tenant/contoso",
        "[[tenant]]\nname = \"contoso\"\n",
        5,
    );
    assert_eq!(effects, [Effect::ConfigChanged]);
    assert!(v.objects().contains_key("tenant/contoso"));
    let mut out = Vec::new();
    v.apply("config/tenant/contoso", b"", 6, true, &mut out);
    assert!(v.objects().is_empty());
}

#[test]
fn resend_repeats_decisions_and_verdicts() {
    let mut v = view(1);
    put(
        &mut v,
        "decisions/contoso",
        r#"{"side":"secondary","epoch":4}"#,
        9,
    );
    vote(&mut v, "east-a", "gw1", U);
    let again = v.resend();
    assert_eq!(again.len(), 2);
    assert!(again.contains(&Effect::FleetVerdict {
        account: "east-a".to_owned(),
        health: U
    }));
}
