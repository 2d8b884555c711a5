//! The validated `[client_auth]`, `[[jwt_issuer]]` and tenants' `client_auth = { ... }`: who
//! may call as a tenant.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `[client_auth]` and the `[[jwt_issuer]]`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// `required`: every tenant must accept at least one credential kind.
    pub required: bool,
    /// `api_key_header`, lower-cased. Default `x-api-key`.
    pub api_key_header: String,
    /// `mtls`: whether the HTTPS listener asks for a client certificate.
    pub mtls: MtlsMode,
    /// `identity_header`, lower-cased: the authenticated client's id sent upstream; `None`
    /// when set to `""`. Default `x-pairgate-client`.
    pub identity_header: Option<String>,
    /// `jwt_cache_entries`: verified tokens remembered (keyed by the token's SHA-256).
    pub jwt_cache_entries: usize,
    /// `[[jwt_issuer]]`, in file order.
    pub issuers: Vec<JwtIssuer>,
}

impl Default for ClientAuth {
    fn default() -> Self {
        ClientAuth {
            required: false,
            api_key_header: "x-api-key".to_owned(),
            mtls: MtlsMode::Off,
            identity_header: Some("x-pairgate-client".to_owned()),
            jwt_cache_entries: 10_000,
            issuers: Vec::new(),
        }
    }
}

/// Whether the HTTPS listener asks clients for a certificate (`[client_auth] mtls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    /// No `[listen] client_ca`: no certificate is asked for.
    Off,
    /// A certificate is asked for; a client without one still connects (its tenant may
    /// accept another kind of credential). The default once `client_ca` is set.
    Optional,
    /// A client without a certificate signed by `client_ca` is refused at the handshake.
    Required,
}

/// One `[[jwt_issuer]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuer {
    /// Unique name.
    pub name: String,
    /// The exact `iss` value; unique among issuers.
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// Where the signing keys are.
    pub jwks: JwksSource,
    /// `jwks_refresh`: how often the keys are read again. Default 5 minutes.
    pub refresh: Duration,
    /// `jwks_min_refresh`: an unknown `kid` reads the keys again at most this often.
    /// Default 30 seconds.
    pub min_refresh: Duration,
    /// `algorithms`: accepted `alg`s. Default `["ES256", "RS256"]`; never `none` or HMAC.
    pub algorithms: Vec<JwtAlgorithm>,
    /// `tenant_claim`: the claim that must equal the tenant's name. Default `tenant`.
    pub tenant_claim: String,
    /// `leeway` for `exp` and `nbf`. Default 30 seconds.
    pub leeway: Duration,
}

/// Where an issuer's JSON Web Key Set is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `jwks_file`, as written (relative to the config file's directory).
    File(PathBuf),
    /// `jwks_url`, `http://` or `https://`.
    Url(String),
}

/// A signature algorithm an issuer may use: the asymmetric JWS algorithms of RFC 7518 §3.1
/// and RFC 8037. `none` and the HMAC ones have no variant: a shared secret cannot come from a
/// public key set, and an HMAC token "signed" with a public key is the classic algorithm
/// confusion attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum JwtAlgorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// Every variant, with its `alg` name.
    pub const ALL: [(&'static str, JwtAlgorithm); 9] = [
        ("ES256", JwtAlgorithm::ES256),
        ("ES384", JwtAlgorithm::ES384),
        ("RS256", JwtAlgorithm::RS256),
        ("RS384", JwtAlgorithm::RS384),
        ("RS512", JwtAlgorithm::RS512),
        ("PS256", JwtAlgorithm::PS256),
        ("PS384", JwtAlgorithm::PS384),
        ("PS512", JwtAlgorithm::PS512),
        ("EdDSA", JwtAlgorithm::EdDSA),
    ];

    /// The `alg` name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(n, _)| n)
    }
}

/// A tenant's `client_auth = { ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantClientAuth {
    /// Digests of the API keys that act as this tenant.
    pub api_keys: Vec<ApiKeyDigest>,
    /// Indices into [`ClientAuth::issuers`].
    pub jwt_issuers: Vec<usize>,
    /// Accepted client-certificate subjects: `CN=<common name>` or a URI SAN.
    pub mtls_subjects: Vec<String>,
    /// Requests without a valid credential are refused (the tenant's own `required`, or
    /// `[client_auth] required`, or any credential kind being configured).
    pub required: bool,
}

impl TenantClientAuth {
    /// Whether requests to this tenant are authenticated at all.
    pub fn enabled(&self) -> bool {
        self.required
            || !self.api_keys.is_empty()
            || !self.jwt_issuers.is_empty()
            || !self.mtls_subjects.is_empty()
    }
}

/// The SHA-256 digest of an API key, as configured (`"sha256:<64 hex digits>"`).
///
/// Not a secret (a 128-bit-entropy key cannot be recovered from it), but `Debug` shows only
/// its id, the first 12 hex digits, which is also what the upstream hears as the client's
/// identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyDigest(pub [u8; 32]);

impl ApiKeyDigest {
    /// Parses `"sha256:<64 hex digits>"` (either case).
    pub fn parse(raw: &str) -> Result<ApiKeyDigest, String> {
        const WANT: &str = "expected \"sha256:<64 hex digits>\", the output of \
                            `pairgate hash-key`; the key itself never goes in the config";
        let hex = raw.strip_prefix("sha256:").ok_or(WANT)?;
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(WANT.to_owned());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| WANT.to_owned())?;
        }
        Ok(ApiKeyDigest(out))
    }

    /// `sha256:` and the first 12 hex digits: names the key in logs and upstream without
    /// exposing anything that helps guess it.
    pub fn id(&self) -> String {
        let mut s = String::with_capacity(19);
        s.push_str("sha256:");
        for b in &self.0[..6] {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Debug for ApiKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyDigest({})", self.id())
    }
}
