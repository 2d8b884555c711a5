//! Real handshakes: `client_config` against CA-signed and foreign servers, mTLS, ALPN, SNI
//! override, and `SniResolver::swap`.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use pairgate_config::{AccountTls, Severity};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::{ALWAYS, Ca, Leaf, Seen, TempDir, TestResult, Window, handshake, leaf, summary};
use crate::{CertStore, SniResolver, client_config, load_server_certs, provider, server_config};

/// A store serving `leaf` as the default certificate (written to and loaded from `dir`).
fn store_of(dir: &TempDir, name: &str, leaf: &Leaf) -> Result<CertStore, String> {
    let cfg = pairgate_config::CertificateConfig {
        hosts: Vec::new(),
        wildcards: Vec::new(),
        cert: dir.write(&format!("{name}.pem"), &leaf.cert_pem),
        key: dir.write(&format!("{name}.key"), &leaf.key_pem),
        default: true,
    };
    let (store, _) =
        load_server_certs(&[cfg], dir.path(), SystemTime::now()).map_err(|p| format!("{p:?}"))?;
    Ok(store)
}

/// Our listener configuration serving `leaf` for every name.
fn server_for(dir: &TempDir, name: &str, leaf: &Leaf) -> Result<Arc<ServerConfig>, String> {
    Ok(server_config(
        SniResolver::new(store_of(dir, name, leaf)?),
        crate::ClientCertPolicy::new(None),
    ))
}

/// `AccountTls` trusting the CA bundle written to `ca.pem`.
fn trusting(dir: &TempDir, cas: &[&Ca]) -> AccountTls {
    let bundle: String = cas.iter().map(|ca| ca.pem.as_str()).collect();
    AccountTls {
        ca: Some(dir.write("ca.pem", bundle)),
        ..AccountTls::default()
    }
}

fn client(
    tls: &AccountTls,
    host: &str,
    allow_h2: bool,
    base_dir: &Path,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), String> {
    client_config(0, tls, host, allow_h2, base_dir, SystemTime::now()).map_err(|p| format!("{p:?}"))
}

#[tokio::test]
async fn a_server_signed_by_the_bundle_ca_is_trusted_and_another_is_not() -> TestResult {
    let dir = TempDir::new();
    let ca = Ca::new("upstream ca");
    let rogue = Ca::new("rogue ca");
    let tls = trusting(&dir, &[&ca]);
    let good = server_for(&dir, "good", &leaf(&["upstream.test"], Some(&ca), ALWAYS))?;
    let bad = server_for(&dir, "bad", &leaf(&["upstream.test"], Some(&rogue), ALWAYS))?;

    let (config, name) = client(&tls, "upstream.test:8443", true, dir.path())?;
    assert_eq!(name, ServerName::try_from("upstream.test")?);
    let (alpn, _) = handshake(Arc::clone(&config), name.clone(), good).await?;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

    let failure = handshake(config, name, bad)
        .await
        .err()
        .ok_or("a server signed by another CA must be rejected")?;
    assert!(failure.contains("UnknownIssuer"), "{failure}");
    Ok(())
}

#[tokio::test]
async fn alpn_offers_h2_only_when_allowed() -> TestResult {
    let dir = TempDir::new();
    let ca = Ca::new("alpn ca");
    let tls = trusting(&dir, &[&ca]);
    let server = server_for(&dir, "s", &leaf(&["alpn.test"], Some(&ca), ALWAYS))?;
    for (allow_h2, expected) in [(true, &b"h2"[..]), (false, &b"http/1.1"[..])] {
        let (config, name) = client(&tls, "alpn.test", allow_h2, dir.path())?;
        let (alpn, _) = handshake(config, name, Arc::clone(&server)).await?;
        assert_eq!(alpn.as_deref(), Some(expected), "allow_h2 = {allow_h2}");
    }
    Ok(())
}

#[tokio::test]
async fn sni_overrides_the_url_host() -> TestResult {
    let dir = TempDir::new();
    let ca = Ca::new("sni ca");
    let mut tls = trusting(&dir, &[&ca]);
    let server = server_for(&dir, "s", &leaf(&["internal.test"], Some(&ca), ALWAYS))?;

    // Without the override the URL host (an IP address) is verified, and the cert lacks it.
    let (config, name) = client(&tls, "127.0.0.1:9443", false, dir.path())?;
    assert_eq!(name, ServerName::try_from("127.0.0.1")?);
    let failure = handshake(config, name, Arc::clone(&server))
        .await
        .err()
        .ok_or("the URL's IP address is not in the certificate")?;
    assert!(failure.contains("not valid for name"), "{failure}");

    tls.sni = Some("internal.test".to_owned());
    let (config, name) = client(&tls, "127.0.0.1:9443", false, dir.path())?;
    assert_eq!(name, ServerName::try_from("internal.test")?);
    handshake(config, name, server).await?;
    Ok(())
}

#[tokio::test]
async fn mtls_server_accepts_our_client_certificate_and_rejects_none() -> TestResult {
    let dir = TempDir::new();
    let ca = Ca::new("mtls ca");
    let client_leaf = leaf(&["client.test"], Some(&ca), ALWAYS);
    let server_leaf = leaf(&["mtls.test"], Some(&ca), ALWAYS);

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes())?)?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
    let server = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(SniResolver::new(store_of(&dir, "server", &server_leaf)?)),
    );

    let mut tls = trusting(&dir, &[&ca]);
    let (anonymous, name) = client(&tls, "mtls.test", true, dir.path())?;
    tls.client_auth = Some((
        dir.write("client.pem", &client_leaf.cert_pem),
        dir.write("client.key", &client_leaf.key_pem),
    ));
    let (authenticated, _) = client(&tls, "mtls.test", true, dir.path())?;

    handshake(authenticated, name.clone(), Arc::clone(&server)).await?;
    let failure = handshake(anonymous, name, server)
        .await
        .err()
        .ok_or("a client without a certificate must be rejected")?;
    assert!(failure.contains("server: "), "{failure}");
    Ok(())
}

