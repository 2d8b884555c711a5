//! Criterion micro benches for pairgate's hot path and control plane, each next to a naive
//! baseline. Run with `cargo bench -p pairgate-benches --bench micro`; the results
//! and how to read them are in `benches/README.md`.
//!
//! Groups:
//! - `resolve_exact_host`, `resolve_wildcard_host`, `resolve_tenant_header`,
//!   `resolve_path_prefix`: `RouteTable::resolve_tenant` on a prebuilt request, at 10, 10k and
//!   1M tenants. Baselines: `rwlock_hashmap` (a `std::sync::RwLock<HashMap<String, usize>>`, the
//!   key lower-cased into a fresh `String` per request) and `linear_scan` (a `Vec<(String,
//!   usize)>` searched front to back). The linear scan is left out at 1M: it is O(n) and already
//!   loses by orders of magnitude at 10k, so a 1M run would only burn the shared machine's time.
//! - `active_side`: reading a resolved tenant's side, `ActiveSlot::load` against a read of a
//!   `RwLock<HashMap<String, Side>>` keyed by tenant name, at 10k tenants.
//! - `tenant_swap`: publishing one tenant's new side (`ActiveSlot::store`; `Engine::set_health`
//!   plus the store) against one write-locked insert into that map.
//! - `region_move_100k`: `Engine::set_region(Down)` moving 100k tenants plus storing every
//!   transition into its tenant's slot, against updating the 100k entries of the map under one
//!   write lock and under one write lock per tenant.
//! - `config_100k`: `pairgate_config::load` (parse and validate) and `RouteTable::compile` (cold,
//!   and as a reload carrying the previous table's slots), for 100k tenants.
//! - `header_rewrite`: `pairgate_proxy::headers::{strip_hop_by_hop, rewrite_request}` on a
//!   clone of a browser-like request head, against a naive rewrite that builds a new `HeaderMap`,
//!   compares lower-cased `String` names and `format!`s every added value. Both outputs are
//!   checked equal before timing.
//! - `upstream_uri`: `pairgate_proxy::uri::upstream_uri` (the client's path and query reused
//!   when nothing is stripped or prefixed) against `rebuild`, the way every request built its
//!   target before: a new path `String` and `Uri::builder`. Outputs checked equal first.
//! - `health_wait`: what a replayable request pays for the black-hole health wait when its
//!   head comes in time: `lazy` creates the `Notified` and drops it unpolled, `eager` (the old
//!   way, under `tokio::select!`) also polls it once, joining and leaving the waiter list.
//!
//! Requests rotate over 1024 tenants spread across the table, so the big tables are not measured
//! with one cache-hot key. Every request is checked to resolve to its tenant, in pairgate and in
//! both baselines, before it is timed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use pairgate_config::Config;
use pairgate_failover::{Engine, Health, RegionOverride, Transition};
use pairgate_routing::Account;
use pairgate_routing::{Active, ActiveSlot, RouteTable, Side, TenantId};

/// The naive baseline's lock: exactly the read-mostly `RwLock` that `clippy.toml` bans from the
/// product, kept here to measure what the ban buys.
#[allow(clippy::disallowed_types)]
type NaiveLock<T> = std::sync::RwLock<T>;

const TENANT_HEADER: &str = "x-tenant";
/// Tenant counts of the resolution groups.
const SIZES: [usize; 3] = [10, 10_000, 1_000_000];
/// Above this, the linear-scan baseline is not run (see the crate docs).
const LINEAR_MAX: usize = 10_000;
/// Requests per rotation; a power of two so the index is a mask.
const ROTATION: usize = 1024;
/// Tenants of the region move and config compile groups.
const BIG: usize = 100_000;

fn env(name: &str) -> Option<String> {
    (name == "BENCH_KEY").then(|| "bench-secret".to_owned())
}

