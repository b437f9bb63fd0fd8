//! Operations: reload, target files, the state file, sharding, restarts and shutdown, against the
//! simulator over loopback HTTP.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sas_image_scan_exporter::app::{Exporter, Options};
use sas_image_scan_exporter::read_state_file;
use sas_image_scan_exporter::targets::Shard;
use sas_simulator::{
    Fault, FaultScope, SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, Scenario, Simulator,
};

const BIN: &str = env!("CARGO_BIN_EXE_sas-image-scan-exporter");

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sas-ops-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A config file for the simulator with these (digest, team) targets and extra top-level YAML.
fn write_config(dir: &Path, sim: &Simulator, targets: &[(String, &str)], extra: &str) -> PathBuf {
    let mut yaml = format!(
        "sas:\n  endpoint: {}\n  timeout: 2s\ncredentials:\n  access_key_id: {SIM_ACCESS_KEY_ID}\n  access_key_secret_file: {}\npolling:\n  interval: 10m\n  active_interval: 10m\n  requests_per_second: 50\n{extra}targets:\n",
        sim.url(),
        dir.join("secret").display()
    );
    std::fs::write(dir.join("secret"), SIM_ACCESS_KEY_SECRET).expect("secret");
    set_private(&dir.join("secret"));
    if targets.is_empty() {
        yaml.push_str("  []\n");
    }
    for (d, team) in targets {
        yaml.push_str(&format!("  - digest: {d}\n    labels: {{team: {team}}}\n"));
    }
    let path = dir.join("config.yml");
    std::fs::write(&path, yaml).expect("config");
    path
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The digests that have per-digest series in a scrape.
fn digests_in(body: &str) -> BTreeSet<String> {
    scan_samples(body)
        .keys()
        .filter_map(|k| k.split("digest=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

async fn post(exporter: &Exporter, path: &str) -> (u16, String) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let r = http
        .post(format!("http://{}{path}", exporter.addrs[0]))
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.text().await.expect("body"))
}

fn synthetic_sim() -> Scenario {
    Scenario::default().with_synthetic_unknown()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_targets_and_rejects_a_bad_config_whole() {
    let sim = Simulator::start(synthetic_sim()).await.expect("sim");
    let dir = temp_dir();
    let (d1, d2, d3) = (digest(1), digest(2), digest(3));
    let path = write_config(&dir, &sim, &[(d1.clone(), "a"), (d2.clone(), "a")], "");
    let exporter = start_from(
        &path,
        Options {
            enable_lifecycle: true,
            ..Options::default()
        },
    )
    .await;
    wait_ready(&exporter).await;
    let before = get(&exporter, "/metrics", &[]).await.body;
    assert_eq!(digests_in(&before), [d1.clone(), d2.clone()].into());

    // d1 removed, d2 relabelled, d3 added.
    write_config(&dir, &sim, &[(d2.clone(), "b"), (d3.clone(), "b")], "");
    let (status, text) = post(&exporter, "/-/reload").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "reloaded: 2 targets (2 configured, shard 0/1)\n");
    // Removed at once; d2 keeps its data (not polled again) under its new labels.
    let after = get(&exporter, "/metrics", &[]).await.body;
    assert!(!digests_in(&after).contains(&d1), "d1 still exported");
    let relabelled = format!("sas_image_scan_up{{account=\"default\",digest=\"{d2}\",team=\"b\"}}");
    assert_eq!(scan_samples(&after).get(&relabelled), Some(&1.0));
    assert!(!after.contains(&format!("digest=\"{d2}\",team=\"a\"")));
    wait_for("d3 polled", || sim.requests_for(&d3) == 1).await;
    wait_ready(&exporter).await;
    assert_eq!(sim.requests_for(&d2), 1);
    assert_eq!(sim.requests_for(&d1), 1);
    let all = samples(&get(&exporter, "/metrics", &[]).await.body);
    assert_eq!(all["sas_exporter_config_last_reload_successful"], 1.0);
    assert_eq!(all["sas_exporter_targets"], 2.0);

    // An invalid config is rejected whole, with the reason; the old one keeps running.
    std::fs::write(&path, "polling:\n  concurrency: 0\ntargets: []\n").expect("bad config");
    let (status, text) = post(&exporter, "/-/reload").await;
    assert_eq!(status, 500);
    assert!(text.starts_with("reload rejected; the previous configuration stays in effect:\n1 problem in the configuration:\n"), "{text}");
    assert!(text.contains("polling.concurrency"), "{text}");
    let body = get(&exporter, "/metrics", &[]).await.body;
    assert_eq!(digests_in(&body), [d2.clone(), d3.clone()].into());
    assert_eq!(
        samples(&body)["sas_exporter_config_last_reload_successful"],
        0.0
    );
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_is_forbidden_without_lifecycle() {
    let sim = Simulator::start(synthetic_sim()).await.expect("sim");
    let dir = temp_dir();
    let path = write_config(&dir, &sim, &[(digest(1), "a")], "");
    let exporter = start_from(&path, Options::default()).await;
    let (status, text) = post(&exporter, "/-/reload").await;
    assert_eq!(status, 403);
    assert!(text.contains("--web.enable-lifecycle"));
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_files_are_watched_and_a_broken_file_keeps_its_targets() {
    let sim = Simulator::start(synthetic_sim()).await.expect("sim");
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("targets.d")).expect("dir");
    let (d4, d5, d6) = (digest(4), digest(5), digest(6));
    let a = dir.join("targets.d/a.yml");
    std::fs::write(&a, format!("- digest: {d4}\n  labels: {{team: files}}\n")).expect("a");
    let path = write_config(&dir, &sim, &[], "target_files: [\"targets.d/*.yml\"]\n");
    let exporter = start_from(&path, Options::default()).await;
    wait_ready(&exporter).await;
    assert_eq!(sim.requests_for(&d4), 1);
    let file_ok = format!(
        "sas_exporter_target_file_last_load_successful{{file=\"{}\"}}",
        a.display()
    );
    assert_eq!(
        samples(&get(&exporter, "/metrics", &[]).await.body)[&file_ok],
        1.0
    );

    // A change on disk is picked up without a reload.
    std::fs::write(
        &a,
        format!("- digest: {d4}\n  labels: {{team: files}}\n- digest: {d5}\n"),
    )
    .expect("a");
    wait_for("d5 polled", || sim.requests_for(&d5) == 1).await;

    // A broken file keeps its previous targets and says so.
    std::fs::write(&a, "- digest: [not, a, digest\n").expect("broken");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all = samples(&get(&exporter, "/metrics", &[]).await.body);
        if all.get(&file_ok) == Some(&0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "broken file never reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = get(&exporter, "/metrics", &[]).await.body;
    assert_eq!(digests_in(&body), [d4.clone(), d5.clone()].into());

    // A new file next to it is added.
    std::fs::write(dir.join("targets.d/b.yml"), format!("- digest: {d6}\n")).expect("b");
    wait_for("d6 polled", || sim.requests_for(&d6) == 1).await;
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_file_restores_metrics_and_readiness_at_once() {
    let sim = Simulator::start(synthetic_sim()).await.expect("sim");
    let dir = temp_dir();
    let targets: Vec<(String, &str)> = (10..20).map(|i| (digest(i), "s")).collect();
    let state = dir.join("state.json");
    let path = write_config(
        &dir,
        &sim,
        &targets,
        &format!("state_file: {}\n", state.display()),
    );
    let first = start_from(&path, Options::default()).await;
    wait_ready(&first).await;
    let before = scan_samples(&get(&first, "/metrics", &[]).await.body);
    first.shutdown().await;
    assert_eq!(read_state_file(&state).expect("valid state").len(), 10);

    // The API is now slow: a restart must not wait for it.
    sim.inject(FaultScope::Global, Fault::delay(Duration::from_secs(30)));
    let requests = sim.total_requests();
    let second = start_from(&path, Options::default()).await;
    let ready = get(&second, "/-/ready", &[]).await;
    assert_eq!(ready.status, 200, "ready at once after a restore");
    let restored = scan_samples(&get(&second, "/metrics", &[]).await.body);
    let differences: Vec<String> = before
        .iter()
        .filter(|(k, v)| restored.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} -> {:?}", restored.get(k)))
        .chain(
            restored
                .keys()
                .filter(|k| !before.contains_key(*k))
                .map(|k| format!("new {k}")),
        )
        .collect();
    assert!(differences.is_empty(), "{differences:#?}");
    // Restored digests are not due before their interval: no request was sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.total_requests(), requests);
    sim.clear_faults();
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_the_targets_with_no_overlap() {
    let sim = Simulator::start(synthetic_sim()).await.expect("sim");
    let dir = temp_dir();
    let targets: Vec<(String, &str)> = (100..160).map(|i| (digest(i), "sh")).collect();
    let path = write_config(&dir, &sim, &targets, "");
    let mut seen: Vec<BTreeSet<String>> = Vec::new();
    for index in 0..3 {
        let exporter = start_from(
            &path,
            Options {
                shard: Shard { total: 3, index },
                ..Options::default()
            },
        )
        .await;
        wait_ready(&exporter).await;
        let body = get(&exporter, "/metrics", &[]).await.body;
        let mine = digests_in(&body);
        assert_eq!(samples(&body)["sas_exporter_targets"], mine.len() as f64);
        assert!(!mine.is_empty());
        seen.push(mine);
        exporter.shutdown().await;
    }
    let all: BTreeSet<String> = targets.iter().map(|(d, _)| d.clone()).collect();
    let union: BTreeSet<String> = seen.iter().flatten().cloned().collect();
    assert_eq!(union, all);
    assert_eq!(
        seen.iter().map(BTreeSet::len).sum::<usize>(),
        all.len(),
        "overlap"
    );
    // And the simulator saw each digest exactly once.
    for d in &all {
        assert_eq!(sim.requests_for(d), 1, "{d}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_scrape_load_never_fail_a_scrape_or_leave_stale_series() {
    let sim = Simulator::start(synthetic_sim()).await.expect("sim");
    let dir = temp_dir();
    let set_a: Vec<(String, &str)> = (200..230).map(|i| (digest(i), "a")).collect();
    let set_b: Vec<(String, &str)> = (215..245).map(|i| (digest(i), "b")).collect();
    let path = write_config(&dir, &sim, &set_a, "");
    let exporter = Arc::new(
        start_from(
            &path,
            Options {
                enable_lifecycle: true,
                ..Options::default()
            },
        )
        .await,
    );
    wait_ready(&exporter).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut scrapers = Vec::new();
    for _ in 0..3 {
        let exporter = Arc::clone(&exporter);
        let stop = Arc::clone(&stop);
        scrapers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = get(&exporter, "/metrics", &[("accept-encoding", "gzip")]).await;
                assert_eq!(r.status, 200);
                n += 1;
            }
            n
        }));
    }
    for round in 0..20 {
        let set = if round % 2 == 0 { &set_b } else { &set_a };
        write_config(&dir, &sim, set, "");
        let (status, text) = post(&exporter, "/-/reload").await;
        assert_eq!(status, 200, "{text}");
        let body = get(&exporter, "/metrics", &[]).await.body;
        let want: BTreeSet<String> = set.iter().map(|(d, _)| d.clone()).collect();
        let have = digests_in(&body);
        assert!(have.is_subset(&want), "stale series after reload {round}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut scrapes = 0;
    for s in scrapers {
        scrapes += s.await.expect("scraper");
    }
    assert!(scrapes > 20, "only {scrapes} scrapes ran");
    if let Ok(exporter) = Arc::try_unwrap(exporter) {
        exporter.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_the_request_timeout() {
    let sim = Simulator::start(synthetic_sim()).await.expect("sim");
    sim.inject(FaultScope::Global, Fault::delay(Duration::from_secs(30)));
    let dir = temp_dir();
    let path = write_config(&dir, &sim, &[(digest(1), "t")], "");
    let exporter = start_from(&path, Options::default()).await;
    wait_for("a request in flight", || sim.total_requests() == 1).await;
    let t = Instant::now();
    exporter.shutdown().await;
    // sas.timeout is 2 s: the in-flight request gets at most that, plus a margin.
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

/// Starts the binary on a free port; returns the child (killed on drop, so a failing test leaves
/// nothing running) and the base URL.
fn spawn_binary(config: &Path, extra: &[&str]) -> (KillOnDrop, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let child = Command::new(BIN)
        .arg("--config.file")
        .arg(config)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    (KillOnDrop(child), format!("http://127.0.0.1:{port}"))
}

async fn http_get(url: &str) -> Option<(u16, String)> {
    let http = reqwest::Client::builder().no_proxy().build().ok()?;
    let r = http.get(url).send().await.ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

async fn wait_http_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, _)) = http_get(&format!("{base}/-/ready")).await {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_moment_leaves_a_usable_state_file() {
    let sim = Simulator::start(synthetic_sim()).await.expect("sim");
    let dir = temp_dir();
    let state = dir.join("state.json");
    let targets: Vec<(String, &str)> = (300..700).map(|i| (digest(i), "k")).collect();
    let path = write_config(
        &dir,
        &sim,
        &targets,
        &format!("state_file: {}\n", state.display()),
    );
    // Let one run finish its round and write state (every 5 s), then kill -9 repeatedly at
    // different moments (during polling and around state writes) and check what is left.
    let (mut child, base) = spawn_binary(&path, &[]);
    wait_http_ready(&base).await;
    let reference = scan_samples(
        &http_get(&format!("{base}/metrics"))
            .await
            .expect("scrape")
            .1,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_state_file(&state).map(|s| s.len()).unwrap_or(0) < targets.len() {
        assert!(Instant::now() < deadline, "state never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.0.kill().expect("kill -9");
    child.0.wait().expect("reaped");
    for delay_ms in [0u64, 150, 900, 2600, 5100] {
        let (mut child, base) = spawn_binary(&path, &[]);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        child.0.kill().expect("kill -9");
        child.0.wait().expect("reaped");
        let restored = read_state_file(&state).expect("the state file is never corrupt");
        assert_eq!(
            restored.len(),
            targets.len(),
            "after a kill at {delay_ms} ms"
        );
        let _ = base;
    }
    // A final start serves everything at once, with no duplicate series.
    sim.inject(FaultScope::Global, Fault::delay(Duration::from_secs(30)));
    let (mut child, base) = spawn_binary(&path, &[]);
    wait_http_ready(&base).await;
    let body = http_get(&format!("{base}/metrics"))
        .await
        .expect("scrape")
        .1;
    let lines: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
    let unique: BTreeSet<&str> = lines
        .iter()
        .map(|l| l.rsplit_once(' ').map_or(*l, |p| p.0))
        .collect();
    assert_eq!(unique.len(), lines.len(), "duplicate series");
    let restored = scan_samples(&body);
    assert_eq!(restored.len(), reference.len());
    for (k, v) in &reference {
        if !k.starts_with("sas_image_scan_last_success_timestamp_seconds") {
            assert_eq!(restored.get(k), Some(v), "{k}");
        }
    }
    child.0.kill().expect("kill");
    child.0.wait().expect("reaped");
    sim.clear_faults();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_binary() {
    let sim = Simulator::start(synthetic_sim()).await.expect("sim");
    let dir = temp_dir();
    let (d1, d2) = (digest(801), digest(802));
    let path = write_config(&dir, &sim, &[(d1.clone(), "h")], "");
    let (mut child, base) = spawn_binary(&path, &[]);
    wait_http_ready(&base).await;
    write_config(&dir, &sim, &[(d2.clone(), "h")], "");
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = http_get(&format!("{base}/metrics"))
            .await
            .expect("scrape")
            .1;
        if digests_in(&body) == [d2.clone()].into() {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        child.0.try_wait().expect("status").is_none(),
        "SIGHUP killed the process"
    );
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert_eq!(child.0.wait().expect("exit").code(), Some(0));
}
