//! The real `pairgate` binary: `check` exit codes and messages, example configs, and secrets
//! kept out of logs.

use std::process::Command;

use pairgate_test_support::{GatewayProcess, get, pairgate_bin};

use crate::support::{regions, temp_path};

fn check(toml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let path = temp_path("check.toml");
    std::fs::write(&path, toml).expect("write config");
    let mut cmd = Command::new(pairgate_bin().expect("binary"));
    cmd.arg("check").arg("--config").arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("pairgate check runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("exit code"), text)
}

const VALID: &str = r#"
[[region]]
name = "eastus"
pair = "westus"
[[region]]
name = "westus"
pair = "eastus"
[[account]]
name = "a"
region = "eastus"
url = "http://127.0.0.1:9001"
[[account]]
name = "b"
region = "westus"
url = "http://127.0.0.1:9002"
[[tenant]]
name = "t"
hosts = ["t.example.com"]
primary = "a"
secondary = "b"
"#;

#[test]
fn check_accepts_a_valid_config() {
    let (code, out) = check(VALID, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"), "{out}");
}

/// `check --format json` prints one JSON object: counts for a valid config, every problem with
/// its path and location for an invalid one; the exit codes are the text mode's.
#[test]
fn check_formats_json_for_tooling() {
    let run = |toml: &str| {
        let path = temp_path("check-json.toml");
        std::fs::write(&path, toml).expect("write config");
        let out = Command::new(pairgate_bin().expect("binary"))
            .args(["check", "--format", "json", "--config"])
            .arg(&path)
            .output()
            .expect("pairgate check runs");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().expect("exit code"), json)
    };
    let (code, valid) = run(VALID);
    assert_eq!(code, 0, "{valid}");
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["tenants"], 1);
    let (code, invalid) = run(&VALID.replace("secondary = \"b\"", "secondary = \"nope\""));
    assert_eq!(code, 64, "{invalid}");
    assert_eq!(invalid["valid"], false);
    let problem = &invalid["problems"][0];
    assert_eq!(problem["severity"], "error", "{invalid}");
    assert_eq!(problem["path"], "tenant[0].secondary", "{invalid}");
    assert!(problem.get("line").is_some(), "{invalid}");
}

/// Every problem is reported at once, each as `FILE...: PATH: message`, and the exit code is 64.
#[test]
fn check_reports_every_problem_with_paths() {
    let broken = r#"
[[region]]
name = "eastus"
pair = "nowhere"
[[account]]
name = "a"
region = "eastus"
url = "ftp://127.0.0.1:9001"
headers = { "x-key" = "${IT_CHECK_UNSET_VAR}" }
[[account]]
name = "a"
region = "mars"
url = "http://127.0.0.1:9002"
[[tenant]]
name = "t"
hosts = ["t.example.com"]
primary = "a"
secondary = "missing"
hostz = ["typo"]
[[tenant]]
name = "u"
hosts = ["t.example.com"]
primary = "a"
"#;
    let (code, out) = check(broken, &[]);
    assert_eq!(code, 64, "{out}");
    for path in [
        "region[0].pair",
        "account[0].url",
        "account[0].headers",
        "IT_CHECK_UNSET_VAR",
        "account[1].name",
        "account[1].region",
        "tenant[0].secondary",
        "tenant[0].hostz",
        "tenant[1].hosts",
    ] {
        assert!(out.contains(path), "missing {path} in:\n{out}");
    }
    assert!(out.lines().count() >= 9, "{out}");
}

/// A TOML syntax error names the line and column.
#[test]
fn check_reports_syntax_errors_with_line_and_column() {
    let (code, out) = check(
        "[listen]\nhttp = \"127.0.0.1:8080\"\n[[tenant]\nname = 1\n",
        &[],
    );
    assert_eq!(code, 64, "{out}");
    assert!(out.contains(":3:"), "expected line 3 in: {out}");
}

