//! `pairgate demo`: mock regions and a gateway in one process, with no files at all.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pairgate_mock::azure::AzureListener;
use pairgate_mock::{Behavior, MockAzure, MockConfig, MockUpstream};

use crate::Gateway;

/// The demo's config. `{east-1}`-style placeholders become the mock accounts' URLs.
const DEMO_CONFIG: &str = r#"
[listen]
http = "{listen}"

[routing]
tenant_header = "x-tenant-id"

# Fast checks so a broken region shows within seconds; failback after 10s of health.
[health]
interval = "1s"
fast_interval = "250ms"
timeout = "500ms"
rise = 2
fall = 2

[failover]
failback = "auto"
hold_down = "10s"

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

# A Video Indexer tenant: each account accepts only its own short-lived token, which the
# gateway mints from (fake) Entra ID and ARM, refreshes, and sends as `accessToken`; the
# client's own token is removed. The fakes' URL is filled in at start.
[azure]
arm_endpoint = "{azure}"
login_endpoint = "{azure}"
imds_endpoint = "{azure}"
api_endpoint = "{azure}"

[[account]]
name = "vi-east"
region = "eastus"
url = "{vi-east}"
path_prefix = "/eastus/Accounts/acc-vi-east"
auth = { type = "azure-video-indexer", resource_id = "/subscriptions/demo-sub/resourceGroups/demo-rg/providers/Microsoft.VideoIndexer/accounts/vi-east", credential = "client-secret", tenant_id = "demo-tenant", client_id = "pairgate-demo", client_secret = "demo-secret" }
health = { path = "/Videos?pageSize=1", use_account_prefix = true }

[[account]]
name = "vi-west"
region = "westus"
url = "{vi-west}"
path_prefix = "/westus/Accounts/acc-vi-west"
auth = { type = "azure-video-indexer", resource_id = "/subscriptions/demo-sub/resourceGroups/demo-rg/providers/Microsoft.VideoIndexer/accounts/vi-west", credential = "client-secret", tenant_id = "demo-tenant", client_id = "pairgate-demo", client_secret = "demo-secret" }
health = { path = "/Videos?pageSize=1", use_account_prefix = true }

[[tenant]]
name = "videos"
hosts = ["videos.localhost"]
primary = "vi-east"
secondary = "vi-west"
"#;

/// The demo's Video Indexer accounts (served by [`MockAzure`] listeners): (name, region,
/// account id).
const VI_ACCOUNTS: [(&str, &str, &str); 2] = [
    ("vi-east", "eastus", "acc-vi-east"),
    ("vi-west", "westus", "acc-vi-west"),
];

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
    /// The Azure fakes (Entra ID, ARM, Video Indexer).
    pub azure: MockAzure,
    /// One listener per Video Indexer account, in [`VI_ACCOUNTS`] order; `None` once killed.
    pub vi: Vec<tokio::sync::Mutex<Option<AzureListener>>>,
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
    let mut azure =
        MockAzure::builder().client_secret("demo-tenant", "pairgate-demo", "demo-secret");
    for (name, region, id) in VI_ACCOUNTS {
        azure = azure.account(
            &format!("/subscriptions/demo-sub/resourceGroups/demo-rg/providers/Microsoft.VideoIndexer/accounts/{name}"),
            region,
            id,
        );
    }
    let azure = azure.start().await.context("starting the Azure fakes")?;
    text = text.replace("{azure}", &azure.url());
    let mut vi = Vec::new();
    for (name, _, _) in VI_ACCOUNTS {
        let listener = azure
            .listener()
            .await
            .with_context(|| format!("starting Video Indexer account {name}"))?;
        text = text.replace(&format!("{{{name}}}"), &listener.url());
        vi.push(tokio::sync::Mutex::new(Some(listener)));
    }
    let loaded = pairgate_config::load(&text, &|_| None).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("embedded demo config is invalid:\n{}", lines.join("\n"))
    })?;
    Ok(DemoSetup {
        config: loaded.config,
        mocks,
        azure,
        vi,
    })
}

