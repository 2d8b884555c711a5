//! The client against a real etcd (started per test by `testing::EtcdServer`).

use std::time::Duration;

use pairgate_cluster::testing::EtcdServer;
use pairgate_cluster::{CasOutcome, Etcd, EtcdError, EventKind, WatchEvent};
use tokio::time::{Instant, sleep, timeout};

/// Client timeout in these tests.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on any wait for something etcd does on its own (lease expiry, a watch event).
const WAIT: Duration = Duration::from_secs(10);

async fn start() -> (EtcdServer, Etcd) {
    let server = EtcdServer::start().await.expect("start etcd");
    let etcd = server.client(TIMEOUT);
    (server, etcd)
}

/// The next batch of `watch`, within [`WAIT`].
async fn next_batch(watch: &mut pairgate_cluster::WatchStream) -> (i64, Vec<WatchEvent>) {
    timeout(WAIT, watch.next())
        .await
        .expect("watch batch within WAIT")
        .expect("watch still open")
        .expect("watch batch, not an error")
}

/// `(kind, key, value, mod_revision)` of each event, for compact assertions.
fn summary(events: &[WatchEvent]) -> Vec<(EventKind, String, String, i64)> {
    events
        .iter()
        .map(|e| {
            (
                e.kind,
                e.kv.key.clone(),
                String::from_utf8_lossy(&e.kv.value).into_owned(),
                e.kv.mod_revision,
            )
        })
        .collect()
}

#[tokio::test]
async fn status_reports_version_revision_and_leader() {
    let (_server, etcd) = start().await;
    let status = etcd.status().await.unwrap();
    assert!(status.version.starts_with("3."), "{status:?}");
    assert!(status.revision >= 1, "{status:?}");
    assert_ne!(status.leader, 0, "{status:?}");
    assert_eq!(
        status.leader, status.member_id,
        "single member leads: {status:?}"
    );
}

#[tokio::test]
async fn put_get_prefix_delete() {
    let (_server, etcd) = start().await;
    assert_eq!(etcd.get("t/a").await.unwrap(), None);

    let r1 = etcd.put("t/a", b"one", None).await.unwrap();
    let r2 = etcd.put("t/b", b"", None).await.unwrap();
    let binary: Vec<u8> = (0..=255).collect();
    let r3 = etcd.put("t/c", &binary, None).await.unwrap();
    etcd.put("u/x", b"outside", None).await.unwrap();
    assert!(r1 < r2 && r2 < r3, "{r1} {r2} {r3}");

    let a = etcd.get("t/a").await.unwrap().unwrap();
    assert_eq!((a.key.as_str(), a.value.as_slice()), ("t/a", &b"one"[..]));
    assert_eq!(
        (a.create_revision, a.mod_revision, a.version, a.lease),
        (r1, r1, 1, 0)
    );
    assert_eq!(etcd.get("t/b").await.unwrap().unwrap().value, b"");
    assert_eq!(etcd.get("t/c").await.unwrap().unwrap().value, binary);

    let r4 = etcd.put("t/a", b"two", None).await.unwrap();
    let a = etcd.get("t/a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r1, r4, 2));

    let (kvs, revision) = etcd.get_prefix("t/").await.unwrap();
    let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["t/a", "t/b", "t/c"]);
    assert_eq!(revision, r4, "header revision is the store's");
    assert_eq!(
        etcd.get_prefix("").await.unwrap().0.len(),
        4,
        "empty prefix: everything"
    );
    assert!(etcd.get_prefix("nothing/").await.unwrap().0.is_empty());

    assert!(etcd.delete("t/a").await.unwrap());
    assert!(
        !etcd.delete("t/a").await.unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(etcd.get("t/a").await.unwrap(), None);
    assert_eq!(etcd.get_prefix("t/").await.unwrap().0.len(), 2);
}

#[tokio::test]
async fn compare_and_swap_lets_exactly_one_writer_win() {
    let (server, etcd) = start().await;

    // 0 = must not exist: create-if-absent.
    let created = etcd.put_if_revision("d/t1", b"v1", 0, None).await.unwrap();
    let CasOutcome::Written { revision: rev1 } = created else {
        panic!("create-if-absent on a missing key: {created:?}");
    };
    let again = etcd.put_if_revision("d/t1", b"v1b", 0, None).await.unwrap();
    let CasOutcome::Conflict {
        current: Some(current),
    } = again
    else {
        panic!("create-if-absent on an existing key: {again:?}");
    };
    assert_eq!(
        (current.value.as_slice(), current.mod_revision),
        (&b"v1"[..], rev1)
    );

    // Two writers race with the same expectation, over separate clients (connections).
    let other = Etcd::new(&[server.endpoint()], TIMEOUT).unwrap();
    for round in 0..10 {
        let expected = etcd.get("d/t1").await.unwrap().unwrap().mod_revision;
        let a = format!("a{round}");
        let b = format!("b{round}");
        let (ra, rb) = tokio::join!(
            etcd.put_if_revision("d/t1", a.as_bytes(), expected, None),
            other.put_if_revision("d/t1", b.as_bytes(), expected, None),
        );
        let outcomes = [ra.unwrap(), rb.unwrap()];
        let written: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| match o {
                CasOutcome::Written { revision } => Some(*revision),
                CasOutcome::Conflict { .. } => None,
            })
            .collect();
        assert_eq!(written.len(), 1, "round {round}: {outcomes:?}");
        let winner = etcd.get("d/t1").await.unwrap().unwrap();
        assert_eq!(winner.mod_revision, written[0]);
        let loser = outcomes
            .iter()
            .find_map(|o| match o {
                CasOutcome::Conflict { current } => Some(current.clone().unwrap()),
                CasOutcome::Written { .. } => None,
            })
            .unwrap();
        assert_eq!(loser, winner, "the loser sees the winner's write");
    }

    // A stale expectation on a deleted key conflicts with `current: None`.
    etcd.delete("d/t1").await.unwrap();
    let stale = etcd
        .put_if_revision("d/t1", b"x", rev1, None)
        .await
        .unwrap();
    assert_eq!(stale, CasOutcome::Conflict { current: None });
}

