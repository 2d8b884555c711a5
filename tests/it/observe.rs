//! What an operator sees of a request: the access-log line and the request metrics, checked on
//! a real run that includes a replayed request.

use http_body_util::Full;

use pairgate_test_support::{GatewayProcess, get, send};

use crate::support::{EAST_KEY, regions, temp_path};

/// The value of the metric line starting with `series ` (labels included), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The JSON access-log line whose `path` is `path`.
fn access_line(log: &str, path: &str) -> serde_json::Value {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "pairgate::access" && v["path"] == path)
        .unwrap_or_else(|| panic!("no access line for {path}:\n{log}"))
}

/// A client's request id is kept and sent upstream; a replayed request is logged with the side
/// and account that answered, the first account's error, and no query string; the metrics
/// count each request under the region, account and side that answered.
#[tokio::test]
async fn access_log_and_metrics_name_who_answered() {
    let (east, west) = regions().await;
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        crate::support::config(&east, &west, "")
    );
    let gw = GatewayProcess::spawn(
        &temp_path("observe.toml"),
        &toml,
        &[("IT_EAST_KEY", EAST_KEY), ("PAIRGATE_LOG_FORMAT", "json")],
    )
    .expect("gateway process");

    let req = http::Request::get(gw.url("/x"))
        .header(http::header::HOST, "contoso.example.com")
        .header("x-request-id", "it-req-1")
        .body(Full::new(bytes::Bytes::new()))
        .expect("request");
    let reply = send(&pairgate_test_support::client(), req)
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);
    let seen = east.requests().pop().expect("east saw it");
    assert_eq!(seen.header("x-request-id"), Some("it-req-1"));

    let unknown = get(&gw.url("/nobody"), "nobody.example.com")
        .await
        .expect("reply");
    assert_eq!(unknown.status, 404);

    east.kill().await;
    let replayed = get(&gw.url("/y?sig=secret-query"), "contoso.example.com")
        .await
        .expect("reply");
    assert_eq!(replayed.status, 200);
    assert!(replayed.headers.contains_key("x-pairgate-replayed"));
    let at_west = west.requests().pop().expect("west saw the replay");
    let generated = at_west
        .header("x-request-id")
        .expect("a generated request id went upstream")
        .to_owned();
    assert_eq!(generated.len(), 16, "{generated}");

    // Open client connections: three idle ones held open are counted, and uncounted once
    // closed (the scrapes go to the admin listener, not counted; connections the test's
    // earlier clients left open may close meanwhile, which only lowers the count).
    let counted = || async {
        metric(
            &gw.metrics().await.expect("metrics"),
            "pairgate_client_connections_open",
        )
        .expect("gauge")
    };
    let held = hold_open(gw.addr(), 3).await;
    // Bounded: 100 scrapes, 50 ms apart.
    let mut with_held = 0.0;
    for _ in 0..100 {
        with_held = counted().await;
        if with_held >= 3.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(with_held >= 3.0, "3 open connections counted: {with_held}");
    drop(held);
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(5), || async {
            counted().await <= with_held - 3.0
        })
        .await,
        "closed connections uncounted"
    );

    let metrics = gw.metrics().await.expect("metrics");
    let log = gw.kill();

    let first = access_line(&log, "/x");
    assert_eq!(first["request_id"], "it-req-1");
    assert_eq!(first["account"], "east");
    assert_eq!(first["side"], "primary");
    assert_eq!(first["replayed"], false);

    let line = access_line(&log, "/y");
    assert_eq!(line["request_id"], generated.as_str(), "{line}");
    assert_eq!(line["tenant"], "contoso");
    assert_eq!(line["account"], "west");
    assert_eq!(line["region"], "westus");
    assert_eq!(line["side"], "secondary", "the side that answered: {line}");
    assert_eq!(line["host"], "contoso.example.com");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert_eq!(line["replayed"], true);
    assert_eq!(line["replayed_after"], "upstream_unreachable");
    assert!(
        line["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{line}"
    );
    for field in ["duration_us", "ttfb_us", "bytes_in", "bytes_out"] {
        assert!(line[field].is_u64(), "{field} missing: {line}");
    }
    assert!(!log.contains("secret-query"), "query logged by default");
    let unknown = access_line(&log, "/nobody");
    assert_eq!(unknown["error"], "unknown_tenant");
    assert_eq!(unknown["account"], "-");

    for (series, want) in [
        (
            "pairgate_requests_total{region=\"eastus\",account=\"east\",side=\"primary\",code=\"2xx\"}",
            1.0,
        ),
        (
            "pairgate_requests_total{region=\"westus\",account=\"west\",side=\"secondary\",code=\"2xx\"}",
            1.0,
        ),
        (
            "pairgate_requests_total{region=\"none\",account=\"none\",side=\"none\",code=\"4xx\"}",
            1.0,
        ),
        (
            "pairgate_request_duration_seconds_count{region=\"westus\",account=\"west\",side=\"secondary\",code=\"2xx\"}",
            1.0,
        ),
        (
            "pairgate_tenant_requests_total{tenant=\"contoso\",code=\"2xx\"}",
            2.0,
        ),
        (
            "pairgate_request_errors_total{error=\"unknown_tenant\"}",
            1.0,
        ),
        ("pairgate_replays_total{outcome=\"succeeded\"}", 1.0),
        // Exported from the start; nothing here fills the log writer's queue.
        ("pairgate_log_lines_dropped_total", 0.0),
    ] {
        assert_eq!(metric(&metrics, series), Some(want), "{series}\n{metrics}");
    }
    assert!(
        metrics.contains("pairgate_build_info{version=\""),
        "{metrics}"
    );
    // A young process may not have used a whole clock tick yet.
    assert!(
        metric(&metrics, "process_cpu_seconds_total").is_some_and(|v| v >= 0.0),
        "{metrics}"
    );
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            metric(&metrics, name).is_some_and(|v| v > 0.0),
            "{name}\n{metrics}"
        );
    }
}

