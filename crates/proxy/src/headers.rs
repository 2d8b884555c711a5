//! Request and response header rewriting (RFC 9110 section 7.6.1 hop-by-hop rules). Public for
//! the micro benchmarks.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use pairgate_routing::Account;

/// Fixed hop-by-hop headers, removed in both directions.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");
static VIA_11: HeaderValue = HeaderValue::from_static("1.1 pairgate");
static VIA_2: HeaderValue = HeaderValue::from_static("2 pairgate");
static UPGRADE_VALUE: HeaderValue = HeaderValue::from_static("upgrade");

/// Removes hop-by-hop headers and every header the `Connection` header names. When `upgrade` is
/// set (an HTTP/1.1 upgrade the proxy passes through), `Upgrade` is kept and `Connection:
/// upgrade` restored, since the upstream must see them to switch protocols.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        // Collect first: the names borrow from `headers`.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if upgrade && name == header::UPGRADE {
                continue;
            }
            headers.remove(&name);
        }
    }
    for name in &HOP_BY_HOP {
        if upgrade && *name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    if upgrade {
        headers.insert(header::CONNECTION, UPGRADE_VALUE.clone());
    }
}

/// Whether an HTTP/1.1 request asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Everything the upstream must see that the client did not send: forwarding headers, the
/// account's `Host` and injected headers. Call after [`strip_hop_by_hop`].
pub fn rewrite_request(
    headers: &mut HeaderMap,
    account: &Account,
    client_ip: &HeaderValue,
    client_host: Option<HeaderValue>,
    http2_client: bool,
) {
    append_forwarded_for(headers, client_ip);
    headers.insert(&X_FORWARDED_PROTO, HTTP.clone());
    match client_host {
        Some(host) => {
            headers.insert(&X_FORWARDED_HOST, host);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    headers.append(
        header::VIA,
        if http2_client {
            VIA_2.clone()
        } else {
            VIA_11.clone()
        },
    );
    headers.insert(header::HOST, account.host_header.clone());
    for (name, value) in &account.headers {
        // `insert` replaces every client-sent value of the same name.
        headers.insert(name, value.clone());
    }
}

/// The client came over TLS: `X-Forwarded-Proto: https`.
pub fn mark_https(headers: &mut HeaderMap) {
    headers.insert(&X_FORWARDED_PROTO, HTTPS.clone());
}

/// The client's address as a header value, built once per connection (see
/// [`rewrite_request`]).
pub fn client_ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// `X-Forwarded-For: <existing>, <client>`: earlier hops are kept, as nginx's
/// `$proxy_add_x_forwarded_for` does; the upstream trusts only the last entry. Without earlier
/// hops (the common case) the connection's prebuilt value is shared, not formatted again.
fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    if !headers.contains_key(&X_FORWARDED_FOR) {
        headers.insert(&X_FORWARDED_FOR, client_ip.clone());
        return;
    }
    let mut joined = Vec::new();
    for v in headers.get_all(&X_FORWARDED_FOR) {
        if v.to_str().is_ok() {
            joined.extend_from_slice(v.as_bytes());
            joined.extend_from_slice(b", ");
        }
    }
    joined.extend_from_slice(client_ip.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(&X_FORWARDED_FOR, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            (
                &[
                    ("connection", "keep-alive, x-secret-hop"),
                    ("keep-alive", "timeout=5"),
                    ("x-secret-hop", "1"),
                    ("proxy-connection", "keep-alive"),
                    ("te", "gzip"),
                    ("trailer", "x"),
                    ("transfer-encoding", "chunked"),
                    ("upgrade", "websocket"),
                    ("x-keep", "1"),
                ],
                false,
                &["x-keep"],
            ),
            (
                &[
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                    ("x-keep", "1"),
                ],
                true,
                &["connection", "upgrade", "x-keep"],
            ),
            (&[("accept", "*/*")], false, &["accept"]),
        ];
        for (input, upgrade, expect) in cases {
            let mut h = map(input);
            strip_hop_by_hop(&mut h, *upgrade);
            assert_eq!(names(&h), *expect, "{input:?}");
        }
    }

    #[test]
    fn detects_upgrades() {
        assert!(is_upgrade_request(&map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_upgrade_request(&map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade_request(&map(&[("connection", "upgrade")])));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever the client sends: no hop-by-hop header and nothing named in `Connection`
        /// survives, the injected header appears once with the account's value, `Host` is the
        /// account's, and end-to-end headers pass untouched.
        #[test]
        fn rewrite_invariants(
            pairs in proptest::collection::vec(
                (proptest::sample::select(vec![
                    "connection", "keep-alive", "te", "upgrade", "x-key", "x-keep", "x-named",
                    "host", "x-forwarded-for", "transfer-encoding", "trailer", "proxy-connection",
                ]), "[ -~]{0,20}"),
                0..12,
            ),
            named in proptest::collection::vec(proptest::sample::select(vec!["x-named", "x-keep", "bogus name"]), 0..3),
        ) {
            let mut h = HeaderMap::new();
            for (k, v) in &pairs {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.append(HeaderName::from_static(k), v);
                }
            }
            if !named.is_empty() {
                h.append(header::CONNECTION, HeaderValue::from_str(&named.join(", ")).expect("token list"));
            }
            let keep_before: Vec<HeaderValue> = if named.contains(&"x-keep") {
                Vec::new()
            } else {
                h.get_all("x-keep").iter().cloned().collect()
            };
            let table = table();
            strip_hop_by_hop(&mut h, false);
            rewrite_request(&mut h, &table.accounts()[0], &HeaderValue::from_static("127.0.0.1"), None, false);
            for gone in ["connection", "keep-alive", "te", "upgrade", "transfer-encoding", "trailer", "proxy-connection"] {
                proptest::prop_assert!(!h.contains_key(gone), "{gone} survived");
            }
            for n in &named {
                if *n != "bogus name" {
                    proptest::prop_assert!(!h.contains_key(*n), "{n} was named in Connection");
                }
            }
            let injected: Vec<&HeaderValue> = h.get_all("x-key").iter().collect();
            proptest::prop_assert_eq!(injected, vec!["injected"]);
            proptest::prop_assert_eq!(h.get_all(header::HOST).iter().count(), 1);
            proptest::prop_assert_eq!(&h[header::HOST], "127.0.0.1:9001");
            proptest::prop_assert_eq!(h.get_all("x-keep").iter().cloned().collect::<Vec<_>>(), keep_before);
        }
    }

    /// A table with one account that injects one header.
    fn table() -> pairgate_routing::RouteTable {
        let toml = "[[region]]\nname = \"r\"\n[[account]]\nname = \"a\"\nregion = \"r\"\nurl = \"http://127.0.0.1:9001\"\nheaders = { \"x-key\" = \"injected\" }\n[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"a\"\n";
        let loaded = pairgate_config::load(toml, &|_| None).expect("valid");
        pairgate_routing::RouteTable::compile(&loaded.config, 1, None).expect("compiles")
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        let ip = client_ip_value("127.0.0.1".parse().expect("ip"));
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.1");
        let mut fresh = map(&[]);
        append_forwarded_for(&mut fresh, &client_ip_value("::1".parse().expect("ip")));
        assert_eq!(fresh["x-forwarded-for"], "::1");
    }
}
