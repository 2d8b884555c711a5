//! `[azure]` and each account's `auth = { ... }`: per-`type` keys, defaults, `${VAR}` secrets.

use std::path::PathBuf;

use http::Uri;

use super::{Env, Problems, rules};
use crate::Secret;
use crate::auth::{
    AccountAuth, ArmAuth, ArmResourceId, AzureEndpoints, ClassicAuth, EntraCredential, OAuth2Auth,
    Permission, SendAs, TokenScope,
};
use crate::spec::{AuthSpec, AzureSpec};

/// The `type`s, for messages.
const TYPES: &str = "\"static\", \"azure-video-indexer\", \"video-indexer-classic\" or \"oauth2-client-credentials\"";

/// `[azure]`, each key defaulted.
pub(super) fn azure(spec: &AzureSpec, problems: &mut Problems) -> AzureEndpoints {
    let defaults = AzureEndpoints::default();
    let mut one = |raw: &Option<String>, key: &str, default: String| match raw {
        None => default,
        Some(raw) => http_url(raw, false).unwrap_or_else(|message| {
            problems.error(format!("azure.{key}"), message);
            default
        }),
    };
    AzureEndpoints {
        arm_endpoint: one(&spec.arm_endpoint, "arm_endpoint", defaults.arm_endpoint),
        login_endpoint: one(
            &spec.login_endpoint,
            "login_endpoint",
            defaults.login_endpoint,
        ),
        imds_endpoint: one(&spec.imds_endpoint, "imds_endpoint", defaults.imds_endpoint),
        api_endpoint: one(&spec.api_endpoint, "api_endpoint", defaults.api_endpoint),
    }
}

