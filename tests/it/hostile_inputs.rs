//! Hostile inputs: answers with unreadable fields and oversized strings, broken target files,
//! failing credential steps, and TLS clients the server refuses.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::FixedOffset;
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use sas_image_scan_exporter::app::{Exporter, Options};
use sas_image_scan_exporter::clock::Clock;
use sas_image_scan_exporter::config::CredentialsConfig;
use sas_image_scan_exporter::targets::{Shard, TargetFiles, expand_globs};
use sas_image_scan_exporter::{CredentialsError, FailureKind, parse_response};
use sas_simulator::{Scenario, SimKey, Simulator, StsSimulator};
use serde_json::{Value, json};

/// Everything the process logged since the first call, for tests that check a warning appears
/// (and appears once). One global subscriber: the exporter logs from its worker threads.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buf);
        sas_image_scan_exporter::logging::init_with_writer(
            sas_image_scan_exporter::logging::LogLevel::Info,
            sas_image_scan_exporter::logging::LogFormat::Logfmt,
            move || LogWriter(Arc::clone(&writer)),
        )
        .expect("install the log capture");
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines_with(needle: &str) -> Vec<String> {
    let buf = logs().lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// An answer with one out-of-range number and a 600 KB TaskId: the digest stays up, the bad
/// field is left out (and logged once, not on every poll), and the label is capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_field_and_huge_label_keep_the_digest_up() {
    logs();
    let d = digest(0x8bad);
    let huge = "t".repeat(600_000);
    let sim = Simulator::start(Scenario::default().with_tasks(
        &d,
        vec![json!({
            "Status": "SUCCESS", "TaskId": huge, "Id": 1e300, "StartTime": 1_700_000_000_000i64,
            "FinishTime": 1_700_000_060_000i64, "Name": "IMAGE_SCAN", "Extra": 1e300,
        })],
    ))
    .await
    .expect("simulator");
    // active_interval is irrelevant (SUCCESS is terminal); interval 1 s polls several times.
    let cfg = config(&sim, vec![target(&d, "a")], polling(1, 1, 50.0, 2));
    let exporter = start(&cfg).await;
    wait_ready(&exporter).await;
    wait_for("three polls", || sim.requests_for(&d) >= 3).await;

    let body = get(&exporter, "/metrics", &[]).await.body;
    let s = samples(&body);
    let base = format!(
        "account=\"default\",digest=\"{d}\",image=\"registry.example.com/app:a\",team=\"a\""
    );
    assert_eq!(s.get(&format!("sas_image_scan_up{{{base}}}")), Some(&1.0));
    let capped = format!("{}…[truncated]", "t".repeat(498));
    assert_eq!(capped.len(), 512);
    let info = format!(
        "sas_image_scan_info{{{base},task_id=\"{capped}\",task_name=\"IMAGE_SCAN\",task_type=\"\",\
         source=\"\",target_type=\"\",raw_status=\"SUCCESS\",id=\"\"}}"
    );
    assert_eq!(s.get(&info), Some(&1.0), "{body}");
    assert_eq!(
        s.get(&format!("sas_image_scan_duration_seconds{{{base}}}")),
        Some(&60.0)
    );
    assert!(body.len() < 20_000, "scrape is {} bytes", body.len());

    let warned = log_lines_with("unreadable field");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("Task[0].Id: 1e+300 is out of range") && warned[0].contains(&d),
        "{}",
        warned[0]
    );
    exporter.shutdown().await;
}

