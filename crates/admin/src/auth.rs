//! Bearer-token checks, in constant time.

use http::HeaderMap;

/// Whether a request may call `/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The token matches.
    Allowed,
    /// No token was presented (401).
    Missing,
    /// A token was presented and it is wrong, or no token is configured (403).
    Wrong,
}

/// Checks `Authorization: Bearer <token>`, or for endpoints that allow it, `query_token`.
pub fn check(expected: Option<&str>, headers: &HeaderMap, query_token: Option<&str>) -> Verdict {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .or(query_token);
    match (presented, expected) {
        (None, _) => Verdict::Missing,
        (Some(_), None) => Verdict::Wrong,
        (Some(got), Some(want)) if constant_time_eq(got.as_bytes(), want.as_bytes()) => {
            Verdict::Allowed
        }
        (Some(_), Some(_)) => Verdict::Wrong,
    }
}

/// Compares without an early exit, so the time taken does not reveal how many leading bytes
/// matched. (The length is not secret: tokens are of a fixed, documented form.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().expect("value"));
        }
        h
    }

    #[test]
    fn table() {
        let cases = [
            (Some("s3cret"), None, None, Verdict::Missing),
            (
                Some("s3cret"),
                Some("Bearer s3cret"),
                None,
                Verdict::Allowed,
            ),
            (
                Some("s3cret"),
                Some("bearer  s3cret "),
                None,
                Verdict::Allowed,
            ),
            (Some("s3cret"), Some("Bearer s3cres"), None, Verdict::Wrong),
            (Some("s3cret"), Some("Basic s3cret"), None, Verdict::Missing),
            (Some("s3cret"), None, Some("s3cret"), Verdict::Allowed),
            (Some("s3cret"), None, Some("nope"), Verdict::Wrong),
            (None, Some("Bearer anything"), None, Verdict::Wrong),
            (None, None, None, Verdict::Missing),
        ];
        for (expected, auth, query, verdict) in cases {
            assert_eq!(
                check(expected, &headers(auth), query),
                verdict,
                "{auth:?} {query:?}"
            );
        }
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
