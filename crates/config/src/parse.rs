//! TOML text to [`ConfigSpec`], plus mapping problem paths back to lines and columns.
//!
//! The happy path parses the text once. Only when there are problems is the text parsed a second
//! time into toml's spanned tree to find where each problem's path points; a clean 100k-tenant
//! config pays nothing for locations.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::spec::ConfigSpec;
use crate::{Location, Problem, Severity};

/// Parses TOML text into the schema.
///
/// `Err` holds every TOML syntax error (toml recovers and keeps going), or the first type
/// mismatch (e.g. a string where a number belongs), each with a [`Location`]. `Ok` holds the
/// spec and one [`Severity::Error`] problem per unknown key (`tenant[3].hostz: unknown key`),
/// all of them, located.
pub fn parse(text: &str) -> Result<(ConfigSpec, Vec<Problem>), Vec<Problem>> {
    let bound = |problems: Vec<Problem>| problems.into_iter().map(Problem::bounded).collect();
    match parse_unbounded(text) {
        Ok((spec, unknown)) => Ok((spec, bound(unknown))),
        Err(problems) => Err(bound(problems)),
    }
}

/// [`parse`] before [`Problem::bounded`]: paths stay whole until they are located.
fn parse_unbounded(text: &str) -> Result<(ConfigSpec, Vec<Problem>), Vec<Problem>> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        let lines = LineIndex::new(text);
        return Err(errors
            .iter()
            .map(|e| Problem {
                severity: Severity::Error,
                path: String::new(),
                message: e.message().trim_end().to_owned(),
                location: e.span().map(|span| lines.location(text, span.start)),
            })
            .collect());
    }

    let mut unknown = Vec::new();
    let deserializer = toml::Deserializer::from(root);
    let spec = serde_ignored::deserialize(deserializer, |path| {
        let path = render_ignored_path(&path);
        let message = match crate::keys::suggest(&path) {
            Some(key) => format!("unknown key; did you mean `{key}`?"),
            None => "unknown key".to_owned(),
        };
        unknown.push(Problem {
            severity: Severity::Error,
            path,
            message,
            location: None,
        });
    });
    match spec {
        Ok(spec) => {
            locate(text, &mut unknown);
            unknown.sort_by_key(|p| p.location.map_or((usize::MAX, 0), |l| (l.line, l.column)));
            Ok((spec, unknown))
        }
        Err(e) => {
            // The deserializer consumed the tree; parse again to name the key and the line.
            let (root, _) = DeTable::parse_recoverable(text);
            let lines = LineIndex::new(text);
            let (path, location) = match e.span() {
                Some(span) => {
                    let mut path = Vec::new();
                    find_path(root.get_ref(), span.start, &mut path);
                    (join_path(&path), Some(lines.location(text, span.start)))
                }
                None => (String::new(), None),
            };
            let mut message = plain_type_names(e.message().trim_end());
            if is_duration_key(&path)
                && (message.contains("invalid type: integer")
                    || message.contains("invalid type: floating point"))
            {
                message.push_str("; durations are strings such as \"2s\" or \"500ms\"");
            }
            Err(vec![Problem {
                severity: Severity::Error,
                path,
                message,
                location,
            }])
        }
    }
}

/// The keys whose values are durations (`"2s"`); docs/config.md types each of them `duration`,
/// which a test holds this list to.
pub(crate) const DURATION_KEYS: &[&str] = &[
    "body_idle_timeout",
    "connect_timeout",
    "fast_interval",
    "header_read_timeout",
    "hold_down",
    "http2_keepalive_interval",
    "http2_keepalive_timeout",
    "idle_timeout",
    "interval",
    "jwks_min_refresh",
    "jwks_refresh",
    "lease_ttl",
    "leeway",
    "passive_ejection",
    "read_timeout",
    "response_header_timeout",
    "send_timeout",
    "shutdown_delay",
    "shutdown_grace",
    "timeout",
];

/// Whether the last key of `path` (`health.interval`, `account[0].health.timeout`) is a
/// duration.
fn is_duration_key(path: &str) -> bool {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    DURATION_KEYS.contains(&leaf)
}

