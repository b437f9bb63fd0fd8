//! The `/metrics` exposition: per-digest series from the published snapshot, plus the exporter's
//! own series.
//!
//! All encoding and compressing happens on one dedicated, low-priority thread, never on the
//! runtime's workers, so a scrape cannot delay polling; and because there is one such thread, a
//! snapshot is encoded at most once at a time however many scrapers ask (requests that queue up
//! while it works are all answered from the same encoding). The per-digest part is kept as
//! deflated blocks of targets (see `blocks`), so a new snapshot re-renders only the blocks whose
//! targets changed, and the plain body is never held whole for a gzip scrape. Only the small live
//! part (request counters, process metrics, overdue count) is encoded per scrape and deflated as
//! the final blocks of the same gzip member.

use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, prometheus_text, text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::exposition::accounts::AccountsCollector;
use crate::exposition::blocks::{self, Deflater, GzipCache};
use crate::exposition::negotiate::Format;
use crate::exposition::process::ProcessCollector;
use crate::exposition::render::{FAMILIES, trailer};
use crate::poll::store::{Snapshot, Store, unix_now};
use crate::telemetry::{AccountsHandle, ExporterMetrics};

/// Scrapes that may wait for the encoder at once; more wait for room (each holds a connection).
const QUEUE: usize = 64;

/// A snapshot at least this many targets smaller than the last one encoded (and at most half its
/// size) counts as a big shrink: every cache lets go of the old targets and the freed memory is
/// handed back to the operating system.
const BIG_SHRINK: usize = 10_000;

/// Why a `/metrics` body could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// prometheus-client failed to encode the exporter's own series.
    #[error("encoding the exporter's own series failed")]
    Live(#[from] std::fmt::Error),
    /// The deflate backend reported an error.
    #[error("compressing the body failed: {0}")]
    Deflate(#[from] flate2::CompressError),
    /// The encoder thread is not running (it could not be started, or it panicked).
    #[error("the encoder thread is not running")]
    Stopped,
}

struct Job {
    format: Format,
    gzip: bool,
    reply: oneshot::Sender<Result<Vec<Bytes>, EncodeError>>,
}

/// Encodes `/metrics` bodies on a dedicated thread, caching the per-digest part.
#[derive(Debug)]
pub struct Exposition {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Exposition {
    /// Builds the exposition over a store and the exporter's metrics and starts its thread, which
    /// ends when the exposition is dropped.
    pub fn new(store: Arc<Store>, metrics: &ExporterMetrics, accounts: AccountsHandle) -> Self {
        let mut live = Registry::default();
        metrics.register(&mut live);
        live.register_collector(Box::new(LiveCollector {
            store: Arc::clone(&store),
        }));
        live.register_collector(Box::new(AccountsCollector(accounts)));
        live.register_collector(Box::new(ProcessCollector));
        let (jobs, rx) = mpsc::channel(QUEUE);
        let encoder = Encoder::new(store, live);
        let spawned = std::thread::Builder::new()
            .name("metrics-encoder".into())
            .spawn(move || encoder.run(rx));
        if let Err(e) = spawned {
            // Without the thread every scrape answers 500; the rest of the exporter keeps working.
            tracing::error!(error = %e, "cannot start the metrics encoder thread");
        }
        Exposition { jobs }
    }

    /// The body for one scrape, as chunks to send in order (cached parts are shared, not copied).
    pub async fn render(&self, format: Format, gzip: bool) -> Result<Vec<Bytes>, EncodeError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                format,
                gzip,
                reply,
            })
            .await
            .map_err(|_| EncodeError::Stopped)?;
        answer.await.map_err(|_| EncodeError::Stopped)?
    }
}

/// What the encoder thread owns.
struct Encoder {
    store: Arc<Store>,
    live: Registry,
    deflater: Deflater,
    scratch: [String; FAMILIES],
    gzip: [Option<GzipCache>; 2],
    /// The last plain per-digest part per format. It pays for itself only while the snapshot
    /// stays the same, so it is dropped as soon as a newer one is encoded.
    plain: [Option<(u64, Arc<[Bytes]>)>; 2],
    /// Targets in the snapshot encoded last, to notice a big shrink.
    last_targets: usize,
}

