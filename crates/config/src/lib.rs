//! pairgate's configuration: the TOML schema, parsing and validation.
//!
//! The flow is `parse` (TOML syntax and types, every unknown key collected) then `validate`
//! (every semantic problem at once, each with a path such as `tenant[3].secondary`), producing a
//! [`Config`] that `pairgate-routing` compiles. [`load`] does both.
//!
//! Invariants:
//! - the `*Spec` types in [`spec`] are the only `Deserialize` types in the workspace;
//! - this crate does no IO and never reads the process environment itself: `${VAR}` values are
//!   looked up through the `env` function the caller passes in;
//! - a `${VAR}` value never appears in a [`Problem`] or a `Debug` string ([`Secret`]).

mod model;
pub mod spec;

pub use model::*;

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The config is still accepted.
    Warning,
    /// The config is rejected.
    Error,
}

/// A line and column (both 1-based) in the config text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Where in the document, e.g. `tenant[3].secondary` (`tenant[3]` is the fourth `[[tenant]]`).
    pub path: String,
    /// What is wrong, e.g. `unknown account "b"`.
    pub message: String,
    /// Where in the text, when the parser knows it.
    pub location: Option<Location>,
}
