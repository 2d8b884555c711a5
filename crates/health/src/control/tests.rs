//! Controller tests: overrides wait for their write, which runs off the runtime workers.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pairgate_config::Config;
use pairgate_failover::{Mode, Side};
use pairgate_routing::RouteTable;
use tokio::sync::mpsc;

use super::{Command, ControlError, ControlHandle, Controller, StateWriter};
use crate::events::{EventKind, EventLog};
use crate::state::{Loaded, PersistedState, load, save};

/// Longest any wait in these tests may take.
const BOUND: Duration = Duration::from_secs(10);

fn temp_state(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pairgate-control-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("state.json")
}

/// Two accounts in paired regions and `tenants` tenants on them, with a state file at `state`.
fn config(tenants: usize, state: &Path) -> Config {
    let mut toml = format!(
        "[state]\npath = \"{}\"\n\
         [[region]]\nname = \"eastus\"\npair = \"westus\"\n\
         [[region]]\nname = \"westus\"\npair = \"eastus\"\n\
         [[account]]\nname = \"east\"\nregion = \"eastus\"\nurl = \"http://127.0.0.1:9\"\n\
         [[account]]\nname = \"west\"\nregion = \"westus\"\nurl = \"http://127.0.0.1:10\"\n",
        state.display()
    );
    for i in 0..tenants {
        toml.push_str(&format!(
            "[[tenant]]\nname = \"t{i}\"\nhosts = [\"t{i}.example.com\"]\nprimary = \"east\"\nsecondary = \"west\"\n"
        ));
    }
    pairgate_config::load(&toml, &|_| None)
        .expect("valid config")
        .config
}

/// Starts a controller for `config` writing through `writer`; returns its handle and event log.
fn start(config: &Config, writer: StateWriter) -> (ControlHandle, Arc<EventLog>) {
    let table = Arc::new(RouteTable::compile(config, 1, None).expect("compiles"));
    let events = Arc::new(EventLog::new(1024));
    let (tx, rx) = mpsc::unbounded_channel();
    let (handle, _task) = Controller::new(
        config,
        table,
        Arc::clone(&events),
        PersistedState::default(),
    )
    .with_state_writer(writer)
    .spawn(tx, rx);
    (handle, events)
}

/// A filesystem whose every write takes `delay` (a slow disk's fsync), counted.
fn slow_writer(delay: Duration, writes: Arc<AtomicUsize>, fail: Arc<AtomicBool>) -> StateWriter {
    Arc::new(move |path: &Path, state: &PersistedState| {
        writes.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(delay);
        if fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("disk full"));
        }
        save(path, state)
    })
}

fn saved(path: &Path) -> PersistedState {
    match load(path) {
        Loaded::Found(state) => state,
        other => panic!("no state file: {other:?}"),
    }
}

/// 100 pins sent at once are one or a few writes, every caller is answered after the write that
/// carried its change, and the file holds the last state: a pin and an unpin sent in that order
/// leave no pin.
#[tokio::test]
async fn a_burst_of_pins_is_coalesced_and_the_last_state_wins() {
    let path = temp_state("burst");
    let config = config(100, &path);
    let writes = Arc::new(AtomicUsize::new(0));
    let writer = slow_writer(
        Duration::from_millis(50),
        Arc::clone(&writes),
        Arc::new(AtomicBool::new(false)),
    );
    let (control, _events) = start(&config, writer);

    let pins: Vec<_> = (0..100)
        .map(|i| {
            let control = control.clone();
            tokio::spawn(async move {
                control
                    .set_mode(&format!("t{i}"), Mode::Pinned(Side::Secondary), "drill")
                    .await
            })
        })
        .collect();
    for pin in pins {
        let view = tokio::time::timeout(BOUND, pin)
            .await
            .expect("answered in time")
            .expect("task")
            .expect("pinned");
        assert_eq!(view.state.side, Side::Secondary);
        assert_eq!(view.state.mode, Mode::Pinned(Side::Secondary));
    }
    let n = writes.load(Ordering::SeqCst);
    assert!((1..=3).contains(&n), "100 pins took {n} writes");
    assert_eq!(saved(&path).tenants.len(), 100);

    // Pin then unpin t0, in that order on the channel, answers awaited afterwards.
    let (pin_tx, pin_rx) = tokio::sync::oneshot::channel();
    let (unpin_tx, unpin_rx) = tokio::sync::oneshot::channel();
    let sender = control.sender();
    for (mode, reply) in [
        (Mode::Pinned(Side::Primary), pin_tx),
        (Mode::Auto, unpin_tx),
    ] {
        sender
            .send(Command::SetMode {
                tenant: "t0".to_owned(),
                mode,
                reason: "order".to_owned(),
                reply,
            })
            .expect("controller running");
    }
    let pinned = tokio::time::timeout(BOUND, pin_rx)
        .await
        .expect("in time")
        .expect("answered")
        .expect("pinned");
    assert_eq!(pinned.state.mode, Mode::Pinned(Side::Primary));
    let unpinned = tokio::time::timeout(BOUND, unpin_rx)
        .await
        .expect("in time")
        .expect("answered")
        .expect("unpinned");
    assert_eq!(unpinned.state.mode, Mode::Auto);
    let file = saved(&path);
    assert!(
        !file.tenants.contains_key("t0"),
        "{:?}",
        file.tenants.get("t0")
    );
    assert_eq!(file.tenants.len(), 99);
}

