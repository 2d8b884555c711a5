//! One prober task per distinct account, and the passive-signal intake.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use pairgate_config::Config;
use pairgate_failover::{Health, HealthCounter};
use pairgate_routing::RouteTable;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::control::Command;
use crate::probe::{ProbeClient, ProbeResult, ProbeTarget, probe};

/// Queued passive failures per account before further ones are dropped (they are hints; the
/// prober drains them in bursts).
const PASSIVE_QUEUE: usize = 64;

/// What live traffic told about an account: one failed exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHint {
    /// It counts toward `fall` (a refused, reset or timed-out attempt, or a 502/503/504).
    pub fall: bool,
    /// Consecutive 5xx answers or gateway errors so far, this one included (from the
    /// account's `HealthCell`); at `passive_consecutive_5xx` the account is ejected.
    pub consecutive_5xx: u32,
}

/// The verdict reason of an outlier ejection.
pub const PASSIVE_5XX: &str = pairgate_failover::CauseLabel::PassiveEjection.as_str();

/// A verdict change reported by a prober.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The account's identity.
    pub key: Arc<str>,
    /// The new verdict.
    pub health: Health,
    /// What tipped it: a probe result label, `passive`, or `passive_5xx` (ejection).
    pub reason: &'static str,
    /// Why the probe that tipped it failed (`tls: invalid peer certificate: Expired`), at most
    /// [`MAX_PROBE_REASON`](crate::probe::MAX_PROBE_REASON) bytes; `None` for successes and
    /// passive signals.
    pub detail: Option<Arc<str>>,
}

/// Probe counts since start, for metrics and tests.
#[derive(Debug, Default)]
pub struct ProbeStats {
    /// Probes that succeeded.
    pub success: AtomicU64,
    /// Probes that failed.
    pub failure: AtomicU64,
    /// Passive failures received from live traffic.
    pub passive: AtomicU64,
    /// Outlier ejections (consecutive live 5xx).
    pub ejections: AtomicU64,
}

