//! Connection-level limits: what bounds a request waiting for its answer, idle HTTP/2
//! connections, and the gateway's own resources running out.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use pairgate_test_support::{GatewayProcess, MockUpstream, TestGateway};

use crate::support::{eventually, mock, pair_config, temp_path};

/// One tenant `solo` on one account, with `extra` config.
async fn solo(extra: &str) -> (TestGateway, MockUpstream) {
    let east = mock("east", "eastus").await;
    let toml = pair_config(
        &[("east", "eastus", &east)],
        &[("solo", "east", None)],
        &format!("[health]\ninterval = \"30s\"\n{extra}"),
    );
    (TestGateway::start(&toml).await.expect("gateway"), east)
}

/// Reads one HTTP/1.1 response with a `content-length` (bounded by 10 s): status and body.
async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("a content-length");
            if body.len() >= len {
                let status = head[9..12].parse().expect("status");
                return (status, body.to_owned());
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!("connection closed before a full response: {text:?}"),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(err)) => panic!("read failed ({err}) before a full response: {text:?}"),
            Err(_) => panic!("no full response within 10s: {text:?}"),
        }
    }
}

/// Over HTTP/1.1, a request waiting for a slow answer is bounded by
/// `upstream.response_header_timeout`, not by the client head timeout: an answer slower than
/// `header_read_timeout` arrives, one slower than the upstream timeout is a 504, and the head
/// timeout still closes the connection once it is idle again.
#[tokio::test]
async fn slow_http1_answer_is_bounded_by_the_upstream_timeout_not_the_head_timeout() {
    let (gw, _east) = solo(
        "[limits]\nheader_read_timeout = \"1s\"\n[upstream]\nresponse_header_timeout = \"2500ms\"\n",
    )
    .await;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let started = Instant::now();
    s.write_all(b"GET /delay/1800 HTTP/1.1\r\nHost: solo.example.com\r\n\r\n")
        .await
        .expect("write");
    let (status, _) = read_response(&mut s).await;
    assert_eq!(
        status, 200,
        "an answer slower than the head timeout arrives"
    );
    assert!(started.elapsed() >= Duration::from_millis(1800));

    let started = Instant::now();
    s.write_all(b"GET /delay/6000 HTTP/1.1\r\nHost: solo.example.com\r\n\r\n")
        .await
        .expect("write");
    let (status, body) = read_response(&mut s).await;
    let waited = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("upstream_timeout"), "{body}");
    assert!(
        waited >= Duration::from_millis(2400) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );

    // Idle again: the head timeout closes the keep-alive connection, timed from the answer.
    let answered = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the idle connection was not closed");
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "closed after {idle:?} idle"
    );
}

/// A client that leaves while its request waits for the upstream still gets its access-log
/// line and its metric (status 499, `client_closed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_abandoned_by_its_client_is_logged_and_counted() {
    let east = mock("east", "eastus").await;
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        pair_config(
            &[("east", "eastus", &east)],
            &[("solo", "east", None)],
            "[health]\ninterval = \"30s\"\n"
        )
    );
    let gw = GatewayProcess::spawn(&temp_path("abandoned.toml"), &toml, &[]).expect("gateway");
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    s.write_all(b"GET /delay/5000 HTTP/1.1\r\nHost: solo.example.com\r\n\r\n")
        .await
        .expect("write");
    assert!(
        eventually(Duration::from_secs(5), || async {
            east.request_count() == 1
        })
        .await,
        "the request reached the upstream"
    );
    drop(s);
    let logged = gw
        .wait_stderr(Duration::from_secs(3), |log| {
            log.lines().any(|l| {
                l.contains("pairgate::access")
                    && l.contains("status=499")
                    && l.contains("client_closed")
            })
        })
        .await;
    assert!(logged, "no access-log line:\n{}", gw.stderr());
    let metrics = gw.metrics().await.expect("metrics");
    assert!(
        metrics.contains("pairgate_requests_total{region=\"eastus\",account=\"east\",side=\"primary\",code=\"4xx\"} 1"),
        "{metrics}"
    );
}

/// An h2c connection with no open stream is closed (GOAWAY, then close) after
/// `limits.idle_timeout`; one with a stream open is not, however long the stream takes.
#[tokio::test]
async fn idle_http2_connection_is_closed_but_not_while_a_stream_is_open() {
    const IDLE: Duration = Duration::from_millis(500);
    let (gw, _east) = solo("[limits]\nidle_timeout = \"500ms\"\n").await;
    let tcp = TcpStream::connect(gw.addr()).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    let conn = tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(format!("http://solo.example.com{path}"))
            .body(Empty::<Bytes>::new())
            .expect("request")
    };

    // A stream open for three idle timeouts: the connection stays usable.
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        sender.send_request(get("/delay/1500")),
    )
    .await
    .expect("answered in time")
    .expect("response");
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.expect("body");
    let resp = sender
        .send_request(get("/t"))
        .await
        .expect("the connection is still open after a long stream");
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.expect("body");
    let last = Instant::now();

    // Then idle: closed by the gateway after the idle timeout.
    let closed = tokio::time::timeout(Duration::from_secs(5), conn).await;
    let idle = last.elapsed();
    assert!(closed.is_ok(), "the idle HTTP/2 connection was not closed");
    assert!(
        idle >= IDLE && idle < IDLE * 4,
        "closed after {idle:?} idle"
    );
}

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

