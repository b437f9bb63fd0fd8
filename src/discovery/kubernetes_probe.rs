//! The `kubernetes` source run on its own, outside the exporter, with what it reports summed
//! up; and its pod cache built from pod objects. For the benchmark that measures the source's
//! CPU per watch event and the cache's memory.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::KubernetesConfig;
use crate::shutdown::{ShutdownTrigger, channel};

use super::listing::{Reporter, SourceKey, SourceOutcome};
use super::pod_cache::PodCache;
use super::pods::PodView;

/// One report of the source, summed up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// A complete listing: how many digests, and running containers over all of them.
    Complete {
        /// Digests listed.
        digests: usize,
        /// Running containers summed over every digest and workload.
        running: u64,
    },
    /// The source cannot list now, and why.
    Failed(String),
}

/// A `kubernetes` source running on the current Tokio runtime; it stops when dropped.
pub struct KubernetesProbe {
    rx: mpsc::UnboundedReceiver<(SourceKey, SourceOutcome)>,
    _stop: ShutdownTrigger,
    task: JoinHandle<()>,
}

impl KubernetesProbe {
    /// Starts the source with `config`; call within a Tokio runtime.
    pub fn start(config: KubernetesConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, shutdown) = channel();
        let reporter = Reporter::new(SourceKey(0), tx);
        let task = tokio::spawn(super::kubernetes::run(config, reporter, shutdown));
        KubernetesProbe {
            rx,
            _stop: stop,
            task,
        }
    }

    /// The next report, or `None` once the source has stopped.
    pub async fn next(&mut self) -> Option<ProbeOutcome> {
        let (_, outcome) = self.rx.recv().await?;
        Some(match outcome {
            SourceOutcome::Complete(listing) => ProbeOutcome::Complete {
                digests: listing.len(),
                running: listing
                    .values()
                    .flat_map(|f| f.running.values())
                    .map(|&n| u64::from(n))
                    .sum(),
            },
            SourceOutcome::Failed(why) => ProbeOutcome::Failed(why),
        })
    }
}

impl Drop for KubernetesProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The source's pod cache, built from pod objects as a list would fill it.
pub struct CacheSample(PodCache);

impl CacheSample {
    /// Decodes each pod (JSON) and records it.
    pub fn build<I, B>(pods: I) -> Result<Self, serde_json::Error>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut cache = PodCache::default();
        for pod in pods {
            let view: PodView = serde_json::from_slice(pod.as_ref())?;
            if let Some(key) = view.key() {
                cache.apply(key, view.usage());
            }
        }
        Ok(CacheSample(cache))
    }

    /// Pods held (those naming a registry digest).
    pub fn pods(&self) -> usize {
        self.0.len()
    }

    /// Digests the listing names.
    pub fn digests(&self) -> usize {
        self.0.listing("bench").len()
    }
}