/// A config with two paired regions, one account in each and `n` tenants. Tenant `i` is `t{i}`,
/// reached by host `t{i}.example.com`, by any name under `w{i}.example.net`, by path prefix
/// `/p{i}` and by the tenant header; its primary is in `eastus`, its secondary in `westus`.
fn config_text(n: usize) -> String {
    let mut text = String::with_capacity(n * 150 + 1024);
    text.push_str(
        r#"[routing]
tenant_header = "x-tenant"

[[region]]
name = "eastus"
pair = "westus"

[[region]]
name = "westus"
pair = "eastus"

[[account]]
name = "east"
region = "eastus"
url = "http://127.0.0.1:9001"
path_prefix = "/eastus/Accounts/1111"
headers = { "ocp-apim-subscription-key" = "${BENCH_KEY}" }

[[account]]
name = "west"
region = "westus"
url = "http://127.0.0.1:9002"
path_prefix = "/westus/Accounts/2222"
headers = { "ocp-apim-subscription-key" = "${BENCH_KEY}" }
"#,
    );
    for i in 0..n {
        write!(
            text,
            "\n[[tenant]]\nname = \"t{i}\"\nhosts = [\"t{i}.example.com\", \"*.w{i}.example.net\"]\n\
             path_prefix = \"/p{i}\"\nprimary = \"east\"\nsecondary = \"west\"\n"
        )
        .expect("writing to a String cannot fail");
    }
    text
}

fn load(text: &str) -> Config {
    pairgate_config::load(text, &env)
        .expect("the generated config is valid")
        .config
}

/// The config of `n` tenants, through TOML. At 1M tenants that costs about 15 s and 3.6 GB peak
/// RSS once per process (measured on the README's machine), within what a run may spend; if it
/// grows, build the `Config` value directly (its fields are public) by cloning one loaded tenant.
fn config(n: usize) -> Config {
    load(&config_text(n))
}

/// The tenant a request of the rotation aims at: spread over the table, deterministic.
fn target(k: usize, n: usize) -> usize {
    k.wrapping_mul(2_654_435_761).wrapping_add(7) % n
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ExactHost,
    WildcardHost,
    TenantHeader,
    PathPrefix,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::ExactHost,
        Kind::WildcardHost,
        Kind::TenantHeader,
        Kind::PathPrefix,
    ];

    fn group(self) -> &'static str {
        match self {
            Kind::ExactHost => "resolve_exact_host",
            Kind::WildcardHost => "resolve_wildcard_host",
            Kind::TenantHeader => "resolve_tenant_header",
            Kind::PathPrefix => "resolve_path_prefix",
        }
    }

    /// The key tenant `i` is stored under in the baselines.
    fn key(self, i: usize) -> String {
        match self {
            Kind::ExactHost => format!("t{i}.example.com"),
            Kind::WildcardHost => format!("w{i}.example.net"),
            Kind::TenantHeader => format!("t{i}"),
            Kind::PathPrefix => format!("/p{i}"),
        }
    }

    /// A request for tenant `i`. Requests that do not route by host carry a `Host` no tenant
    /// claims, as behind a shared front door.
    fn request(self, i: usize) -> Request {
        let (host, path) = match self {
            Kind::ExactHost => (format!("t{i}.example.com"), "/v1/items".to_owned()),
            Kind::WildcardHost => (format!("api.w{i}.example.net"), "/v1/items".to_owned()),
            Kind::TenantHeader => ("gw.example.org".to_owned(), "/v1/items".to_owned()),
            Kind::PathPrefix => ("gw.example.org".to_owned(), format!("/p{i}/v1/items")),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&host).expect("generated host is a header value"),
        );
        if self == Kind::TenantHeader {
            headers.insert(
                TENANT_HEADER,
                HeaderValue::from_str(&format!("t{i}")).expect("tenant name is a header value"),
            );
        }
        Request {
            uri: path.parse().expect("generated path is a URI"),
            headers,
        }
    }
}

struct Request {
    uri: Uri,
    headers: HeaderMap,
}