struct Prober {
    target: ProbeTarget,
    passive: mpsc::Sender<PassiveHint>,
    task: JoinHandle<()>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Owns the probers. [`Monitor::sync`] makes the set match a config: one prober per distinct
/// account identity, however many tenants share the account.
pub struct Monitor {
    client: ProbeClient,
    probers: Mutex<HashMap<Arc<str>, Prober>>,
    /// Lock-free lookup for the data plane's passive signals.
    passive: ArcSwap<HashMap<Arc<str>, mpsc::Sender<PassiveHint>>>,
    commands: mpsc::UnboundedSender<Command>,
    awaiting_first_probe: Arc<AtomicUsize>,
    stats: Arc<ProbeStats>,
    /// Fleet mode: which accounts this replica probes (by account name); `None` probes all.
    filter: Mutex<Option<ProbeFilter>>,
}

/// Decides, by account name, whether this replica probes an account.
pub type ProbeFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl Monitor {
    /// A monitor that reports verdict changes to the controller through `commands`.
    pub fn new(connect_timeout: Duration, commands: mpsc::UnboundedSender<Command>) -> Monitor {
        Monitor {
            client: ProbeClient::new(connect_timeout),
            probers: Mutex::new(HashMap::new()),
            passive: ArcSwap::from_pointee(HashMap::new()),
            commands,
            awaiting_first_probe: Arc::new(AtomicUsize::new(0)),
            stats: Arc::new(ProbeStats::default()),
            filter: Mutex::new(None),
        }
    }

    /// Fleet mode: probe only the accounts `filter` accepts (applies at the next `sync`).
    pub fn set_filter(&self, filter: Option<ProbeFilter>) {
        *self.filter.lock().unwrap_or_else(|p| p.into_inner()) = filter;
    }

    /// Starts probers for new accounts (their first probe runs at once), stops those of
    /// accounts that are gone, and restarts those whose check changed. Must be called from
    /// within a tokio runtime.
    pub fn sync(
        &self,
        config: &Config,
        table: &RouteTable,
        tls: &pairgate_tls::UpstreamTlsMap,
        credentials: &pairgate_credentials::CredentialMap,
    ) {
        let mut probers = self.probers.lock().unwrap_or_else(|p| p.into_inner());
        let mut wanted: HashMap<Arc<str>, ProbeTarget> = HashMap::new();
        let filter = self
            .filter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (account, spec) in table.accounts().iter().zip(&config.accounts) {
            if filter.as_ref().is_some_and(|f| !f(&account.name)) {
                continue;
            }
            wanted.entry(Arc::clone(&account.key)).or_insert_with(|| {
                let tls = tls.get(&account.key);
                ProbeTarget::new(
                    account,
                    &spec.health,
                    tls,
                    credentials.get(&account.key),
                    config.upstream.connect_timeout,
                )
            });
        }
        // TLS accounts are re-probed with fresh settings on every sync (their files may have
        // changed); plain ones keep their prober while the probe (check, headers, which a
        // rotated secret changes, and minted credential) is unchanged.
        probers.retain(|key, prober| {
            wanted.get(key).is_some_and(|target| {
                target.same_probe(&prober.target)
                    && prober.target.same_credential(target.credential.as_ref())
                    && !tls.contains_key(key)
            })
        });
        for (key, target) in wanted {
            if probers.contains_key(&key) {
                continue;
            }
            let (tx, rx) = mpsc::channel(PASSIVE_QUEUE);
            let task = tokio::spawn(run(
                target.clone(),
                self.client.clone(),
                rx,
                self.commands.clone(),
                FirstProbe::new(&self.awaiting_first_probe),
                Arc::clone(&self.stats),
            ));
            probers.insert(
                key,
                Prober {
                    target,
                    passive: tx,
                    task,
                },
            );
        }
        let senders = probers
            .iter()
            .map(|(k, p)| (Arc::clone(k), p.passive.clone()))
            .collect();
        self.passive.store(Arc::new(senders));
    }

    /// A live request to the account `key` failed (see [`PassiveHint`]): may count toward
    /// `fall`, may eject the account, and asks for an early probe. Never blocks; when the
    /// account's queue is full the signal is dropped (the next failure carries a higher count).
    pub fn passive_failure(&self, key: &str, hint: PassiveHint) {
        if let Some(tx) = self.passive.load().get(key) {
            self.stats.passive.fetch_add(1, Ordering::Relaxed);
            let _ = tx.try_send(hint);
        }
    }

    /// Whether every prober started so far has finished its first probe.
    pub fn first_round_done(&self) -> bool {
        self.awaiting_first_probe.load(Ordering::Acquire) == 0
    }

    /// Number of running probers (distinct accounts).
    pub fn prober_count(&self) -> usize {
        self.probers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Probe counters.
    pub fn stats(&self) -> &ProbeStats {
        &self.stats
    }

    /// Stops every prober.
    pub fn shutdown(&self) {
        self.probers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.passive.store(Arc::new(HashMap::new()));
    }
}

/// Counts one prober in `awaiting_first_probe` (readiness) until its first probe has ended, or
/// until the prober is stopped before that (its task dropped: a reload or a fleet reassignment
/// that removes it), so a stopped prober cannot hold readiness at 503 for good.
struct FirstProbe(Option<Arc<AtomicUsize>>);

impl FirstProbe {
    fn new(awaiting: &Arc<AtomicUsize>) -> FirstProbe {
        awaiting.fetch_add(1, Ordering::AcqRel);
        FirstProbe(Some(Arc::clone(awaiting)))
    }

    fn done(&mut self) {
        if let Some(awaiting) = self.0.take() {
            awaiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for FirstProbe {
    fn drop(&mut self) {
        self.done();
    }
}

/// A prober: probe at once, then every `interval` (`fast_interval` while the verdict is in
/// transition), each jittered by about ±10%; passive failures count at once and pull the next
/// probe forward, but never closer than `fast_interval` to the previous one.
///
/// Outlier ejection: a hint carrying `passive_consecutive_5xx` consecutive live 5xx makes the
/// account unhealthy ([`PASSIVE_5XX`]) for `passive_ejection`. Probe successes do not count
/// while it lasts, so afterwards `rise` successes are needed again.
async fn run(
    target: ProbeTarget,
    client: ProbeClient,
    mut passive: mpsc::Receiver<PassiveHint>,
    commands: mpsc::UnboundedSender<Command>,
    mut first: FirstProbe,
    stats: Arc<ProbeStats>,
) {
    let check = &target.check;
    let mut counter = HealthCounter::new(check.rise, check.fall);
    let mut jitter = Jitter::new(&target.key);
    let mut next = Instant::now();
    let mut last_probe: Option<Instant> = None;
    let mut ejected_until: Option<Instant> = None;
    // An account with a minted credential: the first probe waits (within the probe timeout)
    // for its first token, so a gateway starting up is not ready before it has one and does
    // not count a `credential` failure for a fetch still in flight. Later, each change of the
    // credential's state (a token obtained, failing, expired) probes at once.
    let mut credential_changes = match &target.credential {
        Some(credential) => {
            let _ = tokio::time::timeout(check.timeout, credential.provider.get()).await;
            let mut rx = credential.provider.subscribe();
            rx.mark_unchanged();
            Some(rx)
        }
        None => None,
    };
    let send = |health: Option<Health>, reason: &'static str, detail: Option<Arc<str>>| {
        if let Some(health) = health {
            let _ = commands.send(Command::Verdict(Verdict {
                key: Arc::clone(&target.key),
                health,
                reason,
                detail,
            }));
        }
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                let started = Instant::now();
                last_probe = Some(started);
                let report = probe(&client, &target).await;
                let result = report.result;
                // Out of descriptors here is no evidence about the account (counted apart).
                if result != ProbeResult::LocalResource {
                    let counter_stat = if result.is_success() { &stats.success } else { &stats.failure };
                    counter_stat.fetch_add(1, Ordering::Relaxed);
                    target.counters.record_probe(result.label());
                    if result != ProbeResult::Success {
                        tracing::debug!(account = &*target.name, result = result.label(), reason = report.reason.as_deref(), "probe failed");
                    }
                    let ejected = ejected_until.is_some_and(|until| started < until);
                    if !ejected {
                        ejected_until = None;
                    }
                    // While ejected, a passing probe does not count: the ejection lasts its time.
                    if !(ejected && result.is_success()) {
                        send(counter.record(result.is_success()), result.label(), report.reason);
                    }
                }
                first.done();
                let base = if counter.in_transition() { check.fast_interval } else { check.interval };
                next = started + jitter.apply(base);
                if let Some(until) = ejected_until {
                    // Probe as the ejection ends, so the first probe that counts is not late.
                    next = next.min(until.max(started + check.fast_interval));
                }
            }
            changed = async {
                match credential_changes.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if changed {
                    next = Instant::now();
                } else {
                    credential_changes = None;
                }
            }
            Some(hint) = passive.recv() => {
                let mut hint = Some(hint);
                while let Some(h) = hint {
                    if h.fall {
                        send(counter.record(false), "passive", None);
                    }
                    let threshold = check.passive_consecutive_5xx;
                    let now = Instant::now();
                    let ejected = ejected_until.is_some_and(|until| now < until);
                    if threshold > 0 && h.consecutive_5xx >= threshold && !ejected {
                        ejected_until = Some(now + check.passive_ejection);
                        target.cell.reset_5xx();
                        stats.ejections.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            account = &*target.name,
                            consecutive_5xx = h.consecutive_5xx,
                            ejection = ?check.passive_ejection,
                            "account ejected: consecutive 5xx from live traffic"
                        );
                        let detail = format!("{} consecutive 5xx from live traffic", h.consecutive_5xx);
                        send(counter.eject(), PASSIVE_5XX, Some(detail.into()));
                    }
                    hint = passive.try_recv().ok();
                }
                let earliest = last_probe.map_or_else(Instant::now, |t| t + check.fast_interval);
                next = next.min(earliest.max(Instant::now()));
            }
        }
    }
}

/// ±10% jitter from a small xorshift generator seeded per account, so probers never
/// synchronise.
struct Jitter(u64);

impl Jitter {
    fn new(key: &str) -> Jitter {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(key.as_bytes());
        Jitter(h.finish() | 1)
    }

