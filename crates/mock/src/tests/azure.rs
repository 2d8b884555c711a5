//! The Azure fakes over real sockets: each endpoint's success shape, its documented errors,
//! throttles, failures and counters.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{BoxError, TestResult, within};
use crate::MockAzure;
use crate::azure::{Endpoint, VI_TOKEN_EXPIRED, VI_USER_NOT_ALLOWED, VI_USER_NOT_SIGNED_IN};

const RID_A: &str =
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/vi-east";
const RID_B: &str =
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/vi-west";
const ARM_SCOPE: &str = "https%3A%2F%2Fmanagement.azure.com%2F.default";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    json: Value,
}

async fn send(
    client: &HttpClient,
    method: Method,
    url: String,
    headers: &[(&str, &str)],
    body: String,
) -> Result<Reply, BoxError> {
    let mut req = Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = method;
    *req.uri_mut() = url.parse()?;
    for (name, value) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes())?,
            value.parse()?,
        );
    }
    let res = within("fake answer", client.request(req)).await??;
    let status = res.status();
    let retry_after = res
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = within("body", res.into_body().collect()).await??.to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        retry_after,
        json,
    })
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn fake() -> Result<MockAzure, BoxError> {
    Ok(MockAzure::builder()
        .client_secret("t1", "app-1", "right-secret")
        .federated("t1", "app-2", "projected-sa-token")
        .user_identity("uami-1")
        .account(RID_A, "eastus", "acc-east")
        .account(RID_B, "westus", "acc-west")
        .allow_only(RID_B, &["app-2"])
        .classic_account("trial", "acc-classic", "api-key-1")
        .start()
        .await?)
}

