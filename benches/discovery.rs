//! Discovery benchmark: what a `sas_images` listing of 10 000 image rows costs, and how many API
//! requests change-driven refresh makes in an hour against per-digest polling.
//!
//! 1. Listing cost: the release binary (a child process, as in `benches/exporter.rs`) lists
//!    10 000 rows from the in-process simulator, `page_size: 50`, `refresh: 10s` (the least a
//!    config file accepts). The 10 000 "new" task polls of the first listing are waited out
//!    (`sas_exporter_refresh_triggers_total{reason="new"}` at 10 000, task requests flat), then
//!    K listings whose rows did not change alternate with K listings where 1 % of the rows
//!    changed. A thread samples the child's CPU clock every 2 ms; afterwards the simulator's
//!    request log cuts each listing into the requests (first page to last page) and what follows
//!    the last page (rows into a listing, the registry merge, change detection, and for a changed
//!    listing the task polls it triggers). An equal window in the quiet gap before the next
//!    listing gives the idle CPU, which is subtracted.
//! 2. Requests per hour, 10 000 images, 1 % changing per hour, time-compressed: a compressed
//!    `refresh` cannot be written in a config file (≥ 10s), so both schedules run in-process
//!    through `Exporter::start` with a `Config` built in code, and only request counts are taken
//!    from them (their CPU would be the bench's own). Change-driven: `refresh: 1m`,
//!    `interval: 6h`, `active_interval: 30s`, `page_size: 50`, 100 rows rescanned spread over
//!    the hour, one simulated hour in 120 s (30×: `refresh` 2 s, which a 200-page listing fits
//!    in even on a loaded machine; at 60× a 1 s refresh, listings took longer than the refresh
//!    and the hour held fewer than 60 of them). Per-digest polling at `interval: 10m` for 10 000
//!    digests is 16.7 requests/s, hundreds compressed, more than this machine serves beside
//!    everything else, so it runs with 1 000 static targets, one hour in 60 s (`interval` 10 s),
//!    and scales linearly by N.
//!
//! `cargo bench --bench discovery`; knobs (environment): SAS_BENCH_LISTINGS (listings of each
//! kind, default 5), SAS_BENCH_RPS (`requests_per_second` of parts 1 and 2, default 1000),
//! SAS_BENCH_HOUR_SECONDS (the change-driven hour, default 120), SAS_BENCH_POLL_HOUR_SECONDS
//! (the per-digest hour, default 60), SAS_BENCH_POLLED (static targets of the per-digest run,
//! default 1000).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sas_image_scan_exporter::app::{Exporter, Options};
use sas_image_scan_exporter::config::{
    AccountConfig, Config, CredentialsConfig, DEFAULT_ACCOUNT, DiscoveryConfig, ListingConfig,
    Location, PollingConfig, SasConfig, Scanned, SourceKind, Target,
};
use sas_simulator::{
    ACTION, IMAGES_ACTION, ImageInstance, LogEntry, SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET,
    Scenario, Simulator, synthetic_task,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sas-image-scan-exporter");

/// Image rows in the listing, and rows per page.
const ROWS: usize = 10_000;
const PAGE_SIZE: usize = 50;
/// 1 % of the rows: how many change before a "changed" listing, and per simulated hour.
const CHANGED: usize = ROWS / 100;
/// After the last request of a listing (page or triggered poll), how long the window stays open
/// for the work that follows it (the merge runs on the blocking pool once the last page is in).
/// A loaded machine can delay that work by hundreds of milliseconds of wall time.
const SETTLE: Duration = Duration::from_secs(1);
/// The idle twin of a window starts this long after the window ends, in the quiet middle of the
/// gap before the next listing (a `refresh` of 10 s leaves about 7 s).
const TWIN_GAP: Duration = Duration::from_secs(3);
/// The window opens this long before a listing's first page (the page is signed before it).
const LEAD: Duration = Duration::from_millis(50);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct ChildExporter(Child);

impl Drop for ChildExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// A 64-hex digest that looks random (splitmix64 of the index), distinct per index.
fn digest(i: usize) -> String {
    let mut x = (i as u64).wrapping_add(0x5eed);
    (0..4)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            format!("{:016x}", z ^ (z >> 31))
        })
        .collect()
}

/// Milliseconds of the last scans before the bench: spread over the day before 2024-06-01.
const SCANNED_MS: i64 = 1_717_200_000_000;

