//! Where tokens come from: one request per kind, its reply read and classified.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::Full;
use pairgate_config::Secret;
use serde_json::Value;

use crate::error::{CredentialError, scrub};
use crate::http::{HttpClient, Reply, form, retry_after};
use crate::provider::TokenProvider;
use crate::token::Hints;

/// The scope of an Entra ID token for Azure Resource Manager (client credentials, v2 endpoint).
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// The resource of an IMDS token for Azure Resource Manager (v1 form, with the trailing `/`).
pub const ARM_RESOURCE: &str = "https://management.azure.com/";
/// `client_assertion_type` of a federated credential (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The environment variable naming the projected token file when `token_file` is unset
/// (set by AKS workload identity).
pub const FEDERATED_TOKEN_FILE_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";

/// A token as an endpoint handed it out, before it is scheduled.
pub(crate) struct Fetched {
    pub(crate) value: String,
    pub(crate) hints: Hints,
}

/// What a provider fetches from.
pub(crate) enum Source {
    /// Entra ID: client secret (`form` holds the whole body, secret included).
    EntraSecret { url: String, form: Secret },
    /// Entra ID: federated assertion read from a file at each request.
    EntraWorkload {
        url: String,
        client_id: String,
        scope: String,
        token_file: Option<PathBuf>,
    },
    /// IMDS managed identity (`url` holds the whole query).
    Imds { url: String },
    /// ARM `generateAccessToken`, with a bearer from `entra`.
    Arm {
        entra: TokenProvider,
        url: String,
        body: Bytes,
    },
    /// Classic `AccessToken` with an API key.
    Classic { url: String, api_key: Secret },
    /// Generic OAuth 2.0 client credentials (`form` holds the whole body, secret included).
    OAuth2 {
        url: String,
        form: Secret,
        client_secret: Secret,
    },
}

impl Source {
    /// The endpoint's short name, for errors and logs.
    fn endpoint(&self) -> &'static str {
        match self {
            Source::EntraSecret { .. } | Source::EntraWorkload { .. } => "entra",
            Source::Imds { .. } => "imds",
            Source::Arm { .. } => "arm",
            Source::Classic { .. } => "classic",
            Source::OAuth2 { .. } => "oauth2",
        }
    }

    /// Fetches one token.
    pub(crate) async fn fetch(
        &self,
        http: &HttpClient,
        credential: &Arc<str>,
    ) -> Result<Fetched, CredentialError> {
        let endpoint = self.endpoint();
        let build = |method: Method, url: &str, content_type: Option<&'static str>, body: Bytes| {
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = method;
            *req.uri_mut() = url.parse().map_err(|_| CredentialError::Malformed {
                credential: Arc::clone(credential),
                endpoint,
                what: "the endpoint URL is not valid",
            })?;
            if let Some(ct) = content_type {
                req.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            Ok::<_, CredentialError>(req)
        };
        const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
        match self {
            Source::EntraSecret { url, form } => {
                let req = build(
                    Method::POST,
                    url,
                    FORM,
                    Bytes::from(form.expose().to_owned()),
                )?;
                let reply = http.send(req, credential, endpoint).await?;
                let json = classify(&reply, credential, endpoint, &[form.expose()])?;
                access_token(&json, "access_token", credential, endpoint)
            }
            Source::EntraWorkload {
                url,
                client_id,
                scope,
                token_file,
            } => {
                let assertion = read_assertion(token_file.clone(), credential).await?;
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("scope", scope),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", assertion.expose()),
                ]);
                let req = build(Method::POST, url, FORM, Bytes::from(body))?;
                let reply = http.send(req, credential, endpoint).await?;
                let json = classify(&reply, credential, endpoint, &[assertion.expose()])?;
                access_token(&json, "access_token", credential, endpoint)
            }
            Source::Imds { url } => {
                let mut req = build(Method::GET, url, None, Bytes::new())?;
                req.headers_mut()
                    .insert("metadata", HeaderValue::from_static("true"));
                let reply = http.send(req, credential, endpoint).await?;
                let json = classify(&reply, credential, endpoint, &[])?;
                access_token(&json, "access_token", credential, endpoint)
            }
            Source::Arm { entra, url, body } => {
                // Boxed: `get` reaches this `fetch` again through its own source (types only;
                // an Entra provider's source is never ARM).
                let bearer =
                    Box::pin(entra.get())
                        .await
                        .map_err(|source| CredentialError::Entra {
                            credential: Arc::clone(credential),
                            source,
                        })?;
                let mut req = build(Method::POST, url, Some("application/json"), body.clone())?;
                req.headers_mut()
                    .insert(header::AUTHORIZATION, bearer.bearer().clone());
                let reply = http.send(req, credential, endpoint).await?;
                if reply.status == http::StatusCode::UNAUTHORIZED {
                    // ARM no longer takes this Entra token (expired early, revoked): get a new
                    // one on the next attempt instead of waiting for its half-life.
                    entra.invalidate(&bearer);
                }
                let json = classify(&reply, credential, endpoint, &[bearer.expose()])?;
                let mut fetched = access_token(&json, "accessToken", credential, endpoint)?;
                // generateAccessToken's reply has no lifetime fields; the JWT's `exp` decides.
                fetched.hints = Hints::default();
                Ok(fetched)
            }
            Source::Classic { url, api_key } => {
                let mut req = build(Method::GET, url, None, Bytes::new())?;
                let mut key = HeaderValue::from_str(api_key.expose()).map_err(|_| {
                    CredentialError::Malformed {
                        credential: Arc::clone(credential),
                        endpoint,
                        what: "the API key is not a valid header value",
                    }
                })?;
                key.set_sensitive(true);
                req.headers_mut().insert("ocp-apim-subscription-key", key);
                let reply = http.send(req, credential, endpoint).await?;
                match classify(&reply, credential, endpoint, &[api_key.expose()])? {
                    Value::String(value) if !value.is_empty() => Ok(Fetched {
                        value,
                        hints: Hints::default(),
                    }),
                    _ => Err(CredentialError::Malformed {
                        credential: Arc::clone(credential),
                        endpoint,
                        what: "expected the token as a JSON string",
                    }),
                }
            }
            Source::OAuth2 {
                url,
                form,
                client_secret,
            } => {
                let req = build(
                    Method::POST,
                    url,
                    FORM,
                    Bytes::from(form.expose().to_owned()),
                )?;
                let reply = http.send(req, credential, endpoint).await?;
                let json = classify(&reply, credential, endpoint, &[client_secret.expose()])?;
                access_token(&json, "access_token", credential, endpoint)
            }
        }
    }
}

