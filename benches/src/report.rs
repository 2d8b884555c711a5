//! Turning samples into numbers: throughput, HDR latency percentiles, errors by kind, replays,
//! the failover timing and a per-second timeline; then a text table, JSON and an SVG.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::{Outcome, Sample, to_u64};

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: to_u64(h.mean()),
    }
}

/// The report key of an outcome that is not a success.
fn error_key(o: Outcome) -> Option<String> {
    match o {
        Outcome::Status(s) if (200..400).contains(&s) => None,
        Outcome::Status(s) => Some(format!("status_{s}")),
        Outcome::Failed(f) => Some(f.as_str().to_owned()),
    }
}

/// Resource use of a process (or a group of threads) over the measured period.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    /// CPU time (user + system), milliseconds.
    pub cpu_ms: f64,
    /// CPU time per completed request, microseconds.
    pub cpu_us_per_request: f64,
    /// CPU time over wall time: 1.0 is one core kept busy.
    pub cores: f64,
    /// Resident set at the end, KiB (processes only).
    pub rss_kib: Option<u64>,
    /// Peak resident set, KiB (processes only).
    pub hwm_kib: Option<u64>,
}

impl Usage {
    /// Usage from a CPU-time delta over `wall` and `requests`.
    pub fn new(cpu: Duration, wall: Duration, requests: u64) -> Usage {
        Usage {
            cpu_ms: cpu.as_secs_f64() * 1e3,
            cpu_us_per_request: if requests == 0 {
                0.0
            } else {
                cpu.as_secs_f64() * 1e6 / requests as f64
            },
            cores: cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
            rss_kib: None,
            hwm_kib: None,
        }
    }
}

/// One second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    /// Seconds after the start.
    pub t: u64,
    /// Responses (any status) completed in this second.
    pub responses: u64,
    /// Failures and non-2xx/3xx statuses completed in this second.
    pub errors: u64,
    /// 99th percentile latency of this second's requests, µs.
    pub p99_us: u64,
    /// Share of this second's responses served by the secondary.
    pub secondary_share: f64,
    /// Replayed responses in this second.
    pub replays: u64,
}

/// The failover part of a run with a fault.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FailoverReport {
    /// Scenario name.
    pub scenario: String,
    /// When the fault was injected, ms after the start.
    pub injected_at_ms: f64,
    /// Tenants whose primary was hit.
    pub affected_tenants: usize,
    /// From injection to the first response served by the secondary for an affected tenant,
    /// replays included (a replay is the gateway already serving from the secondary), ms.
    pub first_secondary_ms: Option<f64>,
    /// The same for a response that was not a replay: the tenant's route itself had moved.
    pub first_routed_secondary_ms: Option<f64>,
    /// From injection until every later response to an affected tenant came from the secondary
    /// (the last primary-served or failed one), ms.
    pub settled_ms: Option<f64>,
    /// Requests completed after injection that failed (any tenant).
    pub failed_after: u64,
    /// Of those, GET requests to affected tenants (every request here is a GET).
    pub failed_affected: u64,
    /// Failures after injection by kind.
    pub errors_after: BTreeMap<String, u64>,
    /// Replayed responses after injection.
    pub replays_after: u64,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    /// A label for the run (scenario, repetition).
    pub label: String,
    /// The settings of the run.
    pub settings: BTreeMap<String, String>,
    /// Completed requests (any outcome except unsent).
    pub requests: u64,
    /// 2xx/3xx responses.
    pub ok: u64,
    /// Wall time of the load phase, seconds.
    pub elapsed_s: f64,
    /// Completed responses (any status) per second of scheduled duration.
    pub rps: f64,
    /// 2xx/3xx responses per second.
    pub ok_rps: f64,
    /// Latency of every sample that got a response, µs (open loop: from the scheduled time).
    pub latency_us: Percentiles,
    /// Errors by kind (`status_502`, `connect_refused`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Responses marked `x-pairgate-replayed`.
    pub replays: u64,
    /// Share of responses served by the secondary.
    pub secondary_share: f64,
    /// The gateway process, when it runs here.
    pub gateway: Option<Usage>,
    /// The load generator's threads.
    pub generator: Usage,
    /// The in-process mock accounts' threads.
    pub mocks: Option<Usage>,
    /// Failover timing, when a fault was injected.
    pub failover: Option<FailoverReport>,
    /// Per-second timeline.
    pub timeline: Vec<Second>,
}

