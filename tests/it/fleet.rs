//! Fleet mode against a real etcd: three replicas share config, pins and failover decisions.

use std::time::Duration;

use pairgate_cluster::testing::EtcdServer;
use pairgate_health::EventKind;
use pairgate_test_support::{MockUpstream, TestGateway, get};

use crate::support::{eventually, mock};

struct Fleet {
    etcd: EtcdServer,
    east: MockUpstream,
    west: MockUpstream,
    replicas: Vec<TestGateway>,
}

/// Replica `i`'s config: the shared objects, and `east`'s probe path (`/status/503` makes that
/// replica alone see east down).
fn replica_config(
    etcd: &EtcdServer,
    east: &MockUpstream,
    west: &MockUpstream,
    i: usize,
    east_probe: &str,
) -> String {
    format!(
        r#"[cluster]
backend = "etcd"
endpoints = ["{etcd}"]
name = "r{i}"
lease_ttl = "2s"
timeout = "1s"
probers_per_account = 3
[health]
interval = "200ms"
fast_interval = "100ms"
timeout = "150ms"
rise = 1
fall = 2
[failover]
hold_down = "60s"
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
health = {{ path = "{east_probe}" }}
[[account]]
name = "west"
region = "westus"
url = "{west}"
[[tenant]]
name = "a"
hosts = ["a.example.com"]
primary = "east"
secondary = "west"
"#,
        etcd = etcd.endpoint(),
        east = east.url(),
        west = west.url(),
    )
}

/// Three replicas; `down_for` lists the replicas whose probes of `east` fail.
async fn fleet(down_for: &[usize]) -> Fleet {
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (run scripts/etcd.sh install)");
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let mut replicas = Vec::new();
    for i in 0..3 {
        let probe = if down_for.contains(&i) {
            "/status/503"
        } else {
            "/healthz"
        };
        let gw = TestGateway::start(&replica_config(&etcd, &east, &west, i, probe))
            .await
            .expect("replica");
        replicas.push(gw);
    }
    // Every replica has joined and sees the others.
    for gw in &replicas {
        assert!(
            eventually(Duration::from_secs(10), || async {
                gw.admin("GET", "/metrics", None)
                    .await
                    .is_ok_and(|r| r.text().contains("pairgate_failover_disagreement"))
                    && gw
                        .admin("GET", "/v1/tenants/a", None)
                        .await
                        .is_ok_and(|r| r.json()["secondary"]["health"] == "healthy")
            })
            .await,
            "a replica never joined"
        );
    }
    Fleet {
        etcd,
        east,
        west,
        replicas,
    }
}

