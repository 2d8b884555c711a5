//! `load_server_certs`: good files, and every problem reported at once with a clear message.

use std::path::PathBuf;

use pairgate_config::{CertificateConfig, Problem, Severity};

use super::{ALWAYS, Ca, Seen, TempDir, Window, day, leaf, pem, summary};
use crate::der::expect;
use crate::load_server_certs;

/// "Now" of these tests: 2030-06-01 00:00:00 UTC.
const NOW: (i64, u32, u32) = (2030, 6, 1);

fn cfg(hosts: &[&str], cert: PathBuf, key: PathBuf, default: bool) -> CertificateConfig {
    CertificateConfig {
        hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
        wildcards: Vec::new(),
        cert,
        key,
        default,
    }
}

/// Loads `certs` from `dir` at [`NOW`]; `Err` as the problem summary.
fn load(
    dir: &TempDir,
    certs: &[CertificateConfig],
) -> Result<(crate::CertStore, Vec<Problem>), Vec<Seen>> {
    let (y, m, d) = NOW;
    load_server_certs(certs, dir.path(), day(y, m, d)).map_err(|p| summary(&p))
}

fn error(path: &str, message: &str) -> Seen {
    (Severity::Error, path.to_owned(), message.to_owned())
}

/// A certificate for `host` valid over `window`, written as `name.pem` / `name.key`.
fn write_pair(dir: &TempDir, name: &str, host: &str, window: Window) -> (PathBuf, PathBuf) {
    let leaf = leaf(&[host], None, window);
    (
        dir.write(&format!("{name}.pem"), &leaf.cert_pem),
        dir.write(&format!("{name}.key"), &leaf.key_pem),
    )
}

#[test]
fn loads_chains_with_relative_and_absolute_paths() -> super::TestResult {
    let dir = TempDir::new();
    let ca = Ca::new("load ca");
    let signed = leaf(&["a.test"], Some(&ca), ALWAYS);
    // A full chain: leaf then CA.
    let chain = dir.write("certs/a.pem", format!("{}{}", signed.cert_pem, ca.pem));
    let key = dir.write("certs/a.key", &signed.key_pem);
    let (b_cert, b_key) = write_pair(&dir, "b", "b.test", ALWAYS);
    let b_cert = dir.path().join(b_cert);
    assert!(b_cert.is_absolute());
    let mut wild = cfg(&[], b_cert, b_key, true);
    wild.wildcards = vec!["b.test".to_owned()];
    let (store, warnings) =
        load(&dir, &[cfg(&["a.test"], chain, key, false), wild]).map_err(|p| format!("{p:?}"))?;
    assert_eq!(warnings, Vec::new());
    let a = store.resolve(Some("a.test")).ok_or("a.test resolves")?;
    assert_eq!(a.cert.len(), 2, "the whole chain is served");
    assert_eq!(a.cert[0], signed.der);
    let b = store.resolve(Some("x.b.test")).ok_or("x.b.test resolves")?;
    let fallback = store
        .resolve(Some("nothing.test"))
        .ok_or("default resolves")?;
    assert!(std::sync::Arc::ptr_eq(&b, &fallback));
    Ok(())
}

#[test]
fn loads_sec1_keys() -> super::TestResult {
    let dir = TempDir::new();
    let leaf = leaf(&["ec.test"], None, ALWAYS);
    // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING (ECPrivateKey) }
    let (info, _) = expect(&leaf.key_pkcs8, 0x30).ok_or("PKCS#8 is a SEQUENCE")?;
    let (_, _, rest) = crate::der::tlv(info).ok_or("version")?;
    let (_, _, rest) = crate::der::tlv(rest).ok_or("algorithm")?;
    let (sec1, _) = expect(rest, 0x04).ok_or("privateKey")?;
    let cert = dir.write("ec.pem", &leaf.cert_pem);
    let key = dir.write("ec.key", pem("EC PRIVATE KEY", sec1));
    let (store, _) =
        load(&dir, &[cfg(&["ec.test"], cert, key, false)]).map_err(|p| format!("{p:?}"))?;
    assert!(store.resolve(Some("ec.test")).is_some());
    Ok(())
}

