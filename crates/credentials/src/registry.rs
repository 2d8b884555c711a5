//! [`Registry`]: one [`TokenProvider`] per distinct credential, shared by every account (and so
//! every tenant) configured with it; one Entra ID provider per distinct Entra credential, shared
//! by every ARM provider that uses it.

use bytes::Bytes;
use pairgate_config::{
    AccountAuth, ArmAuth, AzureEndpoints, ClassicAuth, Config, EntraCredential, OAuth2Auth,
    Permission, Secret, TokenScope,
};
use serde_json::json;

use crate::http::{HttpClient, encode_into, form};
use crate::provider::{RefreshPolicy, TokenProvider};
use crate::source::{ARM_RESOURCE, ARM_SCOPE, Source};

/// ARM API version of `generateAccessToken`.
pub const ARM_API_VERSION: &str = "2024-01-01";
/// IMDS API version of the managed identity token endpoint.
pub const IMDS_API_VERSION: &str = "2018-02-01";

/// What makes two credentials the same (`send_as` does not: it is about where the token goes).
#[derive(PartialEq, Clone)]
enum Key {
    Arm(String, Permission, TokenScope, EntraCredential),
    Classic(Secret, String, String, bool),
    OAuth2(String, String, Secret, Option<String>),
}

/// Builds and deduplicates providers for a configuration's accounts.
#[derive(Debug)]
pub struct Registry {
    http: HttpClient,
    azure: AzureEndpoints,
    policy: RefreshPolicy,
    entra: Vec<(EntraCredential, TokenProvider)>,
    providers: Vec<(KeyBox, TokenProvider)>,
    /// A previous registry's providers, taken over when asked for again (a reload).
    spare: Vec<(KeyBox, TokenProvider)>,
    spare_entra: Vec<(EntraCredential, TokenProvider)>,
}

/// `Key` without a `Debug` that could print a secret.
struct KeyBox(Key);

impl std::fmt::Debug for KeyBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Registry {
    /// An empty registry whose providers talk to `azure`'s endpoints through `http`.
    pub fn new(azure: AzureEndpoints, http: HttpClient, policy: RefreshPolicy) -> Registry {
        Registry {
            http,
            azure,
            policy,
            entra: Vec::new(),
            providers: Vec::new(),
            spare: Vec::new(),
            spare_entra: Vec::new(),
        }
    }

    /// [`for_config`](Self::for_config) for a reload: a credential that did not change keeps
    /// `previous`'s provider, with its cached token and its refresh schedule (the same
    /// provider, so its [`Refresher`](crate::Refresher) can keep running). Nothing is carried
    /// over when the `[azure]` endpoints changed.
    pub fn for_config_after(
        config: &Config,
        previous: &Registry,
    ) -> (Registry, Vec<Option<TokenProvider>>) {
        let mut registry =
            Registry::new(config.azure.clone(), previous.http.clone(), previous.policy);
        if previous.azure == config.azure {
            registry.spare = previous
                .providers
                .iter()
                .map(|(k, p)| (KeyBox(k.0.clone()), p.clone()))
                .collect();
            registry.spare_entra = previous.entra.clone();
        }
        let providers = registry.providers_for(config);
        registry.spare.clear();
        registry.spare_entra.clear();
        (registry, providers)
    }

    fn providers_for(&mut self, config: &Config) -> Vec<Option<TokenProvider>> {
        config
            .accounts
            .iter()
            .map(|account| account.auth.as_ref().and_then(|a| self.provider(a)))
            .collect()
    }

    /// A registry for `config` (its `[azure]` endpoints) and the provider of each of its
    /// accounts, by account index (`None` for accounts without `auth` or with `static`).
    pub fn for_config(
        config: &Config,
        http: HttpClient,
        policy: RefreshPolicy,
    ) -> (Registry, Vec<Option<TokenProvider>>) {
        let mut registry = Registry::new(config.azure.clone(), http, policy);
        let providers = registry.providers_for(config);
        (registry, providers)
    }

    /// The provider for `auth`, created on first use and shared afterwards; `None` for
    /// `static` (nothing to mint). Providers are not started: call
    /// [`TokenProvider::start`] (or use [`TokenProvider::get`]).
    pub fn provider(&mut self, auth: &AccountAuth) -> Option<TokenProvider> {
        let key = match auth {
            AccountAuth::Static => return None,
            AccountAuth::AzureVideoIndexer(a) => Key::Arm(
                a.resource_id.id.to_ascii_lowercase(),
                a.permission,
                a.scope,
                a.credential.clone(),
            ),
            AccountAuth::VideoIndexerClassic(c) => Key::Classic(
                c.api_key.clone(),
                c.location.to_ascii_lowercase(),
                c.account_id.to_ascii_lowercase(),
                c.allow_edit,
            ),
            AccountAuth::OAuth2ClientCredentials(o) => Key::OAuth2(
                o.token_url.clone(),
                o.client_id.clone(),
                o.client_secret.clone(),
                o.scope.clone(),
            ),
        };
        if let Some((_, p)) = self.providers.iter().find(|(k, _)| k.0 == key) {
            return Some(p.clone());
        }
        if let Some(i) = self.spare.iter().position(|(k, _)| k.0 == key) {
            let (key, provider) = self.spare.swap_remove(i);
            // Its Entra provider comes along (it is the one the ARM provider holds).
            if let AccountAuth::AzureVideoIndexer(a) = auth
                && let Some(j) = self
                    .spare_entra
                    .iter()
                    .position(|(c, _)| *c == a.credential)
            {
                let entra = self.spare_entra.swap_remove(j);
                if !self.entra.iter().any(|(c, _)| *c == entra.0) {
                    self.entra.push(entra);
                }
            }
            self.providers.push((key, provider.clone()));
            return Some(provider);
        }
        let provider = match auth {
            AccountAuth::Static => return None,
            AccountAuth::AzureVideoIndexer(a) => self.arm(a),
            AccountAuth::VideoIndexerClassic(c) => self.classic(c),
            AccountAuth::OAuth2ClientCredentials(o) => self.oauth2(o),
        };
        self.providers.push((KeyBox(key), provider.clone()));
        Some(provider)
    }