impl Encoder {
    fn new(store: Arc<Store>, live: Registry) -> Self {
        Encoder {
            store,
            live,
            deflater: Deflater::default(),
            scratch: Default::default(),
            gzip: [None, None],
            plain: [None, None],
            last_targets: 0,
        }
    }

    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        lower_priority();
        let mut batch = Vec::new();
        while let Some(first) = jobs.blocking_recv() {
            batch.push(first);
            while let Ok(more) = jobs.try_recv() {
                batch.push(more);
            }
            // One snapshot for the whole batch: every scraper that queued while the previous
            // encoding ran is served by a single encoding of the newest data.
            let snapshot = self.store.load();
            let shrunk = self.let_go_after_big_shrink(snapshot.targets.len());
            // And one body per format and compression: a flood of pipelined scrapes costs one
            // encoding of the live series, not one each (their chunks are shared, not copied).
            let mut served: [[Option<Vec<Bytes>>; 2]; 2] = Default::default();
            for job in batch.drain(..) {
                if job.reply.is_closed() {
                    continue;
                }
                let slot = &mut served[job.format.index()][usize::from(job.gzip)];
                let body = match slot {
                    Some(body) => Ok(body.clone()),
                    None => self.serve(&snapshot, job.format, job.gzip).inspect(|body| {
                        *slot = Some(body.clone());
                    }),
                };
                // The scraper may have gone meanwhile; nothing to do then.
                let _ = job.reply.send(body);
            }
            if shrunk {
                crate::memory::release_freed();
            }
        }
    }

    /// After a reload dropped most targets, a cache of a format nobody scrapes any more would
    /// keep the old snapshot (and every target in it) alive for good; all caches start over, and
    /// the caller trims the heap once the batch is served. True when that happened.
    fn let_go_after_big_shrink(&mut self, targets: usize) -> bool {
        let before = std::mem::replace(&mut self.last_targets, targets);
        let big = before >= targets.saturating_add(BIG_SHRINK) && targets <= before / 2;
        if big {
            for cache in self.gzip.iter_mut().flatten() {
                cache.clear();
            }
            self.plain = [None, None];
        }
        big
    }

    fn serve(
        &mut self,
        snapshot: &Arc<Snapshot>,
        format: Format,
        gzip: bool,
    ) -> Result<Vec<Bytes>, EncodeError> {
        let i = format.index();
        let mut tail = String::with_capacity(8192);
        trailer(snapshot.targets.len(), format, &mut tail);
        match format {
            Format::Text => prometheus_text::encode(&mut tail, &self.live)?,
            Format::OpenMetrics => text::encode(&mut tail, &self.live)?,
        }
        if self.plain[i]
            .as_ref()
            .is_some_and(|(v, _)| *v != snapshot.version)
        {
            self.plain[i] = None;
        }
        if gzip {
            let cache = match &mut self.gzip[i] {
                Some(cache) => cache,
                empty => empty.insert(GzipCache::new(format, &mut self.deflater)?),
            };
            let prepared = match cache.prepare(snapshot, &mut self.deflater, &mut self.scratch) {
                Ok(p) => p,
                Err(e) => {
                    cache.clear();
                    return Err(e.into());
                }
            };
            return Ok(prepared.body(tail.as_bytes(), &mut self.deflater)?);
        }
        let part = match &self.plain[i] {
            Some((_, part)) => Arc::clone(part),
            None => {
                let part: Arc<[Bytes]> = blocks::plain(snapshot, format, &mut self.scratch).into();
                self.plain[i] = Some((snapshot.version, Arc::clone(&part)));
                part
            }
        };
        let mut chunks = Vec::with_capacity(part.len() + 1);
        chunks.extend(part.iter().cloned());
        chunks.push(Bytes::from(tail));
        Ok(chunks)
    }
}

/// Lets the pollers and the server win the CPU over a long encoding on a small machine.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes plain integers; on Linux `who` 0 is the calling thread only.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS as _, 0, 10);
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
