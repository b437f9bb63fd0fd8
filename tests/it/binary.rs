//! The binary as users run it: flags, exit codes, `--config.check`, `--demo`, SIGTERM.

use crate::common;

use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sas-image-scan-exporter");

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sas-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// Runs `--config.check` on a file with the given environment variables.
fn config_check(path: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(["--config.check", "--config.file"])
        .arg(path)
        .envs(env.iter().copied())
        .output()
        .expect("run")
}

#[test]
fn config_check_good_and_bad() {
    let good = temp_file(
        "good.yml",
        "sas:\n  region: cn-hangzhou\ncredentials:\n  access_key_id: ${TEST_AK}\n  access_key_secret: s\ntargets:\n  - digest: sha256:8F0FBDB41D3D1ADE4FFDF21558443F4C03342010563BB8C43CCC09594D50ABCD\n    labels: {team: a}\n",
    );
    let out = config_check(&good, &[("TEST_AK", "LTAItest")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "config OK: 1 target, 1 account, interval 10m, active_interval 30s; account default: 1 target, site china, region cn-hangzhou (https://tds.cn-shanghai.aliyuncs.com), signature v3, 5 requests/s, concurrency 4, credentials static\n"
    );

    // The shipped multi-account example: one line with a part per account.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/multi-account.yml");
    let out = config_check(&example, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.starts_with("config OK: 3 targets, 3 accounts, ")
            && summary.contains("; account intl: 1 target, site international, region ap-southeast-1 (https://tds.ap-southeast-1.aliyuncs.com), signature v3, 2 requests/s, concurrency 4, credentials profile intl"),
        "{summary}"
    );

    let bad = temp_file(
        "bad.yml",
        "polling:\n  concurrency: 0\n  surprise: 1\ntargets:\n  - digest: nothex\n",
    );
    let out = config_check(&bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = bad.display().to_string();
    assert!(err.starts_with("3 problems in the configuration:"), "{err}");
    assert!(
        err.contains(&format!("{file}:2:16: polling.concurrency")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:3:3: unknown key \"surprise\" in polling")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:5:13: targets[0].digest")),
        "{err}"
    );
}

#[test]
fn flags_and_exit_codes() {
    let out = Command::new(BIN)
        .arg("--no-such-flag")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(BIN).arg("--version").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.starts_with("sas-image-scan-exporter 0.1.0 (revision "),
        "{v}"
    );
    assert!(v.contains("rustc "), "{v}");
    let out = Command::new(BIN)
        .args(["--web.listen-address", ":notaport"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(BIN)
        .args(["--log.format", "xml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(BIN)
        .args(["--config.file", "/nonexistent/sas.yml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/sas.yml"));
}

// `--demo` is the one way to start without a config file.
#[cfg(feature = "demo")]
#[test]
fn a_taken_port_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(BIN)
        .args(["--demo", "--web.listen-address", &addr])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[cfg(not(feature = "demo"))]
#[test]
fn demo_without_the_feature_is_a_clear_error() {
    let out = Command::new(BIN).arg("--demo").output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("this build has no demo mode: it was built without the `demo` feature"),
        "{out:?}"
    );
}

#[cfg(feature = "demo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_live_metrics_and_stops_on_sigterm() {
    use std::io::BufRead as _;

    // Killed on drop: a failing assertion must not leave the exporter running.
    let mut guard = common::KillOnDrop(
        Command::new(BIN)
            .args([
                "--demo",
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.format",
                "json",
            ])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let child = &mut guard.0;
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut logs = Vec::new();
    let port = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the exporter logs its start");
        let json: serde_json::Value = serde_json::from_str(&line).expect("json log line");
        logs.push(json.clone());
        if json["message"] == "exporter started" {
            let listen = json["listen"].as_str().expect("listen field").to_owned();
            let port = listen
                .trim_end_matches(']')
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .expect("port");
            break port;
        }
    };
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("DEMO MODE"))),
        "{logs:?}"
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http
            .get(format!("{base}/-/ready"))
            .send()
            .await
            .expect("ready");
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "demo never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let samples = common::samples(&body);
    // Two accounts: prod watches the 12 demo digests, intl 4 of them.
    assert_eq!(samples["sas_exporter_targets"], 16.0);
    for account in ["prod", "intl"] {
        assert!(
            samples
                .keys()
                .any(|k| k.starts_with(&format!("sas_image_scan_up{{account=\"{account}\""))),
            "no series of account {account}"
        );
    }
    let current: Vec<&String> = samples
        .iter()
        .filter(|(k, v)| k.starts_with("sas_image_scan_status{") && **v == 1.0)
        .map(|(k, _)| k)
        .collect();
    // One state per target that answered; the denied digest may be down in both accounts.
    assert!(current.len() >= 14, "{current:?}");
    assert!(current.iter().any(|k| k.contains("status=\"NONE\"")));
    assert!(current.iter().any(|k| k.contains("status=\"UNKNOWN\"")));
    if common::require_tool("promtool") {
        assert_eq!(common::promtool_check(&body), "");
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_and_pages_never_show_secrets_with_sts_credentials() {
    use sas_simulator::{Clock, Scenario, SimKey, Simulator, StsSimulator};
    use std::sync::Arc;

    let digest = "8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
    let role = "acs:ram::1234567890:role/sas-reader";
    let base_secret = "base-secret-must-not-leak";
    let sas = Arc::new(Simulator::start(Scenario::default()).await.expect("sas"));
    let sts = StsSimulator::start(
        vec![SimKey {
            id: "LTAIbase".into(),
            secret: base_secret.into(),
            security_token: None,
        }],
        Some(Arc::clone(&sas)),
        Clock::system(),
    )
    .await
    .expect("sts");
    sts.allow_role(role);
    let config = temp_file(
        "sts.yml",
        &format!(
            "sas:\n  endpoint: {}\ncredentials:\n  access_key_id: LTAIbase\n  access_key_secret: {base_secret}\n  ram_role_arn: {role}\n  sts_endpoint: {}\npolling:\n  interval: 1h\n  active_interval: 1h\ntargets:\n  - digest: {digest}\n",
            sas.url(),
            sts.url()
        ),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut guard = common::KillOnDrop(
        Command::new(BIN)
            .arg("--config.file")
            .arg(&config)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .args(["--log.level", "debug"])
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    // Read the log as it comes, so the process never blocks on a full pipe.
    let stderr = guard.0.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/-/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut pages = String::new();
    let mut metrics = String::new();
    for path in ["/", "/metrics", "/-/ready", "/-/healthy", "/nope"] {
        let body = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        if path == "/metrics" {
            metrics.clone_from(&body);
        }
        pages.push_str(&body);
    }
    let samples = common::samples(&metrics);
    assert_eq!(
        samples["sas_exporter_credentials_refreshes_total{account=\"default\",provider=\"ram_role_arn\"}"],
        1.0
    );
    assert!(samples.contains_key("sas_exporter_credentials_expiry_timestamp_seconds{account=\"default\",provider=\"ram_role_arn\"}"));
    assert_eq!(sas.outcome_count("ok"), 1);
    let _ = Command::new("kill")
        .args(["-TERM", &guard.0.id().to_string()])
        .status();
    guard.0.wait().expect("exit");
    let logs = reader.join().expect("log reader");
    assert!(logs.contains("level=debug"), "debug logging was on: {logs}");
    assert!(logs.contains("provider=ram_role_arn"), "{logs}");
    let issued = sts.issued();
    assert_eq!(issued.len(), 1);
    let mut secrets = vec![base_secret.to_owned(), issued[0].secret.clone()];
    secrets.extend(issued[0].security_token.clone());
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs"
        );
        assert!(
            !pages.contains(secret.as_str()),
            "a secret leaked onto a page"
        );
    }
}

#[test]
fn the_example_config_and_its_target_files_pass_the_check() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/sas-image-scan-exporter.yml"
    );
    let out = config_check(
        std::path::Path::new(config),
        &[("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIexample")],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.starts_with("config OK: 5 targets, "), "{summary}");
}
