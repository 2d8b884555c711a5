//! The `pairgate` command line: `run`, `check`, `demo`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use pairgate::{ConfigFileError, Gateway, prepare};

/// Exit codes (BSD `sysexits.h`; clap itself exits 2 on a usage error):
/// an invalid config (`EX_USAGE`/`EX_DATAERR` family).
const EXIT_INVALID: u8 = 64;
/// The config file does not exist (`EX_NOINPUT`).
const EXIT_NO_INPUT: u8 = 66;
/// A listener cannot bind (`EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;

/// `--version`: the version, the commit and the build date (from build.rs).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PAIRGATE_COMMIT"),
    ", built ",
    env!("PAIRGATE_BUILD_DATE"),
    ")"
);

/// pairgate: a multi-tenant routing gateway that moves each tenant between its primary and
/// secondary account when a region fails.
#[derive(Parser)]
#[command(version = LONG_VERSION, about, long_about = None)]
struct Cli {
    /// Log format on stderr; the level comes from RUST_LOG (default "info").
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true, env = "PAIRGATE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file.
    Run {
        /// The TOML config file.
        #[arg(long, short, env = "PAIRGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file: print every problem, exit 0 when valid, 64 when not, 66 when
    /// the file does not exist.
    Check {
        /// The TOML config file.
        #[arg(long, short, env = "PAIRGATE_CONFIG")]
        config: PathBuf,
        /// `text` for people, `json` (one object on stdout) for tooling.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Fleet mode: move config objects between a file and etcd.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Print the `sha256:<hex>` digest of an API key read from stdin (one line; the trailing
    /// newline is not part of the key), for a tenant's `client_auth.api_keys`. The key itself
    /// never goes in the config.
    HashKey,
    /// Print Azure's documented regions: name, display name (what alerts say) and pair (`->`
    /// marks a pair that does not pair back). A `[[region]]` with one of these names gets its
    /// `azure_name` and, when unset, its `pair` from here.
    Regions,
    /// Start mock regions and a gateway in front of them, with no files at all.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the demo-only control endpoint (break/heal mock regions) listens.
        #[arg(long, default_value = "127.0.0.1:8081")]
        control: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Write every [[region]], [[account]] and [[tenant]] of FILE to etcd (one key each, under
    /// the [cluster] prefix); the file's [cluster] section names the endpoints.
    Import {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the objects stored in etcd as TOML.
    Export {
        /// A config file whose [cluster] section names the endpoints and prefix.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held to the end of `main`: dropping it writes out the queued log lines, the last
    // report's included.
    let _log = init_tracing(cli.log_format);
    match cli.command {
        Command::Check { config, format } => check(&config, format),
        Command::Run { config } => run(&config),
        Command::Cluster { action } => cluster(action),
        Command::HashKey => hash_key(),
        Command::Regions => regions(),
        Command::Demo { listen, control } => {
            report(runtime(None).and_then(|rt| rt.block_on(pairgate::demo::run(listen, control))))
        }
    }
}

fn regions() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{:<20} {:<22} PAIR", "NAME", "DISPLAY NAME");
    for r in pairgate_config::catalogue::AZURE_REGIONS {
        let pair = match r.pair {
            None => "-".to_owned(),
            Some(p) if r.one_way() => format!("-> {p} (one way)"),
            Some(p) => format!("<> {p}"),
        };
        let _ = writeln!(out, "{:<20} {:<22} {pair}", r.name, r.display);
    }
    ExitCode::SUCCESS
}

fn hash_key() -> ExitCode {
    use std::io::Read;
    let mut key = Vec::new();
    if let Err(err) = std::io::stdin().lock().read_to_end(&mut key) {
        eprintln!("pairgate hash-key: cannot read stdin: {err}");
        return ExitCode::from(1);
    }
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    if key.is_empty() {
        eprintln!(
            "pairgate hash-key: no key on stdin (e.g. `head -c 32 /dev/urandom | base64 | tee key | pairgate hash-key`)"
        );
        return ExitCode::from(2);
    }
    if key.len() < 16 {
        eprintln!(
            "pairgate hash-key: warning: a key shorter than 16 bytes is guessable; use at least 16 random bytes"
        );
    }
    let _ = writeln!(
        std::io::stdout().lock(),
        "{}",
        pairgate_clientauth::render_digest(&key)
    );
    ExitCode::SUCCESS
}

fn check(path: &std::path::Path, format: CheckFormat) -> ExitCode {
    let mut out = std::io::stdout().lock();
    if format == CheckFormat::Json {
        let result = prepare(path);
        let _ = writeln!(out, "{}", check_json(path, &result));
        return match &result {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => config_exit(err),
        };
    }
    match prepare(path) {
        Ok(prepared) => {
            for w in &prepared.warnings {
                let _ = writeln!(out, "{w}");
            }
            let c = &prepared.config;
            let _ = writeln!(
                out,
                "{}: valid ({} regions, {} accounts, {} tenants, {} warnings)",
                path.display(),
                c.regions.len(),
                c.accounts.len(),
                c.tenants.len(),
                prepared.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            print_config_error(&mut out, &err);
            config_exit(&err)
        }
    }
}

/// `pairgate check --format json`: `{"file", "valid", ...}` with the counts and warnings of a
/// valid config, or every problem (severity, path, message, line, column) of an invalid one.
fn check_json(
    path: &std::path::Path,
    result: &Result<pairgate::Prepared, ConfigFileError>,
) -> serde_json::Value {
    use serde_json::json;
    let file = path.display().to_string();
    match result {
        Ok(prepared) => {
            let c = &prepared.config;
            json!({
                "file": file,
                "valid": true,
                "regions": c.regions.len(),
                "accounts": c.accounts.len(),
                "tenants": c.tenants.len(),
                "warnings": prepared.warnings,
            })
        }
        Err(ConfigFileError::Read { err, .. }) => json!({
            "file": file,
            "valid": false,
            "error": err.to_string(),
            "missing": err.kind() == std::io::ErrorKind::NotFound,
        }),
        Err(ConfigFileError::Invalid { problems }) => json!({
            "file": file,
            "valid": false,
            "problems": problems.iter().map(|p| json!({
                "file": p.file,
                "severity": p.problem.severity.as_str(),
                "path": p.problem.path,
                "message": p.problem.message,
                "line": p.problem.location.map(|l| l.line),
                "column": p.problem.location.map(|l| l.column),
            })).collect::<Vec<_>>(),
        }),
    }
}

/// 66 for a config file that does not exist, 64 for one that cannot be read or is invalid.
fn config_exit(err: &ConfigFileError) -> ExitCode {
    match err {
        ConfigFileError::Read { err, .. } if err.kind() == std::io::ErrorKind::NotFound => {
            ExitCode::from(EXIT_NO_INPUT)
        }
        _ => ExitCode::from(EXIT_INVALID),
    }
}

fn print_config_error(out: &mut impl std::io::Write, err: &ConfigFileError) {
    match err {
        ConfigFileError::Read { .. } => {
            let _ = writeln!(out, "{err}");
        }
        ConfigFileError::Invalid { problems } => {
            for problem in problems {
                let _ = writeln!(out, "{problem}");
            }
            let _ = writeln!(out, "{} problem(s); config rejected", problems.len());
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let prepared = match prepare(path) {
        Ok(prepared) => prepared,
        Err(err) => {
            print_config_error(&mut std::io::stderr().lock(), &err);
            return config_exit(&err);
        }
    };
    for w in &prepared.warnings {
        tracing::warn!("{w}");
    }
    let (config, tls) = (prepared.config, prepared.tls);
    raise_fd_limit(&config);
    let token = match admin_token(&config) {
        Ok(token) => token,
        Err(err) => return report(Err(err)),
    };
    if token.is_none() {
        tracing::warn!(
            token_env = %config.admin.token_env,
            "no admin token is configured: every /v1 call of the admin API will be refused; set the variable named by admin.token_env or admin.token_file"
        );
    }
    let path = path.to_owned();
    let delay = config.runtime.shutdown_delay;
    report(runtime(config.runtime.worker_threads).and_then(|rt| {
        rt.block_on(async move {
            let mut gateway = Gateway::bind_and_start(config, tls, token, Some(path)).await?;
            serve_until_signal(&mut gateway).await?;
            // A load balancer checking /readyz takes this instance out during the delay, while
            // it still serves whatever it is sent.
            gateway.start_draining();
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "draining: /readyz answers 503; still serving until the delay ends"
                );
                tokio::time::sleep(delay).await;
            }
            tracing::info!("shutting down: no new connections; in-flight requests may finish");
            gateway.shutdown().await
        })
    }))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and warns when what the config may open
/// at once cannot fit in it: client connections, idle upstream connections (per account) and a
/// probe per account, plus a reserve for listeners, the admin API, the runtime and files.
/// Running out later is survivable (accepts back off, probes and requests that fail for want of
/// a descriptor are not held against any account) but it refuses clients.
fn raise_fd_limit(config: &pairgate_config::Config) {
    const RESERVE: u64 = 64;
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read or raise RLIMIT_NOFILE");
            return;
        }
    };
    let accounts = config.accounts.len() as u64;
    let max_connections = config.limits.max_connections as u64;
    let pools = accounts.saturating_mul(config.upstream.max_idle_per_account as u64);
    let needed = max_connections
        .saturating_add(pools)
        .saturating_add(accounts)
        .saturating_add(RESERVE);
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            max_connections,
            upstream_pools = pools,
            probes = accounts,
            "RLIMIT_NOFILE is below what limits.max_connections, the upstream pools and the probes may need; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower limits.max_connections"
        );
    } else {
        tracing::debug!(limit, needed, "RLIMIT_NOFILE");
    }
}

/// The admin token: the variable named by `admin.token_env`, else the contents of
/// `admin.token_file`. Never logged.
fn admin_token(config: &pairgate_config::Config) -> anyhow::Result<Option<String>> {
    if let Ok(token) = std::env::var(&config.admin.token_env)
        && !token.trim().is_empty()
    {
        return Ok(Some(token.trim().to_owned()));
    }
    match &config.admin.token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("reading admin.token_file {}", path.display()))?;
            let token = token.trim();
            anyhow::ensure!(
                !token.is_empty(),
                "admin.token_file {} is empty",
                path.display()
            );
            Ok(Some(token.to_owned()))
        }
        None => Ok(None),
    }
}