#[tokio::test]
async fn lease_keepalive_and_revoke_remove_keys() {
    let (_server, etcd) = start().await;
    let lease = etcd.grant_lease(Duration::from_secs(30)).await.unwrap();
    etcd.put("h/r1", b"healthy", Some(lease)).await.unwrap();
    let kv = etcd.get("h/r1").await.unwrap().unwrap();
    assert_eq!(kv.lease, lease);

    let ttl = etcd.keep_alive(lease).await.unwrap();
    assert!(
        ttl > Duration::from_secs(25) && ttl <= Duration::from_secs(30),
        "{ttl:?}"
    );

    // CAS under a lease attaches it too.
    let cas = etcd
        .put_if_revision("h/r2", b"x", 0, Some(lease))
        .await
        .unwrap();
    assert!(matches!(cas, CasOutcome::Written { .. }), "{cas:?}");

    etcd.revoke(lease).await.unwrap();
    assert_eq!(
        etcd.get("h/r1").await.unwrap(),
        None,
        "revoke deletes the lease's keys"
    );
    assert_eq!(etcd.get("h/r2").await.unwrap(), None);
    let err = etcd.keep_alive(lease).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    etcd.revoke(lease).await.expect("revoke is idempotent");

    let err = etcd.put("h/r3", b"x", Some(lease)).await.unwrap_err();
    assert!(err.is_not_found(), "put with a revoked lease: {err:?}");
}

#[tokio::test]
async fn lease_expiry_removes_keys() {
    let (_server, etcd) = start().await;
    let lease = etcd.grant_lease(Duration::from_secs(1)).await.unwrap();
    etcd.put("h/short", b"x", Some(lease)).await.unwrap();
    let (_, revision) = etcd.get_prefix("h/").await.unwrap();
    let mut watch = etcd.watch_prefix("h/", revision + 1).await.unwrap();

    let started = Instant::now();
    let (_, events) = next_batch(&mut watch).await;
    let expired_after = started.elapsed();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].kind, events[0].kv.key.as_str()),
        (EventKind::Delete, "h/short")
    );
    assert_eq!(etcd.get("h/short").await.unwrap(), None);
    assert!(etcd.keep_alive(lease).await.unwrap_err().is_not_found());
    eprintln!("1 s lease expired after {expired_after:?}");
}