    fn apply(&mut self, base: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // A factor in [0.9, 1.1) from the top 53 bits.
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.9 + 0.2 * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prober stopped before its first probe ended (here: a reassignment away from this
    /// replica while the probe waits on an account that never answers) no longer counts toward
    /// readiness.
    #[tokio::test]
    async fn a_prober_stopped_before_its_first_probe_does_not_hold_readiness() {
        // Accepts and never answers: the first probe waits for its 20 s timeout.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr");
        let text = format!(
            "[health]\ninterval = \"30s\"\ntimeout = \"20s\"\n\
             [[region]]\nname = \"r\"\n\
             [[account]]\nname = \"a\"\nregion = \"r\"\nurl = \"http://{addr}\"\n\
             [[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"a\"\n"
        );
        let config = pairgate_config::load(&text, &|_| None)
            .expect("valid config")
            .config;
        let table = RouteTable::compile(&config, 1, None).expect("compiles");
        let (tx, _rx) = mpsc::unbounded_channel();
        let monitor = Monitor::new(Duration::from_secs(1), tx);
        let tls = pairgate_tls::UpstreamTlsMap::default();
        monitor.sync(&config, &table, &tls, &Default::default());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !monitor.first_round_done(),
            "the first probe is still waiting"
        );
        monitor.set_filter(Some(Arc::new(|_: &str| false)));
        monitor.sync(&config, &table, &tls, &Default::default());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !monitor.first_round_done() {
            assert!(
                Instant::now() < deadline,
                "readiness held by a stopped prober"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(silent);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let mut j = Jitter::new("account|http://127.0.0.1:1");
        let base = Duration::from_millis(1000);
        let samples: Vec<Duration> = (0..1000).map(|_| j.apply(base)).collect();
        assert!(
            samples
                .iter()
                .all(|d| *d >= Duration::from_millis(900) && *d < Duration::from_millis(1100))
        );
        let min = samples.iter().min().copied().unwrap_or_default();
        let max = samples.iter().max().copied().unwrap_or_default();
        assert!(
            max - min > Duration::from_millis(150),
            "jitter barely varies: {min:?}..{max:?}"
        );
    }
}
