//! Health checks and failover against real mock accounts that die, black-hole, reset and flap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use pairgate_health::EventKind;
use pairgate_routing::{Health, Side};
use pairgate_test_support::{Behavior, MockUpstream, TestGateway, client, get, send};

use crate::support::{eventually, mock, pair_config};

/// Probe every 300 ms (100 ms while in transition), healthy after 2, unhealthy after 3.
const FAST_HEALTH: &str = r#"
[health]
interval = "300ms"
fast_interval = "100ms"
timeout = "200ms"
rise = 2
fall = 3

[upstream]
connect_timeout = "200ms"
response_header_timeout = "500ms"
"#;

/// Tenant `a` on `east` with `west` as its secondary, started and waited on until both
/// accounts are healthy.
async fn pair_of_accounts(east: &MockUpstream, west: &MockUpstream, extra: &str) -> TestGateway {
    let toml = pair_config(
        &[("east", "eastus", east), ("west", "westus", west)],
        &[("a", "east", Some("west"))],
        extra,
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    assert!(
        eventually(Duration::from_secs(5), || healthy(&gw, "a")).await,
        "accounts never became healthy"
    );
    gw
}

async fn side(gw: &TestGateway, tenant: &str) -> Option<(Side, bool, u64)> {
    let view = gw.gateway().control().tenant(tenant).await?;
    Some((view.state.side, view.state.reject, view.state.generation))
}

async fn healthy(gw: &TestGateway, tenant: &str) -> bool {
    match gw.gateway().control().tenant(tenant).await {
        Some(v) => {
            v.primary.1 == Health::Healthy && v.secondary.is_none_or(|s| s.1 == Health::Healthy)
        }
        None => false,
    }
}

async fn served_by(gw: &TestGateway, tenant: &str) -> String {
    let reply = get(&gw.url("/who"), &format!("{tenant}.example.com"))
        .await
        .expect("reply");
    if reply.status != 200 {
        return format!("status {}", reply.status);
    }
    reply.json()["account"].as_str().unwrap_or("?").to_owned()
}

/// Without traffic, a killed primary is detected by probes alone within interval x fall (plus
/// jitter); tenants on other accounts stay where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_moves_only_its_tenants() {
    let (east, east2, west) = (
        mock("east", "eastus").await,
        mock("east2", "eastus").await,
        mock("west", "westus").await,
    );
    let extra = format!("{FAST_HEALTH}\n[failover]\nregion_outage_ratio = 1.0\n");
    let toml = pair_config(
        &[
            ("east", "eastus", &east),
            ("east2", "eastus", &east2),
            ("west", "westus", &west),
        ],
        &[("a", "east", Some("west")), ("b", "east2", Some("west"))],
        &extra,
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    assert!(
        eventually(Duration::from_secs(5), || healthy(&gw, "a")).await,
        "accounts never became healthy"
    );
    assert_eq!(served_by(&gw, "a").await, "east");

    east.kill().await;
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            side(&gw, "a").await.map(|s| s.0) == Some(Side::Secondary)
        })
        .await,
        "tenant a never failed over"
    );
    let took = killed.elapsed();
    // interval x fall, plus 10% jitter and one probe timeout of slack for scheduling.
    assert!(
        took <= Duration::from_millis(300 * 3 * 11 / 10 + 200),
        "failover took {took:?}"
    );
    assert_eq!(served_by(&gw, "a").await, "west");
    assert_eq!(
        side(&gw, "b").await,
        Some((Side::Primary, false, 0)),
        "tenant b must not move"
    );
    assert_eq!(served_by(&gw, "b").await, "east2");
    let moved: Vec<_> = gw
        .gateway()
        .events()
        .after(0, 1000)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Transition { tenant, cause, .. } => Some((tenant.to_string(), cause.label)),
            _ => None,
        })
        .collect();
    assert_eq!(moved, vec![("a".to_owned(), "primary_unhealthy")]);
}

/// A primary that accepts but never answers fails its probes by timeout and loses its tenants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_primary_fails_over() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let gw = pair_of_accounts(&east, &west, FAST_HEALTH).await;
    east.set_behavior(Behavior::BlackHole);
    assert!(
        eventually(Duration::from_secs(5), || async {
            side(&gw, "a").await.map(|s| s.0) == Some(Side::Secondary)
        })
        .await,
        "no failover from a black hole"
    );
    assert_eq!(served_by(&gw, "a").await, "west");
}