fn host_of(req: &Request) -> &str {
    req.headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The naive resolver for one kind: the same extraction from the request as pairgate, then a
/// linear scan or a locked `HashMap` (default SipHash, as a first version would have it).
struct Naive {
    kind: Kind,
    linear: Vec<(String, usize)>,
    locked: NaiveLock<HashMap<String, usize>>,
}

impl Naive {
    fn new(kind: Kind, n: usize) -> Naive {
        let linear: Vec<(String, usize)> = if n <= LINEAR_MAX {
            (0..n).map(|i| (kind.key(i), i)).collect()
        } else {
            Vec::new()
        };
        let map = (0..n).map(|i| (kind.key(i), i)).collect();
        Naive {
            kind,
            linear,
            locked: NaiveLock::new(map),
        }
    }

    /// Front to back; the first match wins (no most-specific rule for wildcards and prefixes).
    fn scan(&self, req: &Request) -> Option<usize> {
        let found = |pred: &dyn Fn(&str) -> bool| {
            self.linear
                .iter()
                .find(|(key, _)| pred(key))
                .map(|&(_, i)| i)
        };
        match self.kind {
            Kind::ExactHost => {
                let host = host_of(req).to_ascii_lowercase();
                found(&|key| key == host)
            }
            Kind::WildcardHost => {
                let host = host_of(req).to_ascii_lowercase();
                found(&|key| {
                    host.len() > key.len()
                        && host.ends_with(key)
                        && host.as_bytes()[host.len() - key.len() - 1] == b'.'
                })
            }
            Kind::TenantHeader => {
                let name = req.headers.get(TENANT_HEADER)?.to_str().ok()?.trim();
                found(&|key| key == name)
            }
            Kind::PathPrefix => {
                let path = req.uri.path();
                found(&|key| {
                    path.starts_with(key)
                        && (path.len() == key.len() || path.as_bytes()[key.len()] == b'/')
                })
            }
        }
    }

    /// One read lock, then the same probes as pairgate (most specific first).
    fn lookup(&self, req: &Request) -> Option<usize> {
        let map = self
            .locked
            .read()
            .expect("the baseline lock is never poisoned");
        match self.kind {
            Kind::ExactHost => map.get(&host_of(req).to_ascii_lowercase()).copied(),
            Kind::WildcardHost => {
                let host = host_of(req).to_ascii_lowercase();
                let mut rest = host.as_str();
                while let Some(dot) = rest.find('.') {
                    rest = &rest[dot + 1..];
                    if let Some(&i) = map.get(rest) {
                        return Some(i);
                    }
                }
                None
            }
            Kind::TenantHeader => {
                let name = req.headers.get(TENANT_HEADER)?.to_str().ok()?.trim();
                map.get(name).copied()
            }
            Kind::PathPrefix => {
                let path = req.uri.path();
                let mut end = path.len();
                loop {
                    if let Some(&i) = map.get(&path[..end]) {
                        return Some(i);
                    }
                    end = path[..end].rfind('/').filter(|&e| e > 0)?;
                }
            }
        }
    }
}

/// One table size: the compiled table and, per kind, the rotation and the baselines.
struct Fixture {
    table: RouteTable,
    kinds: Vec<(Kind, Vec<Request>, Naive)>,
}

impl Fixture {
    fn new(n: usize) -> Fixture {
        let table = RouteTable::compile(&config(n), 1, None).expect("the config compiles");
        let kinds = Kind::ALL
            .iter()
            .map(|&kind| {
                let naive = Naive::new(kind, n);
                let requests = (0..ROTATION)
                    .map(|k| {
                        let i = target(k, n);
                        let req = kind.request(i);
                        let got = table.resolve_tenant(&req.uri, &req.headers);
                        assert_eq!(got.map(|r| r.tenant.index()), Ok(i), "pairgate resolves");
                        assert_eq!(naive.lookup(&req), Some(i), "rwlock baseline resolves");
                        if n <= LINEAR_MAX {
                            assert_eq!(naive.scan(&req), Some(i), "linear baseline resolves");
                        }
                        req
                    })
                    .collect();
                (kind, requests, naive)
            })
            .collect();
        Fixture { table, kinds }
    }

    fn kind(&self, kind: Kind) -> (&[Request], &Naive) {
        let (_, requests, naive) = self
            .kinds
            .iter()
            .find(|(k, _, _)| *k == kind)
            .expect("every kind is built");
        (requests, naive)
    }
}

/// Calls `f` on the next request of the rotation, once per iteration.
fn rotate<'a, T>(
    b: &mut criterion::Bencher<'_>,
    requests: &'a [Request],
    mut f: impl FnMut(&'a Request) -> T,
) {
    let mut k = 0usize;
    b.iter(|| {
        let req = &requests[k & (ROTATION - 1)];
        k = k.wrapping_add(1);
        f(black_box(req))
    });
}

fn resolution(c: &mut Criterion) {
    // Built on first use, so a filtered run never builds the 1M table.
    let fixtures: [OnceLock<Fixture>; 3] = Default::default();
    for kind in Kind::ALL {
        let mut group = c.benchmark_group(kind.group());
        for (n, fixture) in SIZES.into_iter().zip(&fixtures) {
            let get = || fixture.get_or_init(|| Fixture::new(n));
            group.bench_function(BenchmarkId::new("pairgate", n), |b| {
                let fx = get();
                rotate(b, fx.kind(kind).0, |req| {
                    fx.table.resolve_tenant(&req.uri, &req.headers)
                });
            });
            group.bench_function(BenchmarkId::new("rwlock_hashmap", n), |b| {
                let (requests, naive) = get().kind(kind);
                rotate(b, requests, |req| naive.lookup(req));
            });
            if n <= LINEAR_MAX {
                group.bench_function(BenchmarkId::new("linear_scan", n), |b| {
                    let (requests, naive) = get().kind(kind);
                    rotate(b, requests, |req| naive.scan(req));
                });
            }
        }
        group.finish();
    }
}

/// The baseline's side map: tenant name -> side, for every tenant of `table`.
fn side_map(table: &RouteTable) -> NaiveLock<HashMap<String, Side>> {
    NaiveLock::new(
        table
            .tenants()
            .iter()
            .map(|t| (t.name.to_string(), Side::Primary))
            .collect(),
    )
}

fn active_side(c: &mut Criterion) {
    let n = 10_000;
    // Built on first use, so a filtered run that skips this group never builds it.
    let fixture = OnceLock::new();
    let get = || {
        fixture.get_or_init(|| {
            let table = RouteTable::compile(&config(n), 1, None).expect("the config compiles");
            let sides = side_map(&table);
            let ids: Vec<TenantId> = (0..ROTATION)
                .map(|k| TenantId::from_index(target(k, n)))
                .collect();
            (table, sides, ids)
        })
    };

    let mut group = c.benchmark_group("active_side");
    group.bench_function(BenchmarkId::new("slot_load", n), |b| {
        let (table, _, ids) = get();
        let mut k = 0usize;
        b.iter(|| {
            let id = ids[k & (ROTATION - 1)];
            k = k.wrapping_add(1);
            table.tenant(black_box(id)).slot.load()
        });
    });
    group.bench_function(BenchmarkId::new("rwlock_hashmap", n), |b| {
        let (table, sides, ids) = get();
        let names: Vec<&str> = ids.iter().map(|&id| &*table.tenant(id).name).collect();
        let mut k = 0usize;
        b.iter(|| {
            let name = names[k & (ROTATION - 1)];
            k = k.wrapping_add(1);
            sides
                .read()
                .expect("the baseline lock is never poisoned")
                .get(black_box(name))
                .copied()
        });
    });
    group.finish();
}

fn store(slots: &[Arc<ActiveSlot>], out: &[Transition]) {
    for t in out {
        slots[t.tenant].store(Active {
            side: t.to,
            reject: t.reject,
            generation: t.generation,
        });
    }
}

/// The engine for a compiled config, built exactly as the controller builds it.
fn engine(config: &Config, table: &RouteTable, now: Instant) -> Engine {
    let (regions, accounts, tenants) = pairgate_health::engine_defs(config, table);
    Engine::new(
        regions,
        accounts,
        tenants,
        config.failover.region_outage_ratio,
        now,
    )
}

fn tenant_swap(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("tenant_swap");

    let slot = ActiveSlot::new();
    group.bench_function("slot_store", |b| {
        let mut generation = 0u64;
        b.iter(|| {
            generation += 1;
            let side = if generation & 1 == 0 {
                Side::Primary
            } else {
                Side::Secondary
            };
            slot.store(black_box(Active {
                side,
                reject: false,
                generation,
            }));
        });
    });

    // One account with one tenant: both accounts healthy, the tenant on its primary; each
    // iteration marks the primary unhealthy on a fresh copy and publishes the move.
    let config = config(1);
    let table = RouteTable::compile(&config, 1, None).expect("the config compiles");
    let mut base = engine(&config, &table, now);
    base.set_health(0, Health::Healthy, now);
    base.set_health(1, Health::Healthy, now);
    let slots: Vec<Arc<ActiveSlot>> = table.tenants().iter().map(|t| t.slot.clone()).collect();
    group.bench_function("engine_set_health_and_store", |b| {
        b.iter_batched(
            || base.clone(),
            |mut engine| {
                let out = engine.set_health(0, Health::Unhealthy, now);
                assert_eq!(out.len(), 1, "the tenant moves");
                store(&slots, &out);
                (engine, out)
            },
            BatchSize::SmallInput,
        );
    });

    let sides = side_map(&table);
    group.bench_function("rwlock_hashmap_write", |b| {
        let mut flip = false;
        b.iter(|| {
            flip = !flip;
            let side = if flip { Side::Secondary } else { Side::Primary };
            if let Some(slot) = sides
                .write()
                .expect("the baseline lock is never poisoned")
                .get_mut(black_box("t0"))
            {
                *slot = side;
            }
        });
    });
    group.finish();
}

/// The region move's fixture: an engine with every tenant on its primary and the secondary
/// usable, the data plane's slots, and the baseline's view of the same tenants.
struct Move {
    base: Engine,
    slots: Vec<Arc<ActiveSlot>>,
    /// Each tenant's name and primary region: the baseline moves those in the region.
    tenants: Vec<(String, usize)>,
    sides: NaiveLock<HashMap<String, Side>>,
}

impl Move {
    fn new(now: Instant) -> Move {
        let config = config(BIG);
        let table = RouteTable::compile(&config, 1, None).expect("the config compiles");
        let mut base = engine(&config, &table, now);
        // The secondary is usable, so marking the primary's region down moves every tenant.
        base.set_health(1, Health::Healthy, now);
        Move {
            base,
            slots: table.tenants().iter().map(|t| t.slot.clone()).collect(),
            tenants: config
                .tenants
                .iter()
                .map(|t| (t.name.clone(), config.accounts[t.primary].region))
                .collect(),
            sides: side_map(&table),
        }
    }
}

fn region_move(c: &mut Criterion) {
    let now = Instant::now();
    let fixture = OnceLock::new();
    let get = || fixture.get_or_init(|| Move::new(now));

    let mut group = c.benchmark_group("region_move_100k");
    group.sample_size(20);
    // A few ms per iteration plus an untimed 100k-tenant clone; 20 samples need this long.
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("engine_set_region_and_store", |b| {
        let fx = get();
        b.iter_batched(
            || fx.base.clone(),
            |mut engine| {
                let out = engine.set_region(0, RegionOverride::Down, now);
                assert_eq!(out.len(), BIG, "every tenant moves");
                store(&fx.slots, &out);
                (engine, out)
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("rwlock_hashmap_one_lock", |b| {
        let fx = get();
        b.iter(|| {
            let mut map = fx
                .sides
                .write()
                .expect("the baseline lock is never poisoned");
            for (name, region) in &fx.tenants {
                if *region == 0
                    && let Some(side) = map.get_mut(name.as_str())
                {
                    *side = Side::Secondary;
                }
            }
        });
    });
    group.bench_function("rwlock_hashmap_lock_per_tenant", |b| {
        let fx = get();
        b.iter(|| {
            for (name, region) in &fx.tenants {
                if *region == 0
                    && let Some(side) = fx
                        .sides
                        .write()
                        .expect("the baseline lock is never poisoned")
                        .get_mut(name.as_str())
                {
                    *side = Side::Secondary;
                }
            }
        });
    });
    group.finish();
}

fn config_compile(c: &mut Criterion) {
    let fixture = OnceLock::new();
    let get = || {
        fixture.get_or_init(|| {
            let text = config_text(BIG);
            let config = load(&text);
            let previous = RouteTable::compile(&config, 1, None).expect("the config compiles");
            (text, config, previous)
        })
    };

    let mut group = c.benchmark_group("config_100k");
    group.sample_size(10);
    // Up to about half a second per iteration on the README's machine: flat sampling runs each
    // of the 10 samples for the same few iterations instead of 1, 2, .. 10 of them.
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("load_parse_validate", |b| {
        let (text, _, _) = get();
        b.iter(|| pairgate_config::load(black_box(text), &env));
    });
    group.bench_function("compile", |b| {
        let (_, config, _) = get();
        b.iter(|| RouteTable::compile(black_box(config), 2, None));
    });
    group.bench_function("compile_reload", |b| {
        let (_, config, previous) = get();
        b.iter(|| RouteTable::compile(black_box(config), 2, Some(previous)));
    });
    group.finish();
}

/// Request heads of the `header_rewrite` group: what a browser sends through a keep-alive
/// connection, and one that also carries hop-by-hop headers and an earlier proxy's
/// `X-Forwarded-For`.
fn rewrite_inputs() -> Vec<(&'static str, HeaderMap)> {
    let common: &[(&str, &str)] = &[
        ("host", "t7.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl",
        ),
        ("cookie", "session=0123456789abcdef; theme=dark"),
        ("connection", "keep-alive"),
    ];
    let hops: &[(&str, &str)] = &[
        ("connection", "x-hop-a, x-hop-b"),
        ("keep-alive", "timeout=5"),
        ("x-hop-a", "1"),
        ("x-hop-b", "2"),
        ("te", "trailers"),
        ("x-forwarded-for", "203.0.113.7, 198.51.100.2"),
    ];
    let map = |pairs: &[&[(&str, &str)]]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs.iter().flat_map(|p| p.iter()) {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("static name"),
                HeaderValue::from_str(v).expect("static value"),
            );
        }
        h
    };
    vec![
        ("browser", map(&[common])),
        ("hop_by_hop", map(&[common, hops])),
    ]
}

/// pairgate's rewrite, as `forward.rs` does it for an HTTP/1.1 client.
fn rewrite_pairgate(mut h: HeaderMap, account: &Account, ip: std::net::IpAddr) -> HeaderMap {
    let host = h.get(header::HOST).cloned();
    pairgate_proxy::headers::strip_hop_by_hop(&mut h, false);
    // pairgate formats the client address once per connection; here once per request, as the
    // naive baseline does, so both pay for it.
    let ip = pairgate_proxy::headers::client_ip_value(ip);
    pairgate_proxy::headers::rewrite_request(&mut h, account, &ip, host, false);
    h
}

/// The naive rewrite: a new map, names compared as lower-cased `String`s, values `format!`ed.
fn rewrite_naive(h: HeaderMap, account: &Account, ip: std::net::IpAddr) -> HeaderMap {
    const HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
    ];
    let named: Vec<String> = h
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_lowercase())
        .collect();
    let injected: Vec<String> = account
        .headers
        .iter()
        .map(|(n, _)| n.as_str().to_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    let mut forwarded_for = Vec::new();
    let mut client_host = None;
    for (name, value) in &h {
        let lower = name.as_str().to_lowercase();
        if HOP.contains(&lower.as_str()) || named.contains(&lower) || injected.contains(&lower) {
            continue;
        }
        match lower.as_str() {
            "x-forwarded-for" => forwarded_for.push(value.to_str().unwrap_or("").to_owned()),
            "host" => client_host = Some(value.to_str().unwrap_or("").to_owned()),
            "x-forwarded-proto" | "x-forwarded-host" => {}
            _ => {
                out.append(
                    HeaderName::from_bytes(lower.as_bytes()).expect("came from a HeaderName"),
                    value.clone(),
                );
            }
        }
    }
    forwarded_for.push(ip.to_string());
    let mut put = |name: &str, value: String| {
        out.append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
            HeaderValue::from_str(&value).expect("valid value"),
        );
    };
    put("x-forwarded-for", forwarded_for.join(", "));
    put("x-forwarded-proto", "http".to_owned());
    if let Some(host) = client_host.as_deref() {
        put("x-forwarded-host", host.to_owned());
    }
    put("via", format!("{} {}", "1.1", "pairgate"));
    put("host", format!("{}", account.authority));
    for (name, value) in &account.headers {
        put(name.as_str(), value.to_str().unwrap_or("").to_owned());
    }
    out
}

/// A header map as sorted `(name, value)` pairs, for comparing the two rewrites.
fn pairs_of(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = h
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    v.sort();
    v
}

fn header_rewrite(c: &mut Criterion) {
    let table = RouteTable::compile(&config(10), 1, None).expect("the config compiles");
    let account = table.account(table.tenant(TenantId::from_index(7)).primary);
    let ip: std::net::IpAddr = "192.0.2.10".parse().expect("static address");
    let mut group = c.benchmark_group("header_rewrite");
    for (name, input) in rewrite_inputs() {
        assert_eq!(
            pairs_of(&rewrite_pairgate(input.clone(), account, ip)),
            pairs_of(&rewrite_naive(input.clone(), account, ip)),
            "both rewrites agree on {name}"
        );
        // Both sides pay for the same clone of the input (criterion's `iter_batched` setup,
        // not timed), so the difference is the rewrite alone.
        group.bench_function(BenchmarkId::new("pairgate", name), |b| {
            b.iter_batched(
                || input.clone(),
                |h| rewrite_pairgate(h, account, ip),
                BatchSize::SmallInput,
            );
        });
        group.bench_function(BenchmarkId::new("naive_new_map", name), |b| {
            b.iter_batched(
                || input.clone(),
                |h| rewrite_naive(h, account, ip),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// The per-request metrics record: the counters preallocated in the compiled table (an account
/// histogram by side and class, a tenant counter) against the previous way, a `DashMap` lookup
/// by region name and one by tenant name (a shard read lock each) before the same adds.
fn request_metrics(c: &mut Criterion) {
    use pairgate_routing::counters::{AccountCounters, Histogram, TenantCounters, class_index};
    use std::sync::atomic::{AtomicU64, Ordering};
    type Labels = dashmap::DashMap<Arc<str>, [AtomicU64; 5], foldhash::fast::RandomState>;
    let mut group = c.benchmark_group("request_metrics");
    let elapsed = Duration::from_micros(700);
    let account = AccountCounters::default();
    let tenant = TenantCounters::default();
    group.bench_function("preallocated", |b| {
        b.iter(|| {
            account.record(Side::Primary, std::hint::black_box(200), elapsed);
            tenant.record(std::hint::black_box(200));
        });
    });
    let (by_region, by_tenant) = (Labels::default(), Labels::default());
    let histogram = Histogram::default();
    let names: Vec<Arc<str>> = (0..100).map(|i| Arc::from(format!("tenant-{i}"))).collect();
    let region: Arc<str> = Arc::from("eastus");
    for name in &names {
        by_tenant.insert(Arc::clone(name), Default::default());
    }
    by_region.insert(Arc::clone(&region), Default::default());
    let mut i = 0;
    group.bench_function("dashmap_by_name", |b| {
        b.iter(|| {
            let class = class_index(std::hint::black_box(200));
            if let Some(c) = by_region.get(&*region) {
                c[class].fetch_add(1, Ordering::Relaxed);
            }
            i = (i + 1) % names.len();
            if let Some(c) = by_tenant.get(&*names[i]) {
                c[class].fetch_add(1, Ordering::Relaxed);
            }
            histogram.record(elapsed);
        });
    });
    group.finish();
}

/// An account as `RouteTable::compile` builds it, with `prefix` as its path prefix.
fn uri_account(prefix: &str) -> Account {
    Account {
        name: "east0".into(),
        key: "east0|http://127.0.0.1:18100".into(),
        region: pairgate_routing::RegionId::from_index(0),
        scheme: http::uri::Scheme::HTTP,
        authority: http::uri::Authority::try_from("127.0.0.1:18100").expect("static authority"),
        host_header: HeaderValue::from_static("127.0.0.1:18100"),
        path_prefix: prefix.into(),
        headers: Vec::new(),
        http2: false,
        health: Arc::default(),
        counters: Arc::default(),
    }
}

/// The upstream target as every request built it before `uri::upstream_uri`.
fn upstream_uri_rebuild(account: &Account, uri: &Uri, strip: usize) -> Option<Uri> {
    let rest = uri.path().get(strip..).unwrap_or("");
    let rest = if rest.is_empty() { "/" } else { rest };
    let query = uri.query();
    let mut path = String::with_capacity(
        account.path_prefix.len() + rest.len() + query.map_or(0, |q| q.len() + 1),
    );
    path.push_str(&account.path_prefix);
    path.push_str(rest);
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    Uri::builder()
        .scheme(account.scheme.clone())
        .authority(account.authority.clone())
        .path_and_query(path)
        .build()
        .ok()
}

fn upstream_uri(c: &mut Criterion) {
    // Reference-counted bytes, as hyper's parsed request line (not `from_static`).
    let parsed = |s: &str| s.parse::<Uri>().expect("static uri");
    let cases = [
        (
            "plain",
            uri_account(""),
            parsed("/v1/items/42?expand=owner"),
            0,
        ),
        (
            "prefixed",
            uri_account("/api"),
            parsed("/t7/v1/items/42?expand=owner"),
            3,
        ),
    ];
    let mut group = c.benchmark_group("upstream_uri");
    for (name, account, uri, strip) in &cases {
        assert_eq!(
            pairgate_proxy::uri::upstream_uri(account, uri, *strip),
            upstream_uri_rebuild(account, uri, *strip),
            "both ways agree on {name}"
        );
        group.bench_function(BenchmarkId::new("pairgate", name), |b| {
            b.iter(|| pairgate_proxy::uri::upstream_uri(account, black_box(uri), *strip));
        });
        group.bench_function(BenchmarkId::new("rebuild", name), |b| {
            b.iter(|| upstream_uri_rebuild(account, black_box(uri), *strip));
        });
    }
    group.finish();
}

fn health_wait(c: &mut Criterion) {
    let cell = pairgate_routing::HealthCell::default();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut group = c.benchmark_group("health_wait");
    group.bench_function("lazy", |b| {
        b.iter(|| drop(black_box(cell.turned_unhealthy())));
    });
    group.bench_function("eager", |b| {
        b.iter(|| {
            let mut notified = std::pin::pin!(cell.turned_unhealthy());
            let polled = notified.as_mut().poll(&mut cx);
            assert!(polled.is_pending(), "nothing turned unhealthy");
        });
    });
    group.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = resolution, active_side, tenant_swap, region_move, config_compile, header_rewrite,
        request_metrics, upstream_uri, health_wait
}
criterion_main!(micro);
