//! Checks and normalisations of single values: names, hosts, path prefixes, URLs, headers, `${VAR}`.
//!
//! Each returns the normalised value or a message. Messages never quote a header value or a URL:
//! either may hold a credential (expanded from `${VAR}` or written inline).

use http::{HeaderName, HeaderValue, Uri};

use crate::Secret;
use crate::model::Scheme;
use crate::spec::HeadersSpec;

use super::{Env, Problems, join};

/// Headers the gateway owns: hop-by-hop (RFC 9110 7.6.1) or derived from the request itself.
pub(super) const MANAGED_HEADERS: [&str; 9] = [
    "connection",
    "host",
    "transfer-encoding",
    "content-length",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "trailer",
];

/// Region, account and tenant names: they appear in logs, metrics, admin URLs and (tenants) in
/// the tenant header, so they stay a plain, printable token.
pub(super) fn name(raw: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if raw.len() > 128 {
        return Err("longer than 128 characters".to_owned());
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "{raw:?} may contain only ASCII letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// A tenant host: exact, or a wildcard `*.suffix` (returned as `Host::Wildcard(suffix)`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Host {
    Exact(String),
    Wildcard(String),
}

/// Lower-cases, strips one trailing dot, and checks an exact host or a `*.`-led wildcard.
pub(super) fn host(raw: &str) -> Result<Host, String> {
    if !raw.is_ascii() {
        return Err("non-ASCII host: write internationalised names in punycode (xn--...)".into());
    }
    let lower = raw.to_ascii_lowercase();
    let host = lower.strip_suffix('.').unwrap_or(&lower);
    if host.is_empty() {
        return Err("empty host".to_owned());
    }
    if host == "*" {
        return Err("a bare \"*\" is not allowed; use a wildcard such as \"*.example.com\"".into());
    }
    if host.contains(':') {
        return Err(format!("{raw:?}: hosts must not include a port"));
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, host),
    };
    if name.contains('*') {
        return Err(format!(
            "{raw:?}: \"*\" is only allowed as a whole leading label, as in \"*.example.com\""
        ));
    }
    if name.len() > 253 {
        return Err(format!("{raw:?}: longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("{raw:?}: empty label"));
        }
        if label.len() > 63 {
            return Err(format!("{raw:?}: label longer than 63 characters"));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "{raw:?}: invalid character {bad:?} (labels hold letters, digits and '-')"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("{raw:?}: a label must not start or end with '-'"));
        }
    }
    Ok(if wildcard {
        Host::Wildcard(name.to_owned())
    } else {
        Host::Exact(name.to_owned())
    })
}

/// Which path prefix: a tenant's (matched against requests) or an account's (prepended).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PrefixOf {
    Tenant,
    Account,
}

/// Checks a path prefix. An account's `""` and `"/"` both mean "no prefix" and return `""`.
pub(super) fn path_prefix(raw: &str, of: PrefixOf) -> Result<String, String> {
    if of == PrefixOf::Account && (raw.is_empty() || raw == "/") {
        return Ok(String::new());
    }
    if raw.is_empty() || raw == "/" {
        return Err(format!(
            "{raw:?} would match every request; leave path_prefix out instead"
        ));
    }
    if !raw.starts_with('/') {
        return Err(format!("{raw:?} must start with \"/\""));
    }
    if raw.ends_with('/') {
        return Err(format!("{raw:?} must not end with \"/\""));
    }
    if raw.contains(['?', '#']) {
        return Err(format!("{raw:?} must not contain \"?\" or \"#\""));
    }
    if raw.contains("//") {
        return Err(format!("{raw:?} must not contain \"//\""));
    }
    if raw
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(format!("{raw:?} must not contain \".\" or \"..\" segments"));
    }
    if raw.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(format!("{raw:?} is not a valid URL path"));
    }
    Ok(raw.to_owned())
}

