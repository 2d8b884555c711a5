//! Accept loop and the endpoint handlers of [`MockAzure`](super::MockAzure). Each handler's
//! comment names the page its statuses and bodies follow.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::jwt::{exp, unix_now};
use super::{
    AppCredential, Endpoint, Fault, MAX_VI_REQUESTS, Shared, VI_TOKEN_EXPIRED, VI_USER_NOT_ALLOWED,
    VI_USER_NOT_SIGNED_IN, ViRequest,
};
use crate::state::lock;

type Res = Response<Full<Bytes>>;

/// The jwt-bearer assertion type (RFC 7523), the only one Entra accepts for federated credentials.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Audiences ARM accepts (the v1 and v2 forms of the management resource).
const ARM_AUDIENCES: [&str; 4] = [
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
];
/// Largest request body read.
const MAX_BODY: usize = 64 * 1024;

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "mock azure accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&shared), req));
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::trace!(%error, "mock azure connection ended with an error");
            }
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Res, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if body.len() > MAX_BODY {
        return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
    }
    let query = form(parts.uri.query().unwrap_or(""));
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ci = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let res = match (&parts.method, segments.as_slice()) {
        (&Method::POST, [tenant, "oauth2", "v2.0", "token"]) => {
            entra(&shared, tenant, &form(&String::from_utf8_lossy(&body)))
        }
        (&Method::GET, ["metadata", "identity", "oauth2", "token"]) => {
            imds(&shared, &parts.headers, &query)
        }
        (&Method::POST, [s, sub, g, rg, p, ns, a, name, "generateAccessToken"])
            if ci(s, "subscriptions")
                && ci(g, "resourceGroups")
                && ci(p, "providers")
                && ci(ns, "Microsoft.VideoIndexer")
                && ci(a, "accounts") =>
        {
            let id = format!(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.VideoIndexer/accounts/{name}"
            );
            arm(&shared, &id, rg, name, &parts.headers, &query, &body)
        }
        (&Method::GET, ["auth", location, accounts, account_id, "AccessToken"])
            if ci(accounts, "Accounts") =>
        {
            classic(&shared, location, account_id, &parts.headers, &query)
        }
        (_, [location, accounts, account_id, ..]) if ci(accounts, "Accounts") => {
            video_indexer(&shared, location, account_id, &parts, &query)
        }
        _ => plain(StatusCode::NOT_FOUND, "no such mock endpoint"),
    };
    Ok(res)
}

/// Parses `a=b&c=d` (query strings and `application/x-www-form-urlencoded` bodies).
fn form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn plain(status: StatusCode, text: &'static str) -> Res {
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *res.status_mut() = status;
    res
}

fn json_res(status: u16, body: &Value) -> Res {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

/// A throttle (429 with `Retry-After`) or an injected failure, in the endpoint's error shape.
fn fault_res(fault: Fault, body: &Value) -> Res {
    let mut res = json_res(fault.status, body);
    if fault.status == 429 {
        res.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(fault.retry_after),
        );
    }
    res
}