/// Aggregates `samples` of a run that lasted `duration` (scheduled).
pub fn summarize(samples: &[Sample], duration: Duration) -> RunReport {
    let mut all = histogram();
    let mut errors = BTreeMap::new();
    let mut r = RunReport::default();
    let mut secondary = 0u64;
    let mut responses = 0u64;
    let secs = usize::try_from(duration.as_secs()).unwrap_or(0) + 3;
    let mut per_sec: Vec<(Histogram<u64>, Second)> = Vec::new();
    for s in samples {
        if let Some(k) = error_key(s.outcome) {
            *errors.entry(k).or_insert(0u64) += 1;
        }
        if matches!(s.outcome, Outcome::Failed(crate::client::Failure::Unsent)) {
            continue;
        }
        r.requests += 1;
        let sec = usize::try_from(s.done_us / 1_000_000).unwrap_or(usize::MAX);
        if sec < secs {
            while per_sec.len() <= sec {
                let t = per_sec.len() as u64;
                per_sec.push((
                    histogram(),
                    Second {
                        t,
                        responses: 0,
                        errors: 0,
                        p99_us: 0,
                        secondary_share: 0.0,
                        replays: 0,
                    },
                ));
            }
            let (h, b) = &mut per_sec[sec];
            let _ = h.record(s.latency_us.max(1));
            if matches!(s.outcome, Outcome::Status(_)) {
                b.responses += 1;
            }
            if !s.ok() {
                b.errors += 1;
            }
            if s.secondary {
                b.secondary_share += 1.0;
            }
            if s.replayed {
                b.replays += 1;
            }
        }
        let _ = all.record(s.latency_us.max(1));
        if s.ok() {
            r.ok += 1;
        }
        if matches!(s.outcome, Outcome::Status(_)) {
            responses += 1;
        }
        if s.secondary {
            secondary += 1;
        }
        if s.replayed {
            r.replays += 1;
        }
    }
    let d = duration.as_secs_f64().max(1e-9);
    r.rps = responses as f64 / d;
    r.ok_rps = r.ok as f64 / d;
    r.latency_us = percentiles(&all);
    r.errors = errors;
    r.secondary_share = if responses == 0 {
        0.0
    } else {
        secondary as f64 / responses as f64
    };
    r.timeline = per_sec
        .into_iter()
        .map(|(h, mut b)| {
            b.p99_us = if h.is_empty() {
                0
            } else {
                h.value_at_quantile(0.99)
            };
            b.secondary_share = if b.responses == 0 {
                0.0
            } else {
                b.secondary_share / b.responses as f64
            };
            b
        })
        .collect();
    r
}

/// Failover timing: `injected_us` after the start, `affected[tenant]` says whose primary was hit.
pub fn failover(
    scenario: &str,
    samples: &[Sample],
    injected_us: u64,
    affected: &[bool],
) -> FailoverReport {
    let hit = |s: &Sample| affected.get(s.tenant as usize).copied().unwrap_or(false);
    let ms = |us: u64| us.saturating_sub(injected_us) as f64 / 1e3;
    let after: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.done_us >= injected_us)
        .collect();
    let mut f = FailoverReport {
        scenario: scenario.to_owned(),
        injected_at_ms: injected_us as f64 / 1e3,
        affected_tenants: affected.iter().filter(|a| **a).count(),
        ..FailoverReport::default()
    };
    f.first_secondary_ms = after
        .iter()
        .filter(|s| hit(s) && s.secondary && s.ok())
        .map(|s| s.done_us)
        .min()
        .map(ms);
    f.first_routed_secondary_ms = after
        .iter()
        .filter(|s| hit(s) && s.secondary && s.ok() && !s.replayed)
        .map(|s| s.done_us)
        .min()
        .map(ms);
    f.settled_ms = after
        .iter()
        .filter(|s| hit(s) && !(s.secondary && s.ok()))
        .map(|s| s.done_us)
        .max()
        .map_or(f.first_secondary_ms, |last| Some(ms(last)));
    for s in &after {
        if let Some(k) = error_key(s.outcome) {
            f.failed_after += 1;
            if hit(s) {
                f.failed_affected += 1;
            }
            *f.errors_after.entry(k).or_insert(0) += 1;
        }
        if s.replayed {
            f.replays_after += 1;
        }
    }
    f
}

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

fn us(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1} ms", v as f64 / 1e3)
    } else {
        format!("{v} µs")
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.0} ms"))
}