/// Requests already waiting on a primary that turns into a black hole: once probes declare it
/// unhealthy, a replayable GET is replayed on the secondary at once instead of waiting out the
/// response-header timeout; a POST without an Idempotency-Key keeps waiting (it may still be
/// answered, and must not run twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_a_black_hole_are_replayed_when_it_is_declared_down() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let extra = FAST_HEALTH.replace(
        "response_header_timeout = \"500ms\"",
        "response_header_timeout = \"20s\"",
    );
    let gw = pair_of_accounts(&east, &west, &extra).await;
    east.set_behavior(Behavior::BlackHole);
    let started = Instant::now();
    let get_url = gw.url("/who");
    let waiting_get = tokio::spawn(async move { get(&get_url, "a.example.com").await });
    let post = Request::post(gw.url("/orders"))
        .header("host", "a.example.com")
        .body(Full::new(Bytes::from_static(b"{\"qty\":1}")))
        .expect("req");
    let waiting_post = tokio::spawn(async move { send(&client(), post).await });

    let reply = tokio::time::timeout(Duration::from_secs(10), waiting_get)
        .await
        .expect("the GET must not wait out the 20 s response-header timeout")
        .expect("task")
        .expect("reply");
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["account"], "west");
    assert_eq!(reply.headers["x-pairgate-replayed"], "1");
    // Black-hole detection is interval x fall with probe timeouts: about a second here.
    assert!(
        took < Duration::from_secs(5),
        "replayed only after {took:?}"
    );
    assert_eq!(
        gw.gateway()
            .shared()
            .stats()
            .replays_succeeded
            .load(Ordering::Relaxed),
        1,
        "the GET went to the black hole first and was replayed once"
    );
    assert_eq!(side(&gw, "a").await.map(|s| s.0), Some(Side::Secondary));
    // The POST is still waiting on east: not failed early, not replayed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting_post.is_finished(),
        "a non-idempotent POST was given up on"
    );
    assert!(
        west.requests().iter().all(|r| r.uri != "/orders"),
        "a non-idempotent POST was replayed"
    );
    waiting_post.abort();
}

/// Continuous GETs while the primary is killed: every one succeeds (replayed on the secondary
/// until the tenant has moved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failed_gets_when_the_primary_dies_under_load() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let gw = Arc::new(pair_of_accounts(&east, &west, FAST_HEALTH).await);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let replayed = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_millis(2500);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (gw, ok, failed, replayed) = (
            Arc::clone(&gw),
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&replayed),
        );
        workers.push(tokio::spawn(async move {
            let c = client();
            // Bounded: until stop_at, and never more than 50k requests per worker.
            for _ in 0..50_000 {
                if Instant::now() >= stop_at {
                    break;
                }
                let req = Request::get(gw.url("/load"))
                    .header("host", "a.example.com")
                    .body(Full::new(Bytes::new()))
                    .expect("req");
                match send(&c, req).await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if r.headers.contains_key("x-pairgate-replayed") {
                            replayed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Kill the primary once the load is flowing through it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            ok.load(Ordering::Relaxed) >= 50
        })
        .await,
        "the load never got going"
    );
    east.kill().await;
    for w in workers {
        w.await.expect("worker");
    }
    let (ok, failed, replayed) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        replayed.load(Ordering::Relaxed),
    );
    println!("GET under primary kill: ok={ok} failed={failed} replayed={replayed}");
    assert_eq!(
        failed, 0,
        "failed GETs during failover (ok={ok}, replayed={replayed})"
    );
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert!(west.request_count() > 0);
    assert_eq!(side(&gw, "a").await.map(|s| s.0), Some(Side::Secondary));
}

