//! Reading PEM certificate chains and private keys, and checking a chain against its key and the
//! clock, with every failure turned into a config [`Problem`] that names the file as written.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pairgate_config::{Problem, Severity};
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::der::{format_utc, validity};
use crate::provider;

/// A certificate this close to its notAfter is reported as a warning.
pub(crate) const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Collects problems; every message names the file as written in the config, never its bytes.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path.into(), message.into());
    }

    pub(crate) fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path.into(), message.into());
    }

    fn push(&mut self, severity: Severity, path: String, message: String) {
        self.0.push(Problem {
            severity,
            path,
            message,
            location: None,
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }

    /// Errors first, then warnings, each group in the order found (as `pairgate_config::load`).
    pub(crate) fn into_sorted(mut self) -> Vec<Problem> {
        self.0.sort_by_key(|p| std::cmp::Reverse(p.severity));
        self.0
    }
}

/// A file named in the config: the path as written (for messages) and where it is read from.
pub(crate) struct PemFile<'a> {
    /// Problem path, e.g. `certificate[0].cert`.
    pub(crate) at: String,
    /// As written in the config.
    pub(crate) shown: &'a Path,
    /// Resolved against the config's directory.
    pub(crate) full: std::path::PathBuf,
}

impl<'a> PemFile<'a> {
    pub(crate) fn new(at: String, written: &'a Path, base_dir: &Path) -> Self {
        Self {
            at,
            shown: written,
            // `join` keeps an absolute `written` as it is.
            full: base_dir.join(written),
        }
    }

    fn read(&self, problems: &mut Problems) -> Option<Vec<u8>> {
        match std::fs::read(&self.full) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                problems.error(
                    &self.at,
                    format!("cannot read {}: {error}", self.shown.display()),
                );
                None
            }
        }
    }

    fn invalid_pem(&self, error: &pem::Error, problems: &mut Problems) {
        problems.error(
            &self.at,
            format!(
                "invalid PEM in {}: {}",
                self.shown.display(),
                describe(error)
            ),
        );
    }
}

/// Every `CERTIFICATE` block of `file`, in order; `None` (with a problem) if unreadable, malformed
/// or empty.
pub(crate) fn read_certs(
    file: &PemFile<'_>,
    problems: &mut Problems,
) -> Option<Vec<CertificateDer<'static>>> {
    let bytes = file.read(problems)?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        match item {
            Ok(cert) => certs.push(cert),
            Err(error) => {
                file.invalid_pem(&error, problems);
                return None;
            }
        }
    }
    if certs.is_empty() {
        problems.error(
            &file.at,
            format!("no certificate in {}", file.shown.display()),
        );
        return None;
    }
    Some(certs)
}

/// The one private key of `file` (PKCS#8, PKCS#1 or SEC1), loaded by the ring provider.
pub(crate) fn read_key(
    file: &PemFile<'_>,
    problems: &mut Problems,
) -> Option<Arc<dyn rustls::sign::SigningKey>> {
    let bytes = file.read(problems)?;
    let mut keys = Vec::new();
    for item in PrivateKeyDer::pem_slice_iter(&bytes) {
        match item {
            Ok(key) => keys.push(key),
            Err(error) => {
                file.invalid_pem(&error, problems);
                return None;
            }
        }
    }
    let shown = file.shown.display();
    let key = match keys.len() {
        0 => {
            problems.error(&file.at, format!("no private key in {shown}"));
            return None;
        }
        1 => keys.pop()?,
        n => {
            problems.error(
                &file.at,
                format!("{n} private keys in {shown}; expected exactly one"),
            );
            return None;
        }
    };
    // The provider's error would say nothing more useful and must not risk echoing the key.
    match provider().key_provider.load_private_key(key) {
        Ok(signing) => Some(signing),
        Err(_) => {
            problems.error(
                &file.at,
                format!(
                    "unsupported private key in {shown}: expected RSA, ECDSA (P-256 or P-384) \
                     or Ed25519"
                ),
            );
            None
        }
    }
}

/// Checks that `key` belongs to the leaf of `chain` (problem on `key_file`) and that the leaf is
/// valid at `now` (problem on `cert_file`; a warning when it expires within [`EXPIRY_WARNING`]).
/// Both checks always run, so one pass reports a wrong key and an expired certificate together.
pub(crate) fn check_pair(
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn rustls::sign::SigningKey>,
    cert_file: &PemFile<'_>,
    key_file: &PemFile<'_>,
    now: SystemTime,
    problems: &mut Problems,
) -> Option<CertifiedKey> {
    let certified = CertifiedKey::new(chain, key);
    let cert_shown = cert_file.shown.display();
    let unparsable = |problems: &mut Problems, detail: String| {
        problems.error(
            &cert_file.at,
            format!("the first certificate in {cert_shown} cannot be parsed{detail}"),
        );
    };
    let Some((not_before, not_after)) = certified.cert.first().and_then(|leaf| validity(leaf))
    else {
        unparsable(problems, String::new());
        return None;
    };
    let key_ok = match certified.keys_match() {
        // Unknown: the provider cannot derive the public key; rustls' own `from_der` accepts that.
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => true,
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            problems.error(
                &key_file.at,
                format!("the key does not match the certificate in {cert_shown}"),
            );
            false
        }
        Err(error) => {
            unparsable(problems, format!(": {error}"));
            return None;
        }
    };
    let time_ok = if now < not_before {
        let at = format_utc(not_before);
        problems.error(&cert_file.at, format!("not valid before {at}"));
        false
    } else if now > not_after {
        let at = format_utc(not_after);
        problems.error(&cert_file.at, format!("expired on {at}"));
        false
    } else {
        if not_after
            .duration_since(now)
            .is_ok_and(|left| left < EXPIRY_WARNING)
        {
            let at = format_utc(not_after);
            problems.warning(
                &cert_file.at,
                format!("expires on {at}, in less than 14 days"),
            );
        }
        true
    };
    (key_ok && time_ok).then_some(certified)
}

/// What went wrong in a PEM file, without echoing any of its lines.
fn describe(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "bad base64",
        pem::Error::SectionTooLarge => "a section is larger than 256 MB",
        _ => "unreadable PEM",
    }
}