/// Every field of a task, each with a value no lenient reading accepts: the answer still parses,
/// that one field is missing, and the rest of the task is as sent.
#[test]
fn every_unreadable_field_is_dropped_alone() {
    let full = json!({
        "Status": "SUCCESS", "Modified": "2024-05-01 16:00:00", "Create": "2024-05-01 15:59:00",
        "StartTime": 1_714_550_000_000i64, "FinishTime": 1_714_550_061_500i64, "Finish": 1,
        "Source": "openapi", "TaskType": "IMAGE_SCAN", "Name": "IMAGE_SCAN", "TaskId": "task4",
        "Target": "0123456789abcdef", "Id": 4, "TargetType": "IMAGE",
    });
    let zone = FixedOffset::east_opt(8 * 3600).expect("offset");
    let reference = parse_response(json!({"Task": [full]}).to_string().as_bytes(), zone)
        .expect("valid")
        .task
        .expect("task");
    let fields: [(&str, Value); 14] = [
        ("Status", json!({"code": "SUCCESS"})),
        ("Modified", json!(["2024-05-01 16:00:00"])),
        ("Create", json!({"at": 1})),
        ("StartTime", json!("yesterday")),
        ("FinishTime", json!(true)),
        ("Finish", json!(1.5)),
        ("Source", json!(["openapi"])),
        ("TaskType", json!({})),
        ("Name", json!([1, 2])),
        ("TaskId", json!({"id": "task4"})),
        ("Target", json!([])),
        ("Id", json!([4])),
        ("Id", json!(1e300)),
        ("TargetType", json!({"type": "IMAGE"})),
    ];
    for (field, value) in fields {
        let mut t = full.clone();
        t[field] = value.clone();
        let r = parse_response(json!({"Task": [t]}).to_string().as_bytes(), zone)
            .unwrap_or_else(|e| panic!("{field} = {value}: {e}"));
        let got = r.task.expect("task");
        let mut expected = reference.clone();
        match field {
            "Status" => {
                expected.raw_status = String::new();
                expected.status = sas_image_scan_exporter::ScanStatus::Unknown;
            }
            "Modified" => expected.modified = None,
            "StartTime" => expected.start_time_ms = None,
            "FinishTime" => expected.finish_time_ms = None,
            "Finish" => expected.finish = None,
            "Source" => expected.source = None,
            "TaskType" => expected.task_type = None,
            "Name" => expected.name = None,
            "TaskId" => expected.task_id = None,
            "Id" => expected.id = None,
            "TargetType" => expected.target_type = None,
            // Not read at all: nothing uses them.
            _ => {}
        }
        assert_eq!(got, expected, "{field} = {value}");
        let named: Vec<&str> = r.dropped.iter().map(|d| d.field).collect();
        let want: &[&str] = if matches!(field, "Create" | "Target") {
            &[]
        } else {
            &[field]
        };
        assert_eq!(named, want, "{field} = {value}");
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_sas-image-scan-exporter");
const ROLE: &str = "acs:ram::1234567890:role/sas-reader";
const OIDC_PROVIDER: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa";

/// RRSA (OIDC from the environment) while STS answers 503: the binary starts anyway instead of
/// exiting 1, and its polls succeed within seconds once STS recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_keeps_an_oidc_step_that_fails_transiently() {
    let sas = Arc::new(Simulator::start(Scenario::default()).await.expect("sas"));
    let sts = StsSimulator::start(
        Vec::<SimKey>::new(),
        Some(Arc::clone(&sas)),
        sas_simulator::Clock::system(),
    )
    .await
    .expect("sts");
    sts.allow_role(ROLE);
    sts.set_oidc_token(OIDC_PROVIDER, "rrsa-token");
    sts.fail_next(u64::MAX, 503, "ServiceUnavailable");
    let dir = TempDir::new("sas-chain-transient");
    let token = dir.path().join("token");
    std::fs::write(&token, "rrsa-token").expect("token");
    let d = digest(0x0c1d);
    let config = dir.path().join("sas.yml");
    std::fs::write(
        &config,
        format!(
            "sas:\n  endpoint: {}\ncredentials:\n  sts_endpoint: {}\npolling:\n  interval: 1m\n  active_interval: 30s\ntargets:\n  - digest: {d}\n",
            sas.url(),
            sts.url()
        ),
    )
    .expect("config");
    let port = free_port();
    let mut guard = KillOnDrop(
        Command::new(BIN)
            .env_clear()
            .envs([
                ("HOME", dir.path().display().to_string()),
                ("ALIBABA_CLOUD_ROLE_ARN", ROLE.to_owned()),
                ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER.to_owned()),
                ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.display().to_string()),
                ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_owned()),
            ])
            .args(["--log.format", "json", "--web.listen-address"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config.file")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let stderr = guard.0.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    let logged = || lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n");

    // Through three seconds of outage the process keeps running.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        guard.0.try_wait().expect("wait").is_none(),
        "the exporter exited during the STS outage:\n{}",
        logged()
    );
    assert!(logged().contains("keeping it and retrying"), "{}", logged());
    sts.fail_next(0, 503, "ServiceUnavailable");

    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let up = format!("sas_image_scan_up{{account=\"default\",digest=\"{d}\"}}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = match http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if samples(&body).get(&up) == Some(&1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not up 15 s after STS recovered:\n{body}\n{}",
            logged()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!sts.issued().is_empty());
}

