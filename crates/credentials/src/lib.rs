//! `pairgate-credentials`: the account credentials the gateway owns. A Video Indexer access token
//! belongs to one account and lives at most an hour, so the gateway mints each account's token
//! itself, caches it, refreshes it before it expires and hands the hot path the right one.
//!
//! A [`Registry`] turns each account's validated `auth` ([`pairgate_config::AccountAuth`]) into a
//! [`TokenProvider`], one per distinct credential (accounts and tenants with the same credential
//! share it): ARM `generateAccessToken` with an Entra ID token (managed identity, client secret
//! or workload identity; the Entra token is itself a cached, refreshed provider), the classic
//! API-key endpoint, or a generic OAuth 2.0 client-credentials endpoint. `static` credentials
//! (fixed headers) need no provider.
//!
//! Invariants:
//! - the hot path, [`TokenProvider::current`], is one `ArcSwap` load and a clock read: no lock,
//!   no allocation, never a network call;
//! - at most one fetch per provider is in flight, however many callers wait, and none is sent
//!   before a backoff or an endpoint's `Retry-After` has passed;
//! - the last good token is served until it actually expires, whatever refreshes do meanwhile;
//! - token values and secrets never appear in `Debug`, `Display`, errors or logs ([`Token`]
//!   prints `***`; reply texts in [`CredentialError`] are scrubbed of the credential's secrets).
//!
//! Expiry is read from the token's JWT `exp` claim **without verifying its signature**: the
//! gateway holds none of the issuers' keys, and it needs the claim only to schedule refreshes
//! (the account itself rejects a bad token).
//!
//! Non-goals: sending tokens (the data plane's job, with [`pairgate_config::SendAs`]), health
//! verdicts (the health crate reads [`CredentialState::health_cause`]), exporting metrics (the
//! admin crate reads [`TokenProvider::seconds_left`] and [`TokenProvider::refreshes`]),
//! certificate credentials, and Azure CLI or developer credentials.

mod error;
mod http;
mod provider;
mod registry;
mod source;
mod token;
mod wire;

#[cfg(test)]
mod tests;

pub use error::{BoxError, CredentialError};
pub use http::HttpClient;
pub use provider::{
    CredentialState, RefreshPolicy, RefreshResult, Refresher, Rejection, TokenProvider,
};
pub use registry::{ARM_API_VERSION, IMDS_API_VERSION, Registry};
pub use source::{ARM_RESOURCE, ARM_SCOPE, FEDERATED_TOKEN_FILE_ENV};
pub use token::{QUERY_PARAM, Token, jwt_claims};
pub use wire::{AccountCredential, CredentialMap, query_with_token, set_authorization};
