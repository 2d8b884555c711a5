//! The `pairgate-bench` command: arguments, one run (mocks, gateway, load, fault), repeated
//! failover timing, and the output files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use pairgate_mock::Behavior;
use serde::Serialize;

use crate::client::{Conn, get_request};
use crate::gateway::{Endpoint, GatewayProcess, Launch, find_gateway_bin};
use crate::layout::{GatewayOptions, Layout, SECONDARY_REGION, gateway_config};
use crate::load::{self, Dist, LoadSpec, Mode, Picker};
use crate::procfs;
use crate::regions::Regions;
use crate::report::{self, RunReport, Usage};

/// A fault injected during the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// No fault.
    None,
    /// Kill the primary accounts of the hit tenants (connects refused, connections closed).
    KillPrimary,
    /// Make those primaries accept and never answer.
    BlackholePrimary,
    /// Make those primaries go down and up every `--flap-period`.
    FlapPrimary,
    /// Mark region eastus (every primary) down through the admin API.
    RegionDown,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::None => "none",
            Scenario::KillPrimary => "kill-primary",
            Scenario::BlackholePrimary => "blackhole-primary",
            Scenario::FlapPrimary => "flap-primary",
            Scenario::RegionDown => "region-down",
        }
    }
}

/// Which failover timings `--repeat` collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Traffic {
    /// Under load (the load itself shows the first secondary response).
    With,
    /// Idle: poll the admin API every 10 ms until the tenant moved, then send one request.
    Without,
    /// Both, each `--repeat` times.
    Both,
}

/// Capacity and failover harness for pairgate: starts mock regions and the gateway, drives
/// HTTP/1.1 load at it and injects faults.
#[derive(Debug, Parser)]
#[command(name = "pairgate-bench", version)]
pub struct Args {
    /// Tenants (`t{i}`, `Host: t{i}.bench.local`).
    #[arg(long, default_value_t = 1000)]
    pub tenants: usize,
    /// Account pairs the tenants are spread over (`east{p}` in eastus, `west{p}` in westus).
    #[arg(long, default_value_t = 4)]
    pub accounts: usize,
    /// Open loop at this many requests per second (latency from the scheduled time). Without
    /// it: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Connections (closed loop: concurrency; open loop: most requests in flight).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Load duration, e.g. `10s`, `500ms` (at most 30 s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Closed-loop warm-up before the measured run (not measured).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Per-request timeout on the client.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Tenant choice: `uniform` or `zipf:S`.
    #[arg(long, default_value = "uniform")]
    pub dist: Dist,
    /// Request path.
    #[arg(long, default_value = "/bench")]
    pub path: String,
    /// Fault to inject.
    #[arg(long, value_enum, default_value_t = Scenario::None)]
    pub scenario: Scenario,
    /// When to inject it, after the load starts.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub fault_at: Duration,
    /// Share of account pairs whose primary is hit (at least one pair); their tenants are the
    /// affected ones. Keep it below `region_outage_ratio` (0.5) unless a whole-region move is
    /// what you want to see.
    #[arg(long, default_value_t = 0.25)]
    pub fault_tenants: f64,
    /// Period of `flap-primary`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub flap_period: Duration,
    /// Repeat the run this many times, each with fresh mocks and a fresh gateway, and report
    /// the median failover times.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// With `--repeat`: time failover under load, idle, or both.
    #[arg(long, value_enum, default_value_t = Traffic::Both)]
    pub traffic: Traffic,
    /// The `pairgate` binary (default: next to this one, built if missing).
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// `[runtime] worker_threads` of the gateway.
    #[arg(long, default_value_t = 1)]
    pub gateway_threads: usize,
    /// Run the gateway under `taskset -c CPUS`.
    #[arg(long)]
    pub gateway_cpus: Option<String>,
    /// `[health] interval` (default: the gateway's, 2s).
    #[arg(long, value_parser = parse_duration)]
    pub health_interval: Option<Duration>,
    /// `[upstream] response_header_timeout` (default: the gateway's, 30s).
    #[arg(long, value_parser = parse_duration)]
    pub upstream_timeout: Option<Duration>,
    /// Keep the gateway's per-request access log on stderr (off by default).
    #[arg(long)]
    pub access_log: bool,
    /// Target a running gateway at this URL (`http://127.0.0.1:8080`) instead of starting one;
    /// only `--scenario none` and `region-down` then.
    #[arg(long)]
    pub target: Option<String>,
    /// Admin API of the running gateway (`http://127.0.0.1:9901`).
    #[arg(long)]
    pub admin: Option<String>,
    /// Admin token of the running gateway.
    #[arg(long, default_value = "bench-token")]
    pub token: String,
    /// Process id of the running gateway, for CPU and RSS.
    #[arg(long)]
    pub gateway_pid: Option<u32>,
    /// Load generator threads.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Threads of the in-process mock accounts.
    #[arg(long, default_value_t = 1)]
    pub mock_threads: usize,
    /// Write every run's report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a timeline chart (SVG) here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// `10s`, `250ms`, `1.5s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 10s or 500ms, got {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("unknown unit in {s:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn addr_of(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .parse()
        .with_context(|| format!("{url}: expected http://IP:PORT"))
}

