//! `[upstream] retry_on_status`: a primary that answers 503 while it flaps does not pass the
//! 503 to clients of replay-safe requests; the other account answers instead, marked
//! `x-pairgate-replayed: 1`. A POST without `Idempotency-Key` is never retried.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use pairgate_test_support::{Behavior, TestGateway, client, send};

use crate::support::{mock, pair_config};

/// Probes stay green (the mock's Status behavior answers probes normally) and passive 5xx
/// counting and ejection are off, so the primary keeps its traffic: only the retry can hide its
/// 503s.
const SLOW_TO_FAIL: &str = r#"
[health]
interval = "10s"
rise = 1
fall = 1000
passive_consecutive_5xx = 0
[failover]
failback = "manual"
"#;

async fn call(
    gw: &TestGateway,
    method: http::Method,
    headers: &[(&str, &str)],
) -> pairgate_test_support::Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(gw.url("/v"))
        .header(http::header::HOST, "a.example.com");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(
        &client(),
        req.body(Full::new(Bytes::from_static(b"{}")))
            .expect("request"),
    )
    .await
    .expect("reply")
}

/// A primary flapping between 503 and 200 every 200 ms for 3 s under GET load: with
/// `retry_on_status = [503]` no client sees a 503; without it, some do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_primary_503_is_retried_on_the_secondary() {
    for retry in [true, false] {
        let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
        let extra = if retry {
            format!("{SLOW_TO_FAIL}\n[upstream]\nretry_on_status = [503]\n")
        } else {
            SLOW_TO_FAIL.to_owned()
        };
        let toml = pair_config(
            &[("east", "eastus", &east), ("west", "westus", &west)],
            &[("a", "east", Some("west"))],
            &extra,
        );
        let gw = TestGateway::start(&toml).await.expect("gateway");
        let started = Instant::now();
        let (mut ok, mut refused, mut retried, mut rounds) = (0, 0, 0, 0u32);
        while started.elapsed() < Duration::from_secs(3) && rounds < 3000 {
            rounds += 1;
            let down = (started.elapsed().as_millis() / 200).is_multiple_of(2);
            east.set_behavior(if down {
                Behavior::Status(503)
            } else {
                Behavior::Normal
            });
            let reply = call(&gw, http::Method::GET, &[]).await;
            match reply.status.as_u16() {
                200 => ok += 1,
                503 => refused += 1,
                other => panic!("unexpected {other}: {}", reply.text()),
            }
            if reply
                .headers
                .get("x-pairgate-replayed")
                .is_some_and(|v| v == "1")
            {
                retried += 1;
                assert_eq!(reply.json()["account"], "west", "the retry's answer");
            }
        }
        east.set_behavior(Behavior::Normal);
        eprintln!(
            "retry={retry}: {ok} ok, {refused} refused, {retried} retried in {rounds} requests"
        );
        if retry {
            assert_eq!(refused, 0, "no 503 reaches a client");
            assert!(retried > 0, "the 503 phases were retried");
        } else {
            assert!(refused > 0, "without retry_on_status the 503s pass through");
        }
        gw.shutdown().await.expect("shutdown");
    }
}

/// Only replay-safe requests are retried: a POST without `Idempotency-Key` gets the 503; with
/// one it gets the other account's answer.
#[tokio::test]
async fn a_post_is_retried_only_with_an_idempotency_key() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let toml = pair_config(
        &[("east", "eastus", &east), ("west", "westus", &west)],
        &[("a", "east", Some("west"))],
        &format!("{SLOW_TO_FAIL}\n[upstream]\nretry_on_status = [503]\n"),
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    east.set_behavior(Behavior::Status(503));
    let plain = call(&gw, http::Method::POST, &[]).await;
    assert_eq!(plain.status, 503, "{}", plain.text());
    assert_eq!(
        west.request_count(),
        0,
        "a plain POST never reaches the other account"
    );
    let keyed = call(&gw, http::Method::POST, &[("idempotency-key", "k-1")]).await;
    assert_eq!(keyed.status, 200, "{}", keyed.text());
    assert_eq!(keyed.headers["x-pairgate-replayed"], "1");
    assert_eq!(west.request_count(), 1);
    gw.shutdown().await.expect("shutdown");
}
