//! The config contract (SPEC section 3), exercised through the public API only.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use sas_image_scan_exporter::config::{
    Config, ConfigError, Location, Problem, SignatureVersion, Target, dedupe_targets,
    endpoint_host_for_region, normalize_digest, parse_targets,
};
use secrecy::ExposeSecret;

const D1: &str = "8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
const D2: &str = "0b0c9f4e6a1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b";

fn no_env(_: &str) -> Option<String> {
    None
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
    assert_eq!(c.sas.region, "cn-shanghai");
    assert_eq!(c.sas.endpoint, None);
    assert_eq!(c.sas.signature_version, SignatureVersion::V3);
    assert_eq!(c.sas.timeout, Duration::from_secs(10));
    assert_eq!(c.sas.timezone.local_minus_utc(), 8 * 3600);
    assert_eq!(c.sas.endpoint_url(), "https://tds.cn-shanghai.aliyuncs.com");
    assert!(c.credentials.is_none());
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

const SPEC_EXAMPLE: &str = r#"sas:
  region: cn-hangzhou            # picks the endpoint (ALIBABA-API.md, Endpoints); default cn-shanghai
  endpoint: ""                   # full URL override, e.g. https://tds.ap-southeast-1.aliyuncs.com
                                 # plain http:// is accepted only for loopback addresses
  signature_version: v3          # v3 (ACS3-HMAC-SHA256, default, as the official SDKs) or v1 (HMAC-SHA1)
  timeout: 10s                   # per HTTP request
  timezone: "+08:00"             # UTC offset of the API's Modified/Create strings

credentials:                     # optional; when absent the Alibaba Cloud default chain is used
  access_key_id: ${ALIBABA_CLOUD_ACCESS_KEY_ID}
  access_key_secret_file: /run/secrets/sas_secret   # or access_key_secret (discouraged)
  security_token: ""             # STS token, optional
  # later: profile, ram_role_arn, ecs_ram_role, oidc ... (see the credentials issue)

polling:
  interval: 10m                  # refresh period of a digest whose latest scan has ended (or has none)
  active_interval: 30s           # refresh period while its scan is running
  concurrency: 4                 # API requests in flight at most
  requests_per_second: 5         # token bucket over all API requests, retries included
  max_retries: 3                 # for retryable errors only (section 5.3)

targets:                         # the digests to watch
  - digest: 8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd
    labels: {image: "registry.example.com/team/app:1.4.2", team: payments}
  - digest: sha256:0b0c9f4e6a1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b       # "sha256:" prefix accepted and stripped

target_files: ["targets.d/*.yml"]  # optional globs; each file holds a YAML list shaped like `targets`
state_file: ""                   # optional; see section 6.2
"#;

#[test]
fn spec_example_parses_to_exact_values() {
    let c = parse_with(
        SPEC_EXAMPLE,
        &env_of(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tExampleId")]),
    );
    assert_eq!(c.sas.region, "cn-hangzhou");
    assert_eq!(c.sas.endpoint, None);
    assert_eq!(c.sas.endpoint_url(), "https://tds.cn-shanghai.aliyuncs.com");
    assert_eq!(c.sas.signature_version, SignatureVersion::V3);
    assert_eq!(c.sas.timeout, Duration::from_secs(10));
    assert_eq!(c.sas.timezone.local_minus_utc(), 8 * 3600);

    let creds = c.credentials.as_ref().expect("credentials section");
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
                labels: labels(&[
                    ("image", "registry.example.com/team/app:1.4.2"),
                    ("team", "payments")
                ]),
                location: loc(23, 13),
            },
            Target {
                digest: D2.to_owned(),
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
        SPEC_EXAMPLE,
        &env_of(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")]),
    );
    assert_eq!(
        c.summary(),
        "config OK: 2 targets, region cn-hangzhou (https://tds.cn-shanghai.aliyuncs.com), signature v3, interval 10m, active_interval 30s, 5 requests/s"
    );
    let c = parse(&format!(
        "sas:\n  region: eu-central-1\n  signature_version: V1\npolling:\n  interval: 1h30m\n  active_interval: 45s\n  requests_per_second: 0.5\ntargets:\n  - digest: {D1}\n"
    ));
    assert_eq!(
        c.summary(),
        "config OK: 1 target, region eu-central-1 (https://tds.ap-southeast-1.aliyuncs.com), signature v1, interval 1h 30m, active_interval 45s, 0.5 requests/s"
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
  profile: default
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
                "unknown key \"profile\" in credentials (expected one of: access_key_id, access_key_secret, access_key_secret_file, security_token)"
            ),
            p(
                8,
                3,
                "unknown key \"intervall\" in polling (expected one of: interval, active_interval, concurrency, requests_per_second, max_retries)"
            ),
            p(
                11,
                5,
                "unknown key \"label\" in targets[0] (expected one of: digest, labels)"
            ),
            p(
                12,
                1,
                "unknown key \"extra\" at the top level (expected one of: sas, credentials, polling, targets, target_files, state_file)"
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
            "unknown key \"Sas\" at the top level (expected one of: sas, credentials, polling, targets, target_files, state_file)"
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
    let expected = "the top level must be a mapping with keys such as sas, credentials, polling, targets, target_files, state_file";
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
    assert_eq!(c.sas.timeout, Duration::from_secs(300));
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
                "polling.requests_per_second: expected a number greater than 0, got \"0\""
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
            "polling.requests_per_second: expected a number greater than 0, got \"-2\"",
        ),
        (
            "polling:\n  requests_per_second: inf\n",
            "polling.requests_per_second: expected a number greater than 0, got \"inf\"",
        ),
        (
            "polling:\n  requests_per_second: NaN\n",
            "polling.requests_per_second: expected a number greater than 0, got \"NaN\"",
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
        parse("sas:\n  signature_version: V1\n")
            .sas
            .signature_version,
        SignatureVersion::V1
    );
    assert_eq!(
        parse("sas:\n  signature_version: v3\n")
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
        assert_eq!(c.sas.timezone.local_minus_utc(), secs, "{tz}");
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
        assert_eq!(c.sas.region, region);
        assert_eq!(c.sas.endpoint_url(), format!("https://{host}"));
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
        assert_eq!(c.sas.endpoint.as_deref(), Some(want));
        assert_eq!(c.sas.endpoint_url(), want);
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
    let creds = c.credentials.expect("credentials");
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
    let empty = "credentials: no credentials given; set access_key_id with access_key_secret_file, or remove the section to use the default credential chain";
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
    let creds = parse_with(yaml, &env).credentials.expect("credentials");
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
    let debug = format!("{:#?}", c.credentials);
    assert!(!debug.contains("env-secret-value"), "{debug}");
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
    assert_eq!(c.sas.region, "ap-southeast-1");
    assert_eq!(c.sas.endpoint, None);
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
                "targets[0].labels: label name \"status\" is used by the exporter itself (reserved: digest, status, task_id, task_name, task_type, source, target_type, raw_status, id, action, code)"
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
                "targets[0].labels: label name \"id\" is used by the exporter itself (reserved: digest, status, task_id, task_name, task_type, source, target_type, raw_status, id, action, code)"
            ),
            p(
                13,
                13,
                "targets[1].digest: expected 64 hex characters after an optional \"sha256:\" prefix, got \"nothex\""
            ),
            p(
                14,
                1,
                "unknown key \"bogus\" at the top level (expected one of: sas, credentials, polling, targets, target_files, state_file)"
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
         conf/a.yml:3:1: unknown key \"foo\" at the top level (expected one of: sas, credentials, polling, targets, target_files, state_file)"
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
    )
    .expect("valid target file");
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].location.file, "targets.d/a.yml");
    assert_eq!(a[1].location.line, 3);
    assert!(
        parse_targets("", "empty.yml", &no_env)
            .expect("empty")
            .is_empty()
    );
    assert!(
        parse_targets("# nothing\n", "c.yml", &no_env)
            .expect("comments")
            .is_empty()
    );

    // The YAML loader marks a block mapping just after its first key, hence column 7.
    match parse_targets("digest: x\n", "b.yml", &no_env) {
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
