//! Putting an account's token on a request: the client's own credential removed, the
//! account's added where the account expects it (`send_as`).

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, header};
use pairgate_config::SendAs;

use crate::provider::TokenProvider;
use crate::token::{QUERY_PARAM, Token};

/// The credential the gateway sends to one account: its provider and where the token goes.
#[derive(Debug, Clone)]
pub struct AccountCredential {
    /// The account's token provider (shared by accounts with the same credential).
    pub provider: TokenProvider,
    /// Query parameter `accessToken`, or `Authorization: Bearer`.
    pub send_as: SendAs,
}

/// Each account's credential by account key (accounts without a minted credential are absent).
pub type CredentialMap = HashMap<Arc<str>, AccountCredential>;

/// `query` without any `accessToken` parameter the client sent (compared ASCII
/// case-insensitively, raw or percent-encoded name), and with `token`'s when `send_as` is
/// [`SendAs::Query`]. `None` when nothing is left.
pub fn query_with_token(query: Option<&str>, token: &Token, send_as: SendAs) -> Option<String> {
    let mut out = String::with_capacity(query.map_or(0, str::len) + token.query_pair().len() + 1);
    for pair in query.unwrap_or("").split('&') {
        if pair.is_empty() || is_token_param(pair) {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(pair);
    }
    if send_as == SendAs::Query {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(token.query_pair());
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a `name=value` query pair is the `accessToken` parameter.
fn is_token_param(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(n, _)| n);
    name.eq_ignore_ascii_case(QUERY_PARAM) || decoded_eq(name, QUERY_PARAM)
}

/// `name` percent-decoded equals `want` (ASCII case-insensitively); a client must not slip its
/// own token past the strip as `access%54oken`.
fn decoded_eq(name: &str, want: &str) -> bool {
    if !name.contains('%') {
        return false;
    }
    let bytes = name.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = name.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            decoded.push(b);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    decoded.eq_ignore_ascii_case(want.as_bytes())
}

/// Removes the client's `Authorization` header(s) and, with [`SendAs::Header`], sets the
/// account's `Authorization: Bearer <token>` (marked sensitive).
pub fn set_authorization(headers: &mut HeaderMap, token: &Token, send_as: SendAs) {
    headers.remove(header::AUTHORIZATION);
    if send_as == SendAs::Header {
        headers.insert(header::AUTHORIZATION, token.bearer().clone());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::token::Hints;

    fn token(value: &str) -> Token {
        Token::new(value.to_owned(), Hints::default(), Duration::from_secs(60)).expect("valid")
    }

    #[test]
    fn the_clients_token_is_replaced_in_the_query() {
        let t = token("abc.def-_~+/=");
        assert_eq!(
            query_with_token(Some("a=1&accessToken=stale&b=2"), &t, SendAs::Query).as_deref(),
            Some("a=1&b=2&accessToken=abc.def-_~%2B%2F%3D")
        );
        // Case and percent-encoding of the name do not hide the client's token.
        assert_eq!(
            query_with_token(
                Some("ACCESSTOKEN=x&access%54oken=y&accesstoken&pageSize=1"),
                &t,
                SendAs::Query
            )
            .as_deref(),
            Some("pageSize=1&accessToken=abc.def-_~%2B%2F%3D")
        );
        assert_eq!(
            query_with_token(None, &t, SendAs::Query).as_deref(),
            Some("accessToken=abc.def-_~%2B%2F%3D")
        );
        // Sent as a header: the client's query token is still removed, nothing added.
        assert_eq!(
            query_with_token(Some("accessToken=stale"), &t, SendAs::Header),
            None
        );
        assert_eq!(
            query_with_token(Some("x=1&&accessTokenX=2"), &t, SendAs::Header).as_deref(),
            Some("x=1&accessTokenX=2")
        );
    }

    #[test]
    fn the_clients_authorization_is_replaced() {
        let t = token("tok");
        let mut headers = HeaderMap::new();
        headers.append(header::AUTHORIZATION, "Bearer stale".parse().expect("v"));
        headers.append(header::AUTHORIZATION, "Basic x".parse().expect("v"));
        set_authorization(&mut headers, &t, SendAs::Header);
        let values: Vec<_> = headers.get_all(header::AUTHORIZATION).iter().collect();
        assert_eq!(values.len(), 1);
        assert_eq!(values[0], "Bearer tok");
        assert!(values[0].is_sensitive());
        set_authorization(&mut headers, &t, SendAs::Query);
        assert!(!headers.contains_key(header::AUTHORIZATION));
    }
}