/// A text report of one run.
pub fn table(r: &RunReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "== {} ==", r.label);
    let settings: Vec<String> = r.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(o, "{}", settings.join(" "));
    let _ = writeln!(
        o,
        "requests {}  ok {}  req/s {:.0}  ok req/s {:.0}  replays {}  secondary {:.1}%",
        r.requests,
        r.ok,
        r.rps,
        r.ok_rps,
        r.replays,
        r.secondary_share * 100.0
    );
    let l = &r.latency_us;
    let _ = writeln!(
        o,
        "latency  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
        us(l.p50),
        us(l.p90),
        us(l.p99),
        us(l.p999),
        us(l.max),
        us(l.mean)
    );
    if r.errors.is_empty() {
        let _ = writeln!(o, "errors   none");
    } else {
        let e: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(o, "errors   {}", e.join(" "));
    }
    if let Some(g) = &r.gateway {
        let _ = writeln!(
            o,
            "gateway  cpu {:.0} ms = {:.1} µs/req ({:.2} cores)  VmRSS {} KiB  VmHWM {} KiB",
            g.cpu_ms,
            g.cpu_us_per_request,
            g.cores,
            g.rss_kib.map_or_else(|| "?".to_owned(), |v| v.to_string()),
            g.hwm_kib.map_or_else(|| "?".to_owned(), |v| v.to_string()),
        );
    }
    let _ = writeln!(
        o,
        "load gen cpu {:.0} ms = {:.1} µs/req ({:.2} cores){}",
        r.generator.cpu_ms,
        r.generator.cpu_us_per_request,
        r.generator.cores,
        r.mocks.as_ref().map_or_else(String::new, |m| format!(
            "   mocks cpu {:.0} ms = {:.1} µs/req ({:.2} cores)",
            m.cpu_ms, m.cpu_us_per_request, m.cores
        ))
    );
    if let Some(f) = &r.failover {
        let _ = writeln!(
            o,
            "failover {} at {:.0} ms, {} tenants hit: first secondary {}  first routed (not replayed) {}  settled {}",
            f.scenario,
            f.injected_at_ms,
            f.affected_tenants,
            opt_ms(f.first_secondary_ms),
            opt_ms(f.first_routed_secondary_ms),
            opt_ms(f.settled_ms)
        );
        let e: Vec<String> = f
            .errors_after
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            o,
            "         after fault: failed {} (affected tenants {}) [{}]  replays {}",
            f.failed_after,
            f.failed_affected,
            e.join(" "),
            f.replays_after
        );
    }
    if !r.timeline.is_empty() {
        let _ = writeln!(
            o,
            "{:>4} {:>9} {:>7} {:>10} {:>10} {:>8}",
            "t(s)", "resp/s", "errors", "p99", "secondary", "replays"
        );
        for s in &r.timeline {
            let _ = writeln!(
                o,
                "{:>4} {:>9} {:>7} {:>10} {:>9.1}% {:>8}",
                s.t,
                s.responses,
                s.errors,
                us(s.p99_us),
                s.secondary_share * 100.0,
                s.replays
            );
        }
    }
    o
}

