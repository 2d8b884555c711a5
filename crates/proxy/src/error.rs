//! `ProxyError` and the one function that turns each variant into a response.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::Body;

/// Everything that can stop a request from being forwarded or answered by its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
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
}

impl ProxyError {
    /// The status each variant is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::UnknownTenant => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::BothDown => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamReset => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamDown => StatusCode::BAD_GATEWAY,
            ProxyError::ClientBody => StatusCode::BAD_REQUEST,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::TenantOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::LocalResources => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable `error` code in the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            ProxyError::UnknownTenant => "unknown_tenant",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::BothDown => "both_accounts_down",
            ProxyError::UpstreamUnreachable => "upstream_unreachable",
            ProxyError::UpstreamConnectTimeout => "upstream_connect_timeout",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamReset => "upstream_reset",
            ProxyError::UpstreamProtocol => "upstream_protocol_error",
            ProxyError::UpstreamDown => "upstream_down",
            ProxyError::ClientBody => "bad_request_body",
            ProxyError::UriTooLong => "uri_too_long",
            ProxyError::PayloadTooLarge => "payload_too_large",
            ProxyError::RequestTimeout => "request_timeout",
            ProxyError::TenantOverloaded => "tenant_over_capacity",
            ProxyError::Misdirected => "misdirected_request",
            ProxyError::LocalResources => "gateway_out_of_resources",
        }
    }

    /// Whether the failure happened before any request byte reached the upstream, so the
    /// request can be replayed elsewhere whatever its method.
    pub fn before_send(self) -> bool {
        matches!(
            self,
            ProxyError::UpstreamUnreachable | ProxyError::UpstreamConnectTimeout
        )
    }

    /// Whether this failure says something about the upstream's health.
    pub fn is_upstream_failure(self) -> bool {
        match self {
            ProxyError::UpstreamUnreachable
            | ProxyError::UpstreamConnectTimeout
            | ProxyError::UpstreamTimeout
            | ProxyError::UpstreamReset
            | ProxyError::UpstreamProtocol => true,
            // The verdict that caused it is already in; counting it again would be an echo.
            ProxyError::UpstreamDown
            | ProxyError::UnknownTenant
            | ProxyError::BadRequest(_)
            | ProxyError::BothDown
            | ProxyError::ClientBody
            | ProxyError::UriTooLong
            | ProxyError::PayloadTooLarge
            | ProxyError::RequestTimeout
            | ProxyError::TenantOverloaded
            | ProxyError::Misdirected
            // The gateway's own descriptors, not the account: no evidence against it.
            | ProxyError::LocalResources => false,
        }
    }

    /// The response sent to the client: the status and `{"error": code}`.
    pub fn into_response(self) -> Response<Body> {
        let body = match self {
            ProxyError::BadRequest(why) => {
                format!(r#"{{"error":"{}","detail":"{}"}}"#, self.code(), why)
            }
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
            ProxyError::BothDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ProxyError::TenantOverloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The request's framing or pace is in doubt: do not reuse the connection.
            ProxyError::PayloadTooLarge | ProxyError::RequestTimeout | ProxyError::ClientBody => {
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
            (ProxyError::UnknownTenant, 404, "unknown_tenant"),
            (ProxyError::BadRequest("x"), 400, "bad_request"),
            (ProxyError::BothDown, 503, "both_accounts_down"),
            (ProxyError::UpstreamUnreachable, 502, "upstream_unreachable"),
            (
                ProxyError::UpstreamConnectTimeout,
                504,
                "upstream_connect_timeout",
            ),
            (ProxyError::UpstreamTimeout, 504, "upstream_timeout"),
            (ProxyError::UpstreamReset, 502, "upstream_reset"),
            (ProxyError::UpstreamProtocol, 502, "upstream_protocol_error"),
            (ProxyError::UpstreamDown, 502, "upstream_down"),
            (ProxyError::ClientBody, 400, "bad_request_body"),
            (ProxyError::UriTooLong, 414, "uri_too_long"),
            (ProxyError::PayloadTooLarge, 413, "payload_too_large"),
            (ProxyError::RequestTimeout, 408, "request_timeout"),
            (ProxyError::TenantOverloaded, 503, "tenant_over_capacity"),
            (ProxyError::Misdirected, 421, "misdirected_request"),
            (ProxyError::LocalResources, 503, "gateway_out_of_resources"),
        ];
        for (err, status, code) in cases {
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        }
        assert!(
            ProxyError::BothDown
                .into_response()
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
    }
}
