//! Upstream failures map to the documented statuses, with small JSON bodies.

use std::time::{Duration, Instant};

use pairgate_test_support::{Behavior, TestGateway, get};

use crate::support::{EAST_KEY, config, mock, pair_config, regions};

/// Short upstream timeouts, and probes slow enough not to interfere.
const FAST_TIMEOUTS: &str = r#"
[upstream]
connect_timeout = "500ms"
response_header_timeout = "700ms"
[health]
interval = "30s"
"#;

/// A gateway with one tenant, `solo`, that has no secondary: failures reach the client as they
/// are, with no replay to hide them.
async fn solo() -> (TestGateway, pairgate_test_support::MockUpstream) {
    let east = mock("east", "eastus").await;
    let toml = pair_config(
        &[("east", "eastus", &east)],
        &[("solo", "east", None)],
        FAST_TIMEOUTS,
    );
    (
        TestGateway::start(&toml).await.expect("gateway starts"),
        east,
    )
}

/// (behaviour of the tenant's account, expected status, expected error code)
#[tokio::test]
async fn upstream_failures_map_to_statuses() {
    let (gw, west) = solo().await;
    let cases = [
        (Behavior::BlackHole, 504, "upstream_timeout"),
        (Behavior::Reset, 502, "upstream_reset"),
        (Behavior::Status(503), 503, ""),
    ];
    for (behavior, status, code) in cases {
        west.set_behavior(behavior);
        let started = Instant::now();
        let reply = get(&gw.url("/x"), "solo.example.com").await.expect("reply");
        assert_eq!(reply.status, status, "{behavior:?}: {}", reply.text());
        if !code.is_empty() {
            assert_eq!(reply.json()["error"], code, "{behavior:?}");
        }
        if behavior == Behavior::BlackHole {
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(600),
                "timed out too early: {took:?}"
            );
        }
    }
    west.set_behavior(Behavior::Normal);
    assert_eq!(
        get(&gw.url("/x"), "solo.example.com")
            .await
            .expect("reply")
            .status,
        200
    );
}

/// A killed account refuses connections: 502 `upstream_unreachable`; revived, it serves again.
#[tokio::test]
async fn refused_upstream_is_502() {
    let (gw, west) = solo().await;
    assert_eq!(
        get(&gw.url("/x"), "solo.example.com")
            .await
            .expect("reply")
            .status,
        200
    );
    west.kill().await;
    let reply = get(&gw.url("/x"), "solo.example.com").await.expect("reply");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.json()["error"], "upstream_unreachable");
    west.revive().await.expect("revive");
    let reply = get(&gw.url("/x"), "solo.example.com").await.expect("reply");
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// A request head over `max_request_header_bytes` is answered 431 and never forwarded.
#[tokio::test]
async fn oversized_request_head_is_431() {
    let (east, west) = regions().await;
    let extra = "[limits]\nmax_request_header_bytes = 16384\n";
    let gw =
        TestGateway::start_with_env(&config(&east, &west, extra), &[("IT_EAST_KEY", EAST_KEY)])
            .await
            .expect("gateway starts");
    let big = "a".repeat(20_000);
    let req = http::Request::get(gw.url("/x"))
        .header("host", "solo.example.com")
        .header("x-big", big)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let reply = pairgate_test_support::send(&pairgate_test_support::client(), req)
        .await
        .expect("reply");
    assert_eq!(reply.status, 431);
    assert_eq!(west.request_count(), 0);
}
