//! Tenant client authentication: a request is served only when it carries a credential of the
//! tenant it resolved to (API key, JWT from a configured issuer, or client certificate).
//!
//! [`Gate`] is compiled from a config next to the routing table and published with it, so a
//! request's tenant index and its policy always agree. [`Issuers`] holds each JWT issuer's key
//! set ([`JwksStore`]) and its refresher, carried across reloads while the issuer is unchanged.
//!
//! Invariants:
//! - a tenant without `client_auth` costs one vector read (`Verdict` is `Ok(None)`);
//! - keys and tokens never leave this crate: refusals carry a static reason code, identities a
//!   key id (`sha256:` and 12 hex digits), a JWT `sub` or a certificate subject;
//! - API keys are compared as SHA-256 digests in constant time; JWTs with `alg: none` or an
//!   HMAC algorithm are refused before any key is looked up;
//! - a credential that is valid for another tenant is `WrongTenant` (403), never a pass.
//!
//! Non-goals: the TLS handshake (the listener verifies client certificates against
//! `[listen] client_ca`; this crate only matches the verified leaf's names), rate limiting of
//! failed attempts.

mod api_key;
mod cache;
mod jwks;
mod jwt;
mod mtls;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use pairgate_config::{ApiKeyDigest, Config};

pub use api_key::{digest as api_key_digest, render_digest};
pub use jwks::{JwksError, JwksStore, KeySet, Refresher};
pub use mtls::PeerIdentity;

use cache::TokenCache;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No credential the tenant accepts was presented (401).
    Missing,
    /// A credential was presented and failed a check (401); the reason names the check.
    Invalid(&'static str),
    /// A valid credential of another tenant (403).
    WrongTenant,
    /// The tenant's JWT issuer has no signing keys yet: nothing can be verified (503).
    Unavailable,
}

impl Refusal {
    /// The `result` label of `pairgate_client_auth_total`.
    pub fn result(self) -> AuthResult {
        match self {
            Refusal::Missing => AuthResult::Missing,
            Refusal::Invalid(_) => AuthResult::Invalid,
            Refusal::WrongTenant => AuthResult::WrongTenant,
            Refusal::Unavailable => AuthResult::Unavailable,
        }
    }

    /// Which refusal to report when several credentials failed: the most specific.
    fn rank(self) -> u8 {
        match self {
            Refusal::Missing => 0,
            Refusal::Invalid(_) => 1,
            Refusal::Unavailable => 2,
            Refusal::WrongTenant => 3,
        }
    }
}

/// Outcomes of an authentication, as counted per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    /// Authenticated.
    Ok,
    /// No credential.
    Missing,
    /// A credential failed a check.
    Invalid,
    /// Another tenant's credential.
    WrongTenant,
    /// The issuer's keys are not loaded.
    Unavailable,
}

impl AuthResult {
    /// Every result, in label order.
    pub const ALL: [AuthResult; 5] = [
        AuthResult::Ok,
        AuthResult::Missing,
        AuthResult::Invalid,
        AuthResult::WrongTenant,
        AuthResult::Unavailable,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            AuthResult::Ok => "ok",
            AuthResult::Missing => "missing",
            AuthResult::Invalid => "invalid",
            AuthResult::WrongTenant => "wrong_tenant",
            AuthResult::Unavailable => "unavailable",
        }
    }

    /// Position in [`AuthResult::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Who an authenticated request comes from, and what to remove before forwarding.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The id sent upstream in the identity header: an API key's id, a JWT's `sub`, or the
    /// matched certificate subject. `None` when there is nothing printable.
    pub id: Option<HeaderValue>,
    /// The `Authorization` header carried the JWT: remove it.
    pub strip_authorization: bool,
}

/// One tenant's policy.
#[derive(Debug, Default)]
struct TenantPolicy {
    enabled: bool,
    keys: Vec<ApiKeyDigest>,
    /// Each key's id as sent upstream (`sha256:` and 12 hex digits), built once.
    key_ids: Vec<Option<HeaderValue>>,
    issuers: Vec<usize>,
    subjects: Vec<String>,
    challenge: &'static str,
}