    /// Every provider created so far (accounts' and the Entra ones they use), e.g. for metrics.
    pub fn providers(&self) -> impl Iterator<Item = &TokenProvider> {
        self.providers
            .iter()
            .map(|(_, p)| p)
            .chain(self.entra.iter().map(|(_, p)| p))
    }

    fn entra(&mut self, credential: &EntraCredential) -> TokenProvider {
        if let Some((_, p)) = self.entra.iter().find(|(c, _)| c == credential) {
            return p.clone();
        }
        if let Some(i) = self.spare_entra.iter().position(|(c, _)| c == credential) {
            let (c, p) = self.spare_entra.swap_remove(i);
            self.entra.push((c, p.clone()));
            return p;
        }
        let login = &self.azure.login_endpoint;
        let token_url = |tenant: &str| {
            let mut url = format!("{login}/");
            encode_into(&mut url, tenant);
            url.push_str("/oauth2/v2.0/token");
            url
        };
        let (label, source) = match credential {
            EntraCredential::ManagedIdentity { client_id } => {
                let mut url = format!(
                    "{}/metadata/identity/oauth2/token?api-version={IMDS_API_VERSION}&resource=",
                    self.azure.imds_endpoint
                );
                encode_into(&mut url, ARM_RESOURCE);
                if let Some(id) = client_id {
                    url.push_str("&client_id=");
                    encode_into(&mut url, id);
                }
                let who = client_id.as_deref().unwrap_or("system-assigned");
                (
                    format!("entra managed-identity {who}"),
                    Source::Imds { url },
                )
            }
            EntraCredential::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
            } => (
                format!("entra client-secret app {client_id} (tenant {tenant_id})"),
                Source::EntraSecret {
                    url: token_url(tenant_id),
                    form: Secret::new(form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        ("client_secret", client_secret.expose()),
                        ("scope", ARM_SCOPE),
                    ])),
                },
            ),
            EntraCredential::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => (
                format!("entra workload-identity app {client_id} (tenant {tenant_id})"),
                Source::EntraWorkload {
                    url: token_url(tenant_id),
                    client_id: client_id.clone(),
                    scope: ARM_SCOPE.to_owned(),
                    token_file: token_file.clone(),
                },
            ),
        };
        let provider = TokenProvider::new(label, source, self.http.clone(), self.policy);
        self.entra.push((credential.clone(), provider.clone()));
        provider
    }

    fn arm(&mut self, auth: &ArmAuth) -> TokenProvider {
        let entra = self.entra(&auth.credential);
        let who = match &auth.credential {
            EntraCredential::ManagedIdentity { client_id: None } => "system-assigned".to_owned(),
            EntraCredential::ManagedIdentity {
                client_id: Some(id),
            }
            | EntraCredential::ClientSecret { client_id: id, .. }
            | EntraCredential::WorkloadIdentity { client_id: id, .. } => format!("app {id}"),
        };
        let label = format!(
            "azure-video-indexer {} ({} {who})",
            auth.resource_id,
            auth.credential.mode()
        );
        let url = format!(
            "{}{}/generateAccessToken?api-version={ARM_API_VERSION}",
            self.azure.arm_endpoint, auth.resource_id.id
        );
        let body =
            json!({"permissionType": auth.permission.as_str(), "scope": auth.scope.as_str()});
        let source = Source::Arm {
            entra,
            url,
            body: Bytes::from(body.to_string()),
        };
        TokenProvider::new(label, source, self.http.clone(), self.policy)
    }

    fn classic(&mut self, auth: &ClassicAuth) -> TokenProvider {
        let mut url = format!("{}/auth/", self.azure.api_endpoint);
        encode_into(&mut url, &auth.location);
        url.push_str("/Accounts/");
        encode_into(&mut url, &auth.account_id);
        url.push_str(if auth.allow_edit {
            "/AccessToken?allowEdit=true"
        } else {
            "/AccessToken?allowEdit=false"
        });
        let label = format!(
            "video-indexer-classic {}/{}",
            auth.location, auth.account_id
        );
        let source = Source::Classic {
            url,
            api_key: auth.api_key.clone(),
        };
        TokenProvider::new(label, source, self.http.clone(), self.policy)
    }

    fn oauth2(&mut self, auth: &OAuth2Auth) -> TokenProvider {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", auth.client_id.as_str()),
            ("client_secret", auth.client_secret.expose()),
        ];
        if let Some(scope) = &auth.scope {
            pairs.push(("scope", scope));
        }
        let label = format!(
            "oauth2-client-credentials {} at {}",
            auth.client_id, auth.token_url
        );
        let source = Source::OAuth2 {
            url: auth.token_url.clone(),
            form: Secret::new(form(&pairs)),
            client_secret: auth.client_secret.clone(),
        };
        TokenProvider::new(label, source, self.http.clone(), self.policy)
    }
}