async fn resolve(
    cfg: &CredentialsConfig,
    vars: HashMap<&'static str, String>,
) -> Result<Arc<dyn sas_image_scan_exporter::CredentialsProvider>, CredentialsError> {
    let env = move |k: &str| vars.get(k).cloned();
    sas_image_scan_exporter::provider_from_config(Some(cfg), &env, Clock::system()).await
}

/// A permanent failure of a configured step (its token file is missing) still falls through to
/// the next step; with nothing after it, start-up fails and says why.
#[tokio::test]
async fn chain_passes_over_an_oidc_step_that_fails_for_good() {
    let dir = TempDir::new("sas-chain-permanent");
    let missing = dir.path().join("no-such-token").display().to_string();
    let home = dir.path().display().to_string();
    let mut vars: HashMap<&'static str, String> = HashMap::from([
        ("HOME", home),
        ("ALIBABA_CLOUD_ROLE_ARN", ROLE.to_owned()),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER.to_owned()),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", missing.clone()),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_owned()),
    ]);
    let cfg = CredentialsConfig {
        // Nothing listens here: were the step tried against STS, it would fail transiently.
        sts_endpoint: format!("http://127.0.0.1:{}", free_port()).parse().ok(),
        ..CredentialsConfig::default()
    };
    let e = resolve(&cfg, vars.clone())
        .await
        .expect_err("nothing yields");
    assert_eq!(e.kind(), FailureKind::Permanent);
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("oidc: cannot read {missing}")),
        "{msg}"
    );

    let ini = dir.path().join(".alibabacloud/credentials.ini");
    std::fs::create_dir_all(ini.parent().expect("parent")).expect("dir");
    std::fs::write(
        &ini,
        "[default]\ntype = access_key\naccess_key_id = LTAIini\naccess_key_secret = s\n",
    )
    .expect("ini");
    vars.insert("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true".to_owned());
    let p = resolve(&cfg, vars)
        .await
        .expect("falls through to the credentials file");
    assert_eq!(p.name(), "credentials_file");
    assert_eq!(
        p.credentials().await.expect("static").access_key_id,
        "LTAIini"
    );
}

/// How STS answers are classified: a refusal falls through the chain, throttling and 5xx keep
/// the step.
#[tokio::test]
async fn sts_refusals_fall_through_and_throttling_is_kept() {
    let sts = StsSimulator::start(Vec::<SimKey>::new(), None, sas_simulator::Clock::system())
        .await
        .expect("sts");
    sts.allow_role(ROLE);
    sts.set_oidc_token(OIDC_PROVIDER, "rrsa-token");
    let dir = TempDir::new("sas-chain-classes");
    let token = dir.path().join("token");
    std::fs::write(&token, "rrsa-token").expect("token");
    let vars: HashMap<&'static str, String> = HashMap::from([
        ("HOME", dir.path().display().to_string()),
        ("ALIBABA_CLOUD_ROLE_ARN", ROLE.to_owned()),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER.to_owned()),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.display().to_string()),
        ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".to_owned()),
    ]);
    let cfg = CredentialsConfig {
        sts_endpoint: sts.url().parse().ok(),
        ..CredentialsConfig::default()
    };
    for (status, code, kept) in [
        (400, "InvalidParameter.OIDCToken", false),
        (403, "NoPermission", false),
        (400, "Throttling.User", true),
        (429, "TooManyRequests", true),
        (500, "InternalError", true),
    ] {
        sts.fail_next(1, status, code);
        let r = resolve(&cfg, vars.clone()).await;
        match r {
            Ok(p) => {
                assert!(kept, "{status} {code}: kept");
                assert_eq!(p.name(), "oidc");
            }
            Err(e) => {
                assert!(!kept, "{status} {code}: {e}");
                assert!(e.to_string().contains(code), "{e}");
            }
        }
    }
}

