//! The fault matrix: every fault the network or the API can produce, each against its own exporter
//! and simulator, with exact assertions:
//!
//! - the exporter keeps answering scrapes (every scrape below must be a 200);
//! - the digest's last good values stay exactly as they were (every scan series but `up`), through
//!   the first failed poll and the next one;
//! - `sas_image_scan_up` is 0 and `sas_exporter_api_request_errors_total{code}` counts the fault
//!   under the right code, once per failed request;
//! - a retryable fault is retried exactly `max_retries` times, a fatal one not at all;
//! - after `clear_faults()` polling recovers within one backoff cycle;
//! - memory stays bounded under 50 MiB and endless bodies (the exporter runs in the test's
//!   process, with no other test in it).
//!
//! Intervals are 1 s, `max_retries` 1 and `sas.timeout` 500 ms so that the cases are quick; the
//! cases of one test run concurrently.

use crate::common;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::FixedOffset;
use common::*;
use sas_image_scan_exporter::MAX_BODY_BYTES;
use sas_image_scan_exporter::app::Exporter;
use sas_image_scan_exporter::parse_response;
use sas_simulator::{Fault, FaultAction, FaultScope, Scenario, Simulator};
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// `sas.timeout` of the fault cases.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait for polling to recover after the fault clears: one interval (1.1 s with jitter),
/// the longest retry wait of the matrix (1.5 s `x-acs-retry-after`), two timed-out attempts
/// (1 s), with room for a loaded 2-core machine.
const RECOVERY: Duration = Duration::from_secs(6);
/// How far this process's anonymous resident memory (heap, stacks) may grow while huge and endless
/// bodies arrive. File-backed pages are left out: they are mostly the test binary's code paged in
/// as the requests run it, which grows with the binary (every dependency added to the crate) and
/// says nothing about the bodies being buffered. The heap grows by about 5 MiB here; a single
/// 50 MiB body held in memory would be ten times the bound.
const MAX_RSS_GROWTH_KIB: u64 = 12 * 1024;
/// The metric every failed request is counted in.
const ERRORS: &str = "sas_exporter_api_request_errors_total";
/// Twice the body cap: what the huge-body cases must never approach in memory.
const FIFTY_MIB: usize = 50 << 20;

/// A full, realistic task in the API's shape.
fn task(id: i64, start_ms: i64, status: &str) -> Value {
    json!({
        "Status": status,
        "Modified": "2024-05-01 16:00:00",
        "Create": "2024-05-01 15:59:00",
        "StartTime": start_ms,
        "FinishTime": start_ms + 61_500,
        "Finish": 1,
        "Source": "openapi",
        "TaskType": "IMAGE_SCAN",
        "Name": "IMAGE_SCAN",
        "TaskId": format!("task{id}"),
        "Target": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "Id": id,
        "TargetType": "IMAGE",
    })
}

/// A success body holding `tasks`, exactly as the simulator writes it (its `RequestId` is an
/// upper-case UUID: 36 characters).
fn body_of(tasks: &[Value]) -> String {
    json!({"RequestId": "0B48AB3C-84FC-424D-A01D-B9270EF40000", "Task": tasks}).to_string()
}

fn zone8() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("offset")
}

/// The unique series of a metric in a one-digest exposition.
fn series(s: &BTreeMap<String, f64>, name: &str) -> (String, f64) {
    let prefix = format!("{name}{{");
    let mut found = s.iter().filter(|(k, _)| k.starts_with(&prefix));
    let (k, v) = found
        .next()
        .unwrap_or_else(|| panic!("no {name} in {s:#?}"));
    assert!(found.next().is_none(), "more than one {name}");
    (k.clone(), *v)
}

/// Failed requests counted under `code` (0 before the first).
fn errors(s: &BTreeMap<String, f64>, code: &str) -> f64 {
    let label = format!("code=\"{code}\"");
    s.iter()
        .filter(|(k, _)| k.starts_with(&format!("{ERRORS}{{")) && k.contains(&label))
        .map(|(_, v)| v)
        .sum()
}

fn scan_only(s: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    s.iter()
        .filter(|(k, _)| k.starts_with("sas_image_scan_"))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn without_last_success(s: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    s.iter()
        .filter(|(k, _)| !k.starts_with("sas_image_scan_last_success_timestamp_seconds{"))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// This process's resident memory, in KiB: the whole set (`VmRSS`) and its anonymous part
/// (`RssAnon`: heap, stacks; without the binary's and libraries' file-backed pages).
#[derive(Clone, Copy)]
struct Rss {
    total: u64,
    anon: u64,
}

fn rss_kib() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
    }
}

