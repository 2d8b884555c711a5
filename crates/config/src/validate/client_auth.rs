//! `[client_auth]`, `[[jwt_issuer]]`, `[listen] client_ca` and each tenant's
//! `client_auth = { ... }`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Problems, duration, rules, unique_names};
use crate::client_auth::{
    ApiKeyDigest, ClientAuth, JwksSource, JwtAlgorithm, JwtIssuer, MtlsMode, TenantClientAuth,
};
use crate::model::TenantConfig;
use crate::spec::{ClientAuthSpec, JwtIssuerSpec, TenantSpec};

/// The global settings and the issuers; `client_ca` is `[listen] client_ca`, `https` whether
/// an HTTPS listener is configured.
pub(super) fn client_auth(
    spec: &ClientAuthSpec,
    issuers: &[JwtIssuerSpec],
    client_ca: Option<&PathBuf>,
    https: bool,
    problems: &mut Problems,
) -> ClientAuth {
    let defaults = ClientAuth::default();
    if client_ca.is_some() && !https {
        problems.error(
            "listen.client_ca",
            "client certificates are asked for on the HTTPS listener; set listen.https too",
        );
    }
    let mtls = match (spec.mtls.as_deref(), client_ca) {
        (None, None) => MtlsMode::Off,
        (None | Some("optional"), Some(_)) => MtlsMode::Optional,
        (Some("required"), Some(_)) => MtlsMode::Required,
        (Some("optional" | "required"), None) => {
            problems.error(
                "client_auth.mtls",
                "needs [listen] client_ca, the CA bundle client certificates are verified against",
            );
            MtlsMode::Off
        }
        (Some(other), _) => {
            problems.error(
                "client_auth.mtls",
                format!("{other:?} is not a mode; expected \"optional\" or \"required\""),
            );
            MtlsMode::Off
        }
    };
    let api_key_header = match &spec.api_key_header {
        None => defaults.api_key_header,
        Some(raw) => rules::header_name(raw).unwrap_or_else(|message| {
            problems.error("client_auth.api_key_header", message);
            String::new()
        }),
    };
    let identity_header = match spec.identity_header.as_deref() {
        None => defaults.identity_header,
        Some("") => None,
        Some(raw) => rules::header_name(raw)
            .map_err(|message| problems.error("client_auth.identity_header", message))
            .ok(),
    };
    if identity_header.as_deref() == Some(api_key_header.as_str()) {
        problems.error(
            "client_auth.identity_header",
            "must differ from api_key_header: the key header is removed before forwarding",
        );
    }
    let jwt_cache_entries = match spec.jwt_cache_entries {
        None => defaults.jwt_cache_entries,
        Some(n) if (0..=10_000_000).contains(&n) => usize::try_from(n).unwrap_or(0),
        Some(_) => {
            problems.error(
                "client_auth.jwt_cache_entries",
                "must be between 0 (no cache) and 10000000",
            );
            defaults.jwt_cache_entries
        }
    };
    unique_names(
        "jwt_issuer",
        issuers.iter().map(|i| i.name.as_deref()),
        problems,
    );
    let mut seen_iss: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(issuers.len());
    for (i, spec) in issuers.iter().enumerate() {
        if let Some(iss) = spec.issuer.as_deref()
            && let Some(first) = seen_iss.insert(iss, i)
        {
            problems.error(
                format!("jwt_issuer[{i}].issuer"),
                format!("{iss:?} is also jwt_issuer[{first}]'s; each issuer is listed once"),
            );
        }
        out.push(issuer(spec, &format!("jwt_issuer[{i}]"), problems));
    }
    ClientAuth {
        required: spec.required.unwrap_or(false),
        api_key_header,
        mtls,
        identity_header,
        jwt_cache_entries,
        issuers: out,
    }
}