/// A missing file is a clear error and its own exit code (66, `EX_NOINPUT`), not a panic.
#[test]
fn check_reports_a_missing_file() {
    let out = Command::new(pairgate_bin().expect("binary"))
        .args(["check", "--config", "/nonexistent/pairgate.toml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot read"));
    // Same for `run`, where the error goes to stderr.
    let out = Command::new(pairgate_bin().expect("binary"))
        .args(["run", "--config", "/nonexistent/pairgate.toml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(66));
}

/// The documented exit codes and environment variables: `PAIRGATE_CONFIG` stands for
/// `--config`, `PAIRGATE_LOG_FORMAT` for `--log-format`; a usage error is 2; a listener that
/// cannot bind is 69 and is reported once; `--version` names the commit and build date.
#[test]
fn exit_codes_environment_and_version() {
    let bin = pairgate_bin().expect("binary");
    let path = temp_path("env.toml");
    std::fs::write(&path, VALID).expect("write config");
    let out = Command::new(&bin)
        .arg("check")
        .env("PAIRGATE_CONFIG", &path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));

    let out = Command::new(&bin)
        .arg("check")
        .arg("--bogus")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "usage error");

    let out = Command::new(&bin).arg("--version").output().expect("runs");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains("commit ") && version.contains("built 20"),
        "{version}"
    );

    // Bind a port, then ask pairgate to listen on it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let busy = temp_path("busy.toml");
    std::fs::write(
        &busy,
        format!("[listen]\nhttp = \"{addr}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{VALID}"),
    )
    .expect("write config");
    for (format, env) in [("pretty", "pretty"), ("json", "json")] {
        let out = Command::new(&bin)
            .args(["run", "--config"])
            .arg(&busy)
            .env("PAIRGATE_LOG_FORMAT", env)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(69), "{format}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.matches("binding the HTTP listener").count(),
            1,
            "{format}: reported once:\n{stderr}"
        );
        if format == "json" {
            let line = stderr
                .lines()
                .find(|l| l.contains("binding the HTTP listener"))
                .expect("the error line");
            serde_json::from_str::<serde_json::Value>(line).expect("a JSON log line");
        }
    }
}

/// Without an admin token the gateway says so at start, and every `/v1` answer says why it is
/// refused.
#[tokio::test]
async fn no_admin_token_is_warned_at_start_and_named_in_the_401() {
    let path = temp_path("no-token.toml");
    let toml =
        format!("[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{VALID}");
    let gw = GatewayProcess::spawn(&path, &toml, &[]).expect("gateway process");
    // The lines after the listen address may reach the log collector just after spawn returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (stderr, admin) = loop {
        let stderr = gw.stderr();
        let admin = stderr
            .split_whitespace()
            .find_map(|w| w.strip_prefix("admin="))
            .map(|a| a.trim_matches('"').to_owned());
        if let Some(admin) = admin
            && stderr.contains("no admin token is configured")
        {
            break (stderr, admin);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no token warning or admin address in the log:\n{stderr}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(stderr.contains("every /v1 call"), "{stderr}");
    let reply = get(&format!("http://{admin}/v1/tenants"), "localhost")
        .await
        .expect("reply");
    assert_eq!(reply.status, 401);
    assert!(
        reply.text().contains("no admin token is configured"),
        "{}",
        reply.text()
    );
}

/// `${VAR}` values never appear in `check` output, even when the value is what is wrong.
#[test]
fn check_never_prints_secret_values() {
    let secret = "sekrit-value-4417\r\nx";
    let toml = VALID.replace(
        "url = \"http://127.0.0.1:9001\"",
        "url = \"http://127.0.0.1:9001\"\nheaders = { \"x-key\" = \"${IT_CHECK_BAD_SECRET}\" }",
    );
    let (code, out) = check(&toml, &[("IT_CHECK_BAD_SECRET", secret)]);
    assert_eq!(code, 64, "an invalid header value must be rejected: {out}");
    assert!(out.contains("IT_CHECK_BAD_SECRET"), "{out}");
    assert!(!out.contains("sekrit"), "secret leaked: {out}");
}

/// Every example under config/ is valid (with placeholder environment values).
#[test]
fn example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let env = |_: &str| Some("example-value".to_owned());
        if let Err(problems) = pairgate_config::load(&text, &env) {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            panic!("{} is invalid:\n{}", path.display(), lines.join("\n"));
        }
        seen += 1;
    }
    assert!(seen >= 2, "expected example configs in {}", dir.display());
}

