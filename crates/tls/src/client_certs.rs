//! Client certificates on the HTTPS listener (`[listen] client_ca`, `[client_auth] mtls`): a
//! webpki verifier over the configured CA bundle, behind a swappable policy so a reload can
//! change the bundle or the mode for new handshakes (the listener's `ServerConfig` is built
//! once).

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pairgate_config::{MtlsMode, Problem};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::client::ca_roots;
use crate::files::{PemFile, Problems};
use crate::provider;

/// A verifier for `mode` over the CA bundle at `ca` (relative to `base_dir`); `None` for
/// [`MtlsMode::Off`]. Problems name `listen.client_ca`.
pub fn client_verifier(
    ca: Option<&Path>,
    mode: MtlsMode,
    base_dir: &Path,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, Vec<Problem>> {
    let (Some(ca), MtlsMode::Optional | MtlsMode::Required) = (ca, mode) else {
        return Ok(None);
    };
    let mut problems = Problems::default();
    let Some(roots) = ca_roots(
        &PemFile::new("listen.client_ca".to_owned(), ca, base_dir),
        &mut problems,
    ) else {
        return Err(problems.0);
    };
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = match mode {
        MtlsMode::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder.build().map(Some).map_err(|e| {
        vec![Problem {
            severity: pairgate_config::Severity::Error,
            path: "listen.client_ca".to_owned(),
            message: format!("not usable for client certificates: {e}"),
            location: None,
        }]
    })
}

/// The listener's client-certificate policy: the current verifier, or none (no certificate is
/// asked for). Root hints are not sent: the policy can change under a built `ServerConfig`,
/// and clients with one certificate do not need them.
#[derive(Debug)]
pub struct ClientCertPolicy {
    current: ArcSwap<Option<Arc<dyn ClientCertVerifier>>>,
}

impl ClientCertPolicy {
    /// A policy starting with `verifier`.
    pub fn new(verifier: Option<Arc<dyn ClientCertVerifier>>) -> Arc<ClientCertPolicy> {
        Arc::new(ClientCertPolicy {
            current: ArcSwap::from_pointee(verifier),
        })
    }

    /// New handshakes use `verifier`; open connections keep the identity they proved.
    pub fn swap(&self, verifier: Option<Arc<dyn ClientCertVerifier>>) {
        self.current.store(Arc::new(verifier));
    }

    /// Whether client certificates are asked for now.
    pub fn active(&self) -> bool {
        self.current.load().is_some()
    }

    fn with<T>(&self, f: impl FnOnce(&dyn ClientCertVerifier) -> T) -> Option<T> {
        let current = self.current.load();
        current.as_deref().map(f)
    }
}

/// Session resumption that is off while client certificates are asked for. rustls restores a
/// resumed session's client certificate without verifying it again, so without this a
/// certificate from a CA a reload removed (or one expired since) would keep passing for as long
/// as its session could be resumed. Without client certificates, sessions resume as usual.
#[derive(Debug)]
pub struct ResumptionPolicy {
    client_certs: Arc<ClientCertPolicy>,
    inner: Arc<dyn rustls::server::StoresServerSessions>,
}

impl ResumptionPolicy {
    /// rustls' default in-memory session cache (256 sessions), gated by `client_certs`.
    pub fn new(client_certs: Arc<ClientCertPolicy>) -> Arc<ResumptionPolicy> {
        Arc::new(ResumptionPolicy {
            client_certs,
            inner: rustls::server::ServerSessionMemoryCache::new(256),
        })
    }
}

impl rustls::server::StoresServerSessions for ResumptionPolicy {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        !self.client_certs.active() && self.inner.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        if self.client_certs.active() {
            return None;
        }
        self.inner.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        if self.client_certs.active() {
            return None;
        }
        self.inner.take(key)
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

fn no_verifier() -> rustls::Error {
    rustls::Error::General("client certificates are not configured".to_owned())
}

impl ClientCertVerifier for ClientCertPolicy {
    fn offer_client_auth(&self) -> bool {
        self.with(|v| v.offer_client_auth()).unwrap_or(false)
    }

    fn client_auth_mandatory(&self) -> bool {
        self.with(|v| v.client_auth_mandatory()).unwrap_or(false)
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.with(|v| v.verify_client_cert(end_entity, intermediates, now))
            .unwrap_or_else(|| Err(no_verifier()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.with(|v| v.verify_tls12_signature(message, cert, dss))
            .unwrap_or_else(|| Err(no_verifier()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.with(|v| v.verify_tls13_signature(message, cert, dss))
            .unwrap_or_else(|| Err(no_verifier()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.with(|v| v.supported_verify_schemes())
            .unwrap_or_else(|| {
                provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            })
    }
}

#[cfg(test)]
mod tests {
    use rustls::server::StoresServerSessions;

    use super::*;

    /// Sessions resume without client certificates, never with them (a swap turns it off).
    #[test]
    fn resumption_stops_while_client_certificates_are_asked_for() {
        let policy = ClientCertPolicy::new(None);
        let sessions = ResumptionPolicy::new(Arc::clone(&policy));
        assert!(sessions.put(b"k".to_vec(), b"v".to_vec()));
        assert_eq!(sessions.get(b"k"), Some(b"v".to_vec()));
        let roots = {
            let ca = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let cert = params.self_signed(&ca).expect("ca");
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.der().clone()).expect("root");
            Arc::new(roots)
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .expect("verifier");
        policy.swap(Some(verifier));
        assert_eq!(
            sessions.get(b"k"),
            None,
            "no resumption with client certificates"
        );
        assert!(!sessions.put(b"k2".to_vec(), b"v".to_vec()));
        policy.swap(None);
        assert_eq!(sessions.take(b"k"), Some(b"v".to_vec()));
    }
}
