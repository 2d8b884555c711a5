//! Account credentials the gateway mints, end to end: Video Indexer accounts (the `MockAzure`
//! fakes, each account on its own socket) that take only their own unexpired token, a tenant
//! failing over between them under load, tokens refreshing under load, and a token endpoint
//! that fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use pairgate_routing::{Health, Side};
use pairgate_test_support::azure::{AzureListener, Endpoint};
use pairgate_test_support::{
    ADMIN_TOKEN, GatewayProcess, MockAzure, TestGateway, admin_call, client, send, temp_file,
};

use crate::support::eventually;

const RID_EAST: &str =
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/vi-east";
const RID_WEST: &str =
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/vi-west";
const SECRET: &str = "entra-app-secret-7f3a";
const CLASSIC_KEY: &str = "classic-api-key-91c2";
/// What a client that kept the primary's token would send (and must never reach an account).
const STALE: &str = "client-stale-token-xyz";

/// Probes every 300 ms; the probe path is a real Video Indexer URL of the account.
const HEALTH: &str = r#"
[health]
interval = "300ms"
fast_interval = "100ms"
timeout = "250ms"
rise = 2
fall = 2
path = "/Videos?pageSize=1"
use_account_prefix = true

[upstream]
connect_timeout = "200ms"
response_header_timeout = "2s"

[failover]
failback = "manual"
"#;

/// The fakes: Entra (one app), ARM (two accounts), classic (the west account's key).
async fn fakes(lifetime: Duration) -> MockAzure {
    MockAzure::builder()
        .client_secret("t1", "app-1", SECRET)
        .account(RID_EAST, "eastus", "acc-east")
        .account(RID_WEST, "westus", "acc-west")
        .classic_account("westus", "acc-west", CLASSIC_KEY)
        .token_lifetime(lifetime)
        .start()
        .await
        .expect("azure fakes start")
}

/// Tenant `vi` on `east` (ARM-minted token) and `west` (ARM-minted, or the classic API key
/// with `west_classic`), each account on its own listener.
fn config(
    az: &MockAzure,
    east: &AzureListener,
    west: &AzureListener,
    west_classic: bool,
) -> String {
    let url = az.url();
    let west_auth = if west_classic {
        r#"{ type = "video-indexer-classic", api_key = "${VI_CLASSIC_KEY}", location = "westus", account_id = "acc-west" }"#
            .to_owned()
    } else {
        format!(
            r#"{{ type = "azure-video-indexer", resource_id = "{RID_WEST}", credential = "client-secret", tenant_id = "t1", client_id = "app-1", client_secret = "${{VI_SECRET}}", send_as = "header" }}"#
        )
    };
    format!(
        r#"{HEALTH}
[azure]
arm_endpoint = "{url}"
login_endpoint = "{url}"
imds_endpoint = "{url}"
api_endpoint = "{url}"

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
path_prefix = "/eastus/Accounts/acc-east"
auth = {{ type = "azure-video-indexer", resource_id = "{RID_EAST}", credential = "client-secret", tenant_id = "t1", client_id = "app-1", client_secret = "${{VI_SECRET}}" }}

[[account]]
name = "west"
region = "westus"
url = "{west}"
path_prefix = "/westus/Accounts/acc-west"
auth = {west_auth}

[[tenant]]
name = "vi"
hosts = ["vi.example.com"]
primary = "east"
secondary = "west"
"#,
        east = east.url(),
        west = west.url(),
    )
}

const ENV: &[(&str, &str)] = &[("VI_SECRET", SECRET), ("VI_CLASSIC_KEY", CLASSIC_KEY)];

/// A client request that carries its own stale token both ways Video Indexer reads one.
async fn video_request(base: &str) -> anyhow::Result<pairgate_test_support::Reply> {
    let req = Request::get(format!(
        "{base}/Videos?pageSize=1&accessToken={STALE}&name=a%20b"
    ))
    .header(http::header::HOST, "vi.example.com")
    .header(http::header::AUTHORIZATION, format!("Bearer {STALE}"))
    .body(Full::new(Bytes::new()))?;
    send(&client(), req).await
}

