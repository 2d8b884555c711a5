//! [`TokenProvider`]: one cached, self-refreshing token per distinct credential.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::CredentialError;
use crate::http::HttpClient;
use crate::source::Source;
use crate::token::Token;

/// Timing of refreshes and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// First retry delay after a failed fetch (doubled per failure, jittered). Default 1s.
    pub min_backoff: Duration,
    /// Largest retry delay while a valid token is still cached. Default 60s.
    pub max_backoff: Duration,
    /// Largest retry delay once no valid token is cached (the accounts using it are down, so
    /// recovering soon matters more than sparing the endpoint; a `Retry-After` still wins).
    /// Default 8s.
    pub max_backoff_without_token: Duration,
    /// Lifetime assumed for a token that says nothing of its expiry (no JWT `exp`, no
    /// `expires_in`/`expires_on`). Default 30 minutes.
    pub default_lifetime: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_backoff_without_token: Duration::from_secs(8),
            default_lifetime: Duration::from_secs(30 * 60),
        }
    }
}

/// Whether a provider can serve a token now.
#[derive(Debug, Clone)]
pub enum CredentialState {
    /// No token yet; the first fetch has not finished.
    Pending,
    /// A valid token is cached (even if its refresh is failing).
    Valid,
    /// The token expired and no refresh has failed yet (nothing refreshed it).
    Expired,
    /// No valid token, and the last fetch failed with `cause`.
    Failing {
        /// The last fetch's error.
        cause: Arc<CredentialError>,
    },
}

impl CredentialState {
    /// Whether a valid token is cached.
    pub fn is_valid(&self) -> bool {
        matches!(self, CredentialState::Valid)
    }

    /// The health cause to report for the accounts using this credential: `Some("credential")`
    /// whenever no valid token is cached.
    pub fn health_cause(&self) -> Option<&'static str> {
        (!self.is_valid()).then_some("credential")
    }

    fn same_kind(&self, other: &CredentialState) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// What a 401 to a token means ([`TokenProvider::rejected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The cached token was rejected: one refresh now.
    Refreshing,
    /// A token minted after a rejection was rejected too: the account refuses the credential.
    Refused,
    /// An older token, or a refresh already asked for: nothing to do.
    Outdated,
}

/// Outcome label of one fetch, for `pairgate_token_refreshes_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshResult {
    /// A token was obtained.
    Success,
    /// The fetch failed (rejected, unreachable, server error, malformed).
    Failure,
    /// The endpoint answered 429.
    Throttled,
}

impl RefreshResult {
    /// `success`, `failure` or `throttled`.
    pub fn label(self) -> &'static str {
        match self {
            RefreshResult::Success => "success",
            RefreshResult::Failure => "failure",
            RefreshResult::Throttled => "throttled",
        }
    }
}

/// A cached, self-refreshing token for one credential; cheap to clone (clones share it).
///
/// - [`current`](Self::current) is the hot path: one `ArcSwap` load and a clock read, no lock,
///   no allocation; `None` when no valid token is cached.
/// - [`get`](Self::get) also refreshes when the token is past half its lifetime. However many
///   callers arrive together, one fetch runs at a time and its outcome is shared ("single
///   flight"); after a failure nobody fetches again before the backoff (jittered, exponential)
///   or the endpoint's `Retry-After` has passed, and the last good token is served until it
///   actually expires.
/// - [`start`](Self::start) runs the refresh in the background: a fetch at once, then at each
///   token's half-life, with retries as above; its state changes reach
///   [`subscribe`](Self::subscribe)rs.
#[derive(Clone)]
pub struct TokenProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("credential", &self.inner.label)
            .field("state", &self.state())
            .finish()
    }
}

struct Inner {
    label: Arc<str>,
    source: Source,
    http: HttpClient,
    policy: RefreshPolicy,
    current: ArcSwapOption<Token>,
    /// Set when a user of the token learned it is no longer accepted.
    stale: AtomicBool,
    /// Wakes the [`Refresher`] early (a token was rejected).
    wake: tokio::sync::Notify,
    /// Held for the duration of one fetch.
    flight: tokio::sync::Mutex<()>,
    /// Finished fetches, so waiters can tell one happened while they waited.
    attempts: AtomicU64,
    info: Mutex<Info>,
    state: watch::Sender<CredentialState>,
    /// Successful fetches so far, for waiters.
    refreshed: watch::Sender<u64>,
    successes: AtomicU64,
    failures: AtomicU64,
    throttles: AtomicU64,
    rng: AtomicU64,
}

