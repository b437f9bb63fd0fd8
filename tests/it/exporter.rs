//! The whole exporter against the simulator over loopback HTTP: real polling, real scrapes, exact
//! values.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use sas_image_scan_exporter::config::Target;
use sas_simulator::{Fault, FaultAction, FaultScope, Scenario, Simulator};
use serde_json::{Value, json};

fn task(status: &str, start: Option<i64>, finish: Option<i64>, id: i64) -> Value {
    let mut t = json!({
        "Status": status, "Modified": "2024-05-01 16:00:00", "Create": "2024-05-01 15:59:00",
        "Finish": 1, "Source": "openapi", "TaskType": "IMAGE_SCAN", "Name": "IMAGE_SCAN",
        "TaskId": format!("task{id}"), "Id": id, "TargetType": "IMAGE",
    });
    if let Some(s) = start {
        t["StartTime"] = json!(s);
    }
    if let Some(f) = finish {
        t["FinishTime"] = json!(f);
    }
    t
}

fn labels(d: &str, team: &str) -> String {
    format!(
        "account=\"default\",digest=\"{d}\",image=\"registry.example.com/app:{team}\",team=\"{team}\""
    )
}

/// The nine scan states, written out here rather than taken from the library under test.
const STATES: [&str; 9] = [
    "NONE",
    "START",
    "MESSAGE_SEND",
    "PRE_ANALYZER",
    "PROCESSING",
    "SUCCESS",
    "FAIL",
    "TIMEOUT",
    "UNKNOWN",
];

fn expect_states(want: &mut BTreeMap<String, f64>, l: &str, current: &str) {
    for s in STATES {
        want.insert(
            format!("sas_image_scan_status{{{l},status=\"{s}\"}}"),
            f64::from(u8::from(s == current)),
        );
    }
}

/// The series of a task made by `task()` that started at START_MS; `finish` = seconds after start
/// for ended tasks.
fn expect_task(want: &mut BTreeMap<String, f64>, l: &str, raw: &str, id: i64, finish: Option<f64>) {
    let mapped = if raw == "TIMOUT" { "TIMEOUT" } else { raw };
    expect_states(want, l, mapped);
    want.insert(
        format!(
            "sas_image_scan_info{{{l},task_id=\"task{id}\",task_name=\"IMAGE_SCAN\",task_type=\"IMAGE_SCAN\",source=\"openapi\",target_type=\"IMAGE\",raw_status=\"{raw}\",id=\"{id}\"}}"
        ),
        1.0,
    );
    let start = START_MS as f64 / 1000.0;
    for (name, v) in [
        ("images_finished", 1.0),
        ("start_timestamp_seconds", start),
        ("modified_timestamp_seconds", 1_714_550_400.0),
        ("up", 1.0),
    ] {
        want.insert(format!("sas_image_scan_{name}{{{l}}}"), v);
    }
    if let Some(f) = finish {
        want.insert(format!("sas_image_scan_duration_seconds{{{l}}}"), f);
        want.insert(
            format!("sas_image_scan_finish_timestamp_seconds{{{l}}}"),
            start + f,
        );
    }
}

