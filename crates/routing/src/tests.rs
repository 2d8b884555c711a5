//! Table-driven tests for compile and resolve_tenant.

use http::{HeaderMap, HeaderValue, Uri};
use proptest::prelude::*;

use super::*;

const CONFIG: &str = r#"
[routing]
tenant_header = "x-tenant-id"

[[region]]
name = "eastus"
pair = "westus"

[[region]]
name = "westus"
pair = "eastus"

[[account]]
name = "east"
region = "eastus"
url = "http://127.0.0.1:9001"
path_prefix = "/eastus/Accounts/1111"
headers = { "x-key" = "${ROUTING_TEST_KEY}" }

[[account]]
name = "west"
region = "westus"
url = "http://127.0.0.1:9002"

[[tenant]]
name = "contoso"
hosts = ["contoso.example.com", "*.contoso.example.com"]
primary = "east"
secondary = "west"

[[tenant]]
name = "deep"
hosts = ["*.eu.contoso.example.com"]
primary = "west"

[[tenant]]
name = "fabrikam"
hosts = ["fabrikam.example.com"]
path_prefix = "/fabrikam"
primary = "east"
secondary = "west"

[[tenant]]
name = "nested"
path_prefix = "/fabrikam/nested"
primary = "west"

[[tenant]]
name = "example"
hosts = ["*.example.com"]
primary = "west"
"#;

fn table() -> RouteTable {
    let env = |name: &str| (name == "ROUTING_TEST_KEY").then(|| "s3cret".to_owned());
    let loaded = pairgate_config::load(CONFIG, &env).expect("test config is valid");
    RouteTable::compile(&loaded.config, 1, None).expect("compiles")
}

/// One routing case: request host/path/header, expected tenant name (or None) and strip.
fn check(
    table: &RouteTable,
    host: Option<&str>,
    path: &str,
    tenant_header: Option<&str>,
    expect: Option<(&str, usize)>,
) {
    let uri: Uri = path.parse().expect("test path is a URI");
    let mut headers = HeaderMap::new();
    if let Some(h) = host {
        headers.insert(
            http::header::HOST,
            HeaderValue::from_str(h).expect("host value"),
        );
    }
    if let Some(t) = tenant_header {
        headers.insert(
            "x-tenant-id",
            HeaderValue::from_str(t).expect("tenant value"),
        );
    }
    let got = table
        .resolve_tenant(&uri, &headers)
        .ok()
        .map(|r| (&*table.tenant(r.tenant).name, r.strip));
    assert_eq!(
        got, expect,
        "host={host:?} path={path} header={tenant_header:?}"
    );
}

#[test]
fn resolution_order_and_matching() {
    let t = table();
    /// (Host, path, tenant header, expected (tenant, stripped bytes))
    type Case<'a> = (
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
        Option<(&'a str, usize)>,
    );
    let cases: &[Case<'_>] = &[
        // exact host, case-insensitive, port and trailing dot ignored
        (
            Some("contoso.example.com"),
            "/x",
            None,
            Some(("contoso", 0)),
        ),
        (
            Some("Contoso.Example.COM:8080"),
            "/x",
            None,
            Some(("contoso", 0)),
        ),
        (
            Some("contoso.example.com."),
            "/x",
            None,
            Some(("contoso", 0)),
        ),
        // wildcard: deeper names, most specific wins, never the bare domain of the wildcard
        (
            Some("a.contoso.example.com"),
            "/",
            None,
            Some(("contoso", 0)),
        ),
        (
            Some("a.b.contoso.example.com"),
            "/",
            None,
            Some(("contoso", 0)),
        ),
        (
            Some("x.eu.contoso.example.com"),
            "/",
            None,
            Some(("deep", 0)),
        ),
        (
            Some("eu.contoso.example.com"),
            "/",
            None,
            Some(("contoso", 0)),
        ),
        (Some("example.com"), "/", None, None),
        (Some("other.example.com"), "/", None, Some(("example", 0))),
        // exact beats wildcard
        (
            Some("fabrikam.example.com"),
            "/",
            None,
            Some(("fabrikam", 0)),
        ),
        // path prefix, segment aligned, longest wins, only when the host did not match
        (
            Some("gateway.local"),
            "/fabrikam/videos",
            None,
            Some(("fabrikam", 9)),
        ),
        (
            Some("gateway.local"),
            "/fabrikam",
            None,
            Some(("fabrikam", 9)),
        ),
        (
            Some("gateway.local"),
            "/fabrikam?x=1",
            None,
            Some(("fabrikam", 9)),
        ),
        (Some("gateway.local"), "/fabrikamX/videos", None, None),
        (
            Some("gateway.local"),
            "/fabrikam/nested/a",
            None,
            Some(("nested", 16)),
        ),
        (
            Some("gateway.local"),
            "/fabrikam/nestedX",
            None,
            Some(("fabrikam", 9)),
        ),
        (None, "/fabrikam/a", None, Some(("fabrikam", 9))),
        (
            Some("contoso.example.com"),
            "/fabrikam/a",
            None,
            Some(("contoso", 0)),
        ),
        // the tenant header wins over everything, and an unknown name is a miss
        (
            Some("contoso.example.com"),
            "/",
            Some("fabrikam"),
            Some(("fabrikam", 0)),
        ),
        (Some("contoso.example.com"), "/", Some("nobody"), None),
        // nothing matches
        (Some("unknown.test"), "/", None, None),
        (Some(""), "/", None, None),
        (Some("[::1]:8080"), "/", None, None),
    ];
    for (host, path, header, expect) in cases {
        check(&t, *host, path, *header, *expect);
    }
}

