//! Hand-written rendering of the per-digest series, byte for byte what prometheus-client writes
//! for the same samples (the tests compare the two), but block by block: a block of targets is
//! rendered into one string per metric family, so the body can be assembled from blocks that did
//! not change and only the changed ones are rendered again.
//!
//! Each target's label set is the same on all of its series, so it is escaped once per target
//! and copied into each line.

use crate::aliyun::scan::{ScanState, ScanTask};
use crate::build_info;
use crate::exposition::negotiate::Format;
use crate::poll::discovered::ImageFacts;
use crate::poll::store::TargetState;

/// How a family's samples come out of one target.
#[derive(Clone, Copy)]
enum Kind {
    /// The state set: one line per state, 1 for the current one.
    Status,
    /// The task's descriptive labels, value 1.
    Info,
    /// A number taken from the latest task, when it has one.
    Task(fn(&ScanTask) -> Option<f64>),
    /// `sas_image_scan_up`.
    Up,
    /// `sas_image_scan_last_success_timestamp_seconds`.
    LastSuccess,
    /// A number from the digest's latest `sas_images` row.
    Image(fn(&ImageFacts) -> Option<f64>),
    /// `sas_image_running_containers`: one line per workload, labelled by account and digest
    /// only, since it describes where the image runs, not the target.
    Running,
}

struct FamilyDef {
    name: &'static str,
    help: &'static str,
    kind: Kind,
}

fn ms(v: Option<i64>) -> Option<f64> {
    v.map(|v| v as f64 / 1000.0)
}

/// The per-digest families in body order.
const FAMILY_DEFS: [FamilyDef; FAMILIES] = [
    FamilyDef {
        name: "sas_image_scan_status",
        help: "Current state of the digest's latest scan task: 1 for the current state, 0 for the others; NONE = no scan task exists (refreshed in the background, not at scrape time)",
        kind: Kind::Status,
    },
    FamilyDef {
        name: "sas_image_scan_info",
        help: "Describes the digest's latest scan task; always 1 (refreshed in the background, not at scrape time)",
        kind: Kind::Info,
    },
    FamilyDef {
        name: "sas_image_scan_duration_seconds",
        help: "Duration of the latest scan task in seconds (FinishTime - StartTime), for ended tasks (refreshed in the background, not at scrape time)",
        kind: Kind::Task(
            |t| match (t.status.is_terminal(), t.start_time_ms, t.finish_time_ms) {
                // checked_sub: both values come from the API and may be anything.
                (true, Some(s), Some(f)) if f >= s => f.checked_sub(s).map(|d| d as f64 / 1000.0),
                _ => None,
            },
        ),
    },
    FamilyDef {
        name: "sas_image_scan_images_finished",
        help: "Images finished by the latest scan task (the API's Finish) (refreshed in the background, not at scrape time)",
        kind: Kind::Task(|t| t.finish.map(|f| f as f64)),
    },
    FamilyDef {
        name: "sas_image_scan_start_timestamp_seconds",
        help: "When the latest scan task started, Unix seconds (refreshed in the background, not at scrape time)",
        kind: Kind::Task(|t| ms(t.start_time_ms)),
    },
    FamilyDef {
        name: "sas_image_scan_finish_timestamp_seconds",
        help: "When the latest scan task finished, Unix seconds (ended tasks only) (refreshed in the background, not at scrape time)",
        kind: Kind::Task(|t| {
            if t.status.is_terminal() {
                ms(t.finish_time_ms)
            } else {
                None
            }
        }),
    },
    FamilyDef {
        name: "sas_image_scan_modified_timestamp_seconds",
        help: "When the latest scan task was last modified, Unix seconds (refreshed in the background, not at scrape time)",
        kind: Kind::Task(|t| t.modified.map(|m| m.timestamp() as f64)),
    },
    FamilyDef {
        name: "sas_image_scan_up",
        help: "1 if the last poll of this digest succeeded, else 0 (the other series then keep the last good values); refreshed in the background, not at scrape time",
        kind: Kind::Up,
    },
    FamilyDef {
        name: "sas_image_scan_last_success_timestamp_seconds",
        help: "When this digest's data was last refreshed successfully, Unix seconds (refreshed in the background, not at scrape time)",
        kind: Kind::LastSuccess,
    },
    FamilyDef {
        name: "sas_image_vulnerabilities",
        help: IMAGE_HELPS[0],
        kind: Kind::Image(|i| i.vulnerabilities.map(|v| v as f64)),
    },
    FamilyDef {
        name: "sas_image_baseline_risks",
        help: IMAGE_HELPS[1],
        kind: Kind::Image(|i| i.baseline_risks.map(|v| v as f64)),
    },
    FamilyDef {
        name: "sas_image_security_alerts",
        help: IMAGE_HELPS[2],
        kind: Kind::Image(|i| i.security_alerts.map(|v| v as f64)),
    },
    FamilyDef {
        name: "sas_image_last_scan_timestamp_seconds",
        help: IMAGE_HELPS[3],
        kind: Kind::Image(|i| ms(i.last_scan_ms)),
    },
    FamilyDef {
        name: "sas_image_running_containers",
        help: RUNNING_HELP,
        kind: Kind::Running,
    },
];