fn issuer(spec: &JwtIssuerSpec, at: &str, problems: &mut Problems) -> JwtIssuer {
    let key = |k: &str| format!("{at}.{k}");
    let issuer = match spec.issuer.as_deref() {
        Some(iss) if !iss.is_empty() => iss.to_owned(),
        _ => {
            problems.error(
                key("issuer"),
                "missing; the exact `iss` claim of its tokens",
            );
            String::new()
        }
    };
    if spec.audiences.is_empty() || spec.audiences.iter().any(String::is_empty) {
        problems.error(
            key("audiences"),
            "needs at least one non-empty audience: a token for another service must not pass",
        );
    }
    let jwks = match (&spec.jwks_file, &spec.jwks_url) {
        (Some(file), None) if !file.is_empty() => JwksSource::File(PathBuf::from(file)),
        (None, Some(url)) => {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
            if !ok {
                problems.error(key("jwks_url"), format!("{url:?} is not an http(s) URL"));
            } else if url.starts_with("http://") {
                problems.warning(
                    key("jwks_url"),
                    "plain http: whoever is on the path can replace the signing keys; use https \
                     outside a trusted network",
                );
            }
            JwksSource::Url(url.clone())
        }
        (Some(_), Some(_)) => {
            problems.error(at, "set jwks_file or jwks_url, not both");
            JwksSource::File(PathBuf::new())
        }
        _ => {
            problems.error(
                at,
                "needs jwks_file or jwks_url: where its signing keys are",
            );
            JwksSource::File(PathBuf::new())
        }
    };
    let algorithms = match &spec.algorithms {
        None => vec![JwtAlgorithm::ES256, JwtAlgorithm::RS256],
        Some(names) if names.is_empty() => {
            problems.error(key("algorithms"), "needs at least one algorithm");
            Vec::new()
        }
        Some(names) => names
            .iter()
            .filter_map(|name| {
                let found = JwtAlgorithm::ALL
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, a)| *a);
                if found.is_none() {
                    let why = if name.eq_ignore_ascii_case("none") || name.starts_with("HS") {
                        "is always refused (unsigned tokens, and HMAC keys, cannot be trusted \
                         from a public key set)"
                    } else {
                        "is not an algorithm; expected ES256, ES384, RS256, RS384, RS512, \
                         PS256, PS384, PS512 or EdDSA"
                    };
                    problems.error(key("algorithms"), format!("{name:?} {why}"));
                }
                found
            })
            .collect(),
    };
    let tenant_claim = match spec.tenant_claim.as_deref() {
        None => "tenant".to_owned(),
        Some("") => {
            problems.error(key("tenant_claim"), "must not be empty");
            String::new()
        }
        Some(claim) => claim.to_owned(),
    };
    let leeway = match spec.leeway.as_deref() {
        None => Duration::from_secs(30),
        Some(raw) => match crate::duration::parse_duration(raw) {
            Ok(d) if d <= Duration::from_secs(600) => d,
            Ok(_) => {
                problems.error(
                    key("leeway"),
                    "at most \"10m\": clock skew, not a grace period",
                );
                Duration::from_secs(30)
            }
            Err(message) => {
                problems.error(key("leeway"), message);
                Duration::from_secs(30)
            }
        },
    };
    JwtIssuer {
        name: spec.name.clone().unwrap_or_default(),
        issuer,
        audiences: spec.audiences.clone(),
        jwks,
        refresh: duration(
            &spec.jwks_refresh,
            &key("jwks_refresh"),
            Duration::from_secs(300),
            problems,
        ),
        min_refresh: duration(
            &spec.jwks_min_refresh,
            &key("jwks_min_refresh"),
            Duration::from_secs(30),
            problems,
        ),
        algorithms,
        tenant_claim,
        leeway,
    }
}

/// Fills each tenant's `client_auth` from its spec: digests parsed (each key belongs to one
/// tenant), issuers resolved, subjects checked, and `required` enforced.
pub(super) fn tenants(
    specs: &[TenantSpec],
    tenants: &mut [TenantConfig],
    auth: &ClientAuth,
    problems: &mut Problems,
) {
    let issuer_index: HashMap<&str, usize> = auth
        .issuers
        .iter()
        .enumerate()
        .map(|(i, iss)| (iss.name.as_str(), i))
        .collect();
    let mut key_owner: HashMap<ApiKeyDigest, usize> = HashMap::new();
    for (i, (spec, tenant)) in specs.iter().zip(tenants.iter_mut()).enumerate() {
        let at = format!("tenant[{i}].client_auth");
        let own = spec.client_auth.clone().unwrap_or_default();
        let mut out = TenantClientAuth::default();
        for (j, raw) in own.api_keys.iter().enumerate() {
            let Ok(digest) = ApiKeyDigest::parse(raw).map_err(|message| {
                // The message never repeats the value: it may be a key pasted by mistake.
                problems.error(format!("{at}.api_keys[{j}]"), message);
            }) else {
                continue;
            };
            match key_owner.insert(digest, i) {
                Some(first) if first != i => problems.error(
                    format!("{at}.api_keys[{j}]"),
                    format!(
                        "key {} also belongs to tenant[{first}]; a key identifies one tenant",
                        digest.id()
                    ),
                ),
                Some(_) => problems.warning(
                    format!("{at}.api_keys[{j}]"),
                    format!("key {} is listed twice", digest.id()),
                ),
                None => out.api_keys.push(digest),
            }
        }
        for (j, name) in own.jwt_issuers.iter().enumerate() {
            match issuer_index.get(name.as_str()) {
                Some(&index) => out.jwt_issuers.push(index),
                None => problems.error(
                    format!("{at}.jwt_issuers[{j}]"),
                    format!("unknown jwt_issuer {name:?}"),
                ),
            }
        }
        for (j, subject) in own.mtls_subjects.iter().enumerate() {
            let ok = match subject.strip_prefix("CN=") {
                Some(cn) => !cn.is_empty(),
                None => subject.split_once("://").is_some_and(|(s, r)| {
                    !s.is_empty() && !r.is_empty() && !subject.contains(char::is_whitespace)
                }),
            };
            if !ok {
                problems.error(
                    format!("{at}.mtls_subjects[{j}]"),
                    format!(
                        "{subject:?} is not a subject; expected \"CN=<common name>\" or a URI \
                         SAN such as \"spiffe://example.org/client\""
                    ),
                );
            } else {
                out.mtls_subjects.push(subject.clone());
            }
        }
        if !own.mtls_subjects.is_empty() && auth.mtls == MtlsMode::Off {
            problems.error(
                format!("{at}.mtls_subjects"),
                "needs [listen] client_ca: without it no client certificate is asked for",
            );
        }
        let kinds = !own.api_keys.is_empty()
            || !own.jwt_issuers.is_empty()
            || !own.mtls_subjects.is_empty();
        let required = own.required.unwrap_or(false) || auth.required;
        if required && !kinds {
            let why = if auth.required {
                "[client_auth] required = true, but this tenant accepts no credential"
            } else {
                "required = true, but this tenant accepts no credential"
            };
            problems.error(
                at.clone(),
                format!("{why}: add api_keys, jwt_issuers or mtls_subjects"),
            );
        }
        out.required = required || kinds;
        tenant.client_auth = out;
    }
}
