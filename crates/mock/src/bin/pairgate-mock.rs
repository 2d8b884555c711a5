//! `pairgate-mock`: mock regional accounts as a standalone process, so benchmarks can pin the
//! upstreams to a core of their own (`taskset -c 1 pairgate-mock ...`).
//!
//! ```text
//! pairgate-mock [--threads N] [--azure] NAME:REGION[@IP:PORT] ...
//! ```
//!
//! Starts one `MockUpstream` per argument (port 0 or no address: an ephemeral port of
//! 127.0.0.1), prints `NAME REGION http://IP:PORT` per mock on stdout, then serves until stdin
//! reaches end of file, SIGINT or SIGTERM. Lines on stdin control the mocks:
//! `kill NAME`, `revive NAME`, `blackhole NAME`, `reset NAME`, `normal NAME`, `status NAME CODE`,
//! `health NAME up|down`; each is answered with `ok` or `error: ...` on stdout.
//!
//! With `--azure`, a `MockAzure` also starts and `azure - http://IP:PORT` is printed: Entra ID
//! (tenant `demo-tenant`, app `pairgate-demo` with secret `demo-secret`), IMDS (system-assigned
//! identity), and per mock a Video Indexer account `NAME` in location `REGION` with ARM id
//! `/subscriptions/demo/resourceGroups/demo/providers/Microsoft.VideoIndexer/accounts/NAME` and
//! classic API key `demo-key`. Its commands: `azure-fail arm|entra|imds|classic|vi STATUS`,
//! `azure-throttle arm|entra|imds|classic|vi CALLS SECONDS`, `azure-heal`, and
//! `azure-lifetime SECONDS` (the lifetime of the Video Indexer tokens minted from then on).

// Printing the addresses and the answers to commands is this binary's job.
#![allow(clippy::print_stdout)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use pairgate_mock::azure::Endpoint;
use pairgate_mock::{Behavior, MockAzure, MockConfig, MockUpstream};
use std::io::BufRead as _;

const USAGE: &str = "usage: pairgate-mock [--threads N] [--azure] NAME:REGION[@IP:PORT] ...";

fn main() -> ExitCode {
    let mut threads = 1usize;
    let mut azure = false;
    let mut specs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--threads" {
            match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => threads = n,
                _ => return usage(),
            }
        } else if a == "--azure" {
            azure = true;
        } else if a == "-h" || a == "--help" {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        } else {
            match parse_spec(&a) {
                Some(s) => specs.push(s),
                None => return usage(),
            }
        }
    }
    if specs.is_empty() {
        return usage();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pairgate-mock: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(specs, azure)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pairgate-mock: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(64)
}

/// `NAME:REGION[@IP:PORT]`.
fn parse_spec(s: &str) -> Option<(MockConfig, SocketAddr)> {
    let (ident, addr) = match s.split_once('@') {
        Some((i, a)) => (i, a.parse().ok()?),
        None => (s, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
    };
    let (name, region) = ident.split_once(':')?;
    (!name.is_empty() && !region.is_empty()).then(|| (MockConfig::new(name, region), addr))
}

async fn serve(specs: Vec<(MockConfig, SocketAddr)>, azure: bool) -> std::io::Result<()> {
    let mut mocks = Vec::with_capacity(specs.len());
    let mut fakes =
        MockAzure::builder().client_secret("demo-tenant", "pairgate-demo", "demo-secret");
    for (cfg, addr) in specs {
        let m = MockUpstream::start_on(cfg, addr).await?;
        println!("{} {} {}", m.name(), m.region(), m.url());
        let id = format!(
            "/subscriptions/demo/resourceGroups/demo/providers/Microsoft.VideoIndexer/accounts/{}",
            m.name()
        );
        fakes = fakes.account(&id, m.region(), m.name()).classic_account(
            m.region(),
            m.name(),
            "demo-key",
        );
        mocks.push(m);
    }
    let azure = if azure {
        let fake = fakes.start().await?;
        println!("azure - {}", fake.url());
        Some(fake)
    } else {
        None
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Blocking stdin on a thread of its own (the workspace's tokio has no `io-std`).
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            line = lines.recv() => match line {
                Some(line) => match azure_command(azure.as_ref(), &line) {
                    Some(answer) => println!("{answer}"),
                    None => println!("{}", command(&mocks, &line).await),
                },
                // End of input (e.g. stdin is /dev/null): keep serving until a signal.
                None => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                    break;
                }
            },
        }
    }
    Ok(())
}

/// The `azure-*` commands; `None` for any other line.
fn azure_command(azure: Option<&MockAzure>, line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if !words.first()?.starts_with("azure-") {
        return None;
    }
    let Some(azure) = azure else {
        return Some("error: started without --azure".to_owned());
    };
    let endpoint = |w: Option<&&str>| match w.copied() {
        Some("arm") => Some(Endpoint::Arm),
        Some("entra") => Some(Endpoint::Entra),
        Some("imds") => Some(Endpoint::Imds),
        Some("classic") => Some(Endpoint::Classic),
        Some("vi") => Some(Endpoint::VideoIndexer),
        _ => None,
    };
    let number = |w: Option<&&str>| w.and_then(|n| n.parse::<u32>().ok());
    Some(match (words[0], endpoint(words.get(1))) {
        ("azure-heal", _) => {
            azure.clear_faults();
            "ok".to_owned()
        }
        ("azure-lifetime", None) => match number(words.get(1)) {
            Some(secs) if secs > 0 => {
                azure.set_token_lifetime(std::time::Duration::from_secs(u64::from(secs)));
                "ok".to_owned()
            }
            _ => "error: expected azure-lifetime SECONDS".to_owned(),
        },
        ("azure-fail", Some(e)) => match number(words.get(2)).and_then(|n| u16::try_from(n).ok()) {
            Some(status) => {
                azure.fail(e, status);
                "ok".to_owned()
            }
            None => "error: expected azure-fail ENDPOINT STATUS".to_owned(),
        },
        ("azure-throttle", Some(e)) => match (number(words.get(2)), number(words.get(3))) {
            (Some(calls), Some(secs)) => {
                azure.throttle(e, calls, std::time::Duration::from_secs(u64::from(secs)));
                "ok".to_owned()
            }
            _ => "error: expected azure-throttle ENDPOINT CALLS SECONDS".to_owned(),
        },
        _ => "error: unknown azure command or endpoint".to_owned(),
    })
}

async fn command(mocks: &[MockUpstream], line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(m) = words
        .get(1)
        .and_then(|n| mocks.iter().find(|m| m.name() == *n))
    else {
        return "error: expected COMMAND NAME with a known NAME".to_owned();
    };
    match (words[0], words.get(2)) {
        ("kill", None) => m.kill().await,
        ("revive", None) => {
            if let Err(e) = m.revive().await {
                return format!("error: {e}");
            }
        }
        ("blackhole", None) => m.set_behavior(Behavior::BlackHole),
        ("reset", None) => m.set_behavior(Behavior::Reset),
        ("normal", None) => m.set_behavior(Behavior::Normal),
        ("status", Some(code)) => match code.parse() {
            Ok(code) => m.set_behavior(Behavior::Status(code)),
            Err(_) => return "error: expected status NAME CODE".to_owned(),
        },
        ("health", Some(&"up")) => m.set_health(true),
        ("health", Some(&"down")) => m.set_health(false),
        _ => return "error: unknown command".to_owned(),
    }
    "ok".to_owned()
}
