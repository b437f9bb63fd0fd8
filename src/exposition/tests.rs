//! The incremental body against a fresh full encoding of the same snapshot, after a sequence of
//! changes, in both formats, plain and gzip (decompressed and compared byte for byte); the fresh
//! encoding is the previous prometheus-client based encoder, kept in `reference`.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::{TimeZone as _, Utc};

use crate::aliyun::credentials::{CredentialsProvider, StaticProvider};
use crate::aliyun::scan::{ScanStatus, ScanTask};
use crate::aliyun::signing::Credentials;
use crate::config::Site;
use crate::exposition::blocks::{self, BLOCK, Deflater, GzipCache};
use crate::exposition::encode::Exposition;
use crate::exposition::negotiate::Format;
use crate::exposition::reference::encode_snapshot;
use crate::exposition::render::{FAMILIES, trailer};
use crate::poll::discovered::{Discovered, ImageFacts, Workload};
use crate::poll::store::{Known, Snapshot, Store, TargetState};
use crate::telemetry::{AccountStatus, ExporterMetrics};

const FORMATS: [Format; 2] = [Format::Text, Format::OpenMetrics];

fn digest(i: usize) -> String {
    format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4)
}

fn task(i: usize, status: ScanStatus, raw: &str) -> ScanTask {
    ScanTask {
        status,
        raw_status: raw.to_owned(),
        modified: Utc.timestamp_opt(1_700_000_000 + i as i64, 0).single(),
        modified_raw: None,
        start_time_ms: Some(1_700_000_000_123 + i as i64),
        finish_time_ms: Some(1_700_000_095_456 + i as i64 * 7),
        finish: Some((i % 9) as i64),
        source: Some("console_batch".into()),
        task_type: Some("IMAGE_SCAN".into()),
        name: Some(format!("scan \"{i}\"\\ with\nnewline")),
        task_id: Some(format!("task-{i}")),
        id: Some(9_755_662 + i as i64),
        target_type: (i % 3 != 0).then(|| "IMAGE".to_owned()),
    }
}

/// A target in one of several shapes, so every family sees present and absent samples.
fn state(i: usize, generation: u32) -> TargetState {
    let d = digest(i);
    let account = ["intl", "prod"][i % 2];
    let labels: Vec<(Arc<str>, Arc<str>)> = vec![
        ("account".into(), account.into()),
        ("digest".into(), d.as_str().into()),
        (
            "image".into(),
            format!("registry.example.com/team/svc-{i}:1.{generation}.0").into(),
        ),
        (
            "team".into(),
            ["pay\"ments", "plat\\form", "se\narch", "shop"][i % 4].into(),
        ),
    ];
    let data = match i % 7 {
        0 => Known::NotPolled,
        1 => Known::NoTask,
        2 => Known::Task(task(i, ScanStatus::Processing, "PROCESSING")),
        3 => Known::Task(task(i, ScanStatus::Unknown, "WEIRD\"STATE")),
        4 => Known::Task(task(i, ScanStatus::Fail, "FAIL")),
        _ => Known::Task(task(i, ScanStatus::Success, "SUCCESS")),
    };
    let labels_arc: Arc<[(Arc<str>, Arc<str>)]> = labels.into();
    TargetState {
        account: Arc::from(account),
        digest: d.into(),
        labels: Arc::clone(&labels_arc),
        last_success: data
            .is_fetched()
            .then_some(1_750_000_000.25 + f64::from(generation)),
        up: (i % 7 != 0).then_some(i % 5 != 0),
        data,
        last_error: None,
        refresh: Duration::from_secs(60),
        added_at: 1_749_999_000.0,
        configured: i % 3 != 0,
        discovered: (i % 3 != 1).then(|| {
            Arc::new(Discovered {
                sources: vec!["sas_images"],
                labels: Arc::clone(&labels_arc),
                image: (i % 4 != 3).then(|| ImageFacts {
                    sca_status: "SUCCESS".into(),
                    last_scan_ms: Some(1_750_000_000_123 + i as i64),
                    vulnerabilities: Some(i as u64 % 9),
                    baseline_risks: (i % 2 == 0).then_some(2),
                    security_alerts: Some(0),
                }),
                running: (0..i % 3)
                    .map(|k| {
                        let w = Workload {
                            cluster: "ack-\"prod\"".into(),
                            namespace: format!("ns-{k}"),
                            workload: format!("svc-{i}\nx"),
                        };
                        (w, k as u32 + 1)
                    })
                    .collect(),
                keep_for: Duration::from_secs(3600),
                leaves_at: None,
            })
        }),
    }
}

