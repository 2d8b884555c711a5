//! [`CredentialError`]: what went wrong getting a token, naming the credential and never
//! carrying a secret (reply texts are scrubbed of the credential's secrets and cut short).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Boxed lower-level cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a token could not be obtained. Every variant names the credential (`credential`: its
/// label, e.g. `azure-video-indexer /subscriptions/…/accounts/x (client-secret app 1234)`) and
/// the endpoint it talked to; none holds a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The endpoint refused the credential or the request (4xx other than 408/429).
    #[error("credential {credential}: {endpoint} refused it: HTTP {status} {code}: {detail}")]
    Rejected {
        /// The credential's label.
        credential: Arc<str>,
        /// Which endpoint (`entra`, `imds`, `arm`, `classic`, `oauth2`).
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// The endpoint's error code (`invalid_client`, `AuthorizationFailed`, ...), or `-`.
        code: String,
        /// The endpoint's description, scrubbed and shortened.
        detail: String,
    },
    /// HTTP 429: the endpoint asked to wait.
    #[error(
        "credential {credential}: {endpoint} is throttling (HTTP 429), retry after {retry_after:?}"
    )]
    Throttled {
        /// The credential's label.
        credential: Arc<str>,
        /// Which endpoint.
        endpoint: &'static str,
        /// The `Retry-After` it sent (or the backoff when it sent none).
        retry_after: Duration,
    },
    /// A server-side failure (5xx, 408).
    #[error("credential {credential}: {endpoint} failed: HTTP {status}")]
    Unavailable {
        /// The credential's label.
        credential: Arc<str>,
        /// Which endpoint.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
    },
    /// No answer: connect or transfer failure.
    #[error("credential {credential}: {endpoint} could not be reached")]
    Transport {
        /// The credential's label.
        credential: Arc<str>,
        /// Which endpoint.
        endpoint: &'static str,
        /// The connection error.
        #[source]
        source: BoxError,
    },
    /// No answer in time.
    #[error("credential {credential}: {endpoint} did not answer within {timeout:?}")]
    Timeout {
        /// The credential's label.
        credential: Arc<str>,
        /// Which endpoint.
        endpoint: &'static str,
        /// The bound.
        timeout: Duration,
    },
    /// A 2xx answer without a usable token.
    #[error("credential {credential}: {endpoint} answered without a usable token: {what}")]
    Malformed {
        /// The credential's label.
        credential: Arc<str>,
        /// Which endpoint.
        endpoint: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// The workload identity's federated token file could not be read.
    #[error("credential {credential}: cannot read the federated token file {}", path.display())]
    TokenFile {
        /// The credential's label.
        credential: Arc<str>,
        /// The file (empty when `AZURE_FEDERATED_TOKEN_FILE` is unset).
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The Entra ID token needed to call ARM could not be obtained.
    #[error("credential {credential}: no Entra ID token to call ARM with")]
    Entra {
        /// The credential's label.
        credential: Arc<str>,
        /// The Entra provider's error.
        #[source]
        source: Arc<CredentialError>,
    },
    /// No token yet and no attempt finished (the first fetch is still running elsewhere).
    #[error("credential {credential}: no token yet")]
    Pending {
        /// The credential's label.
        credential: Arc<str>,
    },
}

impl CredentialError {
    /// The `Retry-After` of a throttle (also when the throttled endpoint was Entra ID behind
    /// an ARM credential).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CredentialError::Throttled { retry_after, .. } => Some(*retry_after),
            CredentialError::Entra { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// Whether this error is an answer to a rejected credential (wrong secret, no role, unknown
    /// account): retrying alone will not help until the configuration changes.
    pub fn is_rejection(&self) -> bool {
        match self {
            CredentialError::Rejected { .. } => true,
            CredentialError::Entra { source, .. } => source.is_rejection(),
            _ => false,
        }
    }
}

/// The most bytes of a reply's text kept in an error.
const MAX_DETAIL: usize = 300;

/// Makes reply text fit for an error: only its first line (Entra appends trace ids on later
/// lines), every occurrence of a secret replaced by `***`, cut to [`MAX_DETAIL`] bytes.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let first = text.lines().next().unwrap_or("").trim();
    let mut out = first.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "***");
    }
    if out.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_keeps_the_first_line_without_secrets() {
        let text = "AADSTS7000215: bad secret hunter22 given\r\nTrace ID: 1";
        assert_eq!(
            scrub(text, &["hunter22"]),
            "AADSTS7000215: bad secret *** given"
        );
        let long = "x".repeat(1000);
        assert!(scrub(&long, &[]).len() <= MAX_DETAIL + '…'.len_utf8());
    }

    #[test]
    fn rejection_is_seen_through_entra() {
        let inner = Arc::new(CredentialError::Rejected {
            credential: "e".into(),
            endpoint: "entra",
            status: 401,
            code: "invalid_client".into(),
            detail: String::new(),
        });
        let outer = CredentialError::Entra {
            credential: "a".into(),
            source: inner,
        };
        assert!(outer.is_rejection());
        assert_eq!(outer.retry_after(), None);
        let throttled = CredentialError::Entra {
            credential: "a".into(),
            source: Arc::new(CredentialError::Throttled {
                credential: "e".into(),
                endpoint: "entra",
                retry_after: Duration::from_secs(3),
            }),
        };
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
        assert!(std::error::Error::source(&outer).is_some());
    }
}
