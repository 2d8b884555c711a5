//! Real-socket tests of the mock: endpoints, statistics and every fault knob.

use std::error::Error;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    Behavior, DEFAULT_PROBE_PATH, Fnv64, MockConfig, MockUpstream, fnv64, pattern_byte,
    pattern_fnv64,
};

type BoxError = Box<dyn Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

/// Upper bound of every wait that is expected to succeed.
const WAIT: Duration = Duration::from_secs(5);
/// How long a request that must never be answered is given.
const SHORT: Duration = Duration::from_millis(300);

async fn within<F: Future>(what: &str, f: F) -> Result<F::Output, BoxError> {
    timeout(WAIT, f)
        .await
        .map_err(|_| format!("timed out waiting for {what}").into())
}

async fn mock() -> Result<MockUpstream, BoxError> {
    Ok(MockUpstream::start(MockConfig::new("acct-a", "eu-west")).await?)
}

/// A response with its body collected.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Result<Value, BoxError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

async fn connect_h1(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, BoxError> {
    let tcp = within("connect", TcpStream::connect(addr)).await??;
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn.with_upgrades());
    Ok(sender)
}

fn request(mock: &MockUpstream, method: Method, path: &str, body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = path.parse().expect("test paths are valid URIs");
    let host = mock
        .addr()
        .to_string()
        .parse()
        .expect("an address is a valid Host");
    req.headers_mut().insert(header::HOST, host);
    req
}

async fn send_on(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<Reply, BoxError> {
    let response = sender.send_request(req).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// One request on a fresh HTTP/1.1 connection, bounded by [`WAIT`].
async fn send(mock: &MockUpstream, req: Request<Full<Bytes>>) -> Result<Reply, BoxError> {
    let mut sender = connect_h1(mock.addr()).await?;
    within("response", send_on(&mut sender, req)).await?
}

async fn get(mock: &MockUpstream, path: &str) -> Result<Reply, BoxError> {
    send(mock, request(mock, Method::GET, path, Bytes::new())).await
}

#[test]
fn fnv64_matches_reference_vectors_and_streams() {
    assert_eq!(fnv64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv64(b"foobar"), 0x8594_4171_f739_67e8);
    let mut streamed = Fnv64::new();
    streamed.update(b"foo");
    streamed.update(b"bar");
    assert_eq!(streamed.finish(), fnv64(b"foobar"));
}

#[test]
fn pattern_checksum_matches_pattern_bytes() {
    assert_eq!(pattern_byte(0), 0);
    assert_eq!(pattern_byte(250), 250);
    assert_eq!(pattern_byte(251), 0);
    for n in [0u64, 1, 250, 251, 252, 65_536, 65_536 + 300, 200_000] {
        let bytes: Vec<u8> = (0..n).map(pattern_byte).collect();
        assert_eq!(pattern_fnv64(n), fnv64(&bytes), "n = {n}");
    }
}

#[tokio::test]
async fn echo_answers_json_and_records_the_request() -> TestResult {
    let mock = mock().await?;
    let mut req = request(
        &mock,
        Method::POST,
        "/some/path?x=1&y=2",
        Bytes::from("hello"),
    );
    req.headers_mut().append("x-dup", "one".parse()?);
    req.headers_mut().append("x-dup", "two".parse()?);
    req.headers_mut().insert("x-single", "v".parse()?);
    let reply = send(&mock, req).await?;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["x-mock-account"], "acct-a");
    assert_eq!(reply.headers["x-mock-region"], "eu-west");
    let json = reply.json()?;
    assert_eq!(json["account"], "acct-a");
    assert_eq!(json["region"], "eu-west");
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/some/path");
    assert_eq!(json["query"], "x=1&y=2");
    assert_eq!(json["version"], "HTTP/1.1");
    assert_eq!(json["authority"], mock.addr().to_string());
    assert_eq!(json["headers"]["x-dup"], serde_json::json!(["one", "two"]));
    assert_eq!(json["headers"]["x-single"], "v");
    assert_eq!(json["body_bytes"], 5);
    assert_eq!(json["body_fnv64"], format!("{:016x}", fnv64(b"hello")));

    let recorded = mock.requests();
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/some/path?x=1&y=2");
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.header_all("x-dup"), ["one", "two"]);
    assert_eq!(r.header("X-Single"), Some("v"));
    assert_eq!(r.body_len, 5);
    assert_eq!(r.body_fnv64, fnv64(b"hello"));
    assert_eq!(mock.request_count(), 1);
    assert_eq!(mock.probe_count(), 0);
    Ok(())
}