fn gunzip(chunks: &[Bytes]) -> String {
    let body: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let mut out = String::new();
    flate2::read::GzDecoder::new(body.as_slice())
        .read_to_string(&mut out)
        .expect("one valid gzip member");
    out
}

fn concat(chunks: &[Bytes]) -> String {
    let body: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    String::from_utf8(body).expect("utf-8")
}

/// The tail the encoder appends: the trailer plus a stand-in for the live series.
fn tail(snapshot: &Snapshot, format: Format) -> String {
    let mut t = String::new();
    trailer(snapshot.targets.len(), format, &mut t);
    t.push_str("# HELP live x\n# TYPE live gauge\nlive 1\n");
    t
}

/// Checks one snapshot through a long-lived (incremental) cache and a fresh one, both formats,
/// gzip and plain, against the reference encoder.
fn check(snapshot: &Arc<Snapshot>, caches: &mut [GzipCache; 2], deflater: &mut Deflater) {
    let mut scratch: [String; FAMILIES] = Default::default();
    for format in FORMATS {
        let tail = tail(snapshot, format);
        let expected =
            encode_snapshot(snapshot, format) + "# HELP live x\n# TYPE live gauge\nlive 1\n";
        let incremental = caches[format.index()]
            .prepare(snapshot, deflater, &mut scratch)
            .and_then(|p| p.body(tail.as_bytes(), deflater))
            .expect("deflate");
        assert_eq!(
            gunzip(&incremental),
            expected,
            "{format:?} gzip, incremental"
        );
        let mut fresh_cache = GzipCache::new(format, deflater).expect("deflate");
        let fresh = fresh_cache
            .prepare(snapshot, deflater, &mut scratch)
            .and_then(|p| p.body(tail.as_bytes(), deflater))
            .expect("deflate");
        // Same segments, so even the compressed bytes agree.
        assert_eq!(incremental, fresh, "{format:?} gzip, fresh");
        let mut plain = blocks::plain(snapshot, format, &mut scratch);
        plain.push(Bytes::from(tail));
        assert_eq!(concat(&plain), expected, "{format:?} plain");
    }
}

fn publish(map: &BTreeMap<String, Arc<TargetState>>, version: u64) -> Arc<Snapshot> {
    Arc::new(Snapshot::new(version, map.values().cloned().collect()))
}

