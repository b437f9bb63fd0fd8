//! Several accounts in one exporter: the `accounts:` rules with their messages and locations,
//! and end to end against two simulators, one account's trouble never touching the other.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use sas_image_scan_exporter::config::{Config, ConfigError, DEFAULT_ACCOUNT, Site, parse_targets};
use sas_simulator::{Fault, FaultScope, Scenario, SimKey, Simulator};

fn p(line: usize, column: usize, message: &str) -> (usize, usize, String) {
    (line, column, message.to_owned())
}

const D1: &str = "8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
const D2: &str = "0b0c0b0c0b0c0b0c0b0c0b0c0b0c0b0c0b0c0b0c0b0c0b0c0b0c0b0c0b0c0b0c";

#[test]
fn two_accounts_with_their_own_sections_and_limits() {
    let yaml = format!(
        "polling:
  requests_per_second: 3
  concurrency: 2
accounts:
  - name: prod
    sas: {{region: cn-hangzhou}}
    credentials:
      ram_role_arn: acs:ram::1234567890123456:role/sas-exporter
    requests_per_second: 5
    concurrency: 4
  - name: intl
    sas: {{region: ap-southeast-1, timeout: 3s}}
    credentials: {{profile: intl}}
targets:
  - digest: {D1}
    account: prod
  - digest: sha256:{D1}
    account: intl
    labels: {{team: global}}
  - digest: {D2}
    account: intl
"
    );
    let c = Config::parse(&yaml, "a.yml", &no_env).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["prod", "intl"]);
    let (prod, intl) = (&c.accounts[0], &c.accounts[1]);
    assert_eq!(prod.sas.region, "cn-hangzhou");
    assert_eq!(prod.sas.site(), Site::China);
    assert_eq!(
        prod.credentials
            .as_ref()
            .and_then(|c| c.ram_role_arn.as_deref()),
        Some("acs:ram::1234567890123456:role/sas-exporter")
    );
    assert_eq!((prod.requests_per_second, prod.concurrency), (5.0, 4));
    assert_eq!(intl.sas.site(), Site::International);
    assert_eq!(intl.sas.timeout, Duration::from_secs(3));
    assert_eq!(
        intl.credentials.as_ref().and_then(|c| c.profile.as_deref()),
        Some("intl")
    );
    // Without limits of its own, an account takes polling's.
    assert_eq!((intl.requests_per_second, intl.concurrency), (3.0, 2));
    // The same digest in two accounts is two targets.
    let targets: Vec<(&str, &str)> = c
        .targets
        .iter()
        .map(|t| (t.account.as_str(), t.digest.as_str()))
        .collect();
    assert_eq!(targets, [("prod", D1), ("intl", D1), ("intl", D2)]);
    assert_eq!(c.targets[1].labels["team"], "global");
    assert_eq!(
        c.summary(),
        "config OK: 3 targets, 2 accounts, interval 10m, active_interval 30s; \
         account prod: 1 target, site china, region cn-hangzhou (https://tds.cn-shanghai.aliyuncs.com), signature v3, 5 requests/s, concurrency 4, credentials ram role acs:ram::1234567890123456:role/sas-exporter; \
         account intl: 2 targets, site international, region ap-southeast-1 (https://tds.ap-southeast-1.aliyuncs.com), signature v3, 3 requests/s, concurrency 2, credentials profile intl"
    );
}

#[test]
fn the_single_account_shape_is_the_account_default() {
    let yaml = format!("sas: {{region: cn-beijing}}\ntargets:\n  - digest: {D1}\n");
    let c = Config::parse(&yaml, "a.yml", &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.accounts.len(), 1);
    assert_eq!(c.accounts[0].name, DEFAULT_ACCOUNT);
    assert_eq!(c.accounts[0].sas.region, "cn-beijing");
    assert_eq!(c.targets[0].account, DEFAULT_ACCOUNT);
    // `account: default` may still be written out.
    let yaml = format!("targets:\n  - digest: {D1}\n    account: default\n");
    let c = Config::parse(&yaml, "a.yml", &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.targets[0].account, DEFAULT_ACCOUNT);
}

