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

/// The index of `presented` in `accepted`. Every digest is compared, each in constant time,
/// and the index is selected without a branch on the comparison, so the time taken says
/// nothing about which one matched or how much of it.
pub fn position(accepted: &[ApiKeyDigest], presented: &ApiKeyDigest) -> Option<usize> {
    use subtle::ConditionallySelectable;
    let mut found = subtle::Choice::from(0);
    let mut index = 0u64;
    for (i, candidate) in accepted.iter().enumerate() {
        let eq = candidate.0.ct_eq(&presented.0);
        index = u64::conditional_select(&index, &(i as u64), eq);
        found |= eq;
    }
    bool::from(found).then(|| usize::try_from(index).unwrap_or(usize::MAX))
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
        assert_eq!(
            position(&[parsed], &digest(b"correct horse battery staple")),
            Some(0)
        );
        assert_eq!(
            position(&[parsed], &digest(b"correct horse battery stapl")),
            None
        );
        assert_eq!(position(&[], &digest(b"x")), None);
        let other = digest(b"another key");
        assert_eq!(
            position(&[other, parsed], &digest(b"correct horse battery staple")),
            Some(1)
        );
        assert_eq!(position(&[parsed, other], &other), Some(1));
    }
}
