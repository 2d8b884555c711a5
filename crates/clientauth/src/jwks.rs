//! An issuer's signing keys (RFC 7517 JSON Web Key Set): parsed with `jsonwebtoken`'s JWK
//! types, kept in an `ArcSwap`, read again every `jwks_refresh` and, at most once per
//! `jwks_min_refresh`, when a token names a `kid` the set does not hold. A failed read keeps
//! the last good set.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use pairgate_config::{JwksSource, JwtAlgorithm, JwtIssuer};

/// Largest key set read.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Bound of one JWKS download.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request that met an unknown `kid` waits for the refresh it asked for.
const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(2);

/// Why a key set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The URL could not be fetched.
    #[error("cannot fetch {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why (a transport error or a status).
        reason: String,
    },
    /// The document is not a key set.
    #[error("not a JSON Web Key Set: {0}")]
    Parse(String),
    /// No key in the set can verify any algorithm the issuer accepts.
    #[error(
        "no usable signing key (every key was HMAC, of an unsupported type, or of another algorithm)"
    )]
    NoUsableKey,
}

/// One verification key.
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    /// The algorithms this key may verify: its type's, narrowed by its `alg` and the issuer's
    /// `algorithms`.
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
}

/// A parsed key set.
pub struct KeySet {
    pub(crate) keys: Vec<Key>,
    /// Counts changes of the set; verified tokens remember it, so a key that leaves the set
    /// stops vouching for cached tokens at once.
    pub(crate) generation: u64,
    /// The raw document, to notice that a refresh changed nothing.
    raw: Bytes,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys.len())
            .field("generation", &self.generation)
            .finish()
    }
}

impl KeySet {
    /// An empty set: nothing verifies until a read succeeds.
    fn empty() -> KeySet {
        KeySet {
            keys: Vec::new(),
            generation: 0,
            raw: Bytes::new(),
        }
    }

    /// Parses `raw` for an issuer that accepts `accepted`. Keys that cannot be used are skipped
    /// (each named in the returned notes): HMAC (`kty: oct`) keys always, since a shared secret
    /// has no place in a public key set, and keys of unsupported types or curves.
    pub fn parse(
        raw: Bytes,
        accepted: &[JwtAlgorithm],
    ) -> Result<(KeySet, Vec<String>), JwksError> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document =
            serde_json::from_slice(&raw).map_err(|e| JwksError::Parse(e.to_string()))?;
        let accepted: Vec<Algorithm> = accepted.iter().map(|a| to_jwt(*a)).collect();
        let mut keys = Vec::new();
        let mut notes = Vec::new();
        for (i, value) in doc.keys.into_iter().enumerate() {
            let jwk: Jwk = match serde_json::from_value(value) {
                Ok(jwk) => jwk,
                Err(e) => {
                    notes.push(format!("key {i}: skipped, not a supported JWK ({e})"));
                    continue;
                }
            };
            let kid = jwk.common.key_id.clone();
            let label = kid
                .as_deref()
                .map_or_else(|| format!("key {i}"), |k| format!("key {k:?}"));
            let by_type: &[Algorithm] = match &jwk.algorithm {
                AlgorithmParameters::OctetKey(_) => {
                    notes.push(format!("{label}: skipped, an HMAC key is never accepted"));
                    continue;
                }
                AlgorithmParameters::RSA(_) => &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => &[Algorithm::ES256],
                    EllipticCurve::P384 => &[Algorithm::ES384],
                    _ => {
                        notes.push(format!("{label}: skipped, unsupported curve"));
                        continue;
                    }
                },
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    &[Algorithm::EdDSA]
                }
                AlgorithmParameters::OctetKeyPair(_) => {
                    notes.push(format!("{label}: skipped, unsupported curve"));
                    continue;
                }
            };
            // RFC 7517 §4.2: a key for encryption does not verify signatures.
            if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
                notes.push(format!("{label}: skipped, its use is enc"));
                continue;
            }
            // A declared `alg` that is no signature algorithm (RSA-OAEP, ...) rules the key out
            // rather than leaving it open to every algorithm of its type.
            let declared: Option<Algorithm> = match jwk.common.key_algorithm {
                None => None,
                Some(a) => match a.to_string().parse() {
                    Ok(alg) => Some(alg),
                    Err(_) => {
                        notes.push(format!("{label}: skipped, its alg {a} does not sign"));
                        continue;
                    }
                },
            };
            let algorithms: Vec<Algorithm> = by_type
                .iter()
                .copied()
                .filter(|a| accepted.contains(a) && declared.is_none_or(|d| d == *a))
                .collect();
            if algorithms.is_empty() {
                notes.push(format!(
                    "{label}: skipped, none of the issuer's algorithms fits it"
                ));
                continue;
            }
            match DecodingKey::from_jwk(&jwk) {
                Ok(key) => keys.push(Key {
                    kid,
                    algorithms,
                    key,
                }),
                Err(e) => notes.push(format!("{label}: skipped, unreadable ({e})")),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok((
            KeySet {
                keys,
                generation: 0,
                raw,
            },
            notes,
        ))
    }

    /// The keys that may verify a token with `kid` and `alg`.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            k.algorithms.contains(&alg) && (kid.is_none() || k.kid.as_deref() == kid)
        })
    }

    /// Whether any key was ever loaded.
    pub(crate) fn loaded(&self) -> bool {
        !self.keys.is_empty()
    }
}