#[test]
fn missing_and_garbage_files_are_all_reported() {
    let dir = TempDir::new();
    let (good_cert, good_key) = write_pair(&dir, "good", "good.test", ALWAYS);
    let garbage = dir.write("garbage.pem", "this is not PEM at all\n");
    let unterminated = dir.write("open.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let bad_b64 = dir.write(
        "bad.key",
        "-----BEGIN PRIVATE KEY-----\nSECRET*MATERIAL!\n-----END PRIVATE KEY-----\n",
    );
    let bad_start = dir.write("start.key", "-----BEGIN PRIVATE KEY----\nAAAA\n");
    let not_a_key = dir.write(
        "weird.key",
        pem("PRIVATE KEY", b"definitely not a PKCS#8 structure"),
    );
    let two_keys = {
        let a = leaf(&["x.test"], None, ALWAYS);
        let b = leaf(&["x.test"], None, ALWAYS);
        dir.write("two.key", format!("{}{}", a.key_pem, b.key_pem))
    };
    let certs = [
        cfg(
            &["a.test"],
            "certs/missing.pem".into(),
            "certs/missing.key".into(),
            false,
        ),
        cfg(&["b.test"], garbage.clone(), garbage, false),
        cfg(&["c.test"], unterminated, bad_b64, false),
        cfg(&["d.test"], good_cert.clone(), bad_start, false),
        cfg(&["e.test"], good_cert.clone(), not_a_key, false),
        cfg(&["f.test"], good_cert, two_keys, false),
        // A good pair does not hide the others' problems.
        cfg(&["g.test"], PathBuf::from("good.pem"), good_key, false),
    ];
    let missing = "No such file or directory (os error 2)";
    assert_eq!(
        load(&dir, &certs).err(),
        Some(vec![
            error(
                "certificate[0].cert",
                &format!("cannot read certs/missing.pem: {missing}")
            ),
            error(
                "certificate[0].key",
                &format!("cannot read certs/missing.key: {missing}")
            ),
            error("certificate[1].cert", "no certificate in garbage.pem"),
            error("certificate[1].key", "no private key in garbage.pem"),
            error(
                "certificate[2].cert",
                "invalid PEM in open.pem: a section has no END line"
            ),
            error("certificate[2].key", "invalid PEM in bad.key: bad base64"),
            error(
                "certificate[3].key",
                "invalid PEM in start.key: malformed BEGIN line"
            ),
            error(
                "certificate[4].key",
                "unsupported private key in weird.key: expected RSA, ECDSA (P-256 or P-384) \
                 or Ed25519"
            ),
            error(
                "certificate[5].key",
                "2 private keys in two.key; expected exactly one"
            ),
        ])
    );
}

#[test]
fn a_key_from_another_pair_is_rejected_without_printing_it() {
    let dir = TempDir::new();
    let one = leaf(&["one.test"], None, ALWAYS);
    let other = leaf(&["one.test"], None, ALWAYS);
    let cert = dir.write("one.pem", &one.cert_pem);
    let key = dir.write("other.key", &other.key_pem);
    let problems = load(&dir, &[cfg(&["one.test"], cert, key, false)]).err();
    assert_eq!(
        problems,
        Some(vec![error(
            "certificate[0].key",
            "the key does not match the certificate in one.pem"
        )])
    );
    for line in other.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !format!("{problems:?}").contains(line),
            "key material leaked"
        );
    }
}

