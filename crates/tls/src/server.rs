//! The listener side: `[[certificate]]` loading, the SNI → certificate store, the swappable
//! resolver and the server configuration built on it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use pairgate_config::{CertificateConfig, Problem};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::files::{PemFile, Problems, check_pair, read_certs, read_key};
use crate::{ALPN_H1, ALPN_H2, PROTOCOL_VERSIONS, provider};

/// Loads every `[[certificate]]`: reads the PEM chain and key (paths relative to `base_dir`
/// unless absolute), checks that the key matches the leaf and that the leaf is valid at `now`.
///
/// Reports everything at once. `Ok` carries the store and the warnings (a certificate expiring
/// within 14 days); `Err` carries every problem, errors first. Paths are
/// `certificate[i].cert` / `certificate[i].key`; messages name files as written in the config
/// and never contain key material. A host or wildcard listed twice is served by the first
/// certificate that lists it (validation already rejects that).
pub fn load_server_certs(
    certs: &[CertificateConfig],
    base_dir: &Path,
    now: SystemTime,
) -> Result<(CertStore, Vec<Problem>), Vec<Problem>> {
    let mut problems = Problems::default();
    let mut store = CertStore::default();
    for (i, cfg) in certs.iter().enumerate() {
        let cert_file = PemFile::new(format!("certificate[{i}].cert"), &cfg.cert, base_dir);
        let key_file = PemFile::new(format!("certificate[{i}].key"), &cfg.key, base_dir);
        // Read both before giving up, so one pass reports a missing chain and a missing key.
        let chain = read_certs(&cert_file, &mut problems);
        let key = read_key(&key_file, &mut problems);
        let (Some(chain), Some(key)) = (chain, key) else {
            continue;
        };
        let Some(certified) = check_pair(chain, key, &cert_file, &key_file, now, &mut problems)
        else {
            continue;
        };
        store.insert(cfg, Arc::new(certified));
    }
    if problems.has_errors() {
        Err(problems.into_sorted())
    } else {
        Ok((store, problems.into_sorted()))
    }
}

/// Server certificates by name: exact hosts, wildcard suffixes and an optional default.
///
/// Immutable once built; a reload builds a new one and [`SniResolver::swap`]s it in.
#[derive(Clone, Default)]
pub struct CertStore {
    /// Lower-case host → certificate.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com` → certificate.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Served when nothing matches (or the client sent no SNI).
    default: Option<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Serves `key` for the hosts, wildcards and default flag of `cfg`; what is already taken
    /// stays with its first certificate.
    pub fn insert(&mut self, cfg: &CertificateConfig, key: Arc<CertifiedKey>) {
        for host in &cfg.hosts {
            if let Entry::Vacant(slot) = self.exact.entry(normalize(host)) {
                slot.insert(Arc::clone(&key));
            }
        }
        for suffix in &cfg.wildcards {
            if let Entry::Vacant(slot) = self.wildcard.entry(normalize(suffix)) {
                slot.insert(Arc::clone(&key));
            }
        }
        if cfg.default && self.default.is_none() {
            self.default = Some(key);
        }
    }

    /// The certificate for a TLS client hello's SNI: the exact host (case-insensitive, a trailing
    /// dot ignored), else the most specific wildcard (`*.example.com` matches any deeper name,
    /// never `example.com` itself, as for tenant hosts), else the default. `None` fails the
    /// handshake.
    pub fn resolve(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = sni.and_then(|sni| {
            let name = normalize(sni);
            if let Some(key) = self.exact.get(&name) {
                return Some(key);
            }
            // Drop one leading label at a time: the first suffix found is the most specific.
            let mut rest = name.as_str();
            while let Some((_, suffix)) = rest.split_once('.') {
                if let Some(key) = self.wildcard.get(suffix) {
                    return Some(key);
                }
                rest = suffix;
            }
            None
        });
        found.or(self.default.as_ref()).map(Arc::clone)
    }

    /// Whether the store holds no certificate at all (every handshake would fail).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.default.is_none()
    }
}

impl fmt::Debug for CertStore {
    /// Names only: certificates and keys are not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exact: Vec<_> = self.exact.keys().collect();
        exact.sort();
        let mut wildcard: Vec<_> = self.wildcard.keys().map(|s| format!("*.{s}")).collect();
        wildcard.sort();
        f.debug_struct("CertStore")
            .field("exact", &exact)
            .field("wildcard", &wildcard)
            .field("default", &self.default.is_some())
            .finish()
    }
}

/// A [`ResolvesServerCert`] over a swappable [`CertStore`]: a reload [`swap`](Self::swap)s the
/// store, new handshakes see the new one, established connections keep their session.
///
/// A client that *resumes* a session from before the swap also keeps that session's
/// certificate: resumption does not send a certificate, so the resolver is not asked.
pub struct SniResolver {
    store: ArcSwap<CertStore>,
}

impl SniResolver {
    /// A resolver serving `store`.
    pub fn new(store: CertStore) -> Arc<Self> {
        Arc::new(Self {
            store: ArcSwap::from_pointee(store),
        })
    }

    /// Serves `store` from the next handshake on.
    pub fn swap(&self, store: CertStore) {
        self.store.store(Arc::new(store));
    }

    /// The store currently served.
    pub fn current(&self) -> Arc<CertStore> {
        self.store.load_full()
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SniResolver")
            .field(&*self.store.load())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = client_hello.server_name();
        let found = self.store.load().resolve(sni);
        if found.is_none() {
            tracing::debug!(sni = sni.unwrap_or(""), "no certificate for TLS handshake");
        }
        found
    }
}

/// The listener's configuration: TLS 1.2 and 1.3 with the ring provider's safe defaults, ALPN
/// `h2` then `http/1.1`, client certificates as `client_certs` says (none asked for while it
/// holds no verifier), certificates from `resolver`.
pub fn server_config(
    resolver: Arc<SniResolver>,
    client_certs: Arc<crate::ClientCertPolicy>,
) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_client_cert_verifier(
            Arc::clone(&client_certs) as Arc<dyn rustls::server::danger::ClientCertVerifier>
        )
        .with_cert_resolver(resolver);
    config.session_storage = crate::client_certs::ResumptionPolicy::new(client_certs);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_H1.to_vec()];
    Arc::new(config)
}

/// Lower-case, without a trailing dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}