/// Reads the federated token (the platform rotates the file; read it at every request).
async fn read_assertion(
    file: Option<PathBuf>,
    credential: &Arc<str>,
) -> Result<Secret, CredentialError> {
    let path = file.or_else(|| std::env::var_os(FEDERATED_TOKEN_FILE_ENV).map(PathBuf::from));
    let Some(path) = path else {
        return Err(CredentialError::TokenFile {
            credential: Arc::clone(credential),
            path: PathBuf::new(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no token_file and AZURE_FEDERATED_TOKEN_FILE is not set",
            ),
        });
    };
    let read_path = path.clone();
    let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(read_path))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)));
    match read {
        Ok(text) if !text.trim().is_empty() => Ok(Secret::new(text.trim().to_owned())),
        Ok(_) => Err(CredentialError::TokenFile {
            credential: Arc::clone(credential),
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
        }),
        Err(source) => Err(CredentialError::TokenFile {
            credential: Arc::clone(credential),
            path,
            source,
        }),
    }
}

/// A 2xx reply's JSON, or the error its status and body describe. `secrets` are scrubbed from
/// any text kept.
fn classify(
    reply: &Reply,
    credential: &Arc<str>,
    endpoint: &'static str,
    secrets: &[&str],
) -> Result<Value, CredentialError> {
    let status = reply.status.as_u16();
    if reply.status.is_success() {
        return serde_json::from_slice(&reply.body).map_err(|_| CredentialError::Malformed {
            credential: Arc::clone(credential),
            endpoint,
            what: "the reply is not JSON",
        });
    }
    if status == 429 {
        return Err(CredentialError::Throttled {
            credential: Arc::clone(credential),
            endpoint,
            retry_after: retry_after(&reply.headers).unwrap_or_default(),
        });
    }
    if status == 408 || reply.status.is_server_error() {
        return Err(CredentialError::Unavailable {
            credential: Arc::clone(credential),
            endpoint,
            status,
        });
    }
    let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    // Entra / IMDS / OAuth 2.0: {error, error_description}; ARM: {error: {code, message}};
    // Video Indexer: {ErrorType, Message}; API Management: {statusCode, message}.
    let (code, detail) = if let Some(inner) = json.get("error").filter(|e| e.is_object()) {
        (text(inner.get("code")), text(inner.get("message")))
    } else if json.get("error").is_some() {
        (text(json.get("error")), text(json.get("error_description")))
    } else if json.get("ErrorType").is_some() {
        (text(json.get("ErrorType")), text(json.get("Message")))
    } else {
        (None, text(json.get("message")))
    };
    Err(CredentialError::Rejected {
        credential: Arc::clone(credential),
        endpoint,
        status,
        code: scrub(&code.unwrap_or_else(|| "-".to_owned()), secrets),
        detail: scrub(&detail.unwrap_or_default(), secrets),
    })
}

/// `json[key]` as the token, with the reply's lifetime hints.
fn access_token(
    json: &Value,
    key: &str,
    credential: &Arc<str>,
    endpoint: &'static str,
) -> Result<Fetched, CredentialError> {
    match json.get(key).and_then(Value::as_str) {
        Some(value) if !value.is_empty() => Ok(Fetched {
            value: value.to_owned(),
            hints: Hints::from_reply(json),
        }),
        _ => Err(CredentialError::Malformed {
            credential: Arc::clone(credential),
            endpoint,
            what: "no token in the reply",
        }),
    }
}