/// `n` idle TCP connections to `addr`, held open.
async fn hold_open(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    held
}

/// `bytes_out` is what the client was sent, written when the body ends: the length of a
/// chunked (undeclared) body and of a declared one; for a client that leaves mid-body, the
/// bytes sent until then and `body_complete=false`. Each request is logged once.
#[tokio::test]
async fn access_log_counts_streamed_body_bytes() {
    use http_body_util::BodyExt as _;
    let (east, west) = regions().await;
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        crate::support::config(&east, &west, "")
    );
    let gw = GatewayProcess::spawn(
        &temp_path("observe-bytes.toml"),
        &toml,
        &[("IT_EAST_KEY", EAST_KEY), ("PAIRGATE_LOG_FORMAT", "json")],
    )
    .expect("gateway process");
    // tailspin: west primary, no path prefix, so `/download` reaches the mock's endpoint.
    const HOST: &str = "tailspin.example.com";
    const CHUNKED: u64 = 200_003;
    let chunked = get(
        &gw.url(&format!("/download?bytes={CHUNKED}&chunked=1")),
        HOST,
    )
    .await
    .expect("reply");
    assert_eq!(chunked.status, 200);
    assert!(
        !chunked.headers.contains_key(http::header::CONTENT_LENGTH),
        "the body must stream without a declared length: {:?}",
        chunked.headers
    );
    assert_eq!(chunked.body.len() as u64, CHUNKED);
    let declared = get(&gw.url("/download?bytes=1234"), HOST)
        .await
        .expect("reply");
    assert_eq!(declared.body.len(), 1234);

    // The upstream sends 100000 bytes, then stalls; the client reads them all and leaves.
    const SENT: u64 = 100_000;
    let req = http::Request::get(gw.url(&format!(
        "/download?bytes=1000000&stall_after={SENT}&chunked=1"
    )))
    .header(http::header::HOST, HOST)
    .body(Full::new(bytes::Bytes::new()))
    .expect("request");
    let client = pairgate_test_support::client();
    let read = tokio::time::timeout(pairgate_test_support::WAIT, async {
        let mut body = client.request(req).await.expect("head").into_body();
        let mut read = 0u64;
        while read < SENT {
            let frame = body.frame().await.expect("a frame").expect("no error");
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        read
    })
    .await
    .expect("the first bytes arrive");
    assert_eq!(read, SENT);
    drop(client);

    let lines = |log: &str, path: &str| -> Vec<serde_json::Value> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "pairgate::access" && v["path"] == path)
            .collect()
    };
    // The last line is written when the gateway notices the client left.
    assert!(
        gw.wait_stderr(pairgate_test_support::WAIT, |log| lines(log, "/download")
            .len()
            >= 3)
            .await,
        "three access lines:\n{}",
        gw.stderr()
    );
    let log = gw.kill();
    let all = lines(&log, "/download");
    assert_eq!(all.len(), 3, "one line per request: {all:#?}");
    assert_eq!(all[0]["bytes_out"], CHUNKED, "{}", all[0]);
    assert_eq!(all[0]["body_complete"], true, "{}", all[0]);
    assert_eq!(all[1]["bytes_out"], 1234, "{}", all[1]);
    assert_eq!(all[1]["body_complete"], true, "{}", all[1]);
    assert_eq!(all[2]["status"], 200, "{}", all[2]);
    assert_eq!(all[2]["bytes_out"], SENT, "{}", all[2]);
    assert_eq!(all[2]["body_complete"], false, "{}", all[2]);
}

