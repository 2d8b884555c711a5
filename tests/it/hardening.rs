//! Hostile input: framing and smuggling cases over raw sockets, HTTP/2 downgrade cases over raw
//! frames, slow clients, limits, and one tenant flooding while another is measured.

// Frame lengths, statuses and counts here are small values the test builds itself.
#![allow(clippy::cast_possible_truncation)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use pairgate_test_support::{MockUpstream, TestGateway, get};

use crate::support::{mock, pair_config};

/// One tenant `solo` on one account, short timeouts.
async fn solo(extra: &str) -> (TestGateway, MockUpstream) {
    let east = mock("east", "eastus").await;
    let toml = pair_config(
        &[("east", "eastus", &east)],
        &[("solo", "east", None)],
        &format!("[health]\ninterval = \"30s\"\n{extra}"),
    );
    (TestGateway::start(&toml).await.expect("gateway"), east)
}

/// Sends raw bytes, reads until the gateway closes (bounded), returns every status code seen.
async fn raw(gw: &TestGateway, bytes: &[u8]) -> (Vec<u16>, String) {
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let statuses = text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect();
    (statuses, text)
}

#[tokio::test]
async fn framing_cases_match_the_table() {
    let table: Value =
        serde_json::from_str(include_str!("../framing-cases.json")).expect("case table");
    let (gw, east) = solo("").await;
    let mut failures = Vec::new();
    for case in table["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        east.reset_stats();
        let (statuses, text) =
            raw(&gw, case["request"].as_str().expect("request").as_bytes()).await;
        let mut want = vec![case["status"].as_u64().expect("status") as u16];
        if let Some(then) = case.get("then_status").and_then(Value::as_u64) {
            want.push(then as u16);
        }
        if statuses != want {
            failures.push(format!(
                "{name}: statuses {statuses:?}, want {want:?}\n{text}"
            ));
        }
        let seen = east.requests();
        match &case["upstream"] {
            Value::String(s) if s == "none" => {
                if east.request_count() != 0 {
                    failures.push(format!(
                        "{name}: upstream got {} request(s), want none",
                        east.request_count()
                    ));
                }
            }
            expect => {
                let n = expect["requests"].as_u64().expect("requests") as usize;
                let body = expect["body_len"].as_u64().expect("body_len");
                if seen.len() != n {
                    failures.push(format!(
                        "{name}: upstream got {} request(s), want {n}",
                        seen.len()
                    ));
                } else if let Some(last) = seen.last() {
                    // Cleanly framed: one length, no transfer coding alongside it, right size.
                    let lengths = last.header_all("content-length");
                    let te = last.header_all("transfer-encoding");
                    if last.body_len != body
                        || lengths.len() > 1
                        || (!lengths.is_empty() && !te.is_empty())
                    {
                        failures.push(format!(
                            "{name}: upstream saw body {} with CL {lengths:?} TE {te:?}",
                            last.body_len
                        ));
                    }
                    if last.uri.contains("smuggled") {
                        failures.push(format!("{name}: a smuggled request reached the upstream"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n---\n")
    );
}

/// HPACK literal header field without indexing, new name (RFC 7541 6.2.2), lengths < 127.
fn hpack(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value);
    out
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// What the server did with stream 1: `Some(status)` for a response (only statuses in HPACK's
/// static table are decoded), `None` for a reset or a closed connection.
async fn h2_exchange(
    gw: &TestGateway,
    headers: &[(&str, &[u8])],
    data: Option<&[u8]>,
) -> Option<u16> {
    h2_exchange_with_trailers(gw, headers, data, &[]).await
}

/// [`h2_exchange`] ending the request with a trailers HEADERS frame when `trailers` is not empty.
async fn h2_exchange_with_trailers(
    gw: &TestGateway,
    headers: &[(&str, &[u8])],
    data: Option<&[u8]>,
    trailers: &[(&str, &[u8])],
) -> Option<u16> {
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    let block: Vec<u8> = headers.iter().flat_map(|(n, v)| hpack(n, v)).collect();
    let last = if trailers.is_empty() { 0x1 } else { 0 }; // END_STREAM on the last frame
    let end_stream = if data.is_none() { last } else { 0 };
    out.extend(frame(0x1, 0x4 | end_stream, 1, &block)); // HEADERS, END_HEADERS
    if let Some(d) = data {
        out.extend(frame(0x0, last, 1, d)); // DATA
    }
    if !trailers.is_empty() {
        let block: Vec<u8> = trailers.iter().flat_map(|(n, v)| hpack(n, v)).collect();
        out.extend(frame(0x1, 0x4 | 0x1, 1, &block)); // trailers: HEADERS, END_STREAM
    }
    s.write_all(&out).await.expect("write");
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        // Parse whole frames received so far.
        let mut at = 0;
        while buf.len() >= at + 9 {
            let len = (usize::from(buf[at]) << 16)
                | (usize::from(buf[at + 1]) << 8)
                | usize::from(buf[at + 2]);
            let (kind, stream) = (
                buf[at + 3],
                u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]])
                    & 0x7fff_ffff,
            );
            if buf.len() < at + 9 + len {
                break;
            }
            let payload = &buf[at + 9..at + 9 + len];
            match (kind, stream) {
                (0x1, 1) => {
                    // Indexed :status from the static table (RFC 7541 appendix A).
                    return match payload.first() {
                        Some(0x88) => Some(200),
                        Some(0x89) => Some(204),
                        Some(0x8a) => Some(206),
                        Some(0x8b) => Some(304),
                        Some(0x8c) => Some(400),
                        Some(0x8d) => Some(404),
                        Some(0x8e) => Some(500),
                        _ => Some(0),
                    };
                }
                (0x3, 1) | (0x7, _) => return None, // RST_STREAM, GOAWAY
                _ => {}
            }
            at += 9 + len;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no answer to the HTTP/2 request"),
        }
    }
}

/// RFC 9113 §8.1: trailers must not carry pseudo-header fields. The HTTP/2 layer under hyper
/// (h2 0.4) drops such fields from the trailers before pairgate sees the request, so the request
/// may still be answered (the RFC asks for a stream reset; see README, Hostile input), but
/// nothing of the pseudo-header ever reaches an upstream.
#[tokio::test]
async fn http2_pseudo_headers_in_trailers_never_reach_the_upstream() {
    let (gw, east) = solo("").await;
    let head: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":scheme", b"http"),
        (":authority", b"solo.example.com"),
        (":path", b"/t"),
        ("te", b"trailers"),
    ];
    let trailers: Vec<(&str, &[u8])> = vec![
        (":path", b"/smuggled"),
        (":authority", b"other.example.com"),
        ("x-trailer", b"1"),
    ];
    let answer = h2_exchange_with_trailers(&gw, &head, Some(b"abc"), &trailers).await;
    assert!(matches!(answer, None | Some(200)), "{answer:?}");
    let wire: Vec<u8> = east.raw_capture().concat();
    let wire = String::from_utf8_lossy(&wire);
    assert!(
        !wire.contains("smuggled")
            && !wire.contains("other.example.com")
            && !wire.contains(":path"),
        "a trailer pseudo-header reached the upstream:\n{wire}"
    );
    // The same request without the pseudo-headers reaches the upstream and is on the wire the
    // check above reads (so that check can fail).
    let before = east.request_count();
    let answer = h2_exchange_with_trailers(&gw, &head, Some(b"abc"), &trailers[2..]).await;
    assert_eq!(answer, Some(200));
    assert_eq!(east.request_count(), before + 1);
    assert!(String::from_utf8_lossy(&east.raw_capture().concat()).contains("POST /t "));
}