/// A pin made on the first replica (retried until etcd accepts it) is served by every replica.
async fn pin_reaches_every_replica(replicas: &[TestGateway], hint: &str) {
    let pinned = eventually(Duration::from_secs(10), || async {
        replicas[0]
            .admin(
                "PUT",
                "/v1/tenants/a/mode",
                Some(r#"{"mode":"secondary","reason":"check"}"#),
            )
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(pinned, "the pin was never accepted ({hint})");
    for gw in replicas {
        assert!(
            eventually(Duration::from_secs(5), || async {
                served_by(gw).await == "west"
            })
            .await,
            "pin not applied everywhere"
        );
    }
}

async fn tenant(gw: &TestGateway) -> serde_json::Value {
    gw.admin("GET", "/v1/tenants/a", None)
        .await
        .expect("admin")
        .json()
}

async fn served_by(gw: &TestGateway) -> String {
    let r = get(&gw.url("/x"), "a.example.com").await.expect("reply");
    r.json()["account"].as_str().unwrap_or("?").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_on_one_replica_applies_on_all_and_conflicts_get_409() {
    let f = fleet(&[]).await;
    let started = std::time::Instant::now();
    let r = f.replicas[0]
        .admin(
            "PUT",
            "/v1/tenants/a/mode",
            Some(r#"{"mode":"secondary","reason":"drill"}"#),
        )
        .await
        .expect("pin");
    assert_eq!(r.status, 200, "{}", r.text());
    for gw in &f.replicas {
        assert!(
            eventually(Duration::from_secs(5), || async {
                served_by(gw).await == "west"
            })
            .await,
            "pin not applied everywhere"
        );
    }
    println!("pin reached all 3 replicas in {:?}", started.elapsed());
    // Two operators who read the same revision: one wins, the other gets 409.
    let seen = tenant(&f.replicas[1]).await["pin_revision"]
        .as_i64()
        .expect("pin_revision");
    assert!(seen > 0);
    let body1 = format!(r#"{{"mode":"primary","reason":"op one","revision":{seen}}}"#);
    let body2 = format!(r#"{{"mode":"auto","reason":"op two","revision":{seen}}}"#);
    let (a, b) = tokio::join!(
        f.replicas[1].admin("PUT", "/v1/tenants/a/mode", Some(&body1)),
        f.replicas[2].admin("PUT", "/v1/tenants/a/mode", Some(&body2)),
    );
    let mut statuses = vec![
        a.expect("reply").status.as_u16(),
        b.expect("reply").status.as_u16(),
    ];
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 409]);
    drop((f.east, f.west, f.etcd));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_added_in_etcd_routes_on_every_replica() {
    let f = fleet(&[]).await;
    let etcd =
        pairgate_cluster::Etcd::new(&[f.etcd.endpoint()], Duration::from_secs(2)).expect("client");
    let base = replica_config(&f.etcd, &f.east, &f.west, 0, "/healthz");
    let n = pairgate::fleet::import(&etcd, "/pairgate/", &base)
        .await
        .expect("import");
    assert_eq!(n, 5);
    let added =
        "[[tenant]]\nname = \"newcomer\"\nhosts = [\"newcomer.example.com\"]\nprimary = \"west\"\n";
    let started = std::time::Instant::now();
    etcd.put("/pairgate/config/tenant/newcomer", added.as_bytes(), None)
        .await
        .expect("put");
    for gw in &f.replicas {
        assert!(
            eventually(Duration::from_secs(5), || async {
                get(&gw.url("/x"), "newcomer.example.com")
                    .await
                    .is_ok_and(|r| r.status == 200)
            })
            .await,
            "the tenant added in etcd does not route on every replica"
        );
    }
    println!(
        "a tenant added in etcd routed on all 3 replicas in {:?}",
        started.elapsed()
    );
    let exported = pairgate::fleet::export(&etcd, "/pairgate/")
        .await
        .expect("export");
    assert!(
        exported.contains("newcomer") && exported.contains("[[account]]"),
        "{exported}"
    );
    // An invalid object is rejected and the replicas keep their last good config.
    etcd.put(
        "/pairgate/config/tenant/broken",
        b"[[tenant]]\nname = \"broken\"\nprimary = \"nowhere\"\n",
        None,
    )
    .await
    .expect("put");
    for gw in &f.replicas {
        let rejected = eventually(Duration::from_secs(5), || async {
            gw.gateway().events().after(0, 1000).iter().any(|e| {
                matches!(&e.kind, EventKind::Reload { accepted: false, problems, .. }
                    if problems.iter().any(|p| p.contains("nowhere")))
            })
        })
        .await;
        assert!(rejected, "the invalid object was never rejected");
        assert_eq!(
            get(&gw.url("/x"), "newcomer.example.com")
                .await
                .expect("reply")
                .status,
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_down_by_two_of_three_fails_over_everywhere_at_one_epoch() {
    let started = std::time::Instant::now();
    let f = fleet(&[0, 1]).await;
    for gw in &f.replicas {
        assert!(
            eventually(Duration::from_secs(8), || async {
                tenant(gw).await["active_side"] == "secondary"
            })
            .await,
            "a replica did not fail over"
        );
    }
    let epochs: Vec<u64> = {
        let mut v = Vec::new();
        for gw in &f.replicas {
            v.push(tenant(gw).await["generation"].as_u64().expect("generation"));
        }
        v
    };
    assert!(
        epochs.iter().all(|&e| e == epochs[0] && e >= 1),
        "epochs differ: {epochs:?}"
    );
    println!(
        "fleet failover (2 of 3 see east down) committed at epoch {} on all replicas, {:?} after the replicas started",
        epochs[0],
        started.elapsed()
    );
    for gw in &f.replicas {
        assert_eq!(served_by(gw).await, "west");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_down_by_one_of_three_moves_nobody_and_is_reported() {
    let f = fleet(&[0]).await;
    // Replica 0 sees east down; the fleet does not.
    assert!(
        eventually(Duration::from_secs(8), || async {
            f.replicas[0]
                .admin("GET", "/metrics", None)
                .await
                .is_ok_and(|r| r.text().contains("pairgate_failover_disagreement 1"))
        })
        .await,
        "the disagreement was not reported"
    );
    let events = f.replicas[0]
        .admin("GET", "/v1/events", None)
        .await
        .expect("events")
        .json();
    assert!(events.to_string().contains("disagreement"), "{events}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    for gw in &f.replicas {
        assert_eq!(tenant(gw).await["active_side"], "primary");
        assert_eq!(served_by(gw).await, "east");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_etcd_keeps_serving_without_flapping_then_resyncs() {
    let mut f = fleet(&[]).await;
    f.etcd.kill().expect("kill etcd");
    // Cut off: every replica keeps serving its last decision, for several probe intervals.
    for _ in 0..5 {
        for gw in &f.replicas {
            assert_eq!(served_by(gw).await, "east");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Fleet writes are refused while cut off.
    let r = f.replicas[0]
        .admin("PUT", "/v1/tenants/a/mode", Some(r#"{"mode":"secondary"}"#))
        .await
        .expect("reply");
    assert_eq!(r.status, 503, "{}", r.text());
    for gw in &f.replicas {
        assert_eq!(tenant(gw).await["generation"], 0, "a replica acted alone");
    }
    f.etcd.restart().await.expect("etcd back");
    // Back: a pin made on one replica reaches the others again.
    assert!(
        eventually(Duration::from_secs(10), || async {
            f.replicas[0]
                .admin(
                    "PUT",
                    "/v1/tenants/a/mode",
                    Some(r#"{"mode":"secondary","reason":"after"}"#),
                )
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await,
        "writes never worked again"
    );
    for gw in &f.replicas {
        assert!(
            eventually(Duration::from_secs(8), || async {
                served_by(gw).await == "west"
            })
            .await,
            "a replica did not resync"
        );
    }
}

/// Probe load at one account: one replica, then three replicas with the default
/// `probers_per_account = 2`; three replicas must not probe three times as often.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_per_account_are_bounded_by_the_prober_count() {
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (run scripts/etcd.sh install)");
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let config = |i: usize| {
        replica_config(&etcd, &east, &west, i, "/healthz").replace("probers_per_account = 3\n", "")
    };
    let window = Duration::from_secs(2);
    let one = TestGateway::start(&config(0)).await.expect("replica");
    // Alone, the replica probes both accounts once it has joined.
    assert!(
        eventually(Duration::from_secs(5), || async {
            one.gateway().monitor().prober_count() == 2
                && one.gateway().monitor().first_round_done()
        })
        .await,
        "the first replica never probed both accounts"
    );
    east.reset_stats();
    tokio::time::sleep(window).await;
    let single = east.probe_count();
    let mut more = Vec::new();
    for i in 1..3 {
        more.push(TestGateway::start(&config(i)).await.expect("replica"));
    }
    // The replicas see each other and reassign probers: two per account, four in all (a
    // replica may hold a prober it is about to hand over for a moment, so let the assignment
    // settle before the window opens).
    assert!(
        eventually(Duration::from_secs(8), || async {
            one.gateway().monitor().prober_count()
                + more
                    .iter()
                    .map(|gw| gw.gateway().monitor().prober_count())
                    .sum::<usize>()
                == 4
        })
        .await,
        "probers were never reassigned"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    east.reset_stats();
    tokio::time::sleep(window).await;
    let three = east.probe_count();
    println!(
        "probes at one account in {window:?} (200ms interval): 1 replica {single}, 3 replicas {three}"
    );
    assert!(single >= 5, "{single}");
    assert!(
        three <= single * 5 / 2,
        "3 replicas probed {three} times vs {single} for one"
    );
    drop((one, more));
}

/// A primary dies: the fleet decides once and every replica moves at the same epoch. Timed from
/// the kill to the last replica serving the secondary (read from the slot, not a request, which
/// a replay would rescue earlier).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_moves_every_replica_at_one_epoch() {
    let f = fleet(&[]).await;
    let started = std::time::Instant::now();
    f.east.kill().await;
    for gw in &f.replicas {
        assert!(
            eventually(Duration::from_secs(8), || async {
                tenant(gw).await["active_side"] == "secondary"
            })
            .await,
            "a replica did not move"
        );
    }
    let took = started.elapsed();
    let mut epochs = Vec::new();
    for gw in &f.replicas {
        epochs.push(tenant(gw).await["generation"].as_u64().expect("generation"));
    }
    println!(
        "fleet failover after a primary's death: all 3 replicas on the secondary in {took:?}, epochs {epochs:?}"
    );
    assert!(
        epochs.iter().all(|&e| e == epochs[0] && e >= 1),
        "epochs differ: {epochs:?}"
    );
}

/// etcd with authentication on: replicas configured with credentials (the password from the
/// environment) join, and a pin on one reaches the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_authenticate_to_etcd() {
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (run scripts/etcd.sh install)");
    etcd.enable_auth("fleet-pw-93f1")
        .await
        .expect("enable auth");
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let mut replicas = Vec::new();
    for i in 0..3 {
        let toml = replica_config(&etcd, &east, &west, i, "/healthz").replace(
            "backend = \"etcd\"\n",
            "backend = \"etcd\"\nusername = \"root\"\npassword = \"${IT_ETCD_PASSWORD}\"\n",
        );
        replicas.push(
            TestGateway::start_with_env(&toml, &[("IT_ETCD_PASSWORD", "fleet-pw-93f1")])
                .await
                .expect("replica"),
        );
    }
    pin_reaches_every_replica(&replicas, "did the replica authenticate?").await;
}

/// etcd over TLS with client certificates required: replicas configured with `ca`,
/// `client_cert` and `client_key` join, and a pin on one reaches the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_etcd_over_mutual_tls() {
    use pairgate_test_support::tls::TestCa;
    use rustls_pki_types::pem::PemObject;
    let dir = pairgate_test_support::temp_file("etcd-tls");
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = TestCa::new("etcd test ca").expect("ca");
    let ca_path = ca.write(&dir, "ca.pem").expect("write");
    // etcd's own gateway dials its gRPC port with this certificate as a client certificate, so
    // it needs the clientAuth usage as well.
    let (server_cert, server_key) = ca
        .issue_with(&["127.0.0.1", "localhost"], |p| {
            p.extended_key_usages = vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ];
        })
        .expect("issue")
        .write(&dir, "etcd")
        .expect("write");
    let client = ca.issue_client("pairgate").expect("client cert");
    let (client_cert, client_key) = client.write(&dir, "client").expect("write");
    let harness_client = {
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
                r.add(c.expect("ca pem")).expect("root");
            }
            r
        };
        let chain: Vec<_> =
            rustls_pki_types::CertificateDer::pem_slice_iter(client.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("client chain");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes())
            .expect("key");
        std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(pairgate_tls::provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .expect("client auth"),
        )
    };
    let etcd = EtcdServer::start_tls(pairgate_cluster::testing::ServerTls {
        cert: server_cert,
        key: server_key,
        client_ca: Some(ca_path.clone()),
        client: harness_client,
    })
    .await
    .expect("etcd over TLS");
    assert!(etcd.endpoint().starts_with("https://"));
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let mut replicas = Vec::new();
    for i in 0..3 {
        let toml = replica_config(&etcd, &east, &west, i, "/healthz").replace(
            "backend = \"etcd\"\n",
            &format!(
                "backend = \"etcd\"\nca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
                ca_path.display(),
                client_cert.display(),
                client_key.display()
            ),
        );
        replicas.push(TestGateway::start(&toml).await.expect("replica"));
    }
    pin_reaches_every_replica(&replicas, "did the replica reach etcd over TLS?").await;
}

/// `pairgate cluster import` and `export`, the real binary against a real etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_import_and_export_commands() {
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (run scripts/etcd.sh install)");
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let path = crate::support::temp_path("import.toml");
    std::fs::write(&path, replica_config(&etcd, &east, &west, 0, "/healthz")).expect("write");
    let bin = pairgate_test_support::pairgate_bin().expect("binary");
    let run = |action: &str| {
        std::process::Command::new(&bin)
            .args(["cluster", action, "--config"])
            .arg(&path)
            .output()
            .expect("runs")
    };
    let import = run("import");
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(String::from_utf8_lossy(&import.stdout).contains("imported 5 objects"));
    let export = run("export");
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let text = String::from_utf8_lossy(&export.stdout);
    for object in ["name = \"eastus\"", "name = \"east\"", "name = \"a\""] {
        assert!(
            text.contains(object),
            "{object} missing from export:\n{text}"
        );
    }
    // What export prints is a valid config again (objects only, so no warnings about them).
    let env = |_: &str| None;
    pairgate_config::load(&text, &env).expect("the export loads as a config");
}

/// A watch whose connection goes silent without closing (half-open, or a proxy that dropped the
/// stream) is noticed by the replica's own heartbeat not coming back, and watched again: a
/// tenant added in etcd afterwards still routes, within seconds rather than when TCP keepalive
/// would give up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_watch_is_noticed_and_replaced() {
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (run scripts/etcd.sh install)");
    let target = etcd
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("etcd address");
    let relay = pairgate_test_support::relay::Relay::start(target, b"POST /v3/watch")
        .await
        .expect("relay");
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let config = replica_config(&etcd, &east, &west, 0, "/healthz")
        .replace(&etcd.endpoint(), &format!("http://{}", relay.addr()));
    let client =
        pairgate_cluster::Etcd::new(&[etcd.endpoint()], Duration::from_secs(2)).expect("client");
    pairgate::fleet::import(&client, "/pairgate/", &config)
        .await
        .expect("import");
    let gw = TestGateway::start(&config).await.expect("replica");
    assert!(
        eventually(Duration::from_secs(10), || async {
            gw.admin("GET", "/v1/tenants/a", None)
                .await
                .is_ok_and(|r| r.json()["secondary"]["health"] == "healthy")
        })
        .await,
        "the replica never joined"
    );

    assert!(
        relay.silence_marked() >= 1,
        "no watch went through the relay"
    );
    let silenced = std::time::Instant::now();
    let added = "[[tenant]]\nname = \"latecomer\"\nhosts = [\"latecomer.example.com\"]\nprimary = \"west\"\n";
    client
        .put("/pairgate/config/tenant/latecomer", added.as_bytes(), None)
        .await
        .expect("put");
    // lease_ttl is 2 s: a heartbeat every ~0.67 s, a silent watch found within two of them.
    assert!(
        eventually(Duration::from_secs(6), || async {
            get(&gw.url("/x"), "latecomer.example.com")
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await,
        "the tenant added while the watch was silent never routed"
    );
    println!(
        "a silent watch was replaced and the change applied {:?} after the watch went silent",
        silenced.elapsed()
    );
    drop((east, west));
}

/// The local part of a replica's config: its objects come from etcd only (as in the compose
/// fleet), so the replica knows no tenant or account before it has loaded the fleet's.
fn local_only(config: &str) -> String {
    let objects = config.find("[[region]]").expect("the config has objects");
    config[..objects].to_owned()
}

/// etcd holding the objects of `replica_config`, and the two accounts' mocks.
async fn objects_in_etcd() -> (EtcdServer, MockUpstream, MockUpstream) {
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (run scripts/etcd.sh install)");
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let client =
        pairgate_cluster::Etcd::new(&[etcd.endpoint()], Duration::from_secs(2)).expect("client");
    pairgate::fleet::import(
        &client,
        "/pairgate/",
        &replica_config(&etcd, &east, &west, 0, "/healthz"),
    )
    .await
    .expect("import");
    (etcd, east, west)
}

/// A replica that joins (or rejoins) after the fleet voted and committed a failover adopts
/// the fleet's verdicts and decision at once: same side, same epoch, no `unknown` accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_joining_after_a_failover_serves_the_committed_side_and_epoch() {
    let (etcd, east, west) = objects_in_etcd().await;
    let config = |i: usize| local_only(&replica_config(&etcd, &east, &west, i, "/healthz"));
    let mut replicas = Vec::new();
    for i in 0..2 {
        replicas.push(TestGateway::start(&config(i)).await.expect("replica"));
    }
    for gw in &replicas {
        assert!(
            eventually(Duration::from_secs(10), || async {
                gw.admin("GET", "/v1/tenants/a", None)
                    .await
                    .is_ok_and(|r| r.json()["primary"]["health"] == "healthy")
            })
            .await,
            "a replica never joined"
        );
    }
    east.kill().await;
    for gw in &replicas {
        assert!(
            eventually(Duration::from_secs(8), || async {
                tenant(gw).await["active_side"] == "secondary"
            })
            .await,
            "the fleet did not fail over"
        );
    }
    let epoch = tenant(&replicas[0]).await["generation"].clone();
    assert_eq!(tenant(&replicas[1]).await["generation"], epoch);
    // Converged: the committed side at the committed epoch, and the fleet's verdicts.
    async fn converged(gw: &TestGateway, epoch: &serde_json::Value) -> bool {
        let t = tenant(gw).await;
        t["active_side"] == "secondary"
            && t["generation"] == *epoch
            && t["primary"]["health"] == "unhealthy"
            && t["secondary"]["health"] == "healthy"
    }
    // Starts replica `i` and checks it serves the fleet's decision within 5 s.
    let adopts = async |i: usize, who: &str| {
        let started = std::time::Instant::now();
        let gw = TestGateway::start(&config(i)).await.expect("replica");
        let adopted = eventually(Duration::from_secs(5), || converged(&gw, &epoch)).await;
        assert!(
            adopted,
            "{who} did not adopt the fleet's state: {}",
            tenant(&gw).await
        );
        assert_eq!(served_by(&gw).await, "west");
        println!(
            "{who} served the committed side at epoch {epoch} in {:?}",
            started.elapsed()
        );
        gw
    };
    // A third replica joins.
    let _late = adopts(2, "a replica joining after a failover").await;
    // A replica restarts (same name).
    let restarted = replicas.pop().expect("two replicas");
    restarted.shutdown().await.expect("shutdown");
    let _back = adopts(1, "a restarted replica").await;
    drop((west, etcd));
}

/// `/readyz` waits until the replica has loaded the fleet's objects and decisions, and
/// `pairgate_fleet_connected` shows whether it sees etcd; cut off later, it stays ready and
/// keeps serving its last decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_fleet_and_the_connection_is_a_metric() {
    let (mut etcd, east, west) = objects_in_etcd().await;
    let config = local_only(&replica_config(&etcd, &east, &west, 0, "/healthz"));
    etcd.kill().expect("kill etcd");
    let gw = TestGateway::start(&config).await.expect("replica");
    async fn metric(gw: &TestGateway) -> String {
        gw.admin("GET", "/metrics", None)
            .await
            .map(|r| r.text())
            .unwrap_or_default()
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.gateway().monitor().first_round_done()
        })
        .await,
        "the first probe round never ended"
    );
    let r = gw.admin("GET", "/readyz", None).await.expect("readyz");
    assert_eq!(
        r.status,
        503,
        "ready before joining the fleet: {}",
        r.text()
    );
    assert!(r.text().contains("joining the fleet"), "{}", r.text());
    assert!(metric(&gw).await.contains("pairgate_fleet_connected 0"));

    etcd.restart().await.expect("etcd back");
    let started = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || async {
            gw.admin("GET", "/readyz", None)
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await,
        "never ready after etcd came back"
    );
    // Ready means the fleet's objects are loaded: the tenant routes at once.
    assert_eq!(served_by(&gw).await, "east");
    assert!(metric(&gw).await.contains("pairgate_fleet_connected 1"));
    println!("ready {:?} after etcd came back", started.elapsed());

    etcd.kill().expect("kill etcd");
    // lease_ttl is 2 s: a failed heartbeat or keepalive within about a third of it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&gw).await.contains("pairgate_fleet_connected 0")
        })
        .await,
        "isolation from etcd is not shown"
    );
    let r = gw.admin("GET", "/readyz", None).await.expect("readyz");
    assert_eq!(
        r.status,
        200,
        "cut off, the replica still serves: {}",
        r.text()
    );
    assert_eq!(served_by(&gw).await, "east");
    drop(west);
}

/// A region's state, as `GET /v1/regions` on `gw` reports it: (`auto`/`down`, the latest
/// hold's source).
async fn region_state(gw: &TestGateway, name: &str) -> (String, String) {
    let regions = gw
        .admin("GET", "/v1/regions", None)
        .await
        .map(|r| r.json())
        .unwrap_or_default();
    let region = regions["regions"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name).cloned())
        .unwrap_or_default();
    (
        region["state"].as_str().unwrap_or("?").to_owned(),
        region["marked_down"]["source"]
            .as_str()
            .unwrap_or("-")
            .to_owned(),
    )
}

/// A region marked down (or back to auto) on one replica, by an operator or an Azure Monitor
/// alert, applies on every replica: it goes through etcd like a pin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_marked_on_one_replica_applies_on_all() {
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (run scripts/etcd.sh install)");
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let mut replicas = Vec::new();
    for i in 0..2 {
        let config = replica_config(&etcd, &east, &west, i, "/healthz")
            + "[alerts.azure_monitor]\nservices = [\"Video Indexer\"]\n";
        replicas.push(TestGateway::start(&config).await.expect("replica"));
    }
    for gw in &replicas {
        assert!(
            eventually(Duration::from_secs(10), || async {
                gw.admin("GET", "/readyz", None)
                    .await
                    .is_ok_and(|r| r.status == 200)
            })
            .await,
            "a replica never joined"
        );
    }
    async fn everywhere(replicas: &[TestGateway], state: &str, source: &str) -> bool {
        for gw in replicas {
            let ok = eventually(Duration::from_secs(5), || async {
                region_state(gw, "eastus").await == (state.to_owned(), source.to_owned())
            })
            .await;
            if !ok {
                return false;
            }
        }
        true
    }
    let put = |gw: usize, body: &'static str| {
        let gw = &replicas[gw];
        async move {
            let r = gw
                .admin("PUT", "/v1/regions/eastus", Some(body))
                .await
                .expect("reply");
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    put(0, r#"{"state":"down","reason":"drill"}"#).await;
    assert!(
        everywhere(&replicas, "down", "operator").await,
        "an operator's region down did not reach every replica"
    );
    for gw in &replicas {
        assert!(
            eventually(Duration::from_secs(5), || async {
                served_by(gw).await == "west"
            })
            .await,
            "a replica did not move off the region marked down"
        );
    }
    put(1, r#"{"state":"auto","reason":"drill over"}"#).await;
    assert!(
        everywhere(&replicas, "auto", "-").await,
        "auto on another replica did not reach every replica"
    );
    let alert = |file: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/alerts")
            .join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let r = replicas[0]
        .admin(
            "POST",
            "/v1/alerts/azure-monitor",
            Some(&alert("common-schema-activated.json")),
        )
        .await
        .expect("reply");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        everywhere(&replicas, "down", "azure-monitor").await,
        "an alert on one replica did not mark the region down on every replica"
    );
    let r = replicas[1]
        .admin(
            "POST",
            "/v1/alerts/azure-monitor",
            Some(&alert("common-schema-resolved.json")),
        )
        .await
        .expect("reply");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["regions"],
        serde_json::json!(["eastus"]),
        "{}",
        r.text()
    );
    assert!(
        everywhere(&replicas, "auto", "-").await,
        "the incident resolved on another replica did not bring the region back everywhere"
    );
    drop((east, west, etcd));
}
