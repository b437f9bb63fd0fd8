//! The previous, prometheus-client based encoder of the per-digest part, kept only as the
//! reference the hand-written block renderer is checked against byte for byte.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, LabelSetEncoder, prometheus_text, text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::aliyun::scan::{ScanState, ScanTask};
use crate::build_info;
use crate::exposition::negotiate::Format;
use crate::exposition::render::{IMAGE_HELPS, RUNNING_HELP};
use crate::poll::discovered::ImageFacts;
use crate::poll::store::Snapshot;

/// The per-digest label set plus metric-specific labels.
struct Labels<'a> {
    base: &'a [(Arc<str>, Arc<str>)],
    extra: &'a [(&'static str, &'a str)],
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let base: Vec<(&str, &str)> = self.base.iter().map(|(k, v)| (&**k, &**v)).collect();
        base.as_slice().encode(encoder)?;
        self.extra.encode(encoder)
    }
}

const REFRESH_NOTE: &str = "refreshed in the background, not at scrape time";

type Value = fn(&ScanTask) -> Option<f64>;

fn ms(v: Option<i64>) -> Option<f64> {
    v.map(|v| v as f64 / 1000.0)
}

/// Gauges with one optional value per digest that has a task.
const TASK_GAUGES: [(&str, &str, Value); 5] = [
    (
        "sas_image_scan_duration_seconds",
        "Duration of the latest scan task in seconds (FinishTime - StartTime), for ended tasks",
        |t| match (t.status.is_terminal(), t.start_time_ms, t.finish_time_ms) {
            // checked_sub: both values come from the API and may be anything.
            (true, Some(s), Some(f)) if f >= s => f.checked_sub(s).map(|d| d as f64 / 1000.0),
            _ => None,
        },
    ),
    (
        "sas_image_scan_images_finished",
        "Images finished by the latest scan task (the API's Finish)",
        |t| t.finish.map(|f| f as f64),
    ),
    (
        "sas_image_scan_start_timestamp_seconds",
        "When the latest scan task started, Unix seconds",
        |t| ms(t.start_time_ms),
    ),
    (
        "sas_image_scan_finish_timestamp_seconds",
        "When the latest scan task finished, Unix seconds (ended tasks only)",
        |t| {
            if t.status.is_terminal() {
                ms(t.finish_time_ms)
            } else {
                None
            }
        },
    ),
    (
        "sas_image_scan_modified_timestamp_seconds",
        "When the latest scan task was last modified, Unix seconds",
        |t| t.modified.map(|m| m.timestamp() as f64),
    ),
];

