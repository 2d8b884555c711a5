//! pairgate's integration tests: one binary, real sockets, real mock regions, and the real
//! `pairgate` executable where a process boundary matters (CLI, logs, memory).

mod cli;
mod client_auth;
mod control;
mod credentials;
mod data_plane;
mod demo;
mod failover;
mod failures;
mod fleet;
mod hardening;
mod limits;
mod observe;
mod retry;
mod streaming;
mod subscriptions;
mod support;
mod tls;
mod upgrade;
