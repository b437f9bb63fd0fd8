//! Hostile inputs: answers with unreadable fields and oversized strings, broken target files,
//! failing credential steps, and TLS clients the server refuses.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use chrono::FixedOffset;
use common::*;
use sas_image_scan_exporter::parse_response;
use sas_image_scan_exporter::simulator::{Scenario, Simulator};
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
    let base = format!("digest=\"{d}\",image=\"registry.example.com/app:a\",team=\"a\"");
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
