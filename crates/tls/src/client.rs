//! The upstream side: one `https://` account's client configuration (roots, client certificate,
//! ALPN) and the server name it sends and verifies.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use pairgate_config::{AccountTls, Problem};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;

use crate::files::{PemFile, Problems, check_pair, read_certs, read_key};
use crate::{ALPN_H1, ALPN_H2, PROTOCOL_VERSIONS, provider};

/// The client configuration of account `index` (used for problem paths `account[index].…`).
///
/// - Roots: the PEM bundle at `tls.ca` when set (every certificate in it is a trust anchor),
///   else the Mozilla roots of `webpki-roots`.
/// - Client certificate and key from `tls.client_auth`, checked like server certificates (key
///   matches the leaf, leaf valid at `now`); a client certificate expiring within 14 days is
///   logged as a warning.
/// - ALPN `h2`, `http/1.1` when `allow_h2`, else only `http/1.1`.
///
/// `host` is the URL's host, with or without its port (`example.com`, `example.com:8443`,
/// `[::1]:8443`). Returns the configuration and the server name to send and verify: `tls.sni`
/// when set, else `host` (an IP address is verified against the certificate's IP SANs and sends
/// no SNI). Relative paths are resolved against `base_dir`. Problem paths are `account[i].ca`,
/// `account[i].client_cert`, `account[i].client_key`, and `account[i].sni` / `account[i].url`
/// for a name that is not a valid server name.
pub fn client_config(
    index: usize,
    tls: &AccountTls,
    host: &str,
    allow_h2: bool,
    base_dir: &Path,
    now: SystemTime,
) -> Result<(Arc<ClientConfig>, ServerName<'static>), Vec<Problem>> {
    let mut problems = Problems::default();
    let at = |key: &str| format!("account[{index}].{key}");

    let server_name = match &tls.sni {
        Some(sni) => server_name(sni, &at("sni"), &mut problems),
        None => server_name(host_of(host), &at("url"), &mut problems),
    };

    let roots = match &tls.ca {
        Some(ca) => ca_roots(&PemFile::new(at("ca"), ca, base_dir), &mut problems),
        None => Some(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
    };

    // `Some(None)`: no client certificate configured; `None`: configured but unusable.
    let client_cert = match &tls.client_auth {
        None => Some(None),
        Some((cert, key)) => {
            let cert_file = PemFile::new(at("client_cert"), cert, base_dir);
            let key_file = PemFile::new(at("client_key"), key, base_dir);
            let chain = read_certs(&cert_file, &mut problems);
            let key = read_key(&key_file, &mut problems);
            match (chain, key) {
                (Some(chain), Some(key)) => {
                    check_pair(chain, key, &cert_file, &key_file, now, &mut problems).map(Some)
                }
                _ => None,
            }
        }
    };

    // Every `None` above came with an error, but check both ways rather than rely on it.
    let (Some(server_name), Some(roots), Some(client_cert)) = (server_name, roots, client_cert)
    else {
        return Err(problems.into_sorted());
    };
    if problems.has_errors() {
        return Err(problems.into_sorted());
    }
    for warning in &problems.0 {
        tracing::warn!(problem = %warning, "account TLS");
    }

    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots);
    let mut config = match client_cert {
        // Already checked by `check_pair`; no second parse of the key.
        Some(certified) => {
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = if allow_h2 {
        vec![ALPN_H2.to_vec(), ALPN_H1.to_vec()]
    } else {
        vec![ALPN_H1.to_vec()]
    };
    Ok((Arc::new(config), server_name))
}

/// Every certificate of the bundle as a trust anchor.
pub(crate) fn ca_roots(file: &PemFile<'_>, problems: &mut Problems) -> Option<RootCertStore> {
    let certs = read_certs(file, problems)?;
    let mut roots = RootCertStore::empty();
    let mut ok = true;
    for (n, cert) in certs.into_iter().enumerate() {
        if let Err(error) = roots.add(cert) {
            let shown = file.shown.display();
            problems.error(
                &file.at,
                format!(
                    "certificate {} in {shown} is not a usable CA: {error}",
                    n + 1
                ),
            );
            ok = false;
        }
    }
    ok.then_some(roots)
}

fn server_name(name: &str, at: &str, problems: &mut Problems) -> Option<ServerName<'static>> {
    match ServerName::try_from(name.to_owned()) {
        Ok(name) => Some(name),
        Err(_) => {
            problems.error(at, format!("{name:?} is not a valid TLS server name"));
            None
        }
    }
}

/// The host part of `host[:port]`, without the brackets of an IPv6 literal.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    // A bare IPv6 address has several colons; only a single one separates a port.
    if authority.parse::<IpAddr>().is_ok() {
        return authority;
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}