/// The compiled client-authentication policy of one config.
pub struct Gate {
    api_key_header: HeaderName,
    identity_header: Option<HeaderName>,
    tenants: Vec<TenantPolicy>,
    /// Every configured key's tenant, to tell a wrong tenant's key from an unknown one.
    key_owner: HashMap<ApiKeyDigest, usize>,
    /// Every configured certificate subject's tenants.
    subject_owner: HashMap<String, Vec<usize>>,
    issuers: Vec<Arc<JwksStore>>,
    by_iss: HashMap<String, usize>,
    cache: TokenCache,
    log: LogLimiter,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("tenants", &self.tenants.len())
            .field("issuers", &self.issuers.len())
            .finish_non_exhaustive()
    }
}

/// `WWW-Authenticate` challenges (RFC 9110 §11.6.1; Bearer per RFC 6750 §3).
const CHALLENGE_BEARER: &str = "Bearer realm=\"pairgate\"";
const CHALLENGE_API_KEY: &str = "ApiKey realm=\"pairgate\"";
const CHALLENGE_CERTIFICATE: &str = "ClientCertificate realm=\"pairgate\"";

impl Gate {
    /// The policy of `config`, with the issuers' key stores from `issuers` (built from the
    /// same config).
    pub fn new(config: &Config, issuers: &Issuers) -> Gate {
        let auth = &config.client_auth;
        let mut key_owner = HashMap::new();
        let mut subject_owner: HashMap<String, Vec<usize>> = HashMap::new();
        let tenants = config
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let c = &t.client_auth;
                for k in &c.api_keys {
                    key_owner.insert(*k, i);
                }
                for s in &c.mtls_subjects {
                    subject_owner.entry(s.clone()).or_default().push(i);
                }
                let challenge = if !c.jwt_issuers.is_empty() {
                    CHALLENGE_BEARER
                } else if !c.api_keys.is_empty() || c.mtls_subjects.is_empty() {
                    CHALLENGE_API_KEY
                } else {
                    CHALLENGE_CERTIFICATE
                };
                TenantPolicy {
                    enabled: c.enabled(),
                    keys: c.api_keys.clone(),
                    key_ids: c
                        .api_keys
                        .iter()
                        .map(|k| HeaderValue::from_str(&k.id()).ok())
                        .collect(),
                    issuers: c.jwt_issuers.clone(),
                    subjects: c.mtls_subjects.clone(),
                    challenge,
                }
            })
            .collect();
        Gate {
            // Validated header names; an invalid one cannot reach here.
            api_key_header: HeaderName::from_bytes(auth.api_key_header.as_bytes())
                .unwrap_or_else(|_| HeaderName::from_static("x-api-key")),
            identity_header: auth
                .identity_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            tenants,
            key_owner,
            subject_owner,
            by_iss: issuers
                .stores
                .iter()
                .enumerate()
                .map(|(i, s)| (s.issuer().issuer.clone(), i))
                .collect(),
            issuers: issuers.stores.clone(),
            cache: TokenCache::new(auth.jwt_cache_entries),
            log: LogLimiter::default(),
        }
    }

    /// A gate that lets every request through (tests, and configs without client auth).
    pub fn open() -> Gate {
        Gate {
            api_key_header: HeaderName::from_static("x-api-key"),
            identity_header: None,
            tenants: Vec::new(),
            key_owner: HashMap::new(),
            subject_owner: HashMap::new(),
            issuers: Vec::new(),
            by_iss: HashMap::new(),
            cache: TokenCache::new(0),
            log: LogLimiter::default(),
        }
    }

    /// Whether requests to tenant `tenant` (its index) are authenticated.
    pub fn enabled(&self, tenant: usize) -> bool {
        self.tenants.get(tenant).is_some_and(|p| p.enabled)
    }

    /// The header the upstream hears the client's identity in (a client's own is removed).
    pub fn identity_header(&self) -> Option<&HeaderName> {
        self.identity_header.as_ref()
    }

    /// The header API keys come in (removed before forwarding).
    pub fn api_key_header(&self) -> &HeaderName {
        &self.api_key_header
    }

    /// Removes the API key header when it carries a key configured for some tenant: a
    /// tenant's key sent by mistake to a tenant that does not authenticate clients must not
    /// reach that tenant's upstream. Any other value is left alone (the header may be the
    /// upstream's own). Costs a SHA-256 only when the header is present and keys exist.
    pub fn strip_known_key(&self, headers: &mut HeaderMap) {
        if self.key_owner.is_empty() {
            return;
        }
        let known = headers
            .get(&self.api_key_header)
            .is_some_and(|v| self.key_owner.contains_key(&api_key::digest(v.as_bytes())));
        if known {
            headers.remove(&self.api_key_header);
        }
    }

    /// The `WWW-Authenticate` challenge of tenant `tenant`.
    pub fn challenge(&self, tenant: usize) -> &'static str {
        self.tenants
            .get(tenant)
            .map_or(CHALLENGE_API_KEY, |p| p.challenge)
    }

    /// Authenticates a request to tenant `tenant` (its index; `name` its name): `Ok(None)` when
    /// the tenant does not authenticate clients, `Ok(Some(identity))` when a presented
    /// credential is the tenant's, else the most specific refusal among the presented
    /// credentials. `peer` is the connection's verified client certificate.
    pub async fn authenticate(
        &self,
        tenant: usize,
        name: &str,
        headers: &HeaderMap,
        peer: Option<&PeerIdentity>,
    ) -> Result<Option<Identity>, Refusal> {
        let Some(policy) = self.tenants.get(tenant).filter(|p| p.enabled) else {
            return Ok(None);
        };
        let mut refusal = Refusal::Missing;
        let mut note = |r: Refusal| {
            if r.rank() > refusal.rank() {
                refusal = r;
            }
        };
        if let Some(peer) = peer {
            if let Some(subject) = peer.matching(&policy.subjects) {
                return Ok(Some(Identity {
                    id: HeaderValue::from_str(subject).ok(),
                    strip_authorization: false,
                }));
            }
            let elsewhere = peer.names().iter().any(|n| {
                self.subject_owner
                    .get(n)
                    .is_some_and(|o| !o.contains(&tenant))
            });
            if elsewhere {
                note(Refusal::WrongTenant);
            } else if !policy.subjects.is_empty() {
                note(Refusal::Invalid("certificate_not_accepted"));
            }
        }
        if let Some(key) = headers.get(&self.api_key_header) {
            let digest = api_key::digest(key.as_bytes());
            if let Some(i) = api_key::position(&policy.keys, &digest) {
                return Ok(Some(Identity {
                    id: policy.key_ids.get(i).cloned().flatten(),
                    strip_authorization: false,
                }));
            }
            note(match self.key_owner.get(&digest) {
                Some(_) => Refusal::WrongTenant,
                None => Refusal::Invalid("unknown_api_key"),
            });
        }
        if !policy.issuers.is_empty()
            && let Some(token) = headers.get(header::AUTHORIZATION).and_then(bearer)
        {
            match self.verify(token).await {
                Ok(v)
                    if policy.issuers.contains(&v.issuer) && v.tenant.as_deref() == Some(name) =>
                {
                    return Ok(Some(Identity {
                        id: v.subject,
                        strip_authorization: true,
                    }));
                }
                // A valid token that names no tenant is nobody's credential.
                Ok(v) if v.tenant.is_none() => note(Refusal::Invalid("missing_tenant_claim")),
                Ok(_) => note(Refusal::WrongTenant),
                Err(jwt::Failure::Invalid(reason)) => note(Refusal::Invalid(reason)),
                Err(jwt::Failure::Unavailable) => note(Refusal::Unavailable),
            }
        }
        Err(refusal)
    }

    /// A JWT verified now or earlier (the cache).
    async fn verify(&self, token: &str) -> Result<jwt::Verified, jwt::Failure> {
        let key = TokenCache::key(token);
        let now = unix_now();
        let generation = |i: usize| self.issuers.get(i).map_or(u64::MAX, |s| s.generation());
        if let Some(hit) = self.cache.get(&key, now, generation) {
            return Ok(hit);
        }
        let verified = jwt::verify(token, &self.issuers, &self.by_iss).await?;
        self.cache.insert(key, verified.clone(), now);
        Ok(verified)
    }

    /// Logs a refusal, at most [`LogLimiter::PER_SECOND`] lines a second (the rest are counted
    /// and reported with the next line). Never logs the credential.
    pub fn log_refusal(&self, tenant: &str, refusal: Refusal, client: std::net::SocketAddr) {
        if let Some(suppressed) = self.log.admit() {
            let reason = match refusal {
                Refusal::Invalid(r) => r,
                _ => "-",
            };
            tracing::warn!(
                target: "pairgate::client_auth",
                tenant,
                result = refusal.result().label(),
                reason,
                client = %client,
                suppressed,
                "client authentication refused"
            );
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let (scheme, token) = s.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// At most `PER_SECOND` log lines a second; counts what it holds back.
#[derive(Debug, Default)]
struct LogLimiter {
    /// The current second (unix) and the lines logged in it, packed: second << 16 | count.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    const PER_SECOND: u64 = 10;

    /// `Some(lines held back since the last one logged)` when a line may be logged now.
    fn admit(&self) -> Option<u64> {
        let now = unix_now();
        let packed = self.window.load(Ordering::Relaxed);
        let (second, count) = (packed >> 16, packed & 0xffff);
        let next = if second == now {
            if count >= Self::PER_SECOND {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            packed + 1
        } else {
            (now << 16) | 1
        };
        // A lost race only lets one extra line through.
        let _ = self
            .window
            .compare_exchange(packed, next, Ordering::Relaxed, Ordering::Relaxed);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// The key stores of a config's `[[jwt_issuer]]`s, in config order, each with its refresher.
#[derive(Default)]
pub struct Issuers {
    stores: Vec<Arc<JwksStore>>,
    refreshers: Vec<Option<Refresher>>,
}

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.stores).finish()
    }
}

impl Issuers {
    /// The issuers of `config` (relative `jwks_file`s against `base`), reusing each store of
    /// `previous` whose issuer is unchanged (its keys and refresher carry on); the others of
    /// `previous` stop. New stores read their file now and start refreshing (needs a Tokio
    /// runtime).
    pub fn for_config(config: &Config, base: &Path, previous: Option<Issuers>) -> Issuers {
        let mut previous = previous.unwrap_or_default();
        let mut out = Issuers::default();
        for issuer in &config.client_auth.issuers {
            let reused = previous
                .stores
                .iter()
                .position(|s| s.issuer() == issuer && s.base() == base);
            match reused {
                Some(i) => {
                    let store = previous.stores.swap_remove(i);
                    // A reload is when an operator has just edited the key file (a key
                    // revoked): read it now, not at the next refresh.
                    store.reread_file();
                    out.stores.push(store);
                    out.refreshers.push(previous.refreshers.swap_remove(i));
                }
                None => {
                    // Other settings of the same source keep its last good keys (a URL that
                    // fails now must not leave the issuer with none).
                    let same_source = previous
                        .stores
                        .iter()
                        .find(|s| s.issuer().jwks == issuer.jwks && s.base() == base);
                    let store = JwksStore::new(issuer, base);
                    if let Some(old) = same_source {
                        store.adopt_keys(old);
                    }
                    out.refreshers.push(Some(store.start()));
                    out.stores.push(store);
                }
            }
        }
        out
    }

    /// Reads and parses every `jwks_file` of `config` (what `pairgate check` and a reload
    /// report before anything is applied): `(issuer index, error)` for each that fails.
    pub fn check_files(config: &Config, base: &Path) -> Vec<(usize, JwksError)> {
        config
            .client_auth
            .issuers
            .iter()
            .enumerate()
            .filter_map(|(i, issuer)| JwksStore::check(issuer, base).err().map(|e| (i, e)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