/// Runs the demo until Ctrl-C: mock accounts, the gateway on `listen`, and the demo control
/// endpoint on `control` for breaking and healing mock regions.
pub async fn run(listen: SocketAddr, control: SocketAddr) -> anyhow::Result<()> {
    let setup = setup(listen).await?;
    let token = random_token()?;
    let mut gateway = Gateway::bind_and_start(
        setup.config,
        crate::TlsFiles::default(),
        Some(token.clone()),
        None,
    )
    .await?;
    let control_listener = tokio::net::TcpListener::bind(control)
        .await
        .with_context(|| format!("binding the demo control endpoint on {control}"))?;
    let control_addr = control_listener.local_addr()?;
    let vi_addrs = {
        let mut addrs = Vec::new();
        for slot in &setup.vi {
            if let Some(l) = slot.lock().await.as_ref() {
                addrs.push(l.addr());
            }
        }
        addrs
    };
    let mocks = Arc::new(Mocks {
        upstreams: setup.mocks,
        azure: setup.azure,
        vi: setup.vi,
        vi_addrs,
    });
    tokio::spawn(serve_control(control_listener, Arc::clone(&mocks)));
    let mut out = std::io::stdout().lock();
    let admin = gateway
        .admin_addr()
        .context("the demo runs the admin API")?;
    let text = instructions(gateway.http_addr(), control_addr, &mocks.upstreams)
        + &admin_instructions(admin, &token);
    let _ = out.write_all(text.as_bytes());
    drop(out);
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
        exit = gateway.task_exit() => return Err(exit.into()),
    }
    gateway.shutdown().await
}

/// The demo-only control endpoint: `POST /fail/NAME`, `/blackhole/NAME`, `/recover/NAME`, where
/// NAME is a region (every mock account in it) or one account. Never part of `pairgate run`.
/// Everything the control endpoint can break and heal.
struct Mocks {
    upstreams: Vec<MockUpstream>,
    azure: MockAzure,
    vi: Vec<tokio::sync::Mutex<Option<AzureListener>>>,
    vi_addrs: Vec<SocketAddr>,
}

async fn serve_control(listener: tokio::net::TcpListener, mocks: Arc<Mocks>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let mocks = Arc::clone(&mocks);
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let mocks = Arc::clone(&mocks);
            async move {
                let (status, body) = control(&mocks, req.method(), req.uri().path()).await;
                let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = status;
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn control(all: &Mocks, method: &Method, path: &str) -> (StatusCode, String) {
    let mocks = &all.upstreams;
    let mut parts = path.trim_matches('/').splitn(2, '/');
    let (Some(action), Some(name)) = (parts.next(), parts.next()) else {
        let usage = "use POST /fail/NAME, /blackhole/NAME or /recover/NAME\n";
        return (StatusCode::NOT_FOUND, usage.into());
    };
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "use POST\n".into());
    }
    let targets: Vec<&MockUpstream> = ACCOUNTS
        .iter()
        .zip(mocks)
        .filter(|((account, region), _)| *account == name || *region == name)
        .map(|(_, mock)| mock)
        .collect();
    let vi_targets: Vec<usize> = VI_ACCOUNTS
        .iter()
        .enumerate()
        .filter(|(_, (account, region, _))| *account == name || *region == name)
        .map(|(i, _)| i)
        .collect();
    if targets.is_empty() && vi_targets.is_empty() {
        let msg = format!("no region or account called {name:?}\n");
        return (StatusCode::NOT_FOUND, msg);
    }
    let mut names: Vec<&str> = targets.iter().map(|m| m.name()).collect();
    for i in vi_targets {
        let mut slot = all.vi[i].lock().await;
        match action {
            "fail" => {
                if let Some(mut listener) = slot.take() {
                    listener.kill();
                }
            }
            // The Azure fakes have no black-hole mode: a Video Indexer account only dies.
            "blackhole" => continue,
            "recover" if slot.is_none() => match all.azure.listener_at(all.vi_addrs[i]).await {
                Ok(listener) => *slot = Some(listener),
                Err(err) => {
                    let msg = format!("revive failed: {err}\n");
                    return (StatusCode::INTERNAL_SERVER_ERROR, msg);
                }
            },
            _ => {}
        }
        names.push(VI_ACCOUNTS[i].0);
    }
    for mock in &targets {
        match action {
            "fail" => mock.kill().await,
            "blackhole" => mock.set_behavior(Behavior::BlackHole),
            "recover" => {
                if !mock.is_listening()
                    && let Err(err) = mock.revive().await
                {
                    let msg = format!("revive failed: {err}\n");
                    return (StatusCode::INTERNAL_SERVER_ERROR, msg);
                }
                mock.set_behavior(Behavior::Normal);
            }
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("unknown action {action:?}\n"),
                );
            }
        }
    }
    (StatusCode::OK, format!("{action}: {}\n", names.join(", ")))
}

