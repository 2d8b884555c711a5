//! Tenant client authentication end to end: API keys, JWTs from a JWKS file and a JWKS URL
//! (ES256 and RS256, key rotation), client certificates on the HTTPS listener, a reload that
//! revokes a key, and no credential in the logs, metrics or admin API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use pairgate_test_support::jwt::{SigningKey, jwks, now, unsigned};
use pairgate_test_support::tls::{Sender, TestCa, client_config, client_config_with_cert, connect};
use pairgate_test_support::{
    GatewayProcess, MockUpstream, Reply, TestGateway, client, send, temp_file,
};
use serde_json::json;

use crate::support::{eventually, mock, temp_path};

/// Keys of the two tenants (what their clients hold) and the digests the config holds.
const CONTOSO_KEY: &str = "ck_8f2a61d0c4e94b7f9a3e5d2c1b0a7f6e";
const FABRIKAM_KEY: &str = "fk_1b9e7c3a5d2f4e6a8c0b2d4f6a8c0e2d";

fn digest(key: &str) -> String {
    pairgate_clientauth::render_digest(key.as_bytes())
}

/// Tenants `contoso` (host contoso.example.com) and `fabrikam` (fabrikam.example.com) on one
/// account, each with `contoso_auth` / `fabrikam_auth` as its `client_auth`, and the tenant
/// header `x-tenant-id`.
fn config(up: &MockUpstream, extra: &str, contoso_auth: &str, fabrikam_auth: &str) -> String {
    format!(
        r#"{extra}
[routing]
tenant_header = "x-tenant-id"
[[region]]
name = "eastus"
[[account]]
name = "east"
region = "eastus"
url = "{}"
[[tenant]]
name = "contoso"
hosts = ["contoso.example.com"]
primary = "east"
client_auth = {contoso_auth}
[[tenant]]
name = "fabrikam"
hosts = ["fabrikam.example.com"]
primary = "east"
client_auth = {fabrikam_auth}
"#,
        up.url()
    )
}