/// Entra ID's token error body, as in "Token Issuance Endpoint Errors"
/// (learn.microsoft.com/previous-versions/azure/dn645548) and the AADSTS reference
/// (learn.microsoft.com/entra/identity-platform/reference-error-codes): `error`,
/// `error_description` starting `AADSTSnnn:` and ending with trace and correlation ids and a
/// timestamp, `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`.
fn entra_error(status: u16, error: &str, code: u32, text: &str) -> Res {
    let trace = format!("{:08x}-mock-trace", unix_now() ^ u64::from(code));
    let timestamp = unix_now().to_string();
    json_res(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}\r\nTimestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": trace,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`: "Microsoft identity platform and the OAuth 2.0 client
/// credentials flow" (learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow):
/// form body `grant_type=client_credentials`, `client_id`, `scope`, and `client_secret` or
/// `client_assertion_type` + `client_assertion` (workload identity federation); success is
/// `{"token_type":"Bearer","expires_in":N,"ext_expires_in":N,"access_token":"..."}`. Errors:
/// AADSTS7000215 (invalid secret, 401 `invalid_client`), AADSTS7000218 (neither secret nor
/// assertion, 401 `invalid_client`), AADSTS700016 (unknown application, 400
/// `unauthorized_client`), AADSTS70021 (no matching federated identity record, 400
/// `invalid_request`), AADSTS900144 (missing parameter), AADSTS70003 (unsupported grant type).
/// AADSTS7000215's status and full body are as replies quoted in public issue threads show them
/// (e.g. OfficeDev/microsoft-365-agents-toolkit#8621, BookStackApp/BookStack#4089: `401`,
/// `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret
/// provided. Ensure the secret being sent in the request is the client secret value, not the
/// client secret ID, for a secret added to app '…'.\r\nTrace ID: …", "error_codes":[7000215],
/// "timestamp", "trace_id", "correlation_id", "error_uri"}`); AADSTS7000218 as in
/// joelmeiller/cypress-msal-login#11.
fn entra(shared: &Shared, tenant: &str, body: &[(String, String)]) -> Res {
    let client_id = get(body, "client_id").unwrap_or("").to_ascii_lowercase();
    if let Some(fault) = shared.enter(Endpoint::Entra, &client_id) {
        return fault_res(
            fault,
            &json!({"error": "temporarily_unavailable", "error_description": "AADSTS50196: mock fault"}),
        );
    }
    if get(body, "grant_type") != Some("client_credentials") {
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    for key in ["client_id", "scope"] {
        if get(body, key).is_none_or(str::is_empty) {
            return entra_error(
                400,
                "invalid_request",
                900_144,
                &format!("The request body must contain the following parameter: '{key}'."),
            );
        }
    }
    let scope = get(body, "scope").unwrap_or("");
    let (credential, lifetime) = {
        let state = lock(&shared.state);
        (
            state
                .apps
                .get(&(tenant.to_owned(), client_id.clone()))
                .cloned(),
            state.entra_lifetime,
        )
    };
    let Some(credential) = credential else {
        return entra_error(
            400,
            "unauthorized_client",
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    let secret = get(body, "client_secret");
    let assertion = get(body, "client_assertion");
    match (&credential, secret, assertion) {
        (_, None, None) => {
            return entra_error(
                401,
                "invalid_client",
                7_000_218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
        (AppCredential::Secret(expected), Some(given), _) if given == expected => {}
        (AppCredential::Secret(_), _, _) => {
            return entra_error(
                401,
                "invalid_client",
                7_000_215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            );
        }
        (AppCredential::Assertion(_), _, Some(_))
            if get(body, "client_assertion_type") != Some(JWT_BEARER) =>
        {
            return entra_error(
                400,
                "invalid_request",
                700_025,
                "Client assertion type is not supported; expected urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            );
        }
        (AppCredential::Assertion(expected), _, Some(given)) if given == expected => {}
        (AppCredential::Assertion(_), _, _) => {
            return entra_error(
                400,
                "invalid_request",
                70021,
                "No matching federated identity record found for presented assertion.",
            );
        }
    }
    let audience = scope.strip_suffix("/.default").unwrap_or(scope);
    let mut claims = Map::new();
    claims.insert("aud".into(), json!(audience));
    claims.insert(
        "iss".into(),
        json!(format!("https://sts.windows.net/{tenant}/")),
    );
    claims.insert("tid".into(), json!(tenant));
    claims.insert("appid".into(), json!(client_id));
    claims.insert("oid".into(), json!(client_id));
    claims.insert("idtyp".into(), json!("app"));
    let token = shared.signer.mint(claims, lifetime);
    let secs = lifetime.as_secs().max(1);
    json_res(
        200,
        &json!({"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token}),
    )
}

/// `GET /metadata/identity/oauth2/token`: "How to use managed identities for Azure resources on
/// an Azure VM to acquire an access token" (learn.microsoft.com/entra/identity/
/// managed-identities-azure-resources/how-to-use-vm-token): requires `Metadata: true` (else
/// 400 `bad_request_102` "Required metadata header not specified"), `api-version` and
/// `resource`, optional `client_id` of a user-assigned identity; the sample response carries
/// `expires_in`, `expires_on`, `ext_expires_in`, `not_before` as **strings**; 429 with
/// `Retry-After` when throttled (the page's error-handling table).
fn imds(shared: &Shared, headers: &HeaderMap, query: &[(String, String)]) -> Res {
    let client_id = get(query, "client_id").map(str::to_ascii_lowercase);
    let key = client_id.clone().unwrap_or_else(|| "system".to_owned());
    if let Some(fault) = shared.enter(Endpoint::Imds, &key) {
        return fault_res(
            fault,
            &json!({"error": "too_many_requests", "error_description": "mock fault"}),
        );
    }
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return json_res(
            400,
            &json!({"error": "bad_request_102", "error_description": "Required metadata header not specified"}),
        );
    }
    for key in ["api-version", "resource"] {
        if get(query, key).is_none_or(str::is_empty) {
            return json_res(
                400,
                &json!({"error": "invalid_request", "error_description": format!("Required query variable '{key}' is missing")}),
            );
        }
    }
    let resource = get(query, "resource").unwrap_or("");
    let (known, lifetime) = {
        let state = lock(&shared.state);
        let known = match &client_id {
            None => state.system_identity,
            Some(id) => state.user_identities.contains(id),
        };
        (known, state.entra_lifetime)
    };
    if !known {
        return json_res(
            400,
            &json!({"error": "invalid_request", "error_description": "Identity not found"}),
        );
    }
    let mut claims = Map::new();
    claims.insert("aud".into(), json!(resource));
    claims.insert("iss".into(), json!("https://sts.windows.net/mock-tenant/"));
    claims.insert("appid".into(), json!(key));
    claims.insert("oid".into(), json!(key));
    claims.insert("idtyp".into(), json!("app"));
    let token = shared.signer.mint(claims, lifetime);
    let now = unix_now();
    let secs = lifetime.as_secs().max(1);
    json_res(
        200,
        &json!({
            "access_token": token,
            "client_id": key,
            "expires_in": secs.to_string(),
            "expires_on": (now + secs).to_string(),
            "ext_expires_in": secs.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}

/// ARM's error body: `{"error": {"code", "message"}}` ("Common error response for all Azure
/// Resource Manager APIs", the `ErrorResponse` of the generateAccessToken swagger).
fn arm_error(status: u16, code: &str, message: &str) -> Res {
    json_res(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// `POST …/providers/Microsoft.VideoIndexer/accounts/{name}/generateAccessToken`: "Generate -
/// Access Token" (learn.microsoft.com/rest/api/videoindexer/stable/generate/access-token) and
/// its swagger (azure-rest-api-specs, specification/vi/…/2024-01-01/vi.json and the
/// ViGenerateAccessToken examples): body `{"permissionType": "Contributor"|"Reader", "scope":
/// "Account"|"Video"|"Project"}`, reply `{"accessToken": "<jwt>"}`. Bearer checks as ARM answers
/// them: no header 401 `AuthenticationFailed`, a token ARM cannot validate 401
/// `InvalidAuthenticationToken`, another audience 401 `InvalidAuthenticationTokenAudience`,
/// expired 401 `ExpiredAuthenticationToken`; an unknown account 404 `ResourceNotFound`; a
/// principal without the role 403 `AuthorizationFailed`; no api-version 400
/// `MissingApiVersionParameter`.
fn arm(
    shared: &Shared,
    resource_id: &str,
    rg: &str,
    name: &str,
    headers: &HeaderMap,
    query: &[(String, String)],
    body: &[u8],
) -> Res {
    let id = resource_id.to_ascii_lowercase();
    if let Some(fault) = shared.enter(Endpoint::Arm, &id) {
        let code = if fault.status == 429 {
            "TooManyRequests"
        } else {
            "InternalServerError"
        };
        return fault_res(
            fault,
            &json!({"error": {"code": code, "message": "mock fault"}}),
        );
    }
    if get(query, "api-version").is_none_or(str::is_empty) {
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return arm_error(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        );
    };
    let claims = auth
        .strip_prefix("Bearer ")
        .and_then(|token| shared.signer.verify(token.trim()));
    let Some(claims) = claims else {
        return arm_error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        );
    };
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    if !ARM_AUDIENCES.contains(&aud) {
        return arm_error(
            401,
            "InvalidAuthenticationTokenAudience",
            &format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."
            ),
        );
    }
    let now = unix_now();
    let expiry = exp(&claims);
    if expiry <= now {
        return arm_error(
            401,
            "ExpiredAuthenticationToken",
            &format!(
                "The access token expiry UTC time '{expiry}' is earlier than current UTC time '{now}'."
            ),
        );
    }
    let principal = claims
        .get("appid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let (account, lifetime) = {
        let state = lock(&shared.state);
        (
            state.accounts.iter().find(|a| a.resource_id == id).cloned(),
            state.token_lifetime,
        )
    };
    let Some(account) = account else {
        return arm_error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.VideoIndexer/accounts/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        );
    };
    if account
        .allowed
        .as_ref()
        .is_some_and(|allowed| !allowed.contains(&principal))
    {
        return arm_error(
            403,
            "AuthorizationFailed",
            &format!(
                "The client '{principal}' with object id '{principal}' does not have authorization to perform action 'Microsoft.VideoIndexer/accounts/generateAccessToken/action' over scope '{resource_id}' or the scope is invalid. If access was recently granted, please refresh your credentials."
            ),
        );
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let permission = request.get("permissionType").and_then(Value::as_str);
    let scope = request.get("scope").and_then(Value::as_str);
    let (
        Some(permission @ ("Contributor" | "Reader")),
        Some(scope @ ("Account" | "Video" | "Project")),
    ) = (permission, scope)
    else {
        return arm_error(
            400,
            "InvalidRequestContent",
            "The request content must have permissionType (Contributor or Reader) and scope (Account, Video or Project).",
        );
    };
    let token = vi_token(shared, &account.account_id, permission, scope, lifetime);
    json_res(200, &json!({"accessToken": token}))
}

/// A Video Indexer token: the fake's claims `AccountId`, `Permission`, `Scope`, `AllowEdit`.
fn vi_token(
    shared: &Shared,
    account_id: &str,
    permission: &str,
    scope: &str,
    lifetime: Duration,
) -> String {
    let mut claims = Map::new();
    claims.insert("AccountId".into(), json!(account_id));
    claims.insert("Permission".into(), json!(permission));
    claims.insert("Scope".into(), json!(scope));
    claims.insert(
        "AllowEdit".into(),
        json!(if permission == "Contributor" {
            "True"
        } else {
            "False"
        }),
    );
    claims.insert("iss".into(), json!("https://api.videoindexer.ai/"));
    claims.insert("aud".into(), json!("https://api.videoindexer.ai/"));
    shared.signer.mint(claims, lifetime)
}

/// Video Indexer's error body, `{"ErrorType", "Message"}` (see [`VI_USER_NOT_ALLOWED`]).
fn vi_error(status: u16, error_type: &str, message: &str) -> Res {
    json_res(
        status,
        &json!({"ErrorType": error_type, "Message": message}),
    )
}

/// `GET /auth/{location}/Accounts/{accountId}/AccessToken?allowEdit=`: "Get Account Access
/// Token" (api-portal.videoindexer.ai, Operations, Get-Account-Access-Token): header
/// `Ocp-Apim-Subscription-Key`; 200 with the token as a JSON string; 401 `USER_NOT_ALLOWED` "User
/// not allowed access account '…'." for a key of another account. A key API Management does not
/// know gets API Management's own 401 `{"statusCode": 401, "message": "Access denied due to
/// invalid subscription key. …"}`.
fn classic(
    shared: &Shared,
    location: &str,
    account_id: &str,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Res {
    if let Some(fault) = shared.enter(Endpoint::Classic, account_id) {
        return fault_res(
            fault,
            &json!({"ErrorType": "GENERAL", "Message": "mock fault"}),
        );
    }
    let key = headers
        .get("ocp-apim-subscription-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (expected, known_key, lifetime) = {
        let state = lock(&shared.state);
        (
            state
                .classic_keys
                .get(&(
                    location.to_ascii_lowercase(),
                    account_id.to_ascii_lowercase(),
                ))
                .cloned(),
            state.classic_keys.values().any(|k| k == key),
            state.token_lifetime,
        )
    };
    if !known_key {
        return json_res(
            401,
            &json!({"statusCode": 401, "message": "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}),
        );
    }
    if expected.as_deref() != Some(key) {
        return vi_error(
            401,
            VI_USER_NOT_ALLOWED,
            &format!("User not allowed access account '{account_id}'."),
        );
    }
    let edit = get(query, "allowEdit").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let permission = if edit { "Contributor" } else { "Reader" };
    let token = vi_token(shared, account_id, permission, "Account", lifetime);
    json_res(200, &Value::String(token))
}

/// `/{location}/Accounts/{accountId}/…`: "Redact faces by using Azure AI Video Indexer API",
/// error codes (learn.microsoft.com/azure/azure-video-indexer/face-redaction-with-api): the
/// token in query `accessToken` or `Authorization: Bearer`; 401 `USER_NOT_ALLOWED` "Access token
/// is not authorized to access account '…'." for another account's (or a foreign) token; 404
/// for an unknown account; 429 with `Retry-After` when throttled. No token: 401
/// `USER_NOT_SIGNED_IN`; expired: 401 [`VI_TOKEN_EXPIRED`] (see there).
fn video_indexer(
    shared: &Shared,
    location: &str,
    account_id: &str,
    parts: &http::request::Parts,
    query: &[(String, String)],
) -> Res {
    let token = get(query, "accessToken").map(str::to_owned).or_else(|| {
        parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned())
    });
    let res = vi_answer(shared, location, account_id, token.as_deref(), parts);
    let mut state = lock(&shared.state);
    if state.vi_requests.len() == MAX_VI_REQUESTS {
        state.vi_requests.pop_front();
    }
    state.vi_requests.push_back(ViRequest {
        location: location.to_owned(),
        account_id: account_id.to_owned(),
        token,
        status: res.status().as_u16(),
    });
    res
}

fn vi_answer(
    shared: &Shared,
    location: &str,
    account_id: &str,
    token: Option<&str>,
    parts: &http::request::Parts,
) -> Res {
    if let Some(fault) = shared.enter(Endpoint::VideoIndexer, account_id) {
        return fault_res(
            fault,
            &json!({"ErrorType": "GENERAL", "Message": "There was an error."}),
        );
    }
    let known = lock(&shared.state).accounts.iter().any(|a| {
        a.location.eq_ignore_ascii_case(location) && a.account_id.eq_ignore_ascii_case(account_id)
    });
    if !known {
        return vi_error(
            404,
            "GENERAL",
            &format!("Account '{account_id}' was not found in location '{location}'."),
        );
    }
    let Some(token) = token else {
        return vi_error(401, VI_USER_NOT_SIGNED_IN, "User is not signed in.");
    };
    let not_allowed = || {
        vi_error(
            401,
            VI_USER_NOT_ALLOWED,
            &format!("Access token is not authorized to access account '{account_id}'."),
        )
    };
    let Some(claims) = shared.signer.verify(token) else {
        return not_allowed();
    };
    let owner = claims
        .get("AccountId")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !owner.eq_ignore_ascii_case(account_id) {
        return not_allowed();
    }
    if exp(&claims) <= unix_now() {
        return vi_error(401, VI_TOKEN_EXPIRED, "Access token has expired.");
    }
    json_res(
        200,
        &json!({
            "accountId": account_id,
            "location": location,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let pairs = form("a=1&scope=https%3A%2F%2Fmanagement.azure.com%2F.default&b=x+y&c&d=%zz");
        assert_eq!(get(&pairs, "a"), Some("1"));
        assert_eq!(
            get(&pairs, "scope"),
            Some("https://management.azure.com/.default")
        );
        assert_eq!(get(&pairs, "b"), Some("x y"));
        assert_eq!(get(&pairs, "c"), Some(""));
        assert_eq!(get(&pairs, "d"), Some("%zz"));
        assert_eq!(percent_decode("%4"), "%4");
    }
}