async fn entra_token(c: &HttpClient, az: &MockAzure, body: &str) -> Result<Reply, BoxError> {
    send(
        c,
        Method::POST,
        format!("{}/t1/oauth2/v2.0/token", az.url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        body.to_owned(),
    )
    .await
}

async fn generate(
    c: &HttpClient,
    az: &MockAzure,
    rid: &str,
    bearer: &str,
) -> Result<Reply, BoxError> {
    let auth = format!("Bearer {bearer}");
    send(
        c,
        Method::POST,
        format!(
            "{}{rid}/generateAccessToken?api-version=2024-01-01",
            az.url()
        ),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        json!({"permissionType": "Contributor", "scope": "Account"}).to_string(),
    )
    .await
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

#[tokio::test]
async fn entra_client_secret_and_its_documented_errors() -> TestResult {
    let az = fake().await?;
    let c = client();
    let ok = entra_token(&c, &az, &format!("grant_type=client_credentials&client_id=app-1&client_secret=right-secret&scope={ARM_SCOPE}")).await?;
    assert_eq!(ok.status, 200);
    assert_eq!(str_of(&ok.json, "token_type"), "Bearer");
    assert_eq!(ok.json["expires_in"], 3600);
    let claims = az
        .claims(str_of(&ok.json, "access_token"))
        .ok_or("not a fake token")?;
    assert_eq!(claims["aud"], "https://management.azure.com");
    assert_eq!(claims["appid"], "app-1");

    let bad = entra_token(
        &c,
        &az,
        &format!(
            "grant_type=client_credentials&client_id=app-1&client_secret=wrong&scope={ARM_SCOPE}"
        ),
    )
    .await?;
    assert_eq!(bad.status, 401);
    assert_eq!(str_of(&bad.json, "error"), "invalid_client");
    assert!(
        str_of(&bad.json, "error_description").starts_with("AADSTS7000215: Invalid client secret")
    );
    assert_eq!(bad.json["error_codes"], json!([7_000_215]));
    assert!(
        !bad.json.to_string().contains("wrong"),
        "the secret is never echoed"
    );

    let none = entra_token(
        &c,
        &az,
        &format!("grant_type=client_credentials&client_id=app-1&scope={ARM_SCOPE}"),
    )
    .await?;
    assert_eq!(
        (none.status.as_u16(), none.json["error_codes"][0].as_u64()),
        (401, Some(7_000_218))
    );
    let unknown = entra_token(
        &c,
        &az,
        &format!(
            "grant_type=client_credentials&client_id=nobody&client_secret=x&scope={ARM_SCOPE}"
        ),
    )
    .await?;
    assert_eq!(
        (unknown.status.as_u16(), str_of(&unknown.json, "error")),
        (400, "unauthorized_client")
    );
    let grant = entra_token(&c, &az, "grant_type=password&client_id=app-1").await?;
    assert_eq!(str_of(&grant.json, "error"), "unsupported_grant_type");
    assert_eq!(az.calls_for(Endpoint::Entra, "app-1"), 4);
    Ok(())
}

#[tokio::test]
async fn entra_workload_identity_checks_the_assertion() -> TestResult {
    let az = fake().await?;
    let c = client();
    let urn = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
    let ok = entra_token(&c, &az, &format!("grant_type=client_credentials&client_id=app-2&client_assertion_type={urn}&client_assertion=projected-sa-token&scope={ARM_SCOPE}")).await?;
    assert_eq!(ok.status, 200);
    let wrong = entra_token(&c, &az, &format!("grant_type=client_credentials&client_id=app-2&client_assertion_type={urn}&client_assertion=other&scope={ARM_SCOPE}")).await?;
    assert_eq!(
        (wrong.status.as_u16(), wrong.json["error_codes"][0].as_u64()),
        (400, Some(70021))
    );
    Ok(())
}

#[tokio::test]
async fn imds_requires_the_metadata_header_and_answers_strings() -> TestResult {
    let az = fake().await?;
    let c = client();
    let url = |extra: &str| {
        format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F{extra}",
            az.url()
        )
    };
    let no_header = send(&c, Method::GET, url(""), &[], String::new()).await?;
    assert_eq!(no_header.status, 400);
    assert_eq!(str_of(&no_header.json, "error"), "bad_request_102");
    let ok = send(
        &c,
        Method::GET,
        url(""),
        &[("metadata", "true")],
        String::new(),
    )
    .await?;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.json["expires_in"], "3600",
        "IMDS sends numbers as strings"
    );
    let claims = az
        .claims(str_of(&ok.json, "access_token"))
        .ok_or("not a fake token")?;
    assert_eq!(claims["aud"], "https://management.azure.com/");
    let user = send(
        &c,
        Method::GET,
        url("&client_id=uami-1"),
        &[("metadata", "true")],
        String::new(),
    )
    .await?;
    assert_eq!(user.status, 200);
    let missing = send(
        &c,
        Method::GET,
        url("&client_id=nope"),
        &[("metadata", "true")],
        String::new(),
    )
    .await?;
    assert_eq!(
        (
            missing.status.as_u16(),
            str_of(&missing.json, "error_description")
        ),
        (400, "Identity not found")
    );
    assert_eq!(az.calls_for(Endpoint::Imds, "system"), 2);
    Ok(())
}

