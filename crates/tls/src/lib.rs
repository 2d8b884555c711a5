//! TLS for pairgate, with rustls and the ring provider: server certificates chosen by SNI,
//! per-account client configurations (CA bundle, SNI override, client certificate), and the
//! loading and checking of PEM files (missing file, key that does not match, expired).
//!
//! Invariants:
//! - ring is the only crypto provider (`provider()`); nothing here installs a process default;
//! - file problems are reported as config [`Problem`](pairgate_config::Problem)s with a path
//!   such as `certificate[0].key` and never contain key material;
//! - the same account client configuration serves the data path and the health probes.
