//! End-to-end benchmark: the release binary against the in-process simulator with N synthetic
//! digests. For each N, in one run:
//!
//! - static snapshot: the first polling round against the ideal N / requests_per_second, resident
//!   memory, and plain-text scrape throughput (with the `compare-scrape` script of the peer
//!   exporters when present, which also runs an idiomatic Go exporter and a static-bytes floor);
//! - constant change, in a second process with a 1 s refresh interval: after the first round, a
//!   reload to `requests_per_second` 20 keeps every digest due, so a new snapshot is published
//!   every 50 ms; the median of 12 Prometheus-shaped scrapes (gzip,
//!   OpenMetrics `Accept`) beside the Go peer's, and the request rate achieved while `/metrics`
//!   is scraped back to back on two connections;
//! - resident memory: the peak sampled while the snapshot changes and scrapes come in (what the
//!   budget covers), beside `VmHWM`, which also counts start-up and the reload before that window.
//!
//! Then resident memory with a large target list before any poll, and after a reload that drops
//! all but 1 000 of them. A summary prints every figure beside its budget.
//!
//! `cargo bench --bench exporter`; knobs (environment):
//! SAS_BENCH_DIGESTS (default "1000,10000,20000"), SAS_BENCH_RPS (default "200,1000,1000"; one per
//! size, for the first round), SAS_BENCH_CONCURRENCY (default 16), SAS_BENCH_COMPARE (path of
//! the peers' compare-scrape script, which sits beside the checkout by default; "none" skips it
//! and the Go peer),
//! SAS_BENCH_SECONDS (wrk duration, default 5), SAS_BENCH_CHANGE_RPS (default 20),
//! SAS_BENCH_LOAD_SECONDS (scrape-load window, default 10), SAS_BENCH_LARGE (default 100000;
//! 0 skips it).

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sas_simulator::{SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, Scenario, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_sas-image-scan-exporter");

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `kB` line of /proc/PID/status (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The header Prometheus 3 sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes a config with `n` synthetic targets (labels image and team).
fn write_config(path: &Path, sim: &str, n: usize, rps: f64, interval: &str, concurrency: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("config file"));
    writeln!(
        f,
        "sas:\n  endpoint: {sim}\n  timeout: 10s\ncredentials:\n  access_key_id: {SIM_ACCESS_KEY_ID}\n  access_key_secret: {SIM_ACCESS_KEY_SECRET}\npolling:\n  interval: {interval}\n  active_interval: {interval}\n  concurrency: {concurrency}\n  requests_per_second: {rps}\ntargets:"
    )
    .expect("write config");
    let teams = ["payments", "platform", "search", "shop"];
    for i in 0..n {
        let digest = format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4);
        writeln!(
            f,
            "  - digest: {digest}\n    labels: {{image: \"registry.example.com/{}/svc-{i}:1.{}.0\", team: {}}}",
            teams[i % 4],
            i % 17,
            teams[i % 4]
        )
        .expect("write target");
    }
    f.flush().expect("write config");
}