#[test]
fn body_after_changes_equals_a_fresh_full_encoding() {
    let mut deflater = Deflater::default();
    let mut caches = FORMATS.map(|f| GzipCache::new(f, &mut deflater).expect("deflate"));
    let mut map: BTreeMap<String, Arc<TargetState>> = BTreeMap::new();
    let mut version = 0;
    let mut step = |map: &BTreeMap<String, Arc<TargetState>>, caches: &mut [GzipCache; 2]| {
        version += 1;
        check(&publish(map, version), caches, &mut deflater);
    };

    // Empty, then more than two blocks' worth.
    step(&map, &mut caches);
    let n = BLOCK * 2 + 37;
    for i in 0..n {
        map.insert(digest(i), Arc::new(state(i, 0)));
    }
    step(&map, &mut caches);
    // A handful of digests change, as after a few polls.
    for i in [3, BLOCK + 5, n - 1] {
        let mut s = state(i, 2);
        s.up = Some(false);
        s.last_error = Some("Throttling".into());
        map.insert(digest(i), Arc::new(s));
    }
    step(&map, &mut caches);
    // A digest that had no task gets one; one with a task loses it; one is polled first time.
    for (i, data) in [
        (1, Known::Task(task(1, ScanStatus::Timeout, "TIMOUT"))),
        (2, Known::NoTask),
        (7, Known::Task(task(7, ScanStatus::Start, "START"))),
    ] {
        let mut s = state(i, 3);
        s.data = data;
        s.last_success = Some(1_760_000_000.5);
        s.up = Some(true);
        map.insert(digest(i), Arc::new(s));
    }
    step(&map, &mut caches);
    // No change at all but a new version.
    step(&map, &mut caches);
    // A reload: targets removed from the middle and added, which shifts every later block.
    for i in [10, 11, BLOCK + 1] {
        map.remove(&digest(i));
    }
    for i in n..n + 5 {
        map.insert(digest(i), Arc::new(state(i, 4)));
    }
    step(&map, &mut caches);
    // Labels change on one target (a reload with new labels).
    let mut s = TargetState::clone(&map[&digest(20)]);
    let mut labels = s.labels.to_vec();
    labels.push(("zone".into(), "cn-\"hangzhou\"".into()));
    s.labels = labels.into();
    map.insert(digest(20), Arc::new(s));
    step(&map, &mut caches);
    // Shrinks to less than one block, then to nothing.
    let keep: Vec<String> = map.keys().take(BLOCK / 2).cloned().collect();
    map.retain(|d, _| keep.contains(d));
    step(&map, &mut caches);
    map.clear();
    step(&map, &mut caches);
}

fn exposition(store: &Arc<Store>) -> Exposition {
    let provider: Arc<dyn CredentialsProvider> = Arc::new(StaticProvider::new(
        "static",
        Credentials::new("id", "secret", None, None),
    ));
    let account = AccountStatus::new(
        Arc::from("prod"),
        Site::China,
        Arc::new(ArcSwap::from_pointee(provider)),
    );
    Exposition::new(
        Arc::clone(store),
        &ExporterMetrics::default(),
        Arc::new(ArcSwap::from_pointee(vec![Arc::new(account)])),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_bodies_follow_each_new_snapshot() {
    let store = Arc::new(Store::default());
    let exposition = exposition(&store);
    let mut map = BTreeMap::new();
    for i in 0..BLOCK + 9 {
        map.insert(digest(i), Arc::new(state(i, 0)));
    }
    for version in 1..=4u64 {
        let changed = (version as usize * 31) % map.len();
        map.insert(digest(changed), Arc::new(state(changed, version as u32)));
        let snapshot = Arc::new(Snapshot::new(version, map.values().cloned().collect()));
        store.publish_part(&Arc::from("prod"), map.values().cloned().collect());
        for format in FORMATS {
            // The reference ends with the trailer; the live series follow it.
            let expected = encode_snapshot(&snapshot, format);
            let gz = gunzip(&exposition.render(format, true).await.expect("gzip body"));
            let plain = concat(&exposition.render(format, false).await.expect("plain body"));
            for (what, body) in [("gzip", &gz), ("plain", &plain)] {
                assert!(
                    body.starts_with(&expected),
                    "{format:?} {what} at version {version}"
                );
                let live = &body[expected.len()..];
                assert!(live.starts_with("# HELP sas_exporter_config_last_reload_successful "));
                assert!(live.contains("\nsas_exporter_targets_overdue "));
                assert_eq!(body.ends_with("# EOF\n"), format == Format::OpenMetrics);
            }
        }
    }
    // Many scrapers at once all get a complete body.
    let exposition = Arc::new(exposition);
    let scrapes: Vec<_> = (0..8)
        .map(|_| {
            let e = Arc::clone(&exposition);
            tokio::spawn(async move { e.render(Format::OpenMetrics, true).await })
        })
        .collect();
    for s in scrapes {
        let body = gunzip(&s.await.expect("join").expect("body"));
        assert!(body.ends_with("# EOF\n"));
    }
}