/// An `http(s)://host[:port][/path]` URL without credentials, query or fragment, returned without
/// its trailing `/`. `path_allowed = false` also refuses any path beyond `/`.
fn http_url(raw: &str, path_allowed: bool) -> Result<String, String> {
    let uri: Uri = raw
        .parse()
        .map_err(|_| "not a valid URL; expected https://host[:port]".to_owned())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("the scheme must be http:// or https://".to_owned());
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err("needs a host, as in https://host".to_owned());
    };
    if authority.as_str().contains('@') {
        return Err("must not contain credentials (user@)".to_owned());
    }
    if uri.query().is_some() || raw.contains('#') {
        return Err("must not have a query or fragment".to_owned());
    }
    if !path_allowed && uri.path().len() > 1 {
        return Err("must be a base URL without a path, e.g. https://host".to_owned());
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Reads one account's `auth`; `at` is `account[i].auth`. `None` after any error.
pub(super) fn account_auth(
    spec: &AuthSpec,
    at: &str,
    env: Env<'_>,
    problems: &mut Problems,
) -> Option<AccountAuth> {
    let mut check = Check {
        spec,
        at,
        env,
        problems,
        failed: false,
    };
    let auth = match spec.kind.as_deref() {
        None => {
            check.error("type", format!("missing; one of {TYPES}"));
            return None;
        }
        Some("static") => {
            check.only(&[]);
            AccountAuth::Static
        }
        Some("azure-video-indexer") => check.arm().map(AccountAuth::AzureVideoIndexer)?,
        Some("video-indexer-classic") => check.classic().map(AccountAuth::VideoIndexerClassic)?,
        Some("oauth2-client-credentials") => {
            check.oauth2().map(AccountAuth::OAuth2ClientCredentials)?
        }
        Some(other) => {
            check.error("type", format!("{other:?} is not one of {TYPES}"));
            return None;
        }
    };
    (!check.failed).then_some(auth)
}

struct Check<'a, 'p> {
    spec: &'a AuthSpec,
    at: &'a str,
    env: Env<'a>,
    problems: &'p mut Problems,
    failed: bool,
}

impl Check<'_, '_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.failed = true;
        self.problems.error(format!("{}.{key}", self.at), message);
    }

    fn kind(&self) -> &str {
        self.spec.kind.as_deref().unwrap_or("")
    }

    /// Every key set that `allowed` (plus `type`) does not list is an error.
    fn only(&mut self, allowed: &[&str]) {
        let s = self.spec;
        let set: [(&str, bool); 14] = [
            ("resource_id", s.resource_id.is_some()),
            ("permission", s.permission.is_some()),
            ("scope", s.scope.is_some()),
            ("credential", s.credential.is_some()),
            ("tenant_id", s.tenant_id.is_some()),
            ("client_id", s.client_id.is_some()),
            ("client_secret", s.client_secret.is_some()),
            ("token_file", s.token_file.is_some()),
            ("send_as", s.send_as.is_some()),
            ("api_key", s.api_key.is_some()),
            ("location", s.location.is_some()),
            ("account_id", s.account_id.is_some()),
            ("allow_edit", s.allow_edit.is_some()),
            ("token_url", s.token_url.is_some()),
        ];
        for (key, present) in set {
            if present && !allowed.contains(&key) {
                let kind = self.kind().to_owned();
                self.error(key, format!("does not apply to type = {kind:?}"));
            }
        }
    }

    /// A required plain value; `what` completes "missing; ... needs KEY = what".
    fn required(&mut self, key: &str, value: &Option<String>, what: &str) -> String {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => v.to_owned(),
            Some(_) => {
                self.error(key, "must not be empty");
                String::new()
            }
            None => {
                let kind = self.kind().to_owned();
                self.error(
                    key,
                    format!("missing; type = {kind:?} needs {key} = {what}"),
                );
                String::new()
            }
        }
    }

    /// A required secret, expanded from `${VAR}`; a literal is accepted with a warning.
    fn secret(&mut self, key: &str, value: &Option<String>, needed_by: &str) -> Secret {
        let Some(raw) = value else {
            self.error(
                key,
                format!("missing; {needed_by} needs {key} = \"${{VAR}}\""),
            );
            return Secret::new("");
        };
        if !raw.contains("${") {
            self.problems.warning(
                format!("{}.{key}", self.at),
                "a literal secret in the config file; prefer \"${VAR}\" from the environment",
            );
        }
        match rules::expand(raw, self.env) {
            Ok(v) if v.is_empty() => {
                self.error(key, "is empty after ${VAR} expansion");
                Secret::new("")
            }
            Ok(v) => Secret::new(v),
            Err(messages) => {
                for m in messages {
                    self.error(key, m);
                }
                Secret::new("")
            }
        }
    }

    fn send_as(&mut self, default: SendAs) -> SendAs {
        match self.spec.send_as.as_deref() {
            None => default,
            Some("query") => SendAs::Query,
            Some("header") => SendAs::Header,
            Some(other) => {
                self.error(
                    "send_as",
                    format!("{other:?} is not \"query\" or \"header\""),
                );
                default
            }
        }
    }

    fn arm(&mut self) -> Option<ArmAuth> {
        let s = self.spec;
        let mode = s.credential.as_deref();
        let mut allowed = vec![
            "resource_id",
            "permission",
            "scope",
            "credential",
            "send_as",
            "client_id",
        ];
        if matches!(mode, Some("client-secret" | "workload-identity")) {
            allowed.push("tenant_id");
        }
        match mode {
            Some("client-secret") => allowed.push("client_secret"),
            Some("workload-identity") => allowed.push("token_file"),
            _ => {}
        }
        self.only(&allowed);
        let resource_id = match &s.resource_id {
            None => {
                self.error(
                    "resource_id",
                    "missing; type = \"azure-video-indexer\" needs resource_id = \
                     \"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.VideoIndexer/accounts/{name}\"",
                );
                None
            }
            Some(raw) => ArmResourceId::parse(raw)
                .map_err(|message| self.error("resource_id", message))
                .ok(),
        };
        let permission = match s.permission.as_deref() {
            None | Some("Contributor") => Permission::Contributor,
            Some("Reader") => Permission::Reader,
            Some(other) => {
                self.error(
                    "permission",
                    format!("{other:?} is not \"Contributor\" or \"Reader\""),
                );
                Permission::Contributor
            }
        };
        let scope = match s.scope.as_deref() {
            None | Some("Account") => TokenScope::Account,
            Some("Video") => TokenScope::Video,
            Some("Project") => TokenScope::Project,
            Some(other) => {
                self.error(
                    "scope",
                    format!("{other:?} is not \"Account\", \"Video\" or \"Project\""),
                );
                TokenScope::Account
            }
        };
        let credential = match mode {
            None => {
                self.error(
                    "credential",
                    "missing; one of \"managed-identity\", \"client-secret\", \"workload-identity\"",
                );
                None
            }
            Some("managed-identity") => Some(EntraCredential::ManagedIdentity {
                client_id: s.client_id.clone(),
            }),
            Some("client-secret") => {
                let tenant_id = self.required("tenant_id", &s.tenant_id, "\"<directory id>\"");
                let client_id = self.required("client_id", &s.client_id, "\"<application id>\"");
                let client_secret = self.secret(
                    "client_secret",
                    &s.client_secret,
                    "credential = \"client-secret\"",
                );
                Some(EntraCredential::ClientSecret {
                    tenant_id,
                    client_id,
                    client_secret,
                })
            }
            Some("workload-identity") => {
                let tenant_id = self.required("tenant_id", &s.tenant_id, "\"<directory id>\"");
                let client_id = self.required("client_id", &s.client_id, "\"<application id>\"");
                let token_file = match s.token_file.as_deref() {
                    Some("") => {
                        self.error("token_file", "must not be empty");
                        None
                    }
                    other => other.map(PathBuf::from),
                };
                Some(EntraCredential::WorkloadIdentity {
                    tenant_id,
                    client_id,
                    token_file,
                })
            }
            Some(other) => {
                self.error(
                    "credential",
                    format!(
                        "{other:?} is not \"managed-identity\", \"client-secret\" or \"workload-identity\""
                    ),
                );
                None
            }
        };
        let send_as = self.send_as(SendAs::Query);
        Some(ArmAuth {
            resource_id: resource_id?,
            permission,
            scope,
            credential: credential?,
            send_as,
        })
    }

    fn classic(&mut self) -> Option<ClassicAuth> {
        let s = self.spec;
        self.only(&["api_key", "location", "account_id", "allow_edit", "send_as"]);
        let api_key = self.secret("api_key", &s.api_key, "type = \"video-indexer-classic\"");
        let location = self.required("location", &s.location, "\"trial\" or a region");
        let account_id = self.required("account_id", &s.account_id, "\"<account id>\"");
        let send_as = self.send_as(SendAs::Query);
        Some(ClassicAuth {
            api_key,
            location,
            account_id,
            allow_edit: s.allow_edit.unwrap_or(true),
            send_as,
        })
    }

    fn oauth2(&mut self) -> Option<OAuth2Auth> {
        let s = self.spec;
        self.only(&[
            "token_url",
            "client_id",
            "client_secret",
            "scope",
            "send_as",
        ]);
        let token_url = match &s.token_url {
            None => {
                self.required("token_url", &None, "\"https://host/token\"");
                String::new()
            }
            Some(raw) => http_url(raw, true).unwrap_or_else(|message| {
                self.error("token_url", message);
                String::new()
            }),
        };
        let client_id = self.required("client_id", &s.client_id, "\"<client id>\"");
        let client_secret = self.secret(
            "client_secret",
            &s.client_secret,
            "type = \"oauth2-client-credentials\"",
        );
        let send_as = self.send_as(SendAs::Header);
        Some(OAuth2Auth {
            token_url,
            client_id,
            client_secret,
            scope: s.scope.clone(),
            send_as,
        })
    }
}