/// Reloads on SIGHUP until SIGTERM or SIGINT. A long-lived task that ends or panics meanwhile
/// is an error: the process exits non-zero.
async fn serve_until_signal(gateway: &mut Gateway) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            // Logged with its cause by `report`, which exits 1.
            exit = gateway.task_exit() => return Err(exit.into()),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                // Outcomes are logged by the reloader.
                let _ = gateway.reload().await;
            }
        }
    }
}

fn cluster(action: ClusterAction) -> ExitCode {
    let path = match &action {
        ClusterAction::Import { config } | ClusterAction::Export { config } => config.clone(),
    };
    let prepared = match prepare(&path) {
        Ok(p) => p,
        Err(err) => {
            print_config_error(&mut std::io::stderr().lock(), &err);
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let etcd_tls = prepared.tls.etcd.clone();
    let Some(cluster) = prepared.config.cluster else {
        let _ = writeln!(
            std::io::stderr(),
            "{}: no [cluster] section",
            path.display()
        );
        return ExitCode::from(EXIT_INVALID);
    };
    report(runtime(Some(1)).and_then(|rt| {
        rt.block_on(async move {
            let etcd = pairgate::fleet::connect(&cluster, etcd_tls)?;
            match action {
                ClusterAction::Import { config } => {
                    let text = pairgate::read_config_text(&config)?;
                    let n = pairgate::fleet::import(&etcd, &cluster.prefix, &text).await?;
                    let _ = writeln!(
                        std::io::stdout(),
                        "imported {n} objects into {}config/",
                        cluster.prefix
                    );
                }
                ClusterAction::Export { .. } => {
                    let text = pairgate::fleet::export(&etcd, &cluster.prefix).await?;
                    let _ = std::io::stdout().write_all(text.as_bytes());
                }
            }
            Ok(())
        })
    }))
}

/// Prints a failure once (a plain line, or one JSON log event with `--log-format json`) and
/// maps it to an exit code: 69 when a listener cannot bind, 1 otherwise.
fn report(result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    if LOG_JSON.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::error!("{err:#}");
    } else {
        // After the log lines already queued, not among them.
        if let Some(log) = LOG_OUT.get() {
            log.sync(std::time::Duration::from_secs(1));
        }
        let _ = writeln!(std::io::stderr(), "pairgate: {err:#}");
    }
    if err.chain().any(|e| e.is::<pairgate::BindError>()) {
        ExitCode::from(EXIT_UNAVAILABLE)
    } else {
        ExitCode::FAILURE
    }
}

/// Whether logs are JSON (set once, before anything is reported).
static LOG_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The log writer (set once, before anything is reported), for `report` to print its plain
/// message after the log lines queued before it.
static LOG_OUT: std::sync::OnceLock<pairgate::log_writer::NonBlocking> = std::sync::OnceLock::new();

/// One worker thread gets Tokio's current-thread scheduler: the same single thread of work,
/// without the work-stealing machinery (shared queues, cross-thread wake-ups) that a pool of one
/// pays for and cannot use.
fn runtime(worker_threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().thread_name("pairgate-worker");
    builder.build().context("starting the tokio runtime")
}

/// Logs go to stderr through the non-blocking writer (`pairgate::log_writer`): a request's
/// worker formats its access-log line and queues it, and never waits on stderr. When the
/// writer thread cannot start, logs are written synchronously, as before it existed.
fn init_tracing(format: LogFormat) -> Option<pairgate::log_writer::WriterGuard> {
    use pairgate::log_writer::{NonBlocking, QUEUE_LINES};
    let dropped = &pairgate_proxy::metrics::LOG_LINES_DROPPED;
    match NonBlocking::new(std::io::stderr(), QUEUE_LINES, dropped) {
        Ok((writer, guard)) => {
            let _ = LOG_OUT.set(writer.clone());
            install_subscriber(format, writer);
            Some(guard)
        }
        Err(err) => {
            install_subscriber(format, std::io::stderr);
            tracing::warn!(error = %err, "logging synchronously to stderr");
            None
        }
    }
}

fn install_subscriber<W>(format: LogFormat, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => {
            LOG_JSON.store(true, std::sync::atomic::Ordering::Relaxed);
            builder.json().flatten_event(true).init();
        }
    }
}