#[test]
fn account_rules_are_reported_with_their_locations() {
    let yaml = format!(
        "sas: {{region: cn-hangzhou}}
credentials: {{profile: x}}
accounts:
  - name: prod
  - name: prod
  - name: Bad.Name
  - sas: {{}}
  - name: ok
    color: blue
targets:
  - digest: {D1}
  - digest: {D2}
    account: nowhere
"
    );
    assert_eq!(
        config_problems(&yaml, "a.yml"),
        vec![
            p(
                1,
                1,
                "sas: not allowed beside accounts; with accounts: every account has its own sas section"
            ),
            p(
                2,
                1,
                "credentials: not allowed beside accounts; with accounts: every account has its own credentials section"
            ),
            p(
                5,
                11,
                "accounts[1].name: duplicate account name \"prod\"; it is first defined at a.yml:4:11"
            ),
            p(
                6,
                11,
                "accounts[2].name: expected an account name matching [a-z0-9][a-z0-9_-]{0,62}, got \"Bad.Name\""
            ),
            p(
                7,
                5,
                "accounts[3]: name is required (it becomes the account label)"
            ),
            p(
                9,
                5,
                "unknown key \"color\" in accounts[4] (expected one of: name, sas, credentials, requests_per_second, concurrency)"
            ),
            p(
                11,
                5,
                "targets[0]: account is required when several accounts are configured (prod, ok)"
            ),
            p(
                13,
                14,
                "targets[1].account: unknown account \"nowhere\" (configured: prod, ok)"
            ),
        ]
    );
    assert_eq!(
        config_problems("accounts: []\n", "a.yml"),
        vec![p(
            1,
            11,
            "accounts: must list at least one account (or remove it to use the top-level sas and credentials sections)"
        )]
    );
    // The account's own sections are checked with their paths.
    assert_eq!(
        config_problems(
            "accounts:\n  - name: a\n    sas: {timeout: 0s}\n    credentials: {access_key_id: x}\n    requests_per_second: 0\n",
            "a.yml"
        ),
        vec![
            p(
                3,
                20,
                "accounts[0].sas.timeout: must be at least 1ms, got 0s"
            ),
            p(
                4,
                34,
                "accounts[0].credentials: access_key_id is set but neither access_key_secret nor access_key_secret_file is; set one of them"
            ),
            p(
                5,
                26,
                "accounts[0].requests_per_second: expected a number from 0.001 to 10000, got \"0\""
            ),
        ]
    );
}

