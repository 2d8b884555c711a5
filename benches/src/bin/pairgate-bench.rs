//! `pairgate-bench`: capacity and failover load harness for pairgate (see `benches/README.md`).
//!
//! ```sh
//! cargo run --release -p pairgate-benches --bin pairgate-bench -- --tenants 1000 --rate 5000 \
//!     --duration 10s --scenario kill-primary --fault-at 3s --json out.json --svg out.svg
//! ```

// Printing the report is this binary's job.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use clap::Parser as _;
use pairgate_benches::harness::{self, Args};
use pairgate_benches::report;

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .thread_name("load-rt")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pairgate-bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match harness::main(&args, &rt) {
        Ok(out) => {
            for r in &out.runs {
                println!("{}", report::table(r));
            }
            for (i, r) in out.idle.iter().enumerate() {
                println!(
                    "idle {} #{}: admin shows secondary after {}, first secondary response after {}",
                    r.scenario,
                    i + 1,
                    r.moved_ms
                        .map_or_else(|| "—".to_owned(), |v| format!("{v:.0} ms")),
                    r.first_secondary_ms
                        .map_or_else(|| "—".to_owned(), |v| format!("{v:.0} ms")),
                );
            }
            if !out.medians.is_empty() {
                println!("medians over {} repetition(s):", args.repeat.max(1));
                for (k, v) in &out.medians {
                    println!("  {k:<34} {v:.1}");
                }
            }
            rt.shutdown_background();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pairgate-bench: {e:#}");
            rt.shutdown_background();
            ExitCode::FAILURE
        }
    }
}
