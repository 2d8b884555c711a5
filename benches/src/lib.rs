//! `pairgate-benches`: the criterion micro benches (`benches/micro.rs`) and the capacity and
//! failover load harness behind the `pairgate-bench` binary.
//!
//! The harness starts mock regional accounts (`pairgate-mock`, in process), writes a gateway
//! config for N tenants, starts `pairgate run` as a child process, drives HTTP/1.1 keep-alive
//! load at it (open loop at a fixed rate, latency from the scheduled time, or closed loop),
//! injects faults (kill, black-hole, flap a primary; mark a region down through the admin API)
//! and reports throughput, HDR latency percentiles, errors by kind, replays, the gateway's CPU
//! time per request and RSS, failover timing and a per-second timeline.
//!
//! Invariants: every request goes to 127.0.0.1; every loop is bounded in count and time (runs
//! are at most 30 s; every wait has a timeout); the gateway child is killed when its handle
//! drops. Non-goals: TLS, HTTP/2 load, remote targets.

pub mod client;
pub mod gateway;
pub mod harness;
pub mod layout;
pub mod load;
pub mod procfs;
pub mod regions;
pub mod report;