/// What a whole invocation produced; written with `--json`.
#[derive(Debug, Default, Serialize)]
pub struct Output {
    /// Every run with traffic.
    pub runs: Vec<RunReport>,
    /// Idle failover timings (`--repeat` without traffic).
    pub idle: Vec<IdleFailover>,
    /// Medians over the repetitions.
    pub medians: BTreeMap<String, f64>,
}

/// One idle failover timing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IdleFailover {
    /// Scenario name.
    pub scenario: String,
    /// From the fault to the admin API first showing the tenant on the secondary, ms.
    pub moved_ms: Option<f64>,
    /// From the fault to the first response served by the secondary (sent once it moved), ms.
    pub first_secondary_ms: Option<f64>,
}

/// The whole command. `rt` runs the load generator (threads named `load-rt`).
pub fn main(args: &Args, rt: &tokio::runtime::Runtime) -> anyhow::Result<Output> {
    check(args)?;
    let mut out = Output::default();
    let repeat = args.repeat.max(1);
    // A single run is timed under load unless `--traffic without` says otherwise.
    let with = args.traffic != Traffic::Without;
    let without = args.traffic != Traffic::With
        && args.scenario != Scenario::None
        && (args.repeat > 1 || args.traffic == Traffic::Without);
    if with {
        for i in 0..repeat {
            let label = if repeat > 1 {
                format!("{} #{}", args.scenario.name(), i + 1)
            } else {
                args.scenario.name().to_owned()
            };
            let r = run_once(args, rt, &label)?;
            eprintln!(
                "pairgate-bench: {label}: {:.0} req/s, p99 {} µs, {} errors",
                r.rps,
                r.latency_us.p99,
                r.errors.values().sum::<u64>()
            );
            out.runs.push(r);
        }
    }
    if without {
        for i in 0..repeat {
            let r = run_idle(args, rt)?;
            eprintln!(
                "pairgate-bench: idle {} #{}: moved {:?} ms, first secondary response {:?} ms",
                r.scenario,
                i + 1,
                r.moved_ms,
                r.first_secondary_ms
            );
            out.idle.push(r);
        }
    }
    let fo: Vec<&report::FailoverReport> = out
        .runs
        .iter()
        .filter_map(|r| r.failover.as_ref())
        .collect();
    let mut put = |key: &str, xs: Vec<f64>| {
        if let Some(m) = report::median(&xs) {
            out.medians.insert(key.to_owned(), m);
        }
    };
    put(
        "loaded_first_secondary_ms",
        fo.iter().filter_map(|f| f.first_secondary_ms).collect(),
    );
    put(
        "loaded_first_routed_secondary_ms",
        fo.iter()
            .filter_map(|f| f.first_routed_secondary_ms)
            .collect(),
    );
    put(
        "loaded_settled_ms",
        fo.iter().filter_map(|f| f.settled_ms).collect(),
    );
    put(
        "loaded_failed_affected",
        fo.iter().map(|f| f.failed_affected as f64).collect(),
    );
    put("rps", out.runs.iter().map(|r| r.rps).collect());
    put(
        "idle_moved_ms",
        out.idle.iter().filter_map(|r| r.moved_ms).collect(),
    );
    put(
        "idle_first_secondary_ms",
        out.idle
            .iter()
            .filter_map(|r| r.first_secondary_ms)
            .collect(),
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        let runs: Vec<&RunReport> = out.runs.iter().collect();
        std::fs::write(path, report::svg(&runs))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(out)
}

fn check(args: &Args) -> anyhow::Result<()> {
    if args.tenants == 0 || args.accounts == 0 {
        bail!("--tenants and --accounts must be at least 1");
    }
    if args.duration > Duration::from_secs(30) || args.duration.is_zero() {
        bail!("--duration must be more than 0 and at most 30s");
    }
    if args.scenario != Scenario::None && args.fault_at >= args.duration {
        bail!("--fault-at must fall within --duration");
    }
    if args.repeat > 20 {
        bail!("--repeat is at most 20");
    }
    if let Some(rate) = args.rate
        && !(rate > 0.0 && rate <= 1e6)
    {
        bail!("--rate must be in (0, 1e6]");
    }
    if args.target.is_some() && !matches!(args.scenario, Scenario::None | Scenario::RegionDown) {
        bail!("with --target only --scenario none or region-down (the mocks are not ours)");
    }
    Ok(())
}

/// The pairs whose primary the fault hits, and the tenants that makes affected.
fn hit(args: &Args, layout: Layout) -> (Vec<usize>, Vec<bool>) {
    if args.scenario == Scenario::RegionDown {
        return ((0..layout.pairs).collect(), vec![true; layout.tenants]);
    }
    let n = load::to_u64((args.fault_tenants.clamp(0.0, 1.0) * layout.pairs as f64).ceil());
    let n = usize::try_from(n).unwrap_or(1).clamp(1, layout.pairs);
    let pairs: Vec<usize> = (0..n).collect();
    let affected = (0..layout.tenants).map(|t| layout.pair_of(t) < n).collect();
    (pairs, affected)
}

/// Mocks and gateway of one run; dropped outside the load runtime.
struct Setup {
    regions: Option<Regions>,
    gateway: Option<GatewayProcess>,
    endpoint: Endpoint,
    config_path: Option<PathBuf>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.gateway.take();
        if let Some(p) = &self.config_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn setup(args: &Args, rt: &tokio::runtime::Runtime, layout: Layout) -> anyhow::Result<Setup> {
    if let Some(target) = &args.target {
        return Ok(Setup {
            regions: None,
            gateway: None,
            endpoint: Endpoint {
                addr: addr_of(target)?,
                admin: args.admin.as_deref().map(addr_of).transpose()?,
                token: args.token.clone(),
                pid: args.gateway_pid,
            },
            config_path: None,
        });
    }
    let regions = Regions::start(layout.pairs, args.mock_threads)?;
    let config = gateway_config(
        layout,
        &regions.east_urls(),
        &regions.west_urls(),
        &GatewayOptions {
            worker_threads: args.gateway_threads.max(1),
            health_interval: args.health_interval,
            response_timeout: args.upstream_timeout,
        },
    );
    let launch = Launch {
        bin: find_gateway_bin(args.gateway_bin.as_deref())?,
        cpus: args.gateway_cpus.clone(),
        access_log: args.access_log,
        token: args.token.clone(),
    };
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("pairgate-bench-{}-{n}.toml", std::process::id()));
    let gw = rt.block_on(GatewayProcess::start(&launch, &path, &config))?;
    let endpoint = gw.endpoint.clone();
    Ok(Setup {
        regions: Some(regions),
        gateway: Some(gw),
        endpoint,
        config_path: Some(path),
    })
}

/// Injects the fault; returns when it is in place.
async fn inject(
    args: &Args,
    regions: Option<&mut Regions>,
    endpoint: &Endpoint,
    pairs: &[usize],
) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::None => Ok(()),
        Scenario::RegionDown => {
            let (status, body) = endpoint
                .admin(
                    "PUT",
                    "/v1/regions/eastus",
                    r#"{"state":"down","reason":"bench"}"#,
                )
                .await?;
            if status != 200 {
                bail!("PUT /v1/regions/eastus: {status} {body}");
            }
            Ok(())
        }
        Scenario::KillPrimary => regions.context("no mocks")?.kill_primaries(pairs).await,
        Scenario::BlackholePrimary => {
            regions
                .context("no mocks")?
                .set_primaries(pairs, Behavior::BlackHole);
            Ok(())
        }
        Scenario::FlapPrimary => regions
            .context("no mocks")?
            .flap_primaries(pairs, args.flap_period),
    }
}