/// `pairgate_upstream_connections_open{account}`: connections the pools hold to an account,
/// counted while in use and idle, none for an account never used, back to 0 once the pool
/// closes them after `upstream.idle_timeout`.
#[tokio::test]
async fn upstream_connections_are_counted_per_account() {
    let (east, west) = regions().await;
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        crate::support::config(&east, &west, "[upstream]\nidle_timeout = \"1s\"\n")
    );
    let gw = GatewayProcess::spawn(
        &temp_path("observe-pool.toml"),
        &toml,
        &[("IT_EAST_KEY", EAST_KEY)],
    )
    .expect("gateway process");
    let open = |text: &str, account: &str| {
        metric(
            text,
            &format!("pairgate_upstream_connections_open{{account=\"{account}\"}}"),
        )
        .unwrap_or_else(|| panic!("no gauge for {account}:\n{text}"))
    };
    // tailspin's primary is west: east is never sent a request.
    for _ in 0..3 {
        let reply = get(&gw.url("/a"), "tailspin.example.com")
            .await
            .expect("reply");
        assert_eq!(reply.status, 200);
    }
    // One request held in flight while scraping, so its connection is open whatever the
    // idle timeout did meanwhile.
    let slow = tokio::spawn({
        let url = gw.url("/delay/1500");
        async move { get(&url, "tailspin.example.com").await }
    });
    // Bounded: 100 scrapes, 50 ms apart.
    let mut text = String::new();
    let mut counted = false;
    for _ in 0..100 {
        text = gw.metrics().await.expect("metrics");
        counted = open(&text, "west") >= 1.0;
        if counted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(counted, "west's connection counted:\n{text}");
    assert_eq!(open(&text, "east"), 0.0, "{text}");
    assert_eq!(
        slow.await.expect("task").expect("reply").status,
        200,
        "the delayed request succeeds"
    );
    // Idle connections close after the idle timeout (1 s; the pool checks about as often).
    let closed = crate::support::eventually(std::time::Duration::from_secs(10), || async {
        open(&gw.metrics().await.expect("metrics"), "west") == 0.0
    })
    .await;
    assert!(closed, "west's idle connections closed and uncounted");
}
