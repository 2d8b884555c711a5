//! The admin API, pins, region states, hot reload, alerts, metrics, persistence, shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pairgate_test_support::{
    ADMIN_TOKEN, GatewayProcess, MockUpstream, TestGateway, admin_call, get,
};

use crate::support::{eventually, mock, pair_config, temp_path, wait_ready};

/// Fast checks and a 1s hold-down, so tests see moves and failbacks quickly.
const FAST: &str = r#"
[health]
interval = "200ms"
fast_interval = "100ms"
timeout = "150ms"
rise = 1
fall = 2
[failover]
hold_down = "1s"
[upstream]
connect_timeout = "200ms"
response_header_timeout = "1s"
"#;

struct Fixture {
    gw: TestGateway,
    east: MockUpstream,
    west: MockUpstream,
}

/// Tenants `a` (east, then west) and `b` (west, then east).
async fn fixture(extra: &str) -> Fixture {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let toml = pair_config(
        &[("east", "eastus", &east), ("west", "westus", &west)],
        &[("a", "east", Some("west")), ("b", "west", Some("east"))],
        &format!("{FAST}\n{extra}"),
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    wait_ready(&gw).await;
    Fixture { gw, east, west }
}

async fn served_by(gw: &TestGateway, tenant: &str) -> String {
    let reply = get(&gw.url("/who"), &format!("{tenant}.example.com"))
        .await
        .expect("reply");
    if reply.status != 200 {
        return format!("status {}", reply.status);
    }
    reply.json()["account"].as_str().unwrap_or("?").to_owned()
}

#[tokio::test]
async fn auth_none_wrong_right_and_open_endpoints() {
    let f = fixture("").await;
    let url = f.gw.admin_url("/v1/tenants");
    let none = admin_call(&url, "GET", None, None).await.expect("reply");
    assert_eq!(none.status, 401);
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    let wrong = admin_call(&url, "GET", None, Some("not-the-token"))
        .await
        .expect("reply");
    assert_eq!(wrong.status, 403);
    let right = admin_call(&url, "GET", None, Some(ADMIN_TOKEN))
        .await
        .expect("reply");
    assert_eq!(right.status, 200);
    let tenants = right.json();
    assert_eq!(tenants["tenants"][0]["name"], "a");
    assert_eq!(tenants["tenants"][0]["active_side"], "primary");
    assert_eq!(tenants["tenants"][0]["primary"]["health"], "healthy");
    // The alert endpoint alone takes ?token=; others do not.
    let q = admin_call(
        &f.gw.admin_url(&format!("/v1/tenants?token={ADMIN_TOKEN}")),
        "GET",
        None,
        None,
    )
    .await
    .expect("reply");
    assert_eq!(q.status, 401);
    for open in ["/healthz", "/readyz", "/metrics"] {
        let r = admin_call(&f.gw.admin_url(open), "GET", None, None)
            .await
            .expect("reply");
        assert_eq!(r.status, 200, "{open}");
    }
    // A known path with the wrong method is 405 with Allow; an unknown path stays 404.
    for (method, path, allow) in [
        ("POST", "/metrics", "GET"),
        ("DELETE", "/v1/tenants", "GET"),
        ("GET", "/v1/reload", "POST"),
        ("POST", "/v1/tenants/a/mode", "PUT"),
    ] {
        let r = admin_call(&f.gw.admin_url(path), method, None, Some(ADMIN_TOKEN))
            .await
            .expect("reply");
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.headers["allow"], allow, "{method} {path}");
        assert_eq!(r.json()["error"], "method_not_allowed");
    }
    let missing = admin_call(
        &f.gw.admin_url("/v1/nothing"),
        "GET",
        None,
        Some(ADMIN_TOKEN),
    )
    .await
    .expect("reply");
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn tenants_are_paged() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let names: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
    let tenants: Vec<_> = names
        .iter()
        .map(|n| (n.as_str(), "east", Some("west")))
        .collect();
    let gw = TestGateway::start(&pair_config(
        &[("east", "eastus", &east), ("west", "westus", &west)],
        &tenants,
        FAST,
    ))
    .await
    .expect("gateway");
    let mut seen = Vec::new();
    let mut after = String::new();
    for _ in 0..10 {
        let path = if after.is_empty() {
            "/v1/tenants?limit=10".to_owned()
        } else {
            format!("/v1/tenants?limit=10&after={after}")
        };
        let page = gw.admin("GET", &path, None).await.expect("page").json();
        for t in page["tenants"].as_array().expect("array") {
            seen.push(t["name"].as_str().expect("name").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, names);
}

#[tokio::test]
async fn pin_and_unpin_move_traffic() {
    let f = fixture("").await;
    assert_eq!(served_by(&f.gw, "a").await, "east");
    let pinned =
        f.gw.admin(
            "PUT",
            "/v1/tenants/a/mode",
            Some(r#"{"mode":"secondary","reason":"drill"}"#),
        )
        .await
        .expect("reply");
    assert_eq!(pinned.status, 200, "{}", pinned.text());
    assert_eq!(pinned.json()["mode"], "secondary");
    assert_eq!(pinned.json()["active_account"], "west");
    assert!(pinned.json().get("warning").is_none());
    assert_eq!(served_by(&f.gw, "a").await, "west");
    let detail =
        f.gw.admin("GET", "/v1/tenants/a", None)
            .await
            .expect("reply")
            .json();
    assert_eq!(detail["pin"]["reason"], "drill");
    assert!(
        detail["history"]
            .as_array()
            .expect("history")
            .iter()
            .any(|e| e["type"] == "transition" && e["cause"] == "pinned")
    );

    // Pinning to an unhealthy side is allowed, and said.
    f.east.set_health(false);
    assert!(
        eventually(Duration::from_secs(3), || async {
            f.gw.admin("GET", "/v1/tenants/a", None)
                .await
                .is_ok_and(|r| r.json()["primary"]["health"] == "unhealthy")
        })
        .await
    );
    let risky =
        f.gw.admin(
            "PUT",
            "/v1/tenants/a/mode",
            Some(r#"{"mode":"primary","reason":"operator knows"}"#),
        )
        .await
        .expect("reply");
    assert_eq!(risky.status, 200);
    assert!(
        risky.json()["warning"]
            .as_str()
            .expect("warning")
            .contains("unhealthy")
    );
    assert_eq!(
        served_by(&f.gw, "a").await,
        "east",
        "pinned to the primary, even unhealthy"
    );
    f.east.set_health(true);

    let auto =
        f.gw.admin("PUT", "/v1/tenants/a/mode", Some(r#"{"mode":"auto"}"#))
            .await
            .expect("reply");
    assert_eq!(auto.json()["mode"], "auto");
    assert!(
        eventually(Duration::from_secs(3), || async {
            served_by(&f.gw, "a").await == "east"
        })
        .await
    );

    for (path, body, status) in [
        ("/v1/tenants/nobody/mode", r#"{"mode":"auto"}"#, 404),
        ("/v1/tenants/a/mode", "not json", 400),
        ("/v1/tenants/a/mode", r#"{"mode":"sideways"}"#, 400),
        ("/v1/tenants/a/mode", r#"{"reason":"no mode"}"#, 400),
        ("/v1/tenants/a/mode", r#"{"mode":"auto","reason":7}"#, 400),
    ] {
        let r = f.gw.admin("PUT", path, Some(body)).await.expect("reply");
        assert_eq!(r.status, status, "{path} {body}: {}", r.text());
        assert!(
            r.json()["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}: no clear message"
        );
    }
}

#[tokio::test]
async fn region_down_and_back() {
    let f = fixture("").await;
    let down =
        f.gw.admin(
            "PUT",
            "/v1/regions/eastus",
            Some(r#"{"state":"down","reason":"maintenance 42"}"#),
        )
        .await
        .expect("reply");
    assert_eq!(down.status, 200, "{}", down.text());
    assert_eq!(down.json()["state"], "down");
    assert_eq!(
        served_by(&f.gw, "a").await,
        "west",
        "a's primary region is down"
    );
    assert_eq!(
        served_by(&f.gw, "b").await,
        "west",
        "b's primary is in westus"
    );
    let regions =
        f.gw.admin("GET", "/v1/regions", None)
            .await
            .expect("reply")
            .json();
    assert_eq!(
        regions["regions"][0]["marked_down"]["reason"],
        "maintenance 42"
    );
    let back =
        f.gw.admin("PUT", "/v1/regions/eastus", Some(r#"{"state":"auto"}"#))
            .await
            .expect("reply");
    assert_eq!(back.json()["state"], "auto");
    // Failback follows the policy: after hold_down (1s).
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(4), || async {
            served_by(&f.gw, "a").await == "east"
        })
        .await
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "failed back inside hold_down"
    );
    assert_eq!(
        f.gw.admin("PUT", "/v1/regions/mars", Some(r#"{"state":"down"}"#))
            .await
            .expect("reply")
            .status,
        404
    );
    let events =
        f.gw.admin("GET", "/v1/events?after=0", None)
            .await
            .expect("reply")
            .json();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"region_state") && kinds.contains(&"transition"),
        "{kinds:?}"
    );
    let last = events["last_seq"].as_u64().expect("last_seq");
    let later =
        f.gw.admin("GET", &format!("/v1/events?after={last}"), None)
            .await
            .expect("reply")
            .json();
    assert!(later["events"].as_array().expect("events").is_empty());
}

#[tokio::test]
async fn pins_and_region_states_survive_a_restart() {
    let state = temp_path("state.json");
    let extra = format!("[state]\npath = \"{}\"\n", state.display());
    let f = fixture(&extra).await;
    f.gw.admin(
        "PUT",
        "/v1/tenants/a/mode",
        Some(r#"{"mode":"secondary","reason":"kept"}"#),
    )
    .await
    .expect("pin");
    f.gw.admin(
        "PUT",
        "/v1/regions/westus",
        Some(r#"{"state":"down","reason":"kept too"}"#),
    )
    .await
    .expect("region");
    let config = std::fs::read_to_string(f.gw.config_path()).expect("config");
    f.gw.shutdown().await.expect("shutdown");

    let again = TestGateway::start(&config).await.expect("restart");
    let a = again
        .admin("GET", "/v1/tenants/a", None)
        .await
        .expect("reply")
        .json();
    assert_eq!(a["mode"], "secondary");
    assert_eq!(a["pin"]["reason"], "kept");
    assert_eq!(served_by(&again, "a").await, "west");
    let regions = again
        .admin("GET", "/v1/regions", None)
        .await
        .expect("reply")
        .json();
    assert_eq!(regions["regions"][1]["state"], "down");
    assert_eq!(regions["regions"][1]["marked_down"]["reason"], "kept too");
    drop((f.east, f.west));
}

/// A pin or region state that cannot be written is refused (503), not applied, and recorded;
/// temporary files a crash left next to the state file are removed at start.
#[tokio::test]
async fn unsaved_changes_are_refused_and_crash_leftovers_removed() {
    let state = temp_path("state.json");
    let name = state
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let leftover = state.with_file_name(format!("{name}.tmp-999999"));
    std::fs::write(&leftover, "{\"tenants\": {").expect("leftover");
    let extra = format!("[state]\npath = \"{}\"\n", state.display());
    let f = fixture(&extra).await;
    assert!(
        !leftover.exists(),
        "a crash's temporary file was left at start"
    );

    let pinned =
        f.gw.admin(
            "PUT",
            "/v1/tenants/a/mode",
            Some(r#"{"mode":"secondary","reason":"saved"}"#),
        )
        .await
        .expect("pin");
    assert_eq!(pinned.status, 200, "{}", pinned.text());
    let saved = std::fs::read_to_string(&state).expect("state file");

    // The next write cannot happen: a directory sits where the gateway writes its temporary
    // file (the gateway runs in this process). Unlike permissions, this stops root too.
    let blocker = state.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    std::fs::create_dir(&blocker).expect("blocker");
    let refused =
        f.gw.admin("PUT", "/v1/tenants/a/mode", Some(r#"{"mode":"auto"}"#))
            .await
            .expect("reply");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "state_not_persisted");
    let refused =
        f.gw.admin("PUT", "/v1/regions/westus", Some(r#"{"state":"down"}"#))
            .await
            .expect("reply");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "state_not_persisted");

    // Nothing was applied: a is still pinned and served by west, westus is up, the file is
    // what the last acknowledged change wrote.
    let a =
        f.gw.admin("GET", "/v1/tenants/a", None)
            .await
            .expect("reply")
            .json();
    assert_eq!(a["mode"], "secondary");
    assert_eq!(a["pin"]["reason"], "saved");
    assert_eq!(served_by(&f.gw, "a").await, "west");
    assert_eq!(served_by(&f.gw, "b").await, "west");
    let regions =
        f.gw.admin("GET", "/v1/regions", None)
            .await
            .expect("reply")
            .json();
    assert_eq!(regions["regions"][1]["state"], "auto");
    assert_eq!(std::fs::read_to_string(&state).expect("state file"), saved);
    let events =
        f.gw.admin("GET", "/v1/events", None)
            .await
            .expect("reply")
            .json();
    let refusals: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "state_not_persisted")
        .filter_map(|e| e["change"].as_str())
        .collect();
    assert_eq!(
        refusals,
        [
            "tenant a mode auto",
            "region westus hold operator (operator)"
        ]
    );

    // Once the state can be written again, the same change goes through.
    std::fs::remove_dir(&blocker).expect("unblock");
    let unpinned =
        f.gw.admin("PUT", "/v1/tenants/a/mode", Some(r#"{"mode":"auto"}"#))
            .await
            .expect("reply");
    assert_eq!(unpinned.status, 200, "{}", unpinned.text());
    assert!(
        !std::fs::read_to_string(&state)
            .expect("state")
            .contains("saved")
    );
}

#[tokio::test]
async fn corrupt_state_file_is_reported_and_moved_aside() {
    let state = temp_path("state.json");
    std::fs::write(&state, "{ this is not json").expect("write");
    let extra = format!("[state]\npath = \"{}\"\n", state.display());
    let f = fixture(&extra).await;
    assert!(!state.exists(), "the corrupt file must be moved aside");
    let dir = state.parent().expect("dir");
    let name = state
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let moved: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}.corrupt-"))
        })
        .collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        std::fs::read_to_string(moved[0].path()).expect("moved"),
        "{ this is not json"
    );
    let events =
        f.gw.admin("GET", "/v1/events", None)
            .await
            .expect("reply")
            .json();
    assert!(
        events["events"].to_string().contains("corrupt"),
        "no event says so: {events}"
    );
    // And the gateway works: pins now persist to a fresh file.
    f.gw.admin("PUT", "/v1/tenants/a/mode", Some(r#"{"mode":"secondary"}"#))
        .await
        .expect("pin");
    assert!(
        std::fs::read_to_string(&state)
            .expect("new state file")
            .contains("secondary")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_nothing() {
    let f = Arc::new(fixture("").await);
    let base = std::fs::read_to_string(f.gw.config_path()).expect("config");
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Instant::now() + Duration::from_millis(2000);
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (f, ok, failed) = (Arc::clone(&f), Arc::clone(&ok), Arc::clone(&failed));
        workers.push(tokio::spawn(async move {
            for _ in 0..50_000 {
                if Instant::now() >= stop {
                    break;
                }
                match get(&f.gw.url("/x"), "a.example.com").await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let extra = format!(
            "{base}\n[[tenant]]\nname = \"new{i}\"\nhosts = [\"new{i}.example.com\"]\nprimary = \"west\"\n"
        );
        std::fs::write(f.gw.config_path(), extra).expect("write");
        let r =
            f.gw.admin("POST", "/v1/reload", None)
                .await
                .expect("reload");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["generation"], 2 + i);
        assert_eq!(served_by(&f.gw, &format!("new{i}")).await, "west");
    }
    for w in workers {
        w.await.expect("worker");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("requests during 5 reloads: ok={ok} failed={failed}");
    assert_eq!(failed, 0);
    assert!(ok > 100, "{ok}");
}

#[tokio::test]
async fn invalid_reload_is_rejected_and_the_old_config_serves() {
    let f = fixture("").await;
    let good = std::fs::read_to_string(f.gw.config_path()).expect("config");
    std::fs::write(
        f.gw.config_path(),
        good.replace("primary = \"east\"", "primary = \"nowhere\"\nbogus_key = 1"),
    )
    .expect("write");
    let r =
        f.gw.admin("POST", "/v1/reload", None)
            .await
            .expect("reload");
    assert_eq!(r.status, 422, "{}", r.text());
    let problems = r.json()["problems"].to_string();
    assert!(
        problems.contains("nowhere") && problems.contains("bogus_key"),
        "every problem listed: {problems}"
    );
    // Structured, and the same problems `pairgate check` prints (its lines are `rendered`).
    let json = r.json();
    let listed = json["problems"].as_array().expect("problems");
    let nowhere = listed
        .iter()
        .find(|p| p["message"].as_str().is_some_and(|m| m.contains("nowhere")))
        .expect("the unknown account is listed");
    assert_eq!(nowhere["severity"], "error", "{nowhere}");
    assert!(
        nowhere["path"]
            .as_str()
            .is_some_and(|p| p.ends_with(".primary")),
        "{nowhere}"
    );
    assert!(nowhere["line"].as_u64().is_some_and(|l| l > 1), "{nowhere}");
    assert!(
        nowhere["column"].as_u64().is_some_and(|c| c >= 1),
        "{nowhere}"
    );
    assert_eq!(json["more_problems"], 0);
    let check = pairgate::prepare(f.gw.config_path())
        .err()
        .expect("check rejects it too")
        .to_string();
    let rendered: Vec<&str> = listed
        .iter()
        .map(|p| p["rendered"].as_str().expect("rendered line"))
        .collect();
    assert_eq!(rendered, check.lines().collect::<Vec<_>>());
    assert_eq!(served_by(&f.gw, "a").await, "east");
    let metrics =
        f.gw.admin("GET", "/metrics", None)
            .await
            .expect("metrics")
            .text();
    assert!(
        metrics.contains("pairgate_config_generation 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pairgate_config_reloads_total{result=\"failure\"} 1"));
}

/// Bad input to the control plane costs bounded memory: every problem of a broken config is
/// reported with bounded text and count, the event log keeps bounded events, a file far larger
/// than any config is refused before it is parsed, and an alert cannot park a megabyte in the
/// region state.
#[tokio::test]
async fn control_plane_input_is_bounded() {
    let f = fixture("").await;
    let good = std::fs::read_to_string(f.gw.config_path()).expect("config");
    // Ten unknown keys of 1 MB each, and 300 more short ones, in the last [[tenant]].
    let mut broken = good.replace("primary = \"east\"", "primary = \"nowhere\"");
    for i in 0..10 {
        broken.push_str(&format!("{}{i} = 1\n", "k".repeat(1 << 20)));
    }
    for i in 0..300 {
        broken.push_str(&format!("short{i} = 1\n"));
    }
    std::fs::write(f.gw.config_path(), &broken).expect("write");
    for _ in 0..5 {
        let r =
            f.gw.admin("POST", "/v1/reload", None)
                .await
                .expect("reload");
        assert_eq!(r.status, 422);
        assert!(
            r.body.len() < 128 * 1024,
            "422 body of {} bytes",
            r.body.len()
        );
        let json = r.json();
        let problems = json["problems"].as_array().expect("problems").clone();
        assert_eq!(problems.len(), 100, "100 problems and a count of the rest");
        assert!(
            json["more_problems"].as_u64().is_some_and(|n| n > 0),
            "{}",
            json["more_problems"]
        );
        let text = json["problems"].to_string();
        assert!(
            text.contains("nowhere"),
            "the semantic problem is listed: {text:.300}"
        );
        assert!(text.contains("kkkk") && text.contains("unknown key"));
    }
    let events =
        f.gw.admin("GET", "/v1/events?limit=1000", None)
            .await
            .expect("events");
    assert!(
        events.body.len() < 128 * 1024,
        "GET /v1/events answered {} bytes",
        events.body.len()
    );

    // Larger than any config: refused by its size, named as such.
    let file = std::fs::File::create(f.gw.config_path()).expect("create");
    file.set_len(65 << 20).expect("grow");
    let r =
        f.gw.admin("POST", "/v1/reload", None)
            .await
            .expect("reload");
    assert_eq!(r.status, 422);
    assert!(r.text().contains("larger than the 64 MiB"), "{}", r.text());
    assert_eq!(served_by(&f.gw, "a").await, "east", "the old config serves");

    // An alert whose tracking id is 900 KB (within the 1 MiB body limit): refused, not echoed.
    let huge = alert("common-schema-activated.json").replace("4K_2-VT8", &"T".repeat(900_000));
    let r =
        f.gw.admin("POST", "/v1/alerts/azure-monitor", Some(&huge))
            .await
            .expect("reply");
    assert_eq!(r.status, 400, "{}", &r.text()[..r.text().len().min(300)]);
    assert!(r.body.len() < 4096, "{} bytes", r.body.len());
    let regions =
        f.gw.admin("GET", "/v1/regions", None)
            .await
            .expect("regions");
    assert!(regions.body.len() < 4096, "{}", regions.text());
}

#[tokio::test]
async fn reload_keeps_an_unhealthy_account_unhealthy() {
    let f = fixture("").await;
    f.east.kill().await;
    // Wait for the verdict itself: a request would already be served by west through a replay.
    assert!(
        eventually(Duration::from_secs(3), || async {
            f.gw.admin("GET", "/v1/tenants/a", None)
                .await
                .is_ok_and(|r| {
                    let v = r.json();
                    v["primary"]["health"] == "unhealthy" && v["active_side"] == "secondary"
                })
        })
        .await
    );
    let config = std::fs::read_to_string(f.gw.config_path()).expect("config");
    std::fs::write(f.gw.config_path(), format!("{config}\n# touched\n")).expect("write");
    let r =
        f.gw.admin("POST", "/v1/reload", None)
            .await
            .expect("reload");
    assert_eq!(r.status, 200, "{}", r.text());
    let a =
        f.gw.admin("GET", "/v1/tenants/a", None)
            .await
            .expect("reply")
            .json();
    assert_eq!(
        a["primary"]["health"], "unhealthy",
        "a reload must not heal an account"
    );
    assert_eq!(a["active_side"], "secondary");
    assert_eq!(served_by(&f.gw, "a").await, "west");
}

/// POSTs the sample payload `schema_file` from docs/alerts to the receiver, with the token.
async fn post_alert(gw: &TestGateway, schema_file: &str) -> pairgate_test_support::Reply {
    gw.admin(
        "POST",
        "/v1/alerts/azure-monitor",
        Some(&alert(schema_file)),
    )
    .await
    .expect("reply")
}

fn alert(schema_file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/alerts")
        .join(schema_file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn azure_monitor_alerts_drive_region_state() {
    let f = fixture("[alerts.azure_monitor]\nservices = [\"Video Indexer\"]\n").await;
    let url = |q: &str| f.gw.admin_url(&format!("/v1/alerts/azure-monitor{q}"));
    // Activated, token in the query string as action groups send it.
    let activated = alert("common-schema-activated.json");
    let r = admin_call(
        &url(&format!("?token={ADMIN_TOKEN}")),
        "POST",
        Some(&activated),
        None,
    )
    .await
    .expect("reply");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["regions"], serde_json::json!(["eastus"]));
    assert_eq!(served_by(&f.gw, "a").await, "west");
    let regions =
        f.gw.admin("GET", "/v1/regions", None)
            .await
            .expect("reply")
            .json();
    assert_eq!(
        regions["regions"][0]["marked_down"]["source"],
        "azure-monitor"
    );
    // Resolved: back to auto, and a after hold_down.
    let r = post_alert(&f.gw, "common-schema-resolved.json").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        eventually(Duration::from_secs(4), || async {
            served_by(&f.gw, "a").await == "east"
        })
        .await
    );
    // A Virtual Machines incident: not one of the configured services.
    let r = post_alert(&f.gw, "activity-log-activated.json").await;
    assert_eq!(r.status, 202, "{}", r.text());
    // Irrelevant: another monitoring service; malformed; wrong token.
    let r = post_alert(&f.gw, "common-schema-other-service-metric-alert.json").await;
    assert_eq!(r.status, 202, "{}", r.text());
    let r = admin_call(&url(""), "POST", Some("{not json"), Some(ADMIN_TOKEN))
        .await
        .expect("reply");
    assert_eq!(r.status, 400);
    let r = admin_call(&url("?token=wrong"), "POST", Some(&activated), None)
        .await
        .expect("reply");
    assert_eq!(r.status, 403);
}

/// The holder ids on `region` (index in config order), in the order `GET /v1/regions` lists
/// them, and its state.
async fn holds(gw: &TestGateway, region: usize) -> (String, Vec<String>) {
    let regions = gw
        .admin("GET", "/v1/regions", None)
        .await
        .expect("reply")
        .json();
    let r = &regions["regions"][region];
    let holders = r["holds"]
        .as_array()
        .expect("holds")
        .iter()
        .filter_map(|h| h["holder"].as_str().map(str::to_owned))
        .collect();
    (r["state"].as_str().unwrap_or("?").to_owned(), holders)
}

/// A region stays down while anyone holds it (the operator, each active incident); each holder
/// releases only its own hold, the operator can release them all, and holds survive a restart.
#[tokio::test]
async fn region_holds_are_released_only_by_their_holders() {
    let state = temp_path("state.json");
    let extra = format!(
        "[alerts.azure_monitor]\nservices = [\"Video Indexer\"]\n[state]\npath = \"{}\"\n",
        state.display()
    );
    let f = fixture(&extra).await;
    let second = |file: &str| alert(file).replace("4K_2-VT8", "SECOND-1");
    async fn post(gw: &TestGateway, body: String) -> pairgate_test_support::Reply {
        gw.admin("POST", "/v1/alerts/azure-monitor", Some(&body))
            .await
            .expect("reply")
    }
    async fn operator(gw: &TestGateway, body: &str) -> pairgate_test_support::Reply {
        let r = gw
            .admin("PUT", "/v1/regions/eastus", Some(body))
            .await
            .expect("reply");
        assert_eq!(r.status, 200, "{}", r.text());
        r
    }

    operator(&f.gw, r#"{"state":"down","reason":"drill"}"#).await;
    let r = post_alert(&f.gw, "common-schema-activated.json").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(&f.gw, second("common-schema-activated.json")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let all = vec![
        "incident:4K_2-VT8".to_owned(),
        "incident:SECOND-1".to_owned(),
        "operator".to_owned(),
    ];
    assert_eq!(holds(&f.gw, 0).await, ("down".to_owned(), all.clone()));

    // Holds survive a restart.
    let config = std::fs::read_to_string(f.gw.config_path()).expect("config");
    f.gw.shutdown().await.expect("shutdown");
    let gw = TestGateway::start(&config).await.expect("restart");
    wait_ready(&gw).await;
    assert_eq!(holds(&gw, 0).await, ("down".to_owned(), all));
    assert_eq!(served_by(&gw, "a").await, "west");

    // The first incident resolves: the operator and the second incident still hold eastus.
    let r = post_alert(&gw, "common-schema-resolved.json").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        holds(&gw, 0).await,
        (
            "down".to_owned(),
            vec!["incident:SECOND-1".to_owned(), "operator".to_owned()]
        )
    );
    // The operator releases their own hold: the active incident keeps it down, and says so.
    let r = operator(&gw, r#"{"state":"auto","reason":"drill over"}"#).await;
    assert_eq!(r.json()["state"], "down");
    assert!(r.json()["warning"].as_str().is_some(), "{}", r.text());
    assert_eq!(
        holds(&gw, 0).await,
        ("down".to_owned(), vec!["incident:SECOND-1".to_owned()])
    );
    assert_eq!(served_by(&gw, "a").await, "west");
    // A resolve of the already-resolved incident changes nothing.
    let r = post_alert(&gw, "common-schema-resolved.json").await;
    assert_eq!(r.json()["regions"], serde_json::json!([]), "{}", r.text());
    assert_eq!(holds(&gw, 0).await.0, "down");
    // The way out of an alert that never resolves: force releases every hold.
    let r = operator(
        &gw,
        r#"{"state":"auto","force":true,"reason":"stuck alert"}"#,
    )
    .await;
    assert_eq!(r.json()["state"], "auto", "{}", r.text());
    assert_eq!(holds(&gw, 0).await, ("auto".to_owned(), Vec::new()));
    assert!(
        eventually(Duration::from_secs(4), || async {
            served_by(&gw, "a").await == "east"
        })
        .await,
        "a never failed back"
    );
    let events = gw
        .admin("GET", "/v1/events", None)
        .await
        .expect("reply")
        .json();
    assert!(
        events["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| {
                e["type"] == "region_state" && e["action"] == "release_all" && e["state"] == "auto"
            }),
        "{events}"
    );
    drop((f.east, f.west));
}

/// A state file from before holds (version 1: one mark per region) still loads: an incident's
/// mark becomes that incident's hold, which its `Resolved` releases.
#[tokio::test]
async fn version_1_state_file_marks_become_holds() {
    let state = temp_path("state.json");
    std::fs::write(
        &state,
        r#"{"version": 1,
            "tenants": {"b": {"value": "secondary", "reason": "old pin", "source": "operator", "at_unix_ms": 1}},
            "regions": {"eastus": {"value": "down", "reason": "azure service health incident 4K_2-VT8",
                                   "source": "azure-monitor", "at_unix_ms": 2}}}"#,
    )
    .expect("v1 state");
    let extra = format!(
        "[alerts.azure_monitor]\nservices = [\"Video Indexer\"]\n[state]\npath = \"{}\"\n",
        state.display()
    );
    let f = fixture(&extra).await;
    assert_eq!(
        holds(&f.gw, 0).await,
        ("down".to_owned(), vec!["incident:4K_2-VT8".to_owned()])
    );
    assert_eq!(served_by(&f.gw, "a").await, "west");
    assert_eq!(served_by(&f.gw, "b").await, "east", "b's pin survived");
    let r = post_alert(&f.gw, "common-schema-resolved.json").await;
    assert_eq!(
        r.json()["regions"],
        serde_json::json!(["eastus"]),
        "{}",
        r.text()
    );
    assert_eq!(holds(&f.gw, 0).await, ("auto".to_owned(), Vec::new()));
}

/// The older activity-log schema, matched through `azure_name` ("West Europe" is `westus` here).
#[tokio::test]
async fn activity_log_alerts_match_regions_by_azure_name() {
    let (east, west) = (mock("east", "eastus").await, mock("west", "westus").await);
    let toml = pair_config(
        &[("east", "eastus", &east), ("west", "westus", &west)],
        &[("a", "east", Some("west")), ("b", "west", Some("east"))],
        FAST,
    )
    .replace(
        "name = \"westus\"\npair = \"eastus\"",
        "name = \"westus\"\npair = \"eastus\"\nazure_name = \"West Europe\"",
    );
    let gw = TestGateway::start(&toml).await.expect("gateway");
    wait_ready(&gw).await;
    let r = post_alert(&gw, "activity-log-activated.json").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["regions"], serde_json::json!(["westus"]));
    assert_eq!(served_by(&gw, "b").await, "east");
    let r = post_alert(&gw, "activity-log-resolved.json").await;
    assert_eq!(r.json()["state"], "auto", "{}", r.text());
    assert_eq!(r.json()["regions"], serde_json::json!(["westus"]));
    let regions = gw
        .admin("GET", "/v1/regions", None)
        .await
        .expect("reply")
        .json();
    assert_eq!(regions["regions"][1]["state"], "auto");
}

#[tokio::test]
async fn alerts_for_other_services_are_ignored() {
    let f = fixture("[alerts.azure_monitor]\nservices = [\"Some Other Service\"]\n").await;
    let r =
        f.gw.admin(
            "POST",
            "/v1/alerts/azure-monitor",
            Some(&alert("common-schema-activated.json")),
        )
        .await
        .expect("reply");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(served_by(&f.gw, "a").await, "east");
}

/// Counters move with traffic and failovers; every documented family is present.
#[tokio::test]
async fn metrics_are_present_and_move() {
    let f = fixture("").await;
    let scrape = || async {
        f.gw.admin("GET", "/metrics", None)
            .await
            .expect("metrics")
            .text()
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    };
    let before = scrape().await;
    for family in [
        "pairgate_requests_total",
        "pairgate_request_duration_seconds",
        "pairgate_account_healthy",
        "pairgate_tenant_active_side",
        "pairgate_failovers_total",
        "pairgate_replays_total",
        "pairgate_probes_total",
        "pairgate_config_reloads_total",
        "pairgate_config_generation",
        "pairgate_region_down",
        "pairgate_request_errors_total",
        "pairgate_tenant_requests_total",
        "pairgate_passive_failures_total",
        "pairgate_account_health_info",
        "pairgate_failbacks_total",
        "pairgate_pins_total",
        "pairgate_tenants_pinned",
        "pairgate_tenants_on_secondary",
        "pairgate_requests_in_flight",
        "pairgate_build_info",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(
            before.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
    for _ in 0..5 {
        get(&f.gw.url("/x"), "a.example.com").await.expect("reply");
    }
    get(&f.gw.url("/x"), "nobody.example.com")
        .await
        .expect("reply");
    f.gw.admin("PUT", "/v1/regions/eastus", Some(r#"{"state":"down"}"#))
        .await
        .expect("down");
    // Probes run every 200 ms: wait for the next one to be counted.
    let probes = |t: &str| {
        value(
            t,
            "pairgate_probes_total{account=\"east\",result=\"success\"}",
        )
    };
    let before_probes = probes(&before);
    assert!(
        eventually(Duration::from_secs(3), || async {
            probes(&scrape().await) > before_probes
        })
        .await
    );
    let after = scrape().await;
    let series =
        "pairgate_requests_total{region=\"eastus\",account=\"east\",side=\"primary\",code=\"2xx\"}";
    assert_eq!(value(&after, series) - value(&before, series), 5.0);
    assert_eq!(
        value(
            &after,
            "pairgate_requests_total{region=\"none\",account=\"none\",side=\"none\",code=\"4xx\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "pairgate_failovers_total{region=\"eastus\",cause=\"region_marked_down\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&after, "pairgate_tenants_on_secondary{region=\"eastus\"}"),
        1.0
    );
    assert_eq!(
        value(&after, "pairgate_failbacks_total{region=\"eastus\"}"),
        0.0
    );
    assert_eq!(
        value(
            &after,
            "pairgate_request_errors_total{error=\"unknown_tenant\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "pairgate_account_health_info{account=\"east\",cause=\"success\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&after, "pairgate_region_down{region=\"eastus\"}"),
        1.0
    );
    assert_eq!(
        value(&after, "pairgate_tenant_active_side{tenant=\"a\"}"),
        1.0
    );
    assert!(
        value(
            &after,
            "pairgate_request_duration_seconds_count{region=\"eastus\",account=\"east\",side=\"primary\",code=\"2xx\"}"
        ) >= 5.0
    );
    assert_eq!(
        value(
            &after,
            "pairgate_account_healthy{account=\"east\",region=\"eastus\"}"
        ),
        1.0
    );
}

/// SIGTERM lets an in-flight request finish, then the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_completes_at_sigterm() {
    drains_at_sigterm("", "sigterm.toml").await;
}

/// `worker_threads = 1` runs on Tokio's current-thread scheduler: the same process serves,
/// probes, reloads on SIGHUP and drains at SIGTERM on that one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_worker_runtime_serves_reloads_and_drains() {
    drains_at_sigterm("[runtime]\nworker_threads = 1\n", "sigterm-single.toml").await;
}

async fn drains_at_sigterm(runtime: &str, file: &str) {
    let west = mock("west", "westus").await;
    let listen = "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let path = temp_path(file);
    let toml = format!(
        "{listen}{runtime}{}",
        pair_config(&[("west", "westus", &west)], &[("slow", "west", None)], "")
    );
    let mut gw = GatewayProcess::spawn(&path, &toml, &[]).expect("gateway process");
    // SIGHUP picks up a tenant added to the file.
    assert_eq!(
        get(&gw.url("/x"), "fresh.example.com")
            .await
            .expect("reply")
            .status,
        404
    );
    let reloaded = format!(
        "{listen}{runtime}{}",
        pair_config(
            &[("west", "westus", &west)],
            &[("slow", "west", None), ("fresh", "west", None)],
            ""
        )
    );
    std::fs::write(&path, reloaded).expect("rewrite config");
    gw.signal("HUP").expect("SIGHUP");
    let url = gw.url("/x");
    let routed = crate::support::eventually(Duration::from_secs(10), || async {
        matches!(get(&url, "fresh.example.com").await, Ok(r) if r.status == 200)
    })
    .await;
    assert!(
        routed,
        "the reloaded tenant never routed; log:\n{}",
        gw.stderr()
    );
    let url = gw.url("/delay/1500");
    let request = tokio::spawn(async move { get(&url, "slow.example.com").await });
    // In flight once the account has it (the mock records it before its 1.5 s delay).
    assert!(
        crate::support::eventually(Duration::from_secs(5), || async {
            west.requests().iter().any(|r| r.uri == "/delay/1500")
        })
        .await,
        "the slow request never reached the account"
    );
    gw.signal("TERM").expect("SIGTERM");
    let reply = request
        .await
        .expect("task")
        .expect("the in-flight request completes");
    assert_eq!(reply.status, 200);
    let exit = gw
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the request");
    assert_eq!(exit, Some(0), "exit code; log:\n{}", gw.stderr());
    // What was logged up to the exit reaches stderr: the slow request's access line (written
    // when its body ended, just before the exit) and the shutdown message; the log writer's
    // guard writes out its queue before the process ends.
    assert!(
        gw.wait_stderr(Duration::from_secs(5), |log| {
            log.contains("shutting down")
                && log
                    .lines()
                    .any(|l| l.contains("pairgate::access") && l.contains("/delay/1500"))
        })
        .await,
        "lines logged before the exit are missing:\n{}",
        gw.stderr()
    );
    // New connections are refused once it has stopped.
    assert!(get(&gw.url("/x"), "slow.example.com").await.is_err());
}

/// `runtime.shutdown_delay`: at SIGTERM `/readyz` turns 503 at once while requests are still
/// served; when the delay ends the listeners close and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_at_sigterm_while_still_serving() {
    let west = mock("west", "westus").await;
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [runtime]\nshutdown_delay = \"4s\"\n{}",
        pair_config(&[("west", "westus", &west)], &[("t", "west", None)], "")
    );
    let mut gw = GatewayProcess::spawn(&temp_path("shutdown-delay.toml"), &toml, &[])
        .expect("gateway process");
    // The line naming the admin address may reach the log collector just after spawn returns.
    let admin_in_log = |log: String| {
        log.split_whitespace()
            .find_map(|w| w.strip_prefix("admin="))
            .map(|a| a.trim_matches('"').to_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let admin = loop {
        if let Some(admin) = admin_in_log(gw.stderr()) {
            break admin;
        }
        assert!(Instant::now() < deadline, "no admin address in the log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let readyz = format!("http://{admin}/readyz");
    let status = |url: String| async move { get(&url, "localhost").await.map(|r| r.status) };
    assert!(
        eventually(Duration::from_secs(10), || async {
            status(readyz.clone()).await.is_ok_and(|s| s == 200)
        })
        .await,
        "never ready; log:\n{}",
        gw.stderr()
    );
    gw.signal("TERM").expect("SIGTERM");
    let at_term = Instant::now();
    assert!(
        eventually(Duration::from_secs(2), || async {
            status(readyz.clone()).await.is_ok_and(|s| s == 503)
        })
        .await,
        "/readyz did not turn 503 at SIGTERM; log:\n{}",
        gw.stderr()
    );
    // Still serving, on new connections too, well inside the delay.
    let served = get(&gw.url("/x"), "t.example.com").await.map(|r| r.status);
    assert!(
        at_term.elapsed() < Duration::from_millis(3500),
        "the checks took too long to say anything about the delay"
    );
    assert!(
        served.as_ref().is_ok_and(|s| *s == 200),
        "a request during the delay: {served:?}"
    );
    let exit = gw
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the delay");
    assert_eq!(exit, Some(0), "exit code; log:\n{}", gw.stderr());
    assert!(
        at_term.elapsed() >= Duration::from_secs(4),
        "exited before shutdown_delay"
    );
    assert!(get(&gw.url("/x"), "t.example.com").await.is_err());
}

/// An admin listener off loopback without a token: refuse to start.
#[test]
fn refuses_a_public_admin_listener_without_a_token() {
    let toml = "[admin]\nlisten = \"0.0.0.0:0\"\n[listen]\nhttp = \"127.0.0.1:0\"\n[[region]]\nname = \"r\"\n[[account]]\nname = \"x\"\nregion = \"r\"\nurl = \"http://127.0.0.1:9\"\n[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"x\"\n";
    let path = temp_path("public-admin.toml");
    std::fs::write(&path, toml).expect("write");
    let out = std::process::Command::new(pairgate_test_support::pairgate_bin().expect("binary"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("PAIRGATE_ADMIN_TOKEN")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not loopback") && err.contains("token"),
        "{err}"
    );
}