#[test]
fn unknown_tenant_header_is_its_own_miss() {
    let t = table();
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant-id", HeaderValue::from_static("nobody"));
    let uri: Uri = "/".parse().expect("uri");
    assert_eq!(
        t.resolve_tenant(&uri, &headers),
        Err(Miss::UnknownTenantHeader)
    );
    assert_eq!(
        t.resolve_tenant(&uri, &HeaderMap::new()),
        Err(Miss::NoMatch)
    );
}

#[test]
fn http2_authority_is_used_without_host() {
    let t = table();
    let uri: Uri = "http://fabrikam.example.com/a".parse().expect("uri");
    let r = t.resolve_tenant(&uri, &HeaderMap::new()).expect("resolves");
    assert_eq!(&*t.tenant(r.tenant).name, "fabrikam");
}

#[test]
fn compiled_accounts_carry_rewrite_data() {
    let t = table();
    let east = &t.accounts()[0];
    assert_eq!(east.authority.as_str(), "127.0.0.1:9001");
    assert_eq!(east.host_header, "127.0.0.1:9001");
    assert_eq!(&*east.path_prefix, "/eastus/Accounts/1111");
    assert_eq!(east.headers.len(), 1);
    assert!(east.headers[0].1.is_sensitive());
    assert!(
        !format!("{east:?}").contains("s3cret"),
        "secret leaked into Debug"
    );
    let contoso = t.tenant_by_name("contoso").expect("tenant");
    assert_eq!(contoso.account_for(Side::Secondary), AccountId(1));
    let deep = t.tenant_by_name("deep").expect("tenant");
    assert_eq!(
        deep.account_for(Side::Secondary),
        deep.primary,
        "no secondary: stays on primary"
    );
}

#[test]
fn slots_survive_recompile_by_name() {
    let t1 = table();
    let contoso = t1.tenant_by_name("contoso").expect("tenant");
    contoso.slot.store(Active {
        side: Side::Secondary,
        reject: false,
        generation: 7,
    });
    let env = |_: &str| Some("k".to_owned());
    let loaded = pairgate_config::load(CONFIG, &env).expect("valid");
    let t2 = RouteTable::compile(&loaded.config, 2, Some(&t1)).expect("compiles");
    let again = t2.tenant_by_name("contoso").expect("tenant");
    assert!(Arc::ptr_eq(&contoso.slot, &again.slot));
    assert_eq!(again.slot.load().side, Side::Secondary);
    assert_eq!(t2.generation(), 2);
}

#[test]
fn slot_packs_side_reject_and_generation() {
    let slot = ActiveSlot::new();
    assert_eq!(
        slot.load(),
        Active {
            side: Side::Primary,
            reject: false,
            generation: 0
        }
    );
    for active in [
        Active {
            side: Side::Secondary,
            reject: false,
            generation: 1,
        },
        Active {
            side: Side::Primary,
            reject: true,
            generation: 2,
        },
        Active {
            side: Side::Secondary,
            reject: true,
            generation: (1 << 61) - 1,
        },
    ] {
        slot.store(active);
        assert_eq!(slot.load(), active);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Resolution never panics, and an exact host always beats any wildcard.
    #[test]
    fn resolve_never_panics_and_exact_beats_wildcard(host in "[a-zA-Z0-9.:\\[\\]-]{0,80}",
                                                     path in "/[a-z/]{0,40}") {
        let t = table();
        let _ = t.resolve_host(&host);
        let _ = t.resolve_path(&path);
        prop_assert_eq!(t.resolve_host("fabrikam.example.com"), t.tenant_id("fabrikam"));
    }
}