fn start_exporter(config: &Path) -> (Exporter, u32, String) {
    let port = free_port();
    let child = Command::new(BIN)
        .arg("--config.file")
        .arg(config)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .args(["--log.level", "warn", "--web.enable-lifecycle"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn exporter");
    let pid = child.id();
    (Exporter(child), pid, format!("http://127.0.0.1:{port}"))
}

async fn wait_for(http: &reqwest::Client, url: &str, started: Instant) {
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{url} never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One Prometheus-shaped scrape (gzip, OpenMetrics `Accept`): seconds until the whole body
/// arrived, and its size.
async fn prometheus_scrape(http: &reqwest::Client, url: &str) -> (f64, usize) {
    let t = Instant::now();
    let body = http
        .get(url)
        .header("accept", PROMETHEUS_ACCEPT)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("scrape")
        .bytes()
        .await
        .expect("body");
    (t.elapsed().as_secs_f64(), body.len())
}

/// The median of 12 scrapes, 100 ms apart so that each one meets a new snapshot.
async fn median_of_12(http: &reqwest::Client, url: &str) -> (f64, usize) {
    let mut times = Vec::with_capacity(12);
    let mut size = 0;
    for _ in 0..12 {
        let (t, len) = prometheus_scrape(http, url).await;
        times.push(t);
        size = len;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    times.sort_by(f64::total_cmp);
    ((times[5] + times[6]) / 2.0, size)
}

/// The Go client_golang peer that compare-scrape builds, when it is there.
fn go_peer() -> Option<std::path::PathBuf> {
    let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".to_owned());
    let p = Path::new(&dir).join("sas-bench-peer/peer-go");
    p.exists().then_some(p)
}

/// Samples a process's resident memory every 50 ms until the returned flag is set; the handle
/// yields the largest sample. This is the peak over a window of the run, where `VmHWM` also
/// counts start-up (parsing the config) and the bench's own reload before the window.
fn sample_rss(
    pid: u32,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<u64>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        let mut peak = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(status_kib(pid, "VmRSS").unwrap_or(0));
            std::thread::sleep(Duration::from_millis(50));
        }
        peak.max(status_kib(pid, "VmRSS").unwrap_or(0))
    });
    (stop, handle)
}

/// The simulator every run polls: synthetic tasks for any digest, and a traffic log long
/// enough that the measurements can count every request of a window.
async fn simulator() -> Simulator {
    Simulator::start(
        Scenario::default()
            .with_synthetic_unknown()
            .with_log_capacity(1 << 20),
    )
    .await
    .expect("simulator")
}

/// What one size measured.
#[derive(Default)]
struct Figures {
    n: usize,
    scrape: f64,
    go_scrape: Option<f64>,
    poll_ratio: f64,
    /// Largest RSS sampled while the snapshot changed and scrapes came in.
    peak_kib: u64,
    /// `VmHWM` of that process: the same plus its start-up and the reload to the change rate.
    hwm_kib: u64,
}

async fn run_one(n: usize, rps: f64, concurrency: usize) -> Figures {
    let sim = simulator().await;
    let dir = std::env::temp_dir().join(format!("sas-bench-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("config.yml");
    write_config(&config, &sim.url(), n, rps, "1h", concurrency);
    let started = Instant::now();
    let (guard, pid, base) = start_exporter(&config);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    wait_for(&http, &format!("{base}/-/ready"), started).await;
    let round = started.elapsed().as_secs_f64();
    let log = sim.log();
    let api_span = match (log.first(), log.last()) {
        (Some(a), Some(b)) => b.at.duration_since(a.at).as_secs_f64(),
        _ => 0.0,
    };
    let ideal = n as f64 / rps;
    println!(
        "n={n} rps={rps} concurrency={concurrency}: first round {round:.2}s (API traffic {api_span:.2}s over {} requests), ideal N/rps {ideal:.2}s, ratio {:.3}",
        log.len(),
        round / ideal
    );
    println!(
        "n={n}: RSS after the round, before any scrape {} KiB",
        status_kib(pid, "VmRSS").unwrap_or(0)
    );
    let body = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .bytes()
        .await
        .expect("body");
    println!(
        "n={n}: /metrics {} bytes; RSS after the first scrape {} KiB",
        body.len(),
        status_kib(pid, "VmRSS").unwrap_or(0)
    );
    drop(body);

    let compare = std::env::var("SAS_BENCH_COMPARE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/bench/compare-scrape"
        )
        .to_owned()
    });
    let with_peers = compare != "none" && Path::new(&compare).exists();
    if with_peers {
        let secs = std::env::var("SAS_BENCH_SECONDS").unwrap_or_else(|_| "5".to_owned());
        let url = format!("{base}/metrics");
        let out = tokio::task::spawn_blocking(move || {
            Command::new("bash")
                .arg(&compare)
                .args([n.to_string(), url, secs])
                .output()
        })
        .await
        .expect("join")
        .expect("compare-scrape runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
    } else {
        // No peers here: measure our own throughput with sequential keep-alive scrapes.
        let t = Instant::now();
        let mut count = 0u32;
        while t.elapsed() < Duration::from_secs(3) {
            let r = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("scrape");
            let _ = r.bytes().await.expect("body");
            count += 1;
        }
        println!(
            "n={n}: {:.0} scrapes/s (one client, sequential)",
            f64::from(count) / t.elapsed().as_secs_f64()
        );
    }
    println!(
        "n={n}: RSS after scraping {} KiB (peak {} KiB)",
        status_kib(pid, "VmRSS").unwrap_or(0),
        status_kib(pid, "VmHWM").unwrap_or(0)
    );

    let static_peak = status_kib(pid, "VmHWM").unwrap_or(0);
    drop(guard);

    // Constant change, in a fresh process: a refresh interval of 1 s keeps every digest due, so
    // after the first round (at the fast rate) the reload to the change rate leaves the token
    // bucket as the only pace, and every publish (at most one per 50 ms) is a new snapshot.
    let change_rps: f64 = env_or("SAS_BENCH_CHANGE_RPS", 20.0);
    write_config(&config, &sim.url(), n, rps, "1s", concurrency);
    let started = Instant::now();
    let (_guard, pid, base) = start_exporter(&config);
    wait_for(&http, &format!("{base}/-/ready"), started).await;
    write_config(&config, &sim.url(), n, change_rps, "1s", concurrency);
    let reloaded = http
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(reloaded.status(), 200, "reload to the change rate");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The run the memory budget speaks of starts here: polling at the change rate, a new
    // snapshot every 50 ms, Prometheus-shaped scrapes.
    let (stop_sampling, sampler) = sample_rss(pid);
    let metrics = format!("{base}/metrics");
    let (scrape, size) = median_of_12(&http, &metrics).await;
    println!(
        "n={n} under change ({change_rps} polls/s): Prometheus-shaped scrape median of 12 {scrape:.4}s ({size} bytes gzip)"
    );
    let mut go_scrape = None;
    if with_peers && let Some(peer) = go_peer() {
        let port = free_port();
        let child = Command::new(peer)
            .args([
                "-listen",
                &format!("127.0.0.1:{port}"),
                "-n",
                &n.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the Go peer");
        let _peer = Exporter(child);
        let url = format!("http://127.0.0.1:{port}/metrics");
        wait_for(&http, &url, Instant::now()).await;
        let (t, size) = median_of_12(&http, &url).await;
        println!(
            "n={n}: Go client_golang peer, same scrape: median of 12 {t:.4}s ({size} bytes gzip)"
        );
        go_scrape = Some(t);
    }

    let load: f64 = env_or("SAS_BENCH_LOAD_SECONDS", 10.0);
    let t0 = Instant::now();
    let before = sim.log().iter().filter(|e| e.at >= t0).count();
    let scrapers: Vec<_> = (0..2)
        .map(|_| {
            let http = http.clone();
            let url = metrics.clone();
            tokio::spawn(async move {
                let mut count = 0u32;
                while t0.elapsed().as_secs_f64() < load {
                    prometheus_scrape(&http, &url).await;
                    count += 1;
                }
                count
            })
        })
        .collect();
    let mut scrapes = 0;
    for s in scrapers {
        scrapes += s.await.expect("scraper");
    }
    let t1 = t0 + Duration::from_secs_f64(load);
    let polled = sim.log().iter().filter(|e| e.at >= t0 && e.at < t1).count() - before;
    let achieved = polled as f64 / load;
    println!(
        "n={n}: while scraped back to back on 2 connections ({scrapes} scrapes in {load:.0}s): {achieved:.2} requests/s of {change_rps}, ratio {:.3}",
        achieved / change_rps
    );
    stop_sampling.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_kib = sampler.join().unwrap_or(0);
    let hwm_kib = status_kib(pid, "VmHWM").unwrap_or(0);
    println!(
        "n={n}: RSS at the end {} KiB, peak sampled over the run {peak_kib} KiB, VmHWM with start-up and reload {hwm_kib} KiB (static-snapshot run: VmHWM {static_peak} KiB)",
        status_kib(pid, "VmRSS").unwrap_or(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Figures {
        n,
        scrape,
        go_scrape,
        poll_ratio: achieved / change_rps,
        peak_kib,
        hwm_kib,
    }
}

/// Resident memory of an exporter with `n` configured targets before any poll has answered.
async fn idle_rss(sim: &Simulator, dir: &Path, n: usize) -> (Exporter, u32, String, u64) {
    let config = dir.join(format!("idle-{n}.yml"));
    // One request per 100 s: the targets are configured but practically never polled.
    write_config(&config, &sim.url(), n, 0.01, "1h", 1);
    let started = Instant::now();
    let (guard, pid, base) = start_exporter(&config);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    wait_for(&http, &format!("{base}/-/healthy"), started).await;
    // One scrape, so the exposition's caches exist too.
    let _ = prometheus_scrape(&http, &format!("{base}/metrics")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = status_kib(pid, "VmRSS").unwrap_or(0);
    println!(
        "{n} configured digests, none polled yet: RSS {rss} KiB (started in {:.1}s)",
        started.elapsed().as_secs_f64()
    );
    (guard, pid, base, rss)
}

/// RSS per configured digest at `large`, and what a reload down to 1 000 digests gives back.
async fn large_config(large: usize) -> (f64, u64, u64) {
    let sim = simulator().await;
    let dir = std::env::temp_dir().join(format!("sas-bench-{}-large", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (small, _, _, small_rss) = idle_rss(&sim, &dir, 1000).await;
    drop(small);
    let (_big, pid, base, big_rss) = idle_rss(&sim, &dir, large).await;
    let per = (big_rss.saturating_sub(small_rss)) as f64 * 1024.0 / (large - 1000) as f64;
    write_config(
        &dir.join(format!("idle-{large}.yml")),
        &sim.url(),
        1000,
        0.01,
        "1h",
        1,
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let r = http
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200, "reload down to 1 000 digests");
    let _ = prometheus_scrape(&http, &format!("{base}/metrics")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = status_kib(pid, "VmRSS").unwrap_or(0);
    println!(
        "{large} digests: {per:.0} bytes of RSS per configured digest; after a reload down to 1 000: RSS {after} KiB ({} KiB given back)",
        big_rss.saturating_sub(after)
    );
    let _ = std::fs::remove_dir_all(&dir);
    (per, big_rss, after)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn main() {
    let sizes = env_list("SAS_BENCH_DIGESTS", "1000,10000,20000");
    let rates = env_list("SAS_BENCH_RPS", "200,1000,1000");
    let concurrency: usize = env_or("SAS_BENCH_CONCURRENCY", 16);
    let large: usize = env_or("SAS_BENCH_LARGE", 100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut all = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let n: usize = n.parse().expect("SAS_BENCH_DIGESTS holds numbers");
        let rps: f64 = rates
            .get(i)
            .or(rates.last())
            .and_then(|r| r.parse().ok())
            .expect("SAS_BENCH_RPS holds numbers");
        all.push(runtime.block_on(run_one(n, rps, concurrency)));
    }
    let large = (large > 1000).then(|| (large, runtime.block_on(large_config(large))));

    println!(
        "\nsummary (budgets: scrape <= 0.1 x Go peer; polling >= 0.95; peak RSS <= 48 MiB at 10 000; <= 4 KiB per extra digest)"
    );
    println!(
        "| N | scrape median (gzip, OpenMetrics) | Go peer | ratio to Go (budget <= 0.10) | polling under scrapes (budget >= 0.95) | peak RSS |"
    );
    println!("|---|---|---|---|---|---|");
    for f in &all {
        let (go, ratio) = match f.go_scrape {
            Some(g) => (
                format!("{g:.3} s"),
                format!("{:.3} ({})", f.scrape / g, verdict(f.scrape / g <= 0.1)),
            ),
            None => ("-".into(), "-".into()),
        };
        let hwm = f.hwm_kib as f64 / 1024.0;
        let peak = f.peak_kib as f64 / 1024.0;
        let peak = if f.n == 10_000 {
            format!(
                "{peak:.1} MiB (budget <= 48: {}); VmHWM {hwm:.1} MiB",
                verdict(peak <= 48.0)
            )
        } else {
            format!("{peak:.1} MiB; VmHWM {hwm:.1} MiB")
        };
        println!(
            "| {} | {:.4} s | {go} | {ratio} | {:.3} ({}) | {peak} |",
            f.n,
            f.scrape,
            f.poll_ratio,
            verdict(f.poll_ratio >= 0.95)
        );
    }
    if let (Some(a), Some(b)) = (
        all.iter().find(|f| f.n == 10_000),
        all.iter().find(|f| f.n == 20_000),
    ) {
        let per = (b.peak_kib.saturating_sub(a.peak_kib)) as f64 / 10_000.0;
        println!(
            "peak RSS per extra digest, 10 000 -> 20 000: {:.2} KiB (budget <= 4: {})",
            per,
            verdict(per <= 4.0)
        );
    }
    if let Some((n, (per, big, after))) = large {
        println!(
            "RSS per configured digest at {n} (config, targets, snapshot, before any poll): {:.2} KiB (budget <= 4: {}); {:.1} MiB, {:.1} MiB after a reload down to 1 000",
            per / 1024.0,
            verdict(per / 1024.0 <= 4.0),
            big as f64 / 1024.0,
            after as f64 / 1024.0
        );
    }
}
