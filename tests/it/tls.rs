//! TLS on both sides: certificates by SNI, 421 on SNI/Host mismatch, h2 over TLS, upstreams
//! behind a private CA, bad upstream certificates, mTLS, and certificates swapped by reload.

use std::path::Path;
use std::time::Duration;

use pairgate_test_support::tls::{
    Sender, TestCa, client_config, connect, mock_server_config, names, peer_leaf,
};
use pairgate_test_support::{MockConfig, MockUpstream, TestGateway, get, temp_file};

use crate::support::{eventually, mock};

/// A directory for one test's certificate files.
fn cert_dir() -> std::path::PathBuf {
    let dir = temp_file("certs");
    std::fs::create_dir_all(&dir).expect("cert dir");
    dir
}

/// Downstream certificates: `a.example.com`, `*.b.example.com`, and optionally a default one.
fn downstream(ca: &TestCa, dir: &Path, with_default: bool) -> String {
    let (a_cert, a_key) = ca
        .issue(&["a.example.com"])
        .expect("issue")
        .write(dir, "a")
        .expect("write");
    let (b_cert, b_key) = ca
        .issue(&["*.b.example.com"])
        .expect("issue")
        .write(dir, "b")
        .expect("write");
    let mut s = format!(
        "[[certificate]]\nhosts = [\"a.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n[[certificate]]\nhosts = [\"*.b.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display()
    );
    if with_default {
        let (d_cert, d_key) = ca
            .issue(&["default.example.com"])
            .expect("issue")
            .write(dir, "d")
            .expect("write");
        s.push_str(&format!(
            "[[certificate]]\ndefault = true\ncert = \"{}\"\nkey = \"{}\"\n",
            d_cert.display(),
            d_key.display()
        ));
    }
    s
}

/// A test CA, its certificate directory, a plain account and a gateway with an HTTPS listener
/// serving `downstream` certificates (with a default one when `with_default`).
async fn https_gateway(
    with_default: bool,
) -> (TestCa, std::path::PathBuf, MockUpstream, TestGateway) {
    let (ca, dir, up) = (
        TestCa::new("downstream ca").expect("ca"),
        cert_dir(),
        mock("plain", "eastus").await,
    );
    let gw = TestGateway::start(&config(&up, &downstream(&ca, &dir, with_default), ""))
        .await
        .expect("gateway");
    (ca, dir, up, gw)
}

/// Tenants `a` (a.example.com) and `b` (*.b.example.com) on one plain account.
fn config(upstream: &MockUpstream, certs: &str, extra_account: &str) -> String {
    format!(
        r#"[listen]
https = "127.0.0.1:0"
[health]
interval = "300ms"
timeout = "250ms"
rise = 1
fall = 2
[[region]]
name = "eastus"
[[account]]
name = "plain"
region = "eastus"
url = "{}"
{extra_account}
[[tenant]]
name = "a"
hosts = ["a.example.com"]
primary = "plain"
[[tenant]]
name = "b"
hosts = ["*.b.example.com"]
primary = "plain"
{certs}"#,
        upstream.url()
    )
}

#[tokio::test]
async fn sni_picks_each_tenants_certificate() {
    let (ca, _dir, _up, gw) = https_gateway(false).await;
    let addr = gw.https_addr().expect("https listener");
    let client = client_config(&[&ca.cert_pem], &[b"http/1.1"]).expect("client");
    for (sni, host, leaf_name, forwarded_proto) in [
        ("a.example.com", "a.example.com", "a.example.com", "https"),
        (
            "x.b.example.com",
            "x.b.example.com",
            "*.b.example.com",
            "https",
        ),
    ] {
        let stream = connect(addr, sni, client.clone()).await.expect("handshake");
        let leaf = peer_leaf(&stream).expect("certificate");
        assert!(names(&leaf, leaf_name), "{sni}: wrong certificate");
        let mut sender = Sender::start(stream).await.expect("http");
        let reply = sender.get(host, "/hello").await.expect("reply");
        assert_eq!(reply.status, 200, "{sni}: {}", reply.text());
        assert_eq!(
            reply.json()["headers"]["x-forwarded-proto"],
            forwarded_proto
        );
    }
    // Unknown SNI and no default certificate: the handshake fails.
    assert!(connect(addr, "unknown.example.com", client).await.is_err());
}

