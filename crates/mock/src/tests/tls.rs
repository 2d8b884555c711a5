//! The TLS mock: HTTP/1.1 and HTTP/2 over TLS chosen by ALPN, statistics, handshake failures,
//! faults and revive.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{BoxError, SHORT, TestResult, within};
use crate::{Behavior, DEFAULT_PROBE_PATH, MockConfig, MockUpstream};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA and a server certificate it signed for `mock.test` and 127.0.0.1.
struct Pki {
    server: Arc<ServerConfig>,
    /// Trusts the CA.
    roots: Arc<RootCertStore>,
}

fn ca() -> Result<(Issuer<'static, KeyPair>, RootCertStore), BoxError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "mock test ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone())?;
    Ok((Issuer::new(params, key), roots))
}

fn pki() -> Result<Pki, BoxError> {
    let (issuer, roots) = ca()?;
    let params = CertificateParams::new(vec!["mock.test".to_owned(), "127.0.0.1".to_owned()])?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Pki {
        server: Arc::new(server),
        roots: Arc::new(roots),
    })
}

fn client(roots: &Arc<RootCertStore>, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, BoxError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(Arc::clone(roots))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

async fn connect_tls(
    mock: &MockUpstream,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, BoxError> {
    let tcp = within("connect", TcpStream::connect(mock.addr())).await??;
    let name = ServerName::try_from("mock.test")?;
    Ok(within("handshake", TlsConnector::from(config).connect(name, tcp)).await??)
}

/// GET `path` on a fresh HTTP/1.1-over-TLS connection.
async fn get_h1(
    mock: &MockUpstream,
    roots: &Arc<RootCertStore>,
    path: &str,
) -> Result<(StatusCode, Bytes), BoxError> {
    let tls = connect_tls(mock, client(roots, &[b"http/1.1"])?).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, "mock.test")
        .body(Empty::<Bytes>::new())?;
    let response = within("response", sender.send_request(req)).await??;
    let status = response.status();
    let body = within("body", response.into_body().collect())
        .await??
        .to_bytes();
    Ok((status, body))
}

/// Polls `f` until it holds, within the usual bound.
async fn eventually(what: &str, f: impl Fn() -> bool) -> TestResult {
    within(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

#[tokio::test]
async fn tls_echo_over_http1_counts_probes_and_captures_plaintext() -> TestResult {
    let pki = pki()?;
    let mock = MockUpstream::start_tls(MockConfig::new("acct-tls", "eu-west"), pki.server).await?;
    assert!(mock.is_tls());
    assert_eq!(mock.url(), format!("https://{}", mock.addr()));

    let (status, body) = get_h1(&mock, &pki.roots, "/echo?x=1").await?;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&body)?;
    assert_eq!(json["account"], "acct-tls");
    assert_eq!(json["path"], "/echo");
    assert_eq!(json["query"], "x=1");
    assert_eq!(json["version"], "HTTP/1.1");

    for _ in 0..2 {
        let (status, body) = get_h1(&mock, &pki.roots, DEFAULT_PROBE_PATH).await?;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    mock.set_health(false);
    let (status, _) = get_h1(&mock, &pki.roots, DEFAULT_PROBE_PATH).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(mock.probe_count(), 3);
    assert_eq!(mock.request_count(), 1);
    assert_eq!(mock.requests()[0].uri, "/echo?x=1");
    assert_eq!(mock.connections_accepted(), 4);
    assert_eq!(mock.tls_handshake_failures(), 0);
    // The capture holds what the client sent inside TLS.
    let first = &mock.raw_capture()[0];
    assert!(
        first.starts_with(b"GET /echo?x=1 HTTP/1.1\r\n"),
        "{first:?}"
    );
    Ok(())
}

#[tokio::test]
async fn alpn_h2_is_served_as_http2() -> TestResult {
    let pki = pki()?;
    let mock = MockUpstream::start_tls(MockConfig::default(), pki.server).await?;
    let tls = connect_tls(&mock, client(&pki.roots, &[b"h2", b"http/1.1"])?).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("{}/h2", mock.url()))
        .body(Empty::<Bytes>::new())?;
    let response = within("h2 response", sender.send_request(req)).await??;
    assert_eq!(response.status(), StatusCode::OK);
    let body = within("h2 body", response.into_body().collect())
        .await??
        .to_bytes();
    let json: Value = serde_json::from_slice(&body)?;
    assert_eq!(json["version"], "HTTP/2.0");
    assert_eq!(json["authority"], mock.addr().to_string());
    Ok(())
}

#[tokio::test]
async fn failed_handshakes_are_counted_not_fatal() -> TestResult {
    let pki = pki()?;
    let mock = MockUpstream::start_tls(MockConfig::default(), pki.server).await?;

    // A client that trusts another CA aborts the handshake.
    let (_, other_roots) = ca()?;
    let untrusting = client(&Arc::new(other_roots), &[b"http/1.1"])?;
    assert!(connect_tls(&mock, untrusting).await.is_err());
    eventually("one failure", || mock.tls_handshake_failures() == 1).await?;

    // Plain HTTP on the TLS port is not a ClientHello.
    let mut tcp = within("connect", TcpStream::connect(mock.addr())).await??;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let mut answer = Vec::new();
    // rustls may answer with an alert before closing; either way no HTTP response comes back.
    let _ = within("close", tcp.read_to_end(&mut answer)).await?;
    assert!(!answer.starts_with(b"HTTP/"));
    eventually("two failures", || mock.tls_handshake_failures() == 2).await?;

    // The server is unharmed.
    let (status, _) = get_h1(&mock, &pki.roots, "/").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.connections_accepted(), 3);
    assert_eq!(mock.request_count(), 1);
    mock.reset_stats();
    assert_eq!(mock.tls_handshake_failures(), 0);
    Ok(())
}

#[tokio::test]
async fn black_hole_swallows_the_handshake_and_reset_follows_it() -> TestResult {
    let pki = pki()?;
    let mock = MockUpstream::start_tls(MockConfig::default(), pki.server).await?;

    mock.set_behavior(Behavior::BlackHole);
    let config = client(&pki.roots, &[b"http/1.1"])?;
    let tcp = within("connect", TcpStream::connect(mock.addr())).await??;
    let name = ServerName::try_from("mock.test")?;
    let handshake = TlsConnector::from(Arc::clone(&config)).connect(name, tcp);
    assert!(
        timeout(SHORT, handshake).await.is_err(),
        "the handshake was answered"
    );
    assert_eq!(mock.tls_handshake_failures(), 0);

    // Reset: the handshake completes, the request head is read, then the connection is reset.
    mock.set_behavior(Behavior::Reset);
    let mut tls = connect_tls(&mock, config).await?;
    tls.write_all(b"GET /r HTTP/1.1\r\nhost: mock.test\r\n\r\n")
        .await?;
    let mut buf = [0u8; 64];
    let read = within("reset", tls.read(&mut buf)).await?;
    let error = read.err().ok_or("the mock answered instead of resetting")?;
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    assert_eq!(mock.request_count(), 1);
    Ok(())
}

#[tokio::test]
async fn revive_serves_tls_again() -> TestResult {
    let pki = pki()?;
    let mock = MockUpstream::start_tls(MockConfig::default(), pki.server).await?;
    mock.kill().await;
    assert!(TcpStream::connect(mock.addr()).await.is_err());
    mock.revive().await?;
    let (status, _) = get_h1(&mock, &pki.roots, "/again").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.url(), format!("https://{}", mock.addr()));
    Ok(())
}
