//! Providers against the Azure fakes of `pairgate-mock`, over real sockets on 127.0.0.1. Every
//! wait is bounded; refreshes are awaited through [`TokenProvider::refreshed`] and
//! [`TokenProvider::subscribe`], not slept for.

use std::error::Error;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pairgate_config::{
    AccountAuth, ArmAuth, ArmResourceId, AzureEndpoints, ClassicAuth, EntraCredential, OAuth2Auth,
    Permission, Secret, SendAs, TokenScope,
};
use pairgate_mock::MockAzure;
use pairgate_mock::azure::Endpoint;
use tokio::time::{Instant, timeout};

use crate::{
    CredentialError, CredentialState, HttpClient, RefreshPolicy, RefreshResult, Registry,
    Rejection, TokenProvider, jwt_claims,
};

type BoxError = Box<dyn Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

const RID_A: &str =
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/vi-east";
const RID_B: &str =
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/vi-west";
const SECRET: &str = "the-right-secret-42";
/// Bound of every wait expected to succeed.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, f: F) -> Result<F::Output, BoxError> {
    timeout(WAIT, f)
        .await
        .map_err(|_| format!("timed out waiting for {what}").into())
}

fn fast_policy() -> RefreshPolicy {
    RefreshPolicy {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        max_backoff_without_token: Duration::from_millis(400),
        default_lifetime: Duration::from_secs(60),
    }
}

async fn fake(lifetime: Duration) -> Result<MockAzure, BoxError> {
    Ok(MockAzure::builder()
        .client_secret("t1", "app-1", SECRET)
        .federated("t1", "app-2", "projected-service-account-token")
        .account(RID_A, "eastus", "acc-east")
        .account(RID_B, "westus", "acc-west")
        .classic_account("trial", "acc-classic", "classic-key-1")
        .token_lifetime(lifetime)
        .start()
        .await?)
}

fn registry(az: &MockAzure) -> Registry {
    let url = az.url();
    Registry::new(
        AzureEndpoints {
            arm_endpoint: url.clone(),
            login_endpoint: url.clone(),
            imds_endpoint: url.clone(),
            api_endpoint: url,
        },
        HttpClient::new(Duration::from_secs(5)),
        fast_policy(),
    )
}

fn arm(rid: &str, credential: EntraCredential) -> Result<AccountAuth, BoxError> {
    Ok(AccountAuth::AzureVideoIndexer(ArmAuth {
        resource_id: ArmResourceId::parse(rid)?,
        permission: Permission::Contributor,
        scope: TokenScope::Account,
        credential,
        send_as: SendAs::Query,
    }))
}

fn client_secret(secret: &str) -> EntraCredential {
    EntraCredential::ClientSecret {
        tenant_id: "t1".into(),
        client_id: "app-1".into(),
        client_secret: Secret::new(secret),
    }
}

fn provider(reg: &mut Registry, auth: &AccountAuth) -> Result<TokenProvider, BoxError> {
    reg.provider(auth).ok_or_else(|| "a provider".into())
}