/// A POST that reached the primary before the reset is not replayed without an
/// Idempotency-Key; with one it is replayed exactly once and marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_replay_needs_an_idempotency_key() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    // Slow probes and a high fall: the resets below must not move the tenant.
    let extra = "[health]\ninterval = \"10s\"\ntimeout = \"1s\"\nrise = 1\nfall = 10\n";
    let gw = pair_of_accounts(&east, &west, extra).await;
    east.set_behavior(Behavior::Reset);
    let post = |key: Option<&str>| {
        let mut req = Request::post(gw.url("/orders")).header("host", "a.example.com");
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        req.body(Full::new(Bytes::from_static(b"{\"qty\":1}")))
            .expect("req")
    };
    let reply = send(&client(), post(None)).await.expect("reply");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(east.request_count(), 1, "the primary saw the POST");
    assert_eq!(
        west.request_count(),
        0,
        "a non-idempotent POST must not be replayed"
    );

    let reply = send(&client(), post(Some("order-7"))).await.expect("reply");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.headers["x-pairgate-replayed"], "1");
    assert_eq!(reply.json()["account"], "west");
    assert_eq!(west.request_count(), 1, "replayed exactly once");
    let seen = west.requests().pop().expect("west saw it");
    assert_eq!(seen.body_len, 9);
    assert_eq!(seen.header("idempotency-key"), Some("order-7"));
    assert_eq!(
        gw.gateway()
            .shared()
            .stats()
            .replays_succeeded
            .load(Ordering::Relaxed),
        1
    );
}

/// A primary flapping every 300 ms under auto failback: one failover, and no failback until it
/// has been stable for hold_down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_primary_fails_over_once_and_waits_for_hold_down() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let extra = r#"
[health]
interval = "100ms"
fast_interval = "50ms"
timeout = "80ms"
rise = 2
fall = 2
[failover]
failback = "auto"
hold_down = "2s"
"#;
    let gw = pair_of_accounts(&east, &west, extra).await;
    let flap = east.flap(Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    flap.stop().await;
    assert!(east.is_listening(), "flap stopped with the primary up");
    let transitions = |gw: &TestGateway| -> Vec<(Side, &'static str)> {
        gw.gateway()
            .events()
            .after(0, 10_000)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Transition { to, cause, .. } => Some((to, cause.label)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        transitions(&gw),
        vec![(Side::Secondary, "primary_unhealthy")],
        "exactly one failover while flapping"
    );
    assert!(
        eventually(Duration::from_secs(6), || async {
            side(&gw, "a").await.map(|s| s.0) == Some(Side::Primary)
        })
        .await,
        "never failed back after the primary stabilised"
    );
    // The hold-down runs from the primary's last healthy verdict to the failback.
    let events = gw.gateway().events().after(0, 10_000);
    let last_healthy = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::AccountHealth { account, health: Health::Healthy, .. } if &**account == "east"))
        .map(|e| e.at_unix_ms)
        .max()
        .expect("east became healthy");
    let failback = events
        .iter()
        .find(
            |e| matches!(&e.kind, EventKind::Transition { cause, .. } if cause.label == "failback"),
        )
        .map(|e| e.at_unix_ms)
        .expect("failback event");
    let held = failback - last_healthy;
    assert!(
        held >= 2000,
        "failed back {held} ms after the primary's last recovery (hold_down 2s)"
    );
    assert_eq!(
        transitions(&gw),
        vec![
            (Side::Secondary, "primary_unhealthy"),
            (Side::Primary, "failback")
        ]
    );
}

/// An unhealthy secondary is never used: the tenant stays on its dead primary (`stay`) or
/// answers 503 with Retry-After (`reject`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_secondary_prevents_failover() {
    for (policy, status) in [("stay", 502), ("reject", 503)] {
        let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
        let extra = format!("{FAST_HEALTH}\n[failover]\nboth_down = \"{policy}\"\n");
        let toml = pair_config(
            &[("east", "eastus", &east), ("west", "westus", &west)],
            &[("a", "east", Some("west"))],
            &extra,
        );
        let gw = TestGateway::start(&toml).await.expect("gateway");
        west.set_health(false);
        assert!(
            eventually(Duration::from_secs(5), || async {
                gw.gateway()
                    .control()
                    .tenant("a")
                    .await
                    .and_then(|v| v.secondary)
                    .map(|s| s.1)
                    == Some(Health::Unhealthy)
            })
            .await
        );
        east.kill().await;
        assert!(
            eventually(Duration::from_secs(5), || async {
                gw.gateway()
                    .control()
                    .tenant("a")
                    .await
                    .map(|v| v.primary.1)
                    == Some(Health::Unhealthy)
            })
            .await
        );
        // Give the controller a beat to act on the verdict, then check it did not move.
        assert!(
            eventually(Duration::from_secs(2), || async {
                side(&gw, "a").await.map(|s| s.1) == Some(policy == "reject")
            })
            .await,
            "{policy}: reject flag"
        );
        assert_eq!(
            side(&gw, "a").await.map(|s| s.0),
            Some(Side::Primary),
            "{policy}: moved onto an unhealthy secondary"
        );
        let reply = get(&gw.url("/x"), "a.example.com").await.expect("reply");
        assert_eq!(reply.status, status, "{policy}: {}", reply.text());
        if policy == "reject" {
            assert!(reply.headers.contains_key("retry-after"));
            assert_eq!(reply.json()["error"], "both_accounts_down");
        }
        assert_eq!(
            west.request_count(),
            0,
            "{policy}: the unhealthy secondary got traffic"
        );
    }
}