/// The `accountId` a fake account answered with.
fn answered_by(reply: &pairgate_test_support::Reply) -> String {
    reply.json()["accountId"].as_str().unwrap_or("-").to_owned()
}

/// Runs `workers` loops of [`video_request`] until `stop`; returns (status, account) per
/// request, in order per worker.
fn load(
    base: String,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(u16, String)>>> {
    (0..workers)
        .map(|_| {
            let base = base.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                // Bounded in count as well as by `stop`.
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match video_request(&base).await {
                        Ok(r) => {
                            let who = if r.status.is_success() {
                                answered_by(&r)
                            } else {
                                r.text()
                            };
                            seen.push((r.status.as_u16(), who));
                        }
                        Err(e) => seen.push((0, e.to_string())),
                    }
                }
                seen
            })
        })
        .collect()
}

async fn collect(
    handles: Vec<tokio::task::JoinHandle<Vec<(u16, String)>>>,
) -> Vec<Vec<(u16, String)>> {
    let mut all = Vec::new();
    for h in handles {
        all.push(h.await.expect("load worker"));
    }
    all
}

/// All requests the load workers made, and those not answered 2xx.
fn tally(results: &[Vec<(u16, String)>]) -> (usize, Vec<&(u16, String)>) {
    let total = results.iter().map(Vec::len).sum();
    let failed = results
        .iter()
        .flatten()
        .filter(|(status, _)| !(200..300).contains(status))
        .collect();
    (total, failed)
}

/// Every request a fake account received carried a token minted for that very account, and
/// none carried the client's.
fn each_account_got_its_own_token(az: &MockAzure) -> BTreeMap<String, usize> {
    let mut per_account = BTreeMap::new();
    for r in az.vi_requests() {
        let token = r.token.as_deref().unwrap_or("");
        assert_ne!(token, STALE, "the client's token reached {}", r.account_id);
        let owner = az.claims(token).and_then(|c| {
            c.get("AccountId")
                .and_then(|v| v.as_str().map(str::to_owned))
        });
        assert_eq!(
            owner.as_deref(),
            Some(r.account_id.as_str()),
            "a request to {} carried another account's token",
            r.account_id
        );
        assert_eq!(r.status, 200, "{r:?}");
        *per_account.entry(r.account_id).or_insert(0) += 1;
    }
    per_account
}

async fn account_health(gw: &TestGateway, tenant: &str) -> Option<(Health, Option<Health>)> {
    let view = gw.gateway().control().tenant(tenant).await?;
    Some((view.primary.1, view.secondary.map(|s| s.1)))
}

async fn both_healthy(gw: &TestGateway) -> bool {
    account_health(gw, "vi").await == Some((Health::Healthy, Some(Health::Healthy)))
}