const START_MS: i64 = 1_714_550_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_shows_exactly_the_specified_series() {
    let statuses = [
        "SUCCESS",
        "FAIL",
        "TIMOUT",
        "START",
        "MESSAGE_SEND",
        "PRE_ANALYZER",
        "PROCESSING",
    ];
    let mut scenario = Scenario::default();
    let mut targets = Vec::new();
    let start_ms = START_MS;
    for (i, s) in statuses.iter().enumerate() {
        let d = digest(i as u32 + 1);
        let terminal = matches!(*s, "SUCCESS" | "FAIL" | "TIMOUT");
        let finish = terminal.then_some(start_ms + 61_500);
        scenario = scenario.with_tasks(&d, vec![task(s, Some(start_ms), finish, 100 + i as i64)]);
        targets.push(target(&d, "t"));
    }
    let none = digest(20);
    let unknown = digest(21);
    let several = digest(22);
    let fatal = digest(23);
    let flaky = digest(24);
    scenario = scenario
        .with_tasks(&none, vec![])
        .with_tasks(
            &unknown,
            vec![json!({"Status": "PAUSED \"x\"\\y", "Id": 5})],
        )
        .with_tasks(
            &several,
            vec![
                task("FAIL", Some(start_ms - 5000), Some(start_ms - 1000), 1),
                task("SUCCESS", Some(start_ms), Some(start_ms + 2000), 2),
                task("PROCESSING", Some(start_ms - 9000), None, 3),
            ],
        )
        .with_tasks(
            &fatal,
            vec![task("SUCCESS", Some(start_ms), Some(start_ms), 9)],
        )
        .with_tasks(
            &flaky,
            vec![task("SUCCESS", Some(start_ms), Some(start_ms + 1000), 10)],
        );
    for d in [&none, &unknown, &several, &fatal, &flaky] {
        targets.push(target(d, "u"));
    }
    let sim = Simulator::start(scenario).await.expect("sim");
    sim.inject(
        FaultScope::Digest(fatal.clone()),
        Fault::error(403, "NoPermission"),
    );
    sim.inject(
        FaultScope::Digest(flaky.clone()),
        Fault::error(503, "ServiceUnavailable").times(1),
    );
    let before = sas_image_scan_exporter::unix_now();
    let exporter = start(&config(&sim, targets, polling(600, 600, 50.0, 4))).await;
    wait_ready(&exporter).await;
    let after = sas_image_scan_exporter::unix_now();

    let text = get(&exporter, "/metrics", &[]).await;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let got = scan_samples(&text.body);

    let mut want = BTreeMap::new();
    let mut last_success = Vec::new();
    for (i, s) in statuses.iter().enumerate() {
        let finish = matches!(*s, "SUCCESS" | "FAIL" | "TIMOUT").then_some(61.5);
        let l = labels(&digest(i as u32 + 1), "t");
        expect_task(&mut want, &l, s, 100 + i as i64, finish);
        last_success.push(format!(
            "sas_image_scan_last_success_timestamp_seconds{{{l}}}"
        ));
    }
    let l = labels(&none, "u");
    expect_states(&mut want, &l, "NONE");
    want.insert(format!("sas_image_scan_up{{{l}}}"), 1.0);
    last_success.push(format!(
        "sas_image_scan_last_success_timestamp_seconds{{{l}}}"
    ));

    let l = labels(&unknown, "u");
    expect_states(&mut want, &l, "UNKNOWN");
    want.insert(
        format!(
            "sas_image_scan_info{{{l},task_id=\"\",task_name=\"\",task_type=\"\",source=\"\",target_type=\"\",raw_status=\"PAUSED \\\"x\\\"\\\\y\",id=\"5\"}}"
        ),
        1.0,
    );
    want.insert(format!("sas_image_scan_up{{{l}}}"), 1.0);
    last_success.push(format!(
        "sas_image_scan_last_success_timestamp_seconds{{{l}}}"
    ));

    // The latest of several tasks, and the digest that recovered after one retryable error.
    for (d, id, finish) in [(&several, 2, 2.0), (&flaky, 10, 1.0)] {
        let l = labels(d, "u");
        expect_task(&mut want, &l, "SUCCESS", id, Some(finish));
        last_success.push(format!(
            "sas_image_scan_last_success_timestamp_seconds{{{l}}}"
        ));
    }

    // The non-retryable failure: polled, down, nothing else known.
    want.insert(format!("sas_image_scan_up{{{}}}", labels(&fatal, "u")), 0.0);

    // Last-success timestamps are "now": check the range, then compare the rest exactly.
    let mut got = got;
    for key in &last_success {
        let ts = got.remove(key).unwrap_or_else(|| panic!("missing {key}"));
        assert!(ts >= before.floor() && ts <= after + 1.0, "{key} = {ts}");
    }
    assert_eq!(got, want);

    // Exporter series.
    let all = samples(&text.body);
    assert_eq!(all["sas_exporter_targets"], 12.0);
    assert_eq!(all["sas_exporter_targets_overdue"], 0.0);
    assert_eq!(
        all["sas_exporter_api_requests_total{account=\"default\",action=\"DescribeImageLatestScanTask\"}"],
        13.0
    );
    assert_eq!(
        all["sas_exporter_api_request_errors_total{account=\"default\",action=\"DescribeImageLatestScanTask\",code=\"NoPermission\"}"],
        1.0
    );
    assert_eq!(
        all["sas_exporter_api_request_errors_total{account=\"default\",action=\"DescribeImageLatestScanTask\",code=\"ServiceUnavailable\"}"],
        1.0
    );
    assert_eq!(all["sas_exporter_config_last_reload_successful"], 1.0);
    assert!(text.body.contains("# TYPE sas_image_scan_status gauge\n"));
    assert!(text.body.contains("refreshed in the background"));
    assert!(
        all.keys()
            .any(|k| k.starts_with("process_resident_memory_bytes"))
    );
    assert_eq!(sim.requests_for(&flaky), 2);
    assert_eq!(sim.requests_for(&fatal), 1);

    // OpenMetrics and gzip carry the same per-digest samples.
    let om = get(
        &exporter,
        "/metrics",
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
    )
    .await;
    assert_eq!(
        om.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert_eq!(om.body.matches("# EOF").count(), 1);
    assert_eq!(scan_samples(&om.body), scan_samples(&text.body));
    for (accept, body) in [
        ("text/plain", &text.body),
        ("application/openmetrics-text", &om.body),
    ] {
        let gz = get(
            &exporter,
            "/metrics",
            &[("accept", accept), ("accept-encoding", "gzip")],
        )
        .await;
        assert_eq!(gz.headers["content-encoding"], "gzip");
        assert_eq!(scan_samples(&gz.body), scan_samples(body));
        assert_eq!(gz.body.ends_with("# EOF\n"), accept != "text/plain");
    }
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_scans_are_refreshed_at_active_interval_and_ended_ones_are_not() {
    let active = digest(1);
    let done = digest(2);
    let scenario = Scenario::default()
        .with_tasks(&active, vec![task("PROCESSING", Some(1), None, 1)])
        .with_tasks(&done, vec![task("SUCCESS", Some(1), Some(2), 2)]);
    let sim = Simulator::start(scenario).await.expect("sim");
    let exporter = start(&config(
        &sim,
        vec![target(&active, "a"), target(&done, "a")],
        polling(600, 1, 20.0, 2),
    ))
    .await;
    wait_for("three polls of the running scan", || {
        sim.requests_for(&active) >= 3
    })
    .await;
    assert_eq!(sim.requests_for(&done), 1);

    sim.set_tasks(&active, vec![task("SUCCESS", Some(1), Some(3000), 1)]);
    let key = format!(
        "sas_image_scan_status{{{},status=\"SUCCESS\"}}",
        labels(&active, "a")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = get(&exporter, "/metrics", &[]).await.body;
        if scan_samples(&body).get(&key) == Some(&1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "status change never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Ended now: no more polls.
    let settled = sim.requests_for(&active);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim.requests_for(&active), settled);
    assert_eq!(sim.requests_for(&done), 1);
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_and_concurrency_are_obeyed() {
    let sim = Simulator::start(Scenario::default().with_synthetic_unknown())
        .await
        .expect("sim");
    sim.inject(FaultScope::Global, Fault::delay(Duration::from_millis(60)));
    let targets: Vec<Target> = (0..40).map(|i| target(&digest(i + 100), "r")).collect();
    let exporter = start(&config(&sim, targets, polling(600, 600, 20.0, 2))).await;
    wait_ready(&exporter).await;
    let log = sim.log();
    assert_eq!(log.len(), 40);
    let first = log[0].at;
    for (i, entry) in log.iter().enumerate() {
        let earliest =
            Duration::from_secs_f64(i as f64 / 20.0).saturating_sub(Duration::from_millis(25));
        assert!(
            entry.at.duration_since(first) >= earliest,
            "request {i} came {:?} after the first, before {earliest:?}",
            entry.at.duration_since(first)
        );
    }
    assert!(
        sim.max_in_flight() <= 2,
        "{} in flight",
        sim.max_in_flight()
    );
    assert_eq!(sim.max_in_flight(), 2);
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_slows_the_exporter_down_and_it_recovers() {
    let sim = Simulator::start(Scenario::default().with_synthetic_unknown())
        .await
        .expect("sim");
    sim.inject(
        FaultScope::Global,
        Fault::error(400, "Throttling.User")
            .retry_after_ms(200)
            .times(3),
    );
    let targets: Vec<Target> = (0..60).map(|i| target(&digest(i + 500), "r")).collect();
    let exporter = start(&config(&sim, targets, polling(600, 600, 40.0, 4))).await;
    let rate = || {
        exporter
            .current_rate("default")
            .expect("the default account")
    };
    wait_for("the rate to drop", || rate() < 40.0).await;
    wait_ready(&exporter).await;
    wait_for("the rate to recover", || rate() == 40.0).await;
    assert_eq!(sim.outcome_count("Throttling.User"), 3);
    assert_eq!(sim.outcome_count("ok"), 60);
    let body = get(&exporter, "/metrics", &[]).await.body;
    let all = samples(&body);
    assert_eq!(
        all["sas_exporter_api_request_errors_total{account=\"default\",action=\"DescribeImageLatestScanTask\",code=\"Throttling.User\"}"],
        3.0
    );
    assert_eq!(
        all["sas_exporter_api_requests_total{account=\"default\",action=\"DescribeImageLatestScanTask\"}"],
        63.0
    );
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_keeps_the_last_good_data() {
    let d = digest(7);
    let sim = Simulator::start(
        Scenario::default().with_tasks(&d, vec![task("SUCCESS", Some(5000), Some(9000), 3)]),
    )
    .await
    .expect("sim");
    let exporter = start(&config(&sim, vec![target(&d, "k")], polling(1, 1, 20.0, 1))).await;
    wait_ready(&exporter).await;
    let l = labels(&d, "k");
    let up = format!("sas_image_scan_up{{{l}}}");
    let ok_key = format!("sas_image_scan_status{{{l},status=\"SUCCESS\"}}");
    let ls_key = format!("sas_image_scan_last_success_timestamp_seconds{{{l}}}");
    let good = scan_samples(&get(&exporter, "/metrics", &[]).await.body);
    assert_eq!(good[&up], 1.0);

    sim.inject(
        FaultScope::Global,
        Fault::action(FaultAction::Error {
            status: 403,
            code: "Forbidden.RAM".into(),
            message: "<img src=x onerror=alert(1)>".into(),
        }),
    );
    let mut failed = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while failed.get(&up) != Some(&0.0) {
        assert!(Instant::now() < deadline, "up never went to 0");
        tokio::time::sleep(Duration::from_millis(50)).await;
        failed = scan_samples(&get(&exporter, "/metrics", &[]).await.body);
    }
    // Everything but `up` is exactly as before; the last-success clock stopped.
    let mut expected = good.clone();
    expected.insert(up.clone(), 0.0);
    assert_eq!(failed, expected);
    let page = get(&exporter, "/", &[]).await;
    assert!(page.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!page.body.contains("<img"));

    sim.clear_faults();
    let mut recovered = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while recovered.get(&up) != Some(&1.0) {
        assert!(Instant::now() < deadline, "up never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
        recovered = scan_samples(&get(&exporter, "/metrics", &[]).await.body);
    }
    assert!(recovered[&ls_key] > good[&ls_key]);
    assert_eq!(recovered[&ok_key], 1.0);
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_http_routing() {
    let d = digest(9);
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    sim.inject(
        FaultScope::Global,
        Fault::delay(Duration::from_millis(700)).times(1),
    );
    let exporter = start(&config(
        &sim,
        vec![target(&d, "h")],
        polling(600, 600, 10.0, 1),
    ))
    .await;
    let r = get(&exporter, "/-/ready", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(get(&exporter, "/-/healthy", &[]).await.status, 200);
    // Before the first poll ends there are no per-digest series, but the exporter's own are there.
    let early = get(&exporter, "/metrics", &[]).await;
    assert!(scan_samples(&early.body).is_empty());
    assert_eq!(samples(&early.body)["sas_exporter_targets"], 1.0);
    wait_ready(&exporter).await;
    assert_eq!(get(&exporter, "/-/ready", &[]).await.status, 200);

    assert_eq!(get(&exporter, "/nope", &[]).await.status, 404);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let r = http
        .post(format!("http://{}/metrics", exporter.addrs[0]))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let page = get(&exporter, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!(">{d}</code>")));
    assert!(page.body.contains(
        "<span class=\"label\">image=registry.example.com/app:h</span><span class=\"label\">team=h</span>"
    ));
    assert!(page.body.contains("<span class=\"badge\">NONE</span>"));
    assert!(page.body.contains("href=\"/metrics\""));

    // Huge headers are refused; idle connections do not block a scrape.
    let r = http
        .get(format!("http://{}/metrics", exporter.addrs[0]))
        .header("x-big", "a".repeat(64 * 1024))
        .send()
        .await;
    assert_eq!(r.expect("an answer").status().as_u16(), 431);
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(
            tokio::net::TcpStream::connect(exporter.addrs[0])
                .await
                .expect("connect"),
        );
    }
    assert_eq!(get(&exporter, "/metrics", &[]).await.status, 200);
    drop(idle);
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_exposition_with_hostile_strings() {
    if !require_tool("promtool") {
        return;
    }
    let d = digest(77);
    let hostile = "we\"ird\\ \n{label}=\u{7f} ünï";
    let scenario = Scenario::default().with_tasks(
        &d,
        vec![
            json!({"Status": hostile, "TaskId": hostile, "Name": "# HELP x y", "Id": "12",
                    "Source": "}", "StartTime": 1, "Modified": "2024-05-01 16:00:00"}),
        ],
    );
    let sim = Simulator::start(scenario).await.expect("sim");
    let mut t = target(&d, "p");
    t.labels.insert("image".into(), hostile.into());
    let exporter = start(&config(&sim, vec![t], polling(600, 600, 10.0, 1))).await;
    wait_ready(&exporter).await;
    let text = get(&exporter, "/metrics", &[]).await.body;
    assert!(
        text.contains("raw_status=\"we\\\"ird\\\\ \\n{label}=\u{7f} ünï\""),
        "{text}"
    );
    assert_eq!(promtool_check(&text), "");
    let om = get(
        &exporter,
        "/metrics",
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await
    .body;
    // promtool reads only the text format; check the OpenMetrics specifics directly.
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE sas_exporter_api_requests counter\n"));
    assert!(
        om.contains(
            "\nsas_exporter_api_requests_total{account=\"default\",action=\"DescribeImageLatestScanTask\"} 1\n"
        )
    );
    assert_eq!(scan_samples(&om), scan_samples(&text));
    exporter.shutdown().await;
}