fn account_of(token: &str) -> String {
    jwt_claims(token)
        .and_then(|c| {
            c.get("AccountId")
                .and_then(|v| v.as_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

/// Every message in `error`'s chain, joined.
fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(" <- ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_at_half_life_with_one_fetch_for_fifty_callers() -> TestResult {
    let az = fake(Duration::from_secs(4)).await?;
    let mut reg = registry(&az);
    let p = provider(&mut reg, &arm(RID_A, client_secret(SECRET))?)?;
    let first = within("first token", p.get())
        .await?
        .map_err(|e| e.to_string())?;
    assert_eq!(account_of(first.expose()), "acc-east");
    assert_eq!((az.calls(Endpoint::Arm), az.calls(Endpoint::Entra)), (1, 1));
    // Half of a 4 s lifetime (exp and iat are whole seconds, so 1-2 s from now).
    let half = first.refresh_at() - first.obtained_at();
    assert!(
        half >= Duration::from_millis(900) && half <= Duration::from_millis(2100),
        "{half:?}"
    );
    // Sent until a tenth of the lifetime before `exp`: 4 s less up to 1 s of whole-second
    // rounding, less 0.4 s.
    let usable = first.expires_at() - first.obtained_at();
    assert!(
        usable >= Duration::from_millis(2550) && usable <= Duration::from_millis(3650),
        "{usable:?}"
    );

    // Before the half-life, callers are served from the cache.
    for _ in 0..10 {
        assert!(Arc::ptr_eq(
            &p.get().await.map_err(|e| e.to_string())?,
            &first
        ));
    }
    assert_eq!(az.calls(Endpoint::Arm), 1);

    // At the half-life, 50 callers at once cause exactly one ARM call and all get its token.
    tokio::time::sleep_until(first.refresh_at()).await;
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let p = p.clone();
        callers.spawn(async move { p.get().await });
    }
    let mut tokens = Vec::new();
    while let Some(joined) = within("callers", callers.join_next()).await? {
        tokens.push(joined?.map_err(|e| e.to_string())?);
    }
    assert_eq!(tokens.len(), 50);
    assert!(
        tokens.iter().all(|t| Arc::ptr_eq(t, &tokens[0])),
        "one shared token"
    );
    assert!(!Arc::ptr_eq(&tokens[0], &first), "a new token");
    assert_eq!(az.calls(Endpoint::Arm), 2, "exactly one refresh in flight");
    assert_eq!(
        az.calls(Endpoint::Entra),
        1,
        "the Entra token is cached too"
    );
    assert_eq!(p.refreshes(RefreshResult::Success), 2);
    assert!(p.seconds_left() > 1.0);
    Ok(())
}

#[tokio::test]
async fn background_refresher_renews_at_about_half_life() -> TestResult {
    let az = fake(Duration::from_secs(4)).await?;
    let mut reg = registry(&az);
    let p = provider(&mut reg, &arm(RID_A, client_secret(SECRET))?)?;
    let mut refreshed = p.refreshed();
    let _refresher = p.start();
    within("first fetch", refreshed.wait_for(|n| *n >= 1)).await??;
    let first = p.current().ok_or("a token")?;
    assert!(p.state().is_valid());
    within("second fetch", refreshed.wait_for(|n| *n >= 2)).await??;
    let second = p.current().ok_or("a token")?;
    let after = second.obtained_at() - first.obtained_at();
    assert!(
        after >= Duration::from_millis(900) && after <= Duration::from_millis(2600),
        "refreshed {after:?} after the first fetch"
    );
    assert_eq!(az.calls(Endpoint::Arm), 2);
    Ok(())
}

#[tokio::test]
async fn failing_arm_serves_the_last_token_until_expiry_then_fails_then_recovers() -> TestResult {
    let az = fake(Duration::from_secs(3)).await?;
    let mut reg = registry(&az);
    let p = provider(&mut reg, &arm(RID_A, client_secret(SECRET))?)?;
    let mut state = p.subscribe();
    let mut refreshed = p.refreshed();
    let _refresher = p.start();
    within("first fetch", refreshed.wait_for(|n| *n >= 1)).await??;
    let good = p.current().ok_or("a token")?;
    az.fail(Endpoint::Arm, 500);

    // Past the half-life the refreshes fail, yet the cached token is still served.
    tokio::time::sleep_until(good.refresh_at() + Duration::from_millis(300)).await;
    assert!(good.is_valid_at(Instant::now()));
    assert!(p.refreshes(RefreshResult::Failure) >= 1);
    assert!(Arc::ptr_eq(&p.current().ok_or("still served")?, &good));
    assert!(Arc::ptr_eq(
        &p.get().await.map_err(|e| e.to_string())?,
        &good
    ));
    assert!(p.state().is_valid());

    // At expiry: Failing with the credential cause.
    within(
        "failing",
        state.wait_for(|s| matches!(s, CredentialState::Failing { .. })),
    )
    .await??;
    assert!(
        Instant::now() >= good.expires_at(),
        "not before the token expired"
    );
    assert!(p.current().is_none());
    let CredentialState::Failing { cause } = p.state() else {
        return Err("expected Failing".into());
    };
    assert_eq!(p.state().health_cause(), Some("credential"));
    let text = chain(&*cause);
    assert!(
        text.contains("HTTP 500") && text.contains("vi-east"),
        "{text}"
    );
    let arm_calls = az.calls(Endpoint::Arm);
    assert!(arm_calls >= 3, "retried with backoff: {arm_calls}");

    // ARM recovers: so does the provider, on its own.
    az.clear_faults();
    within("valid again", state.wait_for(CredentialState::is_valid)).await??;
    let fresh = p.current().ok_or("a new token")?;
    assert!(!Arc::ptr_eq(&fresh, &good));
    assert_eq!(account_of(fresh.expose()), "acc-east");
    Ok(())
}

#[tokio::test]
async fn retry_after_of_a_throttle_is_honoured() -> TestResult {
    let az = fake(Duration::from_secs(60)).await?;
    az.throttle(Endpoint::Arm, 1, Duration::from_secs(2));
    let mut reg = registry(&az);
    let p = provider(&mut reg, &arm(RID_A, client_secret(SECRET))?)?;
    let started = Instant::now();
    let err = p.get().await.err().ok_or("throttled")?;
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    // Callers inside the window get the throttle without a call to ARM.
    for _ in 0..5 {
        let again = p.get().await.err().ok_or("still throttled")?;
        assert!(matches!(*again, CredentialError::Throttled { .. }));
    }
    assert_eq!(az.calls(Endpoint::Arm), 1);
    let mut refreshed = p.refreshed();
    let _refresher = p.start();
    within("fetch after Retry-After", refreshed.wait_for(|n| *n >= 1)).await??;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(az.calls(Endpoint::Arm), 2);
    assert_eq!(p.refreshes(RefreshResult::Throttled), 1);
    Ok(())
}

#[tokio::test]
async fn a_wrong_secret_is_a_clear_error_that_names_the_credential_not_the_secret() -> TestResult {
    let az = fake(Duration::from_secs(60)).await?;
    let mut reg = registry(&az);
    let wrong = "Wr0ng-secret-value-99";
    let p = provider(&mut reg, &arm(RID_A, client_secret(wrong))?)?;
    let err = p.get().await.err().ok_or("refused")?;
    let text = chain(&*err);
    for needle in [
        "vi-east",
        "app-1",
        "tenant t1",
        "invalid_client",
        "AADSTS7000215",
        "HTTP 401",
    ] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
    assert!(err.is_rejection());
    assert!(matches!(p.state(), CredentialState::Failing { .. }));
    for shown in [
        text,
        format!("{err:?}"),
        format!("{p:?}"),
        format!("{reg:?}"),
    ] {
        assert!(!shown.contains(wrong), "secret leaked: {shown}");
    }
    assert_eq!(
        az.calls(Endpoint::Arm),
        0,
        "no ARM call without an Entra token"
    );
    Ok(())
}

#[tokio::test]
async fn managed_and_workload_identities_classic_and_oauth2_tokens() -> TestResult {
    let az = fake(Duration::from_secs(60)).await?;
    let mut reg = registry(&az);
    let mi = provider(
        &mut reg,
        &arm(RID_A, EntraCredential::ManagedIdentity { client_id: None })?,
    )?;
    let token = mi.get().await.map_err(|e| e.to_string())?;
    assert_eq!(account_of(token.expose()), "acc-east");
    assert_eq!(az.calls_for(Endpoint::Imds, "system"), 1);

    let file = std::env::temp_dir().join(format!("pairgate-wi-{}.jwt", std::process::id()));
    std::fs::write(&file, "projected-service-account-token\n")?;
    let wi = provider(
        &mut reg,
        &arm(
            RID_B,
            EntraCredential::WorkloadIdentity {
                tenant_id: "t1".into(),
                client_id: "app-2".into(),
                token_file: Some(file.clone()),
            },
        )?,
    )?;
    let wi_token = wi.get().await.map_err(|e| e.to_string());
    std::fs::remove_file(&file)?;
    assert_eq!(account_of(wi_token?.expose()), "acc-west");

    let classic = provider(
        &mut reg,
        &AccountAuth::VideoIndexerClassic(ClassicAuth {
            api_key: Secret::new("classic-key-1"),
            location: "trial".into(),
            account_id: "acc-classic".into(),
            allow_edit: true,
            send_as: SendAs::Query,
        }),
    )?;
    let classic_token = classic.get().await.map_err(|e| e.to_string())?;
    assert_eq!(account_of(classic_token.expose()), "acc-classic");

    let oauth = provider(
        &mut reg,
        &AccountAuth::OAuth2ClientCredentials(OAuth2Auth {
            token_url: format!("{}/t1/oauth2/v2.0/token", az.url()),
            client_id: "app-1".into(),
            client_secret: Secret::new(SECRET),
            scope: Some("api://backend/.default".into()),
            send_as: SendAs::Header,
        }),
    )?;
    let oauth_token = oauth.get().await.map_err(|e| e.to_string())?;
    let aud = jwt_claims(oauth_token.expose()).and_then(|c| c["aud"].as_str().map(str::to_owned));
    assert_eq!(aud.as_deref(), Some("api://backend"));

    // Each token opens its own account, and only its own.
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let status = |loc: &str, acc: &str, token: &str| {
        let uri = format!(
            "{}/{loc}/Accounts/{acc}/Videos?accessToken={token}",
            az.url()
        );
        let http = http.clone();
        async move {
            let res = http.get(uri.parse()?).await?;
            let status = res.status().as_u16();
            res.into_body().collect().await?;
            Ok::<u16, BoxError>(status)
        }
    };
    assert_eq!(status("eastus", "acc-east", token.expose()).await?, 200);
    assert_eq!(
        status("trial", "acc-classic", classic_token.expose()).await?,
        200
    );
    assert_eq!(status("westus", "acc-west", token.expose()).await?, 401);
    Ok(())
}

#[tokio::test]
async fn accounts_with_one_credential_share_providers() -> TestResult {
    let az = fake(Duration::from_secs(60)).await?;
    let mut reg = registry(&az);
    let a = provider(&mut reg, &arm(RID_A, client_secret(SECRET))?)?;
    let mut upper = arm(&RID_A.replace("vi-east", "VI-EAST"), client_secret(SECRET))?;
    if let AccountAuth::AzureVideoIndexer(auth) = &mut upper {
        auth.send_as = SendAs::Header;
    }
    let a2 = provider(&mut reg, &upper)?;
    assert!(a.same_as(&a2), "same account and credential: one provider");
    let b = provider(&mut reg, &arm(RID_B, client_secret(SECRET))?)?;
    assert!(!a.same_as(&b));
    assert!(reg.provider(&AccountAuth::Static).is_none());
    within("a", a.get()).await?.map_err(|e| e.to_string())?;
    within("b", b.get()).await?.map_err(|e| e.to_string())?;
    assert_eq!(
        az.calls(Endpoint::Entra),
        1,
        "one Entra provider for both accounts"
    );
    assert_eq!(
        reg.providers().count(),
        3,
        "two ARM providers and one Entra provider"
    );
    Ok(())
}

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_the_credential_but_never_a_secret_or_token() -> TestResult {
    let az = fake(Duration::from_secs(60)).await?;
    let mut reg = registry(&az);
    let wrong = "Wr0ng-secret-for-the-log-test";
    let failing = provider(&mut reg, &arm(RID_A, client_secret(wrong))?)?;
    let working = provider(&mut reg, &arm(RID_B, client_secret(SECRET))?)?;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    assert!(failing.get().await.is_err());
    let token = working.get().await.map_err(|e| e.to_string())?;
    let logs = String::from_utf8_lossy(
        &captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    assert!(
        logs.contains("token refresh failed") && logs.contains("vi-east"),
        "{logs}"
    );
    assert!(
        logs.contains("token refreshed") && logs.contains("vi-west"),
        "{logs}"
    );
    for secret in [wrong, SECRET, token.expose()] {
        assert!(!logs.contains(secret), "leaked into the logs: {logs}");
    }
    Ok(())
}

#[tokio::test]
async fn a_config_maps_each_account_to_its_shared_provider() -> TestResult {
    let az = fake(Duration::from_secs(60)).await?;
    let text = format!(
        r#"
[azure]
arm_endpoint = "{url}"
login_endpoint = "{url}"
imds_endpoint = "{url}"
api_endpoint = "{url}"

[[region]]
name = "eastus"
pair = "westus"

[[region]]
name = "westus"
pair = "eastus"

[[account]]
name = "east"
region = "eastus"
url = "http://127.0.0.1:9001"
auth = {{ type = "azure-video-indexer", resource_id = "{RID_A}", credential = "client-secret", tenant_id = "t1", client_id = "app-1", client_secret = "${{VI_SECRET}}" }}

[[account]]
name = "east-again"
region = "eastus"
url = "http://127.0.0.1:9002"
auth = {{ type = "azure-video-indexer", resource_id = "{RID_A}", credential = "client-secret", tenant_id = "t1", client_id = "app-1", client_secret = "${{VI_SECRET}}", send_as = "header" }}

[[account]]
name = "west"
region = "westus"
url = "http://127.0.0.1:9003"
"#,
        url = az.url()
    );
    let env = |name: &str| (name == "VI_SECRET").then(|| SECRET.to_owned());
    let loaded = pairgate_config::load(&text, &env).map_err(|p| format!("{p:?}"))?;
    let (registry, providers) = Registry::for_config(
        &loaded.config,
        HttpClient::new(Duration::from_secs(5)),
        fast_policy(),
    );
    let [Some(a), Some(b), None] = providers.as_slice() else {
        return Err(format!("{providers:?}").into());
    };
    assert!(a.same_as(b), "one credential, one provider");
    let token = within("token", a.get()).await?.map_err(|e| e.to_string())?;
    assert_eq!(account_of(token.expose()), "acc-east");
    assert_eq!(registry.providers().count(), 2);

    // A reload that changes nothing of a credential keeps its provider (and cached token);
    // one that changes it gets a new provider.
    let reloaded_text = text.replace(
        "send_as = \"header\" }",
        "send_as = \"header\", permission = \"Reader\" }",
    );
    assert_ne!(reloaded_text, text);
    let reloaded = pairgate_config::load(&reloaded_text, &env).map_err(|p| format!("{p:?}"))?;
    let (after, providers) = Registry::for_config_after(&reloaded.config, &registry);
    let [Some(a2), Some(b2), None] = providers.as_slice() else {
        return Err(format!("{providers:?}").into());
    };
    assert!(a2.same_as(a), "an unchanged credential keeps its provider");
    assert!(!b2.same_as(b), "a changed credential gets a new one");
    assert!(
        a2.current().is_some_and(|t| Arc::ptr_eq(&t, &token)),
        "and its cached token"
    );
    assert_eq!(after.providers().count(), 3, "two ARM providers, one Entra");
    let reader = within("reader token", b2.get())
        .await?
        .map_err(|e| e.to_string())?;
    assert_eq!(account_of(reader.expose()), "acc-east");
    assert_eq!(
        az.calls(Endpoint::Entra),
        1,
        "the Entra provider was carried over with its token"
    );
    Ok(())
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once_and_a_second_rejection_is_a_refusal() -> TestResult {
    let az = fake(Duration::from_secs(600)).await?;
    let mut reg = registry(&az);
    let p = provider(&mut reg, &arm(RID_A, client_secret(SECRET))?)?;
    let _refresher = p.start();
    let mut refreshed = p.refreshed();
    within("first token", refreshed.wait_for(|n| *n >= 1)).await??;
    let first = p.current().ok_or("a token")?;
    assert!(!first.after_rejection());
    // Fifty requests saw a 401 with it: one refresh, at once (not at half of ten minutes).
    let outcomes: Vec<_> = (0..50).map(|_| p.rejected(&first)).collect();
    assert_eq!(outcomes[0], Rejection::Refreshing);
    assert!(
        outcomes[1..].iter().all(|o| *o == Rejection::Outdated),
        "{outcomes:?}"
    );
    within(
        "the refresh a 401 asked for",
        refreshed.wait_for(|n| *n >= 2),
    )
    .await??;
    let second = p.current().ok_or("a token")?;
    assert!(!Arc::ptr_eq(&first, &second));
    assert!(second.after_rejection());
    assert_eq!(
        p.rejected(&first),
        Rejection::Outdated,
        "an old token's 401"
    );
    assert_eq!(
        p.rejected(&second),
        Rejection::Refused,
        "the new one refused too"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        az.calls(Endpoint::Arm),
        2,
        "no refresh loop on a refusing account"
    );
    Ok(())
}