/// Two of three accounts of a region down: every tenant with its primary there moves,
/// including the one whose own account still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_outage_moves_every_tenant_of_the_region() {
    let (e1, e2, e3, w) = (
        mock("e1", "eastus").await,
        mock("e2", "eastus").await,
        mock("e3", "eastus").await,
        mock("w", "westus").await,
    );
    let toml = pair_config(
        &[
            ("e1", "eastus", &e1),
            ("e2", "eastus", &e2),
            ("e3", "eastus", &e3),
            ("w", "westus", &w),
        ],
        &[
            ("a", "e1", Some("w")),
            ("b", "e2", Some("w")),
            ("c", "e3", Some("w")),
            ("d", "w", Some("e3")),
        ],
        FAST_HEALTH,
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    for t in ["a", "b", "c"] {
        assert!(
            eventually(Duration::from_secs(5), || healthy(&gw, t)).await,
            "{t} not healthy"
        );
    }
    e1.kill().await;
    e2.kill().await;
    for t in ["a", "b", "c"] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                side(&gw, t).await.map(|s| s.0) == Some(Side::Secondary)
            })
            .await,
            "{t} did not move"
        );
        assert_eq!(served_by(&gw, t).await, "w", "{t}");
    }
    let c = gw.gateway().control().tenant("c").await.expect("c");
    assert_eq!(c.primary.1, Health::Healthy, "c's own primary is up");
    assert!(gw.gateway().events().after(0, 1000).iter().any(|e| matches!(
        &e.kind,
        EventKind::Transition { tenant, cause, .. } if &**tenant == "c" && cause.label == "region_outage" && cause.region.as_deref() == Some("eastus")
    )));
    assert_eq!(
        side(&gw, "d").await.map(|s| s.0),
        Some(Side::Primary),
        "d lives in westus"
    );
}

/// Fifty tenants share one account: it is probed once per interval, not fifty times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_account_is_probed_once_per_interval() {
    let (shared, west) = (mock("shared", "eastus").await, mock("west", "westus").await);
    let names: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let tenants: Vec<(&str, &str, Option<&str>)> = names
        .iter()
        .map(|n| (n.as_str(), "shared", Some("west")))
        .collect();
    let extra = "[health]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 3\n";
    let gw = TestGateway::start(&pair_config(
        &[("shared", "eastus", &shared), ("west", "westus", &west)],
        &tenants,
        extra,
    ))
    .await
    .expect("gateway");
    assert_eq!(gw.gateway().monitor().prober_count(), 2);
    assert!(eventually(Duration::from_secs(5), || healthy(&gw, "t0")).await);
    shared.reset_stats();
    let window = Duration::from_millis(2000);
    tokio::time::sleep(window).await;
    let probes = shared.probe_count();
    println!("probes at the shared account in {window:?} at 200ms interval: {probes}");
    // 10 expected; jitter and scheduling allow a little either way, 50 tenants would be 500.
    assert!((7..=13).contains(&probes), "{probes} probes in {window:?}");
}