#[tokio::test]
async fn unknown_sni_gets_the_default_certificate() {
    let (ca, _dir, _up, gw) = https_gateway(true).await;
    let client = client_config(&[&ca.cert_pem], &[b"http/1.1"]).expect("client");
    let stream = connect(
        gw.https_addr().expect("https"),
        "default.example.com",
        client,
    )
    .await
    .expect("handshake");
    assert!(names(
        &peer_leaf(&stream).expect("certificate"),
        "default.example.com"
    ));
}

#[tokio::test]
async fn host_naming_another_tenant_than_sni_is_421() {
    let (ca, _dir, up, gw) = https_gateway(false).await;
    let client = client_config(&[&ca.cert_pem], &[b"http/1.1"]).expect("client");
    let stream = connect(gw.https_addr().expect("https"), "a.example.com", client)
        .await
        .expect("handshake");
    let mut sender = Sender::start(stream).await.expect("http");
    let reply = sender.get("x.b.example.com", "/").await.expect("reply");
    assert_eq!(reply.status, 421);
    assert_eq!(reply.json()["error"], "misdirected_request");
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn h2_over_tls() {
    let (ca, _dir, _up, gw) = https_gateway(false).await;
    let client = client_config(&[&ca.cert_pem], &[b"h2", b"http/1.1"]).expect("client");
    let stream = connect(gw.https_addr().expect("https"), "a.example.com", client)
        .await
        .expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = Sender::start(stream).await.expect("h2");
    for _ in 0..3 {
        let reply = sender.get("a.example.com", "/h2").await.expect("reply");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["headers"]["via"], "2 pairgate");
    }
}

/// An https account behind a private CA: verified with `ca`, named with `sni`.
async fn tls_upstream_gateway(
    up_issued_by: &TestCa,
    trusted: &TestCa,
    client_ca: Option<&TestCa>,
    send_client_cert: bool,
) -> (TestGateway, MockUpstream) {
    let dir = cert_dir();
    let issued = up_issued_by.issue(&["upstream.internal"]).expect("issue");
    let server =
        mock_server_config(&issued, client_ca.map(|c| c.cert_pem.as_str())).expect("server config");
    let up = MockUpstream::start_tls(MockConfig::new("secure", "eastus"), server)
        .await
        .expect("tls mock");
    let ca_path = trusted.write(&dir, "upstream-ca.pem").expect("write");
    let mut account = format!(
        "[[account]]\nname = \"secure\"\nregion = \"eastus\"\nurl = \"https://{}\"\nca = \"{}\"\nsni = \"upstream.internal\"\nhealth = {{ path = \"/healthz\" }}\n",
        up.addr(),
        ca_path.display()
    );
    if send_client_cert {
        let ca = client_ca.expect("client CA");
        let (c, k) = ca
            .issue_client("pairgate")
            .expect("client cert")
            .write(&dir, "client")
            .expect("write");
        account.push_str(&format!(
            "client_cert = \"{}\"\nclient_key = \"{}\"\n",
            c.display(),
            k.display()
        ));
    }
    let plain = mock("plain", "eastus").await;
    let toml = format!(
        "[health]\ninterval = \"300ms\"\ntimeout = \"250ms\"\nrise = 1\nfall = 2\n[[region]]\nname = \"eastus\"\n[[account]]\nname = \"plain\"\nregion = \"eastus\"\nurl = \"{}\"\n{account}[[tenant]]\nname = \"s\"\nhosts = [\"s.example.com\"]\nprimary = \"secure\"\n",
        plain.url()
    );
    (TestGateway::start(&toml).await.expect("gateway"), up)
}

async fn account_health(gw: &TestGateway) -> String {
    gw.admin("GET", "/v1/tenants/s", None)
        .await
        .expect("admin")
        .json()["primary"]["health"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn upstream_behind_a_private_ca() {
    let ca = TestCa::new("private ca").expect("ca");
    let (gw, up) = tls_upstream_gateway(&ca, &ca, None, false).await;
    let reply = pairgate_test_support::get(&gw.url("/x"), "s.example.com")
        .await
        .expect("reply");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["account"], "secure");
    assert!(
        eventually(Duration::from_secs(3), || async {
            account_health(&gw).await == "healthy"
        })
        .await
    );
    assert!(up.probe_count() > 0, "probes go over TLS too");
}

#[tokio::test]
async fn upstream_certificate_from_another_ca_is_502_and_unhealthy() {
    let (trusted, rogue) = (
        TestCa::new("private ca").expect("ca"),
        TestCa::new("rogue ca").expect("ca"),
    );
    let (gw, up) = tls_upstream_gateway(&rogue, &trusted, None, false).await;
    let reply = pairgate_test_support::get(&gw.url("/x"), "s.example.com")
        .await
        .expect("reply");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        eventually(Duration::from_secs(3), || async {
            account_health(&gw).await == "unhealthy"
        })
        .await
    );
    assert_eq!(
        up.request_count(),
        0,
        "no request over an unverified connection"
    );
}