/// A CA: its certificate and key (PEM), and the issuer that signs with it.
fn ca(name: &str) -> (String, String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let key_pem = key.serialize_pem();
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("ca cert");
    (cert.pem(), key_pem, Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, client: bool) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, "leaf");
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert.pem(), key.serialize_pem())
}

/// An exporter that requires client certificates signed by the CA in `dir`.
async fn mtls_exporter(
    dir: &std::path::Path,
    issuer: &Issuer<'static, KeyPair>,
) -> (Exporter, Simulator) {
    let (cert, key) = leaf(issuer, false);
    std::fs::write(dir.join("server.pem"), cert).expect("cert");
    std::fs::write(dir.join("server.key"), key).expect("key");
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    )
    .expect("web config");
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let cfg = config(
        &sim,
        vec![target(&digest(1), "tls")],
        polling(600, 600, 10.0, 1),
    );
    let exporter = Exporter::start(
        &cfg,
        vec![listener],
        Options {
            web_config: Some(web),
            ..Options::default()
        },
    )
    .await
    .expect("exporter starts");
    (exporter, sim)
}

async fn handshake_with(exporter: &Exporter, ca_pem: &str, cert: &str, key: &str) -> bool {
    let client = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"))
        .build()
        .expect("client");
    client
        .get(format!(
            "https://localhost:{}/-/healthy",
            exporter.addrs[0].port()
        ))
        .send()
        .await
        .is_ok()
}

async fn wait_for_log(needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = log_lines_with(needle).pop() {
            return line;
        }
        assert!(Instant::now() < deadline, "no log line with {needle:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client certificate from another CA is refused, and the log says so (once, however many
/// clients try within the rate-limit period); an X.509 v1 certificate is named as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_client_certificates_are_logged_with_the_reason() {
    logs();
    let dir = TempDir::new("sas-tls-refused");
    let (ca_pem, ca_key, issuer) = ca("right ca");
    std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("ca");
    let (exporter, _sim) = mtls_exporter(dir.path(), &issuer).await;

    let (good_cert, good_key) = leaf(&issuer, true);
    assert!(handshake_with(&exporter, &ca_pem, &good_cert, &good_key).await);
    let (_, _, other) = ca("other ca");
    let (bad_cert, bad_key) = leaf(&other, true);
    for _ in 0..3 {
        assert!(!handshake_with(&exporter, &ca_pem, &bad_cert, &bad_key).await);
    }
    let line = wait_for_log("TLS handshake failed").await;
    assert!(line.contains("level=warn"), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
    assert!(
        line.contains("not signed by a CA in client_ca_file"),
        "{line}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        log_lines_with("TLS handshake failed").len(),
        1,
        "rate-limited"
    );
    exporter.shutdown().await;

    // A v1 certificate, as `openssl x509 -req` writes it without an extensions file.
    if !require_tool("openssl") {
        return;
    }
    let (exporter, _sim) = mtls_exporter(dir.path(), &issuer).await;
    std::fs::write(dir.path().join("ca.key"), ca_key).expect("ca key");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        out
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "v1.key",
        "-subj",
        "/CN=v1",
        "-out",
        "v1.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "v1.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "7",
        "-days",
        "1",
        "-out",
        "v1.pem",
    ]);
    let text = String::from_utf8_lossy(&run(&["x509", "-in", "v1.pem", "-noout", "-text"]).stdout)
        .into_owned();
    assert!(text.contains("Version: 1 (0x0)"), "{text}");
    // rustls will not even load a v1 certificate as a client identity, so the client that
    // presents it is the one users have: openssl.
    let port = exporter.addrs[0].port();
    let cwd = dir.path().to_owned();
    let client = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-cert", "v1.pem", "-key", "v1.key", "-CAfile", "ca.pem"])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .expect("openssl s_client runs")
    })
    .await
    .expect("s_client");
    eprintln!("s_client: {}", String::from_utf8_lossy(&client.stderr));
    let line = wait_for_log("X.509 v1").await;
    assert!(line.contains("TLS handshake failed"), "{line}");
    exporter.shutdown().await;
}