#[tokio::test]
async fn kill_refuses_and_closes_then_revive_serves_the_same_port() -> TestResult {
    let mock = mock().await?;
    let addr = mock.addr();
    let mut open = connect_h1(addr).await?;
    assert_eq!(
        within(
            "response",
            send_on(&mut open, request(&mock, Method::GET, "/", Bytes::new()))
        )
        .await??
        .status,
        StatusCode::OK
    );

    within("kill", mock.kill()).await?;
    assert!(!mock.is_listening());
    let refused = within("connect", TcpStream::connect(addr)).await?;
    let err = refused.err().ok_or("connect to a killed mock succeeded")?;
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    // The connection opened before the kill is gone too.
    let reused = within(
        "request on a killed connection",
        send_on(&mut open, request(&mock, Method::GET, "/", Bytes::new())),
    )
    .await?;
    assert!(reused.is_err(), "a connection survived kill");

    within("revive", mock.revive()).await??;
    assert_eq!(mock.addr(), addr);
    assert!(mock.is_listening());
    assert_eq!(get(&mock, "/after").await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn black_hole_never_answers_requests_or_probes() -> TestResult {
    let mock = mock().await?;
    // An existing keep-alive connection is black-holed from its next request on.
    let mut open = connect_h1(mock.addr()).await?;
    let first = request(&mock, Method::GET, "/", Bytes::new());
    assert_eq!(
        within("response", send_on(&mut open, first)).await??.status,
        StatusCode::OK
    );

    mock.set_behavior(Behavior::BlackHole);
    assert_eq!(mock.behavior(), Behavior::BlackHole);
    let second = request(&mock, Method::POST, "/held", Bytes::from("body"));
    assert!(timeout(SHORT, send_on(&mut open, second)).await.is_err());

    // New connections are accepted but never answered, probes included.
    for path in ["/fresh", DEFAULT_PROBE_PATH] {
        let mut sender = connect_h1(mock.addr()).await?;
        let req = request(&mock, Method::GET, path, Bytes::new());
        assert!(
            timeout(SHORT, send_on(&mut sender, req)).await.is_err(),
            "{path} answered"
        );
    }
    assert_eq!(mock.connections_accepted(), 3);
    // The held request on the old connection was read and recorded.
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.uri == "/held" && r.body_len == 4)
    );

    mock.set_behavior(Behavior::Normal);
    assert_eq!(get(&mock, "/").await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn reset_closes_with_rst_before_answering() -> TestResult {
    let mock = mock().await?;
    mock.set_behavior(Behavior::Reset);

    let mut tcp = within("connect", TcpStream::connect(mock.addr())).await??;
    tcp.write_all(b"GET /r HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let mut buf = [0u8; 64];
    let read = within("reset", tcp.read(&mut buf)).await?;
    let err = read.err().ok_or("the mock answered instead of resetting")?;
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

    // Through a real client, probes included: an error, not a response and not a hang.
    for path in ["/", DEFAULT_PROBE_PATH] {
        assert!(get(&mock, path).await.is_err(), "{path} answered");
    }
    assert_eq!(mock.request_count(), 2);
    assert_eq!(mock.probe_count(), 1);
    Ok(())
}

#[tokio::test]
async fn status_behavior_spares_probes_and_status_endpoint_answers() -> TestResult {
    let mock = mock().await?;
    assert_eq!(
        get(&mock, "/status/418").await?.status,
        StatusCode::IM_A_TEAPOT
    );
    assert_eq!(
        get(&mock, "/status/abc").await?.status,
        StatusCode::BAD_REQUEST
    );

    mock.set_behavior(Behavior::Status(503));
    let reply = get(&mock, "/anything").await?;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()?["path"], "/anything");
    assert_eq!(get(&mock, DEFAULT_PROBE_PATH).await?.status, StatusCode::OK);

    // 1xx is not a final status; the mock answers 500 rather than confuse the client.
    mock.set_behavior(Behavior::Status(101));
    assert_eq!(
        get(&mock, "/").await?.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    Ok(())
}

#[tokio::test]
async fn health_flag_and_probe_counting() -> TestResult {
    let mock = mock().await?;
    let reply = get(&mock, DEFAULT_PROBE_PATH).await?;
    assert_eq!(
        (reply.status, &reply.body[..]),
        (StatusCode::OK, &b"ok"[..])
    );

    mock.set_health(false);
    assert_eq!(
        get(&mock, DEFAULT_PROBE_PATH).await?.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&mock, "/other").await?.status, StatusCode::OK);
    assert_eq!((mock.probe_count(), mock.request_count()), (2, 1));
    assert_eq!(mock.requests().len(), 1, "probes are not recorded");

    mock.set_probe_path("/ready");
    assert_eq!(
        get(&mock, "/ready").await?.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&mock, DEFAULT_PROBE_PATH).await?.status, StatusCode::OK);
    assert_eq!((mock.probe_count(), mock.request_count()), (3, 2));

    mock.reset_stats();
    assert_eq!(
        (
            mock.probe_count(),
            mock.request_count(),
            mock.connections_accepted()
        ),
        (0, 0, 0)
    );
    assert!(mock.requests().is_empty() && mock.raw_capture().is_empty());
    Ok(())
}

#[tokio::test]
async fn delay_behavior_and_delay_endpoint_wait() -> TestResult {
    let mock = mock().await?;
    let started = Instant::now();
    assert_eq!(get(&mock, "/delay/150").await?.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));

    mock.set_behavior(Behavior::Delay(Duration::from_millis(150)));
    let started = Instant::now();
    assert_eq!(get(&mock, DEFAULT_PROBE_PATH).await?.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    Ok(())
}

#[tokio::test]
async fn download_streams_the_pattern() -> TestResult {
    const N: u64 = 10 * 1024 * 1024;
    let mock = mock().await?;
    let mut sender = connect_h1(mock.addr()).await?;
    let req = request(
        &mock,
        Method::GET,
        &format!("/download?bytes={N}"),
        Bytes::new(),
    );
    let response = within("response", sender.send_request(req)).await??;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        N.to_string().as_str()
    );

    let mut body = response.into_body();
    let mut hasher = Fnv64::new();
    let mut len = 0u64;
    while let Some(frame) = within("body", body.frame()).await? {
        if let Some(data) = frame?.data_ref() {
            hasher.update(data);
            len += data.len() as u64;
        }
    }
    assert_eq!(len, N);
    assert_eq!(hasher.finish(), pattern_fnv64(N));
    assert_eq!(
        get(&mock, "/download?bytes=x").await?.status,
        StatusCode::BAD_REQUEST
    );
    Ok(())
}