#[derive(Debug)]
struct SnapshotCollector(Arc<Snapshot>);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let targets = &self.0.targets;
        let help = format!(
            "Current state of the digest's latest scan task: 1 for the current state, 0 for the others; NONE = no scan task exists ({REFRESH_NOTE})"
        );
        let mut m =
            encoder.encode_descriptor("sas_image_scan_status", &help, None, MetricType::Gauge)?;
        for t in targets {
            let Some(current) = t.data.state() else {
                continue;
            };
            for state in ScanState::ALL {
                let extra = [("status", state.as_str())];
                m.encode_family(&Labels {
                    base: &t.labels,
                    extra: &extra,
                })?
                .encode_gauge(&i64::from(state == current))?;
            }
        }

        let help = format!("Describes the digest's latest scan task; always 1 ({REFRESH_NOTE})");
        let mut m =
            encoder.encode_descriptor("sas_image_scan_info", &help, None, MetricType::Gauge)?;
        for t in targets {
            let Some(task) = t.data.task() else { continue };
            let id = task.id.map(|i| i.to_string()).unwrap_or_default();
            let extra = [
                ("task_id", or_empty(&task.task_id)),
                ("task_name", or_empty(&task.name)),
                ("task_type", or_empty(&task.task_type)),
                ("source", or_empty(&task.source)),
                ("target_type", or_empty(&task.target_type)),
                ("raw_status", task.raw_status.as_str()),
                ("id", id.as_str()),
            ];
            m.encode_family(&Labels {
                base: &t.labels,
                extra: &extra,
            })?
            .encode_gauge(&1i64)?;
        }

        for (name, help, value) in TASK_GAUGES {
            let help = format!("{help} ({REFRESH_NOTE})");
            let mut m = encoder.encode_descriptor(name, &help, None, MetricType::Gauge)?;
            for t in targets {
                let Some(task) = t.data.task() else { continue };
                if let Some(v) = value(task) {
                    m.encode_family(&Labels {
                        base: &t.labels,
                        extra: &[],
                    })?
                    .encode_gauge(&v)?;
                }
            }
        }

        let mut m = encoder.encode_descriptor(
            "sas_image_scan_up",
            "1 if the last poll of this digest succeeded, else 0 (the other series then keep the last good values); refreshed in the background, not at scrape time",
            None,
            MetricType::Gauge,
        )?;
        for t in targets {
            if let Some(up) = t.up {
                m.encode_family(&Labels {
                    base: &t.labels,
                    extra: &[],
                })?
                .encode_gauge(&i64::from(up))?;
            }
        }

        let mut m = encoder.encode_descriptor(
            "sas_image_scan_last_success_timestamp_seconds",
            "When this digest's data was last refreshed successfully, Unix seconds (refreshed in the background, not at scrape time)",
            None,
            MetricType::Gauge,
        )?;
        for t in targets {
            if let Some(ts) = t.last_success {
                m.encode_family(&Labels {
                    base: &t.labels,
                    extra: &[],
                })?
                .encode_gauge(&ts)?;
            }
        }

        type ImageValue = fn(&ImageFacts) -> Option<f64>;
        let image_gauges: [(&str, ImageValue); 4] = [
            ("sas_image_vulnerabilities", |i| {
                i.vulnerabilities.map(|v| v as f64)
            }),
            ("sas_image_baseline_risks", |i| {
                i.baseline_risks.map(|v| v as f64)
            }),
            ("sas_image_security_alerts", |i| {
                i.security_alerts.map(|v| v as f64)
            }),
            ("sas_image_last_scan_timestamp_seconds", |i| {
                ms(i.last_scan_ms)
            }),
        ];
        for ((name, value), help) in image_gauges.into_iter().zip(IMAGE_HELPS) {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for t in targets {
                let image = t.discovered.as_deref().and_then(|d| d.image.as_ref());
                if let Some(v) = image.and_then(value) {
                    m.encode_family(&Labels {
                        base: &t.labels,
                        extra: &[],
                    })?
                    .encode_gauge(&v)?;
                }
            }
        }

        let mut m = encoder.encode_descriptor(
            "sas_image_running_containers",
            RUNNING_HELP,
            None,
            MetricType::Gauge,
        )?;
        for t in targets {
            let Some(d) = t.discovered.as_deref() else {
                continue;
            };
            for (w, n) in &d.running {
                let extra = [
                    ("account", &*t.account),
                    ("digest", &*t.digest),
                    ("cluster", w.cluster.as_str()),
                    ("namespace", w.namespace.as_str()),
                    ("workload", w.workload.as_str()),
                ];
                m.encode_family(&Labels {
                    base: &[],
                    extra: &extra,
                })?
                .encode_gauge(&i64::from(*n))?;
            }
        }

        encoder
            .encode_descriptor(
                "sas_exporter_targets",
                "Targets (account, digest) this instance polls",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(targets.len() as i64))?;

        let build = [
            ("version", build_info::VERSION),
            ("revision", build_info::REVISION),
            ("rustc_version", build_info::RUSTC_VERSION),
        ];
        encoder
            .encode_descriptor(
                "sas_exporter_build_info",
                "Build information; always 1",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&build.as_slice())?
            .encode_gauge(&1i64)
    }
}

fn or_empty(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// The per-digest part of `snapshot` as the previous encoder wrote it.
pub(crate) fn encode_snapshot(snapshot: &Arc<Snapshot>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(Arc::clone(snapshot))));
    let mut out = String::new();
    let encoded = match format {
        Format::Text => prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => text::encode_registry(&mut out, &registry),
    };
    assert!(encoded.is_ok(), "the reference encoder failed");
    out
}
