//! Bearer JWT verification (RFC 7519, RFC 8725's advice): the issuer is picked by the token's
//! `iss`, the key by its `kid` and `alg` from that issuer's key set, and `jsonwebtoken` checks
//! the signature, `exp`, `nbf`, `iss` and `aud`. Only the header's `alg`/`kid` and the `iss`
//! claim are read before the signature is checked, to pick the key.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use crate::jwks::{JwksStore, to_jwt};

/// What a verified token says.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// Index of the issuer that signed it.
    pub(crate) issuer: usize,
    /// The issuer's key-set generation it was verified with.
    pub(crate) generation: u64,
    /// Unix seconds after which it is no longer accepted (`exp` plus the leeway).
    pub(crate) expires: u64,
    /// `sub`, when it is a valid header value (sent upstream as the client's identity).
    pub(crate) subject: Option<HeaderValue>,
    /// The issuer's tenant claim, when it is a string.
    pub(crate) tenant: Option<std::sync::Arc<str>>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The token is refused; the reason names the check (never the token).
    Invalid(&'static str),
    /// The issuer's keys were never loaded: nothing can be verified (not the client's fault).
    Unavailable,
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(serde::Deserialize)]
struct Peek {
    iss: Option<serde_json::Value>,
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Verifies `token` against the issuers, which are indexed by `iss` in `by_iss`.
pub(crate) async fn verify(
    token: &str,
    issuers: &[Arc<JwksStore>],
    by_iss: &HashMap<String, usize>,
) -> Result<Verified, Failure> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::Invalid("malformed_token"));
    };
    let header: Header = decode_part(header).ok_or(Failure::Invalid("malformed_token"))?;
    // `none` and HMAC are refused before anything else: there is no key for them.
    let alg: Algorithm = match header.alg.parse() {
        Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
            return Err(Failure::Invalid("algorithm_not_allowed"));
        }
        Ok(alg) => alg,
    };
    let peek: Peek = decode_part(payload).ok_or(Failure::Invalid("malformed_token"))?;
    let iss = match peek.iss {
        Some(serde_json::Value::String(iss)) => iss,
        None => return Err(Failure::Invalid("missing_issuer")),
        Some(_) => return Err(Failure::Invalid("malformed_token")),
    };
    let index = *by_iss.get(&iss).ok_or(Failure::Invalid("wrong_issuer"))?;
    let store = &issuers[index];
    let issuer = store.issuer();
    if !issuer.algorithms.iter().any(|a| to_jwt(*a) == alg) {
        return Err(Failure::Invalid("algorithm_not_allowed"));
    }
    let mut keys = store.keys();
    if !keys.loaded() {
        return Err(Failure::Unavailable);
    }
    let kid = header.kid.as_deref();
    if keys.candidates(kid, alg).next().is_none() {
        // A new key the issuer started signing with: read its set again (rate-limited).
        if kid.is_some() && store.refresh_for_unknown_kid().await {
            keys = store.keys();
        }
        if keys.candidates(kid, alg).next().is_none() {
            return Err(Failure::Invalid("unknown_key"));
        }
    }
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.leeway = issuer.leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_issuer(&[&issuer.issuer]);
    validation.set_audience(&issuer.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let mut last = Failure::Invalid("bad_signature");
    for key in keys.candidates(kid, alg) {
        match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.key,
            &validation,
        ) {
            Ok(data) => {
                let claims = data.claims;
                let exp = claims
                    .get("exp")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                return Ok(Verified {
                    issuer: index,
                    generation: keys.generation,
                    expires: exp.saturating_add(validation.leeway),
                    subject: claims
                        .get("sub")
                        .and_then(serde_json::Value::as_str)
                        .and_then(|s| HeaderValue::from_str(s).ok()),
                    tenant: claims
                        .get(&issuer.tenant_claim)
                        .and_then(serde_json::Value::as_str)
                        .map(std::sync::Arc::from),
                });
            }
            // Another key with the same `kid` (or none) may be the one.
            Err(e) if *e.kind() == JwtErrorKind::InvalidSignature => {}
            Err(e) => {
                last = Failure::Invalid(reason(e.kind()));
                break;
            }
        }
    }
    Err(last)
}

/// The reason code a failed check is reported with.
fn reason(kind: &JwtErrorKind) -> &'static str {
    match kind {
        JwtErrorKind::InvalidSignature => "bad_signature",
        JwtErrorKind::ExpiredSignature => "token_expired",
        JwtErrorKind::ImmatureSignature => "token_not_yet_valid",
        JwtErrorKind::InvalidIssuer => "wrong_issuer",
        JwtErrorKind::InvalidAudience => "wrong_audience",
        JwtErrorKind::MissingRequiredClaim(_) => "missing_claim",
        JwtErrorKind::InvalidAlgorithm | JwtErrorKind::InvalidAlgorithmName => {
            "algorithm_not_allowed"
        }
        _ => "malformed_token",
    }
}