#[tokio::test]
async fn http2_downgrade_cases_never_reach_the_upstream() {
    let (gw, east) = solo("").await;
    let base: Vec<(&str, &[u8])> = vec![
        (":method", b"GET"),
        (":scheme", b"http"),
        (":authority", b"solo.example.com"),
        (":path", b"/t"),
    ];
    // The well-formed request works, so the rejections below mean something.
    assert_eq!(h2_exchange(&gw, &base, None).await, Some(200));
    assert_eq!(east.request_count(), 1);
    east.reset_stats();
    let with = |extra: (&'static str, &'static [u8])| {
        let mut h = base.clone();
        h.push(extra);
        h
    };
    /// (name, header fields in order, DATA frame payload)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a [u8])>, Option<&'a [u8]>);
    let cases: Vec<Case<'_>> = vec![
        (
            "host disagrees with :authority",
            with(("host", b"other.example.com")),
            None,
        ),
        (
            "CR LF in a value",
            with(("x-a", b"a\r\nx-injected: 1")),
            None,
        ),
        ("NUL in a value", with(("x-a", b"a\x00b")), None),
        ("upper-case name", with(("X-Upper", b"1")), None),
        (
            "connection header",
            with(("connection", b"keep-alive")),
            None,
        ),
        (
            "transfer-encoding header",
            with(("transfer-encoding", b"chunked")),
            None,
        ),
        ("te other than trailers", with(("te", b"gzip")), None),
        ("unknown pseudo-header", with((":foo", b"bar")), None),
        (
            "pseudo-header after a field",
            {
                let mut h: Vec<(&str, &[u8])> = vec![
                    (":method", b"GET"),
                    (":scheme", b"http"),
                    ("x-a", b"1"),
                    (":authority", b"solo.example.com"),
                    (":path", b"/t"),
                ];
                h.truncate(5);
                h
            },
            None,
        ),
        ("duplicate :path", with((":path", b"/other")), None),
        (
            "missing :path",
            vec![
                (":method", b"GET"),
                (":scheme", b"http"),
                (":authority", b"solo.example.com"),
            ],
            None,
        ),
        (
            "content-length larger than data",
            {
                let mut h = base.clone();
                h[0] = (":method", b"POST");
                h.push(("content-length", b"10"));
                h
            },
            Some(b"short"),
        ),
        (
            "content-length smaller than data",
            {
                let mut h = base.clone();
                h[0] = (":method", b"POST");
                h.push(("content-length", b"2"));
                h
            },
            Some(b"longer"),
        ),
    ];
    for (name, headers, data) in cases {
        let answer = h2_exchange(&gw, &headers, data).await;
        assert!(
            answer.is_none_or(|s| (400..500).contains(&s)),
            "{name}: answered {answer:?}"
        );
        assert_eq!(east.request_count(), 0, "{name}: reached the upstream");
    }
}

