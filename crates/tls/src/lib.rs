//! TLS for pairgate, with rustls and the ring provider: server certificates chosen by SNI,
//! per-account client configurations (CA bundle, SNI override, client certificate), and the
//! loading and checking of PEM files (missing file, key that does not match, expired).
//!
//! Invariants:
//! - ring is the only crypto provider (`provider()`); nothing here installs a process default;
//! - file problems are reported as config [`Problem`](pairgate_config::Problem)s with a path
//!   such as `certificate[0].key` and never contain key material;
//! - the same account client configuration serves the data path and the health probes.
//!
//! Non-goals: OCSP stapling, certificate revocation lists, ACME, and loading files at handshake
//! time (everything is read once per load or reload; a reload builds a new [`CertStore`] and
//! [`SniResolver::swap`]s it in).

use std::sync::{Arc, OnceLock};

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;

mod client;
mod client_certs;
mod der;
mod describe;
mod files;
mod server;

#[cfg(test)]
mod tests;

pub use client::client_config;
pub use client_certs::{ClientCertPolicy, client_verifier};
pub use der::{format_utc, validity};
pub use describe::{Describe, describe_bounded};
pub use server::{CertStore, SniResolver, load_server_certs, server_config};

/// TLS 1.3 and 1.2, preferred in that order; nothing older.
const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
/// ALPN identifier of HTTP/2.
const ALPN_H2: &[u8] = b"h2";
/// ALPN identifier of HTTP/1.1.
const ALPN_H1: &[u8] = b"http/1.1";

/// The ring crypto provider with its default suites and groups, built once.
///
/// Every configuration in pairgate is built with `builder_with_provider(provider())`, so nothing
/// depends on (or installs) a process-wide default provider.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// An `https://` account's TLS client settings, shared by the data path and the health probes
/// so both connect exactly the same way.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    /// Roots and client certificate (ALPN is left to the connector: `allow_h2`).
    pub config: Arc<rustls::ClientConfig>,
    /// The name sent in SNI and verified.
    pub server_name: rustls_pki_types::ServerName<'static>,
    /// Offer h2 by ALPN (the account's `http2 = true`).
    pub allow_h2: bool,
}

/// TLS settings of every `https://` account, by account key (name and endpoint).
pub type UpstreamTlsMap = std::collections::HashMap<Arc<str>, UpstreamTls>;

/// The connector of an `https://` account: `http` (its TCP settings) wrapped in TLS with the
/// account's roots, client certificate, SNI and ALPN. The data path and the probes both build
/// theirs here, so a certificate problem fails a probe exactly as it fails a request.
pub fn https_connector(
    tls: &UpstreamTls,
    mut http: hyper_util::client::legacy::connect::HttpConnector,
) -> hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector> {
    http.enforce_http(false);
    let mut config = (*tls.config).clone();
    // hyper-rustls sets ALPN itself from the enabled protocols.
    config.alpn_protocols.clear();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            tls.server_name.clone(),
        ));
    if tls.allow_h2 {
        builder.enable_all_versions().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    }
}