#[tokio::test]
async fn arm_checks_bearer_audience_expiry_account_and_role() -> TestResult {
    let az = fake().await?;
    let c = client();
    let entra = entra_token(&c, &az, &format!("grant_type=client_credentials&client_id=app-1&client_secret=right-secret&scope={ARM_SCOPE}")).await?;
    let bearer = str_of(&entra.json, "access_token").to_owned();

    let ok = generate(&c, &az, RID_A, &bearer).await?;
    assert_eq!(ok.status, 200);
    let claims = az
        .claims(str_of(&ok.json, "accessToken"))
        .ok_or("not a fake token")?;
    assert_eq!(
        (claims["AccountId"].as_str(), claims["Permission"].as_str()),
        (Some("acc-east"), Some("Contributor"))
    );

    // Resource ids compare case-insensitively, as ARM's do.
    let upper = generate(
        &c,
        &az,
        &RID_A
            .to_ascii_uppercase()
            .replace("/SUBSCRIPTIONS", "/subscriptions"),
        &bearer,
    )
    .await?;
    assert_eq!(upper.status, 200);

    let forged = generate(&c, &az, RID_A, "eyJhbGciOi.eyJ.forged").await?;
    assert_eq!(
        (
            forged.status.as_u16(),
            str_of(&forged.json["error"], "code")
        ),
        (401, "InvalidAuthenticationToken")
    );
    let missing = send(
        &c,
        Method::POST,
        format!(
            "{}{RID_A}/generateAccessToken?api-version=2024-01-01",
            az.url()
        ),
        &[],
        "{}".into(),
    )
    .await?;
    assert_eq!(
        str_of(&missing.json["error"], "code"),
        "AuthenticationFailed"
    );
    let other = entra_token(&c, &az, "grant_type=client_credentials&client_id=app-1&client_secret=right-secret&scope=api%3A%2F%2Fother%2F.default").await?;
    let wrong_aud = generate(&c, &az, RID_A, str_of(&other.json, "access_token")).await?;
    assert_eq!(
        str_of(&wrong_aud.json["error"], "code"),
        "InvalidAuthenticationTokenAudience"
    );
    let nf = generate(&c, &az, &RID_A.replace("vi-east", "vi-none"), &bearer).await?;
    assert_eq!(
        (nf.status.as_u16(), str_of(&nf.json["error"], "code")),
        (404, "ResourceNotFound")
    );
    let denied = generate(&c, &az, RID_B, &bearer).await?;
    assert_eq!(
        (
            denied.status.as_u16(),
            str_of(&denied.json["error"], "code")
        ),
        (403, "AuthorizationFailed")
    );

    az.set_entra_token_lifetime(Duration::from_secs(1));
    let short = entra_token(&c, &az, &format!("grant_type=client_credentials&client_id=app-1&client_secret=right-secret&scope={ARM_SCOPE}")).await?;
    let short = str_of(&short.json, "access_token").to_owned();
    let exp = az
        .claims(&short)
        .and_then(|c| c["exp"].as_u64())
        .ok_or("exp")?;
    // Wait for the wall clock to pass `exp` (bounded: at most two seconds).
    within("token expiry", async {
        while crate::azure::unix_now() < exp {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    let expired = generate(&c, &az, RID_A, &short).await?;
    assert_eq!(
        (
            expired.status.as_u16(),
            str_of(&expired.json["error"], "code")
        ),
        (401, "ExpiredAuthenticationToken")
    );
    assert_eq!(az.calls_for(Endpoint::Arm, RID_A), 6);
    Ok(())
}

#[tokio::test]
async fn video_indexer_accepts_only_its_own_unexpired_token() -> TestResult {
    let az = fake().await?;
    let c = client();
    let entra = entra_token(&c, &az, &format!("grant_type=client_credentials&client_id=app-2&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=projected-sa-token&scope={ARM_SCOPE}")).await?;
    let bearer = str_of(&entra.json, "access_token").to_owned();
    let east = str_of(
        &generate(&c, &az, RID_A, &bearer).await?.json,
        "accessToken",
    )
    .to_owned();
    let west = str_of(
        &generate(&c, &az, RID_B, &bearer).await?.json,
        "accessToken",
    )
    .to_owned();

    let videos =
        |loc: &str, acc: &str, q: &str| format!("{}/{loc}/Accounts/{acc}/Videos{q}", az.url());
    let ok = send(
        &c,
        Method::GET,
        videos("eastus", "acc-east", &format!("?accessToken={east}")),
        &[],
        String::new(),
    )
    .await?;
    assert_eq!(
        (ok.status.as_u16(), str_of(&ok.json, "accountId")),
        (200, "acc-east")
    );
    let auth = format!("Bearer {west}");
    let header_ok = send(
        &c,
        Method::GET,
        videos("westus", "acc-west", ""),
        &[("authorization", &auth)],
        String::new(),
    )
    .await?;
    assert_eq!(header_ok.status, 200);

    let cross = send(
        &c,
        Method::GET,
        videos("westus", "acc-west", &format!("?accessToken={east}")),
        &[],
        String::new(),
    )
    .await?;
    assert_eq!(cross.status, 401);
    assert_eq!(str_of(&cross.json, "ErrorType"), VI_USER_NOT_ALLOWED);
    assert_eq!(
        str_of(&cross.json, "Message"),
        "Access token is not authorized to access account 'acc-west'."
    );
    let none = send(
        &c,
        Method::GET,
        videos("westus", "acc-west", ""),
        &[],
        String::new(),
    )
    .await?;
    assert_eq!(str_of(&none.json, "ErrorType"), VI_USER_NOT_SIGNED_IN);

    az.set_token_lifetime(Duration::from_secs(1));
    let short = str_of(
        &generate(&c, &az, RID_A, &bearer).await?.json,
        "accessToken",
    )
    .to_owned();
    let exp = az
        .claims(&short)
        .and_then(|c| c["exp"].as_u64())
        .ok_or("exp")?;
    within("token expiry", async {
        while crate::azure::unix_now() < exp {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    let expired = send(
        &c,
        Method::GET,
        videos("eastus", "acc-east", &format!("?accessToken={short}")),
        &[],
        String::new(),
    )
    .await?;
    assert_eq!(
        (expired.status.as_u16(), str_of(&expired.json, "ErrorType")),
        (401, VI_TOKEN_EXPIRED)
    );

    let seen = az.vi_requests();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].token.as_deref(), Some(east.as_str()));
    assert_eq!(seen[1].token.as_deref(), Some(west.as_str()));
    assert_eq!(seen[2].status, 401);
    assert_eq!(az.calls_for(Endpoint::VideoIndexer, "acc-east"), 2);
    Ok(())
}

#[tokio::test]
async fn classic_access_token_checks_the_api_key() -> TestResult {
    let az = fake().await?;
    let c = client();
    let url = |acc: &str| {
        format!(
            "{}/auth/trial/Accounts/{acc}/AccessToken?allowEdit=true",
            az.url()
        )
    };
    let ok = send(
        &c,
        Method::GET,
        url("acc-classic"),
        &[("ocp-apim-subscription-key", "api-key-1")],
        String::new(),
    )
    .await?;
    assert_eq!(ok.status, 200);
    let token = ok.json.as_str().ok_or("the token is a JSON string")?;
    assert_eq!(az.claims(token).ok_or("fake token")?["AllowEdit"], "True");
    let bad = send(
        &c,
        Method::GET,
        url("acc-classic"),
        &[("ocp-apim-subscription-key", "nope")],
        String::new(),
    )
    .await?;
    assert_eq!(
        (bad.status.as_u16(), bad.json["statusCode"].as_u64()),
        (401, Some(401))
    );
    assert_eq!(az.calls_for(Endpoint::Classic, "acc-classic"), 2);
    Ok(())
}

#[tokio::test]
async fn throttles_and_failures_then_recovery() -> TestResult {
    let az = fake().await?;
    let c = client();
    let body = format!(
        "grant_type=client_credentials&client_id=app-1&client_secret=right-secret&scope={ARM_SCOPE}"
    );
    az.throttle(Endpoint::Entra, 2, Duration::from_millis(1500));
    for _ in 0..2 {
        let r = entra_token(&c, &az, &body).await?;
        assert_eq!(
            (r.status.as_u16(), r.retry_after.as_deref()),
            (429, Some("2"))
        );
    }
    assert_eq!(entra_token(&c, &az, &body).await?.status, 200);

    az.fail(Endpoint::Entra, 503);
    assert_eq!(entra_token(&c, &az, &body).await?.status, 503);
    az.clear_faults();
    assert_eq!(entra_token(&c, &az, &body).await?.status, 200);

    az.throttle_for(
        Endpoint::Entra,
        Duration::from_millis(200),
        Duration::from_secs(1),
    );
    assert_eq!(entra_token(&c, &az, &body).await?.status, 429);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(entra_token(&c, &az, &body).await?.status, 200);
    assert_eq!(az.calls(Endpoint::Entra), 7);
    Ok(())
}