fn targets_config(globs: &[String]) -> sas_image_scan_exporter::config::Config {
    sas_image_scan_exporter::config::Config {
        target_files: globs.to_vec(),
        ..Default::default()
    }
}

fn assemble(
    files: &mut TargetFiles,
    cfg: &sas_image_scan_exporter::config::Config,
) -> (Vec<String>, Vec<String>) {
    let a = files.assemble(cfg, Path::new("/"), Shard::default(), &no_env);
    (
        a.targets.into_iter().map(|t| t.digest).collect(),
        a.problems,
    )
}

fn file_error(files: &TargetFiles, path: &Path) -> Option<String> {
    files
        .status()
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no status for {}", path.display()))
        .error
        .clone()
}

/// A replacement that keeps size and mtime (`cp -p`) is noticed; a file truncated to nothing
/// keeps its targets until it says `[]`.
#[test]
fn target_files_change_by_content_and_an_empty_file_keeps_its_targets() {
    let dir = TempDir::new("sas-files-content");
    let file = dir.path().join("a.yml");
    let (d1, d2) = (digest(0xa1), digest(0xa2));
    std::fs::write(&file, format!("- digest: {d1}\n")).expect("write");
    let mtime = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let cfg = targets_config(&[format!("{}/*.yml", dir.path().display())]);
    let mut files = TargetFiles::default();
    assert_eq!(assemble(&mut files, &cfg).0, vec![d1.clone()]);
    assert!(!files.changed(&cfg, Path::new("/")));

    // Same length, same mtime, other digest.
    std::fs::write(&file, format!("- digest: {d2}\n")).expect("write");
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
    assert!(
        files.changed(&cfg, Path::new("/")),
        "cp -p replacement missed"
    );
    assert_eq!(assemble(&mut files, &cfg).0, vec![d2.clone()]);

    for blank in ["", "  \n\n", "# being rewritten\n"] {
        std::fs::write(&file, blank).expect("truncate");
        assert!(files.changed(&cfg, Path::new("/")));
        let (targets, problems) = assemble(&mut files, &cfg);
        assert_eq!(targets, vec![d2.clone()], "{blank:?} dropped the targets");
        let error = file_error(&files, &file).expect("reported");
        assert!(error.contains("is empty"), "{error}");
        assert_eq!(problems, [error]);
    }
    std::fs::write(&file, "[]\n").expect("explicit empty list");
    let (targets, problems) = assemble(&mut files, &cfg);
    assert!(
        targets.is_empty() && problems.is_empty(),
        "{targets:?} {problems:?}"
    );
    assert_eq!(file_error(&files, &file), None);
}

/// Symlinks are followed; a dangling or looping one is reported, and a directory loop under
/// `**` reads each file once.
#[test]
fn target_file_symlinks_are_resolved_and_their_problems_reported() {
    let dir = TempDir::new("sas-files-links");
    let root = dir.path();
    std::fs::create_dir_all(root.join("d/sub")).expect("dirs");
    let (d1, d2) = (digest(0xb1), digest(0xb2));
    std::fs::write(root.join("d/sub/a.yml"), format!("- digest: {d1}\n")).expect("a");
    std::fs::write(root.join("real.yml"), format!("- digest: {d2}\n")).expect("real");
    std::os::unix::fs::symlink("..", root.join("d/sub/loop")).expect("dir loop");
    std::os::unix::fs::symlink("../real.yml", root.join("d/link.yml")).expect("file link");
    std::os::unix::fs::symlink("nowhere.yml", root.join("d/dangling.yml")).expect("dangling");
    std::os::unix::fs::symlink("self.yml", root.join("d/self.yml")).expect("self loop");
    let cfg = targets_config(&[format!("{}/d/**/*.yml", root.display())]);

    let listing = expand_globs(&cfg.target_files, Path::new("/"));
    assert_eq!(
        listing.files,
        [root.join("d/link.yml"), root.join("d/sub/a.yml")],
        "each file once"
    );
    let broken: Vec<(PathBuf, String)> = listing.broken;
    let named = |p: &str| {
        broken
            .iter()
            .find(|(b, _)| *b == root.join(p))
            .map(|(_, why)| why.clone())
            .unwrap_or_else(|| panic!("{p} not reported in {broken:?}"))
    };
    assert!(named("d/dangling.yml").starts_with("dangling symlink (points to nowhere.yml"));
    assert!(named("d/self.yml").starts_with("symlink loop"));
    assert!(named("d/sub/loop").starts_with("directory symlink loop"));
    assert_eq!(broken.len(), 3, "{broken:?}");

    let mut files = TargetFiles::default();
    let (targets, problems) = assemble(&mut files, &cfg);
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(targets.contains(&d1) && targets.contains(&d2));
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(file_error(&files, &root.join("d/dangling.yml")).is_some());
    assert_eq!(file_error(&files, &root.join("d/sub/a.yml")), None);

    // Pointing the dangling link somewhere is a change, and fixes it.
    std::fs::write(root.join("d/nowhere.yml"), "[]\n").expect("target");
    assert!(files.changed(&cfg, Path::new("/")));
    assemble(&mut files, &cfg);
    assert_eq!(file_error(&files, &root.join("d/dangling.yml")), None);
}