#[tokio::test]
async fn watch_delivers_puts_and_deletes_in_order() {
    let (_server, etcd) = start().await;
    etcd.put("outside", b"x", None).await.unwrap();
    let mut watch = etcd.watch_prefix("w/", 0).await.unwrap();

    let r1 = etcd.put("w/a", b"1", None).await.unwrap();
    etcd.put("not-w/a", b"ignored", None).await.unwrap();
    let r2 = etcd.put("w/b", b"2", None).await.unwrap();
    let r3 = etcd.put("w/a", b"3", None).await.unwrap();
    assert!(etcd.delete("w/b").await.unwrap());
    let (_, after_delete) = etcd.get_prefix("w/").await.unwrap();

    let mut seen = Vec::new();
    let mut revisions = Vec::new();
    while seen.len() < 4 {
        let (revision, events) = next_batch(&mut watch).await;
        revisions.push(revision);
        seen.extend(summary(&events));
    }
    let put = |k: &str, v: &str, r| (EventKind::Put, k.to_owned(), v.to_owned(), r);
    assert_eq!(
        seen,
        [
            put("w/a", "1", r1),
            put("w/b", "2", r2),
            put("w/a", "3", r3),
            (
                EventKind::Delete,
                "w/b".to_owned(),
                String::new(),
                after_delete
            ),
        ]
    );
    assert_eq!(
        revisions,
        [r1, r2, r3, after_delete],
        "one batch per revision"
    );
}

#[tokio::test]
async fn watch_resumes_after_reconnect_without_missing_events() {
    let (mut server, etcd) = start().await;
    let (_, start_revision) = etcd.get_prefix("p/").await.unwrap();
    let mut watch = etcd.watch_prefix("p/", start_revision + 1).await.unwrap();
    let first = etcd.put("p/1", b"a", None).await.unwrap();
    let (last_seen, events) = next_batch(&mut watch).await;
    assert_eq!((last_seen, events.len()), (first, 1));

    // The connection breaks: the stream ends with Unavailable, then nothing.
    server.kill().unwrap();
    let err = timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, EtcdError::Unavailable(_)), "{err:?}");
    assert!(watch.next().await.is_none(), "a broken watch stays ended");

    // Writes happen while nobody watches.
    server.restart().await.unwrap();
    let missed_put = etcd.put("p/2", b"b", None).await.unwrap();
    etcd.delete("p/1").await.unwrap();
    let (_, missed_delete) = etcd.get_prefix("p/").await.unwrap();

    // Resuming from the last seen revision + 1 replays exactly what was missed, then goes on.
    let mut watch = etcd.watch_prefix("p/", last_seen + 1).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.extend(summary(&next_batch(&mut watch).await.1));
    }
    let live = etcd.put("p/3", b"c", None).await.unwrap();
    seen.extend(summary(&next_batch(&mut watch).await.1));
    assert_eq!(
        seen,
        [
            (EventKind::Put, "p/2".to_owned(), "b".to_owned(), missed_put),
            (
                EventKind::Delete,
                "p/1".to_owned(),
                String::new(),
                missed_delete
            ),
            (EventKind::Put, "p/3".to_owned(), "c".to_owned(), live),
        ]
    );
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_a_distinct_error() {
    let (_server, etcd) = start().await;
    let first = etcd.put("c/k", b"1", None).await.unwrap();
    etcd.put("c/k", b"2", None).await.unwrap();
    let third = etcd.put("c/k", b"3", None).await.unwrap();
    etcd.compact(third).await.unwrap();

    let mut watch = etcd.watch_prefix("c/", first).await.unwrap();
    let err = timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        EtcdError::Compacted {
            compact_revision: third
        }
    );
    assert!(watch.next().await.is_none());

    // The resync the error asks for works: read, then watch from the read's revision + 1.
    let (kvs, revision) = etcd.get_prefix("c/").await.unwrap();
    assert_eq!(kvs[0].value, b"3");
    let mut watch = etcd.watch_prefix("c/", revision + 1).await.unwrap();
    let next = etcd.put("c/k", b"4", None).await.unwrap();
    assert_eq!(next_batch(&mut watch).await.0, next);
}