#[tokio::test]
async fn upload_is_counted_and_hashed() -> TestResult {
    let data: Bytes = (0..10 * 1024 * 1024u64)
        .map(|i| pattern_byte(i * 7))
        .collect::<Vec<u8>>()
        .into();
    let mock = mock().await?;
    let reply = send(&mock, request(&mock, Method::PUT, "/up", data.clone())).await?;
    let json = reply.json()?;
    assert_eq!(json["body_bytes"], data.len());
    assert_eq!(json["body_fnv64"], format!("{:016x}", fnv64(&data)));
    assert_eq!(mock.requests()[0].body_len, data.len() as u64);
    Ok(())
}

#[tokio::test]
async fn websocket_echoes_until_killed() -> TestResult {
    let mock = mock().await?;
    let tcp = within("connect", TcpStream::connect(mock.addr())).await??;
    let url = format!("ws://{}/ws", mock.addr());
    let (mut ws, response) =
        within("handshake", tokio_tungstenite::client_async(url, tcp)).await??;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);

    for message in [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
    ] {
        within("send", ws.send(message.clone())).await??;
        let echoed = within("echo", ws.next()).await?.ok_or("stream ended")??;
        assert_eq!(echoed, message);
    }
    assert_eq!(
        get(&mock, "/ws").await?.status,
        StatusCode::UPGRADE_REQUIRED
    );

    within("kill", mock.kill()).await?;
    // The session is torn down with the rest: the client sees the end, not a hang.
    while let Some(message) = within("session end", ws.next()).await? {
        if message.is_err() {
            break;
        }
    }
    Ok(())
}

#[tokio::test]
async fn flap_toggles_and_stop_leaves_it_listening() -> TestResult {
    let mock = mock().await?;
    let period = Duration::from_millis(100);
    let flap = mock.flap(period);

    let deadline = Instant::now() + period * 4;
    let mut last_up = true;
    let mut toggles = 0;
    while toggles < 2 && Instant::now() < deadline {
        let up = matches!(
            timeout(period, TcpStream::connect(mock.addr())).await,
            Ok(Ok(_))
        );
        if up != last_up {
            toggles += 1;
            last_up = up;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(toggles >= 2, "saw {toggles} toggles in 4 periods");

    within("flap stop", flap.stop()).await?;
    assert!(mock.is_listening());
    assert_eq!(get(&mock, "/").await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() -> TestResult {
    let mock = mock().await?;
    let tcp = within("connect", TcpStream::connect(mock.addr())).await??;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::get(format!("{}/h2?q=1", mock.url())).body(Empty::<Bytes>::new())?;
    let response = within("h2 response", sender.send_request(req)).await??;
    assert_eq!(response.status(), StatusCode::OK);
    let body = within("h2 body", response.into_body().collect())
        .await??
        .to_bytes();
    let json: Value = serde_json::from_slice(&body)?;
    assert_eq!(json["version"], "HTTP/2.0");
    assert_eq!(json["path"], "/h2");
    assert_eq!(json["authority"], mock.addr().to_string());
    assert_eq!(mock.requests()[0].uri, "/h2?q=1");
    Ok(())
}

#[tokio::test]
async fn raw_capture_keeps_the_bytes_of_each_connection() -> TestResult {
    let mock = mock().await?;
    let mut tcp = within("connect", TcpStream::connect(mock.addr())).await??;
    let raw = b"GET /raw HTTP/1.1\r\nHost: x\r\nX-Odd:  spaced \r\nConnection: close\r\n\r\n";
    tcp.write_all(raw).await?;
    let mut answer = Vec::new();
    within("answer", tcp.read_to_end(&mut answer)).await??;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert_eq!(mock.raw_capture(), vec![raw.to_vec()]);
    assert_eq!(mock.connections_accepted(), 1);
    Ok(())
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() -> TestResult {
    let mock = mock().await?;
    let addr = mock.addr();
    let clone = mock.clone();
    drop(mock);
    assert_eq!(get(&clone, "/").await?.status, StatusCode::OK);
    drop(clone);
    let refused = within("refusal", async {
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "still accepting after the last handle was dropped"
    );
    Ok(())
}

mod azure;
mod tls;