/// Helps of the families taken from the `sas_images` rows, shared with the reference encoder.
pub(crate) const IMAGE_HELPS: [&str; 4] = [
    "Vulnerabilities Security Center found in the image (VulCount of its latest sas_images row; costs no extra request)",
    "Baseline (configuration) risks Security Center found in the image (HcCount of its latest sas_images row)",
    "Security alerts Security Center raised for the image (AlarmCount of its latest sas_images row)",
    "When Security Center last scanned the image, Unix seconds (LastScanTime of its latest sas_images row)",
];

/// Help of `sas_image_running_containers`, shared with the reference encoder.
pub(crate) const RUNNING_HELP: &str = "Running containers that use the digest, per cluster, namespace and workload (from the sas_containers and kubernetes discovery sources)";

/// Number of per-digest metric families.
pub(crate) const FAMILIES: usize = 14;

/// The `# HELP` and `# TYPE` lines of family `f`.
pub(crate) fn header(f: usize, format: Format, out: &mut String) {
    descriptor(FAMILY_DEFS[f].name, FAMILY_DEFS[f].help, format, out);
}

fn descriptor(name: &str, help: &str, format: Format, out: &mut String) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    match format {
        // The text format escapes backslash and newline in help texts; OpenMetrics writes them
        // as they are (prometheus-client's behaviour, kept for identical bodies).
        Format::Text => {
            for c in help.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
        }
        Format::OpenMetrics => out.push_str(help),
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push_str(" gauge\n");
}

/// Appends `v` as a label value: backslash, double quote and newline escaped.
fn push_escaped(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `k="v",…` for a label list, without braces.
fn push_labels<'a>(out: &mut String, labels: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (i, (k, v)) in labels.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        push_escaped(out, v);
        out.push('"');
    }
}

/// A sample value as the two formats write it.
enum Value {
    Int(i64),
    Float(f64),
}

fn push_value(out: &mut String, v: Value, format: Format) {
    out.push(' ');
    match v {
        Value::Int(i) => out.push_str(itoa::Buffer::new().format(i)),
        Value::Float(f) => match format {
            Format::OpenMetrics => out.push_str(dtoa::Buffer::new().format(f)),
            Format::Text if f.is_finite() => out.push_str(dtoa::Buffer::new().format_finite(f)),
            Format::Text if f.is_nan() => out.push_str("NaN"),
            Format::Text if f > 0.0 => out.push_str("+Inf"),
            Format::Text => out.push_str("-Inf"),
        },
    }
    out.push('\n');
}

