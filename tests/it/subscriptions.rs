//! Subscription per tenant: with `[alerts.azure_monitor] scope = "subscription"`, a Service
//! Health incident holds down only the impacted regions' accounts in the subscription Azure sent
//! it for; its `Resolved` releases exactly those holds. The payloads are the sample payloads in
//! docs/alerts (Microsoft's documented common-schema and activity-log examples; see
//! docs/alerts.md), with the subscription id, and for the activity-log one the region, swapped
//! where a case needs another.

use std::time::Duration;

use pairgate_test_support::{MockUpstream, TestGateway, get};

use crate::support::{eventually, mock, wait_ready};

/// The subscription the docs/alerts samples were sent for.
const SUB_A: &str = "11111111-1111-1111-1111-111111111111";
const SUB_B: &str = "22222222-2222-2222-2222-222222222222";
const SUB_C: &str = "33333333-3333-3333-3333-333333333333";
/// east-a's ARM resource, as the Resource Health samples in docs/alerts name it.
const VI_EAST: &str = "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/RG-VI/providers/Microsoft.VideoIndexer/accounts/vi-east";

struct Fleet {
    gw: TestGateway,
    _mocks: Vec<MockUpstream>,
}

/// Tenants `ta` (east-a -> west-a, subscription A) and `tb` (east-b -> west-b, subscription
/// B): both primaries in East US.
async fn start(scope: &str) -> Fleet {
    let mut mocks = Vec::new();
    let mut accounts = String::new();
    for (name, region, sub) in [
        ("east-a", "eastus", SUB_A),
        ("west-a", "westus", SUB_A),
        ("east-b", "eastus", SUB_B),
        ("west-b", "westus", SUB_B),
    ] {
        let m = mock(name, region).await;
        accounts.push_str(&format!(
            "[[account]]\nname = \"{name}\"\nregion = \"{region}\"\nurl = \"{}\"\nsubscription = \"{sub}\"\n",
            m.url()
        ));
        if name == "east-a" {
            // Written in another case than the alerts use: ARM ids compare ignoring case.
            accounts.push_str(&format!("resource_id = \"{VI_EAST}\"\n"));
        }
        mocks.push(m);
    }
    let toml = format!(
        r#"
[health]
interval = "200ms"
fast_interval = "100ms"
timeout = "150ms"
rise = 1
fall = 2
[failover]
hold_down = "1s"
[alerts.azure_monitor]
scope = "{scope}"
[[region]]
name = "eastus"
pair = "westus"
[[region]]
name = "westus"
pair = "eastus"
{accounts}
[[tenant]]
name = "ta"
hosts = ["ta.example.com"]
primary = "east-a"
secondary = "west-a"
[[tenant]]
name = "tb"
hosts = ["tb.example.com"]
primary = "east-b"
secondary = "west-b"
"#
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    wait_ready(&gw).await;
    Fleet { gw, _mocks: mocks }
}

async fn served_by(gw: &TestGateway, tenant: &str) -> String {
    let reply = get(&gw.url("/who"), &format!("{tenant}.example.com"))
        .await
        .expect("reply");
    reply.json()["account"].as_str().unwrap_or("?").to_owned()
}

/// A docs/alerts sample, sent for `subscription`.
fn sample(file: &str, subscription: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/alerts")
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace(SUB_A, subscription)
}

async fn post(gw: &TestGateway, body: &str) -> pairgate_test_support::Reply {
    gw.admin("POST", "/v1/alerts/azure-monitor", Some(body))
        .await
        .expect("reply")
}

/// An incident sent for subscription A moves only A's tenant, and its Resolved brings it back;
/// one sent for C (no account of it) is ignored; a payload without a subscription is refused;
/// events, the account list, the tenant detail and the metrics name the subscription.
#[tokio::test]
async fn an_incident_moves_only_its_subscriptions_tenants() {
    let f = start("subscription").await;
    let gw = &f.gw;
    assert_eq!(served_by(gw, "ta").await, "east-a");

    let ignored = post(gw, &sample("common-schema-activated.json", SUB_C)).await;
    assert_eq!(ignored.status, 202, "{}", ignored.text());
    assert_eq!(ignored.json()["subscription"], SUB_C);

    let active = post(gw, &sample("common-schema-activated.json", SUB_A)).await;
    assert_eq!(active.status, 200, "{}", active.text());
    assert_eq!(active.json()["accounts"], serde_json::json!(["east-a"]));
    assert_eq!(served_by(gw, "ta").await, "west-a", "A's tenant moved");
    assert_eq!(served_by(gw, "tb").await, "east-b", "B's tenant stayed");

    let accounts = gw
        .admin("GET", "/v1/accounts", None)
        .await
        .expect("accounts")
        .json();
    let east_a = &accounts["accounts"][0];
    assert_eq!(east_a["name"], "east-a");
    assert_eq!(east_a["state"], "down");
    assert_eq!(east_a["subscription"], SUB_A);
    assert_eq!(east_a["holds"][0]["holder"], "incident:4K_2-VT8");
    assert_eq!(east_a["holds"][0]["source"], "azure-service-health");
    assert_eq!(accounts["accounts"][2]["state"], "auto", "east-b untouched");
    let detail = gw
        .admin("GET", "/v1/tenants/ta", None)
        .await
        .expect("tenant")
        .json();
    assert_eq!(detail["primary"]["subscription"], SUB_A);
    let metrics = gw
        .admin("GET", "/metrics", None)
        .await
        .expect("metrics")
        .text();
    let held = format!("pairgate_account_holds{{account=\"east-a\",subscription=\"{SUB_A}\"}} 1");
    assert!(metrics.contains(&held), "{metrics}");

    // Resolved for B releases nothing of A's; Resolved for A brings A back after hold_down.
    let other = post(gw, &sample("common-schema-resolved.json", SUB_B)).await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(other.json()["accounts"], serde_json::json!([]));
    assert_eq!(served_by(gw, "ta").await, "west-a");
    let resolved = post(gw, &sample("common-schema-resolved.json", SUB_A)).await;
    assert_eq!(resolved.status, 200, "{}", resolved.text());
    let back = eventually(Duration::from_secs(5), || async {
        served_by(gw, "ta").await == "east-a"
    })
    .await;
    assert!(
        back,
        "A's tenant returns once its subscription's incident resolves"
    );

    // The activity-log schema carries the subscription in activityLog.subscriptionId.
    let activity = sample("activity-log-activated.json", SUB_B).replace("West Europe", "East US");
    let r = post(gw, &activity).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["accounts"], serde_json::json!(["east-b"]));
    assert_eq!(served_by(gw, "tb").await, "west-b");
    assert_eq!(served_by(gw, "ta").await, "east-a");

    // No subscription at all: the receiver cannot tell whose incident it is.
    let mut anonymous: serde_json::Value =
        serde_json::from_str(&sample("common-schema-activated.json", SUB_A)).expect("json");
    let essentials = &mut anonymous["data"]["essentials"];
    essentials["alertTargetIDs"] = serde_json::json!([]);
    essentials["alertId"] = serde_json::json!("0a1b2c3d");
    let r = post(gw, &anonymous.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("alertTargetIDs"), "{}", r.text());

    let events = gw
        .admin("GET", "/v1/events?limit=500", None)
        .await
        .expect("events")
        .json();
    let holds: Vec<String> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "account_state")
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["account"], e["action"], e["holder"], e["reason"]
            )
        })
        .collect();
    assert_eq!(holds.len(), 3, "{holds:#?}");
    assert!(
        holds[0].contains("\"east-a\" \"hold\" \"incident:4K_2-VT8\""),
        "{holds:#?}"
    );
    assert!(
        holds[0].contains(SUB_A),
        "the reason names the subscription: {holds:#?}"
    );
    assert!(holds[1].contains("\"east-a\" \"release\""), "{holds:#?}");
    assert!(
        holds[2].contains("\"east-b\" \"hold\" \"incident:7TQN-9Z0\""),
        "{holds:#?}"
    );
    for line in &holds {
        eprintln!("event: {line}");
    }
}