/// An account URL, split into scheme and lower-cased authority. Errors never quote the URL: it
/// may carry credentials.
pub(super) fn account_url(raw: &str) -> Result<(Scheme, String), String> {
    if raw.contains('#') {
        return Err("must not have a fragment (#...)".to_owned());
    }
    let uri: Uri = raw
        .parse()
        .map_err(|_| "not a valid URL; expected http://host[:port]".to_owned())?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        Some(_) => return Err("the scheme must be http:// or https://".to_owned()),
        None => return Err("must start with http://".to_owned()),
    };
    let Some(authority) = uri.authority() else {
        return Err("needs a host, as in http://host:port".to_owned());
    };
    if authority.as_str().contains('@') {
        return Err(
            "must not contain credentials (user@); inject them with headers instead".to_owned(),
        );
    }
    if authority.host().is_empty() {
        return Err("needs a host, as in http://host:port".to_owned());
    }
    upstream_host(authority.host())?;
    if authority.as_str().len() > authority.host().len() && authority.port_u16().is_none() {
        return Err("invalid port".to_owned());
    }
    if authority.port_u16() == Some(0) {
        return Err("port 0 is not a port one can connect to".to_owned());
    }
    if uri.query().is_some() {
        return Err("must not have a query (?...)".to_owned());
    }
    if !(uri.path().is_empty() || uri.path() == "/") {
        return Err("must not have a path; put the path in path_prefix".to_owned());
    }
    Ok((scheme, authority.as_str().to_ascii_lowercase()))
}

/// Accepts the three spellings of a host that mean one thing to every resolver: a dotted-quad
/// IPv4 address (four decimal parts, no leading zeros), a bracketed IPv6 address, or a DNS name
/// (labels of letters, digits, `-` and `_`, the last one not numeric). `getaddrinfo` also takes
/// `127.1`, `0x7f.1` or `017.0.0.1` (inet_aton's shorthand, hex and octal forms), which read as
/// one address and connect to another; WHATWG URL parsing treats a numeric last label as an
/// IPv4 address for the same reason.
fn upstream_host(host: &str) -> Result<(), String> {
    if let Some(inner) = host.strip_prefix('[') {
        return match inner
            .strip_suffix(']')
            .map(str::parse::<std::net::Ipv6Addr>)
        {
            Some(Ok(_)) => Ok(()),
            _ => Err("the host is not a valid IPv6 address".to_owned()),
        };
    }
    let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    let numeric = |l: &str| {
        !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())
            || l.len() > 1 && l[..2].eq_ignore_ascii_case("0x")
    };
    let last_is_numeric = labels.last().is_some_and(|l| numeric(l));
    if last_is_numeric {
        let dotted_quad = labels.len() == 4
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 3
                    && l.bytes().all(|b| b.is_ascii_digit())
                    && (l.len() == 1 || !l.starts_with('0'))
                    && l.parse::<u16>().is_ok_and(|n| n <= 255)
            });
        return if dotted_quad {
            Ok(())
        } else {
            Err(
                "the host looks numeric but is not a dotted-quad IPv4 address (a.b.c.d, \
                 decimal, no leading zeros); shorthand, hex and octal forms are refused"
                    .to_owned(),
            )
        };
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !labels.iter().all(|l| label_ok(l)) {
        return Err("the host is not a valid DNS name, IPv4 or [IPv6] address".to_owned());
    }
    Ok(())
}

