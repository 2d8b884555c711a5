//! `CertStore::resolve`: exact, wildcard and default, as a table.

use std::path::PathBuf;
use std::sync::Arc;

use pairgate_config::CertificateConfig;
use rcgen::KeyPair;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{CertStore, provider};

/// A stand-in certificate whose "DER" is the single byte `id`, so a resolution is easy to name.
fn key(id: u8) -> Arc<CertifiedKey> {
    let pair = KeyPair::generate().expect("ring generates P-256 keys");
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.serialize_der()));
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .expect("ring loads its own keys");
    Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(vec![id])],
        signing,
    ))
}

fn cfg(hosts: &[&str], wildcards: &[&str], default: bool) -> CertificateConfig {
    CertificateConfig {
        hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
        wildcards: wildcards.iter().map(|s| (*s).to_owned()).collect(),
        cert: PathBuf::new(),
        key: PathBuf::new(),
        default,
    }
}

/// Id of the certificate `store` serves for `sni`.
fn check(store: &CertStore, sni: Option<&str>, expected: Option<u8>) {
    let got = store.resolve(sni).map(|k| k.cert[0].as_ref()[0]);
    assert_eq!(got, expected, "resolve({sni:?})");
}

fn store(with_default: bool) -> CertStore {
    let mut store = CertStore::default();
    store.insert(&cfg(&["api.example.com"], &[], false), key(1));
    store.insert(&cfg(&[], &["example.com"], false), key(2));
    store.insert(
        &cfg(&["deep.example.org"], &["deep.example.com"], false),
        key(3),
    );
    // Taken names stay with their first certificate.
    store.insert(&cfg(&["api.example.com"], &["example.com"], false), key(4));
    if with_default {
        store.insert(&cfg(&["www.default.test"], &[], true), key(9));
        store.insert(&cfg(&[], &[], true), key(8));
    }
    store
}

#[test]
fn resolution_order_is_exact_then_most_specific_wildcard_then_default() {
    let with_default = store(true);
    let without = store(false);
    let cases: &[(Option<&str>, Option<u8>, Option<u8>)] = &[
        // (sni, with default, without default)
        (Some("api.example.com"), Some(1), Some(1)),
        (Some("API.Example.COM"), Some(1), Some(1)),
        (Some("api.example.com."), Some(1), Some(1)),
        (Some("www.example.com"), Some(2), Some(2)),
        (Some("WWW.EXAMPLE.COM."), Some(2), Some(2)),
        (Some("a.b.example.com"), Some(2), Some(2)),
        // The bare domain of *.deep.example.com is itself under *.example.com.
        (Some("deep.example.com"), Some(2), Some(2)),
        (Some("x.deep.example.com"), Some(3), Some(3)),
        (Some("a.x.deep.example.com"), Some(3), Some(3)),
        (Some("deep.example.org"), Some(3), Some(3)),
        // A wildcard never matches its bare domain, nor a name that merely ends the same.
        (Some("example.com"), Some(9), None),
        (Some("notexample.com"), Some(9), None),
        (Some("x.deep.example.org"), Some(9), None),
        (Some("www.default.test"), Some(9), None),
        (Some("other.test"), Some(9), None),
        (Some(""), Some(9), None),
        (Some("."), Some(9), None),
        // No SNI (e.g. the client connected by IP address).
        (None, Some(9), None),
    ];
    for &(sni, expected_with, expected_without) in cases {
        check(&with_default, sni, expected_with);
        check(&without, sni, expected_without);
    }
}

#[test]
fn an_empty_store_resolves_nothing() {
    let store = CertStore::default();
    assert!(store.is_empty());
    check(&store, Some("a.test"), None);
    check(&store, None, None);
    assert!(!self::store(false).is_empty());
}

#[test]
fn debug_shows_names_only() {
    let text = format!("{:?}", store(true));
    assert_eq!(
        text,
        "CertStore { exact: [\"api.example.com\", \"deep.example.org\", \"www.default.test\"], \
         wildcard: [\"*.deep.example.com\", \"*.example.com\"], default: true }"
    );
}
