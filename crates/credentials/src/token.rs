//! [`Token`], and when a fetched token expires and should be refreshed.
//!
//! A token's expiry comes from its JWT `exp` claim, read by decoding the payload (base64url +
//! JSON) **without verifying the signature**: the gateway does not hold the issuer's keys and
//! does not need to trust the claim for security, only for scheduling (the account itself
//! rejects a bad token). Without a JWT `exp`: the reply's `expires_in`, else `expires_on`, else
//! the policy's default lifetime.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use serde_json::Value;
use tokio::time::Instant;

/// One access token. `Debug` and `Display` print `***`: the value is a bearer secret and must
/// never reach a log line, an error or a metric. [`Token::expose`] and [`Token::bearer`] are the
/// only ways to read it, for the wire.
pub struct Token {
    value: Box<str>,
    bearer: HeaderValue,
    /// `accessToken=<value, percent-encoded>`, built once.
    query: Box<str>,
    /// Obtained because an account answered 401 to the token before it (see
    /// [`TokenProvider::rejected`](crate::TokenProvider::rejected)).
    after_rejection: bool,
    obtained_at: Instant,
    refresh_at: Instant,
    expires_at: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"***")
            .field(
                "expires_in",
                &self.expires_at.saturating_duration_since(Instant::now()),
            )
            .finish()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Token {
    /// Builds a token obtained now from `value` and the lifetime hints of its reply; `None` when
    /// the value cannot be sent in a header (control characters).
    pub(crate) fn new(value: String, hints: Hints, default_lifetime: Duration) -> Option<Token> {
        let mut bearer = HeaderValue::try_from(format!("Bearer {value}")).ok()?;
        bearer.set_sensitive(true);
        let (total, remaining) = lifetime(&value, hints, SystemTime::now(), default_lifetime);
        let now = Instant::now();
        let mut query = String::with_capacity(QUERY_PARAM.len() + 1 + value.len());
        query.push_str(QUERY_PARAM);
        query.push('=');
        crate::http::encode_into(&mut query, &value);
        Some(Token {
            value: value.into_boxed_str(),
            bearer,
            query: query.into_boxed_str(),
            after_rejection: false,
            obtained_at: now,
            refresh_at: now + refresh_after(total, remaining),
            expires_at: now + remaining.saturating_sub(expiry_margin(total)),
        })
    }

    /// The token itself. Call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// `Bearer <token>`, built once and marked sensitive (HTTP/2 never indexes it).
    pub fn bearer(&self) -> &HeaderValue {
        &self.bearer
    }

    /// `accessToken=<token>` (percent-encoded), built once: the query parameter Video Indexer
    /// reads.
    pub fn query_pair(&self) -> &str {
        &self.query
    }

    /// Whether this token was minted because an account rejected (401) the one before it: a
    /// 401 to this one says the credential itself is refused, not that a token went stale.
    pub fn after_rejection(&self) -> bool {
        self.after_rejection
    }

    pub(crate) fn set_after_rejection(&mut self, yes: bool) {
        self.after_rejection = yes;
    }

    /// When it was obtained.
    pub fn obtained_at(&self) -> Instant {
        self.obtained_at
    }

    /// When the provider refreshes it: half its lifetime after it was issued.
    pub fn refresh_at(&self) -> Instant {
        self.refresh_at
    }

    /// When it stops being sent: its expiry less a safety margin (a tenth of its lifetime, at
    /// most 30 s), so no request carries a token that expires on the way.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Whether it is still valid at `now`.
    pub fn is_valid_at(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// The query parameter Video Indexer takes the token in.
pub const QUERY_PARAM: &str = "accessToken";

/// Lifetime fields of a token endpoint's reply (`expires_in`: seconds from now; `expires_on`:
/// Unix seconds). Either may come as a number or a numeric string (IMDS sends strings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hints {
    pub(crate) expires_in: Option<u64>,
    pub(crate) expires_on: Option<u64>,
}

impl Hints {
    /// Reads `expires_in` and `expires_on` from a JSON reply.
    pub(crate) fn from_reply(reply: &Value) -> Hints {
        let number = |key: &str| match reply.get(key) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        Hints {
            expires_in: number("expires_in"),
            expires_on: number("expires_on"),
        }
    }
}

/// `(total, remaining)` lifetime of `value` seen at wall-clock `now`.
fn lifetime(value: &str, hints: Hints, now: SystemTime, default: Duration) -> (Duration, Duration) {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    if let Some(claims) = jwt_claims(value) {
        let num = |key: &str| claims.get(key).and_then(Value::as_f64);
        if let Some(exp) = num("exp") {
            let remaining = secs((exp - now_secs).max(0.0));
            let total = match num("iat").or_else(|| num("nbf")) {
                Some(iat) if iat <= exp => secs(exp - iat).max(remaining),
                _ => remaining,
            };
            return (total, remaining);
        }
    }
    if let Some(n) = hints.expires_in {
        let d = Duration::from_secs(n);
        return (d, d);
    }
    if let Some(on) = hints.expires_on {
        #[allow(clippy::cast_precision_loss)] // Unix seconds fit an f64 exactly for ages
        let d = secs((on as f64 - now_secs).max(0.0));
        return (d, d);
    }
    (default, default)
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

/// How long before its `exp` a token stops being sent: a tenth of its lifetime, at most 30 s.
/// A request (or probe) sent just before `exp` would reach the account after it, and clocks
/// differ: the account answers 401 to a token that was valid when it left.
pub(crate) fn expiry_margin(total: Duration) -> Duration {
    (total / 10).min(Duration::from_secs(30))
}

/// How long after it is obtained a token with `total` lifetime, `remaining` of it left, is
/// refreshed: when half its lifetime has passed, but never sooner than a quarter of what
/// remains (so a skewed clock or an issuer that hands out half-spent tokens cannot make the
/// provider refresh in a tight loop).
pub(crate) fn refresh_after(total: Duration, remaining: Duration) -> Duration {
    remaining.saturating_sub(total / 2).max(remaining / 4)
}

/// The claims of a JWT (`header.payload.signature`), decoded but **not verified**; `None` for
/// anything that is not a JWT with a JSON object payload.
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    match serde_json::from_slice(&b64url_decode(payload)?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// base64url (RFC 4648 §5) as JWTs use it: no padding (trailing `=` tolerated).
fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff).to_le_bytes()[0]);
        }
    }
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        // base64url of the payload, built by hand for the test's small alphabet use.
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in payload.as_bytes().chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        format!("eyJhbGciOiJub25lIn0.{out}.sig")
    }

    #[test]
    fn jwt_exp_and_iat_give_total_and_remaining() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = jwt(r#"{"iat":999000,"exp":1002600,"AccountId":"a"}"#);
        let (total, remaining) = lifetime(&token, Hints::default(), now, Duration::from_secs(1));
        assert_eq!(total, Duration::from_secs(3600));
        assert_eq!(remaining, Duration::from_secs(2600));
        // Issued 1000 s ago, lifetime 3600: refresh 800 s from now (1800 s after iat).
        assert_eq!(refresh_after(total, remaining), Duration::from_secs(800));
        assert_eq!(
            jwt_claims(&token).and_then(|c| c["AccountId"].as_str().map(str::to_owned)),
            Some("a".into())
        );
    }

    #[test]
    fn without_jwt_exp_the_reply_hints_then_the_default() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let in_only = Hints {
            expires_in: Some(60),
            expires_on: Some(5),
        };
        assert_eq!(
            lifetime("opaque", in_only, now, Duration::ZERO),
            (Duration::from_secs(60), Duration::from_secs(60))
        );
        let on_only = Hints {
            expires_in: None,
            expires_on: Some(1_000_090),
        };
        assert_eq!(
            lifetime("opaque", on_only, now, Duration::ZERO).1,
            Duration::from_secs(90)
        );
        let no_exp = jwt(r#"{"iat":1}"#);
        let d = Duration::from_secs(1800);
        assert_eq!(lifetime(&no_exp, Hints::default(), now, d), (d, d));
        let reply = serde_json::json!({"expires_in": "3599", "expires_on": 17});
        assert_eq!(
            Hints::from_reply(&reply),
            Hints {
                expires_in: Some(3599),
                expires_on: Some(17)
            }
        );
    }

    #[test]
    fn a_token_stops_being_sent_a_tenth_of_its_lifetime_before_exp_at_most_30s() {
        assert_eq!(
            expiry_margin(Duration::from_secs(4)),
            Duration::from_millis(400)
        );
        assert_eq!(
            expiry_margin(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        assert_eq!(
            expiry_margin(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
        let token = Token::new(
            "opaque".into(),
            Hints {
                expires_in: Some(100),
                expires_on: None,
            },
            Duration::from_secs(1800),
        )
        .expect("token");
        assert_eq!(
            token.expires_at() - token.obtained_at(),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn refresh_is_never_sooner_than_a_quarter_of_what_remains() {
        let d = |s| Duration::from_secs(s);
        assert_eq!(refresh_after(d(3600), d(3600)), d(1800));
        assert_eq!(refresh_after(d(3600), d(1000)), d(250));
        assert_eq!(refresh_after(d(0), d(0)), d(0));
    }

    #[test]
    fn malformed_jwts_are_not_claims() {
        for bad in ["", "a.b", "a.b.c.d", "a.!!.c", "a.bnVsbA.c"] {
            assert!(jwt_claims(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn token_debug_and_display_hide_the_value() {
        let token = Token::new(
            "very-secret-token".into(),
            Hints::default(),
            Duration::from_secs(60),
        )
        .expect("a header-safe value");
        assert_eq!(token.to_string(), "***");
        assert!(!format!("{token:?}").contains("very-secret"));
        assert!(token.bearer().is_sensitive());
        assert_eq!(token.expose(), "very-secret-token");
        assert!(
            Token::new(
                "bad\nvalue".into(),
                Hints::default(),
                Duration::from_secs(1)
            )
            .is_none()
        );
    }
}
