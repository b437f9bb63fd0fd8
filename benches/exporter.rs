//! End-to-end benchmark: the release binary against the in-process simulator with N synthetic
//! digests. Measures the first polling round against the ideal N / requests_per_second, resident
//! memory, and scrape throughput (with `../shared/bench/compare-scrape` when present, which also
//! runs an idiomatic Go exporter and a static-bytes floor in the same run).
//!
//! `cargo bench --bench exporter`; knobs (environment):
//! SAS_BENCH_DIGESTS (default "1000,10000"), SAS_BENCH_RPS (default "200,1000"; one per size),
//! SAS_BENCH_CONCURRENCY (default 16), SAS_BENCH_COMPARE (path of compare-scrape, default
//! ../shared/bench/compare-scrape; "none" skips it), SAS_BENCH_SECONDS (wrk duration, default 5).

use std::io::Write as _;
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

async fn run_one(n: usize, rps: f64, concurrency: usize) {
    // The whole first round must stay in the traffic log for its span to be measured.
    let scenario = Scenario::default()
        .with_synthetic_unknown()
        .with_log_capacity(n * 2);
    let sim = Simulator::start(scenario).await.expect("simulator");
    let dir = std::env::temp_dir().join(format!("sas-bench-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("config.yml");
    let mut f = std::fs::File::create(&config).expect("config file");
    writeln!(
        f,
        "sas:\n  endpoint: {}\n  timeout: 10s\ncredentials:\n  access_key_id: {SIM_ACCESS_KEY_ID}\n  access_key_secret: {SIM_ACCESS_KEY_SECRET}\npolling:\n  interval: 1h\n  active_interval: 1h\n  concurrency: {concurrency}\n  requests_per_second: {rps}\ntargets:",
        sim.url()
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
    drop(f);
    let port = free_port();
    let started = Instant::now();
    let child = Command::new(BIN)
        .arg("--config.file")
        .arg(&config)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .args(["--log.level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn exporter");
    let pid = child.id();
    let _guard = Exporter(child);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{port}");
    loop {
        if let Ok(r) = http.get(format!("{base}/-/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

    let compare = std::env::var("SAS_BENCH_COMPARE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/bench/compare-scrape"
        )
        .to_owned()
    });
    if compare != "none" && std::path::Path::new(&compare).exists() {
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
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let sizes = env_list("SAS_BENCH_DIGESTS", "1000,10000");
    let rates = env_list("SAS_BENCH_RPS", "200,1000");
    let concurrency: usize = std::env::var("SAS_BENCH_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (i, n) in sizes.iter().enumerate() {
        let n: usize = n.parse().expect("SAS_BENCH_DIGESTS holds numbers");
        let rps: f64 = rates
            .get(i)
            .or(rates.last())
            .and_then(|r| r.parse().ok())
            .expect("SAS_BENCH_RPS holds numbers");
        runtime.block_on(run_one(n, rps, concurrency));
    }
}