/// A timeline chart of one or more runs: responses/s and errors/s, p99 latency (log scale) and
/// the share served by the secondary, one panel each; a dashed line marks the fault.
pub fn svg(runs: &[&RunReport]) -> String {
    const W: f64 = 900.0;
    const PANEL: f64 = 170.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 30.0;
    const GAP: f64 = 40.0;
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let secs = runs
        .iter()
        .map(|r| r.timeline.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let plot_w = W - LEFT - 20.0;
    let x = |t: f64| LEFT + plot_w * t / (secs - 1) as f64;
    let max_rps = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|s| s.responses.max(s.errors)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_p99 = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|s| s.p99_us))
        .max()
        .unwrap_or(10)
        .max(10) as f64;
    let height = TOP + 3.0 * (PANEL + GAP) + 20.0 * runs.len() as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let titles = [
        format!("responses/s (solid) and errors/s (dotted), max {max_rps:.0}"),
        format!("p99 latency, log scale, 10 µs .. {}", us(to_u64(max_p99))),
        "share served by the secondary, 0..100%".to_owned(),
    ];
    for (i, title) in titles.iter().enumerate() {
        let y0 = TOP + i as f64 * (PANEL + GAP);
        let _ = writeln!(
            o,
            r##"<text x="{LEFT}" y="{:.1}">{title}</text><rect x="{LEFT}" y="{y0:.1}" width="{plot_w:.1}" height="{PANEL}" fill="none" stroke="#999"/>"##,
            y0 - 6.0
        );
        for t in 0..secs {
            if t % 5 == 0 {
                let _ = writeln!(
                    o,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666">{t}s</text>"##,
                    x(t as f64),
                    y0 + PANEL + 13.0
                );
            }
        }
    }
    let y_lin = |panel: usize, frac: f64| {
        TOP + panel as f64 * (PANEL + GAP) + PANEL * (1.0 - frac.clamp(0.0, 1.0))
    };
    let log_lo = 10f64.log10();
    let log_hi = max_p99.log10().max(log_lo + 1.0);
    for (ri, r) in runs.iter().enumerate() {
        let c = colors[ri % colors.len()];
        let line = |o: &mut String, pts: Vec<(f64, f64)>, dash: &str| {
            let p: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" {dash} points="{}"/>"#,
                p.join(" ")
            );
        };
        let tl = &r.timeline;
        line(
            &mut o,
            tl.iter()
                .map(|s| (x(s.t as f64), y_lin(0, s.responses as f64 / max_rps)))
                .collect(),
            "",
        );
        line(
            &mut o,
            tl.iter()
                .map(|s| (x(s.t as f64), y_lin(0, s.errors as f64 / max_rps)))
                .collect(),
            r#"stroke-dasharray="2,3""#,
        );
        line(
            &mut o,
            tl.iter()
                .map(|s| {
                    let v = (s.p99_us.max(10) as f64).log10();
                    (x(s.t as f64), y_lin(1, (v - log_lo) / (log_hi - log_lo)))
                })
                .collect(),
            "",
        );
        line(
            &mut o,
            tl.iter()
                .map(|s| (x(s.t as f64), y_lin(2, s.secondary_share)))
                .collect(),
            "",
        );
        if let Some(f) = &r.failover {
            let fx = x(f.injected_at_ms / 1e3);
            let _ = writeln!(
                o,
                r#"<line x1="{fx:.1}" x2="{fx:.1}" y1="{TOP}" y2="{:.1}" stroke="{c}" stroke-dasharray="6,4"/>"#,
                TOP + 3.0 * (PANEL + GAP) - GAP
            );
        }
        let _ = writeln!(
            o,
            r#"<text x="{LEFT}" y="{:.1}" fill="{c}">{}</text>"#,
            TOP + 3.0 * (PANEL + GAP) + 20.0 * ri as f64,
            xml_escape(&r.label)
        );
    }
    o.push_str("</svg>\n");
    o
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Failure;

    fn sample(
        done_ms: u64,
        tenant: u32,
        outcome: Outcome,
        secondary: bool,
        replayed: bool,
    ) -> Sample {
        Sample {
            done_us: done_ms * 1000,
            latency_us: 500,
            tenant,
            outcome,
            secondary,
            replayed,
        }
    }

    #[test]
    fn failover_timing() {
        let ok = Outcome::Status(200);
        let samples = [
            sample(900, 0, ok, false, false),
            sample(1100, 0, Outcome::Failed(Failure::Closed), false, false),
            sample(1200, 1, ok, false, false),
            sample(1300, 0, ok, true, true),
            sample(1500, 0, Outcome::Status(502), false, false),
            sample(1700, 0, ok, true, false),
        ];
        let f = failover("kill-primary", &samples, 1_000_000, &[true, false]);
        assert_eq!(f.first_secondary_ms, Some(300.0));
        assert_eq!(f.first_routed_secondary_ms, Some(700.0));
        assert_eq!(f.settled_ms, Some(500.0));
        assert_eq!(f.failed_after, 2);
        assert_eq!(f.failed_affected, 2);
        assert_eq!(f.replays_after, 1);
    }

    #[test]
    fn summary_counts() {
        let samples = [
            sample(100, 0, Outcome::Status(200), false, false),
            sample(1100, 0, Outcome::Status(503), false, false),
            sample(1200, 0, Outcome::Failed(Failure::Unsent), false, false),
        ];
        let r = summarize(&samples, Duration::from_secs(2));
        assert_eq!(r.requests, 2);
        assert_eq!(r.ok, 1);
        assert_eq!(r.errors.get("status_503"), Some(&1));
        assert_eq!(r.errors.get("unsent"), Some(&1));
        assert_eq!(r.timeline.len(), 2);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