/// `GET /v` on `url` as `host` with `headers`.
async fn call(url: &str, host: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(url).header(http::header::HOST, host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(
        &client(),
        req.body(Full::new(Bytes::new())).expect("request"),
    )
    .await
    .expect("reply")
}

fn key_config(up: &MockUpstream, extra: &str) -> String {
    config(
        up,
        extra,
        &format!("{{ api_keys = [\"{}\"] }}", digest(CONTOSO_KEY)),
        &format!("{{ api_keys = [\"{}\"] }}", digest(FABRIKAM_KEY)),
    )
}

/// No key: 401 with a challenge; an unknown key: 401 naming why; another tenant's key (by host
/// or by the tenant header): 403; the right key: 200, and the upstream sees the key's id, never
/// the key (nor a client's forged identity header). Only the 200s reach the account.
#[tokio::test]
async fn api_keys_admit_only_their_own_tenant() {
    let up = mock("east", "eastus").await;
    // A third tenant that does not authenticate clients.
    let open = "[[tenant]]\nname = \"open\"\nhosts = [\"open.example.com\"]\nprimary = \"east\"\n";
    let gw = TestGateway::start(&key_config(&up, open))
        .await
        .expect("gateway");
    let url = gw.url("/v");

    let none = call(&url, "contoso.example.com", &[]).await;
    assert_eq!(none.status, 401, "{}", none.text());
    assert_eq!(none.json(), json!({"error": "unauthenticated"}));
    assert_eq!(
        none.headers[http::header::WWW_AUTHENTICATE],
        "ApiKey realm=\"pairgate\""
    );

    let wrong = call(
        &url,
        "contoso.example.com",
        &[("x-api-key", "not-a-key-at-all-1234")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.json(),
        json!({"error": "unauthenticated", "reason": "unknown_api_key"})
    );
    assert!(
        !wrong.text().contains("not-a-key"),
        "the key is never echoed"
    );

    let other = call(&url, "contoso.example.com", &[("x-api-key", FABRIKAM_KEY)]).await;
    assert_eq!(other.status, 403);
    assert_eq!(other.json(), json!({"error": "wrong_tenant"}));
    // The tenant header names contoso; the key is fabrikam's.
    let by_header = call(
        &url,
        "fabrikam.example.com",
        &[("x-tenant-id", "contoso"), ("x-api-key", FABRIKAM_KEY)],
    )
    .await;
    assert_eq!(by_header.status, 403, "{}", by_header.text());
    assert_eq!(
        up.request_count(),
        0,
        "no refused request reached the account"
    );

    let ok = call(
        &url,
        "contoso.example.com",
        &[("x-api-key", CONTOSO_KEY), ("x-pairgate-client", "admin")],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let seen = up.requests().pop().expect("the account saw the request");
    assert_eq!(
        seen.header("x-api-key"),
        None,
        "the key stays at the gateway"
    );
    let id = &digest(CONTOSO_KEY)[..19];
    assert_eq!(
        seen.header("x-pairgate-client"),
        Some(id),
        "the key's id, not the forgery"
    );
    let ok = call(&url, "fabrikam.example.com", &[("x-api-key", FABRIKAM_KEY)]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(up.request_count(), 2);
    // A tenant's key sent by mistake to an open tenant stays at the gateway; a value that is no
    // configured key is the upstream's business and passes.
    let open_call = call(&url, "open.example.com", &[("x-api-key", FABRIKAM_KEY)]).await;
    assert_eq!(open_call.status, 200);
    assert_eq!(up.requests().pop().expect("seen").header("x-api-key"), None);
    let theirs = call(
        &url,
        "open.example.com",
        &[("x-api-key", "upstream-own-key")],
    )
    .await;
    assert_eq!(theirs.status, 200);
    assert_eq!(
        up.requests().pop().expect("seen").header("x-api-key"),
        Some("upstream-own-key")
    );
    assert_eq!(up.request_count(), 4);

    let metrics = gw
        .admin("GET", "/metrics", None)
        .await
        .expect("metrics")
        .text();
    // The tenant-header request resolved to contoso too: two wrong-tenant keys.
    for (result, n) in [
        ("ok", 1),
        ("missing", 1),
        ("invalid", 1),
        ("wrong_tenant", 2),
    ] {
        let line =
            format!("pairgate_client_auth_total{{tenant=\"contoso\",result=\"{result}\"}} {n}");
        assert!(metrics.contains(&line), "missing {line}:\n{metrics}");
    }
    assert!(
        metrics.contains("pairgate_client_auth_total{tenant=\"fabrikam\",result=\"ok\"} 1"),
        "{metrics}"
    );
    gw.shutdown().await.expect("shutdown");
}

/// The issuer's claims for `tenant`, valid for an hour.
fn claims(tenant: &str) -> serde_json::Value {
    json!({
        "iss": "https://idp.example.test/",
        "aud": "pairgate",
        "sub": "svc-billing",
        "tenant": tenant,
        "exp": now() + 3600,
        "nbf": now() - 10,
    })
}

fn issuer_toml(source: &str) -> String {
    format!(
        r#"[[jwt_issuer]]
name = "idp"
issuer = "https://idp.example.test/"
audiences = ["pairgate"]
{source}
jwks_min_refresh = "100ms"
algorithms = ["ES256", "RS256"]
"#
    )
}

/// ES256 and RS256 tokens from a JWKS file: the right tenant passes (the token stays at the
/// gateway, its `sub` goes upstream); expired, wrong audience, wrong issuer, `alg: none`, an
/// HMAC token keyed with the public key, and a bad signature are 401 naming the failed check;
/// another tenant's token is 403; a token signed with a new key passes once the file has it.
#[tokio::test]
async fn jwts_from_a_key_set_file() {
    let up = mock("east", "eastus").await;
    let (es, rs) = (SigningKey::es256("es-1"), SigningKey::rs256("rs-1"));
    let jwks_path = temp_file("jwks.json");
    std::fs::write(&jwks_path, jwks(&[&es, &rs])).expect("write jwks");
    let toml = config(
        &up,
        &issuer_toml(&format!("jwks_file = \"{}\"", jwks_path.display())),
        "{ jwt_issuers = [\"idp\"] }",
        "{ jwt_issuers = [\"idp\"] }",
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    let url = gw.url("/v");
    let bearer = |t: &str| format!("Bearer {t}");

    for key in [&es, &rs] {
        let token = key.sign(&claims("contoso"));
        for _ in 0..2 {
            // The second time the verified-token cache answers.
            let ok = call(
                &url,
                "contoso.example.com",
                &[("authorization", &bearer(&token))],
            )
            .await;
            assert_eq!(ok.status, 200, "{}", ok.text());
        }
        let seen = up.requests().pop().expect("seen");
        assert_eq!(
            seen.header("authorization"),
            None,
            "the token stays at the gateway"
        );
        assert_eq!(seen.header("x-pairgate-client"), Some("svc-billing"));
    }

    let mut expired = claims("contoso");
    expired["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims("contoso");
    wrong_aud["aud"] = json!("another-service");
    let mut wrong_iss = claims("contoso");
    wrong_iss["iss"] = json!("https://evil.example.test/");
    let stranger = SigningKey::es256("es-1");
    let cases = [
        (es.sign(&expired), 401, Some("token_expired")),
        (rs.sign(&wrong_aud), 401, Some("wrong_audience")),
        (es.sign(&wrong_iss), 401, Some("wrong_issuer")),
        (
            unsigned(&claims("contoso")),
            401,
            Some("algorithm_not_allowed"),
        ),
        (
            es.hmac_forgery(&claims("contoso")),
            401,
            Some("algorithm_not_allowed"),
        ),
        (
            rs.hmac_forgery(&claims("contoso")),
            401,
            Some("algorithm_not_allowed"),
        ),
        (
            stranger.sign(&claims("contoso")),
            401,
            Some("bad_signature"),
        ),
        ("not.a.jwt".to_owned(), 401, Some("malformed_token")),
        (
            es.sign(&{
                let mut c = claims("contoso");
                c.as_object_mut().expect("object").remove("tenant");
                c
            }),
            401,
            Some("missing_tenant_claim"),
        ),
        (es.sign(&claims("fabrikam")), 403, None),
    ];
    for (token, status, reason) in &cases {
        let reply = call(
            &url,
            "contoso.example.com",
            &[("authorization", &bearer(token))],
        )
        .await;
        assert_eq!(reply.status, *status, "{reason:?}: {}", reply.text());
        match reason {
            Some(reason) => {
                assert_eq!(reply.json()["reason"], *reason);
                assert_eq!(
                    reply.headers[http::header::WWW_AUTHENTICATE],
                    "Bearer realm=\"pairgate\", error=\"invalid_token\""
                );
            }
            None => assert_eq!(reply.json(), json!({"error": "wrong_tenant"})),
        }
        assert!(!reply.text().contains(token.as_str()));
    }
    assert_eq!(
        up.request_count(),
        4,
        "only the good tokens reached the account"
    );

    // Rotation: the issuer starts signing with a key the file does not hold yet.
    let next = SigningKey::es256("es-2");
    let token = next.sign(&claims("contoso"));
    let before = call(
        &url,
        "contoso.example.com",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(before.status, 401);
    assert_eq!(before.json()["reason"], "unknown_key");
    std::fs::write(&jwks_path, jwks(&[&es, &rs, &next])).expect("rotate jwks");
    let accepted = eventually(Duration::from_secs(5), || {
        let (url, token) = (url.clone(), bearer(&token));
        async move {
            call(&url, "contoso.example.com", &[("authorization", &token)])
                .await
                .status
                == 200
        }
    })
    .await;
    assert!(
        accepted,
        "a token of the new key is accepted once the file has it"
    );

    // Revocation: the file loses the ES256 key and the gateway reloads; a token of that key,
    // accepted (and cached) a moment ago, is refused at once.
    let revoked = es.sign(&claims("contoso"));
    let before = call(
        &url,
        "contoso.example.com",
        &[("authorization", &bearer(&revoked))],
    )
    .await;
    assert_eq!(before.status, 200);
    std::fs::write(&jwks_path, jwks(&[&rs, &next])).expect("revoke");
    let reload = gw.admin("POST", "/v1/reload", None).await.expect("reload");
    assert_eq!(reload.status, 200, "{}", reload.text());
    let after = call(
        &url,
        "contoso.example.com",
        &[("authorization", &bearer(&revoked))],
    )
    .await;
    assert_eq!(after.status, 401, "{}", after.text());
    gw.shutdown().await.expect("shutdown");
}

/// A one-route HTTP server answering every request with the current key set.
async fn jwks_server(doc: Arc<Mutex<String>>) -> std::net::SocketAddr {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let doc = Arc::clone(&doc);
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let body = doc.lock().expect("jwks doc").clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body)))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Keys from a JWKS URL: fetched at start, and fetched again when a token names a new `kid`.
#[tokio::test]
async fn jwts_from_a_key_set_url_with_rotation() {
    let up = mock("east", "eastus").await;
    let first = SigningKey::rs256("rs-1");
    let doc = Arc::new(Mutex::new(jwks(&[&first])));
    let addr = jwks_server(Arc::clone(&doc)).await;
    let toml = config(
        &up,
        &issuer_toml(&format!("jwks_url = \"http://{addr}/keys\"")),
        "{ jwt_issuers = [\"idp\"] }",
        "{ api_keys = [] }",
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    let url = gw.url("/v");
    let token = format!("Bearer {}", first.sign(&claims("contoso")));
    let fetched = eventually(Duration::from_secs(5), || {
        let (url, token) = (url.clone(), token.clone());
        async move {
            call(&url, "contoso.example.com", &[("authorization", &token)])
                .await
                .status
                == 200
        }
    })
    .await;
    assert!(fetched, "the key set is fetched at start");
    let next = SigningKey::es256("es-9");
    *doc.lock().expect("doc") = jwks(&[&first, &next]);
    let token = format!("Bearer {}", next.sign(&claims("contoso")));
    let reply = call(&url, "contoso.example.com", &[("authorization", &token)]).await;
    assert_eq!(
        reply.status,
        200,
        "an unknown kid fetches the set again: {}",
        reply.text()
    );
    gw.shutdown().await.expect("shutdown");
}

/// `GET /v` over TLS to `host` (also the SNI) with `config`. Any failure, the handshake's
/// included, is an error: TLS 1.3 reports a refused client certificate after the client's
/// handshake ends, so a refusal may only show on the first exchange.
async fn https_get(
    addr: std::net::SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Reply> {
    let stream = connect(addr, host, config).await?;
    let mut sender = Sender::start(stream).await?;
    sender.get(host, "/v").await
}

/// Client certificates on the HTTPS listener, `mtls = "required"`: a listed CN passes for its
/// tenant and is 403 for another; a certificate from another CA, and none at all, are refused
/// at the handshake. With `mtls = "optional"`, no certificate is a 401.
#[tokio::test]
async fn client_certificates_bind_a_tenant() {
    let up = mock("east", "eastus").await;
    let dir = temp_path("mtls");
    std::fs::create_dir_all(&dir).expect("dir");
    let server_ca = TestCa::new("server ca").expect("ca");
    let clients_ca = TestCa::new("clients ca").expect("ca");
    let rogue_ca = TestCa::new("rogue ca").expect("ca");
    let (cert, key) = server_ca
        .issue(&["contoso.example.com", "fabrikam.example.com"])
        .expect("server cert")
        .write(&dir, "server")
        .expect("write");
    let ca_path = clients_ca.write(&dir, "clients-ca.pem").expect("write ca");
    let billing = clients_ca.issue_client("billing").expect("client cert");
    let rogue = rogue_ca.issue_client("billing").expect("rogue cert");

    for mode in ["required", "optional"] {
        let extra = format!(
            "[listen]\nhttps = \"127.0.0.1:0\"\nclient_ca = \"{}\"\n[client_auth]\nmtls = \"{mode}\"\n[[certificate]]\nhosts = [\"contoso.example.com\", \"fabrikam.example.com\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            ca_path.display(),
            cert.display(),
            key.display()
        );
        let toml = config(
            &up,
            &extra,
            "{ mtls_subjects = [\"CN=billing\"] }",
            "{ mtls_subjects = [\"spiffe://example.test/fabrikam\"] }",
        );
        let gw = TestGateway::start(&toml).await.expect("gateway");
        let addr = gw.https_addr().expect("https");

        let with_cert = client_config_with_cert(&[&server_ca.cert_pem], &billing).expect("client");
        let ok = https_get(addr, "contoso.example.com", Arc::clone(&with_cert))
            .await
            .expect("a listed certificate is served");
        assert_eq!(ok.status, 200, "{mode}: {}", ok.text());
        assert_eq!(
            up.requests()
                .pop()
                .expect("seen")
                .header("x-pairgate-client"),
            Some("CN=billing")
        );
        let other = https_get(addr, "fabrikam.example.com", with_cert)
            .await
            .expect("reply");
        assert_eq!(other.status, 403, "{mode}: {}", other.text());

        let rogue_client = client_config_with_cert(&[&server_ca.cert_pem], &rogue).expect("client");
        let no_cert = client_config(&[&server_ca.cert_pem], &[b"http/1.1"]).expect("client");
        let refused = async |config| {
            https_get(addr, "contoso.example.com", config)
                .await
                .is_err()
        };
        assert!(
            refused(rogue_client).await,
            "{mode}: another CA's certificate is refused"
        );
        if mode == "required" {
            assert!(
                refused(no_cert).await,
                "no certificate is refused when required"
            );
        } else {
            let reply = https_get(addr, "contoso.example.com", no_cert)
                .await
                .expect("optional: no certificate still connects");
            assert_eq!(reply.status, 401, "{}", reply.text());
        }
        gw.shutdown().await.expect("shutdown");
    }
    assert_eq!(
        up.request_count(),
        2,
        "only the listed certificate's requests arrived"
    );
}

/// A reload that removes a key revokes it for the next request, with no restart; refusals are
/// logged (rate-limited) without the key, and neither key nor token appears in the log, the
/// metrics or the admin API.
#[tokio::test]
async fn reload_revokes_a_key_and_no_credential_leaks() {
    let up = mock("east", "eastus").await;
    let es = SigningKey::es256("es-1");
    let jwks_path = temp_file("jwks-leak.json");
    std::fs::write(&jwks_path, jwks(&[&es])).expect("write jwks");
    let extra = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"PG_ADMIN\"\n{}",
        issuer_toml(&format!("jwks_file = \"{}\"", jwks_path.display()))
    );
    let both = format!(
        "{{ api_keys = [\"{}\"], jwt_issuers = [\"idp\"] }}",
        digest(CONTOSO_KEY)
    );
    let path = temp_path("client-auth-reload.toml");
    let gw = GatewayProcess::spawn(
        &path,
        &config(&up, &extra, &both, "{ jwt_issuers = [\"idp\"] }"),
        &[("PG_ADMIN", pairgate_test_support::ADMIN_TOKEN)],
    )
    .expect("gateway process");
    let url = gw.url("/v");
    let token = es.sign(&claims("fabrikam"));
    let wrong_key = "wrong-key-0d9c7b5a3e1f";
    assert_eq!(
        call(&url, "contoso.example.com", &[("x-api-key", CONTOSO_KEY)])
            .await
            .status,
        200
    );
    assert_eq!(
        call(&url, "contoso.example.com", &[("x-api-key", wrong_key)])
            .await
            .status,
        401
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        call(&url, "contoso.example.com", &[("authorization", &bearer)])
            .await
            .status,
        403
    );

    // Revoke contoso's key: the file keeps only its JWT issuer.
    std::fs::write(
        &path,
        config(
            &up,
            &extra,
            "{ jwt_issuers = [\"idp\"] }",
            "{ jwt_issuers = [\"idp\"] }",
        ),
    )
    .expect("rewrite config");
    let reload = pairgate_test_support::admin_call(
        &gw.admin_url("/v1/reload").expect("admin url"),
        "POST",
        None,
        Some(pairgate_test_support::ADMIN_TOKEN),
    )
    .await
    .expect("reload");
    assert_eq!(reload.status, 200, "{}", reload.text());
    let revoked = call(&url, "contoso.example.com", &[("x-api-key", CONTOSO_KEY)]).await;
    assert_eq!(revoked.status, 401, "{}", revoked.text());

    assert!(
        gw.wait_stderr(Duration::from_secs(5), |log| log
            .contains("client authentication refused"))
            .await,
        "refusals are logged"
    );
    let metrics = gw.metrics().await.expect("metrics");
    let tenants = pairgate_test_support::admin_call(
        &gw.admin_url("/v1/tenants").expect("admin url"),
        "GET",
        None,
        Some(pairgate_test_support::ADMIN_TOKEN),
    )
    .await
    .expect("tenants")
    .text();
    let log = gw.kill();
    for (what, text) in [("log", &log), ("metrics", &metrics), ("admin", &tenants)] {
        for secret in [CONTOSO_KEY, wrong_key, token.as_str()] {
            assert!(!text.contains(secret), "{what} shows a credential");
        }
    }
}
