//! Tests for parse, validate, load and parse_duration.

use std::fmt::Write as _;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const E: Severity = Severity::Error;

/// Expected problems: severity, exact path, message substring.
type Expected<'a> = &'a [(Severity, &'a str, &'a str)];
const W: Severity = Severity::Warning;

/// The value of `TEST_KEY`; must never show up in a problem or a `Debug` string.
const SECRET: &str = "s3cr3t-value-123";

/// A valid config; every case appends a fragment (new sections, or more regions, accounts and
/// tenants, which then have index 3, 3 and 1).
const BASE: &str = r#"
[[region]]
name = "eastus"
pair = "westus"

[[region]]
name = "westus"
pair = "eastus"

[[region]]
name = "centralus"

[[account]]
name = "east"
region = "eastus"
url = "http://127.0.0.1:9001"

[[account]]
name = "west"
region = "westus"
url = "http://127.0.0.1:9002"

[[account]]
name = "central"
region = "centralus"
url = "http://127.0.0.1:9003"

[[tenant]]
name = "contoso"
hosts = ["contoso.example.com", "*.contoso.example.com"]
path_prefix = "/contoso"
primary = "east"
secondary = "west"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "TEST_KEY" => Some(SECRET.to_owned()),
        "CRLF_VAR" => Some(format!("{SECRET}\r\nx-injected: 1")),
        "EMPTY_VAR" => Some(String::new()),
        "file:/run/secrets/key" => Some(format!("file-{SECRET}")),
        _ if name.starts_with("PAIRGATE_EXAMPLE_") => Some(format!("example-{SECRET}")),
        _ => None,
    }
}

/// All problems `load` reports, errors and warnings alike.
fn problems(text: &str) -> Vec<Problem> {
    match load(text, &env) {
        Ok(loaded) => loaded.warnings,
        Err(problems) => problems,
    }
}

/// Loads `BASE` + `fragment` and asserts exactly the `expected` problems, in order: severity,
/// exact path, message substring.
fn check(fragment: &str, expected: Expected<'_>) {
    let text = format!("{BASE}\n{fragment}");
    let got = problems(&text);
    let shown: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "fragment:\n{fragment}\ngot: {shown:#?}"
    );
    for ((severity, path, message), problem) in expected.iter().zip(&got) {
        assert!(
            problem.severity == *severity
                && problem.path == *path
                && problem.message.contains(message),
            "fragment:\n{fragment}\nexpected {severity:?} {path}: ..{message}..\ngot: {shown:#?}"
        );
        assert!(
            !problem.to_string().contains(SECRET),
            "secret leaked: {problem}"
        );
    }
}

#[test]
fn base_is_valid() {
    check("", &[]);
}

