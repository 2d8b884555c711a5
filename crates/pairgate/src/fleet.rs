//! Fleet mode: replicas share config, pins, region states and failover decisions through etcd.
//!
//! Keys under the prefix (default `/pairgate/`):
//! - `config/region/NAME`, `config/account/NAME`, `config/tenant/NAME`: one TOML object each
//!   (`pairgate cluster import` writes them); they replace the local file's objects;
//! - `pins/TENANT`, `regions/REGION`: operator overrides, written with a revision check;
//! - `replicas/NAME`: presence, under this replica's lease;
//! - `heartbeat/NAME`: a counter this replica bumps every `lease_ttl / 3` and expects back on
//!   its own watch before the next bump (a silent watch is restarted), under its lease;
//! - `health/ACCOUNT/REPLICA`: each prober's verdict, under its lease;
//! - `decisions/TENANT`: `{side, reject, epoch}`, written only by compare-and-swap;
//! - `events/REPLICA/SEQ`: what each replica did (bounded per replica).
//!
//! Every replica turns the health votes into a fleet verdict per account (a majority of the
//! replicas assigned to probe it), feeds that verdict to its engine, and sends the engine's
//! transitions as proposals; the first replica to commit a decision with the next epoch wins,
//! and every replica adopts committed decisions from its watch, so all serve the same side at
//! the same epoch. A replica whose own verdict differs from the fleet's reports it instead of
//! acting alone. Cut off from etcd, a replica keeps serving its last decisions; with
//! `isolated_failover = "act"` it decides alone until etcd is back, then resyncs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pairgate_admin::{BoxFuture, FleetWriteError, FleetWrites};
use pairgate_cluster::{CasOutcome, Etcd, EventKind as WatchKind, KeyValue, WatchEvent};
use pairgate_config::{Cluster, IsolatedFailover};
use pairgate_failover::{Health, Mode, RegionOverride, Side};
use pairgate_health::{
    Command, ControlHandle, EventKind, EventLog, Holder, Monitor, Proposal, RegionChange,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Events each replica keeps in etcd (older ones are deleted as new ones arrive).
const EVENTS_KEPT: u64 = 200;

/// What this replica knows of the fleet, rebuilt from etcd on every (re)connect.
#[derive(Default)]
struct View {
    replicas: BTreeSet<String>,
    /// account -> replica -> verdict.
    votes: BTreeMap<String, BTreeMap<String, Health>>,
    fleet: HashMap<String, Health>,
    local: HashMap<String, Health>,
    /// tenant -> (mod_revision, side, reject, epoch).
    decisions: HashMap<String, (i64, Side, bool, u64)>,
    /// tenant -> the cause of its committed decision (for the controller's transition label).
    causes: HashMap<String, String>,
    pin_revisions: HashMap<String, i64>,
    region_revisions: HashMap<String, i64>,
    /// `region/NAME` etc. -> TOML object.
    objects: BTreeMap<String, String>,
    disagreeing: BTreeSet<String>,
}

/// The parts of the gateway a fleet member drives.
pub(crate) struct Parts {
    pub(crate) control: ControlHandle,
    pub(crate) monitor: Arc<Monitor>,
    pub(crate) events: Arc<EventLog>,
    pub(crate) reloader: Arc<crate::FileReloader>,
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
    reloader: Arc<crate::FileReloader>,
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
    /// when the controller is gone).
    pub(crate) fn start(
        cluster: Cluster,
        tls: Option<Arc<rustls::ClientConfig>>,
        name: String,
        parts: Parts,
        local: mpsc::UnboundedReceiver<(Arc<str>, Health)>,
        proposals: mpsc::UnboundedReceiver<Proposal>,
    ) -> anyhow::Result<(Arc<Fleet>, tokio::task::JoinHandle<()>)> {
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
            cluster,
            control,
            monitor,
            events,
            reloader,
            view: Mutex::new(View::default()),
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

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
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
                    Some(p) = proposals.recv() => self.isolated_proposal(p),
                }
            }
        }
    }

    /// One connected session: lease, resync, watch. Returns on any etcd failure.
    async fn session(
        &self,
        local: &mut mpsc::UnboundedReceiver<(Arc<str>, Health)>,
        proposals: &mut mpsc::UnboundedReceiver<Proposal>,
    ) -> anyhow::Result<()> {
        let lease = self.etcd.grant_lease(self.cluster.lease_ttl).await?;
        self.lease.store(lease, Ordering::Release);
        self.etcd
            .put(
                &self.key(&format!("replicas/{}", self.name)),
                self.name.as_bytes(),
                Some(lease),
            )
            .await?;
        let own: Vec<(String, Health)> = self
            .view()
            .local
            .iter()
            .map(|(a, h)| (a.clone(), *h))
            .collect();
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
        let period = self.cluster.lease_ttl / 3;
        let mut keepalive = tokio::time::interval(period);
        // After a slow step (a large config reload) the next tick comes a full period later,
        // not in a burst that would find the last heartbeat "missing" a moment after sending it.
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await;
        // The watch's liveness, end to end: each keepalive tick writes a heartbeat that this
        // replica's own watch must bring back before the next tick. A watch whose connection
        // went silent (half-open TCP, a proxy or NAT that dropped the stream) otherwise looks
        // like a quiet fleet until TCP keepalive gives up, minutes later.
        let heartbeat_key = self.key(&format!("heartbeat/{}", self.name));
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
                        let config_changed = events.iter().any(|e| self.is_config(&e.kv.key));
                        for event in &events {
                            self.apply(event);
                        }
                        if config_changed {
                            self.reload_objects().await;
                        }
                    }
                    Some(Err(err)) => return Err(err.into()),
                    None => anyhow::bail!("watch ended"),
                },
                _ = keepalive.tick() => {
                    if heartbeat_seen < heartbeat_sent && heartbeat_at.elapsed() >= period {
                        anyhow::bail!(
                            "the watch did not deliver this replica's heartbeat within {:?}; \
                             watching again",
                            heartbeat_at.elapsed()
                        );
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
                    self.view().local.insert(account.to_string(), health);
                    self.publish_vote(&account, health, lease).await?;
                    self.recompute(&account);
                }
                Some(p) = proposals.recv() => self.commit(p).await?,
            }
        }
    }

    async fn publish_vote(&self, account: &str, health: Health, lease: i64) -> anyhow::Result<()> {
        let key = self.key(&format!("health/{account}/{}", self.name));
        self.etcd
            .put(&key, health.as_str().as_bytes(), Some(lease))
            .await?;
        Ok(())
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
        let local = std::mem::take(&mut self.view().local);
        *self.view() = View {
            local,
            ..View::default()
        };
        let replicas = self.key("replicas/");
        let (first, rest): (Vec<KeyValue>, Vec<KeyValue>) = kvs
            .into_iter()
            .partition(|kv| self.is_config(&kv.key) || kv.key.starts_with(&replicas));
        let has_config = first.iter().any(|kv| self.is_config(&kv.key));
        for kv in first {
            self.apply(&WatchEvent {
                kind: WatchKind::Put,
                kv,
            });
        }
        if has_config {
            let objects = self.view().objects.clone();
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
        for kv in rest {
            self.apply(&WatchEvent {
                kind: WatchKind::Put,
                kv,
            });
        }
        // Accounts every replica has stopped voting on keep their last fleet verdict.
        let accounts: Vec<String> = self.view().votes.keys().cloned().collect();
        for account in accounts {
            self.recompute(&account);
        }
        self.update_probe_filter();
        self.synced.store(true, Ordering::Release);
    }

    /// Sends the controller every committed decision and fleet verdict again: after a reload
    /// that added tenants or accounts, whose decisions and verdicts it had ignored.
    fn resend(&self) {
        let (decisions, verdicts) = {
            let view = self.view();
            let decisions: Vec<_> = view
                .decisions
                .iter()
                .map(|(t, &(_, side, reject, epoch))| {
                    let cause = view.causes.get(t).cloned();
                    (t.clone(), side, reject, epoch, cause)
                })
                .collect();
            let verdicts: Vec<(String, Health)> =
                view.fleet.iter().map(|(a, &h)| (a.clone(), h)).collect();
            (decisions, verdicts)
        };
        let sender = self.control.sender();
        for (tenant, side, reject, epoch, cause) in decisions {
            let _ = sender.send(Command::Adopt {
                tenant,
                side,
                reject,
                epoch,
                cause: cause.unwrap_or_else(|| "fleet_decision".to_owned()),
            });
        }
        for (account, health) in verdicts {
            let _ = sender.send(Command::FleetVerdict { account, health });
        }
    }

    /// Applies one key change.
    fn apply(&self, event: &WatchEvent) {
        let Some(rest) = event.kv.key.strip_prefix(&self.prefix) else {
            return;
        };
        let deleted = event.kind == WatchKind::Delete;
        let value = String::from_utf8_lossy(&event.kv.value).into_owned();
        let mut parts = rest.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("replicas"), Some(name), None) => {
                {
                    let mut view = self.view();
                    if deleted {
                        view.replicas.remove(name);
                    } else {
                        view.replicas.insert(name.to_owned());
                    }
                }
                let accounts: Vec<String> = self.view().votes.keys().cloned().collect();
                for account in accounts {
                    self.recompute(&account);
                }
                self.update_probe_filter();
            }
            (Some("health"), Some(account), Some(replica)) => {
                {
                    let mut view = self.view();
                    let votes = view.votes.entry(account.to_owned()).or_default();
                    if deleted {
                        votes.remove(replica);
                    } else {
                        votes.insert(replica.to_owned(), parse_health(&value));
                    }
                }
                self.recompute(account);
            }
            (Some("decisions"), Some(tenant), None) if !deleted => {
                let Some((side, reject, epoch, cause)) = parse_decision(&value) else {
                    tracing::warn!(tenant, "ignoring an unreadable decision in etcd");
                    return;
                };
                {
                    let mut view = self.view();
                    view.decisions.insert(
                        tenant.to_owned(),
                        (event.kv.mod_revision, side, reject, epoch),
                    );
                    view.causes.insert(tenant.to_owned(), cause.clone());
                }
                let _ = self.control.sender().send(Command::Adopt {
                    tenant: tenant.to_owned(),
                    side,
                    reject,
                    epoch,
                    cause,
                });
            }
            (Some("pins"), Some(tenant), None) => {
                let revision = if deleted { 0 } else { event.kv.mod_revision };
                self.view()
                    .pin_revisions
                    .insert(tenant.to_owned(), revision);
                let (mode, reason) = if deleted {
                    (Mode::Auto, "pin removed".to_owned())
                } else {
                    parse_pin(&value)
                };
                self.send_mode(tenant, mode, reason);
            }
            (Some("regions"), Some(region), None) => {
                let revision = if deleted { 0 } else { event.kv.mod_revision };
                self.view()
                    .region_revisions
                    .insert(region.to_owned(), revision);
                let (state, reason, source) = if deleted {
                    (RegionOverride::Auto, String::new(), "operator")
                } else {
                    parse_region(&value)
                };
                let control = self.control.clone();
                let region = region.to_owned();
                tokio::spawn(async move {
                    let _ = control
                        .set_region(&region, fleet_region_change(state), &reason, source)
                        .await;
                });
            }
            (Some("config"), Some(kind), Some(name)) => {
                let mut view = self.view();
                let key = format!("{kind}/{name}");
                if deleted {
                    view.objects.remove(&key);
                } else {
                    view.objects.insert(key, value);
                }
            }
            _ => {}
        }
    }

    fn send_mode(&self, tenant: &str, mode: Mode, reason: String) {
        let control = self.control.clone();
        let tenant = tenant.to_owned();
        tokio::spawn(async move {
            let _ = control.set_mode(&tenant, mode, &reason).await;
        });
    }

    fn update_probe_filter(&self) {
        let replicas = self.view().replicas.clone();
        if replicas.is_empty() {
            return;
        }
        let me = self.name.clone();
        let k = self.cluster.probers_per_account;
        let filter: pairgate_health::monitor::ProbeFilter =
            Arc::new(move |account: &str| assigned(&replicas, account, k).contains(&me));
        self.monitor.set_filter(Some(filter));
        self.reloader.resync_probers();
    }

    /// The fleet's verdict on `account`: a majority of its assigned probers. Without a majority
    /// either way the previous verdict stands (no flapping on a split).
    fn recompute(&self, account: &str) {
        let mut view = self.view();
        let replicas = view.replicas.clone();
        let assigned = assigned(&replicas, account, self.cluster.probers_per_account);
        let votes = view.votes.get(account).cloned().unwrap_or_default();
        let count = |h: Health| {
            assigned
                .iter()
                .filter(|r| votes.get(*r) == Some(&h))
                .count()
        };
        let needed = assigned.len() / 2 + 1;
        let verdict = if assigned.is_empty() {
            None
        } else if count(Health::Unhealthy) >= needed {
            Some(Health::Unhealthy)
        } else if count(Health::Healthy) >= needed {
            Some(Health::Healthy)
        } else {
            None
        };
        let changed = match verdict {
            Some(v) if view.fleet.get(account) != Some(&v) => {
                view.fleet.insert(account.to_owned(), v);
                Some(v)
            }
            _ => None,
        };
        // Disagreement: this replica's own verdict against the fleet's.
        let local = view.local.get(account).copied();
        let fleet = view.fleet.get(account).copied();
        let disagrees =
            matches!((local, fleet), (Some(l), Some(f)) if l != f && l != Health::Unknown);
        let newly = if disagrees {
            view.disagreeing.insert(account.to_owned())
        } else {
            view.disagreeing.remove(account);
            false
        };
        self.disagreements
            .store(view.disagreeing.len() as u64, Ordering::Relaxed);
        drop(view);
        if newly && let (Some(local), Some(fleet)) = (local, fleet) {
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
        }
        if let Some(health) = changed {
            let _ = self.control.sender().send(Command::FleetVerdict {
                account: account.to_owned(),
                health,
            });
        }
    }

    /// Commits a proposal with the next epoch, unless someone else was first.
    async fn commit(&self, p: Proposal) -> anyhow::Result<()> {
        let (revision, epoch, same) = match self.view().decisions.get(&*p.tenant) {
            Some(&(rev, side, reject, epoch)) => (rev, epoch, side == p.side && reject == p.reject),
            None => (0, 0, p.side == Side::Primary && !p.reject),
        };
        if same {
            return Ok(());
        }
        let value = json!({
            "side": p.side.as_str(), "reject": p.reject, "epoch": epoch + 1,
            "cause": p.cause, "by": self.name,
        })
        .to_string();
        let key = self.key(&format!("decisions/{}", p.tenant));
        match self
            .etcd
            .put_if_revision(&key, value.as_bytes(), revision, None)
            .await?
        {
            CasOutcome::Written { revision } => {
                tracing::info!(
                    tenant = &*p.tenant,
                    to = p.side.as_str(),
                    epoch = epoch + 1,
                    "committed a fleet decision"
                );
                {
                    let mut view = self.view();
                    view.decisions.insert(
                        p.tenant.to_string(),
                        (revision, p.side, p.reject, epoch + 1),
                    );
                    view.causes.insert(p.tenant.to_string(), p.cause.to_owned());
                }
                let _ = self.control.sender().send(Command::Adopt {
                    tenant: p.tenant.to_string(),
                    side: p.side,
                    reject: p.reject,
                    epoch: epoch + 1,
                    cause: p.cause.to_owned(),
                });
                self.record(json!({"type": "decision", "tenant": &*p.tenant, "side": p.side.as_str(), "epoch": epoch + 1, "cause": p.cause})).await;
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
        let key = self.key(&format!("events/{}/{seq:020}", self.name));
        let _ = self
            .etcd
            .put(&key, event.to_string().as_bytes(), None)
            .await;
        if seq >= EVENTS_KEPT {
            let old = self.key(&format!("events/{}/{:020}", self.name, seq - EVENTS_KEPT));
            let _ = self.etcd.delete(&old).await;
        }
    }

    /// Reloads with the fleet's objects, then re-sends decisions and verdicts for the names
    /// the reload added.
    async fn reload_objects(&self) {
        let objects = self.view().objects.clone();
        self.reloader.set_fleet_objects(Some(objects.clone()));
        match self.reloader.reload_now().await {
            Ok(_) => *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(objects),
            Err(rejected) => tracing::error!(
                problems = rejected.problems.len() + rejected.more,
                "config from etcd rejected; keeping the last good one"
            ),
        }
        self.resend();
    }

    fn isolated_verdict(&self, account: &str, health: Health) {
        self.view().local.insert(account.to_owned(), health);
        if self.cluster.isolated_failover == IsolatedFailover::Act {
            let _ = self.control.sender().send(Command::FleetVerdict {
                account: account.to_owned(),
                health,
            });
        }
    }

    fn isolated_proposal(&self, p: Proposal) {
        if self.cluster.isolated_failover != IsolatedFailover::Act {
            tracing::warn!(
                tenant = &*p.tenant,
                "cut off from etcd: holding the last decision (isolated_failover = \"hold\")"
            );
            return;
        }
        let epoch = self.view().decisions.get(&*p.tenant).map_or(0, |d| d.3) + 1;
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
        value: String,
        expected: i64,
    ) -> Result<i64, FleetWriteError> {
        if !self.connected() {
            return Err(FleetWriteError::Unavailable(
                "not connected to etcd".to_owned(),
            ));
        }
        let outcome = self
            .etcd
            .put_if_revision(&key, value.as_bytes(), expected, None)
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
            let mode_name = match mode {
                Mode::Auto => "auto",
                Mode::Pinned(side) => side.as_str(),
            };
            let value = json!({"mode": mode_name, "reason": reason, "by": self.name}).to_string();
            let written = self
                .cas_override(self.key(&format!("pins/{tenant}")), value, expected)
                .await?;
            self.view().pin_revisions.insert(tenant.to_owned(), written);
            // Apply here at once; the watch brings the same change to every replica.
            let _ = self.control.set_mode(tenant, mode, reason).await;
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
            let expected = revision.unwrap_or_else(|| {
                self.view()
                    .region_revisions
                    .get(region)
                    .copied()
                    .unwrap_or(0)
            });
            let state_name = match state {
                RegionOverride::Auto => "auto",
                RegionOverride::Down => "down",
            };
            let value =
                json!({"state": state_name, "reason": reason, "source": source, "by": self.name})
                    .to_string();
            let written = self
                .cas_override(self.key(&format!("regions/{region}")), value, expected)
                .await?;
            self.view()
                .region_revisions
                .insert(region.to_owned(), written);
            let _ = self
                .control
                .set_region(region, fleet_region_change(state), reason, source)
                .await;
            Ok(written)
        })
    }

    fn pin_revision(&self, tenant: &str) -> i64 {
        self.view().pin_revisions.get(tenant).copied().unwrap_or(0)
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
                .get_prefix(&self.key("events/"))
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

/// The replicas assigned to probe `account`: the top `k` live replicas by rendezvous hash, so
/// assignments move little when replicas come and go, and every replica computes the same set.
fn assigned(replicas: &BTreeSet<String>, account: &str, k: usize) -> Vec<String> {
    let mut scored: Vec<(u64, &String)> = replicas
        .iter()
        .map(|r| {
            // FNV-1a: stable across processes (DefaultHasher's keys are not guaranteed).
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in account.bytes().chain([0]).chain(r.bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            (h, r)
        })
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().take(k).map(|(_, r)| r.clone()).collect()
}

fn parse_health(v: &str) -> Health {
    match v {
        "healthy" => Health::Healthy,
        "unhealthy" => Health::Unhealthy,
        _ => Health::Unknown,
    }
}

fn parse_side(v: &Value) -> Option<Side> {
    match v.as_str()? {
        "primary" => Some(Side::Primary),
        "secondary" => Some(Side::Secondary),
        _ => None,
    }
}

fn parse_decision(v: &str) -> Option<(Side, bool, u64, String)> {
    let v: Value = serde_json::from_str(v).ok()?;
    Some((
        parse_side(&v["side"])?,
        v["reject"].as_bool().unwrap_or(false),
        v["epoch"].as_u64()?,
        v["cause"].as_str().unwrap_or("fleet_decision").to_owned(),
    ))
}

fn parse_pin(v: &str) -> (Mode, String) {
    let v: Value = serde_json::from_str(v).unwrap_or(Value::Null);
    let mode = parse_side(&v["mode"]).map_or(Mode::Auto, Mode::Pinned);
    (mode, v["reason"].as_str().unwrap_or("").to_owned())
}

/// The fleet keeps one state per region (`regions/NAME`), and every replica applies it as is:
/// `down` is one hold (the operator's), `auto` releases every hold.
fn fleet_region_change(state: RegionOverride) -> RegionChange {
    match state {
        RegionOverride::Down => RegionChange::Hold(Holder::Operator),
        RegionOverride::Auto => RegionChange::ReleaseAll,
    }
}

fn parse_region(v: &str) -> (RegionOverride, String, &'static str) {
    let v: Value = serde_json::from_str(v).unwrap_or(Value::Null);
    let state = if v["state"].as_str() == Some("down") {
        RegionOverride::Down
    } else {
        RegionOverride::Auto
    };
    let source = if v["source"].as_str() == Some("azure-monitor") {
        "azure-monitor"
    } else {
        "operator"
    };
    (state, v["reason"].as_str().unwrap_or("").to_owned(), source)
}

/// An etcd client for `[cluster]`, with its credentials and TLS settings when configured.
pub fn connect(
    cluster: &Cluster,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Etcd, pairgate_cluster::EtcdError> {
    let credentials = cluster
        .credentials
        .as_ref()
        .map(|(user, password)| (user.as_str(), password.expose()));
    Etcd::connect(&cluster.endpoints, cluster.timeout, credentials, tls)
}

/// `pairgate cluster import`: each `[[region]]`, `[[account]]` and `[[tenant]]` of a config
/// file becomes one key under `PREFIX/config/`. Returns how many objects were written.
pub async fn import(etcd: &Etcd, prefix: &str, text: &str) -> anyhow::Result<usize> {
    let table: toml::Table = toml::from_str(text)?;
    let mut written = 0;
    for kind in ["region", "account", "tenant"] {
        let Some(items) = table.get(kind).and_then(|v| v.as_array()) else {
            continue;
        };
        for item in items {
            let name = item
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| anyhow::anyhow!("a [[{kind}]] without a name"))?;
            let mut one = toml::Table::new();
            one.insert(kind.to_owned(), toml::Value::Array(vec![item.clone()]));
            let snippet = toml::to_string(&one)?;
            etcd.put(
                &format!("{prefix}config/{kind}/{name}"),
                snippet.as_bytes(),
                None,
            )
            .await?;
            written += 1;
        }
    }
    Ok(written)
}

/// `pairgate cluster export`: the objects under `PREFIX/config/` as one TOML document.
pub async fn export(etcd: &Etcd, prefix: &str) -> anyhow::Result<String> {
    let (kvs, revision) = etcd.get_prefix(&format!("{prefix}config/")).await?;
    let mut out = format!("# exported from etcd {prefix}config/ at revision {revision}\n");
    for kind in ["region", "account", "tenant"] {
        for kv in kvs
            .iter()
            .filter(|kv| kv.key.contains(&format!("/config/{kind}/")))
        {
            out.push('\n');
            out.push_str(&String::from_utf8_lossy(&kv.value));
        }
    }
    Ok(out)
}

/// The local file with its own objects replaced by the fleet's.
pub fn compose(local: &str, objects: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut table: toml::Table = toml::from_str(local)?;
    for kind in ["region", "account", "tenant"] {
        table.remove(kind);
    }
    let mut out = toml::to_string(&table)?;
    for kind in ["region/", "account/", "tenant/"] {
        for (key, snippet) in objects {
            if key.starts_with(kind) {
                out.push('\n');
                out.push_str(snippet);
            }
        }
    }
    Ok(out)
}
