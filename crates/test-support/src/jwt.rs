//! Signing keys, key sets and tokens for client-authentication tests: ES256 keys are generated
//! per test (rcgen); ring cannot generate RSA keys, so RS256 uses a test-only 2048-bit key in
//! `fixtures/jwt-rs256-test-key.der` (PKCS#1, made with `openssl genpkey` + `openssl rsa
//! -traditional -outform DER`), from which the public JWK is derived here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The test RSA private key (PKCS#1 DER). Never used outside tests.
const RSA_TEST_KEY: &[u8] = include_bytes!("../fixtures/jwt-rs256-test-key.der");

/// A key that signs test tokens, with its public JWK.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A fresh P-256 key.
    pub fn es256(kid: &str) -> SigningKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("P-256 key generation");
        // Uncompressed SEC1 point: 0x04 || x || y.
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        SigningKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..]),
            }),
        }
    }

    /// The fixture RSA key.
    pub fn rs256(kid: &str) -> SigningKey {
        let pair = ring::rsa::KeyPair::from_der(RSA_TEST_KEY).expect("fixture RSA key");
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        SigningKey {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(RSA_TEST_KEY),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": b64(&public.n), "e": b64(&public.e),
            }),
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// A token with `claims`, signed by this key, naming its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing")
    }

    /// The classic algorithm-confusion forgery: an HS256 token whose HMAC secret is this
    /// key's public JWK text, as a verifier that trusted the token's `alg` would use it.
    pub fn hmac_forgery(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let secret = EncodingKey::from_secret(self.jwk.to_string().as_bytes());
        jsonwebtoken::encode(&header, claims, &secret).expect("signing")
    }
}

/// A key set of `keys`, as an issuer publishes it.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk().clone()).collect::<Vec<_>>() }).to_string()
}

/// An unsigned token (`alg: none`, empty signature) with `claims`.
pub fn unsigned(claims: &Value) -> String {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", b64(claims.to_string().as_bytes()))
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
