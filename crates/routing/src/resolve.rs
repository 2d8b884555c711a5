//! `resolve_tenant`: header, exact host, wildcard host, path prefix, in that order.

use http::{HeaderMap, Uri, header};

use crate::{RouteTable, TenantId};

/// A request resolved to its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The tenant.
    pub tenant: TenantId,
    /// Bytes of the path that belong to the tenant's path prefix and are stripped before
    /// forwarding; 0 unless the tenant was found by its prefix.
    pub strip: usize,
}

/// Why a request has no tenant. Every variant is answered with 404 `unknown_tenant`; the variants
/// exist for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The tenant header named no tenant.
    UnknownTenantHeader,
    /// Neither host nor path matched.
    NoMatch,
}

/// Longest host name we try to match; anything longer is not a DNS name (RFC 1035: 253).
const MAX_HOST: usize = 253;

impl RouteTable {
    /// Finds the tenant of a request from its tenant header (when configured), `Host` (or the
    /// URI authority for HTTP/2), and path. The cost is a handful of hash lookups bounded by the
    /// number of labels in the host and segments in the path, whatever the number of tenants.
    pub fn resolve_tenant(&self, uri: &Uri, headers: &HeaderMap) -> Result<Resolved, Miss> {
        if let Some(name) = &self.tenant_header
            && let Some(value) = headers.get(name)
        {
            return value
                .to_str()
                .ok()
                .and_then(|v| self.by_name.get(v.trim()))
                .map(|&tenant| Resolved { tenant, strip: 0 })
                .ok_or(Miss::UnknownTenantHeader);
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        if let Some(host) = host
            && let Some(tenant) = self.resolve_host(host)
        {
            return Ok(Resolved { tenant, strip: 0 });
        }
        self.resolve_path(uri.path()).ok_or(Miss::NoMatch)
    }

    /// Exact host first, then the most specific wildcard. `host` may carry a port, upper case
    /// and a trailing dot.
    pub fn resolve_host(&self, host: &str) -> Option<TenantId> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() || host.len() > MAX_HOST {
            return None;
        }
        let mut lower = [0u8; MAX_HOST];
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            let buf = &mut lower[..host.len()];
            buf.copy_from_slice(host.as_bytes());
            buf.make_ascii_lowercase();
            // Lower-casing ASCII bytes of a str keeps it valid UTF-8.
            std::str::from_utf8(buf).ok()?
        } else {
            host
        };
        if let Some(&id) = self.by_host.get(host) {
            return Some(id);
        }
        if self.by_wildcard.is_empty() {
            return None;
        }
        // `*.example.com` is stored as `example.com` and matches any name with at least one more
        // label; walking the dots left to right tries the most specific suffix first.
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(&id) = self.by_wildcard.get(rest) {
                return Some(id);
            }
        }
        None
    }

    /// The tenant whose path prefix is the longest segment-aligned prefix of `path`.
    pub fn resolve_path(&self, path: &str) -> Option<Resolved> {
        if self.by_prefix.is_empty() {
            return None;
        }
        // Candidate prefix ends: each `/` after the first byte, and the end of the path.
        let mut ends = [0usize; 16];
        let limit = self.max_prefix_segments.min(ends.len());
        let mut count = 0;
        for (i, b) in path.bytes().enumerate().skip(1) {
            if b == b'/' {
                if count == limit {
                    break;
                }
                ends[count] = i;
                count += 1;
            }
        }
        if count < limit {
            ends[count] = path.len();
            count += 1;
        }
        ends[..count].iter().rev().find_map(|&end| {
            self.by_prefix
                .get(&path[..end])
                .map(|&tenant| Resolved { tenant, strip: end })
        })
    }
}

/// `host:port`, `[v6]:port` and `[v6]` to the bare host.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}