/// `jsonwebtoken`'s name for a configured algorithm.
pub(crate) fn to_jwt(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// One issuer's keys, shared by every snapshot that uses the issuer unchanged.
pub struct JwksStore {
    issuer: JwtIssuer,
    base: PathBuf,
    /// `jwks_file` resolved against the config's directory.
    path: Option<PathBuf>,
    keys: ArcSwap<KeySet>,
    /// Asks the refresher for a read now.
    wake: tokio::sync::Notify,
    /// Counts finished reads, so a waiter knows its read is done.
    reads: tokio::sync::watch::Sender<u64>,
    /// When an unknown `kid` last asked for a read (milliseconds since `born`).
    last_forced: AtomicU64,
    born: Instant,
    client: Option<fetch::Fetcher>,
}

impl std::fmt::Debug for JwksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksStore")
            .field("issuer", &self.issuer.name)
            .field("keys", &*self.keys.load())
            .finish_non_exhaustive()
    }
}

impl JwksStore {
    /// A store for `issuer`; relative `jwks_file`s are resolved against `base`. A file is read
    /// now (a failure is logged and leaves the store empty until a refresh succeeds:
    /// [`JwksStore::check`] reports it before a config is applied); a URL is fetched by the
    /// refresher once it runs.
    pub fn new(issuer: &JwtIssuer, base: &std::path::Path) -> Arc<JwksStore> {
        let (path, client) = match &issuer.jwks {
            JwksSource::File(p) => (Some(base.join(p)), None),
            JwksSource::Url(_) => (None, Some(fetch::Fetcher::new(FETCH_TIMEOUT))),
        };
        let store = JwksStore {
            issuer: issuer.clone(),
            base: base.to_path_buf(),
            path,
            keys: ArcSwap::from_pointee(KeySet::empty()),
            wake: tokio::sync::Notify::new(),
            reads: tokio::sync::watch::Sender::new(0),
            last_forced: AtomicU64::new(u64::MAX),
            born: Instant::now(),
            client,
        };
        if let Some(path) = &store.path {
            let read = std::fs::read(path).map_err(|source| JwksError::Read {
                path: path.clone(),
                source,
            });
            if let Err(err) = read.and_then(|raw| store.install(Bytes::from(raw))) {
                tracing::warn!(issuer = %issuer.name, error = %err, "jwks: keys not loaded");
            }
        }
        Arc::new(store)
    }

    /// Reads and parses `issuer`'s `jwks_file` (a URL is not fetched: it is `Ok`).
    pub fn check(issuer: &JwtIssuer, base: &std::path::Path) -> Result<(), JwksError> {
        let JwksSource::File(p) = &issuer.jwks else {
            return Ok(());
        };
        let path = base.join(p);
        let raw = std::fs::read(&path).map_err(|source| JwksError::Read { path, source })?;
        KeySet::parse(Bytes::from(raw), &issuer.algorithms).map(|_| ())
    }

    /// The directory relative paths were resolved against.
    pub fn base(&self) -> &std::path::Path {
        &self.base
    }

    /// The issuer this store serves.
    pub fn issuer(&self) -> &JwtIssuer {
        &self.issuer
    }

    /// The current keys (an `Arc`, so it may be held across the refresh wait).
    pub(crate) fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// The current set's generation.
    pub(crate) fn generation(&self) -> u64 {
        self.keys.load().generation
    }

    /// Reads a `jwks_file` again now (a reload); a failure keeps the current keys and is
    /// logged. Nothing for a URL (its refresher fetches it).
    pub fn reread_file(&self) {
        let Some(path) = &self.path else { return };
        let read = std::fs::read(path).map_err(|source| JwksError::Read {
            path: path.clone(),
            source,
        });
        if let Err(err) = read.and_then(|raw| self.install(Bytes::from(raw))) {
            tracing::warn!(issuer = %self.issuer.name, error = %err, "jwks: re-read at reload failed; the last good keys stay in use");
        }
    }