/// Expands every `${NAME}` (`NAME` = `[A-Za-z_][A-Za-z0-9_]*`) and every `${file:/abs/path}`
/// through `env` (which is handed `NAME`, or `file:/abs/path` and reads the file: this crate
/// does no IO). Every problem in the value is returned; messages name variables and files,
/// never their values.
pub(super) fn expand(raw: &str, env: Env<'_>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(raw.len());
    let mut errors = Vec::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            errors.push("unclosed \"${\"; write ${NAME}".to_owned());
            rest = "";
            break;
        };
        let var = &after[..end];
        if let Some(path) = var.strip_prefix("file:") {
            if !path.starts_with('/') {
                errors.push(format!(
                    "\"${{file:...}}\" needs an absolute path, not {path:?}"
                ));
            } else if let Some(value) = env(var) {
                out.push_str(&value);
            } else {
                errors.push(format!(
                    "secret file {path} cannot be read (missing, or not readable by the gateway)"
                ));
            }
        } else if !is_var_name(var) {
            errors.push(format!(
                "invalid variable name {var:?} in \"${{...}}\" (letters, digits and '_', not \
                 starting with a digit)"
            ));
        } else if let Some(value) = env(var) {
            out.push_str(&value);
        } else {
            errors.push(format!("environment variable {var} is not set"));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The names of the variables `raw` references, for messages (never their values).
fn referenced_vars(raw: &str) -> Vec<&str> {
    raw.split("${")
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name))
        .filter(|name| is_var_name(name))
        .collect()
}

fn is_var_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A header name as configured: valid, lower-cased, and not one the gateway manages.
pub(super) fn header_name(raw: &str) -> Result<String, String> {
    let name = HeaderName::from_bytes(raw.as_bytes())
        .map_err(|_| format!("{raw:?} is not a valid header name"))?;
    if MANAGED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "{:?} is hop-by-hop or managed by the gateway and cannot be set here",
            name.as_str()
        ));
    }
    Ok(name.as_str().to_owned())
}

/// The longest value one injected header may have: upstreams commonly refuse heads over 8 KiB
/// per line (nginx's `large_client_header_buffers`), and a value this long is a mistake, not a
/// key.
const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// The most bytes one `headers` table may inject into every request (names and values).
const MAX_HEADERS_TOTAL_BYTES: usize = 32 * 1024;

/// Checks and expands a `headers = { ... }` table found at `path` (e.g. `account[0].headers`).
pub(super) fn headers(
    spec: &HeadersSpec,
    path: &str,
    env: Env<'_>,
    problems: &mut Problems,
) -> Vec<(String, Secret)> {
    let mut out: Vec<(String, Secret)> = Vec::with_capacity(spec.0.len());
    for (raw_name, raw_value) in &spec.0 {
        let at = join(path, raw_name);
        let name = match header_name(raw_name) {
            Ok(name) => name,
            Err(message) => {
                problems.error(at, message);
                continue;
            }
        };
        if out.iter().any(|(seen, _)| *seen == name) {
            problems.error(
                at,
                format!("duplicate header {name:?} (header names are case-insensitive)"),
            );
            continue;
        }
        let value = match expand(raw_value, env) {
            Ok(value) => value,
            Err(messages) => {
                for message in messages {
                    problems.error(at.clone(), message);
                }
                continue;
            }
        };
        if value.len() > MAX_HEADER_VALUE_BYTES {
            problems.error(
                at,
                format!(
                    "the value is {} bytes; an injected header value is limited to {MAX_HEADER_VALUE_BYTES} bytes",
                    value.len()
                ),
            );
            continue;
        }
        if HeaderValue::from_bytes(value.as_bytes()).is_err() {
            let vars = referenced_vars(raw_value);
            let origin = if vars.is_empty() {
                String::new()
            } else {
                format!(" after ${{...}} expansion of {}", vars.join(", "))
            };
            problems.error(
                at,
                format!("not a valid header value{origin} (control characters such as CR, LF or NUL are not allowed)"),
            );
            continue;
        }
        out.push((name, Secret::new(value)));
    }
    let total: usize = out.iter().map(|(n, v)| n.len() + v.expose().len()).sum();
    if total > MAX_HEADERS_TOTAL_BYTES {
        problems.error(
            path.to_owned(),
            format!(
                "the headers add up to {total} bytes; one table is limited to {MAX_HEADERS_TOTAL_BYTES} bytes"
            ),
        );
    }
    out
}
