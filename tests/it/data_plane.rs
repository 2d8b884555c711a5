//! Routing and rewriting through a real gateway to real mock accounts.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use pairgate_test_support::{TestGateway, client, get, send};

use crate::support::{EAST_KEY, config, regions};

async fn gateway() -> (
    TestGateway,
    pairgate_test_support::MockUpstream,
    pairgate_test_support::MockUpstream,
) {
    let (east, west) = regions().await;
    let gw = TestGateway::start_with_env(&config(&east, &west, ""), &[("IT_EAST_KEY", EAST_KEY)])
        .await
        .expect("gateway starts");
    (gw, east, west)
}

/// Each routing method lands on the tenant's primary account with the right path.
#[tokio::test]
async fn every_routing_method_reaches_the_primary() {
    let (gw, east, west) = gateway().await;
    // (host, tenant header, request path, expected account, expected upstream path)
    let cases = [
        (
            "contoso.example.com",
            None,
            "/videos?page=2",
            "east",
            "/eastus/Accounts/1111/videos?page=2",
        ),
        (
            "CONTOSO.example.com:8080",
            None,
            "/a",
            "east",
            "/eastus/Accounts/1111/a",
        ),
        (
            "eu.contoso.example.com",
            None,
            "/b",
            "east",
            "/eastus/Accounts/1111/b",
        ),
        (
            "gateway.local",
            None,
            "/fabrikam/videos/1",
            "east",
            "/eastus/Accounts/1111/videos/1",
        ),
        (
            "gateway.local",
            None,
            "/fabrikam",
            "east",
            "/eastus/Accounts/1111/",
        ),
        ("tailspin.example.com", None, "/c", "west", "/c"),
        ("contoso.example.com", Some("tailspin"), "/d", "west", "/d"),
    ];
    for (host, tenant, path, account, upstream_path) in cases {
        let mut req = Request::get(gw.url(path)).header("host", host);
        if let Some(t) = tenant {
            req = req.header("x-tenant-id", t);
        }
        let reply = send(
            &client(),
            req.body(Full::new(Bytes::new())).expect("request"),
        )
        .await
        .expect("reply");
        assert_eq!(reply.status, 200, "{host} {path}: {}", reply.text());
        let echo = reply.json();
        assert_eq!(echo["account"], account, "{host} {path}");
        let got = format!(
            "{}{}",
            echo["path"].as_str().expect("path"),
            echo["query"]
                .as_str()
                .map(|q| format!("?{q}"))
                .unwrap_or_default()
        );
        assert_eq!(got, upstream_path, "{host} {path}");
    }
    assert_eq!(east.request_count(), 5);
    assert_eq!(west.request_count(), 2);
}

/// The trusted tenant header names the tenant to pairgate and is removed before forwarding,
/// unless `[routing] forward_tenant_header = true` keeps it.
#[tokio::test]
async fn tenant_header_is_removed_before_forwarding_unless_kept() {
    let (east, west) = regions().await;
    for forwarded in [false, true] {
        // `config` writes its own [routing]: add the key to it.
        let toml = config(&east, &west, "").replace(
            "tenant_header = \"x-tenant-id\"",
            if forwarded {
                "tenant_header = \"x-tenant-id\"\nforward_tenant_header = true"
            } else {
                "tenant_header = \"x-tenant-id\""
            },
        );
        let gw = TestGateway::start_with_env(&toml, &[("IT_EAST_KEY", EAST_KEY)])
            .await
            .expect("gateway starts");
        let req = Request::get(gw.url("/t"))
            .header("host", "contoso.example.com")
            .header("x-tenant-id", "tailspin")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let reply = send(&client(), req).await.expect("reply");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["account"], "west", "the header chose tailspin");
        let seen = west.requests().pop().expect("west saw the request");
        assert_eq!(
            seen.header("x-tenant-id").is_some(),
            forwarded,
            "forward_tenant_header = {forwarded}"
        );
    }
}

