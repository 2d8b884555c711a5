//! The IO shell around [`View`]: the lease, the full read then the watch, the writes, and
//! carrying out the view's [`Effect`]s in order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pairgate_admin::{BoxFuture, FleetWriteError, FleetWrites};
use pairgate_cluster::{CasOutcome, Etcd, EtcdError, EventKind as WatchKind, KeyValue};
use pairgate_config::{Cluster, IsolatedFailover};
use pairgate_failover::{Health, Mode, RegionOverride};
use pairgate_health::{Command, ControlHandle, EventKind, EventLog, Monitor, Proposal};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::schema::{Key, Pin, RegionSource, RegionState};
use crate::view::{Effect, View, region_change};
use crate::votes;

/// Events each replica keeps in etcd (older ones are deleted as new ones arrive).
const EVENTS_KEPT: u64 = 200;

/// How the fleet member reloads the gateway's config with the fleet's objects. The binary's
/// file reloader implements it; the member never parses config itself.
pub trait Reload: Send + Sync {
    /// The objects from etcd to use instead of the file's (`None`: the file's).
    fn set_fleet_objects(&self, objects: Option<BTreeMap<String, String>>);
    /// Reloads now; `Err` carries how many problems the rejected config had.
    fn reload_now(&self) -> BoxFuture<'_, Result<(), usize>>;
    /// Re-applies the probers' set to the current config (the probe filter changed).
    fn resync_probers(&self);
}

/// The parts of the gateway a fleet member drives.
pub struct Parts {
    /// The controller.
    pub control: ControlHandle,
    /// The probers (their filter: only the accounts assigned to this replica).
    pub monitor: Arc<Monitor>,
    /// The local event log (disagreements).
    pub events: Arc<EventLog>,
    /// The config reloader.
    pub reloader: Arc<dyn Reload>,
}

/// Why a connected session ended (the member then retries).
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("watch ended")]
    WatchEnded,
    #[error("the watch did not deliver this replica's heartbeat within {0:?}; watching again")]
    SilentWatch(Duration),
}

/// The running fleet member.
pub struct Fleet {
    etcd: Etcd,
    prefix: String,
    name: String,
    cluster: Cluster,
    control: ControlHandle,
    monitor: Arc<Monitor>,
    events: Arc<EventLog>,
    reloader: Arc<dyn Reload>,
    view: Mutex<View>,
    connected: AtomicBool,
    /// Set once the first full read was applied: the fleet's objects loaded, then its
    /// decisions and verdicts adopted (`/readyz` waits for it). Stays set while cut off: the
    /// replica keeps serving its last decisions.
    synced: AtomicBool,
    /// The fleet objects of the last accepted reload, so a resync with the same objects does
    /// not reload again.
    loaded: Mutex<Option<BTreeMap<String, String>>>,
    lease: AtomicI64,
    event_seq: AtomicU64,
    disagreements: AtomicU64,
}

impl Fleet {
    /// Joins the fleet: starts the task that keeps the lease, watches the prefix, publishes
    /// local verdicts and commits proposals; returns the member and that task (which ends only
    /// when the controller is gone). The caller owns the task.
    pub fn start(
        cluster: Cluster,
        tls: Option<Arc<rustls::ClientConfig>>,
        name: String,
        parts: Parts,
        local: mpsc::UnboundedReceiver<(Arc<str>, Health)>,
        proposals: mpsc::UnboundedReceiver<Proposal>,
    ) -> Result<(Arc<Fleet>, tokio::task::JoinHandle<()>), EtcdError> {
        let Parts {
            control,
            monitor,
            events,
            reloader,
        } = parts;
        let etcd = connect(&cluster, tls)?;
        let fleet = Arc::new(Fleet {
            etcd,
            prefix: cluster.prefix.clone(),
            name,
            view: Mutex::new(View::new(cluster.probers_per_account)),
            cluster,
            control,
            monitor,
            events,
            reloader,
            connected: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            loaded: Mutex::new(None),
            lease: AtomicI64::new(0),
            event_seq: AtomicU64::new(0),
            disagreements: AtomicU64::new(0),
        });
        let task = tokio::spawn(Arc::clone(&fleet).run(local, proposals));
        Ok((fleet, task))
    }