/// A write that fails refuses every change it carried: none is applied, each is an event; a
/// later write that succeeds applies the change.
#[tokio::test]
async fn a_failed_write_refuses_every_change_it_carried() {
    let path = temp_state("failed");
    let config = config(5, &path);
    let fail = Arc::new(AtomicBool::new(true));
    let writer = slow_writer(
        Duration::from_millis(20),
        Arc::new(AtomicUsize::new(0)),
        Arc::clone(&fail),
    );
    let (control, events) = start(&config, writer);
    let pins: Vec<_> = (0..5)
        .map(|i| {
            let control = control.clone();
            tokio::spawn(async move {
                control
                    .set_mode(&format!("t{i}"), Mode::Pinned(Side::Secondary), "drill")
                    .await
            })
        })
        .collect();
    for pin in pins {
        let answer = tokio::time::timeout(BOUND, pin)
            .await
            .expect("in time")
            .expect("task");
        assert_eq!(answer, Err(ControlError::NotPersisted));
    }
    for i in 0..5 {
        let view = control.tenant(&format!("t{i}")).await.expect("tenant");
        assert_eq!(
            (view.state.mode, view.state.side),
            (Mode::Auto, Side::Primary)
        );
    }
    let refused = events
        .after(0, 100)
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::StateNotPersisted { .. }))
        .count();
    assert_eq!(refused, 5);
    assert!(!path.exists(), "a refused change reached the file");

    fail.store(false, Ordering::SeqCst);
    let view = tokio::time::timeout(
        BOUND,
        control.set_mode("t1", Mode::Pinned(Side::Secondary), "again"),
    )
    .await
    .expect("in time")
    .expect("pinned");
    assert_eq!(view.state.side, Side::Secondary);
    assert_eq!(saved(&path).tenants.len(), 1);
}