#[test]
fn each_rule_reports_its_path_and_message() {
    #[rustfmt::skip]
    let cases: &[(&str, Expected<'_>)] = &[
        // [listen], [routing], [runtime], [limits], [upstream]
        ("[listen]\nhttp = \"localhost:80\"", &[(E, "listen.http", "not a socket address")]),
        ("[routing]\ntenant_header = \"x tenant\"", &[(E, "routing.tenant_header", "not a valid header name")]),
        ("[routing]\ntenant_header = \"Connection\"", &[(E, "routing.tenant_header", "hop-by-hop")]),
        ("[runtime]\nworker_threads = 0", &[(E, "runtime.worker_threads", "at least 1")]),
        ("[runtime]\nshutdown_delay = \"soon\"", &[(E, "runtime.shutdown_delay", "a number and a unit")]),
        ("[limits]\nmax_request_header_bytes = 512", &[(E, "limits.max_request_header_bytes", "at least 1024")]),
        ("[limits]\nheader_read_timeout = \"0s\"", &[(E, "limits.header_read_timeout", "greater than 0")]),
        ("[limits]\nheader_read_timeout = \"10\"", &[(E, "limits.header_read_timeout", "missing unit")]),
        ("[limits]\nidle_timeout = \"0s\"", &[(E, "limits.idle_timeout", "greater than 0")]),
        ("[limits]\nhttp2_keepalive_interval = \"0s\"", &[(E, "limits.http2_keepalive_interval", "greater than 0")]),
        ("[limits]\nhttp2_keepalive_timeout = \"0s\"", &[(E, "limits.http2_keepalive_timeout", "greater than 0")]),
        ("[upstream]\nconnect_timeout = \"-1s\"", &[(E, "upstream.connect_timeout", "negative")]),
        ("[limits]\nmax_connections = 9000000000000000000", &[(E, "limits.max_connections", "at most 10000000")]),
        ("[upstream]\nmax_idle_per_account = -1", &[(E, "upstream.max_idle_per_account", "at least 0")]),
        ("[upstream]\nmax_replay_body = -5", &[(E, "upstream.max_replay_body", "at least 0")]),
        // [cluster]
        ("[cluster]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nlease_ttl = \"0.000002ms\"", &[(E, "cluster.lease_ttl", "lease_ttl / 3 (the keepalive and heartbeat period) rounds to zero")]),
        ("[cluster]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nlease_ttl = \"0.000003ms\"", &[]),
        ("[cluster]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nlease_ttl = \"0s\"", &[(E, "cluster.lease_ttl", "greater than 0")]),
        // [health]
        ("[health]\ntimeout = \"2s\"", &[(E, "health.timeout", "must be less than interval")]),
        ("[health]\ninterval = \"1s\"", &[(E, "health.interval", "must be less than interval")]),
        ("[health]\ninterval = \"0ms\"", &[(E, "health.interval", "greater than 0")]),
        ("[health]\nrise = 0", &[(E, "health.rise", "at least 1")]),
        ("[health]\nfall = 0", &[(E, "health.fall", "at least 1")]),
        ("[health]\nfall = 5000000000", &[(E, "health.fall", "too large")]),
        ("[health]\nexpect = [\"200\", \"600\"]", &[(E, "health.expect[1]", "100-599")]),
        ("[health]\nexpect = [\"300-200\"]", &[(E, "health.expect[0]", "backwards")]),
        ("[health]\nexpect = [\"2xx\"]", &[(E, "health.expect[0]", "expected a status")]),
        ("[health]\nexpect = []", &[(E, "health.expect", "at least one")]),
        ("[health]\nmethod = \"GE T\"", &[(E, "health.method", "not a valid HTTP method")]),
        ("[health]\ntype = \"udp\"", &[(E, "health.type", "\"http\" or \"tcp\"")]),
        ("[health]\npath = \"healthz\"", &[(E, "health.path", "must start with")]),
        ("[health]\nfast_interval = \"5s\"", &[(E, "health.fast_interval", "must not exceed interval")]),
        ("[health]\ntype = \"tcp\"\npath = \"/x\"", &[(W, "health.path", "ignored")]),
        ("[health]\ntype = \"tcp\"\nuse_account_prefix = true", &[(W, "health.use_account_prefix", "ignored")]),
        ("[health]\npassive_consecutive_5xx = -1", &[(E, "health.passive_consecutive_5xx", "outside 0..=10000")]),
        ("[health]\npassive_consecutive_5xx = 10001", &[(E, "health.passive_consecutive_5xx", "outside 0..=10000")]),
        ("[health]\npassive_ejection = \"0s\"", &[(E, "health.passive_ejection", "greater than 0")]),
        ("[health]\npassive_ejection = \"2h\"", &[(E, "health.passive_ejection", "longer than 3600s")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nhealth = { passive_ejection = \"soon\" }", &[(E, "account[3].health.passive_ejection", "not a duration")]),
        ("[health]\nheaders = { \"x-probe\" = \"${UNSET_VAR}\" }", &[(E, "health.headers.x-probe", "UNSET_VAR is not set")]),
        // [failover]
        ("[failover]\nregion_outage_ratio = 0.0", &[(E, "failover.region_outage_ratio", "outside (0, 1]")]),
        ("[failover]\nregion_outage_ratio = 1.5", &[(E, "failover.region_outage_ratio", "outside (0, 1]")]),
        ("[failover]\nregion_outage_ratio = nan", &[(E, "failover.region_outage_ratio", "outside (0, 1]")]),
        ("[failover]\nfailback = \"sometimes\"", &[(E, "failover.failback", "\"auto\" or \"manual\"")]),
        ("[failover]\nboth_down = \"panic\"", &[(E, "failover.both_down", "\"stay\" or \"reject\"")]),
        ("[failover]\nhold_down = \"soon\"", &[(E, "failover.hold_down", "not a duration")]),
        // [[region]]
        ("[[region]]\nname = \"eastus\"", &[(E, "region[3].name", "duplicate region \"eastus\" (first defined at region[0])")]),
        ("[[region]]\nname = \"east us\"", &[(E, "region[3].name", "may contain only")]),
        ("[[region]]\npair = \"eastus\"", &[(E, "region[3].name", "missing"), (E, "region[3].pair", "pairs with \"eastus\"")]),
        ("[[region]]\nname = \"n\"\npair = \"nowhere\"", &[(E, "region[3].pair", "unknown region \"nowhere\"")]),
        ("[[region]]\nname = \"n\"\npair = \"n\"", &[(E, "region[3].pair", "itself")]),
        ("[[region]]\nname = \"n\"\npair = \"centralus\"", &[(E, "region[3].pair", "\"centralus\" does not pair back")]),
        ("[[region]]\nname = \"n\"\npair = \"eastus\"", &[(E, "region[3].pair", "\"eastus\" pairs with \"westus\"")]),
        // [[account]]
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"", &[(E, "account[3].url", "missing")]),
        ("[[account]]\nname = \"x\"\nurl = \"http://h:1\"", &[(E, "account[3].region", "missing")]),
        ("[[account]]\nname = \"x\"\nregion = \"nowhere\"\nurl = \"http://h:1\"", &[(E, "account[3].region", "unknown region \"nowhere\"")]),
        ("[[account]]\nname = \"east\"\nregion = \"eastus\"\nurl = \"http://h:1\"", &[(E, "account[3].name", "duplicate account \"east\"")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"ftp://h:1\"", &[(E, "account[3].url", "scheme")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"127.0.0.1:9000\"", &[(E, "account[3].url", "must start with http://")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://user:pw@h:1\"", &[(E, "account[3].url", "credentials")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1/base\"", &[(E, "account[3].url", "put the path in path_prefix")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1/?a=1\"", &[(E, "account[3].url", "query")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1#f\"", &[(E, "account[3].url", "fragment")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:99999\"", &[(E, "account[3].url", "invalid port")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:0\"", &[(E, "account[3].url", "port 0")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://127.1:1\"", &[(E, "account[3].url", "dotted-quad")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://0x7f.1:1\"", &[(E, "account[3].url", "dotted-quad")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://0x7f000001:1\"", &[(E, "account[3].url", "dotted-quad")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://017.0.0.1:1\"", &[(E, "account[3].url", "dotted-quad")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://1.2.3.256:1\"", &[(E, "account[3].url", "dotted-quad")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://2130706433:1\"", &[(E, "account[3].url", "dotted-quad")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://a..b:1\"", &[(E, "account[3].url", "not a valid DNS name")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://-a.b:1\"", &[(E, "account[3].url", "not a valid DNS name")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://[::g]:1\"", &[(E, "account[3].url", "not a valid IPv6")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h\"\nca = \"ca.pem\"", &[(E, "account[3].ca", "only applies to https:// accounts")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"https://h\"\nclient_cert = \"c.pem\"", &[(E, "account[3].client_key", "client_cert needs client_key")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"https://h\"\nsni = \"*.h\"", &[(E, "account[3].sni", "not a wildcard")]),
        ("[listen]\nhttps = \"127.0.0.1:8443\"", &[(E, "listen.https", "needs at least one [[certificate]]")]),
        ("[listen]\nhttps = \"127.0.0.1:8443\"\n[[certificate]]\nhosts = [\"a.example.com\"]\ncert = \"a.pem\"\n[[certificate]]\nhosts = [\"A.example.com\"]\ncert = \"b.pem\"\nkey = \"b.key\"", &[(E, "certificate[0].key", "missing"), (E, "certificate[1].hosts[0]", "already served by certificate[0]")]),
        ("[listen]\nhttps = \"127.0.0.1:8443\"\n[[certificate]]\ndefault = true\ncert = \"a.pem\"\nkey = \"a.key\"\n[[certificate]]\ndefault = true\ncert = \"b.pem\"\nkey = \"b.key\"", &[(E, "certificate[1].default", "already the default")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\npath_prefix = \"a\"", &[(E, "account[3].path_prefix", "must start with \"/\"")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\npath_prefix = \"/a/\"", &[(E, "account[3].path_prefix", "must not end with \"/\"")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\npath_prefix = \"/a//b\"", &[(E, "account[3].path_prefix", "\"//\"")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\npath_prefix = \"/a/../b\"", &[(E, "account[3].path_prefix", "segments")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\npath_prefix = \"/a?b\"", &[(E, "account[3].path_prefix", "\"?\" or \"#\"")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { \"bad name\" = \"v\" }", &[(E, "account[3].headers.bad name", "not a valid header name")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { x-a = \"${NOPE}\" }", &[(E, "account[3].headers.x-a", "environment variable NOPE is not set")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { x-a = \"${NOPE}-${ALSO_NOPE}\" }", &[(E, "account[3].headers.x-a", "NOPE is not set"), (E, "account[3].headers.x-a", "ALSO_NOPE is not set")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { x-a = \"${file:/run/secrets/missing}\" }", &[(E, "account[3].headers.x-a", "secret file /run/secrets/missing cannot be read")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { x-a = \"${file:relative/key}\" }", &[(E, "account[3].headers.x-a", "needs an absolute path")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { x-a = \"Bearer ${TEST_KEY\" }", &[(E, "account[3].headers.x-a", "unclosed \"${\"")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { x-a = \"${1BAD}\" }", &[(E, "account[3].headers.x-a", "invalid variable name")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { x-a = \"${CRLF_VAR}\" }", &[(E, "account[3].headers.x-a", "not a valid header value after ${...} expansion")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { x-a = \"a\\u0000b\" }", &[(E, "account[3].headers.x-a", "not a valid header value (")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = { X-Key = \"a\", x-key = \"b\" }", &[(E, "account[3].headers.x-key", "duplicate header \"x-key\"")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nhealth = { timeout = \"5s\" }", &[(E, "account[3].health.timeout", "must be less than interval (2s)")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nhealth = { interval = \"500ms\" }", &[(E, "account[3].health.interval", "timeout (1s) must be less than interval (500ms)")]),
        ("[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nhealth = { rise = -1 }", &[(E, "account[3].health.rise", "at least 1")]),
        // [[tenant]]
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]", &[(E, "tenant[1].primary", "missing")]),
        ("[[tenant]]\nhosts = [\"t.example.com\"]\nprimary = \"east\"", &[(E, "tenant[1].name", "missing")]),
        ("[[tenant]]\nname = \"contoso\"\nhosts = [\"t.example.com\"]\nprimary = \"east\"", &[(E, "tenant[1].name", "duplicate tenant \"contoso\" (first defined at tenant[0])")]),
        ("[[tenant]]\nname = \"a/b\"\nhosts = [\"t.example.com\"]\nprimary = \"east\"", &[(E, "tenant[1].name", "may contain only")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"nope\"", &[(E, "tenant[1].primary", "unknown account \"nope\"")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"east\"\nsecondary = \"nope\"", &[(E, "tenant[1].secondary", "unknown account \"nope\"")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"east\"\nsecondary = \"east\"", &[(E, "tenant[1].secondary", "also the primary")]),
        ("[[account]]\nname = \"east2\"\nregion = \"eastus\"\nurl = \"http://h:1\"\n[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"east\"\nsecondary = \"east2\"", &[(E, "tenant[1].secondary", "both in region \"eastus\"")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"east\"\nsecondary = \"central\"", &[(W, "tenant[1].secondary", "\"eastus\" and secondary region \"centralus\" are not a pair")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com:8080\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "must not include a port")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"a..example.com\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "empty label")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"a_b.example.com\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "invalid character '_'")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "empty host")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"*\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "bare \"*\"")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"a.*.example.com\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "whole leading label")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"*t.example.com\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "whole leading label")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"bücher.example\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "punycode")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"-a.example.com\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "start or end with '-'")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\", \"Contoso.Example.COM.\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[1]", "host \"contoso.example.com\" is claimed by both tenant \"contoso\" and tenant \"t\"")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"*.contoso.example.com\"]\nprimary = \"east\"", &[(E, "tenant[1].hosts[0]", "wildcard \"*.contoso.example.com\" is claimed by both tenant \"contoso\" and tenant \"t\"")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\", \"T.example.com\"]\nprimary = \"east\"", &[(W, "tenant[1].hosts[1]", "listed twice")]),
        ("[[tenant]]\nname = \"t\"\npath_prefix = \"/contoso\"\nprimary = \"east\"", &[(E, "tenant[1].path_prefix", "path_prefix \"/contoso\" is claimed by both tenant \"contoso\" and tenant \"t\"")]),
        ("[[tenant]]\nname = \"t\"\npath_prefix = \"/\"\nprimary = \"east\"", &[(E, "tenant[1].path_prefix", "would match every request")]),
        ("[[tenant]]\nname = \"t\"\npath_prefix = \"/t/./x\"\nprimary = \"east\"", &[(E, "tenant[1].path_prefix", "segments")]),
        ("[[tenant]]\nname = \"t\"\nprimary = \"east\"", &[(W, "tenant[1]", "unreachable")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"east\"\nfailover = { failback = \"never\" }", &[(E, "tenant[1].failover.failback", "\"auto\" or \"manual\"")]),
        ("[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"east\"\nfailover = { hold_down = \"1x\" }", &[(E, "tenant[1].failover.hold_down", "not a duration")]),
        // [[account]] auth = { ... } and [azure]
        (&vi("type = \"azure-video-indexer\", credential = \"managed-identity\""), &[(E, "account[3].auth.resource_id", "missing; type = \"azure-video-indexer\" needs resource_id")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\"")), &[(E, "account[3].auth.credential", "missing; one of \"managed-identity\"")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"client-secret\", tenant_id = \"t\", client_id = \"c\"")), &[(E, "account[3].auth.client_secret", "missing; credential = \"client-secret\" needs client_secret")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"client-secret\", client_id = \"c\", client_secret = \"${{TEST_KEY}}\"")), &[(E, "account[3].auth.tenant_id", "missing")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"client-secret\", tenant_id = \"t\", client_id = \"c\", client_secret = \"${{UNSET_VAR}}\"")), &[(E, "account[3].auth.client_secret", "UNSET_VAR is not set")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"client-secret\", tenant_id = \"t\", client_id = \"c\", client_secret = \"literal\"")), &[(W, "account[3].auth.client_secret", "literal secret")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"workload-identity\", tenant_id = \"t\"")), &[(E, "account[3].auth.client_id", "missing")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"password\"")), &[(E, "account[3].auth.credential", "\"password\" is not")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"managed-identity\", permission = \"Owner\"")), &[(E, "account[3].auth.permission", "\"Contributor\" or \"Reader\"")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"managed-identity\", scope = \"Tenant\"")), &[(E, "account[3].auth.scope", "\"Account\", \"Video\" or \"Project\"")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"managed-identity\", send_as = \"cookie\"")), &[(E, "account[3].auth.send_as", "\"query\" or \"header\"")]),
        (&vi(&format!("type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"managed-identity\", api_key = \"${{TEST_KEY}}\"")), &[(E, "account[3].auth.api_key", "does not apply to type = \"azure-video-indexer\"")]),
        (&vi("type = \"azure-video-indexer\", resource_id = \"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/accounts/x\", credential = \"managed-identity\""), &[(E, "account[3].auth.resource_id", "not a Video Indexer account resource id")]),
        (&vi("type = \"azure-video-indexer\", resource_id = \"/subscriptions//resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/x\", credential = \"managed-identity\""), &[(E, "account[3].auth.resource_id", "not a Video Indexer account resource id")]),
        (&vi("type = \"kerberos\""), &[(E, "account[3].auth.type", "\"kerberos\" is not one of")]),
        (&vi("resource_id = \"x\""), &[(E, "account[3].auth.type", "missing; one of")]),
        (&vi("type = \"static\", client_id = \"c\""), &[(E, "account[3].auth.client_id", "does not apply to type = \"static\"")]),
        (&vi("type = \"video-indexer-classic\", location = \"trial\", account_id = \"a\""), &[(E, "account[3].auth.api_key", "missing; type = \"video-indexer-classic\" needs api_key")]),
        (&vi("type = \"video-indexer-classic\", api_key = \"${TEST_KEY}\", account_id = \"a\""), &[(E, "account[3].auth.location", "missing")]),
        (&vi("type = \"video-indexer-classic\", api_key = \"${EMPTY_VAR}\", location = \"trial\", account_id = \"a\""), &[(E, "account[3].auth.api_key", "empty")]),
        (&vi("type = \"oauth2-client-credentials\", client_id = \"c\", client_secret = \"${TEST_KEY}\""), &[(E, "account[3].auth.token_url", "missing")]),
        (&vi("type = \"oauth2-client-credentials\", token_url = \"ftp://h/token\", client_id = \"c\", client_secret = \"${TEST_KEY}\""), &[(E, "account[3].auth.token_url", "scheme")]),
        (&vi("type = \"azure-video-indexer\", credential = \"managed-identity\", bogus = 1"), &[(E, "account[3].auth.resource_id", "missing"), (E, "account[3].auth.bogus", "unknown key")]),
        ("[azure]\narm_endpoint = \"management.azure.com\"", &[(E, "azure.arm_endpoint", "scheme must be")]),
        ("[azure]\nlogin_endpoint = \"https://login.example/x\"", &[(E, "azure.login_endpoint", "without a path")]),
        ("[azure]\nimds_endpoint = \"http://u:p@169.254.169.254\"", &[(E, "azure.imds_endpoint", "credentials")]),
    ];
    for (fragment, expected) in cases {
        check(fragment, expected);
    }
}

/// ARM id used by the `auth` cases.
const RID: &str =
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/vi";

/// A fourth account (index 3) with `auth = { INNER }`.
fn vi(inner: &str) -> String {
    format!(
        "[[account]]\nname = \"vi\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nauth = {{ {inner} }}"
    )
}

#[test]
fn account_auth_is_read_with_defaults() {
    let text = format!(
        "{BASE}\n[azure]\narm_endpoint = \"http://127.0.0.1:9/\"\n{}\n[account.auth]\ntype = \"azure-video-indexer\"\nresource_id = \"{}\"\ncredential = \"client-secret\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"${{TEST_KEY}}\"\n{}\n",
        vi(
            "type = \"video-indexer-classic\", api_key = \"${TEST_KEY}\", location = \"trial\", account_id = \"a1\""
        ),
        RID.to_ascii_uppercase()
            .replace("/SUBSCRIPTIONS", "/subscriptions"),
        "[[account]]\nname = \"vi3\"\nregion = \"westus\"\nurl = \"http://h:2\"\nauth = { type = \"azure-video-indexer\", resource_id = \"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.VideoIndexer/accounts/vi\", credential = \"managed-identity\", permission = \"Reader\", send_as = \"header\" }",
    );
    let text = text.replacen(
        "[[account]]\nname = \"vi\"",
        "[[account]]\nname = \"vi1\"",
        1,
    );
    // The second `vi` account is the `[account.auth]` table form.
    let text = text.replacen(
        "\n[account.auth]",
        "\n[[account]]\nname = \"vi2\"\nregion = \"eastus\"\nurl = \"http://h:3\"\n[account.auth]",
        1,
    );
    let loaded = load(&text, &env)
        .map_err(|p| format!("{p:#?}"))
        .expect("valid");
    let c = &loaded.config;
    assert_eq!(c.azure.arm_endpoint, "http://127.0.0.1:9");
    assert_eq!(c.azure.login_endpoint, "https://login.microsoftonline.com");
    assert_eq!(c.azure.imds_endpoint, "http://169.254.169.254");
    assert_eq!(c.accounts[0].auth, None);
    let Some(AccountAuth::VideoIndexerClassic(classic)) = &c.accounts[3].auth else {
        panic!("classic: {:?}", c.accounts[3].auth);
    };
    assert_eq!(
        (
            classic.location.as_str(),
            classic.allow_edit,
            classic.send_as
        ),
        ("trial", true, SendAs::Query)
    );
    assert_eq!(classic.api_key.expose(), SECRET);
    let Some(AccountAuth::AzureVideoIndexer(arm2)) = &c.accounts[4].auth else {
        panic!("arm: {:?}", c.accounts[4].auth);
    };
    let Some(AccountAuth::AzureVideoIndexer(arm3)) = &c.accounts[5].auth else {
        panic!("arm: {:?}", c.accounts[5].auth);
    };
    assert_eq!(
        arm2.resource_id, arm3.resource_id,
        "resource ids compare case-insensitively"
    );
    assert_eq!(arm2.resource_id.name, "VI");
    assert_eq!(
        (arm2.permission, arm2.scope, arm2.send_as),
        (Permission::Contributor, TokenScope::Account, SendAs::Query)
    );
    assert_eq!(
        (arm3.permission, arm3.send_as),
        (Permission::Reader, SendAs::Header)
    );
    assert_eq!(
        arm3.credential,
        EntraCredential::ManagedIdentity { client_id: None }
    );
    let EntraCredential::ClientSecret { client_secret, .. } = &arm2.credential else {
        panic!("client-secret");
    };
    assert_eq!(client_secret.expose(), SECRET);
    assert!(
        !format!("{c:?}").contains(SECRET),
        "secrets stay out of Debug"
    );
}

#[test]
fn auth_problems_point_at_their_keys() {
    let text = format!(
        "{BASE}\n{}\n",
        vi(&format!(
            "type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"client-secret\", tenant_id = \"t\", client_id = \"c\", client_secret = \"${{UNSET_VAR}}\""
        ))
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("auth = "))
        .expect("line")
        + 1;
    let got = problems(&text);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].path, "account[3].auth.client_secret");
    let column = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.find("client_secret"))
        .expect("col")
        + 1;
    assert_eq!(got[0].location, Some(Location { line, column }));
    // A missing key points at the `auth` table that lacks it.
    let got = problems(&format!(
        "{BASE}\n{}\n",
        vi("type = \"azure-video-indexer\", credential = \"managed-identity\"")
    ));
    assert_eq!(got[0].location, Some(Location { line, column: 1 }));
}

#[test]
fn region_outage_ratio_that_a_minority_can_trip_is_warned() {
    // eastus gets three more accounts (four in all).
    let more: String = (2..=4)
        .map(|i| {
            format!(
                "[[account]]\nname = \"east{i}\"\nregion = \"eastus\"\nurl = \"http://h:{i}\"\n"
            )
        })
        .collect();
    let tenant = |ratio: &str| {
        format!(
            "[[tenant]]\nname = \"t\"\nhosts = [\"t.example.com\"]\nprimary = \"east2\"\nsecondary = \"west\"\nfailover = {{ region_outage_ratio = {ratio} }}\n"
        )
    };
    #[rustfmt::skip]
    let cases: Vec<(String, Expected<'_>)> = vec![
        // Two of four is not a majority: warned, at the key that chose the ratio.
        (format!("[failover]\nregion_outage_ratio = 0.25\n{more}"), &[(W, "failover.region_outage_ratio", "2 unhealthy accounts of the 4 in region \"eastus\"")]),
        (format!("{more}{}", tenant("0.3")), &[(W, "tenant[1].failover.region_outage_ratio", "2 unhealthy accounts of the 4")]),
        // The default needs three of four; a tiny ratio over a two-account region still needs
        // both (one account alone never trips it): neither is warned.
        (more.clone(), &[]),
        ("[failover]\nregion_outage_ratio = 0.01".to_owned(), &[]),
        (format!("{more}{}", tenant("0.5")), &[]),
    ];
    for (fragment, expected) in &cases {
        check(fragment, expected);
    }
}

#[test]
fn managed_headers_cannot_be_injected() {
    for name in validate::MANAGED_HEADER_NAMES {
        let upper = name.to_ascii_uppercase();
        check(
            &format!(
                "[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = {{ {upper} = \"v\" }}"
            ),
            &[(E, &format!("account[3].headers.{upper}"), "cannot be set")],
        );
    }
}

#[test]
fn tenant_header_makes_a_hostless_tenant_reachable() {
    check(
        "[routing]\ntenant_header = \"X-Tenant-ID\"\n[[tenant]]\nname = \"t\"\nprimary = \"east\"",
        &[],
    );
    let loaded = load(
        &format!("{BASE}\n[routing]\ntenant_header = \"X-Tenant-ID\""),
        &env,
    )
    .expect("valid");
    assert_eq!(
        loaded.config.routing.tenant_header.as_deref(),
        Some("x-tenant-id")
    );
}

#[test]
fn asymmetric_pairs_are_reported_once_per_region() {
    // a -> b, b -> c, c -> b: a is the only region whose pair does not point back.
    let text = r#"
[[region]]
name = "a"
pair = "b"
[[region]]
name = "b"
pair = "c"
[[region]]
name = "c"
pair = "b"
"#;
    let got = problems(text);
    let paths: Vec<&str> = got.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["region[0].pair"], "{got:#?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = format!(
        r#"{BASE}
[listen]
http = "nope"
htp = "x"

[limits]
max_request_header_bytes = 1
header_read_timeout = "ten seconds"

[health]
timeout = "3s"
rise = 0

[failover]
region_outage_ratio = 2

[[region]]
name = "eastus"

[[account]]
name = "bad"
region = "moon"
url = "http://u:p@h"
headers = {{ connection = "close", x-a = "${{UNSET}}" }}
colour = "blue"

[[tenant]]
name = "contoso"
hosts = ["*"]
primary = "ghost"
secondary = "ghost2"
failover = {{ both_down = "maybe", extra = 1 }}
"#
    );
    let got = problems(&text);
    let mut paths: Vec<&str> = got.iter().map(|p| p.path.as_str()).collect();
    paths.sort_unstable();
    let mut expected = vec![
        "listen.http",
        "listen.htp",
        "limits.max_request_header_bytes",
        "limits.header_read_timeout",
        "health.timeout",
        "health.rise",
        "failover.region_outage_ratio",
        "region[3].name",
        "account[3].region",
        "account[3].url",
        "account[3].headers.connection",
        "account[3].headers.x-a",
        "account[3].colour",
        "tenant[1].name",
        "tenant[1].hosts[0]",
        "tenant[1].primary",
        "tenant[1].secondary",
        "tenant[1].failover.both_down",
        "tenant[1].failover.extra",
    ];
    expected.sort_unstable();
    assert_eq!(paths, expected, "{got:#?}");
    assert!(
        got.iter().all(|p| p.severity == E && p.location.is_some()),
        "{got:#?}"
    );
    // errors come in document order
    let lines: Vec<usize> = got
        .iter()
        .filter_map(|p| p.location.map(|l| l.line))
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn unknown_keys_at_every_depth_are_reported_with_locations() {
    let text = "[listn]\nhttp = \"x\"\n\n[listen]\nhtp = \"1\"\n\n[[region]]\nname = \"r\"\nnme = \"q\"\n\n\
                [[account]]\nname = \"a\"\nregion = \"r\"\nurl = \"http://h:1\"\nhealth = { intervl = \"1s\", headers = { x = \"1\" } }\n\n\
                [[tenant]]\nname = \"t\"\nhostz = [\"t.example.com\"]\nprimary = \"a\"\n  failover = { x = 1 }\n";
    let (_, unknown) = parse(text).expect("syntax is fine");
    let got: Vec<(&str, usize, usize, &str)> = unknown
        .iter()
        .map(|p| {
            assert_eq!(p.severity, E);
            let l = p.location.expect("located");
            (p.path.as_str(), l.line, l.column, p.message.as_str())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("listn", 1, 2, "unknown key; did you mean `listen`?"),
            ("listen.htp", 5, 1, "unknown key; did you mean `http`?"),
            ("region[0].nme", 9, 1, "unknown key; did you mean `name`?"),
            (
                "account[0].health.intervl",
                15,
                12,
                "unknown key; did you mean `interval`?"
            ),
            (
                "tenant[0].hostz",
                19,
                1,
                "unknown key; did you mean `hosts`?"
            ),
            ("tenant[0].failover.x", 21, 16, "unknown key"),
        ]
    );
    // load reports them together with the validation problems
    let all = problems(text);
    assert!(
        all.iter()
            .any(|p| p.path == "tenant[0]" && p.message.contains("unreachable"))
    );
    assert_eq!(
        all.iter()
            .filter(|p| p.message.starts_with("unknown key"))
            .count(),
        6
    );
}

#[test]
fn a_duration_written_as_a_number_says_how_to_write_it() {
    for (fragment, path) in [
        ("[health]\ninterval = 2", "health.interval"),
        (
            "[upstream]\nconnect_timeout = 1.5",
            "upstream.connect_timeout",
        ),
    ] {
        let errors = parse(&format!("{BASE}\n{fragment}")).expect_err("a type error");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].path, path);
        assert!(
            errors[0]
                .message
                .contains("durations are strings such as \"2s\""),
            "{}",
            errors[0].message
        );
    }
    // Another number where a string belongs gets no duration hint.
    let errors = parse(&format!("{BASE}\n[listen]\nhttp = 8080")).expect_err("a type error");
    assert!(
        !errors[0].message.contains("duration"),
        "{}",
        errors[0].message
    );
}

#[test]
fn syntax_and_type_errors_are_located() {
    let errors = parse("a = 1\nb = = 2\nc = \"x\nd = 4\n").expect_err("syntax errors");
    assert!(errors.len() >= 2, "all syntax errors: {errors:#?}");
    assert_eq!(errors[0].location.map(|l| l.line), Some(2));
    assert!(errors.iter().any(|e| e.location.map(|l| l.line) == Some(3)));

    let errors = parse("[[region]]\nname = \"r\"\n\n[runtime]\nworker_threads = \"two\"\n")
        .expect_err("type error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "runtime.worker_threads");
    assert_eq!(
        errors[0].location,
        Some(Location {
            line: 5,
            column: 18
        })
    );
    assert!(
        errors[0].message.contains("invalid type"),
        "{}",
        errors[0].message
    );

    let errors =
        parse("[[tenant]]\nname = \"a\"\n[[tenant]]\nname = \"b\"\nhosts = \"b.example\"\n")
            .expect_err("type error");
    assert_eq!(errors[0].path, "tenant[1].hosts");
    assert_eq!(errors[0].location.map(|l| l.line), Some(5));
    assert!(
        errors[0].message.ends_with("expected an array"),
        "{}",
        errors[0].message
    );

    let errors = parse("[[account]]\nname = \"a\"\nhealth = 3\n").expect_err("type error");
    assert_eq!(errors[0].path, "account[0].health");
    assert!(
        errors[0].message.ends_with("expected a table"),
        "{}",
        errors[0].message
    );
}

#[test]
fn validation_problems_point_at_their_keys() {
    let text = format!(
        "{BASE}\n[[tenant]]\nname = \"t\"\nhosts = [\"ok.example\", \"bad host\"]\nprimary = \"east\"\n"
    );
    let got = problems(&text);
    let line = text
        .lines()
        .position(|l| l.starts_with("hosts = [\"ok"))
        .expect("line")
        + 1;
    assert_eq!(got[0].path, "tenant[1].hosts[1]");
    assert_eq!(got[0].location, Some(Location { line, column: 24 }));
    assert_eq!(
        render(&got[0], "gw.toml"),
        format!(
            "gw.toml:{line}:24: tenant[1].hosts[1]: \"bad host\": invalid character ' ' (labels hold letters, digits and '-')"
        )
    );
    // a key left at its default points at the table that holds the conflicting one
    let got = problems("[health]\ninterval = \"1s\"\n");
    assert_eq!(got[0].location, Some(Location { line: 2, column: 1 }));
}

#[test]
fn display_and_render() {
    let mut p = Problem {
        severity: E,
        path: "tenant[3].secondary".to_owned(),
        message: "unknown account \"b\"".to_owned(),
        location: None,
    };
    assert_eq!(p.to_string(), "tenant[3].secondary: unknown account \"b\"");
    assert_eq!(
        render(&p, "a.toml"),
        "a.toml: tenant[3].secondary: unknown account \"b\""
    );
    p.location = Some(Location {
        line: 7,
        column: 13,
    });
    p.severity = W;
    assert_eq!(
        render(&p, "a.toml"),
        "a.toml:7:13: warning: tenant[3].secondary: unknown account \"b\""
    );
    p.path.clear();
    assert_eq!(p.to_string(), "warning: unknown account \"b\"");
}

#[test]
fn defaults_fill_an_almost_empty_config() {
    let loaded = load(
        "[[region]]\nname = \"r\"\n[[account]]\nname = \"a\"\nregion = \"r\"\nurl = \"HTTP://Example.COM:81/\"\n",
        &env,
    )
    .expect("valid");
    assert!(loaded.warnings.is_empty());
    let c = loaded.config;
    assert_eq!(c.listen.http, "127.0.0.1:8080".parse().expect("addr"));
    assert_eq!(c.routing.tenant_header, None);
    assert_eq!(c.runtime.worker_threads, None);
    assert_eq!(c.runtime.shutdown_delay, Duration::ZERO);
    assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.max_request_header_bytes, 65536);
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.upstream.response_header_timeout, Duration::from_secs(30));
    assert_eq!(c.upstream.read_timeout, Duration::from_secs(60));
    assert_eq!(c.limits.send_timeout, Duration::from_secs(60));
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.limits.http2_keepalive_interval, Duration::from_secs(30));
    assert_eq!(c.limits.http2_keepalive_timeout, Duration::from_secs(20));
    assert_eq!(c.upstream.idle_timeout, Duration::from_secs(90));
    assert_eq!(c.upstream.max_idle_per_account, 256);
    assert_eq!(c.upstream.max_replay_body, 65536);
    let expected_health = HealthCheck {
        kind: ProbeKind::Http {
            method: "GET".to_owned(),
            path: "/healthz".to_owned(),
            expect: vec![(200, 399)],
            headers: vec![],
            use_account_prefix: false,
            use_account_headers: false,
        },
        interval: Duration::from_secs(2),
        fast_interval: Duration::from_millis(500),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 3,
        passive_consecutive_5xx: 5,
        passive_ejection: Duration::from_secs(30),
    };
    assert_eq!(c.health, expected_health);
    assert_eq!(c.failover.failback, Failback::Auto);
    assert_eq!(c.failover.hold_down, Duration::from_secs(30));
    assert_eq!(c.failover.both_down, BothDown::Stay);
    assert!((c.failover.region_outage_ratio - 0.5).abs() < f64::EPSILON);
    let a = &c.accounts[0];
    assert_eq!(
        (a.scheme, a.authority.as_str(), a.path_prefix.as_str()),
        (Scheme::Http, "example.com:81", "")
    );
    assert_eq!(a.health, expected_health);
    assert!(!a.http2);
}

#[test]
fn overrides_merge_over_the_global_tables() {
    let text = format!(
        r#"{BASE}
[health]
path = "/status"
interval = "4s"
headers = {{ x-probe = "${{TEST_KEY}}" }}

[failover]
failback = "manual"
hold_down = "1m"

[[account]]
name = "x"
region = "eastus"
url = "http://h:1"
path_prefix = "/eastus/Accounts/1111"
headers = {{ Ocp-Apim-Subscription-Key = "k=${{TEST_KEY}};" }}
http2 = true
health = {{ interval = "200ms", timeout = "100ms", method = "head", use_account_prefix = true, passive_consecutive_5xx = 0 }}

[[account]]
name = "y"
region = "westus"
url = "http://h:2"
health = {{ type = "tcp" }}

[[tenant]]
name = "t"
hosts = ["T.Example.com.", "*.T.example.com"]
path_prefix = "/t"
primary = "x"
secondary = "y"
failover = {{ both_down = "reject", region_outage_ratio = 1 }}
"#
    );
    let loaded = load(&text, &env).expect("valid");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let c = &loaded.config;
    let x = &c.accounts[3];
    assert_eq!(x.path_prefix, "/eastus/Accounts/1111");
    assert_eq!(x.headers.len(), 1);
    assert_eq!(x.headers[0].0, "ocp-apim-subscription-key");
    assert_eq!(x.headers[0].1.expose(), format!("k={SECRET};"));
    assert!(x.http2);
    assert_eq!(x.health.interval, Duration::from_millis(200));
    assert_eq!(
        x.health.fast_interval,
        Duration::from_millis(100),
        "max(interval/4, 100ms)"
    );
    assert_eq!(x.health.timeout, Duration::from_millis(100));
    let ProbeKind::Http {
        method,
        path,
        headers,
        use_account_prefix,
        use_account_headers,
        ..
    } = &x.health.kind
    else {
        panic!("http probe expected");
    };
    assert_eq!((method.as_str(), path.as_str()), ("HEAD", "/status"));
    assert_eq!((*use_account_prefix, *use_account_headers), (true, false));
    assert_eq!(x.health.passive_consecutive_5xx, 0);
    assert_eq!(x.health.passive_ejection, Duration::from_secs(30));
    assert_eq!(c.accounts[0].health.passive_consecutive_5xx, 5);
    assert_eq!(headers[0].1.expose(), SECRET);
    assert_eq!(c.accounts[4].health.kind, ProbeKind::Tcp);
    assert_eq!(c.accounts[4].health.interval, Duration::from_secs(4));
    assert_eq!(c.accounts[4].health.fast_interval, Duration::from_secs(1));
    assert_eq!(c.accounts[0].health.interval, Duration::from_secs(4));

    let t = &c.tenants[1];
    assert_eq!(t.hosts, ["t.example.com"]);
    assert_eq!(t.wildcards, ["t.example.com"]);
    assert_eq!(t.path_prefix.as_deref(), Some("/t"));
    assert_eq!((t.primary, t.secondary), (3, Some(4)));
    assert_eq!(t.failover.failback, Failback::Manual);
    assert_eq!(t.failover.hold_down, Duration::from_secs(60));
    assert_eq!(t.failover.both_down, BothDown::Reject);
    assert!((t.failover.region_outage_ratio - 1.0).abs() < f64::EPSILON);
    assert_eq!(c.tenants[0].failover.both_down, BothDown::Stay);
    assert_eq!(c.regions[0].pair, Some(1));
    assert_eq!(c.regions[2].pair, None);
}

#[test]
fn secrets_never_leak() {
    let text = format!(
        r#"{BASE}
[health]
headers = {{ x-probe = "${{TEST_KEY}}" }}

[[account]]
name = "x"
region = "eastus"
url = "http://h:1"
headers = {{ x-key = "${{TEST_KEY}}", x-literal = "inline-{SECRET}" }}
"#
    );
    let loaded = load(&text, &env).expect("valid");
    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains(SECRET), "{debug}");
    let (spec, _) = parse(&text).expect("parses");
    assert!(
        !format!("{spec:?}").contains(SECRET),
        "spec Debug shows header values"
    );

    let bad = format!(
        "{text}\n[[account]]\nname = \"y\"\nregion = \"westus\"\nurl = \"http://user:{SECRET}@h:1/p?q#f\"\n\
         headers = {{ x-crlf = \"${{CRLF_VAR}}\", \"bad name\" = \"{SECRET}\", host = \"${{TEST_KEY}}\" }}\n"
    );
    let got = problems(&bad);
    assert!(got.len() >= 3, "{got:#?}");
    for p in &got {
        assert!(!p.to_string().contains(SECRET), "leak: {p}");
        assert!(!format!("{p:?}").contains(SECRET), "leak: {p:?}");
    }
}

#[test]
fn durations() {
    let ms = Duration::from_millis;
    let ok: &[(&str, Duration)] = &[
        ("500ms", ms(500)),
        ("2s", ms(2000)),
        ("1m", ms(60_000)),
        ("1h", ms(3_600_000)),
        ("1.5s", ms(1500)),
        ("0.25ms", Duration::from_micros(250)),
        ("0s", Duration::ZERO),
        ("90s", ms(90_000)),
        ("1.000000000999s", Duration::from_nanos(1_000_000_000)),
    ];
    for (input, expected) in ok {
        assert_eq!(parse_duration(input), Ok(*expected), "{input}");
    }
    let bad: &[(&str, &str)] = &[
        ("", "empty"),
        ("5", "missing unit"),
        ("-1s", "negative"),
        ("1.s", "not a duration"),
        (".5s", "not a duration"),
        ("1.2.3s", "not a duration"),
        ("1d", "not a duration"),
        ("1 s", "not a duration"),
        ("s", "not a duration"),
        ("1S", "not a duration"),
        ("+1s", "not a duration"),
        ("18446744073709551616s", "too large"),
        ("99999999999999999999999999999999999999999h", "too large"),
    ];
    for (input, message) in bad {
        let err = parse_duration(input).expect_err(input);
        assert!(err.contains(message), "{input}: {err}");
    }
}

#[test]
fn example_configs_are_valid() {
    for (name, text) in [
        ("example.toml", include_str!("../../../config/example.toml")),
        ("minimal.toml", include_str!("../../../config/minimal.toml")),
    ] {
        let loaded = load(text, &env).unwrap_or_else(|problems| {
            let shown: Vec<String> = problems.iter().map(|p| render(p, name)).collect();
            panic!("{shown:#?}")
        });
        assert!(loaded.warnings.is_empty(), "{name}: {:#?}", loaded.warnings);
        assert!(!loaded.config.tenants.is_empty(), "{name}");
    }
}

/// A config with `tenants` tenants over 2 paired regions and 200 accounts, each tenant with one
/// exact host and one wildcard.
fn big_config(tenants: usize) -> String {
    let mut text = String::with_capacity(tenants * 160);
    text.push_str("[[region]]\nname = \"eastus\"\npair = \"westus\"\n\n");
    text.push_str("[[region]]\nname = \"westus\"\npair = \"eastus\"\n\n");
    for i in 0..100 {
        for (side, region, port) in [("east", "eastus", 9001), ("west", "westus", 9002)] {
            writeln!(
                text,
                "[[account]]\nname = \"{side}-{i}\"\nregion = \"{region}\"\nurl = \"http://127.0.0.1:{port}\"\n\
                 path_prefix = \"/{region}/Accounts/{i}\"\nheaders = {{ x-key = \"${{TEST_KEY}}\" }}\n"
            )
            .expect("write to String");
        }
    }
    for i in 0..tenants {
        let a = i % 100;
        writeln!(
            text,
            "[[tenant]]\nname = \"tenant-{i}\"\nhosts = [\"t{i}.example.com\", \"*.t{i}.example.com\"]\n\
             primary = \"east-{a}\"\nsecondary = \"west-{a}\"\n"
        )
        .expect("write to String");
    }
    text
}

#[test]
fn loads_100k_tenants() {
    let text = big_config(100_000);
    let started = std::time::Instant::now();
    let (spec, unknown) = parse(&text).expect("parses");
    let parsed = started.elapsed();
    assert!(unknown.is_empty());
    let loaded = validate(&spec, &env).expect("valid");
    let validated = started.elapsed() - parsed;
    assert_eq!(loaded.config.tenants.len(), 100_000);
    assert_eq!(loaded.config.accounts.len(), 200);
    assert!(loaded.warnings.is_empty());
    // Informational only (run with --release --nocapture); no timing assertion.
    eprintln!(
        "100k tenants, {} bytes: parse {parsed:?}, validate {validated:?}",
        text.len()
    );
    let loaded = load(&text, &env).expect("valid");
    assert_eq!(
        loaded.config.tenants[99_999].wildcards,
        ["t99999.example.com"]
    );
    eprintln!(
        "load (parse + validate) total {:?}",
        started.elapsed() - parsed - validated
    );
}

/// Applies byte-level edits to `text`, keeping it valid UTF-8.
fn mutate(text: &str, edits: &[(usize, u8, char)]) -> String {
    let mut s = text.to_owned();
    for &(at, op, c) in edits {
        let mut at = at % (s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        match op % 4 {
            0 => s.insert(at, c),
            1 => {
                let end = s[at..].chars().next().map_or(at, |ch| at + ch.len_utf8());
                s.replace_range(at..end, "");
            }
            2 => {
                let end = s[at..].chars().next().map_or(at, |ch| at + ch.len_utf8());
                s.replace_range(at..end, c.encode_utf8(&mut [0; 4]));
            }
            _ => {
                let end = (at + usize::from(op)).min(s.len());
                let mut end = end;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                let chunk = s[at..end].to_owned();
                s.insert_str(at, &chunk);
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn load_never_panics_on_arbitrary_text(text in ".{0,300}") {
        let _ = load(&text, &env);
    }

    #[test]
    fn load_never_panics_on_toml_like_text(text in "[\\[\\]a-z_.=\" \n0-9{},*$/:#-]{0,300}") {
        let _ = load(&text, &env);
    }

    #[test]
    fn load_never_panics_on_mutated_configs(
        edits in prop::collection::vec(
            (any::<usize>(), any::<u8>(), prop::sample::select(vec![
                '"', '[', ']', '=', '.', '*', '/', '$', '{', '}', '\n', ' ', '0', '-', 'a', ':', '#', 'é', '\u{0}',
            ])),
            1..8,
        )
    ) {
        let text = mutate(&format!("{BASE}\n[health]\nexpect = [\"200-399\"]\n"), &edits);
        if let Err(problems) = load(&text, &env) {
            prop_assert!(!problems.is_empty());
            prop_assert!(problems.iter().any(|p| p.severity == Severity::Error));
            for p in &problems {
                prop_assert!(!p.to_string().contains(SECRET));
            }
        }
    }
}

#[test]
fn injected_headers_are_bounded() {
    let long = "v".repeat(8 * 1024 + 1);
    check(
        &format!(
            "[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = {{ x-a = \"{long}\" }}"
        ),
        &[(E, "account[3].headers.x-a", "limited to 8192 bytes")],
    );
    let table: Vec<String> = (0..5)
        .map(|i| format!("x-{i} = \"{}\"", "v".repeat(8000)))
        .collect();
    check(
        &format!(
            "[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = {{ {} }}",
            table.join(", ")
        ),
        &[(E, "account[3].headers", "limited to 32768 bytes")],
    );
}

#[test]
fn problems_have_bounded_text() {
    let key = "k".repeat(1 << 20);
    let got = problems(&format!("{BASE}\n[health]\n{key} = 1\n"));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].path.len() <= crate::MAX_PROBLEM_PATH,
        "{}",
        got[0].path.len()
    );
    assert!(got[0].path.starts_with("health.kkk") && got[0].path.ends_with('…'));
    assert!(got[0].location.is_some(), "still located");
    let got = problems(&format!(
        "{BASE}\n[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = {{ \"{} x\" = \"v\" }}",
        "n".repeat(1 << 20)
    ));
    assert!(!got.is_empty());
    for p in &got {
        assert!(
            p.message.len() <= crate::MAX_PROBLEM_MESSAGE,
            "{}",
            p.message.len()
        );
        assert!(p.path.len() <= crate::MAX_PROBLEM_PATH, "{}", p.path.len());
    }
}

#[test]
fn account_hosts_in_their_plain_spellings_are_accepted() {
    for host in [
        "127.0.0.1",
        "10.0.0.255",
        "[::1]",
        "[2001:db8::7]",
        "localhost",
        "east-a",
        "api.videoindexer.ai",
        "api.videoindexer.ai.",
        "host_1.internal",
        "v1.example.com",
    ] {
        check(
            &format!(
                "[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://{host}:8080\""
            ),
            &[],
        );
    }
}

#[test]
fn auth_examples_in_the_docs_are_valid() {
    let doc = include_str!("../../../docs/config.md");
    let section = doc
        .split("## `[account.auth]`: account credentials")
        .nth(1)
        .and_then(|s| s.split("\n## `[[tenant]]`").next())
        .expect("the auth and [azure] sections");
    let mut text = String::from(
        "[[region]]\nname = \"eastus\"\npair = \"westus\"\n[[region]]\nname = \"westus\"\npair = \"eastus\"\n",
    );
    let mut blocks = 0;
    let mut complete = Vec::new();
    for block in section.split("```toml").skip(1) {
        let body = block.split("```").next().unwrap_or("");
        if body.contains("# ...") {
            continue; // the shape sketch, not a config
        }
        if body.contains("[[region]]") {
            complete.push(body);
            continue; // a whole config: checked on its own below
        }
        text.push_str(body);
        blocks += 1;
    }
    assert_eq!(blocks, 4);
    let env = |name: &str| {
        name.starts_with(char::is_uppercase)
            .then(|| format!("{name}-value"))
    };
    assert_eq!(complete.len(), 1, "the complete example of the three modes");
    for body in complete {
        let loaded = load(body, &env)
            .map_err(|p| format!("{p:#?}"))
            .expect("the complete example is valid");
        assert!(loaded.config.accounts.iter().all(|a| a.auth.is_some()));
        assert_eq!(loaded.config.tenants.len(), 1);
    }
    let loaded = load(&text, &env)
        .map_err(|p| format!("{p:#?}"))
        .expect("valid");
    assert_eq!(loaded.config.accounts.len(), 5);
    assert!(loaded.config.accounts.iter().all(|a| a.auth.is_some()));
}

#[test]
fn header_values_come_from_secret_files() {
    let text = format!(
        "{BASE}\n[[account]]\nname = \"x\"\nregion = \"eastus\"\nurl = \"http://h:1\"\nheaders = {{ x-a = \"Bearer ${{file:/run/secrets/key}}\" }}\n"
    );
    let loaded = load(&text, &env).expect("valid");
    let account = loaded
        .config
        .accounts
        .iter()
        .find(|a| a.name == "x")
        .expect("account x");
    assert_eq!(
        account.headers[0].1.expose(),
        format!("Bearer file-{SECRET}")
    );
}

const DIGEST: &str = "sha256:c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a";

/// Every client-authentication problem at once: a key pasted instead of its digest (never
/// echoed), a key shared by two tenants, an unknown issuer, HMAC and `none` algorithms, an
/// issuer without keys or audiences, certificate subjects without a client CA, and a tenant
/// that requires a credential it cannot accept.
#[test]
fn client_auth_problems_are_all_reported() {
    let key = "plain-key-that-is-not-a-digest";
    check(
        &format!(
            r#"
[client_auth]
mtls = "sometimes"

[[jwt_issuer]]
name = "idp"
issuer = "https://idp.example/"
algorithms = ["HS256", "none", "RS256"]

[[tenant]]
name = "fabrikam"
hosts = ["fabrikam.example.com"]
primary = "east"
client_auth = {{ api_keys = ["{key}", "{DIGEST}"], jwt_issuers = ["nope"], mtls_subjects = ["billing"] }}

[[tenant]]
name = "tailspin"
hosts = ["tailspin.example.com"]
primary = "east"
client_auth = {{ api_keys = ["{DIGEST}"] }}

[[tenant]]
name = "northwind"
hosts = ["northwind.example.com"]
primary = "east"
client_auth = {{ required = true }}
"#
        ),
        &[
            (E, "client_auth.mtls", "not a mode"),
            (E, "jwt_issuer[0].audiences", "at least one"),
            (E, "jwt_issuer[0]", "needs jwks_file or jwks_url"),
            (E, "jwt_issuer[0].algorithms", "\"HS256\" is always refused"),
            (E, "jwt_issuer[0].algorithms", "\"none\" is always refused"),
            (E, "tenant[1].client_auth.api_keys[0]", "pairgate hash-key"),
            (
                E,
                "tenant[1].client_auth.jwt_issuers[0]",
                "unknown jwt_issuer \"nope\"",
            ),
            (
                E,
                "tenant[1].client_auth.mtls_subjects",
                "needs [listen] client_ca",
            ),
            (E, "tenant[1].client_auth.mtls_subjects[0]", "not a subject"),
            (
                E,
                "tenant[2].client_auth.api_keys[0]",
                "also belongs to tenant[1]",
            ),
            (E, "tenant[3].client_auth", "accepts no credential"),
        ],
    );
    assert!(
        !problems(&format!("{BASE}\n[[tenant]]\nname = \"x\"\nhosts = [\"x.example\"]\nprimary = \"east\"\nclient_auth = {{ api_keys = [\"{key}\"] }}\n"))
            .iter()
            .any(|p| p.to_string().contains(key)),
        "a pasted key is never repeated"
    );
}

/// Defaults, and a tenant's kinds turn its authentication on.
#[test]
fn client_auth_defaults_and_required() {
    let text = format!(
        r#"{BASE}
[listen]
https = "127.0.0.1:8443"
client_ca = "clients.pem"

[[certificate]]
hosts = ["contoso.example.com"]
cert = "c.pem"
key = "k.pem"

[[jwt_issuer]]
name = "idp"
issuer = "https://idp.example/"
audiences = ["pairgate"]
jwks_url = "https://idp.example/keys"

[[tenant]]
name = "fabrikam"
hosts = ["fabrikam.example.com"]
primary = "east"
client_auth = {{ api_keys = ["{DIGEST}"], jwt_issuers = ["idp"], mtls_subjects = ["CN=billing", "spiffe://example.org/x"] }}
"#
    );
    let config = load(&text, &env).expect("valid").config;
    let auth = &config.client_auth;
    assert_eq!(
        auth.mtls,
        MtlsMode::Optional,
        "client_ca alone asks, optionally"
    );
    assert_eq!(auth.api_key_header, "x-api-key");
    assert_eq!(auth.identity_header.as_deref(), Some("x-pairgate-client"));
    let idp = &auth.issuers[0];
    assert_eq!(idp.algorithms, [JwtAlgorithm::ES256, JwtAlgorithm::RS256]);
    assert_eq!(idp.tenant_claim, "tenant");
    assert_eq!(
        (idp.refresh, idp.min_refresh, idp.leeway),
        (
            Duration::from_secs(300),
            Duration::from_secs(30),
            Duration::from_secs(30)
        )
    );
    assert!(!config.tenants[0].client_auth.enabled(), "contoso: open");
    let fabrikam = &config.tenants[1].client_auth;
    assert!(fabrikam.enabled() && fabrikam.required);
    assert_eq!(fabrikam.jwt_issuers, [0]);
    // `[client_auth] required` makes contoso, which accepts nothing, an error.
    let got = problems(&format!("{text}\n[client_auth]\nrequired = true\n"));
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].path, "tenant[0].client_auth");
}

/// An account's subscription comes from `subscription` or its ARM `resource_id`; a bad id, a
/// disagreement, an unknown scope and the subscription scope in fleet mode are reported; under
/// that scope an account without a subscription is a warning.
#[test]
fn subscriptions_and_the_alert_scope() {
    let config = load(
        &format!(
            "{BASE}\n[alerts.azure_monitor]\nscope = \"subscription\"\n{}\n[[account]]\nname = \"sub\"\nregion = \"eastus\"\nurl = \"http://127.0.0.1:9005\"\nsubscription = \"AAAAAAAA-0000-0000-0000-000000000001\"\n",
            vi(&format!(
                "type = \"azure-video-indexer\", resource_id = \"{RID}\", credential = \"managed-identity\""
            ))
        ),
        &env,
    )
    .expect("valid, with warnings")
    ;
    assert_eq!(
        config.config.alerts.azure_monitor_scope,
        AlertScope::Subscription
    );
    let by_name = |n: &str| {
        config
            .config
            .accounts
            .iter()
            .find(|a| a.name == n)
            .and_then(|a| a.subscription.clone())
    };
    assert_eq!(
        by_name("sub").as_deref(),
        Some("aaaaaaaa-0000-0000-0000-000000000001")
    );
    assert!(by_name("vi").is_some(), "taken from resource_id");
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.path == "account[0]" && w.message.contains("no subscription")),
        "{:#?}",
        config.warnings
    );
    check(
        r#"
[alerts.azure_monitor]
scope = "tenant"

[[account]]
name = "bad"
region = "eastus"
url = "http://127.0.0.1:9006"
subscription = "not-a-guid"
"#,
        &[
            (E, "alerts.azure_monitor.scope", "not a scope"),
            (E, "account[3].subscription", "not a subscription id"),
        ],
    );
}

/// Regions named like Azure's get their display name and documented pair; a one-way documented
/// pair (Brazil South -> South Central US) loads; another pair than the documented one is a
/// warning; an explicit `azure_name` wins.
#[test]
fn the_azure_catalogue_fills_names_and_pairs() {
    let text = r#"
[[region]]
name = "eastus"
[[region]]
name = "westus"
[[region]]
name = "brazilsouth"
[[region]]
name = "southcentralus"
azure_name = "South Central US (custom)"
[[region]]
name = "mars"
"#;
    let loaded = load(text, &env).expect("valid");
    let regions = &loaded.config.regions;
    assert_eq!(regions[0].azure_name.as_deref(), Some("East US"));
    assert_eq!(
        regions[0].pair,
        Some(1),
        "eastus pairs with westus by default"
    );
    assert_eq!(regions[1].pair, Some(0));
    assert_eq!(
        regions[2].pair,
        Some(3),
        "brazilsouth -> southcentralus, one way"
    );
    assert_eq!(
        regions[3].pair, None,
        "southcentralus pairs with northcentralus, absent here"
    );
    assert_eq!(
        regions[3].azure_name.as_deref(),
        Some("South Central US (custom)")
    );
    assert_eq!(regions[4].azure_name, None, "unknown names get nothing");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    // Pairing against the documentation is allowed, and said.
    let got = problems(
        "[[region]]\nname = \"eastus\"\npair = \"centralus\"\n[[region]]\nname = \"centralus\"\npair = \"eastus\"\n",
    );
    let warned: Vec<&str> = got.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(warned, ["region[0].pair", "region[1].pair"], "{got:#?}");
    assert!(
        got[0]
            .message
            .contains("Azure pairs \"eastus\" with \"westus\"")
    );
    // A one-way pair that is not documented is still an error.
    let got = problems(
        "[[region]]\nname = \"eastus\"\npair = \"westus\"\n[[region]]\nname = \"westus\"\npair = \"westus3\"\n[[region]]\nname = \"westus3\"\npair = \"westus\"\n",
    );
    assert!(
        got.iter()
            .any(|p| p.path == "region[0].pair" && p.message.contains("must be mutual")),
        "{got:#?}"
    );
}
