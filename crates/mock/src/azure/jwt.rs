//! Tokens the fakes mint and check: JWTs (`header.payload.signature`, base64url without padding)
//! whose signature is the fake's own keyed FNV-1a checksum, not a real algorithm. Only the fake
//! itself ever checks a signature; the gateway reads the payload and never verifies (it holds no
//! issuer keys), exactly as with real Entra ID and Video Indexer tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::pattern::Fnv64;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 4648 §5), as JWTs use it (RFC 7515 §2).
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

/// Inverse of [`b64url_encode`]; `None` on any character outside the alphabet or a bad length.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)?;
        acc = (acc << 6) | u32::try_from(v).ok()?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    (bits < 6).then_some(out)
}

/// Seconds since the Unix epoch (JWT NumericDate, RFC 7519 §2).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints and checks the fakes' tokens with one per-instance key.
#[derive(Clone, Copy)]
pub(crate) struct Signer {
    key: u64,
}

impl Signer {
    pub(crate) fn new(key: u64) -> Self {
        Self { key }
    }

    fn signature(&self, signing_input: &str) -> String {
        let mut h = Fnv64::new();
        h.update(&self.key.to_le_bytes());
        h.update(signing_input.as_bytes());
        b64url_encode(&h.finish().to_be_bytes())
    }

    /// A JWT carrying `claims` plus `iat`, `nbf` and `exp` (`exp = iat + lifetime`, whole seconds,
    /// at least one).
    pub(crate) fn mint(&self, mut claims: Map<String, Value>, lifetime: Duration) -> String {
        let iat = unix_now();
        claims.insert("iat".into(), json!(iat));
        claims.insert("nbf".into(), json!(iat));
        claims.insert("exp".into(), json!(iat + lifetime.as_secs().max(1)));
        let header = b64url_encode(br#"{"alg":"mock-fnv64","typ":"JWT"}"#);
        let payload = b64url_encode(Value::Object(claims).to_string().as_bytes());
        let input = format!("{header}.{payload}");
        let signature = self.signature(&input);
        format!("{input}.{signature}")
    }

    /// The claims of `token` if this signer minted it (signature checked; expiry is the
    /// caller's business, so it can answer "expired" apart from "invalid").
    pub(crate) fn verify(&self, token: &str) -> Option<Map<String, Value>> {
        let (input, signature) = token.rsplit_once('.')?;
        let (_, payload) = input.split_once('.')?;
        if self.signature(input) != signature {
            return None;
        }
        match serde_json::from_slice(&b64url_decode(payload)?).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }
}

/// `exp` of verified claims, 0 when absent.
pub(crate) fn exp(claims: &Map<String, Value>) -> u64 {
    claims.get("exp").and_then(Value::as_u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length() {
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len)
                .map(|i| u8::try_from((i * 37 + 11) % 256).unwrap_or(0))
                .collect();
            let text = b64url_encode(&bytes);
            assert!(!text.contains('='));
            assert_eq!(b64url_decode(&text).as_deref(), Some(bytes.as_slice()));
        }
        assert_eq!(b64url_encode(b"\xfb\xff"), "-_8");
        assert_eq!(b64url_decode("a"), None);
        assert_eq!(b64url_decode("ab+c"), None);
    }

    #[test]
    fn minted_tokens_verify_and_tampering_fails() {
        let signer = Signer::new(7);
        let mut claims = Map::new();
        claims.insert("AccountId".into(), json!("a1"));
        let token = signer.mint(claims, Duration::from_secs(4));
        let got = signer.verify(&token).expect("own token verifies");
        assert_eq!(got["AccountId"], "a1");
        assert_eq!(exp(&got), got["iat"].as_u64().unwrap_or(0) + 4);
        assert!(Signer::new(8).verify(&token).is_none(), "another key");
        let mut tampered = token;
        tampered.insert(tampered.len() - 3, 'x');
        assert!(signer.verify(&tampered).is_none());
    }
}
