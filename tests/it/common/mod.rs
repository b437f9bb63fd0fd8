//! Helpers shared by the integration tests: configs pointing at the simulator, starting the
//! exporter on an ephemeral port, scraping over HTTP and reading samples.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::{Duration, Instant};

use chrono::FixedOffset;
use sas_image_scan_exporter::app::{Exporter, Options};
use sas_image_scan_exporter::config::{
    AccountConfig, Config, CredentialsConfig, DEFAULT_ACCOUNT, Location, PollingConfig, SasConfig,
    SignatureVersion, Target,
};
use sas_simulator::{SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, Simulator};

pub fn digest(n: u32) -> String {
    format!("{n:08x}").repeat(8)
}

pub fn target(d: &str, team: &str) -> Target {
    Target {
        digest: d.to_owned(),
        account: DEFAULT_ACCOUNT.to_owned(),
        labels: [
            (
                "image".to_owned(),
                format!("registry.example.com/app:{team}"),
            ),
            ("team".to_owned(), team.to_owned()),
        ]
        .into(),
        location: Location {
            file: "test".into(),
            line: 1,
            column: 1,
        },
    }
}

pub fn config(sim: &Simulator, targets: Vec<Target>, polling: PollingConfig) -> Config {
    Config {
        accounts: vec![account(DEFAULT_ACCOUNT, sim, &polling)],
        polling,
        targets,
        ..Config::default()
    }
}

/// An account named `name` that polls `sim` with the simulator's own key and `polling`'s limits.
pub fn account(name: &str, sim: &Simulator, polling: &PollingConfig) -> AccountConfig {
    AccountConfig {
        sas: SasConfig {
            endpoint: Some(sim.url().parse().expect("simulator endpoint")),
            signature_version: SignatureVersion::V3,
            timeout: Duration::from_secs(2),
            timezone: FixedOffset::east_opt(8 * 3600).expect("offset"),
            ..SasConfig::default()
        },
        credentials: Some(CredentialsConfig {
            access_key_id: Some(SIM_ACCESS_KEY_ID.into()),
            access_key_secret: Some(SIM_ACCESS_KEY_SECRET.to_owned().into()),
            ..CredentialsConfig::default()
        }),
        ..AccountConfig::new(name, polling)
    }
}

pub fn polling(interval: u64, active: u64, rps: f64, concurrency: usize) -> PollingConfig {
    PollingConfig {
        interval: Duration::from_secs(interval),
        active_interval: Duration::from_secs(active),
        concurrency,
        requests_per_second: rps,
        max_retries: 3,
    }
}

pub async fn start(config: &Config) -> Exporter {
    start_with_options(config, Options::default()).await
}

/// Like [`start`], with flags (a config path for reloads, a shard, lifecycle endpoints).
pub async fn start_with_options(config: &Config, options: Options) -> Exporter {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    Exporter::start(config, vec![listener], options)
        .await
        .expect("exporter starts")
}

pub struct Scrape {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

pub async fn get(exporter: &Exporter, path: &str, headers: &[(&str, &str)]) -> Scrape {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut req = http.get(format!("http://{}{path}", exporter.addrs[0]));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(bytes.as_ref())
            .read_to_string(&mut s)
            .expect("valid gzip");
        s
    } else {
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    };
    Scrape {
        status,
        headers,
        body,
    }
}

/// Samples by series text (`name{labels}`), values as f64.
pub fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            (
                series.to_owned(),
                value.parse::<f64>().expect("numeric value"),
            )
        })
        .collect()
}

pub fn scan_samples(body: &str) -> BTreeMap<String, f64> {
    samples(body)
        .into_iter()
        .filter(|(k, _)| k.starts_with("sas_image_scan_"))
        .collect()
}

pub async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_ready(exporter: &Exporter) {
    let store = exporter.store.clone();
    wait_for("every target polled", || store.load().ready).await;
}

/// Whether an outside tool is installed. Without it a test prints a notice and skips, except under
/// `CI=true`, where a missing tool fails the run so nothing silently stops being tested.
pub fn require_tool(tool: &str) -> bool {
    // Whether it starts at all: not every tool knows `--version` (openssl says `version`).
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI=true (.ci/run installs it)"
        );
        eprintln!("NOTICE: {tool} not found; skipping this test");
    }
    found
}

/// Set in a child process of the test binary to the one test it runs (see `alone_in_process`).
const ALONE: &str = "SAS_TEST_ALONE";

/// Whether to run the rest of test `name` (a function of module `module`, as `module_path!()`
/// gives it) here. All the tests share one process, so a test that measures the process itself
/// (its resident memory) would measure the others too: the first call runs that one test in a
/// fresh process of this same binary and returns false once it passed (panics if it failed); in
/// that child, where no other test runs, it returns true.
pub fn alone_in_process(module: &str, name: &str) -> bool {
    // The test's name as the harness knows it: its path without the crate's name.
    let test = match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    };
    if std::env::var(ALONE).as_deref() == Ok(test.as_str()) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([&test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, &test)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Indented, so that the child's `test result:` line is not taken for this run's.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines().chain(stderr.lines()) {
        eprintln!("    {line}");
    }
    assert!(out.status.success(), "{test} failed in its own process");
    // A filter that matches nothing also succeeds: make sure the test did run.
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{test} did not run in its own process"
    );
    false
}

/// Runs `promtool check metrics` on an exposition and returns what it printed (empty = clean).
pub fn promtool_check(body: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write exposition");
    let out = child.wait_with_output().expect("promtool runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh, empty directory under the system temp dir, removed again on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that is killed and reaped when dropped, so a failing (panicking) test does
/// not leave servers behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago, for tools that cannot be handed a bound socket.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Runs a command to completion, killing it after `timeout`; panics if it did not finish.
pub fn run_with_timeout(
    mut command: std::process::Command,
    timeout: Duration,
) -> std::process::Output {
    let what = format!("{command:?}");
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what} failed: {e}")),
        Err(_) => {
            // SAFETY: kill(2) has no memory effects; the pid is our own child, not reaped yet
            // (its waiter is still blocked), so it cannot have been reused.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{what} did not finish within {timeout:?}");
        }
    }
}

/// Starts the exporter from a config file, with `options` (its `config_path` set to the file,
/// so reloads re-read it).
pub async fn start_from(path: &std::path::Path, options: Options) -> Exporter {
    let config = sas_image_scan_exporter::config::Config::load(path).expect("valid config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    Exporter::start(
        &config,
        vec![listener],
        Options {
            config_path: Some(path.to_owned()),
            ..options
        },
    )
    .await
    .expect("exporter starts")
}

/// Every problem of an invalid config as (line, column, message), with no environment.
pub fn config_problems(yaml: &str, file: &str) -> Vec<(usize, usize, String)> {
    use sas_image_scan_exporter::config::{Config, ConfigError};
    match Config::parse(yaml, file, &no_env) {
        Ok(c) => panic!("expected problems, got {c:?}"),
        Err(ConfigError::Invalid(problems)) => problems
            .into_iter()
            .map(|p| (p.location.line, p.location.column, p.message))
            .collect(),
        Err(e) => panic!("expected located problems, got {e}"),
    }
}

/// Scrapes `/metrics` until `f` holds for the body (at most 20 s), and returns that body.
pub async fn scrape_until(exporter: &Exporter, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = get(exporter, "/metrics", &[]).await.body;
        if f(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last body:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An environment with no variables, for config parsing.
pub fn no_env(_: &str) -> Option<String> {
    None
}
