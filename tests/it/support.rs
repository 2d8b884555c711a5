//! Shared fixtures for the integration tests.

use std::path::PathBuf;

use pairgate_test_support::{MockConfig, MockUpstream};

/// Two paired regions, an account in each, and tenants reached by every routing method:
/// `contoso` by host and wildcard (east primary, with path prefix and injected key),
/// `fabrikam` by path prefix, `tailspin` by the tenant header (west primary).
pub fn config(east: &MockUpstream, west: &MockUpstream, extra: &str) -> String {
    format!(
        r#"
{extra}
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
url = "{east}"
path_prefix = "/eastus/Accounts/1111"
headers = {{ "ocp-apim-subscription-key" = "${{IT_EAST_KEY}}" }}

[[account]]
name = "west"
region = "westus"
url = "{west}"

[[tenant]]
name = "contoso"
hosts = ["contoso.example.com", "*.contoso.example.com"]
primary = "east"
secondary = "west"

[[tenant]]
name = "fabrikam"
path_prefix = "/fabrikam"
primary = "east"
secondary = "west"

[[tenant]]
name = "tailspin"
hosts = ["tailspin.example.com"]
primary = "west"
secondary = "east"
"#,
        east = east.url(),
        west = west.url(),
    )
}

/// The secret the tests put in `IT_EAST_KEY`.
pub const EAST_KEY: &str = "it-secret-9f3c2a7e";

/// An east and a west mock account.
pub async fn regions() -> (MockUpstream, MockUpstream) {
    let east = MockUpstream::start(MockConfig::new("east", "eastus"))
        .await
        .expect("east mock starts");
    let west = MockUpstream::start(MockConfig::new("west", "westus"))
        .await
        .expect("west mock starts");
    (east, west)
}

/// A fresh path under the system temp dir for this test process.
pub fn temp_path(name: &str) -> PathBuf {
    pairgate_test_support::temp_file(name)
}

/// A config with paired regions `eastus`/`westus`, the given accounts (name, region, mock) and
/// tenants (name, primary, secondary); each tenant is reached by `Host: <name>.example.com`.
pub fn pair_config(
    accounts: &[(&str, &str, &MockUpstream)],
    tenants: &[(&str, &str, Option<&str>)],
    extra: &str,
) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "{extra}\n[[region]]\nname = \"eastus\"\npair = \"westus\"\n[[region]]\nname = \"westus\"\npair = \"eastus\"\n"
    );
    for (name, region, mock) in accounts {
        let _ = write!(
            s,
            "[[account]]\nname = \"{name}\"\nregion = \"{region}\"\nurl = \"{}\"\n",
            mock.url()
        );
    }
    for (name, primary, secondary) in tenants {
        let _ = write!(
            s,
            "[[tenant]]\nname = \"{name}\"\nhosts = [\"{name}.example.com\"]\nprimary = \"{primary}\"\n"
        );
        if let Some(sec) = secondary {
            let _ = writeln!(s, "secondary = \"{sec}\"");
        }
    }
    s
}

/// Polls `check` every 20 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually<F, Fut>(within: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A mock account named `name` in `region`.
pub async fn mock(name: &str, region: &str) -> MockUpstream {
    MockUpstream::start(MockConfig::new(name, region))
        .await
        .expect("mock starts")
}

/// Waits (bounded) until the gateway reports ready (`/readyz` 200): config loaded, first probe
/// round done.
pub async fn wait_ready(gw: &pairgate_test_support::TestGateway) {
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            gw.admin("GET", "/readyz", None)
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await,
        "never ready"
    );
}
