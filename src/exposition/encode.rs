//! The `/metrics` exposition: per-digest series from the published snapshot, plus the exporter's
//! own series.
//!
//! The per-digest part is by far the largest and changes only when a poll changes something, so it
//! is encoded (and gzipped) once per snapshot version and format, then served as shared bytes. Only
//! the small live part (request counters, process metrics, overdue count) is encoded per scrape; for
//! gzip it is deflated on its own and spliced after the cached prefix into one valid gzip member.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, LabelSetEncoder, prometheus_text, text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::aliyun::scan::{ScanState, ScanTask};
use crate::build_info;
use crate::exposition::accounts::AccountsCollector;
use crate::exposition::negotiate::Format;
use crate::exposition::process::ProcessCollector;
use crate::poll::store::{Snapshot, Store, unix_now};
use crate::telemetry::{AccountsHandle, ExporterMetrics};

/// Encodes `/metrics` bodies, caching the per-digest part per snapshot version.
#[derive(Debug)]
pub struct Exposition {
    store: Arc<Store>,
    live: Registry,
    cache: Mutex<Arc<VersionCache>>,
    last_len: [AtomicUsize; 2],
}

#[derive(Debug, Default)]
struct VersionCache {
    version: u64,
    plain: [OnceLock<Bytes>; 2],
    gzip: [OnceLock<GzipPrefix>; 2],
}

impl Exposition {
    /// Builds the exposition over a store and the exporter's metrics.
    pub fn new(store: Arc<Store>, metrics: &ExporterMetrics, accounts: AccountsHandle) -> Self {
        let mut live = Registry::default();
        metrics.register(&mut live);
        live.register_collector(Box::new(LiveCollector {
            store: Arc::clone(&store),
        }));
        live.register_collector(Box::new(AccountsCollector(accounts)));
        live.register_collector(Box::new(ProcessCollector));
        Exposition {
            store,
            live,
            cache: Mutex::new(Arc::new(VersionCache::default())),
            last_len: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// The body for one scrape, as chunks to send in order (no copy of the cached part).
    pub fn render(&self, format: Format, gzip: bool) -> Result<Vec<Bytes>, std::fmt::Error> {
        let snapshot = self.store.load();
        let cache = {
            let mut guard = self.cache.lock();
            if guard.version != snapshot.version {
                *guard = Arc::new(VersionCache {
                    version: snapshot.version,
                    ..VersionCache::default()
                });
            }
            Arc::clone(&guard)
        };
        let i = format.index();
        // get_or_init: concurrent scrapes of a new version wait for one encoding instead of each
        // doing it. A gzip scrape (Prometheus always asks for gzip) keeps only the compressed
        // prefix, a tenth of the size, unless a plain scrape cached the plain body anyway.
        let encode = || -> Bytes {
            match encode_snapshot(&snapshot, format, self.last_len[i].load(Relaxed)) {
                Ok(body) => {
                    self.last_len[i].store(body.len(), Relaxed);
                    Bytes::from(body)
                }
                Err(_) => {
                    tracing::error!("encoding the per-digest metrics failed");
                    Bytes::new()
                }
            }
        };
        let mut live = String::with_capacity(4096);
        match format {
            Format::Text => prometheus_text::encode(&mut live, &self.live)?,
            Format::OpenMetrics => text::encode(&mut live, &self.live)?,
        }
        if gzip {
            let gz = cache.gzip[i].get_or_init(|| match cache.plain[i].get() {
                Some(plain) => GzipPrefix::new(plain),
                None => GzipPrefix::new(&encode()),
            });
            return Ok(vec![gz.head.clone(), gz.finish(live.as_bytes())]);
        }
        let prefix = cache.plain[i].get_or_init(encode).clone();
        Ok(vec![prefix, Bytes::from(live)])
    }
}

/// Per-scrape exporter series that depend on the snapshot and the clock.
#[derive(Debug)]
struct LiveCollector {
    store: Arc<Store>,
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.store.load();
        let overdue = snapshot.overdue(unix_now()) as i64;
        encoder
            .encode_descriptor(
                "sas_exporter_targets_overdue",
                "Digests whose last successful refresh is older than twice their refresh interval",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&overdue)?;

        Ok(())
    }
}

/// A deflated gzip prefix that ends on a byte boundary with a non-final block, so a separately
/// deflated tail can follow it in the same member.
#[derive(Debug)]
struct GzipPrefix {
    head: Bytes,
    crc: crc32fast::Hasher,
    len: u32,
}

const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

impl GzipPrefix {
    fn new(data: &[u8]) -> Self {
        let mut enc = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(data.len() / 4 + 64),
            flate2::Compression::fast(),
        );
        let mut out = GZIP_HEADER.to_vec();
        // Writes to a Vec cannot fail; a sync flush ends the output on a byte boundary without
        // marking the stream final.
        if enc.write_all(data).and_then(|()| enc.flush()).is_ok() {
            out.extend_from_slice(enc.get_ref());
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        GzipPrefix {
            head: Bytes::from(out),
            crc,
            len: data.len() as u32,
        }
    }

    /// The rest of the member: `tail` deflated as the final blocks, then CRC-32 and length.
    fn finish(&self, tail: &[u8]) -> Bytes {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing to a Vec cannot fail.
        let mut out: Vec<u8> = enc
            .write_all(tail)
            .and_then(|()| enc.finish())
            .unwrap_or_default();
        let mut crc = self.crc.clone();
        crc.update(tail);
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&self.len.wrapping_add(tail.len() as u32).to_le_bytes());
        Bytes::from(out)
    }
}

/// The per-digest label set plus metric-specific labels.
struct Labels<'a> {
    base: &'a [(String, String)],
    extra: &'a [(&'static str, &'a str)],
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.base.encode(encoder)?;
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

        encoder
            .encode_descriptor(
                "sas_exporter_targets",
                "Digests this instance polls",
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

/// Encodes the per-digest part. `previous_len` (the last encoding's size) sizes the buffer so the
/// body is built without doubling reallocations, which at 10 000 digests would leave tens of MiB
/// of slack in the cached body.
fn encode_snapshot(
    snapshot: &Arc<Snapshot>,
    format: Format,
    previous_len: usize,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(Arc::clone(snapshot))));
    let estimate = if previous_len > 0 {
        previous_len + previous_len / 16
    } else {
        // About 3.3 KiB per digest with two short labels.
        4096 + snapshot.targets.len() * 3500
    };
    let mut out = String::with_capacity(estimate);
    match format {
        Format::Text => prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => text::encode_registry(&mut out, &registry)?,
    }
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn spliced_gzip_is_one_valid_member() {
        let prefix: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let tail = b"# EOF\nsome tail that is not in the prefix\n";
        let gz = GzipPrefix::new(&prefix);
        let mut body = gz.head.to_vec();
        body.extend_from_slice(&gz.finish(tail));
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        let mut expected = prefix.clone();
        expected.extend_from_slice(tail);
        assert_eq!(decoded, expected);
        // A second tail reuses the same prefix.
        let mut body = gz.head.to_vec();
        body.extend_from_slice(&gz.finish(b"x"));
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut decoded)
            .expect("valid gzip");
        assert_eq!(decoded.len(), prefix.len() + 1);
    }
}