/// A gateway whose descriptors are eaten by idle clients: probes that cannot open a socket are
/// not evidence against the accounts (no failover, both stay healthy), they are counted apart,
/// and the accept loop backs off with a few warnings instead of dozens a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_not_held_against_the_accounts() {
    let east = mock("east", "eastus").await;
    let west = mock("west", "westus").await;
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        pair_config(
            &[("east", "eastus", &east), ("west", "westus", &west)],
            &[("solo", "east", Some("west"))],
            "[health]\ninterval = \"300ms\"\nfast_interval = \"300ms\"\nrise = 1\nfall = 2\ntimeout = \"250ms\"\n[limits]\nheader_read_timeout = \"30s\"\n[upstream]\nmax_idle_per_account = 0\n"
        )
    );
    let gw = GatewayProcess::spawn_with_fd_limit(&temp_path("nofile.toml"), &toml, &[], 64)
        .expect("gateway");
    assert!(
        gw.stderr().contains("RLIMIT_NOFILE is below"),
        "no start-up warning about the descriptor limit:\n{}",
        gw.stderr()
    );
    let healthy = |m: &str| {
        metric(
            m,
            "pairgate_account_healthy{account=\"east\",region=\"eastus\"}",
        ) == Some(1.0)
            && metric(
                m,
                "pairgate_account_healthy{account=\"west\",region=\"westus\"}",
            ) == Some(1.0)
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.metrics().await.is_ok_and(|m| healthy(&m))
        })
        .await,
        "both accounts healthy at start"
    );

    // A client connected before the descriptors run out; every request of it needs a new
    // upstream connection (no idle pool).
    let mut early = TcpStream::connect(gw.addr()).await.expect("connect");
    let request = b"GET /t HTTP/1.1\r\nHost: solo.example.com\r\n\r\n";
    early.write_all(request).await.expect("write");
    assert_eq!(read_response(&mut early).await.0, 200);

    // Idle clients take every descriptor the gateway has left (the rest wait in the backlog).
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(gw.addr()).await.expect("connect"));
    }
    let probe_warnings = |log: &str| {
        log.lines()
            .filter(|l| l.contains("out of file descriptors") && l.contains("probe"))
            .count()
    };
    // Two warnings (they are a second apart): a dozen probes have failed for want of a socket.
    let warned = gw
        .wait_stderr(Duration::from_secs(5), |log| probe_warnings(log) >= 2)
        .await;
    assert!(
        warned,
        "no local-resource warning for probes:\n{}",
        gw.stderr()
    );
    // Live traffic that cannot open an upstream connection: a 503 of the gateway's own, and no
    // passive failure against the account.
    early.write_all(request).await.expect("write");
    let (status, body) = read_response(&mut early).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("gateway_out_of_resources"), "{body}");
    drop(idle);
    let exhausted_for = started.elapsed();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let last = loop {
        if let Ok(m) = gw.metrics().await {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "admin API unreachable after the clients left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(healthy(&last), "an account was marked unhealthy:\n{last}");
    assert!(
        metric(
            &last,
            "pairgate_local_resource_errors_total{kind=\"emfile\",at=\"probe\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "{last}"
    );
    assert!(
        metric(
            &last,
            "pairgate_local_resource_errors_total{kind=\"emfile\",at=\"upstream\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{last}"
    );
    assert!(
        last.lines()
            .filter(|l| l.starts_with("pairgate_passive_failures_total{"))
            .all(|l| l.ends_with(" 0")),
        "a passive failure was counted:\n{last}"
    );
    assert!(
        last.lines()
            .filter(|l| l.starts_with("pairgate_failovers_total{"))
            .all(|l| l.ends_with(" 0")),
        "a tenant moved:\n{last}"
    );
    let accept_warnings = gw
        .stderr()
        .lines()
        .filter(|l| {
            l.contains("accept failed")
                || (l.contains("out of file descriptors") && l.contains("accept"))
        })
        .count();
    let bound = usize::try_from(exhausted_for.as_secs()).unwrap_or(usize::MAX) + 2;
    assert!(
        accept_warnings <= bound,
        "{accept_warnings} accept warnings in {exhausted_for:?}:\n{}",
        gw.stderr()
    );
}
