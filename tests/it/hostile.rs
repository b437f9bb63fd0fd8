//! The exporter under hostile clients and failing dependencies: credentials outages, stalled
//! readers, password floods, broken answers and broken files.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sas_image_scan_exporter::config::CredentialsConfig;
use sas_simulator::{Scenario, SimKey, Simulator, StsSimulator};

const ROLE: &str = "acs:ram::1234567890:role/sas-reader";
const BASE_ID: &str = "LTAIbase";
const BASE_SECRET: &str = "base-secret-value";

/// A credentials outage at start-up: once STS answers again, polling resumes within seconds
/// (not after `interval`), and STS sees only the provider's backoff meanwhile, not a storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_resumes_soon_after_sts_recovers() {
    let sas = Arc::new(Simulator::start(Scenario::default()).await.expect("sas"));
    let base = SimKey {
        id: BASE_ID.into(),
        secret: BASE_SECRET.into(),
        security_token: None,
    };
    let sts = StsSimulator::start(
        vec![base],
        Some(Arc::clone(&sas)),
        sas_simulator::Clock::system(),
    )
    .await
    .expect("sts");
    sts.allow_role(ROLE);
    sts.fail_next(u64::MAX, 503, "ServiceUnavailable");
    let targets: Vec<_> = (0..20).map(|n| target(&digest(n), "a")).collect();
    let mut cfg = config(&sas, targets, polling(600, 600, 50.0, 4));
    cfg.accounts[0].credentials = Some(CredentialsConfig {
        access_key_id: Some(BASE_ID.into()),
        access_key_secret: Some(BASE_SECRET.to_owned().into()),
        ram_role_arn: Some(ROLE.into()),
        sts_endpoint: sts.url().parse().ok(),
        ..CredentialsConfig::default()
    });
    let started = Instant::now();
    let exporter = start(&cfg).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during_outage = sts.requests().len();
    sts.fail_next(0, 503, "ServiceUnavailable");
    let recovered = Instant::now();
    let store = exporter.store.clone();
    let deadline = recovered + Duration::from_secs(12);
    while !store.load().targets.iter().all(|t| t.up == Some(true)) {
        assert!(
            Instant::now() < deadline,
            "no digest up 12 s after STS recovered; STS saw {} requests",
            sts.requests().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = recovered.elapsed();
    eprintln!(
        "all up {:?} after STS recovered ({:?} after start); STS requests during the 4 s outage: {during_outage}, total {}",
        resumed,
        started.elapsed(),
        sts.requests().len()
    );
    // Backoff of 1 s, 2 s, 4 s: at most a handful of attempts in 4 s, whatever the digest count.
    assert!((2..=5).contains(&during_outage), "{during_outage}");
    assert!(
        sts.requests().len() <= during_outage + 2,
        "{}",
        sts.requests().len()
    );
    exporter.shutdown().await;
}

/// Raises the soft open-files limit to the hard one, so a test can hold thousands of sockets.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// Simulator requests per second over `window`.
async fn poll_rate(sim: &Simulator, window: Duration) -> f64 {
    let before = sim.total_requests();
    tokio::time::sleep(window).await;
    (sim.total_requests() - before) as f64 / window.as_secs_f64()
}

/// The time one fresh connection takes to answer `path`, or `None` if it did not within 5 s.
async fn timed_get(
    addr: std::net::SocketAddr,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Option<(u16, Duration)> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut req = http.get(format!("http://{addr}{path}"));
    if let Some((user, password)) = auth {
        req = req.basic_auth(user, Some(password));
    }
    let started = Instant::now();
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{path}: {e:?}");
            return None;
        }
    };
    let status = resp.status().as_u16();
    resp.bytes().await.ok()?;
    Some((status, started.elapsed()))
}