/// The failover Video Indexer users need: the client keeps sending the primary's (now stale)
/// token, the primary region dies under load, and every request is answered 2xx, by the
/// secondary after the kill, each account having received only its own token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_indexer_tenant_fails_over_under_load_with_each_account_getting_its_own_token() {
    let az = fakes(Duration::from_secs(3600)).await;
    let mut east = az.listener().await.expect("east listener");
    let west = az.listener().await.expect("west listener");
    let gw = TestGateway::start_with_env(&config(&az, &east, &west, false), ENV)
        .await
        .expect("gateway");
    assert!(
        eventually(Duration::from_secs(10), || both_healthy(&gw)).await,
        "both accounts healthy with their minted tokens"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(gw.url(""), 8, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(800)).await;
    east.kill();
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.gateway()
                .control()
                .tenant("vi")
                .await
                .is_some_and(|v| v.state.side == Side::Secondary)
        })
        .await,
        "the tenant failed over"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let results = collect(workers).await;
    let (total, failed) = tally(&results);
    assert!(total > 100, "load ran: {total} requests");
    assert!(
        failed.is_empty(),
        "{} of {total} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // Each worker ends on the secondary, and never returns to the dead primary once there.
    for seen in &results {
        let first_west = seen.iter().position(|(_, who)| who == "acc-west");
        let first_west = first_west.expect("every worker reached the secondary");
        assert!(
            seen[first_west..].iter().all(|(_, who)| who == "acc-west"),
            "answered by the secondary from the failover on"
        );
    }
    let per_account = each_account_got_its_own_token(&az);
    assert!(
        per_account.get("acc-east").is_some_and(|n| *n > 10),
        "{per_account:?}"
    );
    assert!(
        per_account.get("acc-west").is_some_and(|n| *n > 10),
        "{per_account:?}"
    );
    eprintln!("vi failover: {total} requests, 0 failed; received per account {per_account:?}");
    gw.shutdown().await.expect("shutdown");
}

/// Tokens that live 4 s, under continuous load for 20 s: no request fails, each account's
/// token is fetched about every half-life (one fetch at a time), none more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_refresh_at_half_life_under_load_with_no_failed_request() {
    let az = fakes(Duration::from_secs(4)).await;
    let east = az.listener().await.expect("east listener");
    let west = az.listener().await.expect("west listener");
    let gw = TestGateway::start_with_env(&config(&az, &east, &west, false), ENV)
        .await
        .expect("gateway");
    assert!(eventually(Duration::from_secs(10), || both_healthy(&gw)).await);
    let before = (
        az.calls_for(Endpoint::Arm, RID_EAST),
        az.calls_for(Endpoint::Arm, RID_WEST),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(gw.url(""), 4, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    let results = collect(workers).await;
    let (total, failed) = tally(&results);
    let failed = failed.len();
    let east_fetches = az.calls_for(Endpoint::Arm, RID_EAST) - before.0;
    let west_fetches = az.calls_for(Endpoint::Arm, RID_WEST) - before.1;
    eprintln!(
        "4 s tokens, 20 s of load: {total} requests, {failed} failed; ARM fetches east {east_fetches}, west {west_fetches}"
    );
    assert!(total > 200, "load ran: {total}");
    assert_eq!(failed, 0);
    // Half of a 4 s lifetime is 2 s (the JWT's whole seconds make it 1.5-2 s): 20 s is 10-13
    // refreshes; more would mean refreshes racing one another.
    for (account, n) in [("east", east_fetches), ("west", west_fetches)] {
        assert!((8..=14).contains(&n), "{account}: {n} ARM fetches in 20 s");
    }
    each_account_got_its_own_token(&az);
    // The token metrics name each account.
    let metrics = gw
        .admin("GET", "/metrics", None)
        .await
        .expect("metrics")
        .text();
    for account in ["east", "west"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "pairgate_token_refreshes_total{{account=\"{account}\",result=\"success\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no refresh counter for {account}:\n{metrics}"));
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("count");
        assert!(n >= 9, "{line}");
        let expiry = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "pairgate_account_token_expiry_seconds{{account=\"{account}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .expect("expiry gauge");
        assert!(expiry > 0.0 && expiry <= 4.0, "{expiry}");
    }
    gw.shutdown().await.expect("shutdown");
}