/// serde names Rust types (`expected i64`, `expected struct HealthSpec`); say what to write in
/// TOML instead.
fn plain_type_names(message: &str) -> String {
    let mut out = message.to_owned();
    for (rust, toml) in [
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
    ] {
        out = out.replace(rust, toml);
    }
    if let Some(start) = out.find("expected struct ") {
        let name_start = start + "expected struct ".len();
        let name_end = out[name_start..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(out.len(), |i| name_start + i);
        out.replace_range(start..name_end, "expected a table");
    }
    out
}

/// `tenant.3.hostz` as serde_ignored sees it, written `tenant[3].hostz`.
fn render_ignored_path(path: &serde_ignored::Path<'_>) -> String {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut String) {
        match path {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut out = String::new();
    walk(path, &mut out);
    out
}

/// One step of a problem path.
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn join_path(segments: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Fills in the [`Location`] of every problem that has none and whose path names something in
/// the text. A path that only partly exists (a key left to its default) points at the deepest
/// part that does, e.g. the `[health]` header.
pub(crate) fn locate(text: &str, problems: &mut [Problem]) {
    if problems
        .iter()
        .all(|p| p.location.is_some() || p.path.is_empty())
    {
        return;
    }
    let (root, _) = DeTable::parse_recoverable(text);
    let lines = LineIndex::new(text);
    for problem in problems.iter_mut().filter(|p| p.location.is_none()) {
        if let Some(offset) = offset_of(root.get_ref(), &problem.path) {
            problem.location = Some(lines.location(text, offset));
        }
    }
}

/// Byte offset of the deepest node of `path` present in the tree: a key's own span for a key,
/// the element's span for an array index.
fn offset_of(root: &DeTable<'_>, path: &str) -> Option<usize> {
    let mut table = Some(root);
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    let mut rest = path;
    let mut best = None;
    while !rest.is_empty() {
        let (value, start, after) = if let Some(after) = rest.strip_prefix('[') {
            let Some((index, after)) = after.split_once(']') else {
                break;
            };
            let item = index.parse::<usize>().ok().and_then(|i| array?.get(i));
            let Some(item) = item else { break };
            (item, item.span().start, after)
        } else {
            let rest = rest.strip_prefix('.').unwrap_or(rest);
            // Header names may contain `.`, so match whole keys against the path rather than
            // splitting it; the longest key that ends at a boundary wins.
            let found = table.and_then(|table| {
                table
                    .iter()
                    .filter(|(key, _)| {
                        let key: &str = key.get_ref();
                        rest.strip_prefix(key)
                            .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
                    })
                    .max_by_key(|(key, _)| key.get_ref().len())
            });
            let Some((key, value)) = found else { break };
            (value, key.span().start, &rest[key.get_ref().len()..])
        };
        best = Some(start);
        (table, array) = children(value);
        rest = after;
    }
    best
}

type Children<'t, 'i> = (Option<&'t DeTable<'i>>, Option<&'t [Spanned<DeValue<'i>>]>);

fn children<'t, 'i>(value: &'t Spanned<DeValue<'i>>) -> Children<'t, 'i> {
    match value.get_ref() {
        DeValue::Table(table) => (Some(table), None),
        DeValue::Array(array) => (None, Some(array)),
        _ => (None, None),
    }
}

/// Builds the path of the deepest node whose span holds `offset`. Tables from `[header]`s do
/// not span their keys, so every container is searched; this runs only for a type error.
fn find_path<'t>(table: &'t DeTable<'_>, offset: usize, path: &mut Vec<Segment<'t>>) -> bool {
    for (key, value) in table.iter() {
        path.push(Segment::Key(key.get_ref()));
        if contains(&key.span(), offset) || find_in_value(value, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value<'t>(
    value: &'t Spanned<DeValue<'_>>,
    offset: usize,
    path: &mut Vec<Segment<'t>>,
) -> bool {
    match value.get_ref() {
        DeValue::Table(table) => find_path(table, offset, path) || contains(&value.span(), offset),
        DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                path.push(Segment::Index(index));
                if find_in_value(item, offset, path) {
                    return true;
                }
                path.pop();
            }
            contains(&value.span(), offset)
        }
        _ => contains(&value.span(), offset),
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// Byte offset to 1-based line and column (columns count characters).
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    fn location(&self, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&start| start <= offset) - 1;
        let start = self.starts[line];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Location {
            line: line + 1,
            column: column + 1,
        }
    }
}