    /// Whether the replica currently sees etcd.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Whether the replica has joined once: loaded the fleet's objects, then adopted its
    /// decisions and verdicts.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn key(&self, key: Key<'_>) -> String {
        key.under(&self.prefix)
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(
        self: Arc<Self>,
        mut local: mpsc::UnboundedReceiver<(Arc<str>, Health)>,
        mut proposals: mpsc::UnboundedReceiver<Proposal>,
    ) {
        loop {
            match self.session(&mut local, &mut proposals).await {
                Ok(()) => return, // the gateway is shutting down
                Err(err) => {
                    if self.connected.swap(false, Ordering::AcqRel) {
                        tracing::warn!(error = %err, "lost etcd; serving the last committed decisions");
                    } else {
                        tracing::debug!(error = %err, "etcd still unreachable");
                    }
                }
            }
            // Cut off: keep draining local inputs while retrying.
            let retry = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    () = &mut retry => break,
                    Some((account, health)) = local.recv() => self.isolated_verdict(&account, health),
                    Some(p) = proposals.recv() => self.isolated_proposal(&p),
                }
            }
        }
    }

    /// One connected session: lease, resync, watch. Returns on any etcd failure.
    async fn session(
        &self,
        local: &mut mpsc::UnboundedReceiver<(Arc<str>, Health)>,
        proposals: &mut mpsc::UnboundedReceiver<Proposal>,
    ) -> Result<(), SessionError> {
        let lease = self.etcd.grant_lease(self.cluster.lease_ttl).await?;
        self.lease.store(lease, Ordering::Release);
        self.etcd
            .put(
                &self.key(Key::Replica(&self.name)),
                self.name.as_bytes(),
                Some(lease),
            )
            .await?;
        let own = self.view().local();
        for (account, health) in own {
            self.publish_vote(&account, health, lease).await?;
        }
        let (kvs, revision) = self.etcd.get_prefix(&self.prefix).await?;
        self.resync(kvs).await;
        // A large reload may have taken a while: renew the lease before watching.
        self.etcd.keep_alive(lease).await?;
        let mut watch = self.etcd.watch_prefix(&self.prefix, revision + 1).await?;
        self.connected.store(true, Ordering::Release);
        tracing::info!(replica = %self.name, revision, "joined the fleet");
        // Validation refuses a `lease_ttl` whose third is zero (`interval` panics on zero).
        let period = (self.cluster.lease_ttl / 3).max(Duration::from_millis(1));
        let mut keepalive = tokio::time::interval(period);
        // After a slow step (a large config reload) the next tick comes a full period later,
        // not in a burst that would find the last heartbeat "missing" a moment after sending it.
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await;
        // The watch's liveness, end to end: each keepalive tick writes a heartbeat that this
        // replica's own watch must bring back before the next tick. A watch whose connection
        // went silent (half-open TCP, a proxy or NAT that dropped the stream) otherwise looks
        // like a quiet fleet until TCP keepalive gives up, minutes later.
        let heartbeat_key = self.key(Key::Heartbeat(&self.name));
        let (mut heartbeat_sent, mut heartbeat_seen) = (0u64, 0u64);
        let mut heartbeat_at = tokio::time::Instant::now();
        loop {
            tokio::select! {
                batch = watch.next() => match batch {
                    Some(Ok((_, events))) => {
                        if let Some(seen) = events
                            .iter()
                            .filter(|e| e.kv.key == heartbeat_key)
                            .filter_map(|e| std::str::from_utf8(&e.kv.value).ok()?.parse().ok())
                            .max()
                        {
                            heartbeat_seen = heartbeat_seen.max(seen);
                        }
                        let mut effects = Vec::new();
                        {
                            let mut view = self.view();
                            for event in &events {
                                if let Some(rest) = event.kv.key.strip_prefix(&self.prefix) {
                                    view.apply(
                                        rest,
                                        &event.kv.value,
                                        event.kv.mod_revision,
                                        event.kind == WatchKind::Delete,
                                        &mut effects,
                                    );
                                }
                            }
                            // Sent while the view is locked, so a write of this replica
                            // (`set_mode`, `set_region`) cannot slip in between.
                            self.send(&view, &effects);
                        }
                        self.follow_up(&effects, true).await;
                    }
                    Some(Err(err)) => return Err(err.into()),
                    None => return Err(SessionError::WatchEnded),
                },
                _ = keepalive.tick() => {
                    if heartbeat_seen < heartbeat_sent && heartbeat_at.elapsed() >= period {
                        return Err(SessionError::SilentWatch(heartbeat_at.elapsed()));
                    }
                    self.etcd.keep_alive(lease).await?;
                    if heartbeat_seen >= heartbeat_sent {
                        heartbeat_sent += 1;
                        self.etcd
                            .put(&heartbeat_key, heartbeat_sent.to_string().as_bytes(), Some(lease))
                            .await?;
                        heartbeat_at = tokio::time::Instant::now();
                    }
                }
                Some((account, health)) = local.recv() => {
                    // Recorded first: a vote that fails to publish is published at the next
                    // connect.
                    self.view().record_local(&account, health);
                    self.publish_vote(&account, health, lease).await?;
                    let mut effects = Vec::new();
                    let mut view = self.view();
                    view.set_local(&account, health, &mut effects);
                    self.send(&view, &effects);
                }
                Some(p) = proposals.recv() => self.commit(&p).await?,
            }
        }
    }

    async fn publish_vote(
        &self,
        account: &str,
        health: Health,
        lease: i64,
    ) -> Result<(), EtcdError> {
        let key = self.key(Key::Vote {
            account,
            replica: &self.name,
        });
        self.etcd
            .put(&key, health.as_str().as_bytes(), Some(lease))
            .await?;
        Ok(())
    }

    /// Sends the controller the commands among `effects`, in order, and reports
    /// disagreements. Called with the view locked: the sends never wait (an unbounded
    /// channel), and holding the lock orders them against this replica's own writes.
    fn send(&self, view: &View, effects: &[Effect]) {
        let sender = self.control.sender();
        for effect in effects {
            let command = match effect.clone() {
                Effect::Adopt {
                    tenant,
                    side,
                    reject,
                    epoch,
                    cause,
                } => Command::Adopt {
                    tenant,
                    side,
                    reject,
                    epoch,
                    cause,
                },
                Effect::FleetVerdict { account, health } => {
                    Command::FleetVerdict { account, health }
                }
                // Nobody waits for these answers: the controller applies its commands in the
                // order they were sent, which is the order of the revisions.
                Effect::SetMode {
                    tenant,
                    mode,
                    reason,
                } => Command::SetMode {
                    tenant,
                    mode,
                    reason,
                    reply: oneshot::channel().0,
                },
                Effect::SetRegion {
                    region,
                    change,
                    reason,
                    source,
                } => Command::SetRegion {
                    region,
                    change,
                    reason,
                    source,
                    reply: oneshot::channel().0,
                },
                Effect::Disagreement {
                    account,
                    local,
                    fleet,
                } => {
                    tracing::warn!(
                        account,
                        local = local.as_str(),
                        fleet = fleet.as_str(),
                        "this replica disagrees with the fleet; following the fleet"
                    );
                    self.events.push(EventKind::Disagreement {
                        account: account.into(),
                        local,
                        fleet,
                    });
                    continue;
                }
                Effect::ReplicasChanged | Effect::ConfigChanged => continue,
            };
            let _ = sender.send(command);
        }
        self.disagreements
            .store(view.disagreements() as u64, Ordering::Relaxed);
    }

    /// What follows a batch once the view is unlocked: the probe filter when the replica set
    /// changed, a reload when the config objects did (and `reload` is set).
    async fn follow_up(&self, effects: &[Effect], reload: bool) {
        if effects.contains(&Effect::ReplicasChanged) {
            self.update_probe_filter();
        }
        if reload && effects.contains(&Effect::ConfigChanged) {
            self.reload_objects().await;
        }
    }

    fn is_config(&self, key: &str) -> bool {
        key.strip_prefix(&self.prefix)
            .is_some_and(|k| k.starts_with("config/"))
    }

    /// Rebuilds the view from a full read and applies everything in it: the config objects and
    /// the replica set first (and the reload they cause, awaited), then votes, decisions and
    /// overrides. The controller ignores names it does not know, so a decision or verdict
    /// applied before its tenant or account was loaded would be lost until the next change.
    /// The replica set comes before the reload so the reload starts only this replica's
    /// probers (a prober stopped before its first probe would hold `/readyz` back).
    async fn resync(&self, kvs: Vec<KeyValue>) {
        self.view().reset();
        let replicas = self.key(Key::Replica(""));
        let (first, rest): (Vec<KeyValue>, Vec<KeyValue>) = kvs
            .into_iter()
            .partition(|kv| self.is_config(&kv.key) || kv.key.starts_with(&replicas));
        let has_config = first.iter().any(|kv| self.is_config(&kv.key));
        let effects = self.apply_all(&first);
        self.follow_up(&effects, false).await;
        if has_config {
            let objects = self.view().objects().clone();
            let same = self
                .loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                == Some(&objects);
            if !same {
                self.reload_objects().await;
            }
        }
        let mut effects = self.apply_all(&rest);
        {
            // Accounts every replica has stopped voting on keep their last fleet verdict.
            let mut view = self.view();
            let mut more = Vec::new();
            view.recompute_all(&mut more);
            self.send(&view, &more);
            effects.extend(more);
        }
        self.follow_up(&effects, false).await;
        self.update_probe_filter();
        self.synced.store(true, Ordering::Release);
    }

    /// Applies keys from a full read (each as a put) and sends the commands they cause.
    fn apply_all(&self, kvs: &[KeyValue]) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut view = self.view();
        for kv in kvs {
            if let Some(rest) = kv.key.strip_prefix(&self.prefix) {
                view.apply(rest, &kv.value, kv.mod_revision, false, &mut effects);
            }
        }
        self.send(&view, &effects);
        effects
    }

    fn update_probe_filter(&self) {
        let (replicas, k) = {
            let view = self.view();
            (view.replicas().clone(), view.probers_per_account())
        };
        if replicas.is_empty() {
            return;
        }
        let me = self.name.clone();
        let filter: pairgate_health::monitor::ProbeFilter =
            Arc::new(move |account: &str| votes::assigned(&replicas, account, k).contains(&me));
        self.monitor.set_filter(Some(filter));
        self.reloader.resync_probers();
    }

    /// Commits a proposal with the next epoch, unless someone else was first.
    async fn commit(&self, p: &Proposal) -> Result<(), EtcdError> {
        let Some((revision, decision)) = self.view().decision_for(p, &self.name) else {
            return Ok(());
        };
        let value = serde_json::to_vec(&decision).expect("a Decision always serializes");
        let key = self.key(Key::Decision(&p.tenant));
        match self
            .etcd
            .put_if_revision(&key, &value, revision, None)
            .await?
        {
            CasOutcome::Written { revision } => {
                tracing::info!(
                    tenant = &*p.tenant,
                    to = p.side.as_str(),
                    epoch = decision.epoch,
                    "committed a fleet decision"
                );
                {
                    let mut view = self.view();
                    let adopt = view.committed(&p.tenant, revision, &decision);
                    self.send(&view, &[adopt]);
                }
                self.record(json!({"type": "decision", "tenant": &*p.tenant, "side": p.side.as_str(), "epoch": decision.epoch, "cause": p.cause})).await;
            }
            // Someone else committed first; the watch brings their decision.
            CasOutcome::Conflict { .. } => {}
        }
        Ok(())
    }

    /// Appends to this replica's events in etcd, keeping the last `EVENTS_KEPT`.
    async fn record(&self, mut event: Value) {
        let seq = self.event_seq.fetch_add(1, Ordering::Relaxed);
        event["replica"] = json!(self.name);
        event["at_unix_ms"] = json!(pairgate_health::state::now_unix_ms());
        let key = self.key(Key::Event {
            replica: &self.name,
            seq,
        });
        let _ = self
            .etcd
            .put(&key, event.to_string().as_bytes(), None)
            .await;
        if seq >= EVENTS_KEPT {
            let old = self.key(Key::Event {
                replica: &self.name,
                seq: seq - EVENTS_KEPT,
            });
            let _ = self.etcd.delete(&old).await;
        }
    }

    /// Reloads with the fleet's objects, then re-sends decisions and verdicts for the names
    /// the reload added.
    async fn reload_objects(&self) {
        let objects = self.view().objects().clone();
        self.reloader.set_fleet_objects(Some(objects.clone()));
        match self.reloader.reload_now().await {
            Ok(()) => *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(objects),
            Err(problems) => {
                tracing::error!(
                    problems,
                    "config from etcd rejected; keeping the last good one"
                );
            }
        }
        let view = self.view();
        self.send(&view, &view.resend());
    }

    fn isolated_verdict(&self, account: &str, health: Health) {
        self.view().record_local(account, health);
        if self.cluster.isolated_failover == IsolatedFailover::Act {
            let _ = self.control.sender().send(Command::FleetVerdict {
                account: account.to_owned(),
                health,
            });
        }
    }

    fn isolated_proposal(&self, p: &Proposal) {
        if self.cluster.isolated_failover != IsolatedFailover::Act {
            tracing::warn!(
                tenant = &*p.tenant,
                "cut off from etcd: holding the last decision (isolated_failover = \"hold\")"
            );
            return;
        }
        let epoch = self.view().isolated_epoch(&p.tenant);
        let _ = self.control.sender().send(Command::Adopt {
            tenant: p.tenant.to_string(),
            side: p.side,
            reject: p.reject,
            epoch,
            cause: p.cause.to_owned(),
        });
    }

    /// Writes an override only if its key is still at `expected` (0: absent). Clearing an
    /// override is a write too (`auto`), never a delete, so it gets the same check.
    async fn cas_override(
        &self,
        key: String,
        value: Vec<u8>,
        expected: i64,
    ) -> Result<i64, FleetWriteError> {
        if !self.connected() {
            return Err(FleetWriteError::Unavailable(
                "not connected to etcd".to_owned(),
            ));
        }
        let outcome = self
            .etcd
            .put_if_revision(&key, &value, expected, None)
            .await
            .map_err(|e| FleetWriteError::Unavailable(e.to_string()))?;
        match outcome {
            CasOutcome::Written { revision } => Ok(revision),
            CasOutcome::Conflict { current } => Err(FleetWriteError::Conflict(format!(
                "changed since revision {expected} (now {}); read it again and retry",
                current.map_or(0, |kv| kv.mod_revision)
            ))),
        }
    }
}