/// `scope = "region"` (the default) keeps today's behaviour: the same incident holds the whole
/// region, so both tenants move.
#[tokio::test]
async fn region_scope_moves_every_tenant_of_the_region() {
    let f = start("region").await;
    let r = post(&f.gw, &sample("common-schema-activated.json", SUB_A)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["regions"], serde_json::json!(["eastus"]));
    assert_eq!(served_by(&f.gw, "ta").await, "west-a");
    assert_eq!(served_by(&f.gw, "tb").await, "west-b");
    // Every service name the incident listed is counted, as Azure spelled it.
    let metrics =
        f.gw.admin("GET", "/metrics", None)
            .await
            .expect("metrics")
            .text();
    assert!(
        metrics.contains("pairgate_alert_services_seen_total{service=\"Video Indexer\"} 1"),
        "{metrics}"
    );
}

/// An operator can hold an account down and release it, like a region.
#[tokio::test]
async fn an_operator_holds_and_releases_an_account() {
    let f = start("subscription").await;
    let r =
        f.gw.admin(
            "PUT",
            "/v1/accounts/east-b",
            Some(r#"{"state": "down", "reason": "maintenance window"}"#),
        )
        .await
        .expect("reply");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["holds"][0]["holder"], "operator");
    assert_eq!(served_by(&f.gw, "tb").await, "west-b");
    let r =
        f.gw.admin("PUT", "/v1/accounts/east-b", Some(r#"{"state": "auto"}"#))
            .await
            .expect("reply");
    assert_eq!(r.status, 200, "{}", r.text());
    let back = eventually(Duration::from_secs(5), || async {
        served_by(&f.gw, "tb").await == "east-b"
    })
    .await;
    assert!(back);
    let unknown =
        f.gw.admin("PUT", "/v1/accounts/nope", Some(r#"{"state": "down"}"#))
            .await
            .expect("reply");
    assert_eq!(unknown.status, 404, "{}", unknown.text());
}

/// Resource Health (both schemas; docs/alerts holds Microsoft's documented samples with the
/// resource swapped for a Video Indexer account): `Unavailable` holds down only the account it
/// names, `Available` releases it (the tenant returns after hold-down); an unrelated resource
/// is acknowledged and ignored; `Degraded` is ignored by default.
#[tokio::test]
async fn resource_health_holds_only_its_account() {
    let f = start("region").await;
    let gw = &f.gw;
    let unrelated = sample("resource-health-activity-log-unavailable.json", SUB_A)
        .replace("vi-east", "vi-elsewhere");
    let r = post(gw, &unrelated).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(served_by(gw, "ta").await, "east-a");

    let r = post(
        gw,
        &sample("common-schema-resource-health-unavailable.json", SUB_A),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["account"], "east-a");
    assert_eq!(served_by(gw, "ta").await, "west-a");
    assert_eq!(served_by(gw, "tb").await, "east-b", "only that account");
    let accounts = gw
        .admin("GET", "/v1/accounts", None)
        .await
        .expect("accounts")
        .json();
    assert_eq!(
        accounts["accounts"][0]["holds"][0]["holder"],
        "resource-health"
    );
    assert_eq!(
        accounts["accounts"][0]["holds"][0]["source"],
        "azure-resource-health"
    );

    let degraded = sample("resource-health-activity-log-unavailable.json", SUB_A).replace(
        "\"currentHealthStatus\": \"Unavailable\"",
        "\"currentHealthStatus\": \"Degraded\"",
    );
    let r = post(gw, &degraded).await;
    assert_eq!(r.status, 202, "{}", r.text());

    let r = post(
        gw,
        &sample("resource-health-activity-log-available.json", SUB_A),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "auto");
    let back = eventually(Duration::from_secs(5), || async {
        served_by(gw, "ta").await == "east-a"
    })
    .await;
    assert!(
        back,
        "the account returns once Resource Health says Available"
    );
}
