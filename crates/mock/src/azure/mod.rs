//! [`MockAzure`]: one real HTTP server on 127.0.0.1 playing the Azure endpoints that mint and
//! check Video Indexer credentials, for the credential providers' tests and the demo:
//!
//! | path | plays | see |
//! |---|---|---|
//! | `POST /{tenant}/oauth2/v2.0/token` | Entra ID token endpoint (client credentials: secret or federated assertion) | [`Endpoint::Entra`] |
//! | `GET /metadata/identity/oauth2/token` | IMDS managed identity | [`Endpoint::Imds`] |
//! | `POST /subscriptions/…/providers/Microsoft.VideoIndexer/accounts/{name}/generateAccessToken` | ARM | [`Endpoint::Arm`] |
//! | `GET /auth/{location}/Accounts/{accountId}/AccessToken` | classic (API key) token | [`Endpoint::Classic`] |
//! | `/{location}/Accounts/{accountId}/…` (any method) | a Video Indexer account | [`Endpoint::VideoIndexer`] |
//!
//! Point every endpoint setting (`arm_endpoint`, `login_endpoint`, `imds_endpoint`,
//! `api_endpoint`) at [`MockAzure::url`]. Each behaviour's comment names the documentation it
//! follows. Tokens are JWTs with `iat`, `nbf`, `exp` and the claims listed per endpoint, signed
//! with a per-instance key only this fake checks (see `jwt.rs`); lifetimes are settable
//! ([`MockAzure::set_token_lifetime`]) so tests can watch refreshes in seconds.

mod jwt;
mod serve;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::state::lock;

pub use jwt::unix_now;

/// Video Indexer's `ErrorType` for a token of another account (and, by the same page, any token
/// not authorized for the account). "Redact faces by using Azure AI Video Indexer API", error
/// codes, 401: `{"ErrorType": "USER_NOT_ALLOWED", "Message": "Access token is not authorized to
/// access account 'SampleAccountId'."}` (learn.microsoft.com/azure/azure-video-indexer/
/// face-redaction-with-api); the same shape on api-portal.videoindexer.ai, Get-Account-Access-Token.
pub const VI_USER_NOT_ALLOWED: &str = "USER_NOT_ALLOWED";

/// Video Indexer's `ErrorType` for a request without any token, as users report it
/// (a Q&A about calling the API from Logic Apps: 401 `USER_NOT_SIGNED_IN`).
pub const VI_USER_NOT_SIGNED_IN: &str = "USER_NOT_SIGNED_IN";

/// The `ErrorType` this fake answers for an expired token. The documentation available to us
/// lists only `USER_NOT_ALLOWED` for 401 and does not name the expired case, so this value is
/// the fake's own: clients must treat any 401 as "this token is not (or no longer) good for this
/// account", never match on this string.
pub const VI_TOKEN_EXPIRED: &str = "ACCESS_TOKEN_EXPIRED";

/// The endpoints the fake plays, for throttles, failures and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Entra ID `/{tenant}/oauth2/v2.0/token`.
    Entra,
    /// IMDS `/metadata/identity/oauth2/token`.
    Imds,
    /// ARM `generateAccessToken`.
    Arm,
    /// Classic `/auth/{location}/Accounts/{accountId}/AccessToken`.
    Classic,
    /// Video Indexer account requests.
    VideoIndexer,
}

/// One request a fake Video Indexer account received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViRequest {
    /// `{location}` from the path.
    pub location: String,
    /// `{accountId}` from the path.
    pub account_id: String,
    /// The token it carried (query `accessToken`, else `Authorization: Bearer`), if any.
    pub token: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// How an Entra application proves itself.
#[derive(Clone)]
enum AppCredential {
    Secret(String),
    Assertion(String),
}

/// A throttle or failure on one endpoint.
#[derive(Clone, Copy, Debug)]
struct Fault {
    /// Status to answer (429 for throttles).
    status: u16,
    /// `Retry-After` seconds, for 429.
    retry_after: u64,
    /// Calls still to fault; `None` means "until `until`" or "until cleared".
    remaining: Option<u32>,
    until: Option<Instant>,
}

/// A Video Indexer account known to ARM and to the data plane.
#[derive(Clone, Debug)]
struct ViAccount {
    /// Lower-cased ARM resource id (ARM ids compare case-insensitively).
    resource_id: String,
    location: String,
    account_id: String,
    /// Principals (Entra `appid`/`oid`) allowed to call generateAccessToken; `None` = any.
    allowed: Option<HashSet<String>>,
}

struct State {
    token_lifetime: Duration,
    entra_lifetime: Duration,
    apps: HashMap<(String, String), AppCredential>,
    system_identity: bool,
    user_identities: HashSet<String>,
    accounts: Vec<ViAccount>,
    classic_keys: HashMap<(String, String), String>,
    faults: HashMap<Endpoint, Fault>,
    calls: HashMap<(Endpoint, String), u64>,
    vi_requests: VecDeque<ViRequest>,
}