#[derive(Default)]
struct Info {
    /// Consecutive failed fetches.
    failures: u32,
    /// No fetch before this instant (backoff or `Retry-After`).
    not_before: Option<Instant>,
    /// When the last fetch started.
    last_attempt: Option<Instant>,
    /// The last fetch's error, cleared by a success.
    last_error: Option<Arc<CredentialError>>,
}

/// Locks `m`, ignoring poisoning: every section only copies plain values in or out.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The background refresh task of [`TokenProvider::start`]; dropping it stops the task.
#[derive(Debug)]
pub struct Refresher(JoinHandle<()>);

impl Drop for Refresher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TokenProvider {
    pub(crate) fn new(
        label: String,
        source: Source,
        http: HttpClient,
        policy: RefreshPolicy,
    ) -> TokenProvider {
        let seed = label.bytes().fold(0x9e37_79b9_7f4a_7c15_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }) | 1;
        let (state, _) = watch::channel(CredentialState::Pending);
        let (refreshed, _) = watch::channel(0);
        TokenProvider {
            inner: Arc::new(Inner {
                label: label.into(),
                source,
                http,
                policy,
                current: ArcSwapOption::empty(),
                stale: AtomicBool::new(false),
                wake: tokio::sync::Notify::new(),
                flight: tokio::sync::Mutex::new(()),
                attempts: AtomicU64::new(0),
                info: Mutex::new(Info::default()),
                state,
                refreshed,
                successes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                throttles: AtomicU64::new(0),
                rng: AtomicU64::new(seed),
            }),
        }
    }

    /// The credential's label (no secret in it), e.g. for metric labels and logs.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The cached token if it is still valid. Never waits, never fetches.
    pub fn current(&self) -> Option<Arc<Token>> {
        let token = self.inner.current.load_full()?;
        token.is_valid_at(Instant::now()).then_some(token)
    }

    /// The cached token if it is valid and not yet due for refresh.
    fn fresh(&self) -> Option<Arc<Token>> {
        let token = self.inner.current.load_full()?;
        (Instant::now() < token.refresh_at() && !self.inner.stale.load(Ordering::Acquire))
            .then_some(token)
    }

    /// A valid token, refreshing first when it is due (see the type's documentation). An
    /// `Err` means no valid token is cached and the last fetch failed.
    pub async fn get(&self) -> Result<Arc<Token>, Arc<CredentialError>> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let seen = self.inner.attempts.load(Ordering::Acquire);
        let _flight = self.inner.flight.lock().await;
        if self.inner.attempts.load(Ordering::Acquire) != seen {
            // A fetch finished while this caller waited: share its outcome.
            return self.outcome();
        }
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let now = Instant::now();
        if lock(&self.inner.info).not_before.is_some_and(|nb| now < nb) {
            return self.outcome();
        }
        self.attempt().await
    }

    /// Marks `token` as no longer accepted, so the next [`get`](Self::get) refreshes (if it is
    /// still the cached one) and a running [`Refresher`] refreshes at once.
    pub fn invalidate(&self, token: &Arc<Token>) {
        self.rejected(token);
    }

    /// An account answered 401 to a request that carried `token`. The first 401 to the cached
    /// token triggers one immediate refresh ([`Rejection::Refreshing`]); a 401 to a token that
    /// was itself minted after a rejection says the account refuses the credential
    /// ([`Rejection::Refused`]: a passive failure signal, and no further refresh beyond the
    /// usual schedule, so a refusing account cannot drive a refresh loop); anything else (an
    /// older token, a refresh already asked for) changes nothing.
    pub fn rejected(&self, token: &Arc<Token>) -> Rejection {
        if token.after_rejection() {
            return Rejection::Refused;
        }
        let current = self.inner.current.load();
        if !current.as_ref().is_some_and(|c| Arc::ptr_eq(c, token)) {
            return Rejection::Outdated;
        }
        if self.inner.stale.swap(true, Ordering::AcqRel) {
            return Rejection::Outdated;
        }
        tracing::info!(
            credential = %self.inner.label,
            "an account rejected the current token (401); refreshing it now"
        );
        self.inner.wake.notify_one();
        Rejection::Refreshing
    }

    /// The cached token if valid, else the last error.
    fn outcome(&self) -> Result<Arc<Token>, Arc<CredentialError>> {
        if let Some(token) = self.current() {
            return Ok(token);
        }
        Err(lock(&self.inner.info)
            .last_error
            .clone()
            .unwrap_or_else(|| {
                Arc::new(CredentialError::Pending {
                    credential: Arc::clone(&self.inner.label),
                })
            }))
    }

    /// One fetch; the caller holds `flight`.
    async fn attempt(&self) -> Result<Arc<Token>, Arc<CredentialError>> {
        let inner = &self.inner;
        lock(&inner.info).last_attempt = Some(Instant::now());
        let after_rejection = inner.stale.load(Ordering::Acquire);
        let fetched = inner.source.fetch(&inner.http, &inner.label).await;
        let token = fetched.and_then(|f| {
            let mut token = Token::new(f.value, f.hints, inner.policy.default_lifetime).ok_or(
                CredentialError::Malformed {
                    credential: Arc::clone(&inner.label),
                    endpoint: "token",
                    what: "the token is not a valid header value",
                },
            )?;
            token.set_after_rejection(after_rejection);
            Ok(token)
        });
        let result = match token {
            Ok(token) => {
                let token = Arc::new(token);
                inner.current.store(Some(Arc::clone(&token)));
                inner.stale.store(false, Ordering::Release);
                *lock(&inner.info) = Info {
                    last_attempt: Some(token.obtained_at()),
                    ..Info::default()
                };
                let n = inner.successes.fetch_add(1, Ordering::Relaxed) + 1;
                inner.refreshed.send_replace(n);
                tracing::debug!(
                    credential = %inner.label,
                    expires_in_s = token.expires_at().saturating_duration_since(Instant::now()).as_secs(),
                    "token refreshed"
                );
                Ok(token)
            }
            Err(error) => {
                let error = Arc::new(error);
                let delay = {
                    let mut info = lock(&inner.info);
                    info.failures = info.failures.saturating_add(1);
                    let mut backoff = self.backoff(info.failures);
                    if self.current().is_none() {
                        backoff = backoff.min(inner.policy.max_backoff_without_token);
                    }
                    let delay = match error.retry_after() {
                        Some(wait) if !wait.is_zero() => wait,
                        _ => backoff,
                    };
                    info.not_before = Some(Instant::now() + delay);
                    info.last_error = Some(Arc::clone(&error));
                    delay
                };
                let counter = if error.retry_after().is_some() {
                    &inner.throttles
                } else {
                    &inner.failures
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    credential = %inner.label,
                    error = %error,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "token refresh failed"
                );
                Err(error)
            }
        };
        inner.attempts.fetch_add(1, Ordering::AcqRel);
        self.publish_state();
        // A failed refresh still serves the last good token until it expires.
        result.or_else(|error| self.current().ok_or(error))
    }

    /// `min_backoff · 2^(failures-1)`, at most `max_backoff`, jittered to between half and all
    /// of it (so providers that failed together do not retry together).
    fn backoff(&self, failures: u32) -> Duration {
        let policy = &self.inner.policy;
        let exp = failures.saturating_sub(1).min(20);
        let base = policy
            .min_backoff
            .saturating_mul(1 << exp)
            .min(policy.max_backoff);
        let half = base / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.random() % nanos.saturating_add(1))
    }

    /// xorshift64; good enough for jitter.
    fn random(&self) -> u64 {
        let mut x = self.inner.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.inner.rng.store(x, Ordering::Relaxed);
        x
    }

    /// The state now (computed, so it is right even without a running [`Refresher`]).
    pub fn state(&self) -> CredentialState {
        if self.current().is_some() {
            return CredentialState::Valid;
        }
        if let Some(cause) = lock(&self.inner.info).last_error.clone() {
            return CredentialState::Failing { cause };
        }
        if self.inner.current.load().is_some() {
            CredentialState::Expired
        } else {
            CredentialState::Pending
        }
    }

    fn publish_state(&self) {
        let next = self.state();
        self.inner.state.send_if_modified(|state| {
            let changed = !state.same_kind(&next);
            *state = next;
            changed
        });
    }

    /// State changes as the [`Refresher`] sees them (kind changes only: `Valid` → `Failing`,
    /// ...), for health reporting.
    pub fn subscribe(&self) -> watch::Receiver<CredentialState> {
        self.inner.state.subscribe()
    }

    /// The number of successful fetches, updated after each one (wait for a refresh with
    /// `wait_for`).
    pub fn refreshed(&self) -> watch::Receiver<u64> {
        self.inner.refreshed.subscribe()
    }

    /// Whether `self` and `other` are the same provider (clones of one another).
    pub fn same_as(&self, other: &TokenProvider) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Seconds until the cached token expires; 0 with none (`pairgate_account_token_expiry_seconds`).
    pub fn seconds_left(&self) -> f64 {
        self.current().map_or(0.0, |t| {
            t.expires_at()
                .saturating_duration_since(Instant::now())
                .as_secs_f64()
        })
    }

    /// Fetches so far with `result` (`pairgate_token_refreshes_total{result}`).
    pub fn refreshes(&self, result: RefreshResult) -> u64 {
        let counter = match result {
            RefreshResult::Success => &self.inner.successes,
            RefreshResult::Failure => &self.inner.failures,
            RefreshResult::Throttled => &self.inner.throttles,
        };
        counter.load(Ordering::Relaxed)
    }

    /// Starts refreshing in the background: a fetch now, then at each token's half-life, with
    /// backoff after failures; the state is published at each change and when the token
    /// expires. Needs a Tokio runtime.
    pub fn start(&self) -> Refresher {
        let provider = self.clone();
        Refresher(tokio::spawn(async move { provider.run().await }))
    }

    async fn run(self) {
        loop {
            // Refreshes if due; the outcome is in the provider's state.
            let _ = self.get().await;
            self.publish_state();
            let now = Instant::now();
            let token = self.inner.current.load_full();
            let (not_before, last_attempt) = {
                let info = lock(&self.inner.info);
                (info.not_before, info.last_attempt)
            };
            let stale = self.inner.stale.load(Ordering::Acquire);
            let mut wake = match &token {
                Some(t) if !stale && not_before.is_none() => t.refresh_at(),
                _ => now,
            };
            if let Some(nb) = not_before {
                wake = wake.max(nb);
            }
            // Never two fetches closer than `min_backoff` (a token born expired, a clock jump).
            if let Some(last) = last_attempt {
                wake = wake.max(last + self.inner.policy.min_backoff);
            }
            if let Some(expiry) = token.as_ref().map(|t| t.expires_at())
                && expiry > now
                && expiry < wake
            {
                tokio::time::sleep_until(expiry).await;
                self.publish_state();
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                // A rejected token: refresh now (still no sooner than `min_backoff` after the
                // last fetch, which `get` and the next round enforce).
                () = self.inner.wake.notified() => {
                    if let Some(last) = last_attempt {
                        tokio::time::sleep_until(last + self.inner.policy.min_backoff).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_bounds_and_jitters() {
        let policy = RefreshPolicy {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_backoff_without_token: Duration::from_millis(1000),
            default_lifetime: Duration::from_secs(60),
        };
        let provider = TokenProvider::new(
            "test".into(),
            Source::Imds {
                url: "http://127.0.0.1:1/".into(),
            },
            HttpClient::new(Duration::from_secs(1)),
            policy,
        );
        for (failures, base) in [
            (1u32, 100u64),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            let samples: Vec<Duration> = (0..200).map(|_| provider.backoff(failures)).collect();
            let base = Duration::from_millis(base);
            assert!(
                samples.iter().all(|d| *d >= base / 2 && *d <= base),
                "{failures}: {samples:?}"
            );
            let distinct: std::collections::HashSet<_> = samples.iter().collect();
            assert!(distinct.len() > 20, "jitter varies");
        }
    }

    #[test]
    fn states_report_the_credential_health_cause() {
        assert_eq!(CredentialState::Valid.health_cause(), None);
        assert_eq!(CredentialState::Pending.health_cause(), Some("credential"));
        assert_eq!(CredentialState::Expired.health_cause(), Some("credential"));
        let cause = Arc::new(CredentialError::Pending {
            credential: "x".into(),
        });
        assert_eq!(
            CredentialState::Failing { cause }.health_cause(),
            Some("credential")
        );
    }
}