/// With trace logging on, injected secrets never reach the logs, while requests are logged.
#[tokio::test]
async fn secrets_stay_out_of_logs() {
    let (east, west) = regions().await;
    let secret = "it-log-secret-71d0c";
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        crate::support::config(&east, &west, "")
    );
    let gw = GatewayProcess::spawn(
        &temp_path("secrets.toml"),
        &toml,
        &[("IT_EAST_KEY", secret), ("RUST_LOG", "trace")],
    )
    .expect("gateway process");
    let reply = get(&gw.url("/x"), "contoso.example.com")
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);
    assert_eq!(
        east.requests()
            .pop()
            .expect("east saw it")
            .header("ocp-apim-subscription-key"),
        Some(secret),
        "the secret must reach the upstream"
    );
    // A failing attempt (refused, then replayed on west) goes through the error paths too.
    east.kill().await;
    let replayed = get(&gw.url("/y"), "contoso.example.com")
        .await
        .expect("reply");
    assert_eq!(replayed.status, 200);
    assert!(replayed.headers.contains_key("x-pairgate-replayed"));
    let log = gw.kill();
    assert!(
        log.contains("pairgate::access"),
        "no access log lines:\n{log}"
    );
    assert!(log.contains("contoso"), "tenant missing from logs");
    assert!(!log.contains(secret), "secret leaked into logs");
}

/// Bad account credentials: an unknown `type`, each missing key, `client-secret` without its
/// secret, a `${VAR}` that is unset: every one named with its key, line and column; exit 64;
/// and no secret value printed.
#[test]
fn check_names_every_credential_problem_with_line_and_column() {
    let rid = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/vi";
    let broken = format!(
        r#"
[[region]]
name = "eastus"
pair = "westus"
[[region]]
name = "westus"
pair = "eastus"
[[account]]
name = "a"
region = "eastus"
url = "http://127.0.0.1:9001"
auth = {{ type = "azure-video-indexr", resource_id = "{rid}" }}
[[account]]
name = "b"
region = "westus"
url = "http://127.0.0.1:9002"
auth = {{ type = "azure-video-indexer", credential = "client-secret", tenant_id = "t1", client_id = "app" }}
[[account]]
name = "c"
region = "westus"
url = "http://127.0.0.1:9003"
auth = {{ type = "video-indexer-classic", api_key = "${{IT_CHECK_UNSET_VI_KEY}}", location = "westus" }}
[[account]]
name = "d"
region = "eastus"
url = "http://127.0.0.1:9004"
auth = {{ type = "oauth2-client-credentials", client_id = "x", client_secret = "${{IT_CHECK_SET_SECRET}}" }}
[[tenant]]
name = "t"
hosts = ["t.example.com"]
primary = "a"
secondary = "b"
"#
    );
    let (code, out) = check(
        &broken,
        &[("IT_CHECK_SET_SECRET", "s3cr3t-value-do-not-print")],
    );
    assert_eq!(code, 64, "{out}");
    for (path, line) in [
        ("account[0].auth.type", ":12:"),
        ("account[1].auth.resource_id", ":17:"),
        ("account[1].auth.client_secret", ":17:"),
        ("account[2].auth.account_id", ":22:"),
        ("IT_CHECK_UNSET_VI_KEY", ":22:"),
        ("account[3].auth.token_url", ":27:"),
    ] {
        assert!(
            out.lines().any(|l| l.contains(path) && l.contains(line)),
            "missing {path} at line {line} in:\n{out}"
        );
    }
    assert!(!out.contains("s3cr3t-value-do-not-print"), "{out}");
}

