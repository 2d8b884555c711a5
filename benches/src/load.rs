//! The load generator: open loop at a fixed rate or closed loop, over HTTP/1.1 keep-alive
//! connections, the tenant of every request drawn uniformly or from a Zipf distribution.
//!
//! Open loop: request `k` is due at `t0 + k / rate`. A ticker thread releases each request at
//! its due time (`thread::sleep`, so the schedule is kept to tens of microseconds, where tokio's
//! timer would round every wait up to the next millisecond); `connections` workers take released
//! requests from one queue. Latency is measured from the time the request was due, so a stalled
//! gateway (or a full set of busy connections) shows up as latency instead of as fewer requests:
//! coordinated omission is not hidden. Requests still unsent when the run is `UNSENT_GRACE`
//! past its end are counted as [`Failure::Unsent`], never dropped silently.
//!
//! Closed loop: every worker sends its next request as soon as the previous one is answered.
//!
//! Every request leaves a [`Sample`]; the report is built from them after the run, so the hot
//! loop only pushes into a per-worker `Vec`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Conn, Failure, get_request};
use crate::layout::Layout;

/// How long past the end of an open-loop run a worker may still start overdue requests.
const UNSENT_GRACE: Duration = Duration::from_secs(1);

/// Tenant choice.
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    /// Every tenant equally likely.
    Uniform,
    /// Zipf with exponent `s` over tenant ranks; ranks are scattered over tenant ids so the
    /// hottest tenants do not all share one account pair.
    Zipf(f64),
}

impl std::str::FromStr for Dist {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "uniform" {
            return Ok(Dist::Uniform);
        }
        let exp = s
            .strip_prefix("zipf:")
            .and_then(|e| e.parse::<f64>().ok())
            .filter(|e| *e > 0.0)
            .ok_or_else(|| format!("expected uniform or zipf:S (S > 0), got {s:?}"))?;
        Ok(Dist::Zipf(exp))
    }
}

/// Draws tenant indices.
pub struct Picker {
    tenants: usize,
    /// Cumulative probabilities of ranks 1..=n (Zipf only).
    cdf: Option<Vec<f64>>,
}

impl Picker {
    /// A picker over `tenants` tenants.
    pub fn new(dist: &Dist, tenants: usize) -> Picker {
        let cdf = match dist {
            Dist::Uniform => None,
            Dist::Zipf(s) => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=tenants)
                    .map(|k| {
                        acc += 1.0 / f64::powf(k as f64, *s);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                Some(cdf)
            }
        };
        Picker { tenants, cdf }
    }

    /// A tenant index, from a uniform 64-bit random number.
    pub fn pick(&self, random: u64) -> usize {
        match &self.cdf {
            None => index_below(random, self.tenants),
            Some(cdf) => {
                let u = (random >> 11) as f64 / (1u64 << 53) as f64;
                let rank = cdf.partition_point(|&c| c < u).min(self.tenants - 1);
                // Scatter ranks with a prime multiplier: a bijection unless the tenant count
                // is a multiple of that prime.
                (rank.wrapping_mul(2_654_435_761)) % self.tenants
            }
        }
    }
}

/// `random` mapped onto `0..n` (Lemire's multiply-shift; the high half is below `n`).
fn index_below(random: u64, n: usize) -> usize {
    let wide = u128::from(random) * n as u128;
    usize::try_from(wide >> 64).unwrap_or(0)
}

/// SplitMix64: small, fast, good enough to pick tenants.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Open or closed loop.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// A fixed rate in requests per second.
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// Each connection sends its next request when the previous one is answered.
    Closed,
}

/// A load run.
#[derive(Clone)]
pub struct LoadSpec {
    /// Where requests go.
    pub target: SocketAddr,
    /// Open or closed loop.
    pub mode: Mode,
    /// Concurrent connections (workers).
    pub connections: usize,
    /// How long requests are scheduled (open loop) or sent (closed loop).
    pub duration: Duration,
    /// Timeout of one request, connect excluded.
    pub timeout: Duration,
    /// Tenant choice.
    pub picker: Arc<Picker>,
    /// The request path.
    pub path: String,
    /// `x-mock-region` value that means "served by the secondary".
    pub secondary_region: String,
}

/// What happened to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// No response.
    Failed(Failure),
}

/// One request.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When the request finished (or failed), in µs after the run's start.
    pub done_us: u64,
    /// Latency in µs: from the time it was due (open loop) or sent (closed loop).
    pub latency_us: u64,
    /// The tenant.
    pub tenant: u32,
    /// What came back.
    pub outcome: Outcome,
    /// Served by the secondary (`x-mock-region`).
    pub secondary: bool,
    /// Marked `x-pairgate-replayed`.
    pub replayed: bool,
}

impl Sample {
    /// A 2xx or 3xx response.
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Status(s) if (200..400).contains(&s))
    }
}

/// Every sample of a run, plus how long it really took.
pub struct LoadResult {
    /// All samples, in no particular order.
    pub samples: Vec<Sample>,
    /// From `t0` to the last worker's end.
    pub elapsed: Duration,
}

