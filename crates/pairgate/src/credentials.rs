//! The account credentials this gateway mints: one [`Registry`] per applied config, a running
//! [`Refresher`] per provider, and the map the data plane and the probers read. A reload keeps
//! every provider (cached token, refresh schedule, running refresher) whose credential did not
//! change; providers no longer used stop.

use std::time::Duration;

use pairgate_config::Config;
use pairgate_credentials::{
    AccountCredential, CredentialMap, HttpClient, RefreshPolicy, Refresher, Registry, TokenProvider,
};

/// Bound of one token request (connect, send, read) to Entra ID, IMDS, ARM or a token endpoint.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The credentials of the applied config.
pub(crate) struct Credentials {
    registry: Registry,
    /// One per account provider (Entra providers are refreshed on demand by the ARM ones).
    refreshers: Vec<(TokenProvider, Refresher)>,
    map: CredentialMap,
}

impl Credentials {
    /// Providers for `config`'s accounts, each refreshing in the background from now on.
    /// Needs a Tokio runtime.
    pub(crate) fn start(config: &Config) -> Credentials {
        let (registry, providers) = Registry::for_config(
            config,
            HttpClient::new(TOKEN_REQUEST_TIMEOUT),
            RefreshPolicy::default(),
        );
        Credentials::assemble(config, registry, &providers, Vec::new())
    }

    /// The credentials of a reloaded `config`: unchanged ones keep their provider and its
    /// refresher, new ones start, gone ones stop (their refresher is dropped).
    pub(crate) fn reload(self, config: &Config) -> Credentials {
        let (registry, providers) = Registry::for_config_after(config, &self.registry);
        Credentials::assemble(config, registry, &providers, self.refreshers)
    }

    fn assemble(
        config: &Config,
        registry: Registry,
        providers: &[Option<TokenProvider>],
        mut previous: Vec<(TokenProvider, Refresher)>,
    ) -> Credentials {
        let mut map = CredentialMap::new();
        let mut refreshers: Vec<(TokenProvider, Refresher)> = Vec::new();
        for (account, provider) in config.accounts.iter().zip(providers) {
            let (Some(provider), Some(send_as)) =
                (provider, account.auth.as_ref().and_then(|a| a.send_as()))
            else {
                continue;
            };
            map.insert(
                pairgate_routing::account_key(account),
                AccountCredential {
                    provider: provider.clone(),
                    send_as,
                },
            );
            if refreshers.iter().any(|(p, _)| p.same_as(provider)) {
                continue;
            }
            let refresher = match previous.iter().position(|(p, _)| p.same_as(provider)) {
                Some(i) => previous.swap_remove(i).1,
                None => {
                    tracing::info!(credential = provider.label(), "account credential starting");
                    provider.start()
                }
            };
            refreshers.push((provider.clone(), refresher));
        }
        for (gone, _) in &previous {
            tracing::info!(
                credential = gone.label(),
                "account credential no longer used; stopped"
            );
        }
        Credentials {
            registry,
            refreshers,
            map,
        }
    }

    /// Each account's credential, by account key.
    pub(crate) fn map(&self) -> &CredentialMap {
        &self.map
    }
}