/// One simulator and one exporter watching one digest whose latest task is a finished scan.
struct Rig {
    sim: Simulator,
    exporter: Exporter,
    digest: String,
}

impl Rig {
    async fn start(timeout: Duration) -> Rig {
        let digest = digest(7);
        let sim = Simulator::start(
            Scenario::default().with_tasks(&digest, vec![task(3, 1_714_550_000_000, "SUCCESS")]),
        )
        .await
        .expect("simulator");
        let mut polling = polling(1, 1, 50.0, 4);
        polling.max_retries = 1;
        let mut config = config(&sim, vec![target(&digest, "faults")], polling);
        config.accounts[0].sas.timeout = timeout;
        let exporter = start(&config).await;
        wait_ready(&exporter).await;
        Rig {
            sim,
            exporter,
            digest,
        }
    }

    /// Every sample of one scrape, which must succeed.
    async fn scrape(&self) -> BTreeMap<String, f64> {
        let r = get(&self.exporter, "/metrics", &[]).await;
        assert_eq!(r.status, 200, "a scrape failed: {}", r.body);
        samples(&r.body)
    }

    /// Scrapes until `sas_image_scan_up` is `up`.
    async fn wait_up(&self, up: f64, within: Duration, what: &str) -> BTreeMap<String, f64> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.scrape().await;
            if s.keys().any(|k| k.starts_with("sas_image_scan_up{"))
                && series(&s, "sas_image_scan_up").1 == up
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: up never became {up} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The scan series right after a successful poll has landed, so that the next poll is a
    /// whole interval away and a fault injected now hits the next poll's first request.
    async fn fresh_good(&self, what: &str) -> BTreeMap<String, f64> {
        let first = self.wait_up(1.0, Duration::from_secs(5), what).await;
        let last = series(&first, "sas_image_scan_last_success_timestamp_seconds").1;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let s = self.scrape().await;
            if series(&s, "sas_image_scan_last_success_timestamp_seconds").1 != last {
                assert_eq!(series(&s, "sas_image_scan_up").1, 1.0, "{what}");
                return s;
            }
            assert!(Instant::now() < deadline, "{what}: no fresh poll");
        }
    }

    fn last_error(&self) -> String {
        let snapshot = self.exporter.store.load();
        snapshot.targets[0].last_error.clone().unwrap_or_default()
    }

    fn requests(&self) -> u64 {
        self.sim.requests_for(&self.digest)
    }

    async fn stop(self) {
        self.exporter.shutdown().await;
    }
}

/// One row of the matrix.
#[derive(Clone)]
struct Case {
    name: String,
    fault: Fault,
    /// The `code` label the failure must be counted under.
    code: &'static str,
    /// Requests in one failed poll: 2 for a retryable fault (`max_retries` 1), 1 for a fatal one.
    attempts: u64,
    /// Text the digest's last error must hold.
    error: String,
    /// The least wait between the first request and its retry (`x-acs-retry-after`).
    retry_wait: Option<Duration>,
}

impl Case {
    fn new(name: impl Into<String>, fault: Fault, code: &'static str, attempts: u64) -> Case {
        Case {
            name: name.into(),
            fault,
            code,
            attempts,
            error: String::new(),
            retry_wait: None,
        }
    }

    fn error(mut self, text: impl Into<String>) -> Case {
        self.error = text.into();
        self
    }
}

/// What a case measured, for the summary.
struct Report {
    name: String,
    code: &'static str,
    attempts: u64,
    down_after: Duration,
    recovered_after: Duration,
}