/// The data path answers 503 while `/healthz` answers 200: after `passive_consecutive_5xx`
/// consecutive 5xx the account is ejected and the tenant moves; a live success in between
/// restarts the count; passing probes do not reinstate the account before `passive_ejection`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_live_5xx_eject_an_account_whose_probe_passes() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    // fall = 10: the passive fall count (which passing probes wipe) never decides here.
    let extra = FAST_HEALTH.replace(
        "fall = 3",
        "fall = 10\npassive_consecutive_5xx = 3\npassive_ejection = \"1500ms\"",
    );
    let gw = pair_of_accounts(&east, &west, &extra).await;
    let table = gw.gateway().shared().routes();
    let cell = table
        .accounts()
        .iter()
        .find(|a| &*a.name == "east")
        .map(|a| std::sync::Arc::clone(&a.health))
        .expect("east");
    let status = || async {
        get(&gw.url("/who"), "a.example.com")
            .await
            .expect("reply")
            .status
            .as_u16()
    };

    east.set_behavior(Behavior::Status(503));
    assert_eq!((status().await, status().await), (503, 503));
    // A live success restarts the count (the observer runs before the answer is returned).
    east.set_behavior(Behavior::Normal);
    assert_eq!(status().await, 200);
    assert_eq!(cell.consecutive_5xx(), 0);
    east.set_behavior(Behavior::Status(503));
    assert_eq!((status().await, status().await), (503, 503));
    assert_eq!(cell.consecutive_5xx(), 2, "not reset by passing probes");
    assert_eq!(side(&gw, "a").await.map(|s| s.0), Some(Side::Primary));

    // The third in a row ejects east.
    assert_eq!(status().await, 503);
    assert!(
        eventually(Duration::from_secs(2), || async {
            side(&gw, "a").await.map(|s| s.0) == Some(Side::Secondary)
        })
        .await,
        "a never left its ejected primary"
    );
    let moved = Instant::now();
    assert_eq!(served_by(&gw, "a").await, "west");
    assert!(
        gw.gateway().events().after(0, 1000).iter().any(|e| matches!(
            &e.kind,
            EventKind::AccountHealth { account, health: Health::Unhealthy, reason: "passive_5xx", .. }
                if &**account == "east"
        )),
        "no passive_5xx health event"
    );
    assert!(
        gw.gateway().events().after(0, 1000).iter().any(|e| matches!(
            &e.kind,
            EventKind::Transition { tenant, cause, .. } if &**tenant == "a" && cause.label == "passive_5xx"
        )),
        "the move does not say passive_5xx"
    );
    let detail = gw
        .admin("GET", "/v1/tenants/a", None)
        .await
        .expect("detail")
        .json();
    assert!(
        detail["history"].to_string().contains("passive_5xx"),
        "{detail}"
    );
    assert!(east.probe_count() > 0);

    // Probes keep passing, but east stays unhealthy for the ejection, then needs rise = 2.
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.gateway()
                .control()
                .tenant("a")
                .await
                .is_some_and(|v| v.primary.1 == Health::Healthy)
        })
        .await,
        "east never came back after its ejection"
    );
    let back = moved.elapsed();
    assert!(
        back >= Duration::from_millis(1400),
        "reinstated by probes {back:?} after the ejection, inside passive_ejection"
    );
    let reasons: Vec<&str> = gw
        .gateway()
        .events()
        .after(0, 1000)
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AccountHealth {
                account, reason, ..
            } if &**account == "east" => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["success", "passive_5xx", "success"]);
}

/// A probe that opts in to the account's `path_prefix` and injected headers reaches the same
/// per-account URL as requests, with the account's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_can_use_the_account_prefix_and_headers() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    // Only the prefixed probe path is healthy: anything else gets 503.
    east.set_probe_path("/acct/1/healthz");
    east.set_behavior(Behavior::Status(503));
    let account = format!("url = \"{}\"\n", east.url());
    let toml = pair_config(
        &[("east", "eastus", &east), ("west", "westus", &west)],
        &[("a", "east", Some("west"))],
        FAST_HEALTH,
    )
    .replacen(
        &account,
        &format!(
            "{account}path_prefix = \"/acct/1\"\nheaders = {{ x-acct-key = \"k1\" }}\nhealth = {{ use_account_prefix = true, use_account_headers = true }}\n"
        ),
        1,
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    assert!(
        eventually(Duration::from_secs(5), || healthy(&gw, "a")).await,
        "the prefixed probe never passed"
    );
    let probes: Vec<String> = east
        .raw_capture()
        .iter()
        .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase())
        .filter(|c| c.starts_with("get /acct/1/healthz "))
        .collect();
    assert!(!probes.is_empty(), "no probe reached /acct/1/healthz");
    assert!(
        probes.iter().all(|p| p.contains("\r\nx-acct-key: k1\r\n")),
        "{probes:?}"
    );
}