#[tokio::test]
async fn killed_etcd_fails_fast_then_recovers_after_restart() {
    let (mut server, etcd) = start().await;
    etcd.put("k/durable", b"kept", None).await.unwrap();

    server.kill().unwrap();
    for round in 0..3 {
        let started = Instant::now();
        let err = etcd.get("k/durable").await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, EtcdError::Unavailable(_)),
            "round {round}: {err:?}"
        );
        assert!(took < TIMEOUT, "round {round}: failed after {took:?}");
        eprintln!("round {round}: Unavailable after {took:?}");
    }
    let err = etcd.watch_prefix("k/", 0).await.unwrap_err();
    assert!(matches!(err, EtcdError::Unavailable(_)), "{err:?}");
    assert!(matches!(
        etcd.grant_lease(Duration::from_secs(5)).await,
        Err(EtcdError::Unavailable(_))
    ));

    let started = Instant::now();
    server.restart().await.unwrap();
    eprintln!("restart ready after {:?}", started.elapsed());
    let kv = etcd.get("k/durable").await.unwrap().unwrap();
    assert_eq!(kv.value, b"kept", "data survives SIGKILL");
    etcd.put("k/after", b"x", None).await.unwrap();
}

#[tokio::test]
async fn unanswered_call_times_out() {
    // A listener that accepts (the kernel does) and never answers: a black hole.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    let etcd = Etcd::new(&[endpoint], Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    assert_eq!(etcd.get("x").await.unwrap_err(), EtcdError::Timeout);
    assert_eq!(
        etcd.watch_prefix("x", 0).await.unwrap_err(),
        EtcdError::Timeout
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn fails_over_to_the_next_endpoint() {
    let (server, _) = start().await;
    // A port nobody listens on: connects are refused.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let etcd = Etcd::new(&[dead.clone(), server.endpoint()], TIMEOUT).unwrap();
    etcd.put("f/k", b"v", None).await.unwrap();
    assert_eq!(etcd.get("f/k").await.unwrap().unwrap().value, b"v");
    let mut watch = etcd.watch_prefix("f/", 0).await.unwrap();
    etcd.delete("f/k").await.unwrap();
    assert_eq!(next_batch(&mut watch).await.1[0].kind, EventKind::Delete);

    // All endpoints dead: Unavailable naming each.
    let none = Etcd::new(&[dead.clone(), dead], TIMEOUT).unwrap();
    let EtcdError::Unavailable(message) = none.status().await.unwrap_err() else {
        panic!("Unavailable expected");
    };
    assert_eq!(message.matches("127.0.0.1").count(), 2, "{message}");
}

#[tokio::test]
async fn servers_are_independent_and_drop_cleans_up() {
    // Two servers at once get distinct ports and data dirs.
    let (a, _) = start().await;
    let (b, _) = start().await;
    assert_ne!(a.endpoint(), b.endpoint());
    assert_ne!(a.dir(), b.dir());
    let dir = a.dir().to_owned();
    assert!(dir.join("etcd.log").is_file());
    drop(a);
    sleep(Duration::from_millis(10)).await;
    assert!(!dir.exists(), "drop removes the data dir");
}

/// With authentication on: no credentials is refused, wrong ones too, right ones work for
/// unary calls and watches, and a revoked token is replaced without the caller noticing.
#[tokio::test]
async fn credentials_authenticate_and_recover_from_a_lost_token() {
    let (server, _plain) = start().await;
    server
        .enable_auth("s3cret-root")
        .await
        .expect("enable auth");
    let endpoint = [server.endpoint()];

    let anonymous = Etcd::new(&endpoint, Duration::from_secs(3)).expect("client");
    let refused = anonymous
        .put("/a", b"1", None)
        .await
        .expect_err("anonymous write refused");
    assert!(matches!(refused, EtcdError::Status { .. }), "{refused:?}");

    let wrong = Etcd::new_with_credentials(&endpoint, Duration::from_secs(3), "root", "nope")
        .expect("client");
    assert!(
        wrong.put("/a", b"1", None).await.is_err(),
        "wrong password accepted"
    );

    let root = Etcd::new_with_credentials(&endpoint, Duration::from_secs(3), "root", "s3cret-root")
        .expect("client");
    root.put("/pg/a", b"1", None)
        .await
        .expect("authenticated write");
    assert_eq!(
        root.get("/pg/a").await.expect("read").expect("key").value,
        b"1"
    );
    let mut watch = root
        .watch_prefix("/pg/", 0)
        .await
        .expect("authenticated watch");
    root.put("/pg/b", b"2", None).await.expect("write");
    let (_, events) = next_batch(&mut watch).await;
    assert_eq!(events[0].kv.key, "/pg/b");

    // A token etcd no longer accepts is replaced without the caller noticing.
    root.invalidate_token_for_test();
    root.put("/pg/c", b"3", None)
        .await
        .expect("write after the token expired");
    assert_eq!(
        root.get("/pg/c").await.expect("read").expect("key").value,
        b"3"
    );
}
