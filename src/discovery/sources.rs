//! The running sources: started, kept or stopped as the configuration changes, their outcomes
//! merged by the registry off the async workers, and lingering digests expired on time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::unix_now;
use crate::config::{DiscoveryConfig, SourceKind};
use crate::discovery::listing::{Reporter, SourceKey, SourceOutcome};
use crate::discovery::registry::Registry;
use crate::discovery::{kubernetes, sas};
use crate::poll::scheduler::Scheduler;
use crate::poll::store::TargetState;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::targets::Shard;
use crate::telemetry::ExporterMetrics;

/// How often lingering digests are checked for the end of their `keep_for`.
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(1);

struct Running {
    scheduler: Scheduler,
    stop: ShutdownTrigger,
    task: JoinHandle<()>,
}

/// Every running discovery source and the registry that merges what they find.
pub(crate) struct Discovery {
    registry: Arc<Mutex<Registry>>,
    tx: mpsc::UnboundedSender<(SourceKey, SourceOutcome)>,
    running: HashMap<SourceKey, Running>,
    next_key: u64,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Discovery {
    /// The registry (seeded with what the state file knew) and its background tasks; no source
    /// runs until [`Discovery::configure`].
    pub(crate) fn start(
        restored: &HashMap<(String, String), TargetState>,
        shard: Shard,
        metrics: Arc<ExporterMetrics>,
        shutdown: Shutdown,
    ) -> Self {
        let registry = Arc::new(Mutex::new(Registry::new(restored, shard, metrics)));
        let (tx, rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(merge_reports(Arc::clone(&registry), rx, shutdown.clone())),
            tokio::spawn(expire(Arc::clone(&registry), shutdown.clone())),
        ];
        Discovery {
            registry,
            tx,
            running: HashMap::new(),
            next_key: 0,
            shutdown,
            tasks,
        }
    }

    /// Makes `sources` the running set against the accounts' current `schedulers`: a source
    /// whose kind, settings and account are unchanged keeps running and keeps what it listed
    /// (its labels and `keep_for` may change); others stop, and their digests linger for their
    /// `keep_for`; new ones start. Every account's discovered set is published again.
    pub(crate) fn configure(
        &mut self,
        sources: &[DiscoveryConfig],
        schedulers: BTreeMap<Arc<str>, Scheduler>,
    ) {
        let mut registry = self.registry.lock();
        registry.set_schedulers(schedulers);
        let current: Vec<(SourceKey, DiscoveryConfig)> =
            registry.configs().map(|(k, c)| (k, c.clone())).collect();
        let mut unmatched: Vec<&DiscoveryConfig> = sources.iter().collect();
        for (key, config) in current {
            let scheduler_same = match (self.running.get(&key), registry.scheduler(&config.account))
            {
                (Some(r), Some(s)) => r.scheduler.same(s),
                _ => false,
            };
            let wanted = unmatched.iter().position(|c| {
                scheduler_same && c.kind == config.kind && c.account == config.account
            });
            match wanted {
                Some(i) => {
                    let new = unmatched.swap_remove(i);
                    registry.update(key, new.clone());
                }
                None => {
                    if let Some(r) = self.running.remove(&key) {
                        r.stop.trigger();
                        r.task.abort();
                    }
                    registry.remove(key);
                    tracing::info!(source = config.source_name(), account = %config.account, "discovery source stopped");
                }
            }
        }
        for config in unmatched {
            let Some(scheduler) = registry.scheduler(&config.account).cloned() else {
                continue;
            };
            let key = SourceKey(self.next_key);
            self.next_key += 1;
            registry.add(key, config.clone());
            let (stop, stopped) = shutdown::channel();
            let signal = shutdown::either(self.shutdown.clone(), stopped);
            let reporter = Reporter::new(key, self.tx.clone());
            let task = spawn_source(config.clone(), scheduler.clone(), reporter, signal);
            tracing::info!(source = config.source_name(), account = %config.account, "discovery source started");
            self.running.insert(
                key,
                Running {
                    scheduler,
                    stop,
                    task,
                },
            );
        }
        // Every account, so the first publish also drops saved states no target names.
        for account in registry.accounts() {
            registry.publish(&account);
        }
    }

    /// Stops every source; hands back the tasks to wait for.
    pub(crate) fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = self.tasks.drain(..).collect();
        for (_, r) in self.running.drain() {
            r.stop.trigger();
            tasks.push(r.task);
        }
        tasks
    }
}

fn spawn_source(
    config: DiscoveryConfig,
    scheduler: Scheduler,
    reporter: Reporter,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    match config.kind.clone() {
        SourceKind::SasImages { .. } | SourceKind::SasContainers { .. } => {
            tokio::spawn(sas::run(config, scheduler, reporter, shutdown))
        }
        SourceKind::Kubernetes(k) => tokio::spawn(kubernetes::run(k, reporter, shutdown)),
    }
}

/// Merges each outcome into the registry on the blocking pool (a 10 000-row listing is a few
/// milliseconds of work that must not hold up scrapes) and publishes the account's new set.
async fn merge_reports(
    registry: Arc<Mutex<Registry>>,
    mut rx: mpsc::UnboundedReceiver<(SourceKey, SourceOutcome)>,
    mut shutdown: Shutdown,
) {
    loop {
        let (key, outcome) = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => r,
                None => return,
            },
            _ = shutdown.wait() => return,
        };
        let registry = Arc::clone(&registry);
        let merged = tokio::task::spawn_blocking(move || {
            let mut registry = registry.lock();
            if let Some(account) = registry.report(key, outcome) {
                registry.publish(&account);
            }
            registry.show_sources();
        })
        .await;
        if let Err(e) = merged {
            tracing::error!(error = %e, "merging a discovery listing failed");
        }
    }
}

/// Drops lingering digests once their `keep_for` is over.
async fn expire(registry: Arc<Mutex<Registry>>, mut shutdown: Shutdown) {
    while shutdown.tick(EXPIRY_CHECK_EVERY).await {
        let due = registry.lock().expired(unix_now());
        if due.is_empty() {
            continue;
        }
        // Publishing merges the account's listings again: work for the blocking pool.
        let registry = Arc::clone(&registry);
        let merged = tokio::task::spawn_blocking(move || {
            let mut registry = registry.lock();
            for account in due {
                registry.publish(&account);
            }
        })
        .await;
        if let Err(e) = merged {
            tracing::error!(error = %e, "expiring lingering digests failed");
        }
    }
}