#[test]
fn validity_window_is_checked_against_now() {
    let dir = TempDir::new();
    // NOW is 2030-06-01.
    // Ok(warning) or Err(error).
    type Expected = Result<Option<&'static str>, &'static str>;
    let cases: &[(&str, Window, Expected)] = &[
        (
            "expired",
            Window {
                not_before: (2029, 1, 1),
                not_after: (2030, 1, 1),
            },
            Err("expired on 2030-01-01 00:00:00 UTC"),
        ),
        (
            "future",
            Window {
                not_before: (2031, 1, 1),
                not_after: (2032, 1, 1),
            },
            Err("not valid before 2031-01-01 00:00:00 UTC"),
        ),
        (
            "soon",
            Window {
                not_before: (2029, 1, 1),
                not_after: (2030, 6, 10),
            },
            Ok(Some(
                "expires on 2030-06-10 00:00:00 UTC, in less than 14 days",
            )),
        ),
        (
            "ends-today",
            Window {
                not_before: (2029, 1, 1),
                not_after: (2030, 6, 1),
            },
            Ok(Some(
                "expires on 2030-06-01 00:00:00 UTC, in less than 14 days",
            )),
        ),
        (
            "starts-today",
            Window {
                not_before: (2030, 6, 1),
                not_after: (2031, 1, 1),
            },
            Ok(None),
        ),
        (
            "fifteen-days",
            Window {
                not_before: (2029, 1, 1),
                not_after: (2030, 6, 16),
            },
            Ok(None),
        ),
    ];
    for (name, window, expected) in cases {
        let (cert, key) = write_pair(&dir, name, "w.test", *window);
        let got = load(&dir, &[cfg(&["w.test"], cert, key, false)]);
        match (got, expected) {
            (Ok((store, warnings)), Ok(warning)) => {
                assert!(store.resolve(Some("w.test")).is_some(), "{name}");
                let expected: Vec<_> = warning
                    .iter()
                    .map(|m| {
                        (
                            Severity::Warning,
                            "certificate[0].cert".to_owned(),
                            (*m).to_owned(),
                        )
                    })
                    .collect();
                assert_eq!(summary(&warnings), expected, "{name}");
            }
            (Err(problems), Err(message)) => {
                assert_eq!(
                    problems,
                    vec![error("certificate[0].cert", message)],
                    "{name}"
                );
            }
            (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn errors_come_first_and_every_check_runs() {
    let dir = TempDir::new();
    let (soon_cert, soon_key) = write_pair(
        &dir,
        "soon",
        "s.test",
        Window {
            not_before: (2029, 1, 1),
            not_after: (2030, 6, 2),
        },
    );
    // Expired and with the wrong key: both reported.
    let expired = leaf(
        &["x.test"],
        None,
        Window {
            not_before: (2020, 1, 1),
            not_after: (2025, 1, 1),
        },
    );
    let stranger = leaf(&["x.test"], None, ALWAYS);
    let cert = dir.write("expired.pem", &expired.cert_pem);
    let key = dir.write("stranger.key", &stranger.key_pem);
    let problems = load(
        &dir,
        &[
            cfg(&["s.test"], soon_cert, soon_key, false),
            cfg(&["x.test"], cert, key, false),
        ],
    )
    .err();
    assert_eq!(
        problems,
        Some(vec![
            error(
                "certificate[1].key",
                "the key does not match the certificate in expired.pem"
            ),
            error("certificate[1].cert", "expired on 2025-01-01 00:00:00 UTC"),
            (
                Severity::Warning,
                "certificate[0].cert".to_owned(),
                "expires on 2030-06-02 00:00:00 UTC, in less than 14 days".to_owned()
            ),
        ])
    );
}

#[test]
fn a_certificate_block_that_is_not_x509_is_reported() {
    let dir = TempDir::new();
    let good = leaf(&["g.test"], None, ALWAYS);
    let cert = dir.write("junk.pem", pem("CERTIFICATE", b"not DER"));
    let key = dir.write("g.key", &good.key_pem);
    assert_eq!(
        load(&dir, &[cfg(&["g.test"], cert, key, false)]).err(),
        Some(vec![error(
            "certificate[0].cert",
            "the first certificate in junk.pem cannot be parsed"
        )])
    );
}

#[test]
fn no_certificates_is_an_empty_store() -> super::TestResult {
    let dir = TempDir::new();
    let (store, warnings) = load(&dir, &[]).map_err(|p| format!("{p:?}"))?;
    assert!(store.is_empty());
    assert!(warnings.is_empty());
    Ok(())
}