/// A slowloris client is cut off at the header timeout with 408 while others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_and_others_are_served() {
    let (gw, _east) = solo("[limits]\nheader_read_timeout = \"1s\"\n").await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
        s.write_all(b"GET /t HTTP/1.1\r\nHost: solo.example.com\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    let started = Instant::now();
    // Trickle a header line every 300 ms: each byte arrives, the head never completes.
    let trickle = tokio::spawn(async move {
        let mut answers = Vec::new();
        for mut s in slow {
            let _ = s.write_all(b"X-a: 1\r\n").await;
            answers.push(s);
        }
        answers
    });
    let normal = get(&gw.url("/t"), "solo.example.com")
        .await
        .expect("a normal client is served");
    assert_eq!(normal.status, 200);
    let mut slow = trickle.await.expect("trickle");
    for s in &mut slow {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(
            String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "cut off after {took:?}"
    );
}

/// A client that stops sending its body is answered 408 after the body idle timeout; nothing
/// complete reaches the upstream.
#[tokio::test]
async fn slow_body_is_cut_off() {
    let (gw, east) = solo("[limits]\nbody_idle_timeout = \"500ms\"\n").await;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    s.write_all(
        b"POST /t HTTP/1.1\r\nHost: solo.example.com\r\nContent-Length: 100\r\n\r\nonly-some",
    )
    .await
    .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"));
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(east.request_count(), 0);
}

#[tokio::test]
async fn size_limits_answer_413_414_431() {
    let (gw, east) = solo("[limits]\nmax_uri_bytes = 256\nmax_request_headers = 20\nmax_request_body_bytes = 100000\n").await;
    let long = format!("/{}", "a".repeat(300));
    let r = get(&gw.url(&long), "solo.example.com")
        .await
        .expect("reply");
    assert_eq!(r.status, 414);
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (statuses, _) = raw(
        &gw,
        format!("GET /t HTTP/1.1\r\nHost: solo.example.com\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(statuses, vec![431]);
    // Declared too large: refused before any upstream work.
    let (statuses, text) = raw(
        &gw,
        b"POST /t HTTP/1.1\r\nHost: solo.example.com\r\nContent-Length: 200000\r\n\r\n",
    )
    .await;
    assert_eq!(statuses, vec![413], "{text}");
    // Chunked and too large: cut off when it crosses the limit.
    let mut body =
        b"POST /t HTTP/1.1\r\nHost: solo.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..30 {
        body.extend_from_slice(b"2000\r\n");
        body.extend(std::iter::repeat_n(b'x', 0x2000));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (statuses, text) = raw(&gw, &body).await;
    assert_eq!(statuses, vec![413], "{text}");
    assert!(east.requests().iter().all(|r| r.body_len <= 100_000));
}

#[tokio::test]
async fn connection_limit_refuses_with_503() {
    let (gw, _east) = solo("[limits]\nmax_connections = 3\n").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
        s.write_all(b"GET /t HTTP/1.1\r\nHost: solo.example.com\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.expect("answered");
        held.push(s);
    }
    let (statuses, text) = raw(&gw, b"GET /t HTTP/1.1\r\nHost: solo.example.com\r\n\r\n").await;
    assert_eq!(statuses, vec![503], "{text}");
    // The declared length is the body's length, byte for byte.
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let declared: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    assert_eq!(declared, body.len(), "{text}");
    assert_eq!(body, r#"{"error":"too_many_connections"}"#);
    drop(held);
    assert!(
        crate::support::eventually(Duration::from_secs(3), || async {
            get(&gw.url("/t"), "solo.example.com")
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await
    );
}

/// A flood of connections past `max_connections`: each gets its whole 503 (the gateway reads what
/// the client sent before closing, so no RST discards the answer), and the log says so about once
/// a second, not once per connection.
#[tokio::test]
async fn connection_flood_is_refused_cleanly_and_logged_sparingly() {
    let east = mock("east", "eastus").await;
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        pair_config(
            &[("east", "eastus", &east)],
            &[("solo", "east", None)],
            "[health]\ninterval = \"30s\"\n[limits]\nmax_connections = 1\n"
        )
    );
    let gw = pairgate_test_support::GatewayProcess::spawn(
        &crate::support::temp_path("flood.toml"),
        &toml,
        &[],
    )
    .expect("gateway process");
    let mut held = TcpStream::connect(gw.addr()).await.expect("connect");
    held.write_all(b"GET /t HTTP/1.1\r\nHost: solo.example.com\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 12];
    held.read_exact(&mut buf).await.expect("answered");
    let mut complete = 0;
    for _ in 0..100 {
        let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
        // A request the gateway never reads: without draining it, closing would send RST.
        let _ = s
            .write_all(
                b"POST /t HTTP/1.1\r\nHost: solo.example.com\r\ncontent-length: 3000\r\n\r\n",
            )
            .await;
        let _ = s.write_all(&[b'x'; 3000]).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut answer)).await;
        if String::from_utf8_lossy(&answer).ends_with(r#"{"error":"too_many_connections"}"#) {
            complete += 1;
        }
    }
    assert_eq!(complete, 100, "every refused client reads its whole 503");
    let warnings = gw.stderr().matches("connection limit reached").count();
    assert!(
        (1..=5).contains(&warnings),
        "{warnings} warnings for 100 refusals"
    );
}

/// One tenant flooding with far more concurrent requests than its in-flight limit gets 503s at
/// once, and another tenant is not starved: its p99 stays within 1.5x of its quiet value (or
/// 25 ms over it), far from the 300 ms a queued request would wait. The gateway runs as its
/// own process; quiet and flooded rounds alternate and medians are compared, so one noisy moment
/// on a shared machine does not decide the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_neighbour_cannot_starve_another_tenant() {
    let (noisy_acct, quiet_acct) = (
        mock("noisy-acct", "eastus").await,
        mock("quiet-acct", "eastus").await,
    );
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        pair_config(
            &[
                ("noisy-acct", "eastus", &noisy_acct),
                ("quiet-acct", "eastus", &quiet_acct)
            ],
            &[("noisy", "noisy-acct", None), ("quiet", "quiet-acct", None)],
            "[health]\ninterval = \"30s\"\n",
        )
        .replace(
            "name = \"noisy\"\nhosts",
            "name = \"noisy\"\nlimits = { max_in_flight = 16 }\nhosts"
        )
    );
    let gw = Arc::new(
        pairgate_test_support::GatewayProcess::spawn(
            &crate::support::temp_path("noisy.toml"),
            &toml,
            &[("RUST_LOG", "info,pairgate::access=warn")],
        )
        .expect("gateway process"),
    );
    // The noisy tenant's account is slow, so its requests pile up against its limit.
    noisy_acct.set_behavior(pairgate_test_support::Behavior::Delay(
        Duration::from_millis(300),
    ));
    let url = gw.url("/q");
    let p99 = move || {
        let url = url.clone();
        async move {
            let c = pairgate_test_support::client();
            let mut lat = Vec::new();
            for _ in 0..300 {
                let req = http::Request::get(&url)
                    .header("host", "quiet.example.com")
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("req");
                let t = Instant::now();
                let r = pairgate_test_support::send(&c, req).await.expect("reply");
                assert_eq!(r.status, 200);
                lat.push(t.elapsed());
            }
            lat.sort();
            lat[lat.len() * 99 / 100]
        }
    };
    let (mut quiet_rounds, mut loaded_rounds, mut codes) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        quiet_rounds.push(p99().await);
        // 100 concurrent keep-alive clients against a limit of 16; a rejected client retries
        // after 250 ms, like a client honouring Retry-After. Bounded in count and time.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut flood = Vec::new();
        for _ in 0..100 {
            let (url, stop) = (gw.url("/n"), Arc::clone(&stop));
            flood.push(tokio::spawn(async move {
                let c = pairgate_test_support::client();
                let mut codes = Vec::new();
                for _ in 0..100 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let req = http::Request::get(&url)
                        .header("host", "noisy.example.com")
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .expect("req");
                    if let Ok(r) = pairgate_test_support::send(&c, req).await {
                        codes.push(r.status.as_u16());
                        if r.status == 503 {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
                codes
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        loaded_rounds.push(p99().await);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for f in flood {
            codes.extend(f.await.expect("flood"));
        }
    }
    quiet_rounds.sort();
    loaded_rounds.sort();
    let (quiet, loaded) = (quiet_rounds[2], loaded_rounds[2]);
    let rejected = codes.iter().filter(|&&c| c == 503).count();
    println!(
        "quiet p99 rounds {quiet_rounds:?}, flooded {loaded_rounds:?}; noisy: {} requests, {rejected} got 503",
        codes.len()
    );
    assert!(
        rejected > codes.len() / 2,
        "the noisy tenant was not limited: {rejected}/{}",
        codes.len()
    );
    // What this guards is starvation: a quiet request queued behind the flood waits for the
    // noisy account's 300 ms answers. So the bound is 1.5x the quiet median p99 with a 25 ms
    // floor: far below starvation, far above the scheduling noise of an unoptimized build on a
    // shared 2-core machine running the rest of the suite (medians up to quiet + 5 ms were seen
    // with nothing starved, and a 2 ms floor failed about one full run in five). The overhead
    // ratio itself is a benchmark's business (benches/), not a test's.
    let bound = (quiet * 3 / 2).max(quiet + Duration::from_millis(25));
    assert!(
        loaded <= bound,
        "quiet tenant p99 {loaded:?} under flood vs {quiet:?} quiet"
    );
}

/// A fresh gateway process per hostile input, so memory freed by one input cannot hide the
/// next one's growth.
async fn hostile_gateway(east: &MockUpstream) -> pairgate_test_support::GatewayProcess {
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        pair_config(
            &[("east", "eastus", east)],
            &[("solo", "east", None)],
            "[health]\ninterval = \"30s\"\n[limits]\nheader_read_timeout = \"15s\"\n"
        )
    );
    let gw = pairgate_test_support::GatewayProcess::spawn(
        &crate::support::temp_path("memory.toml"),
        &toml,
        &[("RUST_LOG", "info,pairgate::access=warn")],
    )
    .expect("gateway process");
    // Warm up: one request through every layer, so lazily built state is not counted.
    assert_eq!(
        get(&gw.url("/t"), "solo.example.com")
            .await
            .expect("reply")
            .status,
        200
    );
    gw
}

fn h2_preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out
}

/// The real process under hostile input: RSS growth per input against the limit that bounds
/// it. Prints the table the closing note reports; fails past 100x (Envoy's DoS definition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_memory_stays_within_100x_of_the_limits() {
    const HEAD_LIMIT: u64 = 65536;
    let east = mock("east", "eastus").await;
    let mut report = Vec::new();

    // 1. 300 connections each holding a partial head just under the header limit.
    let gw = hostile_gateway(&east).await;
    let before = gw.proc_status_kib("VmRSS").expect("rss") * 1024;
    let mut held = Vec::new();
    let filler = format!(
        "GET /t HTTP/1.1\r\nHost: solo.example.com\r\nX-Fill: {}\r\n",
        "a".repeat(60_000)
    );
    for _ in 0..300 {
        let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
        s.write_all(filler.as_bytes()).await.expect("write");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = gw.proc_status_kib("VmRSS").expect("rss") * 1024;
    report.push((
        "300 partial 60 KB heads",
        peak.saturating_sub(before),
        300 * HEAD_LIMIT,
    ));
    drop(held);

    // 2. HTTP/2 CONTINUATION flood: a header block that never ends, 4 MB per connection.
    let gw = hostile_gateway(&east).await;
    let before = gw.proc_status_kib("VmRSS").expect("rss") * 1024;
    let mut conns = Vec::new();
    let mut cut_off = 0;
    for _ in 0..10 {
        let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
        let mut out = h2_preface();
        out.extend(frame(0x1, 0, 1, &hpack(":method", b"GET"))); // HEADERS without END_HEADERS
        let fragment = hpack("x-flood", &[b'a'; 100]).repeat(150);
        let _ = s.write_all(&out).await;
        for _ in 0..256 {
            if s.write_all(&frame(0x9, 0, 1, &fragment)).await.is_err() {
                cut_off += 1; // the server gave up on the connection: that is the point
                break;
            }
        }
        conns.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = (gw.proc_status_kib("VmRSS").expect("rss") * 1024).saturating_sub(before);
    report.push((
        "10 h2 CONTINUATION floods, 4 MB each",
        grown,
        10 * HEAD_LIMIT,
    ));
    drop(conns);

    // 3. Rapid reset: open and reset 5000 streams on one connection.
    let gw = hostile_gateway(&east).await;
    east.reset_stats();
    let before = gw.proc_status_kib("VmRSS").expect("rss") * 1024;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut out = h2_preface();
    let block: Vec<u8> = [
        (":method", &b"GET"[..]),
        (":scheme", b"http"),
        (":authority", b"solo.example.com"),
        (":path", b"/t"),
    ]
    .iter()
    .flat_map(|(n, v)| hpack(n, v))
    .collect();
    for i in 0..5000u32 {
        let id = 1 + 2 * i;
        out.extend(frame(0x1, 0x5, id, &block));
        out.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    let _ = s.write_all(&out).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = (gw.proc_status_kib("VmRSS").expect("rss") * 1024).saturating_sub(before);
    report.push(("h2 rapid reset, 5000 streams", grown, 100 * HEAD_LIMIT));
    let forwarded = east.request_count();
    drop(s);

    // 4. Ping flood without reading the pongs.
    let gw = hostile_gateway(&east).await;
    let before = gw.proc_status_kib("VmRSS").expect("rss") * 1024;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    let mut out = h2_preface();
    for i in 0..100_000u64 {
        out.extend(frame(0x6, 0, 0, &i.to_be_bytes()));
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(&out)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = (gw.proc_status_kib("VmRSS").expect("rss") * 1024).saturating_sub(before);
    report.push(("h2 ping flood, 100k pings unread", grown, HEAD_LIMIT));
    drop(s);
    assert_eq!(
        get(&gw.url("/t"), "solo.example.com")
            .await
            .expect("reply")
            .status,
        200,
        "still serving"
    );

    println!("hostile input                            | RSS growth  | limit budget | ratio");
    for (name, grown, budget) in &report {
        println!(
            "{name:<40} | {:>7} KiB | {:>8} KiB | {:.2}",
            grown / 1024,
            budget / 1024,
            *grown as f64 / *budget as f64
        );
    }
    println!(
        "CONTINUATION floods cut off by the server: {cut_off}/10; rapid reset: {forwarded} of 5000 reset streams reached the upstream"
    );
    for (name, grown, budget) in report {
        assert!(
            grown < 100 * budget,
            "{name}: grew {grown} bytes, over 100x the {budget}-byte budget"
        );
    }
}

/// An upstream that sends a response head and part of its body, then nothing: the response is
/// cut after `upstream.read_timeout` and the tenant's in-flight slot is free again.
#[tokio::test]
async fn stalled_upstream_body_is_cut_and_frees_the_slot() {
    let (gw, _east) =
        solo("[upstream]\nread_timeout = \"500ms\"\n[limits]\ntenant_max_in_flight = 1\n").await;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    s.write_all(
        b"GET /download?bytes=1048576&stall_after=65536 HTTP/1.1\r\nHost: solo.example.com\r\n\r\n",
    )
    .await
    .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let took = started.elapsed();
    assert!(ended.is_ok(), "the stalled response was never cut");
    let text = String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        buf.len() < 1_048_576,
        "the body cannot be complete: {} bytes",
        buf.len()
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "cut after {took:?}"
    );
    // The slot is free again: with a limit of 1, this would be 503 otherwise.
    let r = get(&gw.url("/after"), "solo.example.com")
        .await
        .expect("reply");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A client that stops reading a large response is disconnected after `limits.send_timeout`,
/// which frees its tenant's in-flight slot (and the upstream connection behind it).
#[tokio::test]
async fn client_that_stops_reading_is_disconnected() {
    let (gw, east) = solo("[limits]\nsend_timeout = \"1s\"\ntenant_max_in_flight = 1\n").await;
    let mut s = TcpStream::connect(gw.addr()).await.expect("connect");
    s.write_all(b"GET /download?bytes=1073741824 HTTP/1.1\r\nHost: solo.example.com\r\n\r\n")
        .await
        .expect("write");
    // Never read: the socket buffers fill and the gateway's writes stall, while the download
    // holds the tenant's only slot from the moment it reached the account.
    let reached = crate::support::eventually(Duration::from_secs(5), || async {
        east.requests()
            .iter()
            .any(|r| r.uri.starts_with("/download"))
    })
    .await;
    assert!(reached, "the download never reached the account");
    let busy = get(&gw.url("/during"), "solo.example.com")
        .await
        .expect("reply");
    assert_eq!(busy.status, 503, "the slow reader holds the only slot");
    let started = Instant::now();
    let freed = crate::support::eventually(Duration::from_secs(10), || async {
        get(&gw.url("/after"), "solo.example.com")
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(freed, "the slow reader was never disconnected");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "freed only after {:?}",
        started.elapsed()
    );
    // Its connection is gone: reading now drains what was buffered, then ends.
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection stayed open");
    assert!(total < 1 << 30, "the whole body arrived: {total} bytes");
}
