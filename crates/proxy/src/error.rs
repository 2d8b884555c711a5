//! `ProxyError` (a kind and, when known, its cause) and the one function that turns each kind
//! into a response.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::{Body, BoxError};

/// Why a request failed, with its cause when one is known: the kind decides the status, the
/// `error` code and the metrics; the cause is for the access log (`error.cause`) only.
///
/// Built without allocation from a kind alone; a cause is boxed, on the failure path only.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ProxyError {
    kind: ErrorKind,
    #[source]
    source: Option<BoxError>,
}

impl ProxyError {
    /// A failure of `kind` caused by `source`.
    pub fn with_source(kind: ErrorKind, source: impl Into<BoxError>) -> ProxyError {
        ProxyError {
            kind,
            source: Some(source.into()),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The response sent to the client (see [`ErrorKind::into_response`]); the cause is not
    /// sent.
    pub fn into_response(&self) -> Response<Body> {
        self.kind.into_response()
    }
}

impl From<ErrorKind> for ProxyError {
    fn from(kind: ErrorKind) -> ProxyError {
        ProxyError { kind, source: None }
    }
}

/// Everything that can stop a request from being forwarded or answered by its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// No tenant matches the request (or the tenant header names an unknown tenant).
    #[error("unknown tenant")]
    UnknownTenant,
    /// The request cannot be forwarded as it is (no path, a CONNECT request, ...).
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// Both accounts of the tenant are down and its policy is `both_down = "reject"`.
    #[error("both accounts of the tenant are down")]
    BothDown,
    /// The upstream refused the connection or could not be reached.
    #[error("upstream unreachable")]
    UpstreamUnreachable,
    /// Connecting to the upstream took longer than `upstream.connect_timeout`.
    #[error("upstream connect timeout")]
    UpstreamConnectTimeout,
    /// The response head did not arrive within `upstream.response_header_timeout`.
    #[error("upstream response timeout")]
    UpstreamTimeout,
    /// The upstream closed or reset the connection before a response head.
    #[error("upstream reset the connection")]
    UpstreamReset,
    /// The upstream sent something that is not a valid HTTP response.
    #[error("invalid upstream response")]
    UpstreamProtocol,
    /// The account was declared unhealthy while the request waited for its response head; the
    /// request was given up on (and replayed on the other account when it may be).
    #[error("upstream declared unhealthy while the request waited")]
    UpstreamDown,
    /// The client's request body failed (it closed early or broke framing) while forwarding.
    #[error("client request body failed")]
    ClientBody,
    /// The request target is longer than `limits.max_uri_bytes`.
    #[error("request target too long")]
    UriTooLong,
    /// The body is larger than the tenant's `max_request_body_bytes`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The client stopped sending its body for longer than `limits.body_idle_timeout`.
    #[error("request body timed out")]
    RequestTimeout,
    /// The tenant already has `max_in_flight` requests in flight.
    #[error("tenant over its concurrency limit")]
    TenantOverloaded,
    /// The request's `Host` names another tenant than the TLS server name it arrived on.
    #[error("misdirected request")]
    Misdirected,
    /// The gateway is out of file descriptors and could not open an upstream connection; says
    /// nothing about the account.
    #[error("the gateway is out of file descriptors")]
    LocalResources,
    /// The account needs a token the gateway mints, and no valid one is cached (the credential
    /// is failing or expired); nothing was sent.
    #[error("no valid credential for the account")]
    CredentialUnavailable,
    /// The tenant authenticates its clients and the request carried no credential it
    /// accepts (`reason` is `None`), or one that failed a check (`reason` names it). Answered
    /// with `challenge` in `WWW-Authenticate`.
    #[error("client not authenticated")]
    Unauthenticated {
        /// The failed check (`token_expired`, `unknown_api_key`, ...); never the credential.
        reason: Option<&'static str>,
        /// The `WWW-Authenticate` value.
        challenge: &'static str,
    },
    /// The request carried a valid credential of another tenant.
    #[error("credential of another tenant")]
    WrongTenant,
    /// The tenant's JWT issuer has no signing keys loaded, so no token can be verified.
    #[error("client authentication unavailable")]
    ClientAuthUnavailable,
    /// The account answered with a status in `upstream.retry_on_status`. Only recorded as the
    /// first attempt's error of a request retried on the other account; the client gets the
    /// retry's answer, or this response when the retry fails.
    #[error("upstream answered a status in upstream.retry_on_status")]
    UpstreamRetryableStatus,
}

impl ErrorKind {
    /// The status each variant is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::UnknownTenant => StatusCode::NOT_FOUND,
            ErrorKind::BadRequest(_) => StatusCode::BAD_REQUEST,
            ErrorKind::BothDown => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::UpstreamReset => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamDown => StatusCode::BAD_GATEWAY,
            ErrorKind::ClientBody => StatusCode::BAD_REQUEST,
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::TenantOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ErrorKind::LocalResources => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::CredentialUnavailable => StatusCode::BAD_GATEWAY,
            ErrorKind::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ErrorKind::WrongTenant => StatusCode::FORBIDDEN,
            ErrorKind::ClientAuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamRetryableStatus => StatusCode::BAD_GATEWAY,
        }
    }

    /// The machine-readable `error` code in the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::UnknownTenant => "unknown_tenant",
            ErrorKind::BadRequest(_) => "bad_request",
            ErrorKind::BothDown => "both_accounts_down",
            ErrorKind::UpstreamUnreachable => "upstream_unreachable",
            ErrorKind::UpstreamConnectTimeout => "upstream_connect_timeout",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::UpstreamProtocol => "upstream_protocol_error",
            ErrorKind::UpstreamDown => "upstream_down",
            ErrorKind::ClientBody => "bad_request_body",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::TenantOverloaded => "tenant_over_capacity",
            ErrorKind::Misdirected => "misdirected_request",
            ErrorKind::LocalResources => "gateway_out_of_resources",
            ErrorKind::CredentialUnavailable => "account_credential_unavailable",
            ErrorKind::Unauthenticated { .. } => "unauthenticated",
            ErrorKind::WrongTenant => "wrong_tenant",
            ErrorKind::ClientAuthUnavailable => "client_auth_unavailable",
            ErrorKind::UpstreamRetryableStatus => "upstream_retryable_status",
        }
    }

    /// Whether the failure happened before any request byte reached the upstream, so the
    /// request can be replayed elsewhere whatever its method.
    pub fn before_send(self) -> bool {
        matches!(
            self,
            ErrorKind::UpstreamUnreachable
                | ErrorKind::UpstreamConnectTimeout
                | ErrorKind::CredentialUnavailable
        )
    }

    /// Whether this failure says something about the upstream's health.
    pub fn is_upstream_failure(self) -> bool {
        match self {
            ErrorKind::UpstreamUnreachable
            | ErrorKind::UpstreamConnectTimeout
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol => true,
            // The verdict that caused it is already in; counting it again would be an echo.
            ErrorKind::UpstreamDown
            | ErrorKind::UnknownTenant
            | ErrorKind::BadRequest(_)
            | ErrorKind::BothDown
            | ErrorKind::ClientBody
            | ErrorKind::UriTooLong
            | ErrorKind::PayloadTooLarge
            | ErrorKind::RequestTimeout
            | ErrorKind::TenantOverloaded
            | ErrorKind::Misdirected
            // The gateway's own descriptors, not the account: no evidence against it.
            | ErrorKind::LocalResources
            // The credential's health reaches the prober from its provider, not from here.
            | ErrorKind::CredentialUnavailable
            // The client's credential: nothing about the account.
            | ErrorKind::Unauthenticated { .. }
            | ErrorKind::WrongTenant
            | ErrorKind::ClientAuthUnavailable
            // The status itself reaches the observer as the response it is.
            | ErrorKind::UpstreamRetryableStatus => false,
        }
    }

    /// The response sent to the client: the status and `{"error": code}`.
    pub fn into_response(self) -> Response<Body> {
        let body = match self {
            ErrorKind::BadRequest(why) => {
                format!(r#"{{"error":"{}","detail":"{}"}}"#, self.code(), why)
            }
            // Reasons are static identifiers: nothing of the request is echoed.
            ErrorKind::Unauthenticated {
                reason: Some(reason),
                ..
            } => format!(r#"{{"error":"{}","reason":"{}"}}"#, self.code(), reason),
            _ => format!(r#"{{"error":"{}"}}"#, self.code()),
        };
        let mut resp = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        );
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            ErrorKind::BothDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ErrorKind::TenantOverloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ErrorKind::Unauthenticated { reason, challenge } => {
                // RFC 6750 §3.1: a Bearer challenge says `invalid_token` when one failed.
                let value = match reason {
                    Some(_) if challenge.starts_with("Bearer") => {
                        HeaderValue::from_str(&format!("{challenge}, error=\"invalid_token\""))
                    }
                    _ => HeaderValue::from_str(challenge),
                };
                if let Ok(value) = value {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ErrorKind::ClientAuthUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            // The request's framing or pace is in doubt: do not reuse the connection.
            ErrorKind::PayloadTooLarge | ErrorKind::RequestTimeout | ErrorKind::ClientBody => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins each variant's status and code, so a change is a conscious one.
    #[test]
    fn every_variant_has_a_pinned_status() {
        let cases = [
            (ErrorKind::UnknownTenant, 404, "unknown_tenant"),
            (ErrorKind::BadRequest("x"), 400, "bad_request"),
            (ErrorKind::BothDown, 503, "both_accounts_down"),
            (ErrorKind::UpstreamUnreachable, 502, "upstream_unreachable"),
            (
                ErrorKind::UpstreamConnectTimeout,
                504,
                "upstream_connect_timeout",
            ),
            (ErrorKind::UpstreamTimeout, 504, "upstream_timeout"),
            (ErrorKind::UpstreamReset, 502, "upstream_reset"),
            (ErrorKind::UpstreamProtocol, 502, "upstream_protocol_error"),
            (ErrorKind::UpstreamDown, 502, "upstream_down"),
            (ErrorKind::ClientBody, 400, "bad_request_body"),
            (ErrorKind::UriTooLong, 414, "uri_too_long"),
            (ErrorKind::PayloadTooLarge, 413, "payload_too_large"),
            (ErrorKind::RequestTimeout, 408, "request_timeout"),
            (ErrorKind::TenantOverloaded, 503, "tenant_over_capacity"),
            (ErrorKind::Misdirected, 421, "misdirected_request"),
            (ErrorKind::LocalResources, 503, "gateway_out_of_resources"),
            (
                ErrorKind::CredentialUnavailable,
                502,
                "account_credential_unavailable",
            ),
            (
                ErrorKind::Unauthenticated {
                    reason: None,
                    challenge: "ApiKey realm=\"pairgate\"",
                },
                401,
                "unauthenticated",
            ),
            (ErrorKind::WrongTenant, 403, "wrong_tenant"),
            (
                ErrorKind::ClientAuthUnavailable,
                503,
                "client_auth_unavailable",
            ),
            (
                ErrorKind::UpstreamRetryableStatus,
                502,
                "upstream_retryable_status",
            ),
        ];
        for (err, status, code) in cases {
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        }
        assert!(
            ErrorKind::BothDown
                .into_response()
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
    }

    /// The cause travels with the kind (for the log) and changes nothing in the answer.
    #[test]
    fn the_cause_is_kept_and_never_sent() {
        let tls = std::io::Error::new(std::io::ErrorKind::InvalidData, "invalid peer certificate");
        let err = ProxyError::with_source(ErrorKind::UpstreamUnreachable, tls);
        assert_eq!(err.kind(), ErrorKind::UpstreamUnreachable);
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("invalid peer certificate"));
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let body = futures_util::FutureExt::now_or_never(resp.into_body().collect())
            .expect("a full body is ready")
            .expect("infallible")
            .to_bytes();
        assert_eq!(&body[..], br#"{"error":"upstream_unreachable"}"#);
        let bare = ProxyError::from(ErrorKind::UnknownTenant);
        assert!(std::error::Error::source(&bare).is_none());
    }
}