/// 10 000 rows as a registry of 400 repositories with 25 tags each would list them, every
/// field the service fills set (about thirty), so pages weigh what real ones do.
fn image_rows(n: usize) -> Vec<ImageInstance> {
    const NAMESPACES: [&str; 8] = [
        "payments", "platform", "search", "shop", "data", "identity", "ml", "edge",
    ];
    const SERVICES: [&str; 10] = [
        "api",
        "worker",
        "gateway",
        "cart",
        "checkout",
        "indexer",
        "auth",
        "billing",
        "frontend",
        "scheduler",
    ];
    (0..n)
        .map(|i| {
            let repo = i / 25;
            let ns = NAMESPACES[repo % NAMESPACES.len()];
            let name = format!("{ns}-{}-{}", SERVICES[repo % SERVICES.len()], repo / 8);
            let tag = format!("1.{}.{}", (i % 25) / 5, i % 5);
            let d = digest(i);
            let vulns = (i * 7 % 41) as i64;
            let scanned = SCANNED_MS - (i as i64 * 8_640);
            ImageInstance {
                region_id: Some(
                    if repo % 3 == 0 {
                        "cn-shanghai"
                    } else {
                        "cn-hangzhou"
                    }
                    .into(),
                ),
                instance_id: Some(format!("cri-{}", &digest(repo + 1_000_000)[..16])),
                repo_id: Some(format!("crr-{}", &digest(repo + 2_000_000)[..16])),
                registry_type: Some("acr".into()),
                repo_type: Some("PRIVATE".into()),
                sca_status: Some("SUCCESS".into()),
                sca_progress: Some(100),
                sca_result: Some("SUCCESS".into()),
                last_scan_time: Some(scanned),
                vul_count: Some(vulns),
                vul_status: Some(if vulns > 0 { "YES" } else { "NO" }.into()),
                hc_count: Some((i % 4) as i64),
                hc_status: Some(if i % 4 > 0 { "YES" } else { "NO" }.into()),
                alarm_count: Some(i64::from(i % 97 == 0)),
                alarm_status: Some(if i % 97 == 0 { "YES" } else { "NO" }.into()),
                risk_status: Some(if vulns > 0 { "YES" } else { "NO" }.into()),
                deployed: Some(i64::from(i % 3 == 0)),
                image_id: Some(format!("sha256:{}", digest(i + 3_000_000))),
                image_create: Some((scanned - 3_600_000).to_string()),
                image_update: Some((scanned - 3_000_000).to_string()),
                image_size: Some((80_000_000 + i * 7_919).to_string()),
                uuid: Some(format!(
                    "{}-{}-{}-{}-{}",
                    &d[..8],
                    &d[8..12],
                    &d[12..16],
                    &d[16..20],
                    &d[20..32]
                )),
                status: Some("NORMAL".into()),
                endpoints: Some(format!("registry-vpc.cn-hangzhou.aliyuncs.com/{ns}/{name}")),
                source_biz_tag: Some("ACR".into()),
                ..ImageInstance::new(&d, ns, &name, &tag)
            }
        })
        .collect()
}

/// A new scan of `row` that finished at `finished_ms`: the listing row shows it and the
/// digest's task answer is that scan, as when Security Center rescans an image.
fn rescan(sim: &Simulator, row: &mut ImageInstance, finished_ms: i64) {
    row.last_scan_time = Some(finished_ms);
    row.vul_count = row.vul_count.map(|v| v + 1);
    sim.upsert_image(row.clone());
    let d = row.digest.clone().unwrap_or_default();
    let mut task = synthetic_task(&d);
    if let Value::Object(t) = &mut task {
        t.insert("StartTime".into(), (finished_ms - 60_000).into());
        t.insert("FinishTime".into(), finished_ms.into());
        // `Modified` is China Standard Time without an offset, as the API writes it.
        let modified = chrono::DateTime::from_timestamp_millis(finished_ms + 8 * 3_600_000)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        t.insert("Modified".into(), modified.into());
        let id = t.get("Id").and_then(Value::as_i64).unwrap_or(0);
        t.insert("Id".into(), (id + 1).into());
    }
    sim.set_tasks(&d, vec![task]);
}

/// The simulator every run uses: finished synthetic tasks for every digest and a request log
/// long enough to hold every request of a run.
async fn simulator(rows: Vec<ImageInstance>) -> Simulator {
    Simulator::start(
        Scenario::default()
            .with_synthetic_unknown()
            .with_images(rows)
            .with_log_capacity(1 << 20),
    )
    .await
    .expect("simulator")
}

/// Each `reason` of `sas_exporter_refresh_triggers_total` in a `/metrics` body, summed over
/// accounts.
fn triggers(body: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("sas_exporter_refresh_triggers_total{") else {
            continue;
        };
        let reason = rest
            .split("reason=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(reason), Some(value)) = (reason, value) {
            *out.entry(reason.to_owned()).or_insert(0.0) += value;
        }
    }
    out
}