fn settings(args: &Args, mode: Mode, connections: usize) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        s.insert(k.to_owned(), v);
    };
    put("tenants", args.tenants.to_string());
    put("accounts", args.accounts.to_string());
    put(
        "mode",
        match mode {
            Mode::Open { rate } => format!("open@{rate}/s"),
            Mode::Closed => "closed".to_owned(),
        },
    );
    put("connections", connections.to_string());
    put("duration", format!("{:?}", args.duration));
    put("dist", format!("{:?}", args.dist));
    put("gateway_threads", args.gateway_threads.to_string());
    put("scenario", args.scenario.name().to_owned());
    if args.scenario != Scenario::None {
        put("fault_at", format!("{:?}", args.fault_at));
        put("fault_tenants", args.fault_tenants.to_string());
    }
    s
}

/// One run with traffic: fresh mocks and gateway, warm-up, measured load, optional fault.
pub fn run_once(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    label: &str,
) -> anyhow::Result<RunReport> {
    let layout = Layout {
        tenants: args.tenants,
        pairs: args.accounts,
    };
    let mut setup = setup(args, rt, layout)?;
    let (pairs, affected) = hit(args, layout);
    let (mode, connections) = match args.rate {
        Some(rate) => (Mode::Open { rate }, args.connections.unwrap_or(64)),
        None => (Mode::Closed, args.connections.unwrap_or(32)),
    };
    let picker = Arc::new(Picker::new(&args.dist, layout.tenants));
    let spec = LoadSpec {
        target: setup.endpoint.addr,
        mode,
        connections: connections.max(1),
        duration: args.duration,
        timeout: args.timeout,
        picker,
        path: args.path.clone(),
        secondary_region: SECONDARY_REGION.to_owned(),
    };
    let endpoint = setup.endpoint.clone();
    let pid = endpoint.pid;
    let mut regions = setup.regions.take();
    let result = rt.block_on(async {
        if !args.warmup.is_zero() {
            let warm = LoadSpec {
                mode: Mode::Closed,
                duration: args.warmup,
                ..spec.clone()
            };
            load::run(warm, Instant::now()).await;
        }
        let gw_cpu0 = pid.and_then(procfs::process_cpu);
        let gen_cpu0 = procfs::own_threads_cpu("load-rt");
        let mock_cpu0 = regions.as_ref().map(Regions::cpu);
        let t0 = Instant::now() + Duration::from_millis(20);
        let fault = async {
            if args.scenario == Scenario::None {
                return Ok(None);
            }
            tokio::time::sleep_until((t0 + args.fault_at).into()).await;
            let at = Instant::now();
            inject(args, regions.as_mut(), &endpoint, &pairs).await?;
            anyhow::Ok(Some(at))
        };
        let (res, fault) = tokio::join!(load::run(spec, t0), fault);
        let gw_cpu = gw_cpu0.zip(pid.and_then(procfs::process_cpu));
        let gen_cpu = procfs::own_threads_cpu("load-rt").saturating_sub(gen_cpu0);
        let mock_cpu = mock_cpu0
            .zip(regions.as_ref().map(Regions::cpu))
            .map(|(a, b)| b.saturating_sub(a));
        anyhow::Ok((res, fault?, gw_cpu, gen_cpu, mock_cpu, t0))
    });
    setup.regions = regions;
    let (res, fault, gw_cpu, gen_cpu, mock_cpu, t0) = result?;
    let mut r = report::summarize(&res.samples, args.duration);
    r.label = label.to_owned();
    r.settings = settings(args, mode, connections);
    let wall = res.elapsed;
    r.elapsed_s = wall.as_secs_f64();
    r.generator = Usage::new(gen_cpu, wall, r.requests);
    r.mocks = mock_cpu.map(|c| Usage::new(c, wall, r.requests));
    if let (Some((a, b)), Some(pid)) = (gw_cpu, pid) {
        let mut u = Usage::new(b.saturating_sub(a), wall, r.requests);
        u.rss_kib = procfs::status_kib(pid, "VmRSS");
        u.hwm_kib = procfs::status_kib(pid, "VmHWM");
        r.gateway = Some(u);
    }
    if let Some(at) = fault {
        let injected_us =
            u64::try_from(at.saturating_duration_since(t0).as_micros()).unwrap_or(u64::MAX);
        r.failover = Some(report::failover(
            args.scenario.name(),
            &res.samples,
            injected_us,
            &affected,
        ));
    }
    if r.generator.cores > 0.9 * args.client_threads as f64 {
        eprintln!(
            "warning: the load generator used {:.2} cores of {}: it may be the bottleneck \
             (raise --client-threads or pin it to its own core)",
            r.generator.cores, args.client_threads
        );
    }
    drop(setup);
    Ok(r)
}