#[test]
fn target_file_entries_name_their_account() {
    let accounts = vec!["prod".to_owned(), "intl".to_owned()];
    let text = format!("- digest: {D1}\n  account: intl\n- digest: {D1}\n  account: prod\n");
    let targets = parse_targets(&text, "t.yml", &no_env, &accounts).expect("valid");
    let got: Vec<(&str, &str)> = targets
        .iter()
        .map(|t| (t.account.as_str(), t.digest.as_str()))
        .collect();
    assert_eq!(got, [("intl", D1), ("prod", D1)]);
    let text = format!("- digest: {D1}\n- digest: {D2}\n  account: mars\n");
    match parse_targets(&text, "t.yml", &no_env, &accounts) {
        Err(ConfigError::Invalid(problems)) => {
            let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
            assert_eq!(
                got,
                [
                    "t.yml:1:3: targets[0]: account is required when several accounts are configured (prod, intl)",
                    "t.yml:3:12: targets[1].account: unknown account \"mars\" (configured: prod, intl)",
                ]
            );
        }
        other => panic!("expected problems, got {other:?}"),
    }
    // A duplicate with other labels is a conflict only within one account.
    let text = format!(
        "- digest: {D1}\n  account: intl\n  labels: {{team: a}}\n- digest: {D1}\n  account: intl\n  labels: {{team: b}}\n"
    );
    match parse_targets(&text, "t.yml", &no_env, &accounts) {
        Err(ConfigError::Invalid(problems)) => assert_eq!(
            problems[0].message,
            format!(
                "duplicate digest {D1} in account intl with different labels (first at line 1); give both entries the same labels or remove one"
            )
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

const INTL_KEY: (&str, &str) = ("LTAIintl0000000000test", "intl-secret");

/// Two simulators, one per account; `intl` signs with a key of its own that only its simulator
/// knows, so a request that went to the wrong place would be rejected.
async fn two_accounts(
    targets: &[(&str, String)],
    polling: sas_image_scan_exporter::config::PollingConfig,
) -> (Simulator, Simulator, Config) {
    let prod = Simulator::start(Scenario::default())
        .await
        .expect("prod sim");
    let intl = Simulator::start(Scenario::default())
        .await
        .expect("intl sim");
    intl.add_key(SimKey {
        id: INTL_KEY.0.into(),
        secret: INTL_KEY.1.into(),
        security_token: None,
    });
    let mut intl_account = account("intl", &intl, &polling);
    intl_account.sas.region = "ap-southeast-1".into();
    if let Some(c) = intl_account.credentials.as_mut() {
        c.access_key_id = Some(INTL_KEY.0.into());
        c.access_key_secret = Some(INTL_KEY.1.to_owned().into());
    }
    let cfg = Config {
        accounts: vec![account("prod", &prod, &polling), intl_account],
        targets: targets
            .iter()
            .map(|(a, d)| sas_image_scan_exporter::config::Target {
                account: (*a).to_owned(),
                ..target(d, a)
            })
            .collect(),
        polling,
        ..Config::default()
    };
    (prod, intl, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_digest_in_two_accounts_is_two_targets_with_their_own_data() {
    let shared = digest(7001);
    let (prod, intl, cfg) = two_accounts(
        &[
            ("prod", shared.clone()),
            ("intl", shared.clone()),
            ("intl", digest(7002)),
        ],
        polling(600, 600, 20.0, 2),
    )
    .await;
    prod.set_tasks(&shared, vec![serde_json::json!({"Status": "SUCCESS", "StartTime": 1_000, "FinishTime": 2_000, "Id": 1})]);
    intl.set_tasks(
        &shared,
        vec![
            serde_json::json!({"Status": "FAIL", "StartTime": 1_000, "FinishTime": 3_000, "Id": 2}),
        ],
    );
    let exporter = start(&cfg).await;
    wait_ready(&exporter).await;
    assert_eq!(prod.requests_for(&shared), 1);
    assert_eq!(intl.requests_for(&shared), 1);
    assert_eq!(intl.requests_for(&digest(7002)), 1);
    assert_eq!(prod.total_requests(), 1);
    let all = samples(&get(&exporter, "/metrics", &[]).await.body);
    let status = |account: &str, team: &str, state: &str| {
        all[&format!(
            "sas_image_scan_status{{account=\"{account}\",digest=\"{shared}\",image=\"registry.example.com/app:{team}\",team=\"{team}\",status=\"{state}\"}}"
        )]
    };
    assert_eq!(status("prod", "prod", "SUCCESS"), 1.0);
    assert_eq!(status("intl", "intl", "FAIL"), 1.0);
    assert_eq!(status("intl", "intl", "SUCCESS"), 0.0);
    assert_eq!(
        all["sas_exporter_api_requests_total{account=\"intl\",action=\"DescribeImageLatestScanTask\"}"],
        2.0
    );
    assert_eq!(
        all["sas_exporter_api_requests_total{account=\"prod\",action=\"DescribeImageLatestScanTask\"}"],
        1.0
    );
    assert_eq!(
        all["sas_exporter_account_info{account=\"intl\",account_id=\"\",site=\"international\"}"],
        1.0
    );
    assert_eq!(
        all["sas_exporter_account_info{account=\"prod\",account_id=\"\",site=\"china\"}"],
        1.0
    );
    assert_eq!(
        all["sas_exporter_credentials_refreshes_total{account=\"prod\",provider=\"static\"}"],
        0.0
    );
    assert_eq!(all["sas_exporter_targets"], 3.0);
    let page = get(&exporter, "/", &[]).await.body;
    assert!(
        page.contains(
            "<tr><td>intl</td><td>2</td><td>1</td><td>0</td><td>1</td><td>0</td><td>0</td></tr>"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "<tr><td>prod</td><td>1</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0</td></tr>"
        ),
        "{page}"
    );
    exporter.shutdown().await;
}

/// Requests per second between two readings of a simulator's request count.
fn rate_between(from: usize, to: usize, seconds: f64) -> f64 {
    (to - from) as f64 / seconds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_or_broken_account_does_not_slow_the_other() {
    // 40 targets each, polled every 2 s at 10 requests/s per account: each account alone needs
    // 20 requests/s of its bucket's 10, so both run flat out at their own bucket's rate.
    let mut targets = Vec::new();
    for i in 0..40 {
        targets.push(("prod", digest(7100 + i)));
        targets.push(("intl", digest(7200 + i)));
    }
    let (prod, intl, cfg) = two_accounts(&targets, polling(2, 2, 10.0, 2)).await;
    let exporter = start(&cfg).await;
    wait_ready(&exporter).await;

    let measure = |sim: &Simulator| sim.total_requests() as usize;
    let window = Duration::from_secs(3);
    let (p0, i0, t0) = (measure(&prod), measure(&intl), Instant::now());
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let healthy_prod = rate_between(p0, measure(&prod), secs);
    let healthy_intl = rate_between(i0, measure(&intl), secs);
    assert!(healthy_prod > 7.0, "prod alone: {healthy_prod:.2}/s");
    assert!(healthy_intl > 7.0, "intl alone: {healthy_intl:.2}/s");

    // intl is throttled on every request: its bucket halves and halves again, prod's does not.
    intl.inject(FaultScope::Global, Fault::error(400, "Throttling.User"));
    let (p0, t0) = (measure(&prod), Instant::now());
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let prod_during = rate_between(p0, measure(&prod), secs);
    assert!(
        prod_during > 0.8 * healthy_prod,
        "prod slowed from {healthy_prod:.2}/s to {prod_during:.2}/s while intl was throttled"
    );
    let intl_rate = exporter.current_rate("intl").expect("intl");
    assert!(
        intl_rate < 5.0,
        "intl's bucket did not slow down: {intl_rate}"
    );
    assert_eq!(exporter.current_rate("prod"), Some(10.0));

    // intl's key stops working altogether: prod keeps its rate and its data.
    intl.clear_faults();
    intl.inject(
        FaultScope::Global,
        Fault::error(404, "InvalidAccessKeyId.NotFound"),
    );
    let (p0, t0) = (measure(&prod), Instant::now());
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let prod_broken = rate_between(p0, measure(&prod), secs);
    assert!(
        prod_broken > 0.8 * healthy_prod,
        "prod slowed from {healthy_prod:.2}/s to {prod_broken:.2}/s while intl was broken"
    );
    let all = samples(&get(&exporter, "/metrics", &[]).await.body);
    let up = |account: &str, value: f64| {
        all.iter()
            .filter(|(k, v)| {
                k.starts_with(&format!("sas_image_scan_up{{account=\"{account}\"")) && **v == value
            })
            .count()
    };
    // Every prod target is up; intl's polls since its key broke are down.
    assert_eq!((up("prod", 1.0), up("prod", 0.0)), (40, 0));
    assert!(up("intl", 0.0) > 0, "no intl poll failed");
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_accounts_and_keeps_the_others_schedules() {
    let dir = std::env::temp_dir().join(format!("sas-accounts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let prod = Simulator::start(Scenario::default()).await.expect("prod");
    let intl = Simulator::start(Scenario::default()).await.expect("intl");
    let keyed_yaml = |name: &str, sim: &Simulator, id: &str, secret: &str| {
        format!(
            "  - name: {name}\n    sas: {{endpoint: \"{}\", timeout: 2s}}\n    credentials: {{access_key_id: {id}, access_key_secret: {secret}}}\n",
            sim.url(),
        )
    };
    let account_yaml = |name: &str, sim: &Simulator| {
        keyed_yaml(
            name,
            sim,
            sas_simulator::SIM_ACCESS_KEY_ID,
            sas_simulator::SIM_ACCESS_KEY_SECRET,
        )
    };
    let (a, b) = (digest(7301), digest(7302));
    let write = |accounts: &str, targets: &str| {
        let text = format!(
            "polling: {{interval: 10m, active_interval: 30s, requests_per_second: 50}}\naccounts:\n{accounts}targets:\n{targets}"
        );
        let path = dir.join("config.yml");
        std::fs::write(&path, text).expect("write config");
        path
    };
    let path = write(
        &account_yaml("prod", &prod),
        &format!("  - {{digest: {a}, account: prod}}\n"),
    );
    let config = Config::load(&path).expect("valid");
    let exporter = start_with_options(
        &config,
        sas_image_scan_exporter::app::Options {
            config_path: Some(path.clone()),
            ..Default::default()
        },
    )
    .await;
    wait_ready(&exporter).await;
    assert_eq!(prod.requests_for(&a), 1);

    // Add intl with a digest of its own and the same digest as prod.
    write(
        &format!(
            "{}{}",
            account_yaml("prod", &prod),
            account_yaml("intl", &intl)
        ),
        &format!(
            "  - {{digest: {a}, account: prod}}\n  - {{digest: {a}, account: intl}}\n  - {{digest: {b}, account: intl}}\n"
        ),
    );
    let outcome = exporter.reload().await.expect("reload");
    assert_eq!(outcome.to_string(), "3 targets (3 configured, shard 0/1)");
    wait_ready(&exporter).await;
    assert_eq!(intl.requests_for(&a), 1);
    assert_eq!(intl.requests_for(&b), 1);
    // prod's digest kept its schedule: no second request after the reload.
    assert_eq!(prod.requests_for(&a), 1);
    let body = get(&exporter, "/metrics", &[]).await.body;
    assert!(body.contains(&format!(
        "sas_image_scan_up{{account=\"intl\",digest=\"{b}\""
    )));

    // A new key for intl alone: prod's schedule is untouched, and intl signs its next poll (of a
    // digest added with the change) with the new key.
    let c = digest(7303);
    intl.add_key(SimKey {
        id: "LTAIrotated000000test".into(),
        secret: "rotated-secret".into(),
        security_token: None,
    });
    write(
        &format!(
            "{}{}",
            account_yaml("prod", &prod),
            keyed_yaml("intl", &intl, "LTAIrotated000000test", "rotated-secret")
        ),
        &format!(
            "  - {{digest: {a}, account: prod}}\n  - {{digest: {a}, account: intl}}\n  - {{digest: {b}, account: intl}}\n  - {{digest: {c}, account: intl}}\n"
        ),
    );
    exporter.reload().await.expect("reload with intl's new key");
    wait_ready(&exporter).await;
    assert_eq!(intl.requests_for(&c), 1);
    let signed_with = intl
        .last_request()
        .and_then(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_default();
    assert!(
        signed_with.contains("Credential=LTAIrotated000000test"),
        "{signed_with}"
    );
    assert_eq!(
        prod.requests_for(&a),
        1,
        "prod was polled again by intl's change"
    );
    assert_eq!(
        intl.requests_for(&b),
        1,
        "intl's other digests kept their schedule"
    );

    // Remove prod: its series go at once, intl's stay.
    write(
        &account_yaml("intl", &intl),
        &format!("  - {{digest: {b}, account: intl}}\n"),
    );
    exporter.reload().await.expect("reload");
    let body = get(&exporter, "/metrics", &[]).await.body;
    assert!(!body.contains("account=\"prod\""), "{body}");
    let info = "sas_exporter_account_info{account=\"intl\",account_id=\"\",site=\"china\"} 1";
    assert!(body.contains(info), "{body}");
    assert!(body.contains(&format!(
        "sas_image_scan_up{{account=\"intl\",digest=\"{b}\""
    )));
    assert_eq!(exporter.current_rate("prod"), None);
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_file_keeps_each_account_apart() {
    let shared = digest(7401);
    let (prod, intl, mut cfg) = two_accounts(
        &[("prod", shared.clone()), ("intl", shared.clone())],
        polling(600, 600, 20.0, 2),
    )
    .await;
    intl.set_tasks(
        &shared,
        vec![
            serde_json::json!({"Status": "FAIL", "StartTime": 1_000, "FinishTime": 3_000, "Id": 2}),
        ],
    );
    let path = std::env::temp_dir().join(format!("sas-accounts-state-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    cfg.state_file = Some(path.clone());
    let exporter = start(&cfg).await;
    wait_ready(&exporter).await;
    exporter.shutdown().await;
    let saved = sas_image_scan_exporter::read_state_file(&path).expect("state");
    let mut keys: Vec<(String, String)> = saved.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("intl".to_owned(), shared.clone()),
            ("prod".to_owned(), shared.clone())
        ]
    );
    // A restart serves both at once, from the file, before any request.
    let before = (prod.total_requests(), intl.total_requests());
    let cfg = Config {
        polling: polling(3600, 600, 20.0, 2),
        ..cfg
    };
    let exporter = start(&cfg).await;
    let response = get(&exporter, "/-/ready", &[]).await;
    assert_eq!(response.status, 200);
    let all = samples(&get(&exporter, "/metrics", &[]).await.body);
    let failed: BTreeMap<&str, f64> = ["prod", "intl"]
        .into_iter()
        .map(|account| {
            let key = format!(
                "sas_image_scan_status{{account=\"{account}\",digest=\"{shared}\",image=\"registry.example.com/app:{account}\",team=\"{account}\",status=\"FAIL\"}}"
            );
            (account, all.get(&key).copied().unwrap_or(-1.0))
        })
        .collect();
    assert_eq!(failed, BTreeMap::from([("intl", 1.0), ("prod", 0.0)]));
    assert_eq!((prod.total_requests(), intl.total_requests()), before);
    exporter.shutdown().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_info_carries_the_id_sts_reports_and_stays_empty_when_sts_refuses() {
    use sas_simulator::{SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, StsSimulator};
    let base = || SimKey {
        id: SIM_ACCESS_KEY_ID.into(),
        secret: SIM_ACCESS_KEY_SECRET.into(),
        security_token: None,
    };
    let prod_sts = StsSimulator::start(vec![base()], None, sas_simulator::Clock::system())
        .await
        .expect("sts");
    prod_sts.set_account_id("1111222233334444");
    // intl's STS knows intl's key but refuses every call.
    let intl_key = SimKey {
        id: INTL_KEY.0.into(),
        secret: INTL_KEY.1.into(),
        security_token: None,
    };
    let intl_sts = StsSimulator::start(vec![intl_key], None, sas_simulator::Clock::system())
        .await
        .expect("sts");
    intl_sts.fail_next(u64::MAX, 403, "NoPermission");
    let (_prod, _intl, mut cfg) = two_accounts(
        &[("prod", digest(7501)), ("intl", digest(7502))],
        polling(600, 600, 20.0, 2),
    )
    .await;
    for (account, sts) in cfg.accounts.iter_mut().zip([&prod_sts, &intl_sts]) {
        if let Some(c) = account.credentials.as_mut() {
            c.sts_endpoint = sts.url().parse().ok();
        }
    }
    let exporter = start(&cfg).await;
    wait_ready(&exporter).await;
    let want = "sas_exporter_account_info{account=\"prod\",account_id=\"1111222233334444\",site=\"china\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    while !get(&exporter, "/metrics", &[]).await.body.contains(want) {
        assert!(Instant::now() < deadline, "prod's account ID never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One signed GetCallerIdentity each; the refused one is not retried.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = |sts: &StsSimulator| {
        sts.requests()
            .iter()
            .filter(|r| r.action == "GetCallerIdentity")
            .map(|r| (r.signature_valid, r.outcome.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(calls(&prod_sts), [(Some(true), "ok".to_owned())]);
    assert_eq!(calls(&intl_sts), [(Some(true), "NoPermission".to_owned())]);
    let body = get(&exporter, "/metrics", &[]).await.body;
    assert!(
        body.contains(
            "sas_exporter_account_info{account=\"intl\",account_id=\"\",site=\"international\"} 1"
        ),
        "{body}"
    );
    exporter.shutdown().await;
}