/// Two thousand connections, half pipelining scrapes they never read and half idle, do not keep
/// a scrape, a health probe or polling from going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_connections_do_not_lock_out_clients() {
    let connections: usize = std::env::var("HOSTILE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let limit = raise_fd_limit();
    assert!(
        limit > 3 * connections as u64,
        "open-files limit {limit} too low"
    );
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let targets: Vec<_> = (0..400).map(|n| target(&digest(n), "stall")).collect();
    let exporter = start(&config(&sim, targets, polling(1, 1, 20.0, 4))).await;
    let addr = exporter.addrs[0];
    tokio::time::sleep(Duration::from_secs(1)).await;
    let quiet_rate = poll_rate(&sim, Duration::from_secs(2)).await;

    let opening = Instant::now();
    let attackers = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let depth: usize = std::env::var("HOSTILE_DEPTH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        let pipelined = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(depth);
        let mut open = Vec::new();
        for n in 0..connections {
            let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            else {
                continue;
            };
            if n % 2 == 0 {
                let _ = s.set_nonblocking(true);
                let _ = s.write(pipelined.as_bytes());
            }
            open.push(s);
        }
        open
    })
    .await
    .expect("attackers");
    let opened = attackers.len();
    eprintln!("{opened} connections opened in {:?}", opening.elapsed());
    // Let the server get through the responses the socket buffers still take; what is measured
    // is the state while the connections sit there, not that burst.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut worst_scrape = Duration::ZERO;
    let mut worst_health = Duration::ZERO;
    for _ in 0..5 {
        let scrape = timed_get(addr, "/metrics", None).await;
        let health = timed_get(addr, "/-/healthy", None).await;
        eprintln!("under attack: /metrics {scrape:?}, /-/healthy {health:?}");
        let (status, took) = scrape.expect("a scrape answers while the connections are open");
        assert_eq!(status, 200);
        worst_scrape = worst_scrape.max(took);
        let (status, took) = health.expect("/-/healthy answers while the connections are open");
        assert_eq!(status, 200);
        worst_health = worst_health.max(took);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let attacked_rate = poll_rate(&sim, Duration::from_secs(2)).await;
    eprintln!(
        "{opened} connections open; worst /metrics {worst_scrape:?}, worst /-/healthy \
         {worst_health:?}; polling {quiet_rate:.1} req/s before, {attacked_rate:.1} req/s during"
    );
    assert!(worst_scrape < Duration::from_secs(1), "{worst_scrape:?}");
    assert!(worst_health < Duration::from_secs(1), "{worst_health:?}");
    assert!(
        attacked_rate > quiet_rate * 0.5,
        "{attacked_rate} vs {quiet_rate}"
    );
    drop(attackers);
    exporter.shutdown().await;
}

/// A client that pipelines scrapes and stops reading has its connection closed once the
/// response makes no progress for a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_makes_no_progress_closes_its_connection() {
    use std::io::{Read as _, Write as _};
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let targets: Vec<_> = (0..400).map(|n| target(&digest(n), "stall")).collect();
    let exporter = start(&config(&sim, targets, polling(600, 600, 50.0, 4))).await;
    wait_ready(&exporter).await;
    let addr = exporter.addrs[0];
    let read = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_buffer_size_hint();
        let requests = 200;
        s.write_all(
            "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                .repeat(requests)
                .as_bytes(),
        )
        .expect("pipeline");
        std::thread::sleep(Duration::from_secs(8));
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut all = Vec::new();
        let closed = s.read_to_end(&mut all).is_ok();
        let answered = all.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
        (closed, answered, requests)
    })
    .await
    .expect("reader");
    eprintln!(
        "stalled reader: closed {}, {} of {} answered",
        read.0, read.1, read.2
    );
    assert!(read.0, "the server closed the connection");
    assert!(read.1 < read.2, "{read:?}");
    exporter.shutdown().await;
}

trait BufferHint {
    fn set_read_buffer_size_hint(&self);
}

