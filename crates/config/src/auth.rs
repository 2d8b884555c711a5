//! Validated account credentials (`auth = { type = ..., ... }` in an `[[account]]`) and the
//! `[azure]` endpoints they use. `pairgate-credentials` turns these into token providers.

use std::fmt;
use std::path::PathBuf;

use crate::Secret;

/// `[azure]`: where the Azure credential kinds send their requests. Each is a base URL without a
/// trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureEndpoints {
    /// Azure Resource Manager. Default `https://management.azure.com`.
    pub arm_endpoint: String,
    /// Entra ID (token endpoint `{login}/{tenant}/oauth2/v2.0/token`). Default
    /// `https://login.microsoftonline.com`.
    pub login_endpoint: String,
    /// Instance Metadata Service (managed identity). Default `http://169.254.169.254`.
    pub imds_endpoint: String,
    /// Video Indexer API (classic tokens). Default `https://api.videoindexer.ai`.
    pub api_endpoint: String,
}

impl Default for AzureEndpoints {
    fn default() -> Self {
        Self {
            arm_endpoint: "https://management.azure.com".to_owned(),
            login_endpoint: "https://login.microsoftonline.com".to_owned(),
            imds_endpoint: "http://169.254.169.254".to_owned(),
            api_endpoint: "https://api.videoindexer.ai".to_owned(),
        }
    }
}

/// An account's `auth`: how the gateway obtains the credential it sends to that account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountAuth {
    /// `type = "static"`: only the account's `headers`; nothing to mint.
    Static,
    /// `type = "azure-video-indexer"`: ARM `generateAccessToken` for an ARM-based account.
    AzureVideoIndexer(ArmAuth),
    /// `type = "video-indexer-classic"`: the API-key `AccessToken` endpoint.
    VideoIndexerClassic(ClassicAuth),
    /// `type = "oauth2-client-credentials"`: a generic OAuth 2.0 token endpoint.
    OAuth2ClientCredentials(OAuth2Auth),
}

impl AccountAuth {
    /// Where this credential's token goes; `None` for `static` (nothing minted).
    pub fn send_as(&self) -> Option<SendAs> {
        match self {
            AccountAuth::Static => None,
            AccountAuth::AzureVideoIndexer(a) => Some(a.send_as),
            AccountAuth::VideoIndexerClassic(c) => Some(c.send_as),
            AccountAuth::OAuth2ClientCredentials(o) => Some(o.send_as),
        }
    }
}

/// Where the token goes on each request to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAs {
    /// Query parameter `accessToken` (Video Indexer's documented form).
    Query,
    /// `Authorization: Bearer <token>`.
    Header,
}

/// `permission` of a Video Indexer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `"Contributor"` (the default).
    Contributor,
    /// `"Reader"`.
    Reader,
}

impl Permission {
    /// The value ARM expects in `permissionType`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Contributor => "Contributor",
            Permission::Reader => "Reader",
        }
    }
}

/// `scope` of a Video Indexer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// `"Account"` (the default).
    Account,
    /// `"Video"`.
    Video,
    /// `"Project"`.
    Project,
}

impl TokenScope {
    /// The value ARM expects in `scope`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Account => "Account",
            TokenScope::Video => "Video",
            TokenScope::Project => "Project",
        }
    }
}

/// An ARM resource id of a Video Indexer account:
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.VideoIndexer/accounts/{name}`.
/// Equality ignores ASCII case, as ARM's does.
#[derive(Debug, Clone)]
pub struct ArmResourceId {
    /// The id as written (its case is kept for the request path).
    pub id: String,
    /// `{sub}`.
    pub subscription: String,
    /// `{rg}`.
    pub resource_group: String,
    /// `{name}`.
    pub name: String,
}

impl PartialEq for ArmResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.id.eq_ignore_ascii_case(&other.id)
    }
}

impl Eq for ArmResourceId {}

impl fmt::Display for ArmResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl ArmResourceId {
    /// Parses and checks the shape; the error says what is wrong (never echoing more than the
    /// id itself, which is not secret).
    pub fn parse(raw: &str) -> Result<Self, String> {
        const SHAPE: &str = "expected /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.VideoIndexer/accounts/{name}";
        let parts: Vec<&str> = raw.strip_prefix('/').unwrap_or("").split('/').collect();
        let fixed = [
            (0, "subscriptions"),
            (2, "resourceGroups"),
            (4, "providers"),
            (5, "Microsoft.VideoIndexer"),
            (6, "accounts"),
        ];
        let shaped = parts.len() == 8
            && fixed
                .iter()
                .all(|&(i, word)| parts[i].eq_ignore_ascii_case(word))
            && [1, 3, 7].iter().all(|&i| {
                !parts[i].is_empty()
                    && parts[i]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.()".contains(&b))
            });
        if !shaped {
            return Err(format!(
                "{raw:?} is not a Video Indexer account resource id; {SHAPE}"
            ));
        }
        Ok(Self {
            id: raw.to_owned(),
            subscription: parts[1].to_owned(),
            resource_group: parts[3].to_owned(),
            name: parts[7].to_owned(),
        })
    }
}

/// How the gateway proves itself to Entra ID for ARM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntraCredential {
    /// `credential = "managed-identity"`: IMDS; `client_id` picks a user-assigned identity.
    ManagedIdentity {
        /// A user-assigned identity's client id; `None` for the system-assigned one.
        client_id: Option<String>,
    },
    /// `credential = "client-secret"`: an app registration's secret.
    ClientSecret {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
    },
    /// `credential = "workload-identity"`: a federated credential; the assertion is read from
    /// `token_file` at each token request (the platform rotates it).
    WorkloadIdentity {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The projected token file; `None` means `AZURE_FEDERATED_TOKEN_FILE` at run time.
        token_file: Option<PathBuf>,
    },
}

impl EntraCredential {
    /// `managed-identity`, `client-secret` or `workload-identity`.
    pub fn mode(&self) -> &'static str {
        match self {
            EntraCredential::ManagedIdentity { .. } => "managed-identity",
            EntraCredential::ClientSecret { .. } => "client-secret",
            EntraCredential::WorkloadIdentity { .. } => "workload-identity",
        }
    }
}

/// `type = "azure-video-indexer"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmAuth {
    /// The account's ARM id.
    pub resource_id: ArmResourceId,
    /// Default `Contributor`.
    pub permission: Permission,
    /// Default `Account`.
    pub scope: TokenScope,
    /// The Entra ID credential used to call ARM.
    pub credential: EntraCredential,
    /// Default `Query`.
    pub send_as: SendAs,
}

/// `type = "video-indexer-classic"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicAuth {
    /// The API Management subscription key (`Ocp-Apim-Subscription-Key`).
    pub api_key: Secret,
    /// The account's location, e.g. `trial` or `eastus`.
    pub location: String,
    /// The account id (a GUID).
    pub account_id: String,
    /// Ask for an editing token (`allowEdit=true`). Default true.
    pub allow_edit: bool,
    /// Default `Query`.
    pub send_as: SendAs,
}

/// `type = "oauth2-client-credentials"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Auth {
    /// `http(s)://` token endpoint.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Requested scope, if any.
    pub scope: Option<String>,
    /// Default `Header`.
    pub send_as: SendAs,
}