/// One idle failover: wait until the tenant's accounts are both healthy, fault, then poll
/// `GET /v1/tenants/NAME` every 10 ms until it is on the secondary, then one request.
pub fn run_idle(args: &Args, rt: &tokio::runtime::Runtime) -> anyhow::Result<IdleFailover> {
    let layout = Layout {
        tenants: args.tenants,
        pairs: args.accounts,
    };
    let mut setup = setup(args, rt, layout)?;
    let (pairs, affected) = hit(args, layout);
    let tenant = affected
        .iter()
        .position(|a| *a)
        .context("no affected tenant")?;
    let endpoint = setup.endpoint.clone();
    let mut regions = setup.regions.take();
    let result = rt.block_on(async {
        let request = get_request(&Layout::host(tenant), &args.path);
        let secondary = SECONDARY_REGION.as_bytes();
        // One request first, so the gateway's upstream pool is warm as it would be in service.
        let mut c = Conn::connect(endpoint.addr, args.timeout)
            .await
            .map_err(|f| anyhow::anyhow!("connect: {}", f.as_str()))?;
        c.exchange(&request, secondary)
            .await
            .map_err(|f| anyhow::anyhow!("warm-up request: {}", f.as_str()))?;
        let name = Layout::tenant_name(tenant);
        let path = format!("/v1/tenants/{name}");
        // Readiness is the first probe round; with `rise = 2` both accounts are still
        // `unknown` then, and a tenant never moves onto an unknown secondary. Start from the
        // steady state, or the timing would be that of the second probe round.
        let healthy = |b: &serde_json::Value| {
            b["primary"]["health"] == "healthy" && b["secondary"]["health"] == "healthy"
        };
        if !until_tenant(&endpoint, &path, Duration::from_secs(30), healthy).await? {
            bail!("{name}'s accounts were not both healthy within 30 s");
        }
        let at = Instant::now();
        inject(args, regions.as_mut(), &endpoint, &pairs).await?;
        let mut out = IdleFailover {
            scenario: args.scenario.name().to_owned(),
            ..IdleFailover::default()
        };
        let moved = |b: &serde_json::Value| b["active_side"] == "secondary";
        if !until_tenant(&endpoint, &path, Duration::from_secs(30), moved).await? {
            return anyhow::Ok(out);
        }
        out.moved_ms = Some(at.elapsed().as_secs_f64() * 1e3);
        let mut c = Conn::connect(endpoint.addr, args.timeout)
            .await
            .map_err(|f| anyhow::anyhow!("connect: {}", f.as_str()))?;
        let reply = tokio::time::timeout(args.timeout, c.exchange(&request, secondary)).await;
        if let Ok(Ok((reply, _))) = reply
            && reply.secondary
            && (200..400).contains(&reply.status)
        {
            out.first_secondary_ms = Some(at.elapsed().as_secs_f64() * 1e3);
        }
        anyhow::Ok(out)
    });
    setup.regions = regions;
    drop(setup);
    result
}

/// Polls `GET {path}` on the admin API every 10 ms until `done` holds for its answer (true) or
/// `within` has passed (false).
async fn until_tenant(
    endpoint: &Endpoint,
    path: &str,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (status, body) = endpoint.admin("GET", path, "").await?;
        if status == 200 && done(&body) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn fault_hits_a_share_of_pairs() {
        let args = Args::parse_from(["x", "--tenants", "8", "--accounts", "4"]);
        let (pairs, affected) = hit(
            &args,
            Layout {
                tenants: 8,
                pairs: 4,
            },
        );
        assert_eq!(pairs, vec![0]);
        assert_eq!(affected.iter().filter(|a| **a).count(), 2);
    }
}