    /// Takes `old`'s keys when this store has none yet (the same source under changed issuer
    /// settings): parsed again for this issuer's algorithms.
    pub fn adopt_keys(&self, old: &JwksStore) {
        let theirs = old.keys.load();
        if self.keys.load().loaded() || !theirs.loaded() {
            return;
        }
        if let Err(err) = self.install(theirs.raw.clone()) {
            tracing::warn!(issuer = %self.issuer.name, error = %err, "jwks: previous keys do not fit the new settings");
        }
    }

    /// Parses `raw` and, when it differs from the current set, installs it as a new
    /// generation.
    fn install(&self, raw: Bytes) -> Result<(), JwksError> {
        let current = self.keys.load();
        if current.loaded() && current.raw == raw {
            return Ok(());
        }
        let (mut set, notes) = KeySet::parse(raw, &self.issuer.algorithms)?;
        for note in notes {
            tracing::warn!(issuer = %self.issuer.name, "jwks: {note}");
        }
        set.generation = current.generation + 1;
        tracing::info!(
            issuer = %self.issuer.name,
            keys = set.keys.len(),
            generation = set.generation,
            "jwks: signing keys loaded"
        );
        self.keys.store(Arc::new(set));
        Ok(())
    }

    /// Reads the source once; a failure keeps the current keys and is logged.
    async fn read(&self) {
        let raw = match (&self.path, &self.client, &self.issuer.jwks) {
            (Some(path), _, _) => tokio::fs::read(path)
                .await
                .map(Bytes::from)
                .map_err(|source| JwksError::Read {
                    path: path.clone(),
                    source,
                }),
            (None, Some(client), JwksSource::Url(url)) => client.get(url, MAX_JWKS_BYTES).await,
            _ => Err(JwksError::Parse("no source".to_owned())),
        };
        if let Err(err) = raw.and_then(|raw| self.install(raw)) {
            tracing::warn!(
                issuer = %self.issuer.name,
                error = %err,
                "jwks: refresh failed; the last good keys stay in use"
            );
        }
        self.reads.send_modify(|n| *n += 1);
    }

    /// Runs the refresher: a read now (URLs) and every `jwks_refresh`, and whenever a request
    /// asks for one. Ends when the returned handle is dropped.
    pub fn start(self: &Arc<Self>) -> Refresher {
        let store = Arc::clone(self);
        let task = tokio::spawn(async move {
            if store.path.is_some() {
                // Read at construction; wait a period first.
                store.wait().await;
            }
            loop {
                store.read().await;
                store.wait().await;
            }
        });
        Refresher(task)
    }

    async fn wait(&self) {
        tokio::select! {
            () = tokio::time::sleep(self.issuer.refresh) => {}
            () = self.wake.notified() => {}
        }
    }

    /// A token named a `kid` the set does not hold: read the set again (at most once per
    /// `jwks_min_refresh`) and wait, boundedly, for the read. Whether a read happened.
    pub(crate) async fn refresh_for_unknown_kid(&self) -> bool {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let min = u64::try_from(self.issuer.min_refresh.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_forced.load(Ordering::Acquire);
        let due = last == u64::MAX || now.saturating_sub(last) >= min;
        if !due
            || self
                .last_forced
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return false;
        }
        let mut reads = self.reads.subscribe();
        reads.mark_unchanged();
        self.wake.notify_one();
        tokio::time::timeout(UNKNOWN_KID_WAIT, reads.changed())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// A running refresher; dropping it stops the task.
#[derive(Debug)]
pub struct Refresher(tokio::task::JoinHandle<()>);

impl Drop for Refresher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

mod fetch {
    //! A small HTTPS client for key sets (ring, webpki roots; plain HTTP for tests and
    //! in-cluster issuers).

    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    use super::JwksError;

    pub(super) struct Fetcher {
        client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
        timeout: Duration,
    }

    impl Fetcher {
        pub(super) fn new(timeout: Duration) -> Fetcher {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .expect("ring supports TLS 1.2 and 1.3");
            let mut http = HttpConnector::new();
            http.set_connect_timeout(Some(timeout));
            http.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Fetcher {
                client: Client::builder(TokioExecutor::new()).build(https),
                timeout,
            }
        }

        pub(super) async fn get(&self, url: &str, max: usize) -> Result<Bytes, JwksError> {
            let failed = |reason: String| JwksError::Fetch {
                url: url.to_owned(),
                reason,
            };
            let uri: http::Uri = url.parse().map_err(|_| failed("not a URL".to_owned()))?;
            let exchange = async {
                let res = self
                    .client
                    .get(uri)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if res.status() != http::StatusCode::OK {
                    return Err(failed(format!("status {}", res.status())));
                }
                Limited::new(res.into_body(), max)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .map_err(|e| failed(e.to_string()))
            };
            tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| failed(format!("no answer within {:?}", self.timeout)))?
        }
    }
}