impl FleetWrites for Fleet {
    fn set_mode<'a>(
        &'a self,
        tenant: &'a str,
        mode: Mode,
        reason: &'a str,
        revision: Option<i64>,
    ) -> BoxFuture<'a, Result<i64, FleetWriteError>> {
        Box::pin(async move {
            let expected = revision.unwrap_or_else(|| self.pin_revision(tenant));
            let pin = Pin {
                mode: mode.into(),
                reason: reason.to_owned(),
                by: self.name.clone(),
            };
            let value = serde_json::to_vec(&pin).expect("a Pin always serializes");
            let written = self
                .cas_override(self.key(Key::Pin(tenant)), value, expected)
                .await?;
            // Apply here at once (the watch brings the same change to every replica), unless
            // the watch already brought it or a newer one.
            let answer = {
                let mut view = self.view();
                view.wrote_pin(tenant, written).then(|| {
                    let (reply, answer) = oneshot::channel();
                    let _ = self.control.sender().send(Command::SetMode {
                        tenant: tenant.to_owned(),
                        mode,
                        reason: reason.to_owned(),
                        reply,
                    });
                    answer
                })
            };
            if let Some(answer) = answer {
                let _ = answer.await;
            }
            let mode_name = crate::schema::StoredMode::from(mode);
            self.record(
                json!({"type": "pin", "tenant": tenant, "mode": mode_name, "reason": reason}),
            )
            .await;
            Ok(written)
        })
    }

    fn set_region<'a>(
        &'a self,
        region: &'a str,
        state: RegionOverride,
        reason: &'a str,
        source: &'static str,
        revision: Option<i64>,
    ) -> BoxFuture<'a, Result<i64, FleetWriteError>> {
        Box::pin(async move {
            let expected = revision.unwrap_or_else(|| self.view().region_revision(region));
            let stored = RegionState {
                state: state.into(),
                reason: reason.to_owned(),
                source: RegionSource::from_label(source),
                by: self.name.clone(),
            };
            let value = serde_json::to_vec(&stored).expect("a RegionState always serializes");
            let written = self
                .cas_override(self.key(Key::Region(region)), value, expected)
                .await?;
            let answer = {
                let mut view = self.view();
                view.wrote_region(region, written).then(|| {
                    let (reply, answer) = oneshot::channel();
                    let _ = self.control.sender().send(Command::SetRegion {
                        region: region.to_owned(),
                        change: region_change(state),
                        reason: reason.to_owned(),
                        source: stored.source.as_str(),
                        reply,
                    });
                    answer
                })
            };
            if let Some(answer) = answer {
                let _ = answer.await;
            }
            Ok(written)
        })
    }

    fn pin_revision(&self, tenant: &str) -> i64 {
        self.view().pin_revision(tenant)
    }

    fn disagreements(&self) -> u64 {
        self.disagreements.load(Ordering::Relaxed)
    }

    fn connected(&self) -> bool {
        Fleet::connected(self)
    }

    fn synced(&self) -> bool {
        Fleet::synced(self)
    }

    fn fleet_events(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Value>, FleetWriteError>> {
        Box::pin(async move {
            let (kvs, _) = self
                .etcd
                .get_prefix(&format!("{}events/", self.prefix))
                .await
                .map_err(|e| FleetWriteError::Unavailable(e.to_string()))?;
            let mut events: Vec<Value> = kvs
                .iter()
                .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                .collect();
            events.sort_by_key(|e: &Value| e["at_unix_ms"].as_u64().unwrap_or(0));
            let skip = events.len().saturating_sub(limit);
            Ok(events.split_off(skip))
        })
    }
}

/// An etcd client for `[cluster]`, with its credentials and TLS settings when configured.
pub fn connect(
    cluster: &Cluster,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Etcd, EtcdError> {
    let credentials = cluster
        .credentials
        .as_ref()
        .map(|(user, password)| (user.as_str(), password.expose()));
    Etcd::connect(&cluster.endpoints, cluster.timeout, credentials, tls)
}
