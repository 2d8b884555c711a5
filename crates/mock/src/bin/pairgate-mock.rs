//! `pairgate-mock`: mock regional accounts as a standalone process, so benchmarks can pin the
//! upstreams to a core of their own (`taskset -c 1 pairgate-mock ...`).
//!
//! ```text
//! pairgate-mock [--threads N] NAME:REGION[@IP:PORT] ...
//! ```
//!
//! Starts one `MockUpstream` per argument (port 0 or no address: an ephemeral port of
//! 127.0.0.1), prints `NAME REGION http://IP:PORT` per mock on stdout, then serves until stdin
//! reaches end of file, SIGINT or SIGTERM. Lines on stdin control the mocks:
//! `kill NAME`, `revive NAME`, `blackhole NAME`, `reset NAME`, `normal NAME`, `status NAME CODE`,
//! `health NAME up|down`; each is answered with `ok` or `error: ...` on stdout.

// Printing the addresses and the answers to commands is this binary's job.
#![allow(clippy::print_stdout)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use pairgate_mock::{Behavior, MockConfig, MockUpstream};
use std::io::BufRead as _;

const USAGE: &str = "usage: pairgate-mock [--threads N] NAME:REGION[@IP:PORT] ...";

fn main() -> ExitCode {
    let mut threads = 1usize;
    let mut specs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--threads" {
            match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => threads = n,
                _ => return usage(),
            }
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
    match rt.block_on(serve(specs)) {
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

async fn serve(specs: Vec<(MockConfig, SocketAddr)>) -> std::io::Result<()> {
    let mut mocks = Vec::with_capacity(specs.len());
    for (cfg, addr) in specs {
        let m = MockUpstream::start_on(cfg, addr).await?;
        println!("{} {} {}", m.name(), m.region(), m.url());
        mocks.push(m);
    }
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
                Some(line) => println!("{}", command(&mocks, &line).await),
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