impl BufferHint for std::net::TcpStream {
    /// A small receive buffer, so the server's writes stall after a few responses.
    fn set_read_buffer_size_hint(&self) {
        use std::os::fd::AsRawFd as _;
        let size: libc::c_int = 64 * 1024;
        // SAFETY: setsockopt reads `size` for the duration of the call; the fd is open.
        unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Starts the exporter with a web config whose basic auth user `prom` has a bcrypt hash of
/// `cost`.
async fn start_with_basic_auth(
    sim: &Simulator,
    targets: Vec<sas_image_scan_exporter::config::Target>,
    polling_config: sas_image_scan_exporter::config::PollingConfig,
    cost: u32,
    dir: &TempDir,
) -> sas_image_scan_exporter::app::Exporter {
    let hash = bcrypt::hash("s3cret", cost).expect("hash");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prom: '{hash}'\n")).expect("web config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sas_image_scan_exporter::app::Exporter::start(
        &config(sim, targets, polling_config),
        vec![listener],
        sas_image_scan_exporter::app::Options {
            web_config: Some(web),
            ..Default::default()
        },
    )
    .await
    .expect("exporter starts")
}

/// Eight clients guessing passwords at bcrypt cost 12 do not slow down a scrape with cached
/// credentials, a health probe, or polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_flood_does_not_stall_the_server() {
    let dir = TempDir::new("hostile-bcrypt");
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let targets: Vec<_> = (0..50).map(|n| target(&digest(n), "auth")).collect();
    let exporter = start_with_basic_auth(&sim, targets, polling(1, 1, 10.0, 4), 12, &dir).await;
    let addr = exporter.addrs[0];
    let good = Some(("prom", "s3cret"));
    // The first check pays bcrypt once; later ones hit the cache.
    assert_eq!(
        timed_get(addr, "/metrics", good).await.map(|r| r.0),
        Some(200)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let quiet_rate = poll_rate(&sim, Duration::from_secs(2)).await;
    let mut quiet_scrape = Duration::ZERO;
    for _ in 0..5 {
        let (status, took) = timed_get(addr, "/metrics", good).await.expect("scrape");
        assert_eq!(status, 200);
        quiet_scrape = quiet_scrape.max(took);
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for n in 0..8 {
        let stop = Arc::clone(&stop);
        attackers.push(tokio::spawn(async move {
            let mut guess = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                guess += 1;
                let password = format!("guess-{n}-{guess}");
                let r = timed_get(addr, "/metrics", Some(("prom", &password))).await;
                if let Some((status, _)) = r {
                    assert_eq!(status, 401);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut worst_scrape = Duration::ZERO;
    let mut worst_health = Duration::ZERO;
    for _ in 0..10 {
        let (status, took) = timed_get(addr, "/metrics", good).await.expect("scrape");
        assert_eq!(status, 200);
        worst_scrape = worst_scrape.max(took);
        let (status, took) = timed_get(addr, "/-/healthy", None).await.expect("health");
        assert_eq!(status, 200);
        worst_health = worst_health.max(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attacked_rate = poll_rate(&sim, Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in attackers {
        a.await.expect("attacker");
    }
    eprintln!(
        "bcrypt flood: scrape {quiet_scrape:?} quiet, worst {worst_scrape:?} under attack; \
         worst /-/healthy {worst_health:?}; polling {quiet_rate:.2} req/s quiet, \
         {attacked_rate:.2} req/s under attack"
    );
    assert!(
        worst_scrape < Duration::from_millis(300),
        "{worst_scrape:?}"
    );
    assert!(
        worst_health < Duration::from_millis(300),
        "{worst_health:?}"
    );
    assert!(
        attacked_rate > quiet_rate * 0.7,
        "{attacked_rate} vs {quiet_rate}"
    );
    exporter.shutdown().await;
}

/// A digest whose poll failed (retries exhausted) comes back after the larger of
/// `active_interval` and the backoff, not after a whole `interval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_poll_is_retried_after_active_interval_not_interval() {
    use sas_simulator::{Fault, FaultScope};
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let d = digest(7);
    sim.inject(
        FaultScope::Digest(d.clone()),
        Fault::error(503, "ServiceUnavailable").times(1),
    );
    let mut p = polling(600, 2, 10.0, 2);
    p.max_retries = 0;
    let exporter = start(&config(&sim, vec![target(&d, "a")], p)).await;
    let store = exporter.store.clone();
    wait_for("the failed poll", || {
        store.load().targets[0].up == Some(false)
    })
    .await;
    let failed = Instant::now();
    wait_for("the digest back up", || {
        store.load().targets[0].up == Some(true)
    })
    .await;
    let back = failed.elapsed();
    eprintln!("failed digest back up after {back:?}");
    assert!(back >= Duration::from_millis(1500), "{back:?}");
    assert!(back < Duration::from_secs(5), "{back:?}");
    assert_eq!(sim.requests_for(&d), 2);
    exporter.shutdown().await;
}

/// A reload that shortens `interval` pulls the due times in to the new interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_interval_on_reload_pulls_due_times_in() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let dir = std::env::temp_dir().join(format!("sas-hostile-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("config.yml");
    let write = |interval: &str| {
        let targets: String = (0..5)
            .map(|n| format!("  - digest: {}\n", digest(n)))
            .collect();
        let text = format!(
            "sas: {{endpoint: \"{}\", timeout: 2s}}\ncredentials: {{access_key_id: {}, access_key_secret: {}}}\npolling: {{interval: {interval}, active_interval: {interval}, requests_per_second: 50, concurrency: 2}}\ntargets:\n{targets}",
            sim.url(),
            sas_simulator::SIM_ACCESS_KEY_ID,
            sas_simulator::SIM_ACCESS_KEY_SECRET,
        );
        std::fs::write(&path, text).expect("write config");
    };
    write("1h");
    let cfg = sas_image_scan_exporter::config::Config::load(&path).expect("valid config");
    let exporter = start_with_options(
        &cfg,
        sas_image_scan_exporter::app::Options {
            config_path: Some(path.clone()),
            ..Default::default()
        },
    )
    .await;
    wait_ready(&exporter).await;
    assert_eq!(sim.total_requests(), 5);
    write("2s");
    exporter.reload().await.expect("reload");
    let reloaded = Instant::now();
    wait_for("every digest polled again", || sim.total_requests() >= 10).await;
    eprintln!("polled again {:?} after the reload", reloaded.elapsed());
    assert!(reloaded.elapsed() < Duration::from_secs(4));
    exporter.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

const BIN: &str = env!("CARGO_BIN_EXE_sas-image-scan-exporter");

fn kill(child: &std::process::Child, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

/// Waits up to `limit` for the child to exit; its exit status, or `None` if it still runs.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// SIGTERM while start-up waits for credentials (STS never answers) is a clean exit (0).
#[test]
fn sigterm_while_waiting_for_credentials_exits_zero() {
    let dir = TempDir::new("hostile-sigterm");
    // Accepts connections and never answers: the OIDC step of the chain waits.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let token = dir.path().join("token");
    std::fs::write(&token, "oidc-token").expect("token");
    let config = dir.path().join("c.yml");
    std::fs::write(
        &config,
        format!(
            "sas:\n  endpoint: http://127.0.0.1:1\ncredentials:\n  ram_role_arn: {ROLE}\n  sts_endpoint: http://{}\ntargets:\n  - digest: {}\n",
            blackhole.local_addr().expect("addr"),
            digest(1)
        ),
    )
    .expect("config");
    let mut child = KillOnDrop(
        std::process::Command::new(BIN)
            .arg("--config.file")
            .arg(&config)
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .env_clear()
            .env("HOME", dir.path())
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .env("ALIBABA_CLOUD_ROLE_ARN", ROLE)
            .env(
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/x",
            )
            .env("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.0.try_wait().expect("wait").is_none(),
        "still starting"
    );
    kill(&child.0, libc::SIGTERM);
    let status = wait_exit(&mut child.0, Duration::from_secs(5)).expect("exited");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A second SIGTERM during a slow graceful shutdown (a request in flight) exits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_forces_an_immediate_exit() {
    use sas_simulator::{Fault, FaultScope, SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET};
    let dir = TempDir::new("hostile-sigterm2");
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    sim.inject(FaultScope::Global, Fault::delay(Duration::from_secs(60)));
    let config = dir.path().join("c.yml");
    std::fs::write(
        &config,
        format!(
            "sas:\n  endpoint: {}\n  timeout: 30s\ncredentials:\n  access_key_id: {SIM_ACCESS_KEY_ID}\n  access_key_secret: {SIM_ACCESS_KEY_SECRET}\ntargets:\n  - digest: {}\n",
            sim.url(),
            digest(1)
        ),
    )
    .expect("config");
    let mut child = KillOnDrop(
        std::process::Command::new(BIN)
            .arg("--config.file")
            .arg(&config)
            .args([
                "--web.listen-address",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    wait_for("a request in flight", || sim.total_requests() >= 1).await;
    kill(&child.0, libc::SIGTERM);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(child.0.try_wait().expect("wait").is_none(), "draining");
    let second = Instant::now();
    kill(&child.0, libc::SIGTERM);
    let status = wait_exit(&mut child.0, Duration::from_secs(5)).expect("exited at once");
    eprintln!(
        "exited {:?} after the second SIGTERM: {status:?}",
        second.elapsed()
    );
    assert!(second.elapsed() < Duration::from_secs(3));
}

/// A failed state-file write leaves no temporary file and shows in the metrics; a file written by
/// a newer exporter is set aside rather than overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_file_failures_are_visible_and_newer_files_are_kept() {
    let dir = TempDir::new("hostile-state");
    let sim = Simulator::start(Scenario::default()).await.expect("sim");

    // A directory where the file should go: every rename over it fails.
    let blocked = dir.path().join("blocked.json");
    std::fs::create_dir(&blocked).expect("dir");
    std::fs::write(blocked.join("keep"), "x").expect("file in dir");
    let mut cfg = config(
        &sim,
        vec![target(&digest(1), "a")],
        polling(600, 600, 10.0, 2),
    );
    cfg.state_file = Some(blocked.clone());
    let exporter = start(&cfg).await;
    wait_ready(&exporter).await;
    let before = scrape_samples(&exporter).await;
    assert_eq!(before["sas_exporter_state_file_last_write_successful"], 1.0);
    exporter.shutdown().await;
    let tmp = dir.path().join("blocked.json.tmp");
    assert!(!tmp.exists(), "temporary file left behind");

    let exporter = start(&cfg).await;
    wait_ready(&exporter).await;
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let s = scrape_samples(&exporter).await;
        if s["sas_exporter_state_file_last_write_successful"] == 0.0 {
            assert_eq!(
                s["sas_exporter_state_file_last_write_success_timestamp_seconds"],
                0.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "no failed write reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!tmp.exists(), "temporary file left behind");
    exporter.shutdown().await;

    // A newer exporter's file.
    let newer = dir.path().join("state.json");
    let text = r#"{"format":"sas-image-scan-exporter/state","version":99,"targets":[]}"#;
    std::fs::write(&newer, text).expect("newer");
    cfg.state_file = Some(newer.clone());
    let exporter = start(&cfg).await;
    wait_ready(&exporter).await;
    exporter.shutdown().await;
    let aside = dir.path().join("state.json.v99.bak");
    assert_eq!(std::fs::read_to_string(&aside).expect("set aside"), text);
    let ours = std::fs::read_to_string(&newer).expect("ours");
    assert!(ours.contains(&digest(1)), "{ours}");
}

async fn scrape_samples(
    exporter: &sas_image_scan_exporter::app::Exporter,
) -> std::collections::BTreeMap<String, f64> {
    samples(&get(exporter, "/metrics", &[]).await.body)
}

/// A reload that parses a 100 000-digest target file leaves the server answering: the parse runs
/// on the blocking pool, not on the (here: only) async worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn reloading_a_huge_target_file_does_not_stall_the_server() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let dir = std::env::temp_dir().join(format!("sas-hostile-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("config.yml");
    let big = dir.join("big.yml");
    std::fs::write(&big, format!("- digest: {}\n", digest(1))).expect("small file");
    std::fs::write(
        &path,
        format!(
            "sas: {{endpoint: \"{}\", timeout: 2s}}\ncredentials: {{access_key_id: {}, access_key_secret: {}}}\npolling: {{interval: 1h, requests_per_second: 50}}\ntarget_files: [big.yml]\n",
            sim.url(),
            sas_simulator::SIM_ACCESS_KEY_ID,
            sas_simulator::SIM_ACCESS_KEY_SECRET,
        ),
    )
    .expect("config");
    let cfg = sas_image_scan_exporter::config::Config::load(&path).expect("valid config");
    let exporter = Arc::new(
        start_with_options(
            &cfg,
            sas_image_scan_exporter::app::Options {
                config_path: Some(path.clone()),
                // Only a sliver of the digests is this instance's to poll.
                shard: sas_image_scan_exporter::targets::Shard {
                    total: 1000,
                    index: 0,
                },
                ..Default::default()
            },
        )
        .await,
    );
    let text: String = (0..100_000u32)
        .map(|n| format!("- digest: {}\n", digest(n + 10)))
        .collect();
    std::fs::write(&big, text).expect("huge file");
    let reloading = {
        let exporter = Arc::clone(&exporter);
        tokio::spawn(async move { exporter.reload().await.map(|o| o.to_string()) })
    };
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    while !reloading.is_finished() {
        let t = Instant::now();
        assert_eq!(get(&exporter, "/-/healthy", &[]).await.status, 200);
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outcome = reloading.await.expect("task").expect("reload");
    eprintln!(
        "reload took {:?}; worst /-/healthy meanwhile {worst:?}; {outcome}",
        started.elapsed()
    );
    assert!(outcome.contains("(100000 configured"), "{outcome}");
    assert!(
        worst < Duration::from_millis(500),
        "/-/healthy took {worst:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
