//! API keys: only their SHA-256 digests are configured; a presented key is hashed and compared
//! in constant time with each of its tenant's digests.

use pairgate_config::ApiKeyDigest;
use subtle::ConstantTimeEq;

/// The digest of a presented key.
pub fn digest(key: &[u8]) -> ApiKeyDigest {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    ApiKeyDigest(out)
}

/// `sha256:<hex>` of `key`: what `pairgate hash-key` prints and `api_keys` holds.
pub fn render_digest(key: &[u8]) -> String {
    let d = digest(key);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d.0 {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `presented` is one of `accepted`. Every digest is compared, each in constant time,
/// so the time taken says nothing about which one matched or how much of it.
pub fn matches(accepted: &[ApiKeyDigest], presented: &ApiKeyDigest) -> bool {
    let mut found = subtle::Choice::from(0);
    for candidate in accepted {
        found |= candidate.0.ct_eq(&presented.0);
    }
    found.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_the_config_form() {
        let rendered = render_digest(b"correct horse battery staple");
        // FIPS 180-4 SHA-256 of the ASCII bytes, computed independently (sha256sum).
        assert_eq!(
            rendered,
            "sha256:c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a"
        );
        let parsed = ApiKeyDigest::parse(&rendered).expect("valid form");
        assert!(matches(&[parsed], &digest(b"correct horse battery staple")));
        assert!(!matches(&[parsed], &digest(b"correct horse battery stapl")));
        assert!(!matches(&[], &digest(b"x")));
    }
}
