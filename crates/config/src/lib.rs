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
//!
//! [`render`] prints a problem the way `pairgate check` shows it: `FILE:LINE:COL: PATH: message`.

use std::fmt;

mod auth;
pub mod catalogue;
mod client_auth;
mod duration;
mod keys;
mod model;
mod parse;
pub mod spec;
mod validate;

pub use auth::*;
pub use client_auth::*;
pub use duration::parse_duration;
pub use model::*;
pub use parse::parse;
pub use validate::validate;

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

/// The longest [`Problem::path`] kept, in bytes: a path names config keys, and a key can be as
/// long as the file. The location still points at it.
pub const MAX_PROBLEM_PATH: usize = 256;
/// The longest [`Problem::message`] kept, in bytes (messages may quote what they refuse).
pub const MAX_PROBLEM_MESSAGE: usize = 512;

impl Problem {
    /// The problem with its path and message cut to [`MAX_PROBLEM_PATH`] and
    /// [`MAX_PROBLEM_MESSAGE`], so that a hostile or broken file cannot make its report (and
    /// every copy of it: logs, events, the reload answer) larger than a bounded size per problem.
    pub fn bounded(mut self) -> Problem {
        clamp_text(&mut self.path, MAX_PROBLEM_PATH);
        clamp_text(&mut self.message, MAX_PROBLEM_MESSAGE);
        self
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, ending it with `…` when cut.
/// For text that comes from outside (config keys, alert fields, operator reasons) and is kept or
/// echoed.
pub fn clamp_text(text: &mut String, max: usize) {
    const MARK: &str = "…";
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
}

/// A valid [`Config`] and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Problems that did not reject the config.
    pub warnings: Vec<Problem>,
}

impl fmt::Display for Problem {
    /// `PATH: message`, with a `warning: ` prefix for warnings; just the message when the path
    /// is empty (TOML syntax errors). Never includes the location; see [`render`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// One line for a human: `FILE:LINE:COL: PATH: message` when the location is known, else
/// `FILE: PATH: message` (the part after the file is the problem's `Display`).
pub fn render(problem: &Problem, file_name: &str) -> String {
    match problem.location {
        Some(Location { line, column }) => format!("{file_name}:{line}:{column}: {problem}"),
        None => format!("{file_name}: {problem}"),
    }
}

/// A [`Problem`] in a named file: what `pairgate check` prints (its `Display` is [`render`]'s
/// line) and what a rejected reload reports, structured, so both say the same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// The file, as given; empty when the problem concerns no file.
    pub file: String,
    /// The problem.
    pub problem: Problem,
}

impl FileProblem {
    /// `problem` in `file`.
    pub fn new(file: &str, problem: Problem) -> FileProblem {
        FileProblem {
            file: file.to_owned(),
            problem,
        }
    }

    /// An error about `file` as a whole (it cannot be read, the routes do not compile, ...):
    /// no path, no location.
    pub fn error(file: &str, message: impl Into<String>) -> FileProblem {
        FileProblem::new(
            file,
            Problem {
                severity: Severity::Error,
                path: String::new(),
                message: message.into(),
                location: None,
            }
            .bounded(),
        )
    }
}

impl fmt::Display for FileProblem {
    /// [`render`]'s line, or the problem alone when there is no file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.file.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            f.write_str(&render(&self.problem, &self.file))
        }
    }
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// [`parse`] then [`validate`]: the whole way from text to [`Config`].
///
/// Unknown keys and validation problems are reported together, so one run shows everything.
/// `Err` holds errors first, then warnings; within each group problems are in document order
/// (by [`Location`], which `load` fills in wherever the path names something in the text), with
/// unlocated ones last.
pub fn load(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, Vec<Problem>> {
    let (spec, mut problems) = parse(text)?;
    match validate(&spec, env) {
        Ok(loaded) if problems.is_empty() => {
            let mut warnings = loaded.warnings;
            parse::locate(text, &mut warnings);
            Ok(Loaded {
                config: loaded.config,
                warnings: warnings.into_iter().map(Problem::bounded).collect(),
            })
        }
        Ok(loaded) => {
            problems.extend(loaded.warnings);
            Err(finish(text, problems))
        }
        Err(found) => {
            problems.extend(found);
            Err(finish(text, problems))
        }
    }
}

/// Locates every problem, bounds its text ([`Problem::bounded`]) and orders them: errors first,
/// then document order, unlocated last.
fn finish(text: &str, mut problems: Vec<Problem>) -> Vec<Problem> {
    parse::locate(text, &mut problems);
    let mut problems: Vec<Problem> = problems.into_iter().map(Problem::bounded).collect();
    problems.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.severity),
            p.location
                .map_or((usize::MAX, usize::MAX), |l| (l.line, l.column)),
        )
    });
    problems
}

#[cfg(test)]
mod doc_tests;
#[cfg(test)]
mod tests;