/// `${file:/path}` header values and `admin.token_file` are read at start and at every reload:
/// after the files are rotated and the gateway reloaded (SIGHUP), the next request carries the
/// new value and the admin API takes only the new token. Values never reach the log; a
/// world-readable secret file is warned about.
#[tokio::test]
async fn secret_files_rotate_on_reload() {
    use std::os::unix::fs::PermissionsExt as _;
    let (east, west) = regions().await;
    let key_path = temp_path("rotating-key");
    let (old, new) = ("it-file-secret-old-5e1", "it-file-secret-new-9b2");
    std::fs::write(&key_path, format!("{old}\n")).expect("write key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let accounts = crate::support::config(&east, &west, "").replace(
        "${IT_EAST_KEY}",
        &format!("${{file:{}}}", key_path.display()),
    );
    let token_path = temp_path("rotating-admin-token");
    std::fs::write(&token_path, "it-admin-token-old\n").expect("write token");
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"IT_UNSET_ADMIN_TOKEN\"\ntoken_file = \"{}\"\n{accounts}",
        token_path.display()
    );
    let gw = GatewayProcess::spawn(&temp_path("rotate.toml"), &toml, &[]).expect("gateway");
    // The last forwarded request's key (probes may carry it too: skip them).
    let key_seen = |east: &pairgate_test_support::MockUpstream| {
        east.requests()
            .into_iter()
            .rev()
            .find(|r| r.uri.ends_with("/x"))
            .and_then(|r| r.header("ocp-apim-subscription-key").map(str::to_owned))
    };
    let reply = get(&gw.url("/x"), "contoso.example.com")
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);
    assert_eq!(
        key_seen(&east).as_deref(),
        Some(old),
        "trailing newline trimmed"
    );

    std::fs::write(&key_path, format!("{new}\n")).expect("rotate key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&token_path, "it-admin-token-new\n").expect("rotate token");
    gw.signal("HUP").expect("SIGHUP");
    let url = gw.url("/x");
    let rotated = crate::support::eventually(std::time::Duration::from_secs(10), || async {
        get(&url, "contoso.example.com").await.is_ok() && key_seen(&east).as_deref() == Some(new)
    })
    .await;
    let tenants = gw.admin_url("/v1/tenants").expect("admin url");
    let with = |token: &'static str| {
        let tenants = tenants.clone();
        async move {
            pairgate_test_support::admin_call(&tenants, "GET", None, Some(token))
                .await
                .expect("admin reply")
                .status
        }
    };
    let (new_status, old_status) = (
        with("it-admin-token-new").await,
        with("it-admin-token-old").await,
    );
    let log = gw.kill();
    assert!(rotated, "the rotated key was never sent:\n{log}");
    assert_eq!(new_status, 200, "the rotated admin token is refused");
    assert_eq!(old_status, 403, "the old admin token still works");
    assert!(
        log.contains("world-readable"),
        "no permission warning:\n{log}"
    );
    assert!(
        !log.contains(old) && !log.contains(new),
        "a secret reached the log"
    );
}

/// `hash-key` prints the digest a tenant's `api_keys` holds (the trailing newline is not part of
/// the key); `check` reads each `jwks_file` and names one that is missing or holds no usable key
/// (an HMAC key is never one), with the key set's path in the config.
#[test]
fn hash_key_and_key_set_files_are_checked() {
    use std::io::Write as _;
    let mut child = Command::new(pairgate_bin().expect("binary"))
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("hash-key runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse battery staple\n")
        .expect("write key");
    let out = child.wait_with_output().expect("hash-key ends");
    assert!(out.status.success());
    // sha256sum of the 28 bytes without the newline.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sha256:c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a"
    );

    let hmac_only = temp_path("hmac-jwks.json");
    std::fs::write(
        &hmac_only,
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"h"}]}"#,
    )
    .expect("write");
    let issuers = format!(
        "[[jwt_issuer]]\nname = \"a\"\nissuer = \"https://a/\"\naudiences = [\"x\"]\njwks_file = \"/nonexistent/jwks.json\"\n\
         [[jwt_issuer]]\nname = \"b\"\nissuer = \"https://b/\"\naudiences = [\"x\"]\njwks_file = \"{}\"\n",
        hmac_only.display()
    );
    let (code, out) = check(&format!("{VALID}\n{issuers}"), &[]);
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("jwt_issuer[0].jwks_file: cannot read /nonexistent/jwks.json"),
        "{out}"
    );
    assert!(
        out.contains("jwt_issuer[1].jwks_file: no usable signing key"),
        "{out}"
    );
    assert!(
        !out.contains("c2VjcmV0"),
        "the key set's secret is never printed: {out}"
    );
}

/// `pairgate regions` prints Azure's documented regions with their display names and pairs,
/// one-way pairs marked.
#[test]
fn regions_prints_the_catalogue() {
    let out = Command::new(pairgate_bin().expect("binary"))
        .arg("regions")
        .output()
        .expect("regions runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name}:\n{text}"))
            .to_owned()
    };
    assert!(line("eastus").contains("East US") && line("eastus").contains("<> westus"));
    assert!(
        line("westus3").contains("-> eastus (one way)"),
        "{}",
        line("westus3")
    );
    assert!(line("brazilsouth").contains("-> southcentralus (one way)"));
    assert!(
        line("qatarcentral").ends_with('-'),
        "unpaired: {}",
        line("qatarcentral")
    );
}