/// The most Video Indexer requests kept for [`MockAzure::vi_requests`].
const MAX_VI_REQUESTS: usize = 10_000;

pub(crate) struct Shared {
    signer: jwt::Signer,
    state: Mutex<State>,
}

/// A running set of Azure fakes; see the [module documentation](self). Cheap to clone;
/// dropping the last clone stops the server and every connection.
#[derive(Clone)]
pub struct MockAzure {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The accept task owns the connection set; aborting it drops (and aborts) them all.
        self.accept.abort();
    }
}

/// Another listener of the same [`MockAzure`] (same accounts, keys, counters and faults), for
/// tests that need Video Indexer accounts on separate sockets: one regional endpoint per
/// account, which a test can kill on its own ([`AzureListener::kill`], or drop it) while the
/// token endpoints keep answering.
pub struct AzureListener {
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl AzureListener {
    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the listener and every connection on it at once (a region that died); the port
    /// then refuses connections.
    pub fn kill(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

impl Drop for AzureListener {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Configures a [`MockAzure`] before it starts.
pub struct MockAzureBuilder {
    state: State,
}

impl MockAzure {
    /// A builder with no identities or accounts, token lifetimes of one hour (the documented
    /// Video Indexer token lifetime) and a system-assigned managed identity.
    pub fn builder() -> MockAzureBuilder {
        MockAzureBuilder {
            state: State {
                token_lifetime: Duration::from_secs(3600),
                entra_lifetime: Duration::from_secs(3600),
                apps: HashMap::new(),
                system_identity: true,
                user_identities: HashSet::new(),
                accounts: Vec::new(),
                classic_keys: HashMap::new(),
                faults: HashMap::new(),
                calls: HashMap::new(),
                vi_requests: VecDeque::new(),
            },
        }
    }

    /// `http://127.0.0.1:PORT`, the base of every endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// One more listener on an ephemeral port of 127.0.0.1 serving the same fakes (see
    /// [`AzureListener`]).
    pub async fn listener(&self) -> io::Result<AzureListener> {
        self.listener_at(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
    }

    /// [`listener`](Self::listener) on `addr`, e.g. the address of a killed one, to bring it
    /// back.
    pub async fn listener_at(&self, addr: SocketAddr) -> io::Result<AzureListener> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(serve::accept_loop(listener, Arc::clone(&self.inner.shared)));
        Ok(AzureListener {
            addr,
            accept: Some(accept),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Lifetime of Video Indexer tokens minted from now on (ARM and classic).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        lock(&self.inner.shared.state).token_lifetime = lifetime;
    }

    /// Lifetime of Entra ID and IMDS tokens minted from now on.
    pub fn set_entra_token_lifetime(&self, lifetime: Duration) {
        lock(&self.inner.shared.state).entra_lifetime = lifetime;
    }

    /// Answers the next `calls` requests to `endpoint` with 429 and `Retry-After: retry_after`
    /// (whole seconds, rounded up).
    pub fn throttle(&self, endpoint: Endpoint, calls: u32, retry_after: Duration) {
        self.set_fault(endpoint, 429, retry_after, Some(calls), None);
    }

    /// Answers every request to `endpoint` with 429 and `Retry-After` for `window`.
    pub fn throttle_for(&self, endpoint: Endpoint, window: Duration, retry_after: Duration) {
        let until = Instant::now() + window;
        self.set_fault(endpoint, 429, retry_after, None, Some(until));
    }

    /// Answers every request to `endpoint` with `status` (e.g. 500) until [`clear_faults`]
    /// (`Self::clear_faults`).
    pub fn fail(&self, endpoint: Endpoint, status: u16) {
        self.set_fault(endpoint, status, Duration::ZERO, None, None);
    }

    /// Removes every throttle and failure.
    pub fn clear_faults(&self) {
        lock(&self.inner.shared.state).faults.clear();
    }

    fn set_fault(
        &self,
        endpoint: Endpoint,
        status: u16,
        retry_after: Duration,
        remaining: Option<u32>,
        until: Option<Instant>,
    ) {
        let retry_after = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        lock(&self.inner.shared.state).faults.insert(
            endpoint,
            Fault {
                status,
                retry_after,
                remaining,
                until,
            },
        );
    }

    /// Requests `endpoint` received (faulted ones included).
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        lock(&self.inner.shared.state)
            .calls
            .iter()
            .filter(|((e, _), _)| *e == endpoint)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests `endpoint` received for `key`: the client id (Entra; `system` or the client id
    /// for IMDS), the lower-cased resource id (ARM), the account id (classic, Video Indexer).
    pub fn calls_for(&self, endpoint: Endpoint, key: &str) -> u64 {
        lock(&self.inner.shared.state)
            .calls
            .get(&(endpoint, key.to_ascii_lowercase()))
            .copied()
            .unwrap_or(0)
    }

    /// Every Video Indexer request so far (the latest 10 000), oldest first.
    pub fn vi_requests(&self) -> Vec<ViRequest> {
        lock(&self.inner.shared.state)
            .vi_requests
            .iter()
            .cloned()
            .collect()
    }

    /// The claims of a token this fake minted (signature checked, expiry not), for tests.
    pub fn claims(&self, token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
        self.inner.shared.signer.verify(token)
    }
}

impl MockAzureBuilder {
    /// An Entra application in `tenant` that proves itself with `secret`.
    pub fn client_secret(mut self, tenant: &str, client_id: &str, secret: &str) -> Self {
        self.state.apps.insert(
            (tenant.to_owned(), client_id.to_ascii_lowercase()),
            AppCredential::Secret(secret.to_owned()),
        );
        self
    }

    /// An Entra application in `tenant` with a federated credential: it proves itself with
    /// exactly `assertion` (what a workload's projected token file holds).
    pub fn federated(mut self, tenant: &str, client_id: &str, assertion: &str) -> Self {
        self.state.apps.insert(
            (tenant.to_owned(), client_id.to_ascii_lowercase()),
            AppCredential::Assertion(assertion.to_owned()),
        );
        self
    }

    /// Whether IMDS has a system-assigned identity (default yes).
    pub fn system_identity(mut self, enabled: bool) -> Self {
        self.state.system_identity = enabled;
        self
    }

    /// A user-assigned identity IMDS serves by `client_id`.
    pub fn user_identity(mut self, client_id: &str) -> Self {
        self.state
            .user_identities
            .insert(client_id.to_ascii_lowercase());
        self
    }

    /// An ARM-based Video Indexer account: `resource_id` is
    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.VideoIndexer/accounts/{name}`;
    /// any principal may generate its tokens.
    pub fn account(mut self, resource_id: &str, location: &str, account_id: &str) -> Self {
        self.state.accounts.push(ViAccount {
            resource_id: resource_id.to_ascii_lowercase(),
            location: location.to_owned(),
            account_id: account_id.to_owned(),
            allowed: None,
        });
        self
    }

    /// Limits who may generate tokens for the account at `resource_id` (added before) to these
    /// principals (client ids, or `system` for the system-assigned identity); others get 403.
    pub fn allow_only(mut self, resource_id: &str, principals: &[&str]) -> Self {
        let id = resource_id.to_ascii_lowercase();
        for account in self
            .state
            .accounts
            .iter_mut()
            .filter(|a| a.resource_id == id)
        {
            account.allowed = Some(principals.iter().map(|p| p.to_ascii_lowercase()).collect());
        }
        self
    }

    /// A classic account whose tokens are minted for API key `api_key`.
    pub fn classic_account(mut self, location: &str, account_id: &str, api_key: &str) -> Self {
        self.state.classic_keys.insert(
            (
                location.to_ascii_lowercase(),
                account_id.to_ascii_lowercase(),
            ),
            api_key.to_owned(),
        );
        self.state.accounts.push(ViAccount {
            resource_id: String::new(),
            location: location.to_owned(),
            account_id: account_id.to_owned(),
            allowed: None,
        });
        self
    }

    /// Video Indexer token lifetime (default one hour).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.state.token_lifetime = lifetime;
        self
    }

    /// Entra ID and IMDS token lifetime (default one hour).
    pub fn entra_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.state.entra_lifetime = lifetime;
        self
    }

    /// Starts the fakes on an ephemeral port of 127.0.0.1.
    pub async fn start(self) -> io::Result<MockAzure> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        // A key no other instance shares, so one fake never accepts another's tokens.
        let key = crate::fnv64(format!("{addr}{:?}", Instant::now()).as_bytes())
            ^ u64::from(std::process::id());
        let shared = Arc::new(Shared {
            signer: jwt::Signer::new(key),
            state: Mutex::new(self.state),
        });
        let accept = tokio::spawn(serve::accept_loop(listener, Arc::clone(&shared)));
        Ok(MockAzure {
            inner: Arc::new(Inner {
                shared,
                addr,
                accept,
            }),
        })
    }
}

impl Shared {
    /// Counts a call and returns the fault to answer with, if one applies.
    fn enter(&self, endpoint: Endpoint, key: &str) -> Option<Fault> {
        let mut state = lock(&self.state);
        *state
            .calls
            .entry((endpoint, key.to_ascii_lowercase()))
            .or_insert(0) += 1;
        let fault = state.faults.get_mut(&endpoint)?;
        if fault.until.is_some_and(|until| Instant::now() >= until) {
            state.faults.remove(&endpoint);
            return None;
        }
        match &mut fault.remaining {
            Some(0) => {
                state.faults.remove(&endpoint);
                None
            }
            Some(n) => {
                *n -= 1;
                Some(*fault)
            }
            None => Some(*fault),
        }
    }
}