/// The data plane shares the runtime worker with the controller (`worker_threads = 1`): while
/// 100 pins are written to a filesystem that takes 300 ms a write, a TCP echo served on that
/// worker keeps answering well within a write's time.
#[test]
fn a_slow_state_file_does_not_block_the_runtime_worker() {
    const WRITE: Duration = Duration::from_millis(300);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let path = temp_state("slow");
    let config = config(100, &path);
    let writes = Arc::new(AtomicUsize::new(0));
    let worst = runtime.block_on(async {
        let writer = slow_writer(WRITE, Arc::clone(&writes), Arc::new(AtomicBool::new(false)));
        let (control, _events) = start(&config, writer);
        // The stand-in data plane: an echo server on the same single worker.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1];
                    while tokio::io::AsyncReadExt::read_exact(&mut conn, &mut buf)
                        .await
                        .is_ok()
                    {
                        if tokio::io::AsyncWriteExt::write_all(&mut conn, &buf)
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        // A client on its own thread measures round trips until the pins are done.
        let done = Arc::new(AtomicBool::new(false));
        let (result_tx, result_rx) = tokio::sync::oneshot::channel();
        let client_done = Arc::clone(&done);
        std::thread::spawn(move || {
            let measure = || -> std::io::Result<(Duration, usize)> {
                let mut conn = std::net::TcpStream::connect(addr)?;
                conn.set_read_timeout(Some(BOUND))?;
                conn.set_nodelay(true)?;
                let (mut worst, mut trips) = (Duration::ZERO, 0);
                let mut buf = [0u8; 1];
                while !client_done.load(Ordering::SeqCst) {
                    let sent = Instant::now();
                    conn.write_all(b"x")?;
                    conn.read_exact(&mut buf)?;
                    worst = worst.max(sent.elapsed());
                    trips += 1;
                }
                Ok((worst, trips))
            };
            let _ = result_tx.send(measure());
        });
        let pins: Vec<_> = (0..100)
            .map(|i| {
                let control = control.clone();
                tokio::spawn(async move {
                    control
                        .set_mode(&format!("t{i}"), Mode::Pinned(Side::Secondary), "load")
                        .await
                })
            })
            .collect();
        for pin in pins {
            tokio::time::timeout(BOUND, pin)
                .await
                .expect("in time")
                .expect("task")
                .expect("pinned");
        }
        done.store(true, Ordering::SeqCst);
        let (worst, trips) = tokio::time::timeout(BOUND, result_rx)
            .await
            .expect("client finished in time")
            .expect("client answered")
            .expect("echo round trips");
        assert!(trips > 10, "only {trips} round trips during the writes");
        worst
    });
    let n = writes.load(Ordering::SeqCst);
    assert!(n >= 1, "nothing was written");
    eprintln!("{n} writes of {WRITE:?}; worst echo round trip {worst:?}");
    assert!(
        worst < WRITE / 3,
        "the data plane waited {worst:?} while a {WRITE:?} write ran"
    );
}

/// Fleet mode: an adopted decision's event says where the tenant came from, also when only the
/// reject flag changed, and carries the proposer's cause label when it names one.
#[tokio::test]
async fn adopted_decisions_record_where_the_tenant_was() {
    let path = temp_state("adopt");
    let config = config(1, &path);
    let table = Arc::new(RouteTable::compile(&config, 1, None).expect("compiles"));
    let events = Arc::new(EventLog::new(1024));
    let (tx, rx) = mpsc::unbounded_channel();
    let (local_verdicts, _local_rx) = mpsc::unbounded_channel();
    let (proposals, _proposal_rx) = mpsc::unbounded_channel();
    let (control, _task) = Controller::new(
        &config,
        Arc::clone(&table),
        Arc::clone(&events),
        PersistedState::default(),
    )
    .with_fleet(super::FleetLink {
        local_verdicts,
        proposals,
    })
    .spawn(tx, rx);
    let decisions = [
        (Side::Secondary, false, 1, "primary_unhealthy"),
        (Side::Secondary, true, 2, "both_down"),
        (Side::Secondary, true, 2, "both_down"),
        (Side::Primary, false, 3, "not-a-label"),
    ];
    for (side, reject, epoch, cause) in decisions {
        control
            .sender()
            .send(Command::Adopt {
                tenant: "t0".to_owned(),
                side,
                reject,
                epoch,
                cause: cause.to_owned(),
            })
            .expect("controller running");
    }
    // Commands are handled in order: once this is answered, every decision was adopted.
    let view = tokio::time::timeout(BOUND, control.tenant("t0"))
        .await
        .expect("in time")
        .expect("tenant");
    assert_eq!((view.state.side, view.state.generation), (Side::Primary, 3));
    let moves: Vec<_> = events
        .after(0, 100)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Transition {
                from,
                to,
                reject,
                cause,
                generation,
                ..
            } => Some((from, to, reject, cause.label, generation)),
            _ => None,
        })
        .collect();
    assert_eq!(
        moves,
        [
            (
                Side::Primary,
                Side::Secondary,
                false,
                "primary_unhealthy",
                1
            ),
            (Side::Secondary, Side::Secondary, true, "both_down", 2),
            (Side::Secondary, Side::Primary, false, "fleet_decision", 3),
        ]
    );
}

/// A reload that removes a tenant while its pin is being written: the pin is refused (unknown
/// tenant), and the state file is written again without it. The writer is gated, so each write
/// starts and ends when the test says.
#[tokio::test]
async fn a_pin_whose_tenant_a_reload_removed_during_its_write_is_refused_and_unwritten() {
    let path = temp_state("reload");
    let config = config(3, &path);
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (control, table) = start_gated(&config, started_tx, gate);

    let pin = tokio::spawn({
        let control = control.clone();
        async move {
            control
                .set_mode("t1", Mode::Pinned(Side::Secondary), "drill")
                .await
        }
    });
    started_in_time(&mut started).await;
    // t1 goes away while its pin is being written.
    let mut smaller = config.clone();
    smaller.tenants.retain(|t| t.name != "t1");
    let smaller_table = Arc::new(RouteTable::compile(&smaller, 2, Some(&table)).expect("compiles"));
    tokio::time::timeout(BOUND, control.reload(Arc::new(smaller), smaller_table))
        .await
        .expect("reloaded in time")
        .expect("controller running");
    release.send(()).expect("writer waiting");
    let answer = tokio::time::timeout(BOUND, pin)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!(answer, Err(ControlError::UnknownTenant));
    // The file was rewritten without it; a later pin is carried by the write after that.
    started_in_time(&mut started).await;
    let later = tokio::spawn({
        let control = control.clone();
        async move {
            control
                .set_mode("t2", Mode::Pinned(Side::Secondary), "later")
                .await
        }
    });
    release.send(()).expect("writer waiting");
    started_in_time(&mut started).await;
    release.send(()).expect("writer waiting");
    tokio::time::timeout(BOUND, later)
        .await
        .expect("in time")
        .expect("task")
        .expect("pinned");
    let pins: Vec<String> = saved(&path).tenants.into_keys().collect();
    assert_eq!(pins, ["t2"]);
}