/// Runs `spec` starting at `t0` (which may be slightly in the future). Returns when every
/// worker is done: at most `duration + UNSENT_GRACE + timeout + connect` after `t0`.
pub async fn run(spec: LoadSpec, t0: Instant) -> LoadResult {
    let spec = Arc::new(spec);
    let requests = Arc::new(
        (0..spec.picker.tenants)
            .map(|i| get_request(&Layout::host(i), &spec.path))
            .collect::<Vec<_>>(),
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let tickets = Arc::new(tokio::sync::Mutex::new(rx));
    let ticker = match spec.mode {
        Mode::Open { rate } => {
            let total = scheduled(rate, spec.duration);
            let interval_ns = 1e9 / rate;
            Some(tokio::task::spawn_blocking(move || {
                // Released tickets are counted by the workers; when they stop taking them, the
                // send fails and this ends early.
                let mut k = 0u64;
                while k < total {
                    let due = |k: u64| t0 + Duration::from_nanos(to_u64(k as f64 * interval_ns));
                    let now = Instant::now();
                    if due(k) > now {
                        std::thread::sleep(due(k) - now);
                    }
                    let now = Instant::now();
                    while k < total && due(k) <= now {
                        if tx.send(due(k)).is_err() {
                            return;
                        }
                        k += 1;
                    }
                }
            }))
        }
        Mode::Closed => {
            drop(tx);
            None
        }
    };
    let workers: Vec<_> = (0..spec.connections)
        .map(|w| {
            let spec = Arc::clone(&spec);
            let tickets = Arc::clone(&tickets);
            let requests = Arc::clone(&requests);
            tokio::spawn(worker(spec, tickets, requests, t0, w as u64))
        })
        .collect();
    let mut samples = Vec::new();
    for w in workers {
        if let Ok(mut s) = w.await {
            samples.append(&mut s);
        }
    }
    // Workers are done: stop the ticker if it is still releasing (it ends at `t0 + duration`).
    tickets.lock().await.close();
    if let Some(t) = ticker {
        let _ = t.await;
    }
    if let Mode::Open { rate } = spec.mode {
        // Every sent request left one sample; the rest were scheduled but never sent.
        let total = scheduled(rate, spec.duration);
        let sent = samples.len() as u64;
        let end = micros(spec.duration);
        samples.extend((sent..total).map(|_| Sample {
            done_us: end,
            latency_us: 0,
            // Never drawn: no tenant, so an unsent request counts against no one's failover.
            tenant: u32::MAX,
            outcome: Outcome::Failed(Failure::Unsent),
            secondary: false,
            replayed: false,
        }));
    }
    LoadResult {
        samples,
        elapsed: t0.elapsed(),
    }
}

fn scheduled(rate: f64, duration: Duration) -> u64 {
    to_u64(rate * duration.as_secs_f64())
}

/// `x` rounded down to a `u64`, saturating; for counts and microseconds computed in `f64`.
#[allow(clippy::cast_possible_truncation)] // saturating float-to-int is what is wanted
pub fn to_u64(x: f64) -> u64 {
    x as u64
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn worker(
    spec: Arc<LoadSpec>,
    tickets: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Instant>>>,
    requests: Arc<Vec<Vec<u8>>>,
    t0: Instant,
    id: u64,
) -> Vec<Sample> {
    let mut rng = Rng::new(0x5eed ^ id.wrapping_mul(0x1000_0000_01b3));
    let end = t0 + spec.duration;
    let mut samples = Vec::with_capacity(4096);
    let mut conn: Option<Conn> = None;
    let secondary = spec.secondary_region.as_bytes();
    loop {
        let due = match spec.mode {
            Mode::Open { .. } => {
                let Some(due) = tickets.lock().await.recv().await else {
                    break;
                };
                if Instant::now() > end + UNSENT_GRACE {
                    // This and every later ticket are counted as unsent by `run`.
                    break;
                }
                due
            }
            Mode::Closed => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
        };
        let tenant = spec.picker.pick(rng.next_u64());
        let c = match conn.take() {
            Some(c) => Ok(c),
            None => Conn::connect(spec.target, spec.timeout).await,
        };
        let result = match c {
            Err(f) => Err(f),
            Ok(mut c) => {
                match tokio::time::timeout(spec.timeout, c.exchange(&requests[tenant], secondary))
                    .await
                {
                    Err(_) => Err(Failure::Timeout),
                    Ok(Err(f)) => Err(f),
                    Ok(Ok((reply, reuse))) => {
                        if reuse {
                            conn = Some(c);
                        }
                        Ok(reply)
                    }
                }
            }
        };
        let now = Instant::now();
        let sample = Sample {
            done_us: micros(now.saturating_duration_since(t0)),
            latency_us: micros(now.saturating_duration_since(due)),
            tenant: u32::try_from(tenant).unwrap_or(u32::MAX),
            outcome: match result {
                Ok(r) => Outcome::Status(r.status),
                Err(f) => Outcome::Failed(f),
            },
            secondary: result.is_ok_and(|r| r.secondary),
            replayed: result.is_ok_and(|r| r.replayed),
        };
        samples.push(sample);
        if let (Mode::Closed, Err(Failure::ConnectRefused | Failure::ConnectError)) =
            (spec.mode, result)
        {
            // Do not spin on a refused port in a closed loop.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let p = Picker::new(&Dist::Zipf(1.1), 1000);
        let mut rng = Rng::new(1);
        let mut hits = vec![0u32; 1000];
        for _ in 0..100_000 {
            hits[p.pick(rng.next_u64())] += 1;
        }
        let top = hits.iter().max().copied().unwrap_or(0);
        // Rank 1 of Zipf(1.1) over 1000 has about 15% of the mass.
        assert!(top > 10_000, "{top}");
    }

    #[test]
    fn uniform_covers_all() {
        let p = Picker::new(&Dist::Uniform, 10);
        let mut rng = Rng::new(2);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[p.pick(rng.next_u64())] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn parses_dist() {
        assert_eq!("uniform".parse::<Dist>(), Ok(Dist::Uniform));
        assert_eq!("zipf:1.1".parse::<Dist>(), Ok(Dist::Zipf(1.1)));
        assert!("zipf:-1".parse::<Dist>().is_err());
    }
}