/// 128 random bits from the kernel, hex-encoded.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the demo admin token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn admin_instructions(admin: SocketAddr, token: &str) -> String {
    let mut s = String::new();
    let auth = format!("-H 'Authorization: Bearer {token}'");
    let _ = writeln!(
        s,
        "\nAdmin API on http://{admin} (token generated for this run):"
    );
    let _ = writeln!(s, "  export PAIRGATE_ADMIN_TOKEN={token}");
    let _ = writeln!(
        s,
        "  # every tenant: active side and account, mode, health of both accounts"
    );
    let _ = writeln!(s, "  curl -s {auth} http://{admin}/v1/tenants");
    let _ = writeln!(s, "  # one tenant and why it is where it is");
    let _ = writeln!(s, "  curl -s {auth} http://{admin}/v1/tenants/contoso");
    let _ = writeln!(
        s,
        "  # pin contoso to its secondary, then back to automatic"
    );
    let _ = writeln!(
        s,
        "  curl -s -X PUT {auth} -d '{{\"mode\":\"secondary\",\"reason\":\"drill\"}}' http://{admin}/v1/tenants/contoso/mode"
    );
    let _ = writeln!(
        s,
        "  curl -s -X PUT {auth} -d '{{\"mode\":\"auto\",\"reason\":\"drill over\"}}' http://{admin}/v1/tenants/contoso/mode"
    );
    let _ = writeln!(
        s,
        "  # mark a whole region down (every tenant whose primary is there moves), then back"
    );
    let _ = writeln!(
        s,
        "  curl -s -X PUT {auth} -d '{{\"state\":\"down\",\"reason\":\"maintenance\"}}' http://{admin}/v1/regions/eastus"
    );
    let _ = writeln!(
        s,
        "  curl -s -X PUT {auth} -d '{{\"state\":\"auto\"}}' http://{admin}/v1/regions/eastus"
    );
    let _ = writeln!(s, "  # the audit log, and metrics (no token needed)");
    let _ = writeln!(s, "  curl -s {auth} 'http://{admin}/v1/events?after=0'");
    let _ = writeln!(s, "  curl -s http://{admin}/metrics | grep ^pairgate_");
    s
}

fn instructions(addr: SocketAddr, control: SocketAddr, mocks: &[MockUpstream]) -> String {
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
    let _ = writeln!(
        s,
        "\nBreak a region and watch its tenants move to the paired region (checks every 1s,"
    );
    let _ = writeln!(
        s,
        "unhealthy after 2 failures; back to the primary 10s after it recovers):"
    );
    let _ = writeln!(
        s,
        "  # in one terminal: which account serves contoso, twice a second"
    );
    let _ = writeln!(
        s,
        "  while sleep 0.5; do curl -s -H 'Host: contoso.localhost' http://{addr}/ | grep -o '\"account\":\"[a-z-]*\"'; done"
    );
    let _ = writeln!(
        s,
        "  # in another: kill every eastus account (or black-hole it), then heal it"
    );
    let _ = writeln!(s, "  curl -s -X POST http://{control}/fail/eastus");
    let _ = writeln!(s, "  curl -s -X POST http://{control}/blackhole/eastus");
    let _ = writeln!(s, "  curl -s -X POST http://{control}/recover/eastus");
    let _ = writeln!(
        s,
        "  # one account only: /fail/contoso-east; the gateway logs every health change and move"
    );
    let _ = writeln!(
        s,
        "\nA Video Indexer tenant: each account takes only its own short-lived token, which the"
    );
    let _ = writeln!(
        s,
        "gateway mints (fake Entra ID + ARM), refreshes and sends as accessToken; a client's own"
    );
    let _ = writeln!(
        s,
        "token is removed, so a failover needs nothing from the client (no 401 from the secondary):"
    );
    let _ = writeln!(
        s,
        "  curl -s -H 'Host: videos.localhost' 'http://{addr}/Videos?pageSize=1&accessToken=stale'"
    );
    let _ = writeln!(s, "  curl -s -X POST http://{control}/fail/vi-east");
    let _ = writeln!(
        s,
        "  curl -s -H 'Host: videos.localhost' 'http://{addr}/Videos?pageSize=1'   # now acc-vi-west, 200"
    );
    let _ = writeln!(s, "  curl -s -X POST http://{control}/recover/vi-east");
    let _ = writeln!(
        s,
        "  # token lifetimes and refreshes: pairgate_account_token_expiry_seconds, pairgate_token_refreshes_total in /metrics"
    );
    let _ = writeln!(s, "\nCtrl-C stops the demo.");
    s
}