/// One write carries a pin of a tenant a reload removed and a pin of one that remains: the first
/// is refused, the second acknowledged, and the file keeps the acknowledged pin (the rewrite the
/// refusal asks for carries every change of the batch, not just those before it).
#[tokio::test]
async fn a_refusal_in_a_batch_does_not_unwrite_the_rest_of_the_batch() {
    let path = temp_state("batch-refusal");
    let config = config(4, &path);
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (control, table) = start_gated(&config, started_tx, gate);
    let sender = control.sender();
    let set = |tenant: &str, mode: Mode| {
        let (reply, answer) = tokio::sync::oneshot::channel();
        sender
            .send(Command::SetMode {
                tenant: tenant.to_owned(),
                mode,
                reason: "batch".to_owned(),
                reply,
            })
            .expect("controller running");
        answer
    };
    let pin = |tenant: &str| set(tenant, Mode::Pinned(Side::Secondary));
    let t0 = pin("t0");
    started_in_time(&mut started).await;
    // Queued behind the write in flight, in this order: t1, t2, then a reload without t1.
    let (t1, t2) = (pin("t1"), pin("t2"));
    let mut smaller = config.clone();
    smaller.tenants.retain(|t| t.name != "t1");
    let smaller_table = Arc::new(RouteTable::compile(&smaller, 2, Some(&table)).expect("compiles"));
    tokio::time::timeout(BOUND, control.reload(Arc::new(smaller), smaller_table))
        .await
        .expect("reloaded in time")
        .expect("controller running");
    release.send(()).expect("writer waiting"); // t0
    started_in_time(&mut started).await;
    release.send(()).expect("writer waiting"); // t1 and t2
    started_in_time(&mut started).await;
    release.send(()).expect("writer waiting"); // the rewrite without t1
    let answer = |rx: tokio::sync::oneshot::Receiver<Result<super::TenantView, ControlError>>| async {
        tokio::time::timeout(BOUND, rx)
            .await
            .expect("in time")
            .expect("answered")
    };
    assert!(answer(t0).await.is_ok(), "t0");
    assert_eq!(answer(t1).await, Err(ControlError::UnknownTenant), "t1");
    assert!(answer(t2).await.is_ok(), "t2");
    // A change that alters nothing (t3 is not pinned) waits for the write in flight, then is
    // answered without a write: once it is, the rewrite is done.
    assert!(answer(set("t3", Mode::Auto)).await.is_ok(), "t3");
    let pins: Vec<String> = saved(&path).tenants.into_keys().collect();
    assert_eq!(pins, ["t0", "t2"]);
}

/// Starts a controller whose writer reports each write's start on `started` and waits for a
/// token on `gate` (bounded) before writing.
fn start_gated(
    config: &Config,
    started: mpsc::UnboundedSender<()>,
    gate: std::sync::mpsc::Receiver<()>,
) -> (ControlHandle, Arc<RouteTable>) {
    let gate = std::sync::Mutex::new(gate);
    let writer: StateWriter = Arc::new(move |path: &Path, state: &PersistedState| {
        let _ = started.send(());
        let gate = gate.lock().unwrap_or_else(|p| p.into_inner());
        gate.recv_timeout(BOUND)
            .map_err(|_| std::io::Error::other("the test did not release the write"))?;
        save(path, state)
    });
    let table = Arc::new(RouteTable::compile(config, 1, None).expect("compiles"));
    let (tx, rx) = mpsc::unbounded_channel();
    let (control, _task) = Controller::new(
        config,
        Arc::clone(&table),
        Arc::new(EventLog::new(64)),
        PersistedState::default(),
    )
    .with_state_writer(writer)
    .spawn(tx, rx);
    (control, table)
}

/// Waits (bounded) until the gated writer says a write started.
async fn started_in_time(started: &mut mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(BOUND, started.recv())
        .await
        .expect("a write started in time")
        .expect("writer alive");
}