async fn scrape_triggers(http: &reqwest::Client, base: &str) -> BTreeMap<String, f64> {
    let body = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    triggers(&body)
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v != 0.0)
        .collect()
}

fn reasons(by: &BTreeMap<String, f64>) -> String {
    if by.is_empty() {
        return "none".into();
    }
    by.iter()
        .map(|(k, v)| format!("{v:.0} {k}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Waits until the simulator has answered `n` task requests and no more come for a second:
/// the first round after the first listing (or start-up) is over.
async fn wait_first_round(sim: &Simulator, n: u64, what: &str) {
    let started = Instant::now();
    let mut last = (sim.requests_for_action(ACTION), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sim.requests_for_action(ACTION);
        if now != last.0 {
            last = (now, Instant::now());
        } else if now >= n && last.1.elapsed() >= Duration::from_secs(1) {
            println!(
                "{what}: first round of {now} task requests over after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{what}: the first round never ended ({now} of {n} task requests)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Listing cost

/// The CPU time of another process, as its CPU-time clock and `/proc/PID/stat` tell it.
struct ProcessCpu {
    pid: u32,
    clock: libc::clockid_t,
}

impl ProcessCpu {
    fn of(pid: u32) -> Self {
        let mut clock: libc::clockid_t = 0;
        let pid_t = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
        // SAFETY: `clock` is a valid place for the call to write the clock id into.
        let rc = unsafe { libc::clock_getcpuclockid(pid_t, &mut clock) };
        assert_eq!(rc, 0, "clock_getcpuclockid({pid}) failed: error {rc}");
        ProcessCpu { pid, clock }
    }

    /// Nanoseconds of CPU (every thread, live or exited): the precise figure, where
    /// `/proc/PID/stat` rounds to clock ticks (10 ms), too coarse for a 50 ms budget.
    fn nanos(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for the call to fill.
        let rc = unsafe { libc::clock_gettime(self.clock, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime of the exporter's CPU clock failed");
        u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec).unwrap_or(0)
    }

    /// utime + stime from `/proc/PID/stat`, in clock ticks (fields 14 and 15, counted after
    /// the parenthesised command name, which may hold spaces).
    fn ticks(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
                Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0)
    }
}

#[derive(Clone, Copy)]
struct CpuSample {
    at: Instant,
    nanos: u64,
    ticks: u64,
}

/// Samples the child's CPU every 2 ms until the flag is set; the handle yields the samples.
fn sample_cpu(pid: u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<CpuSample>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        let cpu = ProcessCpu::of(pid);
        let mut samples = Vec::with_capacity(1 << 16);
        while !flag.load(Ordering::Relaxed) {
            samples.push(CpuSample {
                at: Instant::now(),
                nanos: cpu.nanos(),
                ticks: cpu.ticks(),
            });
            std::thread::sleep(Duration::from_millis(2));
        }
        samples
    });
    (stop, handle)
}

/// The CPU at `t`: the last sample taken at or before it.
fn cpu_at(samples: &[CpuSample], t: Instant) -> CpuSample {
    let i = samples.partition_point(|s| s.at <= t);
    samples[i.saturating_sub(1)]
}

/// Milliseconds of CPU between two instants.
fn cpu_ms(samples: &[CpuSample], from: Instant, to: Instant) -> f64 {
    (cpu_at(samples, to)
        .nanos
        .saturating_sub(cpu_at(samples, from).nanos)) as f64
        / 1e6
}

/// One listing as the simulator saw it, and the task polls that followed it.
struct Seen {
    first_page: Instant,
    last_page: Instant,
    pages: Vec<u32>,
    tasks: Vec<Instant>,
}

/// The listings in the log (a listing starts with page 1) and the task requests after each.
fn listings_in(log: &[LogEntry], from: Instant) -> Vec<Seen> {
    let mut out: Vec<Seen> = Vec::new();
    for e in log.iter().filter(|e| e.at >= from) {
        match e.action.as_deref() {
            Some(IMAGES_ACTION) => {
                let page = e.page.unwrap_or(0);
                if page == 1 || out.is_empty() {
                    out.push(Seen {
                        first_page: e.at,
                        last_page: e.at,
                        pages: Vec::new(),
                        tasks: Vec::new(),
                    });
                }
                if let Some(l) = out.last_mut() {
                    l.pages.push(page);
                    l.last_page = e.at;
                }
            }
            Some(ACTION) => {
                if let Some(l) = out.last_mut() {
                    l.tasks.push(e.at);
                }
            }
            _ => {}
        }
    }
    out
}

/// What one listing cost, net of the idle CPU of an equal window.
struct ListingCpu {
    pages: u32,
    polls: usize,
    /// First page to last page: signing, HTTP, JSON of every page.
    requests_ms: f64,
    /// Last page to the first triggered poll (or the end of the window): rows into a listing,
    /// the registry merge, change detection, the new discovered set handed to the scheduler.
    merge_ms: f64,
    /// The triggered task polls and their results, to the end of the window.
    polls_ms: f64,
    idle_ms: f64,
    window: Duration,
    /// The whole window's CPU before the idle is taken off, by the CPU clock and in utime +
    /// stime clock ticks (the cross-check).
    gross_ms: f64,
    ticks: u64,
}

impl ListingCpu {
    fn total_ms(&self) -> f64 {
        self.requests_ms + self.merge_ms + self.polls_ms
    }
}

/// Where one listing's window and its idle twin lie.
struct Window {
    start: Instant,
    /// The last page: what comes before it is the requests, what follows the merge.
    split: Instant,
    end: Instant,
    twin: Instant,
}

impl Window {
    fn of(l: &Seen, next: Option<&Seen>) -> Self {
        let start = l.first_page - LEAD;
        let split = l.last_page;
        let end = l.tasks.last().copied().unwrap_or(split).max(split) + SETTLE;
        let twin = end + TWIN_GAP;
        if let Some(n) = next {
            assert!(
                twin + (end - start) < n.first_page - LEAD,
                "no quiet gap after a listing for its idle twin: raise the refresh or lower the load"
            );
        }
        Window {
            start,
            split,
            end,
            twin,
        }
    }

    fn len(&self) -> Duration {
        self.end - self.start
    }

    fn twin_end(&self) -> Instant {
        self.twin + self.len()
    }
}

/// One listing's CPU by phase, each net of `idle_rate` (ms of CPU per second) over its length.
fn listing_cpu(samples: &[CpuSample], l: &Seen, w: &Window, idle_rate: f64) -> ListingCpu {
    let net = |from: Instant, to: Instant| {
        (cpu_ms(samples, from, to) - idle_rate * (to - from).as_secs_f64()).max(0.0)
    };
    let ticks = |from: Instant, to: Instant| {
        cpu_at(samples, to)
            .ticks
            .saturating_sub(cpu_at(samples, from).ticks)
    };
    // The triggered polls start once the merge has handed the changed digests over.
    let (merge_ms, polls_ms) = match l.tasks.first() {
        Some(&first_poll) => (net(w.split, first_poll), net(first_poll, w.end)),
        None => (net(w.split, w.end), 0.0),
    };
    ListingCpu {
        pages: l.pages.len() as u32,
        polls: l.tasks.len(),
        requests_ms: net(w.start, w.split),
        merge_ms,
        polls_ms,
        idle_ms: cpu_ms(samples, w.twin, w.twin_end()),
        window: w.len(),
        gross_ms: cpu_ms(samples, w.start, w.end),
        ticks: ticks(w.start, w.end),
    }
}

fn write_listing_config(path: &Path, sim: &str, rps: f64) {
    let mut f = std::fs::File::create(path).expect("config file");
    // interval and active_interval are long: after the first round only the listing (and the
    // polls its changes trigger) makes requests.
    writeln!(
        f,
        "sas:\n  endpoint: {sim}\n  timeout: 10s\ncredentials:\n  access_key_id: {SIM_ACCESS_KEY_ID}\n  access_key_secret: {SIM_ACCESS_KEY_SECRET}\npolling:\n  interval: 6h\n  active_interval: 6h\n  concurrency: 16\n  requests_per_second: {rps}\ndiscovery:\n  - source: sas_images\n    refresh: 10s\n    page_size: {PAGE_SIZE}"
    )
    .expect("write config");
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The least and the largest.
fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, 0.0), |(lo, hi), x| (lo.min(x), hi.max(x)))
}

/// What part 1 measured.
struct ListingFigures {
    pages_each: Vec<u32>,
    /// Every listing asked for pages 1, 2, … in order, each once.
    pages_in_order: bool,
    unchanged: Vec<ListingCpu>,
    changed: Vec<ListingCpu>,
    changed_triggers: f64,
    ticks_per_second: f64,
    /// ms of CPU per second over every idle twin.
    idle_rate: f64,
}

async fn listing_cost(k: usize, rps: f64) -> ListingFigures {
    let mut rows = image_rows(ROWS);
    let sim = simulator(rows.clone()).await;
    let dir = std::env::temp_dir().join(format!("sas-bench-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("config.yml");
    write_listing_config(&config, &sim.url(), rps);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
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
    let _guard = ChildExporter(child);
    let http = http_client();

    // The first listing finds 10 000 new digests and polls each once; that round is no part of
    // a listing's cost, so it is waited out before anything is measured.
    wait_first_round(&sim, ROWS as u64, "listing cost").await;
    let start_triggers = scrape_triggers(&http, &base).await;
    println!(
        "listing cost: triggers after the first round: {}",
        reasons(&start_triggers)
    );
    assert_eq!(
        start_triggers.get("new").copied(),
        Some(ROWS as f64),
        "the first listing should trigger one poll per new digest"
    );

    // Start between two listings: the listing requests are a whole number of listings and stay
    // so for a moment.
    let per_listing = ROWS.div_ceil(PAGE_SIZE) as u64;
    let mut done = loop {
        let n = sim.requests_for_action(IMAGES_ACTION);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if n % per_listing == 0 && sim.requests_for_action(IMAGES_ACTION) == n {
            break n;
        }
    };
    let (stop, sampler) = sample_cpu(pid);
    let from = Instant::now();
    let ticks_from = ProcessCpu::of(pid).ticks();
    let mut changed_rows = 0;
    for i in 0..2 * k {
        // Every other listing finds 1 % of the rows rescanned since the previous one.
        if i % 2 == 1 {
            let finished = SCANNED_MS + 3_600_000 * (i as i64 + 1);
            for j in 0..CHANGED {
                let r = (j * (ROWS / CHANGED) + i) % ROWS;
                rescan(&sim, &mut rows[r], finished);
                changed_rows += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while sim.requests_for_action(IMAGES_ACTION) < done + per_listing {
            assert!(Instant::now() < deadline, "no listing within a minute");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done += per_listing;
        // Past the window's end (the merge and the triggered polls) before the next rows
        // change; the changes themselves cost the exporter nothing until the next listing.
        tokio::time::sleep(SETTLE + Duration::from_millis(500)).await;
        print!(".");
        let _ = std::io::stdout().flush();
    }
    println!();
    // Room for the last window's idle twin.
    tokio::time::sleep(TWIN_GAP + Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("CPU sampler");
    let elapsed = from.elapsed().as_secs_f64();
    let ticks_per_second =
        (ProcessCpu::of(pid).ticks().saturating_sub(ticks_from)) as f64 / elapsed;
    let end_triggers = scrape_triggers(&http, &base).await;

    let seen = listings_in(&sim.log(), from);
    let seen = &seen[..seen.len().min(2 * k)];
    let windows: Vec<Window> = seen
        .iter()
        .enumerate()
        .map(|(i, l)| Window::of(l, seen.get(i + 1)))
        .collect();
    // The idle rate over every twin together: single twins vary with what the exporter does on
    // its own timers (the discovered set's expiry check every second), which also runs during
    // the listings.
    let idle_rate = windows
        .iter()
        .map(|w| cpu_ms(&samples, w.twin, w.twin_end()))
        .sum::<f64>()
        / windows.iter().map(|w| w.len().as_secs_f64()).sum::<f64>();
    let mut unchanged = Vec::new();
    let mut changed = Vec::new();
    for (i, (l, w)) in seen.iter().zip(&windows).enumerate() {
        let cpu = listing_cpu(&samples, l, w, idle_rate);
        let set = if i % 2 == 1 {
            &mut changed
        } else {
            &mut unchanged
        };
        set.push(cpu);
    }
    let changed_triggers = delta(&end_triggers, &start_triggers);
    println!(
        "listing cost: {} listings measured over {elapsed:.0}s, {changed_rows} rows rescanned; triggers since: {}",
        seen.len(),
        reasons(&changed_triggers)
    );
    for (name, set) in [("unchanged", &unchanged), ("1 % changed", &changed)] {
        for c in set {
            println!(
                "  {name:>11}: {} pages, {} task polls; net CPU {:.1} ms (requests {:.1}, merge {:.1}, polls {:.1}); window {:.2}s: gross {:.1} ms, utime+stime {} ticks; its idle twin {:.1} ms",
                c.pages,
                c.polls,
                c.total_ms(),
                c.requests_ms,
                c.merge_ms,
                c.polls_ms,
                c.window.as_secs_f64(),
                c.gross_ms,
                c.ticks,
                c.idle_ms
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    ListingFigures {
        pages_each: seen.iter().map(|l| l.pages.len() as u32).collect(),
        pages_in_order: seen
            .iter()
            .all(|l| l.pages.iter().copied().eq(1..=l.pages.len() as u32)),
        unchanged,
        changed,
        changed_triggers: changed_triggers.get("changed").copied().unwrap_or(0.0),
        ticks_per_second,
        idle_rate,
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Requests per hour

fn here() -> Location {
    Location {
        file: "benches/discovery.rs".into(),
        line: 1,
        column: 1,
    }
}

/// A config for the simulator, built in code so that compressed durations below the file's
/// minimums can be used.
fn in_process_config(sim: &Simulator, polling: PollingConfig) -> Config {
    Config {
        accounts: vec![AccountConfig {
            sas: SasConfig {
                endpoint: Some(sim.url().parse().expect("simulator endpoint")),
                timeout: Duration::from_secs(10),
                ..SasConfig::default()
            },
            credentials: Some(CredentialsConfig {
                access_key_id: Some(SIM_ACCESS_KEY_ID.into()),
                access_key_secret: Some(SIM_ACCESS_KEY_SECRET.to_owned().into()),
                ..CredentialsConfig::default()
            }),
            ..AccountConfig::new(DEFAULT_ACCOUNT, &polling)
        }],
        polling,
        ..Config::default()
    }
}

async fn start_in_process(config: &Config) -> (Exporter, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let exporter = Exporter::start(config, vec![listener], Options::default())
        .await
        .expect("exporter starts");
    let base = format!("http://{}", exporter.addrs[0]);
    (exporter, base)
}

/// Requests of one schedule over one simulated hour.
struct Hour {
    listings: usize,
    listing_requests: u64,
    task_requests: u64,
    by_reason: BTreeMap<String, f64>,
}

/// Listings begun in `[from, to)` and their requests (all their pages, also those after `to`,
/// so each counts whole), and the task requests in `[from, to)`.
fn count_requests(log: &[LogEntry], from: Instant, to: Instant) -> (usize, u64, u64) {
    let (mut starts, mut pages, mut tasks) = (0, 0, 0);
    // Whether the listing the next page belongs to began inside the window.
    let mut counted = false;
    for e in log.iter().filter(|e| e.at >= from) {
        match e.action.as_deref() {
            Some(IMAGES_ACTION) => {
                if e.page == Some(1) {
                    counted = e.at < to;
                    starts += usize::from(counted);
                }
                pages += u64::from(counted);
            }
            Some(ACTION) if e.at < to => tasks += 1,
            _ => {}
        }
    }
    (starts, pages, tasks)
}

/// Change-driven refresh at 1/`scale` of real time: `refresh: 1m`, `interval: 6h`,
/// `active_interval: 30s`, `page_size: 50`, 100 of 10 000 rows rescanned over the hour.
async fn change_driven(hour: Duration, rps: f64) -> Hour {
    let scale = 3600.0 / hour.as_secs_f64();
    let compress = |real: f64| Duration::from_secs_f64(real / scale);
    let mut rows = image_rows(ROWS);
    let sim = simulator(rows.clone()).await;
    let polling = PollingConfig {
        interval: compress(6.0 * 3600.0),
        active_interval: compress(30.0),
        concurrency: 16,
        requests_per_second: rps,
        max_retries: 3,
    };
    let config = Config {
        discovery: vec![DiscoveryConfig {
            account: DEFAULT_ACCOUNT.into(),
            kind: SourceKind::SasImages {
                listing: ListingConfig {
                    refresh: compress(60.0),
                    page_size: PAGE_SIZE as u32,
                    filters: Vec::new(),
                },
                scanned: Scanned::Any,
            },
            labels: BTreeMap::new(),
            keep_for: compress(3600.0),
            location: here(),
        }],
        ..in_process_config(&sim, polling)
    };
    let (exporter, base) = start_in_process(&config).await;
    let http = http_client();
    wait_first_round(&sim, ROWS as u64, "change-driven").await;
    // Rows change at a steady 1 % per hour from two refreshes before the hour to two after it,
    // so the hour is cut out of a steady state: it sees the polls of changes made just before
    // it, and changes made at its very end are polled after it.
    let every = hour / CHANGED as u32;
    let lead = 2 * compress(60.0);
    let t0 = Instant::now();
    let (from, to) = (t0 + lead, t0 + lead + hour);
    let (mut before, mut after) = (None, None);
    let mut k: u32 = 0;
    loop {
        let change_at = t0 + every * k;
        if before.is_none() && from <= change_at {
            tokio::time::sleep_until(from.into()).await;
            before = Some(scrape_triggers(&http, &base).await);
        } else if after.is_none() && to <= change_at {
            tokio::time::sleep_until(to.into()).await;
            after = Some(scrape_triggers(&http, &base).await);
        } else if change_at >= to + lead {
            break;
        } else {
            tokio::time::sleep_until(change_at.into()).await;
            // 97 is prime to 10 000: a different row every time.
            let r = (k as usize * 97) % ROWS;
            rescan(&sim, &mut rows[r], SCANNED_MS + 3_600_000);
            k += 1;
        }
    }
    let (listings, listing_requests, task_requests) = count_requests(&sim.log(), from, to);
    let (before, after) = (before.unwrap_or_default(), after.unwrap_or_default());
    exporter.shutdown().await;
    Hour {
        listings,
        listing_requests,
        task_requests,
        by_reason: delta(&after, &before),
    }
}

/// Per-digest polling at `interval: 10m` (`active_interval: 30s`) of `n` static targets, at
/// 1/`scale` of real time.
async fn per_digest(hour: Duration, n: usize) -> Hour {
    let scale = 3600.0 / hour.as_secs_f64();
    let compress = |real: f64| Duration::from_secs_f64(real / scale);
    let sim = simulator(Vec::new()).await;
    let interval = compress(600.0);
    // Twice the steady rate, so the bucket never sets the pace.
    let rps = 2.0 * n as f64 / interval.as_secs_f64();
    let polling = PollingConfig {
        interval,
        active_interval: compress(30.0),
        concurrency: 16,
        requests_per_second: rps,
        max_retries: 3,
    };
    let targets = (0..n)
        .map(|i| Target {
            digest: digest(i),
            account: DEFAULT_ACCOUNT.into(),
            labels: [("team".to_owned(), "payments".to_owned())].into(),
            location: here(),
        })
        .collect();
    let config = Config {
        targets,
        ..in_process_config(&sim, polling)
    };
    let (exporter, base) = start_in_process(&config).await;
    let http = http_client();
    // Polling never pauses here (the first round is spread over the interval too), so the
    // hour starts once every digest has been asked about once.
    let started = Instant::now();
    while !(0..n).all(|i| sim.requests_for(&digest(i)) > 0) {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "per-digest: the first round never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "per-digest: every one of {n} digests polled once after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let before = scrape_triggers(&http, &base).await;
    let from = Instant::now();
    tokio::time::sleep(hour).await;
    let to = Instant::now();
    let after = scrape_triggers(&http, &base).await;
    let (listings, listing_requests, task_requests) = count_requests(&sim.log(), from, to);
    exporter.shutdown().await;
    Hour {
        listings,
        listing_requests,
        task_requests,
        by_reason: delta(&after, &before),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn main() {
    let k: usize = env_or("SAS_BENCH_LISTINGS", 5).max(1);
    let rps: f64 = env_or("SAS_BENCH_RPS", 1000.0);
    let hour = Duration::from_secs_f64(env_or("SAS_BENCH_HOUR_SECONDS", 120.0));
    let poll_hour = Duration::from_secs_f64(env_or("SAS_BENCH_POLL_HOUR_SECONDS", 60.0));
    let polled: usize = env_or("SAS_BENCH_POLLED", 1000).max(1);
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let cost = runtime.block_on(listing_cost(k, rps));
    let driven = runtime.block_on(change_driven(hour, rps));
    let polling = runtime.block_on(per_digest(poll_hour, polled));

    let per_listing = ROWS.div_ceil(PAGE_SIZE) as u32;
    let pages_ok = cost.pages_in_order && cost.pages_each.iter().all(|p| *p == per_listing);
    let u = &cost.unchanged;
    let c = &cost.changed;
    let u_total = mean(u.iter().map(ListingCpu::total_ms));
    let u_req = mean(u.iter().map(|c| c.requests_ms));
    let u_merge = mean(u.iter().map(|c| c.merge_ms));
    let (u_min_merge, u_max_merge) = range(u.iter().map(|c| c.merge_ms));
    let c_total = mean(c.iter().map(ListingCpu::total_ms));
    let c_req = mean(c.iter().map(|c| c.requests_ms));
    let c_merge = mean(c.iter().map(|c| c.merge_ms));
    let (c_min_merge, c_max_merge) = range(c.iter().map(|c| c.merge_ms));
    let c_polls = mean(c.iter().map(|c| c.polls_ms));
    let c_poll_count = mean(c.iter().map(|c| c.polls as f64));
    // Gross window CPU by the CPU clock beside utime + stime, which count USER_HZ ticks (10 ms).
    let gross = |set: &[ListingCpu]| {
        format!(
            "gross {:.0} ms, utime+stime {:.0} ms",
            mean(set.iter().map(|c| c.gross_ms)),
            mean(set.iter().map(|c| c.ticks as f64 * 10.0))
        )
    };

    println!(
        "\nsummary: listing cost, {ROWS} image rows, page_size {PAGE_SIZE}, {k} unchanged and {k} 1 %-changed listings"
    );
    println!("| figure | measured | budget / peer |");
    println!("|---|---|---|");
    println!(
        "| requests per listing | {} (each of {} listings: {:?}) | ⌈{ROWS}/{PAGE_SIZE}⌉ = {per_listing}: {} |",
        cost.pages_each.first().copied().unwrap_or(0),
        cost.pages_each.len(),
        cost.pages_each,
        verdict(pages_ok)
    );
    println!(
        "| exporter CPU per unchanged listing, net of idle | {u_total:.1} ms = {:.3} ms per request (window {}) | - |",
        u_total / f64::from(per_listing),
        gross(u)
    );
    println!(
        "| of which the requests (signing, HTTP, JSON; first to last page) | {u_req:.1} ms = {:.3} ms per page | - |",
        u_req / f64::from(per_listing)
    );
    println!(
        "| of which after the last page (rows to listing, merge, change detection) | {u_merge:.1} ms ({u_min_merge:.0}–{u_max_merge:.0}) | ≤ 50 ms: {} |",
        verdict(u_max_merge <= 50.0)
    );
    println!(
        "| exporter CPU per listing with 1 % changed, net of idle | {c_total:.1} ms (window {}) | unchanged: {u_total:.1} ms |",
        gross(c)
    );
    println!("| of which the requests | {c_req:.1} ms | unchanged: {u_req:.1} ms |");
    println!(
        "| of which the merge with {CHANGED} changed rows | {c_merge:.1} ms ({c_min_merge:.0}–{c_max_merge:.0}) | ≤ 50 ms: {} |",
        verdict(c_max_merge <= 50.0)
    );
    println!(
        "| of which the {c_poll_count:.0} triggered task polls | {c_polls:.1} ms = {:.3} ms per poll | - |",
        c_polls / c_poll_count.max(1.0)
    );
    println!(
        "| `changed` triggers over the changed listings | {:.0} | {} × {CHANGED} = {} |",
        cost.changed_triggers,
        c.len(),
        c.len() * CHANGED
    );
    println!(
        "| idle exporter CPU (the twins, taken off every window) | {:.2} ms/s (utime+stime over the whole run, listings included: {:.1} ticks/s) | - |",
        cost.idle_rate, cost.ticks_per_second
    );

    // Per hour: the compressed hour's counts are the hour's; per-digest polling scales by N.
    let scale_n = ROWS as f64 / polled as f64;
    let driven_total = (driven.listing_requests + driven.task_requests) as f64;
    let polling_tasks = polling.task_requests as f64 * scale_n;
    let polling_total = polling.listing_requests as f64 * scale_n + polling_tasks;
    // The safety net: every digest once per `interval` (6 h). The measured hour starts right
    // after the first round, so none of it falls inside; amortized it is N / 6 per hour.
    let safety = ROWS as f64 / 6.0;
    let scaled: BTreeMap<String, f64> = polling
        .by_reason
        .iter()
        .map(|(k, v)| (k.clone(), v * scale_n))
        .collect();
    // One listing per compressed minute; fewer means listings outlasted the compressed refresh.
    let ideal_listings = (3600.0 / 60.0) as usize;
    println!(
        "\nAPI requests per hour, {ROWS} images, 1 % changing per hour (change-driven: 1 h in {:.0}s; per-digest: 1 h in {:.0}s with {polled} digests, ×{scale_n:.0})",
        hour.as_secs_f64(),
        poll_hour.as_secs_f64()
    );
    println!(
        "| schedule | listing requests/h | task requests/h (by reason) | total/h | average req/s |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| per-digest polling, interval 10m, static targets | {:.0} | {polling_tasks:.0} ({}) | {polling_total:.0} | {:.1} |",
        polling.listing_requests as f64 * scale_n,
        reasons(&scaled),
        polling_total / 3600.0
    );
    println!(
        "| change-driven, refresh 1m, interval 6h, page_size {PAGE_SIZE} ({} listings of {ideal_listings}) | {} | {} ({}) | {driven_total:.0} | {:.2} |",
        driven.listings,
        driven.listing_requests,
        driven.task_requests,
        reasons(&driven.by_reason),
        driven_total / 3600.0
    );
    println!(
        "| change-driven with the 6h safety net amortized (+{safety:.0}/h, computed) | {} | {:.0} | {:.0} | {:.2} |",
        driven.listing_requests,
        driven.task_requests as f64 + safety,
        driven_total + safety,
        (driven_total + safety) / 3600.0
    );
    println!(
        "saving factor (per-digest / change-driven): {:.1}× measured, {:.1}× with the safety net amortized",
        polling_total / driven_total.max(1.0),
        polling_total / (driven_total + safety)
    );
    if driven.listings * 100 < ideal_listings * 95 {
        println!(
            "WARNING: only {} of {ideal_listings} listings in the compressed hour: listings outlasted the compressed refresh; raise SAS_BENCH_HOUR_SECONDS",
            driven.listings
        );
    }
    println!("whole run: {:.0}s", started.elapsed().as_secs_f64());
}