/// A digest in two files with different labels marks the later file, not only the log.
#[test]
fn a_conflicting_duplicate_marks_its_file() {
    let dir = TempDir::new("sas-files-conflict");
    let d = digest(0xc1);
    let (a, b) = (dir.path().join("a.yml"), dir.path().join("b.yml"));
    std::fs::write(&a, format!("- digest: {d}\n  labels: {{team: a}}\n")).expect("a");
    std::fs::write(&b, format!("- digest: {d}\n  labels: {{team: b}}\n")).expect("b");
    let cfg = targets_config(&[format!("{}/*.yml", dir.path().display())]);
    let mut files = TargetFiles::default();
    let (targets, problems) = assemble(&mut files, &cfg);
    assert_eq!(targets, vec![d.clone()]);
    assert_eq!(file_error(&files, &a), None);
    let error = file_error(&files, &b).expect("b marked");
    assert!(
        error.contains("duplicate digest") && error.contains("a.yml"),
        "{error}"
    );
    assert_eq!(problems, [error]);
}

/// `--config.check` fails on a dangling target file symlink and names it.
#[test]
fn config_check_lists_target_file_problems() {
    let dir = TempDir::new("sas-files-check");
    std::fs::create_dir_all(dir.path().join("targets.d")).expect("dir");
    std::os::unix::fs::symlink("gone.yml", dir.path().join("targets.d/x.yml")).expect("link");
    let config = dir.path().join("sas.yml");
    std::fs::write(
        &config,
        "credentials:\n  access_key_id: a\n  access_key_secret: s\ntarget_files: [\"targets.d/*.yml\"]\n",
    )
    .expect("config");
    let out = Command::new(BIN)
        .args(["--config.check", "--config.file"])
        .arg(&config)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("targets.d/x.yml: dangling symlink"), "{err}");
}

/// The file metric and the status page show a broken target file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_file_problems_on_the_metric_and_the_status_page() {
    let dir = TempDir::new("sas-files-page");
    let good = dir.path().join("good.yml");
    let d = digest(0xd1);
    std::fs::write(&good, format!("- digest: {d}\n")).expect("good");
    let dangling = dir.path().join("dangling.yml");
    std::os::unix::fs::symlink("gone.yml", &dangling).expect("link");
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let mut cfg = config(&sim, vec![], polling(600, 600, 10.0, 1));
    cfg.target_files = vec![format!("{}/*.yml", dir.path().display())];
    let exporter = start(&cfg).await;
    let s = samples(&get(&exporter, "/metrics", &[]).await.body);
    let metric = |p: &Path| {
        format!(
            "sas_exporter_target_file_last_load_successful{{file=\"{}\"}}",
            p.display()
        )
    };
    assert_eq!(s.get(&metric(&good)), Some(&1.0));
    assert_eq!(s.get(&metric(&dangling)), Some(&0.0));
    let page = get(&exporter, "/", &[]).await.body;
    assert!(page.contains("<h2>Target file problems</h2>"), "{page}");
    assert!(
        page.contains(&format!(
            "<li><code>{}</code>: {}: dangling symlink (points to gone.yml, which does not exist)</li>",
            dangling.display(),
            dangling.display()
        )),
        "{page}"
    );
    exporter.shutdown().await;
}