async fn run_case(case: Case) -> Report {
    let name = case.name.as_str();
    let rig = Rig::start(TIMEOUT).await;
    let good = rig.fresh_good(name).await;
    let good_scan = scan_only(&good);
    let errors_before = errors(&good, case.code);
    let requests_before = rig.requests();

    let injected = Instant::now();
    rig.sim
        .inject(FaultScope::Digest(rig.digest.clone()), case.fault.clone());
    let failed = rig
        .wait_up(0.0, Duration::from_secs(10), &format!("{name}: fault"))
        .await;
    let down_after = injected.elapsed();
    // The next poll is an interval away, so these are exactly the first failed poll's requests.
    assert_eq!(
        rig.requests() - requests_before,
        case.attempts,
        "{name}: requests in the failed poll"
    );
    let (up, _) = series(&failed, "sas_image_scan_up");
    let mut expected = good_scan.clone();
    expected.insert(up.clone(), 0.0);
    assert_eq!(scan_only(&failed), expected, "{name}: last good values");
    assert!(
        errors(&failed, case.code) >= errors_before + case.attempts as f64,
        "{name}: {ERRORS}{{code=\"{}\"}} went from {errors_before} to {}",
        case.code,
        errors(&failed, case.code)
    );
    let last_error = rig.last_error();
    assert!(
        last_error.contains(&case.error),
        "{name}: last error {last_error:?} should contain {:?}",
        case.error
    );
    if let Some(wait) = case.retry_wait {
        let at: Vec<Instant> = rig
            .sim
            .log()
            .iter()
            .filter(|e| e.digest.as_deref() == Some(rig.digest.as_str()) && e.at >= injected)
            .map(|e| e.at)
            .collect();
        assert!(at.len() >= 2, "{name}: no retry");
        let gap = at[1].duration_since(at[0]);
        assert!(
            gap + Duration::from_millis(5) >= wait,
            "{name}: retried after {gap:?}, before x-acs-retry-after {wait:?}"
        );
    }

    // The next poll fails too; values stay exactly as they were all along.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.requests() - requests_before < 2 * case.attempts {
        assert_eq!(scan_only(&rig.scrape().await), expected, "{name}: 2nd poll");
        assert!(Instant::now() < deadline, "{name}: no second poll");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let settle = Instant::now() + TIMEOUT + Duration::from_millis(200);
    let mut still = rig.scrape().await;
    while Instant::now() < settle {
        assert_eq!(scan_only(&still), expected, "{name}: 2nd poll");
        tokio::time::sleep(Duration::from_millis(25)).await;
        still = rig.scrape().await;
    }
    assert_eq!(scan_only(&still), expected, "{name}: 2nd poll");
    let counted = errors(&still, case.code) - errors_before;
    let sent = (rig.requests() - requests_before) as f64;
    assert!(
        counted >= (2 * case.attempts) as f64 && counted <= sent,
        "{name}: {counted} errors counted for {sent} faulty requests (all codes: {:?})",
        still
            .iter()
            .filter(|(k, _)| k.starts_with(ERRORS))
            .collect::<Vec<_>>()
    );

    rig.sim.clear_faults();
    let cleared = Instant::now();
    let recovered = rig
        .wait_up(1.0, RECOVERY, &format!("{name}: recovery"))
        .await;
    let recovered_after = cleared.elapsed();
    let recovered_scan = scan_only(&recovered);
    assert_eq!(
        without_last_success(&recovered_scan),
        without_last_success(&good_scan),
        "{name}: recovered values"
    );
    let ls = "sas_image_scan_last_success_timestamp_seconds";
    assert!(
        series(&recovered_scan, ls).1 > series(&good_scan, ls).1,
        "{name}: last success did not move"
    );
    rig.stop().await;
    Report {
        name: case.name,
        code: case.code,
        attempts: case.attempts,
        down_after,
        recovered_after,
    }
}

