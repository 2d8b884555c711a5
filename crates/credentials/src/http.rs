//! The one HTTP client of every provider: hyper-util's pooled client over hyper-rustls (ring,
//! webpki roots) for `https://` endpoints and plain TCP for `http://` ones (IMDS, tests).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::CredentialError;

/// Largest reply read from a token endpoint.
const MAX_REPLY: usize = 64 * 1024;

/// A shared HTTP client for token requests; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A reply read whole.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl HttpClient {
    /// A client whose every request (connect, send, read) is bounded by `timeout`. TLS uses
    /// the ring provider and the webpki roots.
    pub fn new(timeout: Duration) -> HttpClient {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        // The ring provider supports the safe default versions: building cannot fail.
        .expect("ring supports TLS 1.2 and 1.3");
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        HttpClient { client, timeout }
    }

    /// Sends `req` and reads the reply, all within the timeout. Errors name `credential` and
    /// `endpoint`.
    pub(crate) async fn send(
        &self,
        req: Request<Full<Bytes>>,
        credential: &Arc<str>,
        endpoint: &'static str,
    ) -> Result<Reply, CredentialError> {
        let exchange = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| CredentialError::Transport {
                    credential: Arc::clone(credential),
                    endpoint,
                    source: Box::new(e),
                })?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, MAX_REPLY)
                .collect()
                .await
                .map_err(|e| CredentialError::Transport {
                    credential: Arc::clone(credential),
                    endpoint,
                    source: e,
                })?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CredentialError::Timeout {
                credential: Arc::clone(credential),
                endpoint,
                timeout: self.timeout,
            })?
    }
}

/// `Retry-After` as delay-seconds (RFC 9110 §10.2.3); an HTTP-date or garbage is `None`.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, k);
        out.push('=');
        encode_into(&mut out, v);
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_and_retry_after() {
        assert_eq!(
            form(&[
                ("scope", "https://management.azure.com/.default"),
                ("a b", "c&d=é")
            ]),
            "scope=https%3A%2F%2Fmanagement.azure.com%2F.default&a%20b=c%26d%3D%C3%A9"
        );
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "7".parse().expect("valid"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            http::header::RETRY_AFTER,
            "Fri, 31 Dec 1999 23:59:59 GMT".parse().expect("valid"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