/// ARM answering 500: the last good token (10 s) keeps serving until it expires; then the account is
/// unhealthy with cause `credential` and the tenant moves to its other account (whose classic
/// token is fine), with no failed request; when ARM recovers, so does the account. Run as the
/// real binary: nothing it logs, nor the admin API, carries a secret or a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_token_endpoint_turns_the_account_unhealthy_with_cause_credential_then_recovers() {
    // 10 s tokens: a 1 s margin before expiry, ample for a loaded machine.
    let az = fakes(Duration::from_secs(10)).await;
    let east = az.listener().await.expect("east listener");
    let west = az.listener().await.expect("west listener");
    let text = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"PG_ADMIN\"\n{}",
        config(&az, &east, &west, true)
    );
    let mut env = ENV.to_vec();
    env.push(("PG_ADMIN", ADMIN_TOKEN));
    env.push(("RUST_LOG", "debug,hyper=info,hyper_util=info,h2=info"));
    let gw = GatewayProcess::spawn(&temp_file("credentials.toml"), &text, &env).expect("gateway");
    let admin = |path: &str| {
        let url = gw.admin_url(path).expect("admin");
        async move {
            admin_call(&url, "GET", None, Some(ADMIN_TOKEN))
                .await
                .map(|r| r.text())
                .unwrap_or_default()
        }
    };
    let tenant_json = || async {
        serde_json::from_str::<serde_json::Value>(&admin("/v1/tenants/vi").await)
            .unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            let t = tenant_json().await;
            t["primary"]["health"] == "healthy" && t["secondary"]["health"] == "healthy"
        })
        .await,
        "both accounts healthy: {}",
        tenant_json().await
    );
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(gw.url(""), 4, Arc::clone(&stop));
    az.fail(Endpoint::Arm, 500);
    // The east token (4 s) keeps serving, then the account turns unhealthy: cause credential.
    assert!(
        eventually(Duration::from_secs(15), || async {
            let t = tenant_json().await;
            t["active_side"] == "secondary"
                && t["primary"]["health"] == "unhealthy"
                && t["primary"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("credential"))
        })
        .await,
        "east unhealthy with cause credential and the tenant on west: {}",
        tenant_json().await
    );
    let events = admin("/v1/events").await;
    assert!(events.contains("credential"), "{events}");
    az.clear_faults();
    // Backoff after a few failures is at most a few seconds; the account then recovers.
    assert!(
        eventually(Duration::from_secs(30), || async {
            let t = tenant_json().await;
            t["primary"]["health"] == "healthy"
        })
        .await,
        "east recovered: {}",
        tenant_json().await
    );
    stop.store(true, Ordering::Relaxed);
    let results = collect(workers).await;
    let (total, failed) = tally(&results);
    eprintln!(
        "token endpoint failing: {total} requests, {} failed",
        failed.len()
    );
    assert!(total > 50);
    // The only failures allowed: a request that left with east's last token within the token's
    // safety margin (a tenth of its lifetime) and reached the account after it expired, which a
    // loaded machine can stall for that long; at most one per client in flight.
    let expired_in_flight = |(status, body): &&(u16, String)| {
        *status == 401 && body.contains(pairgate_test_support::azure::VI_TOKEN_EXPIRED)
    };
    assert!(
        failed.iter().all(expired_in_flight) && failed.len() <= 4,
        "{:?}",
        &failed[..failed.len().min(5)]
    );
    for r in az.vi_requests() {
        let token = r.token.as_deref().unwrap_or("");
        let owner = az.claims(token).and_then(|c| {
            c.get("AccountId")
                .and_then(|v| v.as_str().map(str::to_owned))
        });
        assert_eq!(owner.as_deref(), Some(r.account_id.as_str()), "{r:?}");
    }
    // Nothing secret anywhere an operator looks.
    let metrics = gw.metrics().await.expect("metrics");
    let tenants = admin("/v1/tenants").await;
    let detail = tenant_json().await.to_string();
    let logs = gw.stderr();
    assert!(
        logs.contains("token refresh failed"),
        "the failure is logged"
    );
    let minted: Vec<String> = az
        .vi_requests()
        .into_iter()
        .filter_map(|r| r.token)
        .collect();
    assert!(!minted.is_empty());
    for (what, text) in [
        ("logs", &logs),
        ("events", &events),
        ("metrics", &metrics),
        ("tenants", &tenants),
        ("tenant detail", &detail),
    ] {
        for secret in [SECRET, CLASSIC_KEY, STALE] {
            assert!(!text.contains(secret), "{what} leaked a secret: {secret}");
        }
        for token in &minted {
            assert!(
                !text.contains(token.as_str()),
                "{what} leaked a minted token: {text}"
            );
        }
    }
    drop(gw);
}