/// Runs futures concurrently; a panic names its case.
async fn run_all<F>(cases: Vec<(String, F)>) -> Vec<Report>
where
    F: Future<Output = Report> + Send + 'static,
{
    let mut set = JoinSet::new();
    for (name, f) in cases {
        set.spawn(async move { (name, tokio::spawn(f).await) });
    }
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (name, result) = joined.expect("runner");
        match result {
            Ok(r) => reports.push(r),
            Err(e) => {
                let msg = e
                    .try_into_panic()
                    .ok()
                    .and_then(|p| {
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    })
                    .unwrap_or_else(|| "cancelled".to_owned());
                failures.push(format!("{name}: {msg}"));
            }
        }
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    for r in &reports {
        eprintln!(
            "{:<44} code={:<18} attempts={} down after {:>6.2}s, recovered after {:>5.2}s",
            r.name,
            r.code,
            r.attempts,
            r.down_after.as_secs_f64(),
            r.recovered_after.as_secs_f64()
        );
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    reports
}

fn cases_of(cases: Vec<Case>) -> Vec<(String, impl Future<Output = Report> + Send + 'static)> {
    cases
        .into_iter()
        .map(|c| (c.name.clone(), run_case(c)))
        .collect()
}

fn raw(status: u16, body: impl Into<String>) -> Fault {
    Fault::action(FaultAction::Raw {
        status,
        body: body.into(),
    })
}

/// A success body whose only task has `field` replaced by `value`.
fn throttling_and_server_errors() -> Vec<Case> {
    let mut cases = vec![
        Case::new(
            "throttling Throttling",
            Fault::error(400, "Throttling"),
            "Throttling",
            2,
        )
        .error("Throttling (HTTP 400)"),
        Case::new(
            "throttling Throttling.User",
            Fault::error(400, "Throttling.User"),
            "Throttling.User",
            2,
        )
        .error("Throttling.User (HTTP 400)"),
        Case {
            retry_wait: Some(Duration::from_millis(1500)),
            ..Case::new(
                "throttling Throttling.Api + retry-after",
                Fault::error(503, "Throttling.Api").retry_after_ms(1500),
                "Throttling.Api",
                2,
            )
            .error("Throttling.Api (HTTP 503)")
        },
    ];
    for (status, code) in [
        (500, "InternalError"),
        (502, "BadGateway"),
        (503, "ServiceUnavailable"),
        (504, "GatewayTimeout"),
    ] {
        cases.push(
            Case::new(
                format!("HTTP {status} with error body"),
                Fault::error(status, code),
                code,
                2,
            )
            .error(format!("{code} (HTTP {status})")),
        );
    }
    for (status, body) in [
        (500, ""),
        (502, "<html><body>502 Bad Gateway</body></html>"),
        (503, ""),
        (504, "<html><body>504 Gateway Time-out</body></html>"),
    ] {
        cases.push(
            Case::new(
                format!("HTTP {status} without error body"),
                raw(status, body),
                "http_5xx",
                2,
            )
            .error(format!("HTTP {status} without an error body")),
        );
    }
    cases
}

fn transport_and_bad_bodies() -> Vec<Case> {
    vec![
        Case::new(
            "delay 2s > sas.timeout",
            Fault::delay(Duration::from_secs(2)),
            "timeout",
            2,
        )
        .error("no response within 500ms"),
        Case::new(
            "reset mid-body",
            Fault::action(FaultAction::ResetMidBody),
            "connect",
            2,
        )
        .error("connection failed"),
        Case::new(
            "connection dropped",
            Fault::action(FaultAction::Drop),
            "connect",
            2,
        )
        .error("connection failed"),
        Case::new(
            "malformed JSON",
            Fault::action(FaultAction::MalformedJson),
            "invalid_response",
            1,
        )
        .error("response is not valid JSON"),
        Case::new("empty 200", raw(200, ""), "invalid_response", 1)
            .error("response is not valid JSON"),
    ]
}

/// The wrong shapes around the tasks. (A task field of the wrong type is not a fault: it is left
/// out and the rest of the task used; tests/hostile_inputs.rs covers every field.)
fn wrong_types() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let shapes = [
        (
            "Task is a number",
            r#"{"RequestId":"r","Task":5}"#.to_owned(),
            "Task: expected an array of tasks, got a number",
        ),
        (
            "Task is a string",
            r#"{"RequestId":"r","Task":"SUCCESS"}"#.to_owned(),
            "Task: expected an array of tasks, got a string",
        ),
        (
            "Task holds a string",
            r#"{"RequestId":"r","Task":["SUCCESS"]}"#.to_owned(),
            "Task[0]: expected an object, got a string",
        ),
        (
            "top level is an array",
            "[{\"Status\":\"SUCCESS\"}]".to_owned(),
            "expected a JSON object at the top level, got an array",
        ),
        (
            "top level is null",
            "null".to_owned(),
            "expected a JSON object at the top level, got null",
        ),
    ];
    for (name, body, error) in shapes {
        cases.push(
            Case::new(
                format!("wrong type: {name}"),
                raw(200, body),
                "invalid_response",
                1,
            )
            .error(error),
        );
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix() {
    let mut cases = throttling_and_server_errors();
    cases.extend(transport_and_bad_bodies());
    cases.extend(wrong_types());
    let n = cases.len();
    let reports = run_all(cases_of(cases)).await;
    assert_eq!(reports.len(), n);
}

/// `n` full tasks in shuffled order whose latest is known by construction: the greatest
/// `StartTime`, shared with a task of lower `Id` placed after it; a task with a greater `Id`
/// but an older start comes first.
fn many_tasks(n: usize, full: bool) -> (Vec<Value>, i64) {
    const BASE: i64 = 1_714_000_000_000;
    let make = |id: i64, start: i64, status: &str| {
        if full {
            task(id, start, status)
        } else {
            json!({"Status": status, "StartTime": start, "Id": id})
        }
    };
    let statuses = ["FAIL", "SUCCESS", "PROCESSING", "TIMOUT"];
    let mut tasks: Vec<Value> = (0..n)
        .map(|i| {
            // 7919 is prime and does not divide n, so this is a permutation of 0..n.
            let start = BASE + ((i * 7919) % n) as i64 * 1000;
            make(1_000_000 + i as i64, start, statuses[i % 4])
        })
        .collect();
    let newest = BASE + n as i64 * 1000;
    let winner = 5_000_000;
    tasks[0] = make(9_999_999, BASE - 1, "SUCCESS");
    tasks[n / 2 + 17] = make(winner, newest, "SUCCESS");
    tasks[n - 3] = make(winner - 1, newest, "FAIL");
    (tasks, winner)
}

/// A valid answer with many tasks: no error, `up` stays 1, the latest task exactly, parsed in
/// bounded time.
async fn valid_list(name: String, n: usize, full: bool) -> Report {
    let (tasks, winner) = many_tasks(n, full);
    let body = body_of(&tasks);
    assert!(body.len() <= MAX_BODY_BYTES, "{name}: {} bytes", body.len());
    let parse_started = Instant::now();
    let parsed = parse_response(body.as_bytes(), zone8()).expect("valid");
    let parse_time = parse_started.elapsed();
    assert!(
        parse_time < Duration::from_secs(2),
        "{name}: parsing took {parse_time:?}"
    );
    assert_eq!(parsed.tasks_in_response, n);
    let latest = parsed.task.expect("a latest task");
    assert_eq!(latest.id, Some(winner), "{name}");

    // Not a timeout test: room for serving and reading ~1 MiB on a loaded machine.
    let rig = Rig::start(Duration::from_secs(5)).await;
    let good = rig.fresh_good(&name).await;
    let changed = Instant::now();
    rig.sim.set_tasks(&rig.digest, tasks);
    let id_label = format!("id=\"{winner}\"");
    let deadline = Instant::now() + Duration::from_secs(8);
    let now = loop {
        let s = rig.scrape().await;
        assert_eq!(series(&s, "sas_image_scan_up").1, 1.0, "{name}: up");
        if series(&s, "sas_image_scan_info").0.contains(&id_label) {
            break s;
        }
        assert!(Instant::now() < deadline, "{name}: new data never showed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let shown_after = changed.elapsed();
    let newest = 1_714_000_000.0 + n as f64;
    assert_eq!(
        series(&now, "sas_image_scan_start_timestamp_seconds").1,
        newest
    );
    let (_, success) = now
        .iter()
        .find(|(k, _)| k.starts_with("sas_image_scan_status{") && k.contains("\"SUCCESS\""))
        .expect("status series");
    assert_eq!(*success, 1.0, "{name}: status of the latest task");
    if full {
        assert!(
            series(&now, "sas_image_scan_info")
                .0
                .contains(&format!("task_id=\"task{winner}\"")),
            "{name}"
        );
        assert_eq!(
            series(&now, "sas_image_scan_finish_timestamp_seconds").1,
            newest + 61.5
        );
    }
    let error_series = |s: &BTreeMap<String, f64>| {
        s.iter()
            .filter(|(k, _)| k.starts_with(&format!("{ERRORS}{{")))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    assert_eq!(error_series(&good), 0.0);
    assert_eq!(
        error_series(&now),
        0.0,
        "{name}: a valid answer is no error"
    );
    assert_eq!(rig.last_error(), "");
    eprintln!(
        "{name}: {} bytes, parsed in {:.1} ms, shown {:.2}s after the change",
        body.len(),
        parse_time.as_secs_f64() * 1000.0,
        shown_after.as_secs_f64()
    );
    rig.stop().await;
    Report {
        name,
        code: "-",
        attempts: 1,
        down_after: Duration::ZERO,
        recovered_after: Duration::ZERO,
    }
}

/// A task list too large for the body cap is the body-too-large error, not a partial read.
fn too_large_list(name: &str, n: usize, full: bool) -> Case {
    let (tasks, _) = many_tasks(n, full);
    let body = body_of(&tasks);
    assert!(body.len() > MAX_BODY_BYTES);
    Case::new(
        format!("{name} ({} bytes)", body.len()),
        raw(200, body),
        "invalid_response",
        1,
    )
    .error(format!("response body exceeds {MAX_BODY_BYTES} bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_task_lists() {
    type Run = std::pin::Pin<Box<dyn Future<Output = Report> + Send>>;
    let mut runs: Vec<(String, Run)> = Vec::new();
    // 10 000 tasks: which side of the cap they fall on depends on their size, so decide by the
    // actual body: under the cap they must parse, over it they must be the body-too-large error.
    for (name, full) in [("10 000 full tasks", true), ("10 000 minimal tasks", false)] {
        let (tasks, _) = many_tasks(10_000, full);
        let size = body_of(&tasks).len();
        eprintln!(
            "{name}: {size} bytes, {} the {MAX_BODY_BYTES}-byte cap",
            if size > MAX_BODY_BYTES {
                "over"
            } else {
                "within"
            }
        );
        if size > MAX_BODY_BYTES {
            let case = too_large_list(name, 10_000, full);
            runs.push((case.name.clone(), Box::pin(run_case(case))));
        } else {
            runs.push((
                name.to_owned(),
                Box::pin(valid_list(name.into(), 10_000, full)),
            ));
        }
    }
    let (tasks, _) = many_tasks(2_000, true);
    assert!(
        body_of(&tasks).len() <= MAX_BODY_BYTES,
        "2 000 full tasks must fit under the cap"
    );
    runs.push((
        "2 000 full tasks".into(),
        Box::pin(valid_list("2 000 full tasks".into(), 2_000, true)),
    ));
    run_all(runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_endless_bodies_keep_memory_bounded() {
    // The RSS readings are of the whole process, so no other test may run in it. The bound is on
    // anonymous memory: the code pages the requests fault in are not what the caps protect.
    let name = "huge_and_endless_bodies_keep_memory_bounded";
    if !tokio::task::block_in_place(|| alone_in_process(module_path!(), name)) {
        return;
    }
    let cases = vec![
        Case::new(
            "50 MiB body with Content-Length",
            Fault::action(FaultAction::Oversized {
                bytes: FIFTY_MIB,
                chunked: false,
            }),
            "invalid_response",
            1,
        )
        .error("response body exceeds 1048576 bytes"),
        Case::new(
            "50 MiB body chunked",
            Fault::action(FaultAction::Oversized {
                bytes: FIFTY_MIB,
                chunked: true,
            }),
            "invalid_response",
            1,
        )
        .error("response body exceeds 1048576 bytes"),
        Case::new(
            "endless body, slow (timeout stops it)",
            Fault::action(FaultAction::endless()),
            "timeout",
            2,
        )
        .error("no response within 500ms"),
        Case::new(
            "endless body, fast (cap stops it)",
            Fault::action(FaultAction::Endless {
                chunk: 64 * 1024,
                every: Duration::from_millis(1),
            }),
            "invalid_response",
            1,
        )
        .error("response body exceeds 1048576 bytes"),
    ];
    let before = rss_kib();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak = Rss { total: 0, anon: 0 };
        loop {
            let now = rss_kib();
            peak.total = peak.total.max(now.total);
            peak.anon = peak.anon.max(now.anon);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = &mut stop_rx => return peak,
            }
        }
    });
    run_all(cases_of(cases)).await;
    let _ = stop_tx.send(());
    let peak = sampler.await.expect("sampler");
    let after = rss_kib();
    eprintln!(
        "VmRSS before {} KiB, peak {} KiB, after {} KiB",
        before.total, peak.total, after.total
    );
    eprintln!(
        "RssAnon before {} KiB, peak {} KiB, after {} KiB",
        before.anon, peak.anon, after.anon
    );
    assert!(
        peak.anon.saturating_sub(before.anon) <= MAX_RSS_GROWTH_KIB,
        "anonymous RSS grew from {} KiB to a peak of {} KiB",
        before.anon,
        peak.anon
    );
    assert!(
        after.anon.saturating_sub(before.anon) <= MAX_RSS_GROWTH_KIB,
        "anonymous RSS grew from {} KiB to {} KiB",
        before.anon,
        after.anon
    );
}
