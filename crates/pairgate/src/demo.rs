//! `pairgate demo`: mock regions and a gateway in one process, with no files at all.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use pairgate_mock::{MockConfig, MockUpstream};

use crate::Gateway;

/// The demo's config. `{east-1}`-style placeholders become the mock accounts' URLs.
const DEMO_CONFIG: &str = r#"
[listen]
http = "{listen}"

[routing]
tenant_header = "x-tenant-id"

[[region]]
name = "eastus"
pair = "westus"

[[region]]
name = "westus"
pair = "eastus"

[[account]]
name = "contoso-east"
region = "eastus"
url = "{contoso-east}"
path_prefix = "/eastus/Accounts/1111"
headers = { "x-api-key" = "demo-key-contoso-east" }

[[account]]
name = "contoso-west"
region = "westus"
url = "{contoso-west}"
path_prefix = "/westus/Accounts/2222"
headers = { "x-api-key" = "demo-key-contoso-west" }

[[account]]
name = "shared-east"
region = "eastus"
url = "{shared-east}"

[[account]]
name = "shared-west"
region = "westus"
url = "{shared-west}"

[[tenant]]
name = "contoso"
hosts = ["contoso.localhost", "*.contoso.localhost"]
primary = "contoso-east"
secondary = "contoso-west"

[[tenant]]
name = "fabrikam"
path_prefix = "/fabrikam"
primary = "shared-west"
secondary = "shared-east"

[[tenant]]
name = "tailspin"
hosts = ["tailspin.localhost"]
primary = "shared-east"
secondary = "shared-west"
"#;

/// The demo's mock accounts: (name, region).
const ACCOUNTS: [(&str, &str); 4] = [
    ("contoso-east", "eastus"),
    ("contoso-west", "westus"),
    ("shared-east", "eastus"),
    ("shared-west", "westus"),
];

/// The demo config with its mock upstreams already started on ephemeral loopback ports.
pub struct DemoSetup {
    /// The validated config, pointing at `mocks`.
    pub config: pairgate_config::Config,
    /// The running mock accounts, in [`ACCOUNTS`] order; dropping them stops them.
    pub mocks: Vec<MockUpstream>,
}

/// Starts the mock accounts and builds the demo config around them.
pub async fn setup(listen: SocketAddr) -> anyhow::Result<DemoSetup> {
    let mut text = DEMO_CONFIG.replace("{listen}", &listen.to_string());
    let mut mocks = Vec::new();
    for (name, region) in ACCOUNTS {
        let mock = MockUpstream::start(MockConfig::new(name, region))
            .await
            .with_context(|| format!("starting mock account {name}"))?;
        text = text.replace(&format!("{{{name}}}"), &mock.url());
        mocks.push(mock);
    }
    let loaded = pairgate_config::load(&text, &|_| None).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("embedded demo config is invalid:\n{}", lines.join("\n"))
    })?;
    Ok(DemoSetup {
        config: loaded.config,
        mocks,
    })
}

/// Runs the demo until Ctrl-C.
pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let setup = setup(listen).await?;
    let gateway = Gateway::bind_and_start(setup.config).await?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(instructions(gateway.http_addr(), &setup.mocks).as_bytes());
    drop(out);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    gateway.shutdown().await
}

fn instructions(addr: SocketAddr, mocks: &[MockUpstream]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\npairgate demo: gateway on http://{addr}");
    let _ = writeln!(
        s,
        "mock accounts (each answers with JSON saying who it is and what it got):"
    );
    for ((name, region), mock) in ACCOUNTS.iter().zip(mocks) {
        let _ = writeln!(s, "  {name:<13} {region:<7} {}", mock.url());
    }
    let _ = writeln!(s, "\nTry (each tenant lands on its primary account):");
    let _ = writeln!(
        s,
        "  # by Host; the account's path prefix and key are added"
    );
    let _ = writeln!(
        s,
        "  curl -s -H 'Host: contoso.localhost' http://{addr}/videos?page=1"
    );
    let _ = writeln!(s, "  # by wildcard host");
    let _ = writeln!(
        s,
        "  curl -s -H 'Host: eu.contoso.localhost' http://{addr}/videos"
    );
    let _ = writeln!(s, "  # by path prefix (stripped before forwarding)");
    let _ = writeln!(s, "  curl -s http://{addr}/fabrikam/videos");
    let _ = writeln!(s, "  # by the trusted tenant header");
    let _ = writeln!(
        s,
        "  curl -s -H 'x-tenant-id: tailspin' http://{addr}/videos"
    );
    let _ = writeln!(s, "  # unknown tenant: 404, no upstream contacted");
    let _ = writeln!(s, "  curl -s -i -H 'Host: nobody.localhost' http://{addr}/");
    let _ = writeln!(s, "  # HTTP/2 without TLS (prior knowledge)");
    let _ = writeln!(
        s,
        "  curl -s --http2-prior-knowledge -H 'Host: tailspin.localhost' http://{addr}/h2"
    );
    let _ = writeln!(s, "\nCtrl-C stops the demo.");
    s
}
