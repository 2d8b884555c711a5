//! The upstream request target: the account's scheme and authority (prebuilt in its
//! `Account`) with the client's path, minus the tenant's prefix, behind the account's prefix.

use http::Uri;
use http::uri::{Parts, PathAndQuery};
use pairgate_routing::Account;

/// `scheme://authority` of the account, its path prefix, the client path minus the tenant's
/// first `strip` bytes, and the query; `None` when the result is not a valid request target.
///
/// Most routes strip nothing and add no prefix: then the client's path and query are reused
/// as they are (a reference count, not a copy and a second validation). Otherwise one `String`
/// is built and validated. Bench: `upstream_uri` in `benches/benches/micro.rs`, against the
/// rebuild every request used to do.
pub fn upstream_uri(account: &Account, uri: &Uri, strip: usize) -> Option<Uri> {
    upstream_uri_with_query(account, uri, strip, None)
}

/// [`upstream_uri`] with the query replaced by `query` when it is `Some` (a minted credential's
/// rewrite: the client's `accessToken` out, the account's in), which always rebuilds the path.
pub fn upstream_uri_with_query(
    account: &Account,
    uri: &Uri,
    strip: usize,
    query: Option<Option<&str>>,
) -> Option<Uri> {
    let path_and_query = match (uri.path_and_query(), query) {
        (Some(pq), None)
            if strip == 0 && account.path_prefix.is_empty() && pq.path().starts_with('/') =>
        {
            pq.clone()
        }
        (_, query) => rebuilt_path(account, uri, strip, query.unwrap_or_else(|| uri.query()))?,
    };
    let mut parts = Parts::default();
    parts.scheme = Some(account.scheme.clone());
    parts.authority = Some(account.authority.clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

/// The account's prefix, the rest of the client path (`/` when nothing is left), the query.
fn rebuilt_path(
    account: &Account,
    uri: &Uri,
    strip: usize,
    query: Option<&str>,
) -> Option<PathAndQuery> {
    let rest = uri.path().get(strip..).unwrap_or("");
    let rest = if rest.is_empty() { "/" } else { rest };
    let mut path = String::with_capacity(
        account.path_prefix.len() + rest.len() + query.map_or(0, |q| q.len() + 1),
    );
    path.push_str(&account.path_prefix);
    path.push_str(rest);
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    PathAndQuery::try_from(path).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderValue;
    use http::uri::{Authority, Scheme};
    use pairgate_routing::RegionId;

    use super::*;

    fn account(prefix: &str) -> Account {
        Account {
            name: "a".into(),
            key: "a|http://east.internal:8080".into(),
            region: RegionId::from_index(0),
            scheme: Scheme::HTTP,
            authority: Authority::from_static("east.internal:8080"),
            host_header: HeaderValue::from_static("east.internal:8080"),
            path_prefix: prefix.into(),
            headers: Vec::new(),
            http2: false,
            health: Arc::default(),
            counters: Arc::default(),
        }
    }

    fn check(prefix: &str, client: &str, strip: usize, want: Option<&str>) {
        let uri: Uri = client.parse().expect("test uri");
        let got = upstream_uri(&account(prefix), &uri, strip).map(|u| u.to_string());
        assert_eq!(
            got.as_deref(),
            want,
            "prefix {prefix:?}, {client:?}, strip {strip}"
        );
        // The shortcut and the rebuild agree wherever the shortcut applies.
        if let Some(want) = want {
            let rebuilt =
                rebuilt_path(&account(prefix), &uri, strip, uri.query()).expect("rebuilt");
            assert!(want.ends_with(rebuilt.as_str()), "{want} vs {rebuilt}");
        }
    }

    #[test]
    fn targets() {
        let base = "http://east.internal:8080";
        let cases: &[(&str, &str, usize, String)] = &[
            ("", "/v1/items", 0, format!("{base}/v1/items")),
            (
                "",
                "/v1/items?a=1&b=%20",
                0,
                format!("{base}/v1/items?a=1&b=%20"),
            ),
            ("", "/v1/items?", 0, format!("{base}/v1/items?")),
            ("", "/", 0, format!("{base}/")),
            ("", "http://client.example/x?y", 0, format!("{base}/x?y")),
            ("/api", "/v1/items?q", 0, format!("{base}/api/v1/items?q")),
            ("", "/t7/v1/items?q", 3, format!("{base}/v1/items?q")),
            ("", "/t7?q", 3, format!("{base}/?q")),
            ("/api", "/t7", 3, format!("{base}/api/")),
            ("", "/t7", 99, format!("{base}/")),
        ];
        for (prefix, client, strip, want) in cases {
            check(prefix, client, *strip, Some(want));
        }
    }
}
