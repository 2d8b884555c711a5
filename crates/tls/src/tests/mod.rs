//! Tests of the TLS crate with rcgen-generated material written to temporary files, and real
//! handshakes over in-memory duplex pipes.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use pairgate_config::{Problem, Severity};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::der::utc;

mod der;
mod handshake;
mod load;
mod resolve;

type BoxError = Box<dyn Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pairgate-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` (sub-directories created) and returns `name` as a path, as a
    /// config would write it relative to this directory.
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let full = self.0.join(name);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("the temp dir is writable");
        }
        std::fs::write(&full, contents).expect("the temp dir is writable");
        PathBuf::from(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test certificate authority.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no SANs is valid");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("ring generates P-256 keys");
        let cert = params.self_signed(&key).expect("a CA can self-sign");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }
}

/// A leaf certificate and its key, as PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

/// Validity window of a generated certificate (rcgen's default: 1975 to 4096).
#[derive(Clone, Copy)]
struct Window {
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
}

const ALWAYS: Window = Window {
    not_before: (1975, 1, 1),
    not_after: (4096, 1, 1),
};

/// A leaf for `names` (DNS names or IP addresses), signed by `ca` or self-signed, usable for
/// server and client authentication.
fn leaf(names: &[&str], ca: Option<&Ca>, window: Window) -> Leaf {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("test names are valid SANs");
    params
        .distinguished_name
        .push(DnType::CommonName, "pairgate test");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let (y, m, d) = window.not_before;
    params.not_before = date_time_ymd(y, m, d);
    let (y, m, d) = window.not_after;
    params.not_after = date_time_ymd(y, m, d);
    let key = KeyPair::generate().expect("ring generates P-256 keys");
    let cert = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer),
        None => params.self_signed(&key),
    }
    .expect("rcgen signs test certificates");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_pkcs8: key.serialize_der(),
    }
}

/// `YYYY-MM-DD 00:00:00` UTC.
fn day(y: i64, m: u32, d: u32) -> SystemTime {
    utc(y, m, d, 0, 0, 0).expect("test dates exist")
}

/// PEM text of one block.
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = usize::try_from((n >> (18 - 6 * i)) & 63).expect("six bits fit");
                b64.push(char::from(ALPHABET[index]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A problem as `(severity, path, message)`, for whole-list comparisons.
type Seen = (Severity, String, String);

/// Every problem as a [`Seen`].
fn summary(problems: &[Problem]) -> Vec<Seen> {
    problems
        .iter()
        .map(|p| (p.severity, p.path.clone(), p.message.clone()))
        .collect()
}

/// Runs a TLS handshake between `client` (connecting as `name`) and `server` over an in-memory
/// pipe. `Ok` carries the ALPN protocol and the leaf certificate the server presented; `Err`
/// says which side failed and why. Both sides must succeed for `Ok`.
async fn handshake(
    client: Arc<ClientConfig>,
    name: ServerName<'static>,
    server: Arc<ServerConfig>,
) -> Result<(Option<Vec<u8>>, CertificateDer<'static>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let connect = async {
        let mut stream = TlsConnector::from(client)
            .connect(name, client_io)
            .await
            .map_err(|e| format!("client: {e}"))?;
        // A byte each way proves the session works, and in TLS 1.3 makes the client see a
        // server that rejected its certificate after the client's Finished.
        stream
            .write_all(b"?")
            .await
            .map_err(|e| format!("client write: {e}"))?;
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        let (_, conn) = stream.get_ref();
        let leaf = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or("client: no server certificate")?
            .clone()
            .into_owned();
        Ok::<_, String>((conn.alpn_protocol().map(<[u8]>::to_vec), leaf))
    };
    let accept = async {
        let mut stream = TlsAcceptor::from(server)
            .accept(server_io)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        stream
            .write_all(b"!")
            .await
            .map_err(|e| format!("server write: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("server flush: {e}"))?;
        Ok::<_, String>(())
    };
    let both = async { tokio::join!(connect, accept) };
    match tokio::time::timeout(Duration::from_secs(5), both).await {
        Err(_) => Err("handshake timed out".to_owned()),
        Ok((Ok(client), Ok(()))) => Ok(client),
        Ok((Err(c), Err(s))) => Err(format!("{c}; {s}")),
        Ok((Err(e), Ok(()))) | Ok((Ok(_), Err(e))) => Err(e),
    }
}