/// A tenant whose one account has no valid token (its API key is wrong) gets `502
/// account_credential_unavailable`, and nothing is sent to the account. A reload that leaves
/// the other credentials unchanged keeps their providers and cached tokens (no new fetch); one
/// that fixes the key fetches anew and the tenant is served. Real binary, so reloads read the
/// process environment as in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_valid_token_is_a_named_502_and_a_reload_keeps_unchanged_credentials() {
    let az = fakes(Duration::from_secs(3600)).await;
    let east = az.listener().await.expect("east listener");
    let west = az.listener().await.expect("west listener");
    let solo = format!(
        "[[account]]\nname = \"classic\"\nregion = \"westus\"\nurl = \"{}\"\npath_prefix = \"/westus/Accounts/acc-west\"\n\
         auth = {{ type = \"video-indexer-classic\", api_key = \"${{VI_BAD_KEY}}\", location = \"westus\", account_id = \"acc-west\" }}\n\
         [[tenant]]\nname = \"solo\"\nhosts = [\"solo.example.com\"]\nprimary = \"classic\"\n",
        west.url()
    );
    let text = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"PG_ADMIN\"\n{}\n{solo}",
        config(&az, &east, &west, false)
    );
    let mut env = ENV.to_vec();
    env.push(("PG_ADMIN", ADMIN_TOKEN));
    env.push(("VI_BAD_KEY", "not-the-key"));
    let path = temp_file("credentials-reload.toml");
    let gw = GatewayProcess::spawn(&path, &text, &env).expect("gateway");
    let admin = |method: &'static str, path: &'static str| {
        let url = gw.admin_url(path).expect("admin");
        async move {
            admin_call(&url, method, None, Some(ADMIN_TOKEN))
                .await
                .expect("admin call")
        }
    };
    let solo_get = || async {
        let req = Request::get(gw.url("/Videos"))
            .header(http::header::HOST, "solo.example.com")
            .body(Full::new(Bytes::new()))
            .expect("request");
        send(&client(), req).await.expect("reply")
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            let t = admin("GET", "/v1/tenants/vi").await.json();
            t["primary"]["health"] == "healthy" && t["secondary"]["health"] == "healthy"
        })
        .await
    );
    for _ in 0..5 {
        let r = solo_get().await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.json()["error"], "account_credential_unavailable");
    }
    assert!(
        az.vi_requests().iter().all(|r| r.status == 200),
        "nothing without a valid token reached an account"
    );
    let solo_detail = admin("GET", "/v1/tenants/solo").await.json();
    assert!(
        solo_detail["primary"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("classic") && !e.contains("not-the-key")),
        "{solo_detail}"
    );

    // A reload that changes nothing of the ARM credentials fetches nothing for them.
    let arm_calls = az.calls(Endpoint::Arm);
    std::fs::write(&path, text.replace("rise = 2", "rise = 3")).expect("rewrite");
    assert_eq!(admin("POST", "/v1/reload").await.status, 200);
    assert_eq!(
        az.calls(Endpoint::Arm),
        arm_calls,
        "unchanged credentials kept"
    );

    // The key fixed: a new provider, a token, and the tenant served by its account.
    std::fs::write(&path, text.replace("${VI_BAD_KEY}", "${VI_CLASSIC_KEY}")).expect("rewrite");
    assert_eq!(admin("POST", "/v1/reload").await.status, 200);
    assert!(
        eventually(Duration::from_secs(10), || async {
            solo_get().await.status == 200
        })
        .await,
        "served once the key is right"
    );
    assert_eq!(az.calls(Endpoint::Arm), arm_calls, "still no ARM fetch");
    each_account_got_its_own_token(&az);
}
