//! The configuration rules, exercised through the public API only.

use crate::common::no_env;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use sas_image_scan_exporter::config::{
    Config, ConfigError, CredentialsConfig, Endpoint, Location, OidcConfig, Problem,
    SignatureVersion, Target, dedupe_targets, endpoint_host_for_region, normalize_digest,
    parse_targets,
};
use secrecy::ExposeSecret;

const D1: &str = "8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
const D2: &str = "0b0c9f4e6a1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b";

/// The accounts of a configuration without `accounts:`.
fn one_account() -> Vec<String> {
    vec!["default".to_owned()]
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn parse_with(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Config {
    match Config::parse(yaml, "test.yml", env) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

fn parse(yaml: &str) -> Config {
    parse_with(yaml, &no_env)
}

/// Every problem as (line, column, message), in reported order.
fn problems_with(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<(usize, usize, String)> {
    match Config::parse(yaml, "test.yml", env) {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(ConfigError::Invalid(problems)) => problems
            .into_iter()
            .map(|p| {
                assert_eq!(p.location.file, "test.yml");
                (p.location.line, p.location.column, p.message)
            })
            .collect(),
        Err(e) => panic!("expected ConfigError::Invalid, got {e}"),
    }
}

fn problems(yaml: &str) -> Vec<(usize, usize, String)> {
    problems_with(yaml, &no_env)
}

fn problem(yaml: &str) -> (usize, usize, String) {
    let mut all = problems(yaml);
    assert_eq!(all.len(), 1, "expected exactly one problem: {all:?}");
    all.remove(0)
}

fn p(line: usize, column: usize, message: &str) -> (usize, usize, String) {
    (line, column, message.to_owned())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn loc(line: usize, column: usize) -> Location {
    Location {
        file: "test.yml".to_owned(),
        line,
        column,
    }
}

fn assert_defaults(c: &Config) {
    assert_eq!(c.accounts[0].sas.region, "cn-shanghai");
    assert_eq!(c.accounts[0].sas.endpoint, None);
    assert_eq!(c.accounts[0].sas.signature_version, SignatureVersion::V3);
    assert_eq!(c.accounts[0].sas.timeout, Duration::from_secs(10));
    assert_eq!(c.accounts[0].sas.timezone.local_minus_utc(), 8 * 3600);
    assert_eq!(
        c.accounts[0].sas.endpoint_url().as_str(),
        "https://tds.cn-shanghai.aliyuncs.com"
    );
    assert!(c.accounts[0].credentials.clone().is_none());
    assert_eq!(c.polling.interval, Duration::from_secs(600));
    assert_eq!(c.polling.active_interval, Duration::from_secs(30));
    assert_eq!(c.polling.concurrency, 4);
    assert_eq!(c.polling.requests_per_second, 5.0);
    assert_eq!(c.polling.max_retries, 3);
    assert!(c.targets.is_empty());
    assert!(c.target_files.is_empty());
    assert_eq!(c.state_file, None);
}

#[test]
fn empty_and_comment_only_files_give_all_defaults() {
    for yaml in [
        "",
        "\n\n",
        "# nothing here yet\n  # indented comment\n",
        "---\n",
        "--- # doc\n...\n",
        "{}\n",
        "sas:\npolling:\ntargets:\ntarget_files:\nstate_file:\n",
        "sas: {}\npolling: {}\ntargets: []\ntarget_files: []\nstate_file: \"\"\n",
        "sas:\n  endpoint: \"\"\n  region: ~\n",
    ] {
        assert_defaults(&parse(yaml));
    }
    assert_defaults(&Config::default());
}

const FULL_EXAMPLE: &str = r#"sas:
  region: cn-hangzhou            # picks the endpoint; default cn-shanghai
  endpoint: ""                   # full URL override, e.g. https://tds.ap-southeast-1.aliyuncs.com
                                 # plain http:// is accepted only for loopback addresses
  signature_version: v3          # v3 (ACS3-HMAC-SHA256, default, as the official SDKs) or v1 (HMAC-SHA1)
  timeout: 10s                   # per HTTP request
  timezone: "+08:00"             # UTC offset of the API's Modified/Create strings

credentials:                     # optional; when absent the Alibaba Cloud default chain is used
  access_key_id: ${ALIBABA_CLOUD_ACCESS_KEY_ID}
  access_key_secret_file: /run/secrets/sas_secret   # or access_key_secret (discouraged)
  security_token: ""             # STS token, optional
  # also possible: profile, ram_role_arn, ecs_ram_role, oidc ...

polling:
  interval: 10m                  # refresh period of a digest whose latest scan has ended (or has none)
  active_interval: 30s           # refresh period while its scan is running
  concurrency: 4                 # API requests in flight at most
  requests_per_second: 5         # token bucket over all API requests, retries included
  max_retries: 3                 # for retryable errors only

targets:                         # the digests to watch
  - digest: 8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd
    labels: {image: "registry.example.com/team/app:1.4.2", team: payments}
  - digest: sha256:0b0c9f4e6a1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b       # "sha256:" prefix accepted and stripped

target_files: ["targets.d/*.yml"]  # optional globs; each file holds a YAML list shaped like `targets`
state_file: ""                   # optional; keeps the last values across restarts
"#;

#[test]
fn full_example_parses_to_exact_values() {
    let c = parse_with(
        FULL_EXAMPLE,
        &env_of(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tExampleId")]),
    );
    assert_eq!(c.accounts[0].sas.region, "cn-hangzhou");
    assert_eq!(c.accounts[0].sas.endpoint, None);
    assert_eq!(
        c.accounts[0].sas.endpoint_url().as_str(),
        "https://tds.cn-shanghai.aliyuncs.com"
    );
    assert_eq!(c.accounts[0].sas.signature_version, SignatureVersion::V3);
    assert_eq!(c.accounts[0].sas.timeout, Duration::from_secs(10));
    assert_eq!(c.accounts[0].sas.timezone.local_minus_utc(), 8 * 3600);

    let creds = c.accounts[0]
        .credentials
        .as_ref()
        .expect("credentials section");
    assert_eq!(creds.access_key_id.as_deref(), Some("LTAI5tExampleId"));
    assert!(creds.access_key_secret.is_none());
    assert_eq!(
        creds.access_key_secret_file,
        Some(PathBuf::from("/run/secrets/sas_secret"))
    );
    assert!(creds.security_token.is_none());

    assert_eq!(c.polling.interval, Duration::from_secs(600));
    assert_eq!(c.polling.active_interval, Duration::from_secs(30));
    assert_eq!(c.polling.concurrency, 4);
    assert_eq!(c.polling.requests_per_second, 5.0);
    assert_eq!(c.polling.max_retries, 3);

    assert_eq!(
        c.targets,
        vec![
            Target {
                digest: D1.to_owned(),
                account: "default".to_owned(),
                labels: labels(&[
                    ("image", "registry.example.com/team/app:1.4.2"),
                    ("team", "payments")
                ]),
                location: loc(23, 13),
            },
            Target {
                digest: D2.to_owned(),
                account: "default".to_owned(),
                labels: BTreeMap::new(),
                location: loc(25, 13),
            },
        ]
    );
    assert_eq!(c.target_files, vec!["targets.d/*.yml".to_owned()]);
    assert_eq!(c.state_file, None);
}

#[test]
fn summary_is_one_exact_line() {
    let c = parse_with(
        FULL_EXAMPLE,
        &env_of(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")]),
    );
    assert_eq!(
        c.summary(),
        "config OK: 2 targets, 1 account, interval 10m, active_interval 30s; account default: 2 targets, site china, region cn-hangzhou (https://tds.cn-shanghai.aliyuncs.com), signature v3, 5 requests/s, concurrency 4, credentials static"
    );
    let c = parse(&format!(
        "sas:\n  region: eu-central-1\n  signature_version: V1\npolling:\n  interval: 1h30m\n  active_interval: 45s\n  requests_per_second: 0.5\ntargets:\n  - digest: {D1}\n"
    ));
    assert_eq!(
        c.summary(),
        "config OK: 1 target, 1 account, interval 1h 30m, active_interval 45s; account default: 1 target, site international, region eu-central-1 (https://tds.ap-southeast-1.aliyuncs.com), signature v1, 0.5 requests/s, concurrency 4, credentials default chain"
    );
}

#[test]
fn unknown_keys_are_reported_everywhere_with_the_keys_expected() {
    let yaml = format!(
        "sas:
  regoin: cn-hangzhou
credentials:
  access_key_id: a
  access_key_secret_file: /s
  role_arn: acs:ram::1:role/r
polling:
  intervall: 5m
targets:
  - digest: {D1}
    label: {{a: b}}
extra: 1
"
    );
    assert_eq!(
        problems(&yaml),
        vec![
            p(
                2,
                3,
                "unknown key \"regoin\" in sas (expected one of: region, endpoint, signature_version, timeout, timezone)"
            ),
            p(
                6,
                3,
                "unknown key \"role_arn\" in credentials (expected one of: access_key_id, access_key_secret, access_key_secret_file, security_token, profile, ram_role_arn, role_session_name, external_id, policy, duration, ecs_ram_role, oidc, sts_endpoint, metadata_endpoint)"
            ),
            p(
                8,
                3,
                "unknown key \"intervall\" in polling (expected one of: interval, active_interval, concurrency, requests_per_second, max_retries)"
            ),
            p(
                11,
                5,
                "unknown key \"label\" in targets[0] (expected one of: digest, account, labels)"
            ),
            p(
                12,
                1,
                "unknown key \"extra\" at the top level (expected one of: accounts, sas, credentials, polling, targets, target_files, discovery, state_file)"
            ),
        ]
    );
}

#[test]
fn keys_are_case_sensitive_and_never_expanded() {
    assert_eq!(
        problem("Sas: {}\n"),
        p(
            1,
            1,
            "unknown key \"Sas\" at the top level (expected one of: accounts, sas, credentials, polling, targets, target_files, discovery, state_file)"
        )
    );
    let env = env_of(&[("K", "region")]);
    assert_eq!(
        problems_with("sas:\n  ${K}: cn-hangzhou\n", &env),
        vec![p(
            2,
            3,
            "unknown key \"${K}\" in sas (expected one of: region, endpoint, signature_version, timeout, timezone)"
        )]
    );
}

#[test]
fn wrong_node_kinds_say_what_was_expected() {
    let yaml = "sas: [cn-hangzhou]
polling: 5
targets: {digest: x}
target_files: targets.d/*.yml
state_file: [a, b]
credentials:
  access_key_id: {a: b}
";
    assert_eq!(
        problems(yaml),
        vec![
            p(1, 6, "sas: expected a mapping, got a list"),
            p(2, 10, "polling: expected a mapping, got a single value"),
            p(3, 10, "targets: expected a list, got a mapping"),
            p(4, 15, "target_files: expected a list, got a single value"),
            p(5, 13, "state_file: expected a single value, got a list"),
            p(
                7,
                18,
                "credentials.access_key_id: expected a single value, got a mapping"
            ),
        ]
    );
    assert_eq!(
        problems(&format!(
            "targets:\n  - digest: {D1}\n    labels: [team]\n  - [{D2}]\n  - {D2}\n"
        )),
        vec![
            p(3, 13, "targets[0].labels: expected a mapping, got a list"),
            p(4, 5, "targets[1]: expected a mapping, got a list"),
            p(5, 5, "targets[2]: expected a mapping, got a single value"),
        ]
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    let expected = "the top level must be a mapping with keys such as accounts, sas, credentials, polling, targets, target_files, discovery, state_file";
    assert_eq!(problem("- sas\n"), p(1, 1, expected));
    assert_eq!(problem("just text\n"), p(1, 1, expected));
}

#[test]
fn yaml_syntax_errors_are_located() {
    assert_eq!(
        problem("sas:\n  region: cn-hangzhou\n  region: cn-beijing\n"),
        p(3, 3, "duplicate key \"region\" (first at line 2)")
    );
    assert_eq!(
        problem("sas: [\n"),
        p(
            2,
            1,
            "invalid YAML: while parsing a node, did not find expected node content"
        )
    );
    assert_eq!(
        problem("sas:\n  region: a: b\n"),
        p(
            2,
            12,
            "invalid YAML: mapping values are not allowed in this context"
        )
    );
    assert_eq!(
        problem("sas: &s {}\npolling: *s\n"),
        p(
            1,
            9,
            "YAML anchors and aliases are not supported; write the value out"
        )
    );
    assert_eq!(
        problem("state_file: !!str x\n"),
        p(
            1,
            19,
            "YAML tags (such as !!str) are not supported; quote the value instead"
        )
    );
}

#[test]
fn durations_use_humantime_syntax_and_bounds() {
    let yaml = "sas:
  timeout: 0s
polling:
  interval: 500ms
  active_interval: soon
";
    assert_eq!(
        problems(yaml),
        vec![
            p(2, 12, "sas.timeout: must be at least 1ms, got 0s"),
            p(4, 13, "polling.interval: must be at least 1s, got 500ms"),
            p(
                5,
                20,
                "polling.active_interval: expected a duration such as 30s, 5m or 1h30m, got \"soon\""
            ),
        ]
    );
    assert_eq!(
        problem("sas:\n  timeout: 5m 1s\n"),
        p(2, 12, "sas.timeout: must be at most 5m, got 5m 1s")
    );
    assert_eq!(
        problem("polling:\n  interval: 1m\n  active_interval: 2m\n"),
        p(
            3,
            20,
            "polling.active_interval: must not be longer than polling.interval (1m), got 2m"
        )
    );
    assert_eq!(
        problem("polling:\n  active_interval: 11m\n"),
        p(
            2,
            20,
            "polling.active_interval: must not be longer than polling.interval (10m), got 11m"
        )
    );

    let c = parse("sas:\n  timeout: 5m\npolling:\n  interval: 1h30m\n  active_interval: 1s\n");
    assert_eq!(c.accounts[0].sas.timeout, Duration::from_secs(300));
    assert_eq!(c.polling.interval, Duration::from_secs(5400));
    assert_eq!(c.polling.active_interval, Duration::from_secs(1));
    // A short interval alone lowers the default active_interval instead of failing.
    let c = parse("polling:\n  interval: 10s\n");
    assert_eq!(c.polling.active_interval, Duration::from_secs(10));
    let c = parse("polling:\n  interval: 20s\n  active_interval: 20s\n");
    assert_eq!(c.polling.active_interval, Duration::from_secs(20));
}

#[test]
fn an_invalid_interval_does_not_cause_a_second_problem() {
    assert_eq!(
        problem("polling:\n  interval: x\n  active_interval: 1h\n"),
        p(
            2,
            13,
            "polling.interval: expected a duration such as 30s, 5m or 1h30m, got \"x\""
        )
    );
}

#[test]
fn numbers_are_range_checked() {
    let yaml = "polling:
  concurrency: 0
  requests_per_second: 0
  max_retries: 11
";
    assert_eq!(
        problems(yaml),
        vec![
            p(
                2,
                16,
                "polling.concurrency: expected an integer from 1 to 1024, got \"0\""
            ),
            p(
                3,
                24,
                "polling.requests_per_second: expected a number from 0.001 to 10000, got \"0\""
            ),
            p(
                4,
                16,
                "polling.max_retries: expected an integer from 0 to 10, got \"11\""
            ),
        ]
    );
    for (yaml, message) in [
        (
            "polling:\n  concurrency: 1025\n",
            "polling.concurrency: expected an integer from 1 to 1024, got \"1025\"",
        ),
        (
            "polling:\n  concurrency: 1.5\n",
            "polling.concurrency: expected an integer from 1 to 1024, got \"1.5\"",
        ),
        (
            "polling:\n  concurrency: many\n",
            "polling.concurrency: expected an integer from 1 to 1024, got \"many\"",
        ),
        (
            "polling:\n  max_retries: -1\n",
            "polling.max_retries: expected an integer from 0 to 10, got \"-1\"",
        ),
        (
            "polling:\n  requests_per_second: -2\n",
            "polling.requests_per_second: expected a number from 0.001 to 10000, got \"-2\"",
        ),
        (
            "polling:\n  requests_per_second: inf\n",
            "polling.requests_per_second: expected a number from 0.001 to 10000, got \"inf\"",
        ),
        (
            "polling:\n  requests_per_second: NaN\n",
            "polling.requests_per_second: expected a number from 0.001 to 10000, got \"NaN\"",
        ),
    ] {
        let (line, _, got) = problem(yaml);
        assert_eq!((line, got.as_str()), (2, message), "{yaml}");
    }
    let c = parse("polling:\n  concurrency: 1024\n  requests_per_second: 0.25\n  max_retries: 0\n");
    assert_eq!(c.polling.concurrency, 1024);
    assert_eq!(c.polling.requests_per_second, 0.25);
    assert_eq!(c.polling.max_retries, 0);
    let c = parse("polling:\n  concurrency: \"8\"\n  max_retries: 10\n");
    assert_eq!(c.polling.concurrency, 8);
    assert_eq!(c.polling.max_retries, 10);
}

#[test]
fn signature_version_is_v1_or_v3_in_any_case() {
    assert_eq!(
        parse("sas:\n  signature_version: V1\n").accounts[0]
            .sas
            .signature_version,
        SignatureVersion::V1
    );
    assert_eq!(
        parse("sas:\n  signature_version: v3\n").accounts[0]
            .sas
            .signature_version,
        SignatureVersion::V3
    );
    assert_eq!(
        problem("sas:\n  signature_version: v2\n"),
        p(
            2,
            22,
            "sas.signature_version: expected v1 or v3, got \"v2\""
        )
    );
    assert_eq!(
        problem("sas:\n  signature_version: 3\n"),
        p(2, 22, "sas.signature_version: expected v1 or v3, got \"3\"")
    );
}

#[test]
fn timezone_is_an_offset_z_or_utc() {
    for (tz, secs) in [
        ("\"+08:00\"", 28800),
        ("+05:45", 20700),
        ("\"-03:30\"", -12600),
        ("Z", 0),
        ("UTC", 0),
    ] {
        let c = parse(&format!("sas:\n  timezone: {tz}\n"));
        assert_eq!(c.accounts[0].sas.timezone.local_minus_utc(), secs, "{tz}");
    }
    assert_eq!(
        problem("sas:\n  timezone: Asia/Shanghai\n"),
        p(
            2,
            13,
            "sas.timezone: expected a UTC offset such as +08:00, -05:30, Z or UTC, got \"Asia/Shanghai\""
        )
    );
    assert_eq!(
        problem("sas:\n  timezone: \"+8\"\n"),
        p(
            2,
            13,
            "sas.timezone: expected a UTC offset such as +08:00, -05:30, Z or UTC, got \"+8\""
        )
    );
}

#[test]
fn region_picks_the_endpoint_host() {
    for (region, host) in [
        ("cn-hangzhou", "tds.cn-shanghai.aliyuncs.com"),
        ("cn-shanghai", "tds.cn-shanghai.aliyuncs.com"),
        ("cn-hongkong", "tds.cn-shanghai.aliyuncs.com"),
        ("cn-shanghai-finance-1", "tds.cn-shanghai.aliyuncs.com"),
        ("cn-north-2-gov-1", "tds.cn-shanghai.aliyuncs.com"),
        ("ap-southeast-1", "tds.ap-southeast-1.aliyuncs.com"),
        ("eu-central-1", "tds.ap-southeast-1.aliyuncs.com"),
        ("us-east-1", "tds.ap-southeast-1.aliyuncs.com"),
        ("me-east-1", "tds.ap-southeast-1.aliyuncs.com"),
    ] {
        assert_eq!(endpoint_host_for_region(region), host, "{region}");
        let c = parse(&format!("sas:\n  region: {region}\n"));
        assert_eq!(c.accounts[0].sas.region, region);
        assert_eq!(
            c.accounts[0].sas.endpoint_url().as_str(),
            format!("https://{host}")
        );
    }
    assert_eq!(
        problem("sas:\n  region: Hangzhou\n"),
        p(
            2,
            11,
            "sas.region: expected a region id such as cn-hangzhou or ap-southeast-1, got \"Hangzhou\""
        )
    );
    assert_eq!(
        problem("sas:\n  region: \"\"\n"),
        p(
            2,
            11,
            "sas.region: expected a region id such as cn-hangzhou or ap-southeast-1, got \"\""
        )
    );
}

#[test]
fn endpoint_override_is_https_or_loopback_http_without_a_path() {
    for (url, want) in [
        (
            "https://tds.ap-southeast-1.aliyuncs.com",
            "https://tds.ap-southeast-1.aliyuncs.com",
        ),
        (
            "https://tds.ap-southeast-1.aliyuncs.com/",
            "https://tds.ap-southeast-1.aliyuncs.com",
        ),
        ("http://127.0.0.1:18080", "http://127.0.0.1:18080"),
        ("http://localhost:8080/", "http://localhost:8080"),
        ("\"http://[::1]:9000\"", "http://[::1]:9000"),
    ] {
        let c = parse(&format!("sas:\n  region: cn-hangzhou\n  endpoint: {url}\n"));
        assert_eq!(
            c.accounts[0].sas.endpoint.as_ref().map(Endpoint::as_str),
            Some(want)
        );
        assert_eq!(c.accounts[0].sas.endpoint_url().as_str(), want);
    }
    let yaml = "sas:
  endpoint: http://tds.cn-shanghai.aliyuncs.com
";
    assert_eq!(
        problem(yaml),
        p(
            2,
            13,
            "sas.endpoint: expected an absolute URL https://host[:port] (http:// only for a loopback host), got \"http://tds.cn-shanghai.aliyuncs.com\": plain http to a host that is not loopback (127.0.0.0/8, ::1, localhost)"
        )
    );
    assert_eq!(
        problem("sas:\n  endpoint: https://example.com/api?x=1\n"),
        p(
            2,
            13,
            "sas.endpoint: expected an absolute URL https://host[:port] (http:// only for a loopback host), got \"https://example.com/api?x=1\": a path, query or fragment is not allowed"
        )
    );
    assert_eq!(
        problem("sas:\n  endpoint: tds.aliyuncs.com\n"),
        p(
            2,
            13,
            "sas.endpoint: expected an absolute URL https://host[:port] (http:// only for a loopback host), got \"tds.aliyuncs.com\": no scheme"
        )
    );
}

#[test]
fn credentials_combinations() {
    let c = parse(
        "credentials:\n  access_key_id: id\n  access_key_secret: s3cr3t\n  security_token: tok\n",
    );
    let creds = c.accounts[0].credentials.clone().expect("credentials");
    assert_eq!(creds.access_key_id.as_deref(), Some("id"));
    assert_eq!(
        creds.access_key_secret.as_ref().map(|s| s.expose_secret()),
        Some("s3cr3t")
    );
    assert_eq!(creds.access_key_secret_file, None);
    assert_eq!(
        creds.security_token.as_ref().map(|s| s.expose_secret()),
        Some("tok")
    );

    assert_eq!(
        problem(
            "credentials:\n  access_key_id: id\n  access_key_secret: s\n  access_key_secret_file: /f\n"
        ),
        p(
            3,
            22,
            "credentials: access_key_secret and access_key_secret_file are mutually exclusive; keep only one (preferably access_key_secret_file)"
        )
    );
    assert_eq!(
        problem("credentials:\n  access_key_secret_file: /f\n"),
        p(
            2,
            27,
            "credentials: access_key_secret_file is set but access_key_id is not; set access_key_id too"
        )
    );
    assert_eq!(
        problem("credentials:\n  access_key_secret: s\n"),
        p(
            2,
            22,
            "credentials: access_key_secret is set but access_key_id is not; set access_key_id too"
        )
    );
    assert_eq!(
        problem("credentials:\n  access_key_id: id\n  security_token: t\n"),
        p(
            2,
            18,
            "credentials: access_key_id is set but neither access_key_secret nor access_key_secret_file is; set one of them"
        )
    );
    assert_eq!(
        problem("credentials:\n  security_token: t\n"),
        p(
            2,
            19,
            "credentials: security_token is set but access_key_id and access_key_secret are not; an STS token needs both"
        )
    );
    let empty = "credentials: no credentials given; set access_key_id with access_key_secret_file, profile, ram_role_arn, ecs_ram_role or oidc, or remove the section to use the default credential chain";
    assert_eq!(problem("sas: {}\ncredentials: {}\n"), p(2, 1, empty));
    assert_eq!(problem("sas: {}\ncredentials:\n"), p(2, 1, empty));
}

#[test]
fn empty_credential_values_count_as_absent() {
    let env = env_of(&[("ID", "id"), ("SECRET", ""), ("TOKEN", "")]);
    let yaml = "credentials:
  access_key_id: ${ID}
  access_key_secret: ${SECRET}
  access_key_secret_file: /run/secrets/s
  security_token: ${TOKEN}
";
    let creds = parse_with(yaml, &env).accounts[0]
        .credentials
        .clone()
        .expect("credentials");
    assert!(creds.access_key_secret.is_none());
    assert!(creds.security_token.is_none());
    assert_eq!(
        creds.access_key_secret_file,
        Some(PathBuf::from("/run/secrets/s"))
    );
    assert_eq!(
        problems_with(
            "credentials:\n  access_key_id: ${SECRET}\n  access_key_secret: x\n",
            &env
        ),
        vec![p(
            3,
            22,
            "credentials: access_key_secret is set but access_key_id is not; set access_key_id too"
        )]
    );
}

#[test]
fn debug_output_never_shows_secrets() {
    let env = env_of(&[("SECRET", "env-secret-value")]);
    let c = parse_with(
        "credentials:\n  access_key_id: visible-id\n  access_key_secret: ${SECRET}\n  security_token: literal-token-value\n",
        &env,
    );
    let debug = format!("{c:?}");
    assert!(debug.contains("visible-id"), "{debug}");
    assert!(!debug.contains("env-secret-value"), "{debug}");
    assert!(!debug.contains("literal-token-value"), "{debug}");
    let debug = format!("{:#?}", c.accounts[0].credentials.clone());
    assert!(!debug.contains("env-secret-value"), "{debug}");
    assert!(!debug.contains("literal-token-value"), "{debug}");
}

/// A comparable copy of a credentials section, secrets exposed.
#[derive(Debug, Default, PartialEq)]
struct Creds {
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    access_key_secret_file: Option<PathBuf>,
    security_token: Option<String>,
    profile: Option<String>,
    ram_role_arn: Option<String>,
    role_session_name: Option<String>,
    external_id: Option<String>,
    policy: Option<String>,
    duration: Option<Duration>,
    ecs_ram_role: Option<String>,
    oidc: Option<OidcConfig>,
    sts_endpoint: Option<String>,
    metadata_endpoint: Option<String>,
}

fn exposed(c: &CredentialsConfig) -> Creds {
    // Exhaustive, so a new field cannot go unchecked.
    let CredentialsConfig {
        access_key_id,
        access_key_secret,
        access_key_secret_file,
        security_token,
        profile,
        ram_role_arn,
        role_session_name,
        external_id,
        policy,
        duration,
        ecs_ram_role,
        oidc,
        sts_endpoint,
        metadata_endpoint,
    } = c;
    Creds {
        access_key_id: access_key_id.clone(),
        access_key_secret: access_key_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        access_key_secret_file: access_key_secret_file.clone(),
        security_token: security_token
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        profile: profile.clone(),
        ram_role_arn: ram_role_arn.clone(),
        role_session_name: role_session_name.clone(),
        external_id: external_id.clone(),
        policy: policy.clone(),
        duration: *duration,
        ecs_ram_role: ecs_ram_role.clone(),
        oidc: oidc.clone(),
        sts_endpoint: sts_endpoint.as_ref().map(|e| e.as_str().to_owned()),
        metadata_endpoint: metadata_endpoint.as_ref().map(|e| e.as_str().to_owned()),
    }
}

fn creds_with(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Creds {
    exposed(
        parse_with(yaml, env).accounts[0]
            .credentials
            .as_ref()
            .expect("credentials section"),
    )
}

fn creds(yaml: &str) -> Creds {
    creds_with(yaml, &no_env)
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

/// The credentials part of the summary line, after ", credentials ".
fn source_in_summary(yaml: &str) -> String {
    let summary = parse(yaml).summary();
    match summary.split_once(", credentials ") {
        Some((_, source)) => source.to_owned(),
        None => panic!("no credentials in {summary:?}"),
    }
}

const ROLE: &str = "acs:ram::123456789012:role/sas-reader";
const PROVIDER: &str = "acs:ram::123456789012:oidc-provider/ack-rrsa-c1";

#[test]
fn credentials_config_default_is_all_none() {
    assert_eq!(exposed(&CredentialsConfig::default()), Creds::default());
}

#[test]
fn static_keys_with_an_assumed_role_parse_to_exact_values() {
    let yaml = format!(
        "credentials:
  access_key_id: LTAI5tExampleId
  access_key_secret_file: /run/secrets/ak
  security_token: tok
  ram_role_arn: {ROLE}
  role_session_name: sas-exporter@prod_1.x
  external_id: ext-42
  policy: '{{\"Version\": \"1\", \"Statement\": []}}'
  duration: 1h 30m
  sts_endpoint: https://sts-vpc.cn-hangzhou.aliyuncs.com/
"
    );
    assert_eq!(
        creds(&yaml),
        Creds {
            access_key_id: some("LTAI5tExampleId"),
            access_key_secret_file: Some(PathBuf::from("/run/secrets/ak")),
            security_token: some("tok"),
            ram_role_arn: some(ROLE),
            role_session_name: some("sas-exporter@prod_1.x"),
            external_id: some("ext-42"),
            policy: some("{\"Version\": \"1\", \"Statement\": []}"),
            duration: Some(Duration::from_secs(5400)),
            sts_endpoint: some("https://sts-vpc.cn-hangzhou.aliyuncs.com"),
            ..Creds::default()
        }
    );
    assert_eq!(source_in_summary(&yaml), format!("ram role {ROLE}"));

    let yaml = "credentials:\n  access_key_id: id\n  access_key_secret: s3cr3t\n";
    assert_eq!(
        creds(yaml),
        Creds {
            access_key_id: some("id"),
            access_key_secret: some("s3cr3t"),
            ..Creds::default()
        }
    );
    assert_eq!(source_in_summary(yaml), "static");
}

#[test]
fn a_role_alone_is_assumed_from_the_default_chain() {
    let yaml =
        format!("credentials:\n  ram_role_arn: {ROLE}\n  role_session_name: ab\n  duration: 15m\n");
    assert_eq!(
        creds(&yaml),
        Creds {
            ram_role_arn: some(ROLE),
            role_session_name: some("ab"),
            duration: Some(Duration::from_secs(15 * 60)),
            ..Creds::default()
        }
    );
    assert_eq!(source_in_summary(&yaml), format!("ram role {ROLE}"));

    let session = "a".repeat(64);
    let env = env_of(&[("ROLE", ROLE)]);
    assert_eq!(
        creds_with(
            &format!(
                "credentials:\n  ram_role_arn: ${{ROLE}}\n  role_session_name: {session}\n  duration: 12h\n"
            ),
            &env
        ),
        Creds {
            ram_role_arn: some(ROLE),
            role_session_name: Some(session),
            duration: Some(Duration::from_secs(12 * 3600)),
            ..Creds::default()
        }
    );
}

#[test]
fn profile_source() {
    let yaml = "credentials:\n  profile: prod\n";
    assert_eq!(
        creds(yaml),
        Creds {
            profile: some("prod"),
            ..Creds::default()
        }
    );
    assert_eq!(source_in_summary(yaml), "profile prod");
    // Empty values still count as absent, so they do not make a second source.
    let env = env_of(&[("ID", "")]);
    assert_eq!(
        creds_with(
            "credentials:\n  access_key_id: ${ID}\n  profile: prod\n  role_session_name: \"\"\n",
            &env
        ),
        Creds {
            profile: some("prod"),
            ..Creds::default()
        }
    );
}

#[test]
fn ecs_ram_role_source_and_discovery() {
    let yaml = "credentials:\n  ecs_ram_role: sas-exporter.role_1\n";
    assert_eq!(
        creds(yaml),
        Creds {
            ecs_ram_role: some("sas-exporter.role_1"),
            ..Creds::default()
        }
    );
    assert_eq!(source_in_summary(yaml), "ecs role sas-exporter.role_1");

    // Unlike any other key, an empty or null ecs_ram_role is meaningful: discover the role name.
    let env = env_of(&[("EMPTY", "")]);
    for yaml in [
        "credentials:\n  ecs_ram_role: \"\"\n",
        "credentials:\n  ecs_ram_role: ''\n",
        "credentials:\n  ecs_ram_role:\n",
        "credentials:\n  ecs_ram_role: ~\n",
        "credentials:\n  ecs_ram_role: null\n",
        "credentials: {ecs_ram_role: }\n",
        "credentials:\n  ecs_ram_role: ${EMPTY}\n",
    ] {
        assert_eq!(
            creds_with(yaml, &env),
            Creds {
                ecs_ram_role: Some(String::new()),
                ..Creds::default()
            },
            "{yaml}"
        );
        assert_eq!(
            parse_with(yaml, &env)
                .summary()
                .rsplit_once(", credentials "),
            Some((
                "config OK: 0 targets, 1 account, interval 10m, active_interval 30s; account default: 0 targets, site china, region cn-shanghai (https://tds.cn-shanghai.aliyuncs.com), signature v3, 5 requests/s, concurrency 4",
                "ecs role (discovered)"
            )),
            "{yaml}"
        );
    }

    let yaml =
        "credentials:\n  ecs_ram_role: \"\"\n  metadata_endpoint: http://169.254.0.1:8080/\n";
    assert_eq!(
        creds(yaml),
        Creds {
            ecs_ram_role: Some(String::new()),
            metadata_endpoint: some("http://169.254.0.1:8080"),
            ..Creds::default()
        }
    );
}

#[test]
fn oidc_source() {
    let yaml = format!(
        "credentials:
  oidc:
    role_arn: {ROLE}
    provider_arn: {PROVIDER}
    token_file: /var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token
  role_session_name: pod-1
  duration: 2h
  sts_endpoint: http://127.0.0.1:18081
"
    );
    assert_eq!(
        creds(&yaml),
        Creds {
            oidc: Some(OidcConfig {
                role_arn: ROLE.to_owned(),
                provider_arn: PROVIDER.to_owned(),
                token_file: PathBuf::from(
                    "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token"
                ),
            }),
            role_session_name: some("pod-1"),
            duration: Some(Duration::from_secs(7200)),
            sts_endpoint: some("http://127.0.0.1:18081"),
            ..Creds::default()
        }
    );
    assert_eq!(source_in_summary(&yaml), "oidc");

    let env = env_of(&[
        ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", PROVIDER),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/t"),
    ]);
    assert_eq!(
        creds_with(
            "credentials:\n  oidc: {role_arn: \"${ALIBABA_CLOUD_ROLE_ARN}\", provider_arn: \"${ALIBABA_CLOUD_OIDC_PROVIDER_ARN}\", token_file: \"${ALIBABA_CLOUD_OIDC_TOKEN_FILE}\"}\n",
            &env
        ),
        Creds {
            oidc: Some(OidcConfig {
                role_arn: ROLE.to_owned(),
                provider_arn: PROVIDER.to_owned(),
                token_file: PathBuf::from("/t"),
            }),
            ..Creds::default()
        }
    );
}

#[test]
fn endpoints_alone_mean_the_default_chain_with_overrides() {
    let yaml = "credentials:\n  sts_endpoint: https://sts.aliyuncs.com\n";
    assert_eq!(
        creds(yaml),
        Creds {
            sts_endpoint: some("https://sts.aliyuncs.com"),
            ..Creds::default()
        }
    );
    assert_eq!(source_in_summary(yaml), "default chain");

    let yaml = "credentials:
  sts_endpoint: HTTPS://sts.cn-hangzhou.aliyuncs.com:443/
  metadata_endpoint: http://100.100.100.200
";
    assert_eq!(
        creds(yaml),
        Creds {
            // The URL parser drops a port that is the scheme's default.
            sts_endpoint: some("https://sts.cn-hangzhou.aliyuncs.com"),
            metadata_endpoint: some("http://100.100.100.200"),
            ..Creds::default()
        }
    );
    assert_eq!(source_in_summary(yaml), "default chain");
    assert_eq!(
        creds("credentials:\n  metadata_endpoint: https://metadata.example.com:8443/\n"),
        Creds {
            metadata_endpoint: some("https://metadata.example.com:8443"),
            ..Creds::default()
        }
    );
    assert_eq!(source_in_summary(""), "default chain");
}

#[test]
fn endpoint_overrides_are_checked() {
    assert_eq!(
        problem("credentials:\n  sts_endpoint: http://sts.aliyuncs.com\n"),
        p(
            2,
            17,
            "credentials.sts_endpoint: expected an absolute URL https://host[:port] (http:// only for a loopback host), got \"http://sts.aliyuncs.com\": plain http to a host that is not loopback (127.0.0.0/8, ::1, localhost)"
        )
    );
    assert_eq!(
        problem("credentials:\n  sts_endpoint: https://sts.aliyuncs.com/v1\n"),
        p(
            2,
            17,
            "credentials.sts_endpoint: expected an absolute URL https://host[:port] (http:// only for a loopback host), got \"https://sts.aliyuncs.com/v1\": a path, query or fragment is not allowed"
        )
    );
    assert_eq!(
        problem("credentials:\n  metadata_endpoint: http://100.100.100.200/latest/meta-data\n"),
        p(
            2,
            22,
            "credentials.metadata_endpoint: expected an absolute URL http://host[:port] or https://host[:port], got \"http://100.100.100.200/latest/meta-data\": a path, query or fragment is not allowed"
        )
    );
    assert_eq!(
        problem("credentials:\n  metadata_endpoint: ftp://100.100.100.200\n"),
        p(
            2,
            22,
            "credentials.metadata_endpoint: expected an absolute URL http://host[:port] or https://host[:port], got \"ftp://100.100.100.200\": unsupported scheme"
        )
    );
}

#[test]
fn credential_sources_are_exclusive() {
    let ambiguous = |a: &str, b: &str| {
        format!("credentials: ambiguous: both {a} and {b} are given; choose one source")
    };
    let oidc = format!("{{role_arn: \"{ROLE}\", provider_arn: \"{PROVIDER}\", token_file: /t}}");
    assert_eq!(
        problem(
            "credentials:\n  access_key_id: id\n  access_key_secret_file: /f\n  profile: prod\n"
        ),
        p(4, 3, &ambiguous("access_key_id", "profile"))
    );
    // The later key is the one pointed at, whatever order the file uses.
    assert_eq!(
        problem(
            "credentials:\n  profile: prod\n  access_key_id: id\n  access_key_secret_file: /f\n"
        ),
        p(3, 3, &ambiguous("profile", "access_key_id"))
    );
    assert_eq!(
        problem("credentials:\n  profile: prod\n  ecs_ram_role: r\n"),
        p(3, 3, &ambiguous("profile", "ecs_ram_role"))
    );
    assert_eq!(
        problem(&format!(
            "credentials:\n  ecs_ram_role: \"\"\n  oidc: {oidc}\n"
        )),
        p(3, 3, &ambiguous("ecs_ram_role", "oidc"))
    );
    assert_eq!(
        problem(&format!(
            "credentials:\n  oidc: {oidc}\n  access_key_id: id\n  access_key_secret: s\n"
        )),
        p(3, 3, &ambiguous("oidc", "access_key_id"))
    );
    // ram_role_arn combines with static keys only.
    assert_eq!(
        problem(&format!(
            "credentials:\n  ram_role_arn: {ROLE}\n  profile: prod\n"
        )),
        p(3, 3, &ambiguous("ram_role_arn", "profile"))
    );
    assert_eq!(
        problem(&format!(
            "credentials:\n  ecs_ram_role:\n  ram_role_arn: {ROLE}\n"
        )),
        p(3, 3, &ambiguous("ecs_ram_role", "ram_role_arn"))
    );
    assert_eq!(
        problem(&format!(
            "credentials:\n  oidc: {oidc}\n  ram_role_arn: {ROLE}\n"
        )),
        p(3, 3, &ambiguous("oidc", "ram_role_arn"))
    );
    // Each extra source is reported once, against the first one it clashes with.
    assert_eq!(
        problems(&format!(
            "credentials:
  access_key_id: id
  access_key_secret: s
  profile: prod
  oidc: {oidc}
"
        )),
        vec![
            p(4, 3, &ambiguous("access_key_id", "profile")),
            p(5, 3, &ambiguous("access_key_id", "oidc")),
        ]
    );
    assert_eq!(
        problems(&format!(
            "credentials:
  ram_role_arn: {ROLE}
  access_key_id: id
  access_key_secret: s
  profile: prod
"
        )),
        vec![p(5, 3, &ambiguous("ram_role_arn", "profile"))]
    );
    // A value that is itself wrong still counts as given.
    assert_eq!(
        problems("credentials:\n  profile: prod\n  ecs_ram_role: a/b\n"),
        vec![
            p(3, 3, &ambiguous("profile", "ecs_ram_role")),
            p(
                3,
                17,
                "credentials.ecs_ram_role: expected a RAM role name (up to 64 letters, digits, '.', '_' and '-'), or \"\" to discover it, got \"a/b\""
            ),
        ]
    );
}

#[test]
fn role_options_need_a_role() {
    let yaml = "credentials:
  profile: prod
  role_session_name: s1
  external_id: e
  policy: '{}'
  duration: 1h
";
    assert_eq!(
        problems(yaml),
        vec![
            p(
                3,
                22,
                "credentials: role_session_name is set but neither ram_role_arn nor oidc is; it names the session of an assumed role, so set one of them or remove it"
            ),
            p(
                4,
                16,
                "credentials: external_id is set but ram_role_arn is not; it only applies to AssumeRole, so set ram_role_arn or remove it"
            ),
            p(
                5,
                11,
                "credentials: policy is set but ram_role_arn is not; it only applies to AssumeRole, so set ram_role_arn or remove it"
            ),
            p(
                6,
                13,
                "credentials: duration is set but neither ram_role_arn nor oidc is; it is the lifetime of an assumed role's credentials, so set one of them or remove it"
            ),
        ]
    );
    // With oidc, the session name and duration are fine but external_id and policy are not.
    let yaml = format!(
        "credentials:
  oidc: {{role_arn: \"{ROLE}\", provider_arn: \"{PROVIDER}\", token_file: /t}}
  role_session_name: s1
  external_id: e
  policy: '{{}}'
  duration: 1h
"
    );
    assert_eq!(
        problems(&yaml),
        vec![
            p(
                4,
                16,
                "credentials: external_id is set but ram_role_arn is not; it only applies to AssumeRole, so set ram_role_arn or remove it"
            ),
            p(
                5,
                11,
                "credentials: policy is set but ram_role_arn is not; it only applies to AssumeRole, so set ram_role_arn or remove it"
            ),
        ]
    );
    // A role ARN that is itself wrong is still a role: only its own problem is reported.
    assert_eq!(
        problems("credentials:\n  ram_role_arn: nope\n  duration: 1h\n  external_id: e\n"),
        vec![p(
            2,
            17,
            "credentials.ram_role_arn: expected a RAM role ARN such as acs:ram::123456789012:role/exporter, got \"nope\""
        )]
    );
    // A bad duration without a role is reported once, for what is wrong with it.
    assert_eq!(
        problems("credentials:\n  profile: p\n  duration: 1m\n"),
        vec![p(
            3,
            13,
            "credentials.duration: must be at least 15m, got 1m"
        )]
    );
}

#[test]
fn role_duration_is_between_15m_and_12h() {
    for (value, message) in [
        (
            "14m 59s",
            "credentials.duration: must be at least 15m, got 14m 59s",
        ),
        (
            "12h 1s",
            "credentials.duration: must be at most 12h, got 12h 1s",
        ),
        ("1d", "credentials.duration: must be at most 12h, got 1d"),
        (
            "soon",
            "credentials.duration: expected a duration such as 30s, 5m or 1h30m, got \"soon\"",
        ),
        (
            "3600",
            "credentials.duration: expected a duration such as 30s, 5m or 1h30m, got \"3600\"",
        ),
    ] {
        assert_eq!(
            problem(&format!(
                "credentials:\n  ram_role_arn: {ROLE}\n  duration: {value}\n"
            )),
            p(3, 13, message),
            "{value}"
        );
    }
    for (value, secs) in [("15m", 900), ("900s", 900), ("12h", 43200), ("720m", 43200)] {
        let c = creds(&format!(
            "credentials:\n  ram_role_arn: {ROLE}\n  duration: {value}\n"
        ));
        assert_eq!(c.duration, Some(Duration::from_secs(secs)), "{value}");
    }
}

#[test]
fn role_session_name_follows_the_sts_rule() {
    let long = "x".repeat(65);
    for value in [
        "a",
        long.as_str(),
        "\"with space\"",
        "a/b",
        "a:b",
        "'sess\u{e9}'",
    ] {
        let (line, column, message) = problem(&format!(
            "credentials:\n  ram_role_arn: {ROLE}\n  role_session_name: {value}\n"
        ));
        let shown = value.trim_matches(['"', '\'']);
        assert_eq!(
            (line, column, message),
            p(
                3,
                22,
                &format!(
                    "credentials.role_session_name: expected 2 to 64 characters among letters, digits, '.', '_', '@' and '-', got {shown:?}"
                )
            ),
            "{value}"
        );
    }
    let all = "aZ09._@-";
    let c = creds(&format!(
        "credentials:\n  ram_role_arn: {ROLE}\n  role_session_name: \"{all}\"\n"
    ));
    assert_eq!(c.role_session_name.as_deref(), Some(all));
}

#[test]
fn arns_are_checked() {
    let role = |got: &str, path: &str| {
        format!(
            "{path}: expected a RAM role ARN such as acs:ram::123456789012:role/exporter, got {got:?}"
        )
    };
    for bad in [
        "arn:aws:iam::1:role/x",
        "acs:ram::1:user/x",
        "acs:ram::1:role/",
        "acs:sts::1:assumed-role/x",
        "sas-reader",
    ] {
        assert_eq!(
            problem(&format!("credentials:\n  ram_role_arn: \"{bad}\"\n")),
            p(2, 17, &role(bad, "credentials.ram_role_arn")),
            "{bad}"
        );
    }
    let yaml = "credentials:
  oidc:
    role_arn: acs:ram::1:oidc-provider/p
    provider_arn: acs:ram::1:role/r
    token_file: /t
";
    assert_eq!(
        problems(yaml),
        vec![
            p(
                3,
                15,
                &role("acs:ram::1:oidc-provider/p", "credentials.oidc.role_arn")
            ),
            p(
                4,
                19,
                "credentials.oidc.provider_arn: expected an OIDC provider ARN such as acs:ram::123456789012:oidc-provider/ack-rrsa, got \"acs:ram::1:role/r\""
            ),
        ]
    );
}

#[test]
fn oidc_is_a_mapping_of_three_required_keys() {
    let yaml = format!(
        "credentials:
  oidc:
    role_arn: {ROLE}
    token: /t
"
    );
    assert_eq!(
        problems(&yaml),
        vec![
            p(
                2,
                3,
                "credentials.oidc: provider_arn is required (the OIDC provider registered in RAM, acs:ram::ACCOUNT:oidc-provider/NAME)"
            ),
            p(
                2,
                3,
                "credentials.oidc: token_file is required (the file holding the OIDC token, such as a projected service account token)"
            ),
            p(
                4,
                5,
                "unknown key \"token\" in credentials.oidc (expected one of: role_arn, provider_arn, token_file)"
            ),
        ]
    );
    assert_eq!(
        problems("credentials:\n  oidc: {role_arn: \"\"}\n"),
        vec![
            p(
                2,
                3,
                "credentials.oidc: role_arn is required (the RAM role to assume, acs:ram::ACCOUNT:role/NAME)"
            ),
            p(
                2,
                3,
                "credentials.oidc: provider_arn is required (the OIDC provider registered in RAM, acs:ram::ACCOUNT:oidc-provider/NAME)"
            ),
            p(
                2,
                3,
                "credentials.oidc: token_file is required (the file holding the OIDC token, such as a projected service account token)"
            ),
        ]
    );
    assert_eq!(
        problem("credentials:\n  oidc:\n"),
        p(
            2,
            3,
            "credentials.oidc: expected a mapping with role_arn, provider_arn and token_file, got an empty value"
        )
    );
    assert_eq!(
        problem("credentials:\n  oidc: rrsa\n"),
        p(
            2,
            9,
            "credentials.oidc: expected a mapping, got a single value"
        )
    );
}

#[test]
fn policy_must_be_a_json_object() {
    let base = format!("credentials:\n  ram_role_arn: {ROLE}\n");
    let expected = "credentials.policy: expected a JSON object such as {\"Version\": \"1\", \"Statement\": [...]}";
    assert_eq!(
        problem(&format!("{base}  policy: '{{\"Version\": \"1\",}}'\n")),
        p(
            3,
            11,
            &format!("{expected}, but it is not valid JSON: trailing comma at line 1 column 17")
        )
    );
    assert_eq!(
        problem(&format!("{base}  policy: '[1]'\n")),
        p(3, 11, &format!("{expected}, got an array"))
    );
    assert_eq!(
        problem(&format!("{base}  policy: '\"x\"'\n")),
        p(3, 11, &format!("{expected}, got a string"))
    );
    // Unquoted, it is a YAML mapping rather than text.
    assert_eq!(
        problem(&format!("{base}  policy: {{\"Version\": \"1\"}}\n")),
        p(
            3,
            11,
            "credentials.policy: expected the policy document as a JSON string; quote it, e.g. policy: '{\"Version\": \"1\", \"Statement\": [...]}'"
        )
    );
    let policy = r#"{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "yundun-sas:Describe*", "Resource": "*"}]}"#;
    let vars = [("POLICY", policy)];
    let env = env_of(&vars);
    let c = creds_with(&format!("{base}  policy: ${{POLICY}}\n"), &env);
    assert_eq!(c.policy.as_deref(), Some(policy));
}

#[test]
fn ecs_ram_role_names_are_checked() {
    let long = "r".repeat(65);
    for bad in ["a/b", "..", "a b", "r?x", long.as_str()] {
        assert_eq!(
            problem(&format!("credentials:\n  ecs_ram_role: \"{bad}\"\n")),
            p(
                2,
                17,
                &format!(
                    "credentials.ecs_ram_role: expected a RAM role name (up to 64 letters, digits, '.', '_' and '-'), or \"\" to discover it, got {bad:?}"
                )
            ),
            "{bad}"
        );
    }
    assert_eq!(
        problem("credentials:\n  ecs_ram_role: [a]\n"),
        p(
            2,
            17,
            "credentials.ecs_ram_role: expected a single value, got a list"
        )
    );
}

#[test]
fn static_key_rules_hold_next_to_the_new_keys() {
    assert_eq!(
        problem(&format!(
            "credentials:\n  ram_role_arn: {ROLE}\n  access_key_secret_file: /f\n"
        )),
        p(
            3,
            27,
            "credentials: access_key_secret_file is set but access_key_id is not; set access_key_id too"
        )
    );
    assert_eq!(
        problem("credentials:\n  profile: prod\n  security_token: t\n"),
        p(
            3,
            19,
            "credentials: security_token is set but access_key_id and access_key_secret are not; an STS token needs both"
        )
    );
    // A section whose every value is empty is as empty as one without keys.
    let env = env_of(&[("ID", "")]);
    assert_eq!(
        problems_with(
            "credentials:\n  access_key_id: ${ID}\n  sts_endpoint: \"\"\n  profile:\n",
            &env
        ),
        vec![p(
            1,
            1,
            "credentials: no credentials given; set access_key_id with access_key_secret_file, profile, ram_role_arn, ecs_ram_role or oidc, or remove the section to use the default credential chain"
        )]
    );
}

#[test]
fn debug_never_shows_any_secret() {
    let env = env_of(&[("SECRET", "env-secret-value"), ("TOKEN", "env-token-value")]);
    let yaml = format!(
        "credentials:
  access_key_id: visible-id
  access_key_secret: ${{SECRET}}
  security_token: ${{TOKEN}}
  ram_role_arn: {ROLE}
  role_session_name: visible-session
  external_id: visible-external
  policy: '{{\"Version\": \"1\"}}'
  duration: 1h
  sts_endpoint: https://sts.aliyuncs.com
  metadata_endpoint: http://100.100.100.200
"
    );
    let c = parse_with(&yaml, &env);
    let creds = c.accounts[0].credentials.as_ref().expect("credentials");
    for debug in [
        format!("{c:?}"),
        format!("{c:#?}"),
        format!("{creds:?}"),
        format!("{creds:#?}"),
    ] {
        assert!(!debug.contains("env-secret-value"), "{debug}");
        assert!(!debug.contains("env-token-value"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
        assert!(debug.contains("visible-id"), "{debug}");
        assert!(debug.contains("visible-session"), "{debug}");
        assert!(debug.contains(ROLE), "{debug}");
    }
    let literal = "credentials:\n  access_key_id: id\n  access_key_secret: literal-secret-value\n  security_token: literal-token-value\n";
    let debug = format!("{:?}", parse(literal));
    assert!(!debug.contains("literal-secret-value"), "{debug}");
    assert!(!debug.contains("literal-token-value"), "{debug}");
}

#[test]
fn env_expansion_in_values() {
    let env = env_of(&[
        ("REGION", "ap-southeast-1"),
        ("N", "16"),
        ("RPS", "2.5"),
        ("TEAM", "payments"),
        ("EMPTY", ""),
    ]);
    let yaml = format!(
        "sas:
  region: ${{REGION}}
  endpoint: ${{EMPTY}}
polling:
  concurrency: ${{N}}
  requests_per_second: \"${{RPS}}\"
  interval: ${{N}}m
targets:
  - digest: sha256:${{EMPTY}}{D1}
    labels:
      team: ${{TEAM}}
      cost: $$5 and $HOME and $$${{TEAM}}
state_file: /var/lib/${{TEAM}}/state.json
"
    );
    let c = parse_with(&yaml, &env);
    assert_eq!(c.accounts[0].sas.region, "ap-southeast-1");
    assert_eq!(c.accounts[0].sas.endpoint, None);
    assert_eq!(c.polling.concurrency, 16);
    assert_eq!(c.polling.requests_per_second, 2.5);
    assert_eq!(c.polling.interval, Duration::from_secs(16 * 60));
    assert_eq!(c.targets[0].digest, D1);
    assert_eq!(
        c.targets[0].labels,
        labels(&[("cost", "$5 and $HOME and $payments"), ("team", "payments")])
    );
    assert_eq!(
        c.state_file,
        Some(PathBuf::from("/var/lib/payments/state.json"))
    );
}

#[test]
fn env_expansion_problems() {
    let yaml = "sas:
  region: ${REGION}
polling:
  concurrency: ${N
  max_retries: ${1X}
state_file: ${A}/${B}
";
    assert_eq!(
        problems_with(yaml, &env_of(&[("A", "a")])),
        vec![
            p(2, 11, "sas.region: environment variable REGION is not set"),
            p(
                4,
                16,
                "polling.concurrency: unterminated \"${\" (expected ${NAME}; write $$ for a literal $)"
            ),
            p(
                5,
                16,
                "polling.max_retries: invalid variable name \"1X\" in \"${1X}\" (expected letters, digits and _, not starting with a digit)"
            ),
            p(6, 13, "state_file: environment variable B is not set"),
        ]
    );
    // The expanded text is then checked like a literal one.
    assert_eq!(
        problems_with("polling:\n  concurrency: ${N}\n", &env_of(&[("N", "zero")])),
        vec![p(
            2,
            16,
            "polling.concurrency: expected an integer from 1 to 1024, got \"zero\""
        )]
    );
}

#[test]
fn digests_are_normalised() {
    let upper = D1.to_ascii_uppercase();
    let yaml = format!(
        "targets:\n  - digest: sha256:{D1}\n  - digest: SHA256:{}\n  - digest: \"{upper}\"\n",
        D2.to_ascii_uppercase()
    );
    let c = parse(&yaml);
    let digests: Vec<&str> = c.targets.iter().map(|t| t.digest.as_str()).collect();
    // The third entry repeats the first with the same (no) labels, so it is dropped.
    assert_eq!(digests, vec![D1, D2]);

    assert_eq!(normalize_digest(D1).as_deref(), Ok(D1));
    assert_eq!(
        normalize_digest(&format!("sha256:{upper}")).as_deref(),
        Ok(D1)
    );
    assert_eq!(
        normalize_digest("sha256:abc"),
        Err(
            "expected 64 hex characters after an optional \"sha256:\" prefix, got \"sha256:abc\""
                .to_owned()
        )
    );
    assert!(normalize_digest(&format!("sha512:{D1}")).is_err());
    assert!(normalize_digest(&format!("{D1}0")).is_err());
    assert!(normalize_digest(&D1.replace('a', "g")).is_err());
    assert!(normalize_digest(&format!(" {D1}")).is_err());
    assert!(normalize_digest("").is_err());
    // Multi-byte text must not panic the prefix check.
    assert!(normalize_digest("sha25é:x").is_err());
}

#[test]
fn target_digest_is_required_and_checked() {
    let yaml = "targets:
  - digest: 1234
  - labels: {team: a}
  - {}
";
    assert_eq!(
        problems(yaml),
        vec![
            p(
                2,
                13,
                "targets[0].digest: expected 64 hex characters after an optional \"sha256:\" prefix, got \"1234\""
            ),
            p(3, 5, "targets[1]: digest is required (64 hex characters)"),
            p(4, 5, "targets[2]: digest is required (64 hex characters)"),
        ]
    );
}

#[test]
fn label_names_are_checked() {
    let yaml = format!(
        "targets:
  - digest: {D1}
    labels:
      team: payments
      9lives: x
      __name__: y
      status: z
      app-name: w
"
    );
    assert_eq!(
        problems(&yaml),
        vec![
            p(
                5,
                7,
                "targets[0].labels: invalid label name \"9lives\" (expected [a-zA-Z_][a-zA-Z0-9_]*)"
            ),
            p(
                6,
                7,
                "targets[0].labels: label name \"__name__\" starts with \"__\", which Prometheus reserves for internal use"
            ),
            p(
                7,
                7,
                "targets[0].labels: label name \"status\" is used by the exporter itself (reserved: account, digest, status, task_id, task_name, task_type, source, target_type, raw_status, id, action, code)"
            ),
            p(
                8,
                7,
                "targets[0].labels: invalid label name \"app-name\" (expected [a-zA-Z_][a-zA-Z0-9_]*)"
            ),
        ]
    );
}

#[test]
fn label_values_are_scalars_kept_as_text() {
    let c = parse(&format!(
        "targets:\n  - digest: {D1}\n    labels: {{tier: 1, on: true, ver: 1.10, note: \"\", _x: }}\n"
    ));
    assert_eq!(
        c.targets[0].labels,
        labels(&[
            ("tier", "1"),
            ("on", "true"),
            ("ver", "1.10"),
            ("note", ""),
            ("_x", "")
        ])
    );
    assert_eq!(
        problem(&format!(
            "targets:\n  - digest: {D1}\n    labels:\n      team: [a, b]\n"
        )),
        p(
            4,
            13,
            "targets[0].labels.team: expected a single value, got a list"
        )
    );
}

#[test]
fn duplicate_digests() {
    let same = format!(
        "targets:
  - digest: {D1}
    labels: {{team: a}}
  - digest: sha256:{D1}
    labels:
      team: a
"
    );
    let c = parse(&same);
    assert_eq!(c.targets.len(), 1);
    assert_eq!(c.targets[0].location, loc(2, 13));

    let different = format!(
        "targets:
  - digest: {D1}
    labels: {{team: a}}
  - digest: {D2}
  - digest: {}
    labels: {{team: b}}
",
        D1.to_ascii_uppercase()
    );
    assert_eq!(
        problems(&different),
        vec![p(
            5,
            13,
            &format!(
                "duplicate digest {D1} with different labels (first at line 2); give both entries the same labels or remove one"
            )
        )]
    );
}

#[test]
fn target_files_and_state_file() {
    let c = parse(
        "target_files:\n  - targets.d/*.yml\n  - /etc/sas/extra.yml\nstate_file: /var/lib/sas/state.json\n",
    );
    assert_eq!(
        c.target_files,
        vec!["targets.d/*.yml", "/etc/sas/extra.yml"]
    );
    assert_eq!(c.state_file, Some(PathBuf::from("/var/lib/sas/state.json")));
    assert_eq!(
        problems("target_files:\n  - \"\"\n  - [a]\n"),
        vec![
            p(
                2,
                5,
                "target_files[0]: expected a file path or glob, got an empty value"
            ),
            p(3, 5, "target_files[1]: expected a single value, got a list"),
        ]
    );
}

#[test]
fn many_problems_are_all_reported_in_file_order() {
    let yaml = format!(
        "polling:
  concurrency: 0
  interval: 0s
sas:
  region: cn-hangzhou
  timezone: CST
  signature_version: v4
credentials:
  access_key_secret: ${{NOPE}}
targets:
  - digest: {D1}
    labels: {{id: x}}
  - digest: nothex
bogus: true
"
    );
    assert_eq!(
        problems(&yaml),
        vec![
            p(
                2,
                16,
                "polling.concurrency: expected an integer from 1 to 1024, got \"0\""
            ),
            p(3, 13, "polling.interval: must be at least 1s, got 0s"),
            p(
                6,
                13,
                "sas.timezone: expected a UTC offset such as +08:00, -05:30, Z or UTC, got \"CST\""
            ),
            p(
                7,
                22,
                "sas.signature_version: expected v1 or v3, got \"v4\""
            ),
            p(
                9,
                22,
                "credentials.access_key_secret: environment variable NOPE is not set"
            ),
            p(
                12,
                14,
                "targets[0].labels: label name \"id\" is used by the exporter itself (reserved: account, digest, status, task_id, task_name, task_type, source, target_type, raw_status, id, action, code)"
            ),
            p(
                13,
                13,
                "targets[1].digest: expected 64 hex characters after an optional \"sha256:\" prefix, got \"nothex\""
            ),
            p(
                14,
                1,
                "unknown key \"bogus\" at the top level (expected one of: accounts, sas, credentials, polling, targets, target_files, discovery, state_file)"
            ),
        ]
    );
}

#[test]
fn invalid_error_display_lists_every_problem() {
    let err =
        Config::parse("sas:\n  region: X\nfoo: 1\n", "conf/a.yml", &no_env).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "2 problems in the configuration:\n\
         conf/a.yml:2:11: sas.region: expected a region id such as cn-hangzhou or ap-southeast-1, got \"X\"\n\
         conf/a.yml:3:1: unknown key \"foo\" at the top level (expected one of: accounts, sas, credentials, polling, targets, target_files, discovery, state_file)"
    );
    let err = Config::parse("foo: 1\n", "a.yml", &no_env).expect_err("invalid");
    assert!(
        err.to_string()
            .starts_with("1 problem in the configuration:\na.yml:1:1: ")
    );
    let problem = Problem {
        location: Location {
            file: "x.yml".to_owned(),
            line: 3,
            column: 7,
        },
        message: "bad".to_owned(),
    };
    assert_eq!(problem.location.to_string(), "x.yml:3:7");
    assert_eq!(problem.to_string(), "x.yml:3:7: bad");
}

#[test]
fn load_reads_files_and_names_missing_ones() {
    let missing = std::env::temp_dir().join("sas-exporter-config-test-does-not-exist.yml");
    match Config::load(&missing) {
        Err(ConfigError::Read { path, source }) => {
            assert_eq!(path, missing.display().to_string());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected ConfigError::Read, got {other:?}"),
    }
    let err = Config::load(&missing).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("sas-exporter-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("ok.yml");
    std::fs::write(&file, format!("targets:\n  - digest: {D1}\n")).expect("write");
    let c = Config::load(&file).expect("valid file");
    assert_eq!(c.targets[0].location.file, file.display().to_string());
    assert_eq!(c.targets[0].location.line, 2);

    let bad = dir.join("bad.yml");
    std::fs::write(&bad, "sas:\n  timeout: forever\n").expect("write");
    match Config::load(&bad) {
        Err(ConfigError::Invalid(problems)) => {
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].location.file, bad.display().to_string());
        }
        other => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn target_files_parse_like_targets_and_merge_across_files() {
    let a = parse_targets(
        &format!("- digest: {D1}\n  labels: {{team: a}}\n- digest: {D2}\n"),
        "targets.d/a.yml",
        &no_env,
        &one_account(),
    )
    .expect("valid target file");
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].location.file, "targets.d/a.yml");
    assert_eq!(a[1].location.line, 3);
    assert!(
        parse_targets("", "empty.yml", &no_env, &one_account())
            .expect("empty")
            .is_empty()
    );
    assert!(
        parse_targets("# nothing\n", "c.yml", &no_env, &one_account())
            .expect("comments")
            .is_empty()
    );

    // The YAML loader marks a block mapping just after its first key, hence column 7.
    match parse_targets("digest: x\n", "b.yml", &no_env, &one_account()) {
        Err(ConfigError::Invalid(problems)) => assert_eq!(
            problems,
            vec![Problem {
                location: Location {
                    file: "b.yml".to_owned(),
                    line: 1,
                    column: 7
                },
                message: "a target file must hold a YAML list of targets (\"- digest: ...\")"
                    .to_owned(),
            }]
        ),
        other => panic!("expected problems, got {other:?}"),
    }

    let b = parse_targets(
        &format!("- digest: {D1}\n  labels: {{team: b}}\n"),
        "targets.d/b.yml",
        &no_env,
        &one_account(),
    )
    .expect("valid target file");
    let problems = dedupe_targets(a.iter().cloned().chain(b).collect()).expect_err("conflict");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].location.file, "targets.d/b.yml");
    assert_eq!(
        problems[0].message,
        format!(
            "duplicate digest {D1} with different labels (first at targets.d/a.yml:1); give both entries the same labels or remove one"
        )
    );
    let merged = dedupe_targets(a.iter().cloned().chain(a.iter().cloned()).collect())
        .expect("identical duplicates collapse");
    assert_eq!(merged, a);
}