#[tokio::test]
async fn swap_serves_the_new_store_to_new_handshakes() -> TestResult {
    let dir = TempDir::new();
    let ca = Ca::new("swap ca");
    let old = leaf(&["swap.test"], Some(&ca), ALWAYS);
    let new = leaf(&["swap.test"], Some(&ca), ALWAYS);
    let resolver = SniResolver::new(store_of(&dir, "old", &old)?);
    let server = server_config(Arc::clone(&resolver), crate::ClientCertPolicy::new(None));
    let tls = trusting(&dir, &[&ca]);
    // A fresh client each time: a resumed session would keep the certificate of its first
    // handshake (as it should) and never reach the resolver.
    let fresh = || client(&tls, "swap.test", true, dir.path());

    let (config, name) = fresh()?;
    let (_, served) = handshake(config, name, Arc::clone(&server)).await?;
    assert_eq!(served, old.der);
    resolver.swap(store_of(&dir, "new", &new)?);
    let (config, name) = fresh()?;
    let (_, served) = handshake(config, name, Arc::clone(&server)).await?;
    assert_eq!(served, new.der);

    // An empty store fails handshakes instead of serving something arbitrary.
    resolver.swap(CertStore::default());
    assert!(resolver.current().is_empty());
    let (config, name) = fresh()?;
    assert!(handshake(config, name, server).await.is_err());
    Ok(())
}

#[test]
fn client_config_problems_name_the_account_field() {
    let dir = TempDir::new();
    let ca = Ca::new("problem ca");
    let one = leaf(&["c.test"], Some(&ca), ALWAYS);
    let other = leaf(&["c.test"], Some(&ca), ALWAYS);
    let expired = leaf(
        &["c.test"],
        Some(&ca),
        Window {
            not_before: (2020, 1, 1),
            not_after: (2021, 1, 1),
        },
    );
    let missing = "No such file or directory (os error 2)";
    let error = |path: &str, message: &str| (Severity::Error, path.to_owned(), message.to_owned());
    let cases: Vec<(AccountTls, &str, Vec<Seen>)> = vec![
        (
            AccountTls {
                ca: Some("nope/ca.pem".into()),
                sni: None,
                client_auth: Some(("nope/c.pem".into(), "nope/c.key".into())),
            },
            "c.test",
            vec![
                error(
                    "account[3].ca",
                    &format!("cannot read nope/ca.pem: {missing}"),
                ),
                error(
                    "account[3].client_cert",
                    &format!("cannot read nope/c.pem: {missing}"),
                ),
                error(
                    "account[3].client_key",
                    &format!("cannot read nope/c.key: {missing}"),
                ),
            ],
        ),
        (
            AccountTls {
                ca: Some(dir.write("empty.pem", "")),
                sni: None,
                client_auth: Some((
                    dir.write("one.pem", &one.cert_pem),
                    dir.write("other.key", &other.key_pem),
                )),
            },
            "c.test",
            vec![
                error("account[3].ca", "no certificate in empty.pem"),
                error(
                    "account[3].client_key",
                    "the key does not match the certificate in one.pem",
                ),
            ],
        ),
        (
            AccountTls {
                ca: None,
                sni: None,
                client_auth: Some((
                    dir.write("expired.pem", &expired.cert_pem),
                    dir.write("expired.key", &expired.key_pem),
                )),
            },
            "c.test",
            vec![error(
                "account[3].client_cert",
                "expired on 2021-01-01 00:00:00 UTC",
            )],
        ),
        (
            AccountTls::default(),
            "bad host!",
            vec![error(
                "account[3].url",
                "\"bad host!\" is not a valid TLS server name",
            )],
        ),
        (
            AccountTls {
                sni: Some("under_score..test".to_owned()),
                ..AccountTls::default()
            },
            "c.test",
            vec![error(
                "account[3].sni",
                "\"under_score..test\" is not a valid TLS server name",
            )],
        ),
    ];
    for (tls, host, expected) in cases {
        let got = client_config(3, &tls, host, true, dir.path(), SystemTime::now());
        assert_eq!(got.err().map(|p| summary(&p)), Some(expected), "{tls:?}");
    }
}

#[test]
fn default_roots_and_host_forms() -> TestResult {
    let cases = [
        ("example.com", "example.com"),
        ("Example.com:8443", "Example.com"),
        ("127.0.0.1:443", "127.0.0.1"),
        ("[::1]:8443", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
    ];
    for (host, expected) in cases {
        let (_, name) = client(&AccountTls::default(), host, true, Path::new("."))?;
        assert_eq!(name, ServerName::try_from(expected)?, "{host}");
    }
    Ok(())
}

#[test]
fn nothing_installs_a_process_default_provider() -> TestResult {
    let dir = TempDir::new();
    let _ = server_config(
        SniResolver::new(CertStore::default()),
        crate::ClientCertPolicy::new(None),
    );
    let _ = client(
        &trusting(&dir, &[&Ca::new("x")]),
        "a.test",
        true,
        dir.path(),
    )?;
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    Ok(())
}