/// Unknown host, unknown tenant header: 404 JSON, and no account sees anything.
#[tokio::test]
async fn unknown_tenant_is_404_and_reaches_nobody() {
    let (gw, east, west) = gateway().await;
    for (host, tenant) in [
        ("nobody.example.com", None),
        ("example.com", None),
        ("contoso.example.com", Some("nobody")),
    ] {
        let mut req = Request::get(gw.url("/x")).header("host", host);
        if let Some(t) = tenant {
            req = req.header("x-tenant-id", t);
        }
        let reply = send(
            &client(),
            req.body(Full::new(Bytes::new())).expect("request"),
        )
        .await
        .expect("reply");
        assert_eq!(reply.status, 404, "{host} {tenant:?}");
        assert_eq!(reply.json()["error"], "unknown_tenant");
    }
    // Probes connect too, so count requests (probes are not recorded as requests).
    assert_eq!(east.request_count() + west.request_count(), 0);
}

/// Injected headers replace client values; hop-by-hop headers and those named in Connection are
/// stripped; forwarding headers are set; Host is the account's authority.
#[tokio::test]
async fn headers_are_rewritten() {
    let (gw, east, _west) = gateway().await;
    let req = Request::get(gw.url("/h"))
        .header("host", "contoso.example.com")
        .header("ocp-apim-subscription-key", "client-forged")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must-go")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "gzip")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-end-to-end", "stays")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let reply = send(&client(), req).await.expect("reply");
    assert_eq!(reply.status, 200);
    let seen = east.requests().pop().expect("east saw the request");
    assert_eq!(seen.header_all("ocp-apim-subscription-key"), vec![EAST_KEY]);
    for gone in [
        "x-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(seen.header("x-end-to-end"), Some("stays"));
    assert_eq!(seen.header("host"), Some(east.addr().to_string().as_str()));
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("contoso.example.com"));
    assert_eq!(seen.header("via"), Some("1.1 pairgate"));
    assert_eq!(seen.version, "HTTP/1.1");
}

/// Request bodies arrive intact (fixed length and chunked) and responses come back.
#[tokio::test]
async fn bodies_pass_both_ways() {
    let (gw, _east, west) = gateway().await;
    let body = Bytes::from(vec![b'x'; 300_000]);
    let req = Request::post(gw.url("/upload"))
        .header("host", "tailspin.example.com")
        .body(Full::new(body.clone()))
        .expect("request");
    let reply = send(&client(), req).await.expect("reply");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_bytes"], 300_000);
    let seen = west.requests().pop().expect("west saw it");
    assert_eq!(seen.body_fnv64, pairgate_mock::fnv64(&body));
    assert_eq!(seen.method, "POST");
}

/// An HTTP/2 (h2c prior knowledge) client is served, resolved by `:authority`, and forwarded
/// as HTTP/1.1.
#[tokio::test]
async fn http2_clients_are_served() {
    let (gw, _east, west) = gateway().await;
    let uri = format!("http://tailspin.example.com:{}/h2", gw.addr().port());
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let reply = send_h2_via(&gw, req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["account"], "west");
    let seen = west.requests().pop().expect("west saw it");
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.header("via"), Some("2 pairgate"));
    assert_eq!(
        seen.header("x-forwarded-host")
            .map(|h| h.starts_with("tailspin.example.com")),
        Some(true)
    );
}

/// Sends an HTTP/2 request to the gateway's socket whatever authority the URI names.
async fn send_h2_via(gw: &TestGateway, req: Request<Full<Bytes>>) -> pairgate_test_support::Reply {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let resp = tokio::time::timeout(pairgate_test_support::WAIT, sender.send_request(req))
        .await
        .expect("in time")
        .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    pairgate_test_support::Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Plain `get` helper works against the gateway (used by other tests); response hop-by-hop
/// headers from the upstream never reach the client.
#[tokio::test]
async fn responses_come_back_without_hop_by_hop() {
    let (gw, _east, _west) = gateway().await;
    let reply = get(&gw.url("/status/201"), "tailspin.example.com")
        .await
        .expect("reply");
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.headers.get("x-mock-account").map(|v| v.as_bytes()),
        Some(&b"west"[..])
    );
    assert!(reply.headers.get("keep-alive").is_none());
}
