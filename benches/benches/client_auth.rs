//! Per-request CPU cost of client authentication (`pairgate_clientauth::Gate::authenticate`),
//! each kind next to a tenant without `client_auth`, in one run:
//!
//! - `open`: the tenant does not authenticate (today's default);
//! - `api_key`: the right key (SHA-256 of the presented key, constant-time compare);
//! - `jwt_repeat`: an ES256 token seen before (SHA-256 of the token, cache read);
//! - `jwt_first`: the same with the cache off (`jwt_cache_entries = 0`): a full verification,
//!   for reference;
//! - `mtls`: a verified client certificate's subject matched against the tenant's list.
//!
//! Targets (the client authentication issue): API key at most 1 µs over `open`, a repeat JWT at
//! most 2 µs. Run: `cargo bench -p pairgate-benches --bench client_auth`.

use std::hint::black_box;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue};
use pairgate_clientauth::{Gate, Issuers, PeerIdentity, render_digest};

const KEY: &str = "bench-key-000001-7c1e9a3b5d2f4e6a";

/// A JWKS file with one fresh ES256 key, and a token of tenant `jwt` signed by it.
fn key_set(dir: &std::path::Path) -> String {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let point = pair.public_key_raw();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    }]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).expect("write jwks");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".to_owned());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 86_400;
    let claims = serde_json::json!({
        "iss": "https://idp.bench/", "aud": "pairgate", "sub": "client-1", "tenant": "jwt",
        "exp": exp,
    });
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der());
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

fn gate(dir: &std::path::Path, cache: usize) -> Gate {
    let text = format!(
        r#"
[client_auth]
jwt_cache_entries = {cache}
[[jwt_issuer]]
name = "idp"
issuer = "https://idp.bench/"
audiences = ["pairgate"]
jwks_file = "jwks.json"
[[region]]
name = "r"
[[account]]
name = "a"
region = "r"
url = "http://127.0.0.1:9"
[[tenant]]
name = "open"
hosts = ["open.bench"]
primary = "a"
[[tenant]]
name = "key"
hosts = ["key.bench"]
primary = "a"
client_auth = {{ api_keys = ["{}"] }}
[[tenant]]
name = "jwt"
hosts = ["jwt.bench"]
primary = "a"
client_auth = {{ jwt_issuers = ["idp"] }}
[[tenant]]
name = "cert"
hosts = ["cert.bench"]
primary = "a"
client_auth = {{ mtls_subjects = ["CN=other", "CN=billing", "spiffe://bench/x"] }}
[listen]
https = "127.0.0.1:0"
client_ca = "ca.pem"
[[certificate]]
hosts = ["open.bench"]
cert = "c.pem"
key = "k.pem"
"#,
        render_digest(KEY.as_bytes())
    );
    let config = pairgate_config::load(&text, &|_: &str| None)
        .expect("bench config")
        .config;
    let issuers = Issuers::for_config(&config, dir, None);
    Gate::new(&config, &issuers)
}

fn client_auth(c: &mut Criterion) {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("pairgate-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token = key_set(&dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = runtime.enter();
    let cached = gate(&dir, 10_000);
    let uncached = gate(&dir, 0);
    let mut key_headers = HeaderMap::new();
    key_headers.insert("x-api-key", HeaderValue::from_static(KEY));
    let mut jwt_headers = HeaderMap::new();
    jwt_headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    let empty = HeaderMap::new();
    let peer = PeerIdentity::with_names(vec!["CN=billing".to_owned()]);

    // Every case must pass: a refused credential would measure the wrong path.
    let run = |gate: &Gate,
               tenant: usize,
               name: &str,
               headers: &HeaderMap,
               peer: Option<&PeerIdentity>| {
        gate.authenticate(tenant, name, headers, peer)
            .now_or_never()
            .expect("no await on these paths")
            .expect("authenticated")
    };
    assert!(run(&cached, 0, "open", &empty, None).is_none());
    assert!(run(&cached, 1, "key", &key_headers, None).is_some());
    assert!(run(&cached, 2, "jwt", &jwt_headers, None).is_some());
    assert!(run(&uncached, 2, "jwt", &jwt_headers, None).is_some());
    assert!(run(&cached, 3, "cert", &empty, Some(&peer)).is_some());

    let mut g = c.benchmark_group("client_auth");
    g.bench_function("open", |b| {
        b.iter(|| black_box(run(&cached, 0, "open", black_box(&empty), None)))
    });
    g.bench_function("api_key", |b| {
        b.iter(|| black_box(run(&cached, 1, "key", black_box(&key_headers), None)))
    });
    g.bench_function("jwt_repeat", |b| {
        b.iter(|| black_box(run(&cached, 2, "jwt", black_box(&jwt_headers), None)))
    });
    g.bench_function("jwt_first", |b| {
        b.iter(|| black_box(run(&uncached, 2, "jwt", black_box(&jwt_headers), None)))
    });
    g.bench_function("mtls", |b| {
        b.iter(|| black_box(run(&cached, 3, "cert", black_box(&empty), Some(&peer))))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, client_auth);
criterion_main!(benches);