/// One sample line: `name{base,extra…} value`.
fn push_line(
    out: &mut String,
    name: &str,
    base: &str,
    extra: &[(&str, &str)],
    v: Value,
    format: Format,
) {
    out.push_str(name);
    if !base.is_empty() || !extra.is_empty() {
        out.push('{');
        out.push_str(base);
        if !extra.is_empty() {
            if !base.is_empty() {
                out.push(',');
            }
            push_labels(out, extra.iter().copied());
        }
        out.push('}');
    }
    push_value(out, v, format);
}

fn or_empty(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// Appends family `f`'s lines for one target whose label set is already rendered in `base`.
fn push_target(out: &mut String, f: usize, t: &TargetState, base: &str, format: Format) {
    let def = &FAMILY_DEFS[f];
    match def.kind {
        Kind::Status => {
            let Some(current) = t.data.state() else {
                return;
            };
            for state in ScanState::ALL {
                let extra = [("status", state.as_str())];
                let v = Value::Int(i64::from(state == current));
                push_line(out, def.name, base, &extra, v, format);
            }
        }
        Kind::Info => {
            let Some(task) = t.data.task() else { return };
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
            push_line(out, def.name, base, &extra, Value::Int(1), format);
        }
        Kind::Task(value) => {
            if let Some(v) = t.data.task().and_then(value) {
                push_line(out, def.name, base, &[], Value::Float(v), format);
            }
        }
        Kind::Up => {
            if let Some(up) = t.up {
                push_line(out, def.name, base, &[], Value::Int(i64::from(up)), format);
            }
        }
        Kind::LastSuccess => {
            if let Some(ts) = t.last_success {
                push_line(out, def.name, base, &[], Value::Float(ts), format);
            }
        }
        Kind::Image(value) => {
            let image = t.discovered.as_deref().and_then(|d| d.image.as_ref());
            if let Some(v) = image.and_then(value) {
                push_line(out, def.name, base, &[], Value::Float(v), format);
            }
        }
        Kind::Running => {
            let Some(d) = t.discovered.as_deref() else {
                return;
            };
            for (w, n) in &d.running {
                let labels = [
                    ("account", &*t.account),
                    ("digest", &*t.digest),
                    ("cluster", w.cluster.as_str()),
                    ("namespace", w.namespace.as_str()),
                    ("workload", w.workload.as_str()),
                ];
                push_line(
                    out,
                    def.name,
                    "",
                    &labels,
                    Value::Int(i64::from(*n)),
                    format,
                );
            }
        }
    }
}

/// Renders a block of targets into one string per family, in target order. `out` is cleared
/// first; its strings keep their capacity so a caller can reuse them block after block.
pub(crate) fn render_block<'a>(
    targets: impl IntoIterator<Item = &'a TargetState>,
    format: Format,
    out: &mut [String; FAMILIES],
) {
    for s in out.iter_mut() {
        s.clear();
    }
    let mut base = String::with_capacity(256);
    for t in targets {
        base.clear();
        push_labels(&mut base, t.labels.iter().map(|(k, v)| (&**k, &**v)));
        for (f, s) in out.iter_mut().enumerate() {
            push_target(s, f, t, &base, format);
        }
    }
}

/// The exporter series that follow the per-digest ones: the target count and build info.
pub(crate) fn trailer(targets: usize, format: Format, out: &mut String) {
    descriptor(
        "sas_exporter_targets",
        "Targets (account, digest) this instance polls",
        format,
        out,
    );
    push_line(
        out,
        "sas_exporter_targets",
        "",
        &[],
        Value::Int(targets as i64),
        format,
    );
    descriptor(
        "sas_exporter_build_info",
        "Build information; always 1",
        format,
        out,
    );
    let build = [
        ("version", build_info::VERSION),
        ("revision", build_info::REVISION),
        ("rustc_version", build_info::RUSTC_VERSION),
    ];
    push_line(
        out,
        "sas_exporter_build_info",
        "",
        &build,
        Value::Int(1),
        format,
    );
}