#[tokio::test]
async fn mtls_to_an_upstream_that_requires_it() {
    let ca = TestCa::new("private ca").expect("ca");
    let (gw, _up) = tls_upstream_gateway(&ca, &ca, Some(&ca), true).await;
    let reply = pairgate_test_support::get(&gw.url("/x"), "s.example.com")
        .await
        .expect("reply");
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Without a client certificate the same upstream refuses the handshake.
    let (gw, up) = tls_upstream_gateway(&ca, &ca, Some(&ca), false).await;
    let reply = pairgate_test_support::get(&gw.url("/x"), "s.example.com")
        .await
        .expect("reply");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn reloaded_certificate_serves_new_connections_and_old_ones_keep_working() {
    let (ca, dir, _up, gw) = https_gateway(false).await;
    let addr = gw.https_addr().expect("https");
    let client = client_config(&[&ca.cert_pem], &[b"http/1.1"]).expect("client");
    let old = connect(addr, "a.example.com", client)
        .await
        .expect("handshake");
    let old_leaf = peer_leaf(&old).expect("leaf");
    let mut old_sender = Sender::start(old).await.expect("http");
    assert_eq!(
        old_sender
            .get("a.example.com", "/")
            .await
            .expect("reply")
            .status,
        200
    );

    // Rotate a.example.com's certificate on disk and reload.
    ca.issue(&["a.example.com"])
        .expect("issue")
        .write(&dir, "a")
        .expect("write");
    let r = gw.admin("POST", "/v1/reload", None).await.expect("reload");
    assert_eq!(r.status, 200, "{}", r.text());
    // A fresh client: a resumed session would keep the certificate it was made with.
    let fresh = client_config(&[&ca.cert_pem], &[b"http/1.1"]).expect("client");
    let new = connect(addr, "a.example.com", fresh)
        .await
        .expect("handshake");
    assert_ne!(
        peer_leaf(&new).expect("leaf"),
        old_leaf,
        "new connections get the new certificate"
    );
    // The connection made before the reload still works.
    assert_eq!(
        old_sender
            .get("a.example.com", "/again")
            .await
            .expect("reply")
            .status,
        200
    );
}

#[tokio::test]
async fn broken_certificates_are_rejected_at_load() {
    let (ca, dir, up) = (
        TestCa::new("downstream ca").expect("ca"),
        cert_dir(),
        mock("plain", "eastus").await,
    );
    let other = ca.issue(&["a.example.com"]).expect("issue");
    let (cert, _) = ca
        .issue(&["a.example.com"])
        .expect("issue")
        .write(&dir, "mismatch")
        .expect("write");
    let (_, other_key) = other.write(&dir, "other").expect("write");
    let expired = ca
        .issue_with(&["b.example.com"], |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
        .expect("issue");
    let (exp_cert, exp_key) = expired.write(&dir, "expired").expect("write");
    let certs = format!(
        "[[certificate]]\nhosts = [\"a.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n[[certificate]]\nhosts = [\"b.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n[[certificate]]\nhosts = [\"c.example.com\"]\ncert = \"{}/missing.pem\"\nkey = \"{}/missing-key.pem\"\n",
        cert.display(),
        other_key.display(),
        exp_cert.display(),
        exp_key.display(),
        dir.display(),
        dir.display()
    );
    let err = TestGateway::start(&config(&up, &certs, ""))
        .await
        .err()
        .expect("rejected")
        .to_string();
    for expect in [
        "certificate[0].key",
        "does not match",
        "certificate[1].cert",
        "expired",
        "certificate[2].cert",
        "missing.pem",
    ] {
        assert!(err.contains(expect), "missing {expect:?} in:\n{err}");
    }
}

/// An https account whose certificate has expired: the 502's access log line (the real binary's
/// stderr) and the tenant detail's account health name the certificate problem, and a plain
/// refused connection still says it was refused (#19: errors keep their causes).
#[tokio::test]
async fn an_expired_upstream_certificate_is_named_in_the_log_and_the_tenant_detail() {
    use pairgate_test_support::{GatewayProcess, admin_call};
    const TOKEN: &str = "it-expired-cert-token";
    let (ca, dir) = (TestCa::new("private ca").expect("ca"), cert_dir());
    let expired = ca
        .issue_with(&["upstream.internal"], |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
        .expect("issue");
    let server = mock_server_config(&expired, None).expect("server config");
    let up = MockUpstream::start_tls(MockConfig::new("secure", "eastus"), server)
        .await
        .expect("tls mock");
    let gone = mock("gone", "eastus").await;
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"IT_ADMIN_TOKEN\"\n\
         [health]\ninterval = \"300ms\"\ntimeout = \"250ms\"\nrise = 1\nfall = 1\n\
         [[region]]\nname = \"eastus\"\n\
         [[account]]\nname = \"secure\"\nregion = \"eastus\"\nurl = \"https://{}\"\nca = \"{}\"\nsni = \"upstream.internal\"\nhealth = {{ path = \"/healthz\" }}\n\
         [[account]]\nname = \"gone\"\nregion = \"eastus\"\nurl = \"{}\"\n\
         [[tenant]]\nname = \"s\"\nhosts = [\"s.example.com\"]\nprimary = \"secure\"\n\
         [[tenant]]\nname = \"g\"\nhosts = [\"g.example.com\"]\nprimary = \"gone\"\n",
        up.addr(),
        ca.write(&dir, "upstream-ca.pem").expect("write").display(),
        gone.url(),
    );
    gone.kill().await;
    let gw = GatewayProcess::spawn(
        &dir.join("expired.toml"),
        &toml,
        &[("IT_ADMIN_TOKEN", TOKEN)],
    )
    .expect("gateway process");
    let access_line = |log: &str, code: &str, cause: &[&str]| {
        log.lines().any(|l| {
            l.contains("pairgate::access")
                && l.contains(code)
                && cause.iter().all(|c| l.contains(c))
        })
    };

    let reply = get(&gw.url("/x"), "s.example.com").await.expect("reply");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.json()["error"], "upstream_unreachable");
    assert!(
        !reply.text().contains("certificate"),
        "the cause is for the log, not the client: {}",
        reply.text()
    );
    let tls_cause = [
        "error.cause",
        "tls: invalid peer certificate: certificate expired",
    ];
    assert!(
        gw.wait_stderr(Duration::from_secs(5), |log| {
            access_line(log, "upstream_unreachable", &tls_cause)
        })
        .await,
        "no access line naming the expired certificate:\n{}",
        gw.stderr()
    );
    assert_eq!(
        up.request_count(),
        0,
        "nothing sent over an expired certificate"
    );

    let detail_url = gw.admin_url("/v1/tenants/s").expect("admin url");
    let last_error = || async {
        let reply = admin_call(&detail_url, "GET", None, Some(TOKEN))
            .await
            .expect("detail");
        reply.json()["primary"]["last_error"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            last_error()
                .await
                .starts_with("tls: invalid peer certificate: certificate expired")
        })
        .await,
        "the tenant detail does not name the certificate problem: {:?}",
        last_error().await
    );
    let detail = admin_call(&detail_url, "GET", None, Some(TOKEN))
        .await
        .expect("detail")
        .json();
    assert_eq!(detail["primary"]["health"], "unhealthy", "{detail}");
    assert!(
        detail["history"]
            .to_string()
            .contains("certificate expired"),
        "the account_health event carries the reason: {detail}"
    );

    let reply = get(&gw.url("/x"), "g.example.com").await.expect("reply");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(
        gw.wait_stderr(Duration::from_secs(5), |log| {
            access_line(log, "upstream_unreachable", &["error.cause", "refused"])
        })
        .await,
        "no access line saying the connection was refused:\n{}",
        gw.stderr()
    );
    let gone_url = gw.admin_url("/v1/tenants/g").expect("admin url");
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin_call(&gone_url, "GET", None, Some(TOKEN))
                .await
                .expect("detail")
                .json()["primary"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("refused"))
        })
        .await,
        "a refused account's last_error says refused"
    );
}
