//! The `kubernetes` discovery source: the pods of a cluster, read with the Kubernetes API (only
//! `get`, `list` and `watch` on pods). One list-and-watch loop per configured namespace (one for
//! all namespaces when none is) feeds a compact pod cache; while every loop is in sync the
//! source reports the cache's complete listing, at most about once a second and promptly after
//! a quiet spell. While any loop fails it reports why instead, so the registry keeps the last
//! complete set, and reports the listing again once every loop is back in sync.
//!
//! A digest is listed while some pod that has not ended (pending, running or unknown) names it;
//! `running` counts only its running containers, per workload, and keeps a workload at 0 while
//! its containers wait or restart.

use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::KubernetesConfig;
use crate::shutdown::Shutdown;

use super::listing::Reporter;
use super::pod_cache::PodCache;
use super::pod_watch::{Outbox, RETRY, Scope, StreamEvent, list_and_watch};

/// Reports of changes are at least this far apart.
const MIN_GAP: Duration = Duration::from_secs(1);
/// After a quiet spell, a change is reported this soon, so that the rest of a burst (a rollout
/// replacing many pods) goes into the same report.
const SETTLE: Duration = Duration::from_millis(100);
/// Events in flight from the loops; a full channel slows the watches, not the memory.
const CHANNEL: usize = 1024;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// No in-cluster service account (not running in a pod, or no token mounted).
    #[error("in-cluster configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    /// The kubeconfig file is unreadable or names no usable context.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The configured file.
        path: String,
        /// What is wrong with it.
        source: kube::config::KubeconfigError,
    },
    /// The client refused the configuration (TLS material, proxy).
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Watches the configured pods and reports their listing until `shutdown`.
pub(crate) async fn run(config: KubernetesConfig, reporter: Reporter, mut shutdown: Shutdown) {
    let client = tokio::select! {
        client = connect_retrying(&config, &reporter) => client,
        _ = shutdown.wait() => return,
    };
    let scopes: Vec<Scope> = if config.namespaces.is_empty() {
        vec![Scope {
            namespace: None,
            label_selector: config.label_selector.clone(),
        }]
    } else {
        config
            .namespaces
            .iter()
            .map(|ns| Scope {
                namespace: Some(ns.clone()),
                label_selector: config.label_selector.clone(),
            })
            .collect()
    };
    let (tx, mut rx) = mpsc::channel(CHANNEL);
    // Dropping the set at the end aborts every loop.
    let mut loops = JoinSet::new();
    for (index, scope) in scopes.iter().enumerate() {
        let outbox = Outbox {
            index,
            tx: tx.clone(),
        };
        loops.spawn(list_and_watch(client.clone(), scope.clone(), outbox));
    }
    drop(tx);
    let mut source = Aggregate::new(config.cluster, scopes, reporter);
    loop {
        let due = source.due;
        tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            _ = sleep_until(due) => source.report(),
            event = rx.recv() => match event {
                Some((index, event)) => source.handle(index, event),
                None => return,
            },
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The client, retried with backoff until the configuration works; each distinct error is
/// logged and reported once.
async fn connect_retrying(config: &KubernetesConfig, reporter: &Reporter) -> Client {
    let mut attempt = 0u32;
    let mut last: Option<String> = None;
    loop {
        match connect(config).await {
            Ok(client) => return client,
            Err(e) => {
                let why = e.to_string();
                if last.as_deref() != Some(why.as_str()) {
                    tracing::warn!(source = "kubernetes", error = %why, "cannot reach the Kubernetes API");
                    reporter.failed(&why);
                    last = Some(why);
                }
                tokio::time::sleep(RETRY.full_jitter(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

async fn connect(config: &KubernetesConfig) -> Result<Client, ConnectError> {
    let client_config = match &config.kubeconfig {
        None => kube::Config::incluster()?,
        Some(path) => {
            let failed = |source| ConnectError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(failed)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(failed)?
        }
    };
    Ok(Client::try_from(client_config)?)
}

/// The loops' state and the cache, and when the next report is due.
struct Aggregate {
    cluster: String,
    scopes: Vec<Scope>,
    loops: Vec<LoopState>,
    cache: PodCache,
    reporter: Reporter,
    /// The cache changed (or a loop recovered) since the last complete report.
    pending: bool,
    due: Option<Instant>,
    last_report: Option<Instant>,
}

#[derive(Debug, Default)]
struct LoopState {
    listed: bool,
    failure: Option<String>,
}

impl Aggregate {
    fn new(cluster: String, scopes: Vec<Scope>, reporter: Reporter) -> Self {
        let loops = scopes.iter().map(|_| LoopState::default()).collect();
        Aggregate {
            cluster,
            scopes,
            loops,
            cache: PodCache::default(),
            reporter,
            pending: false,
            due: None,
            last_report: None,
        }
    }

    fn handle(&mut self, index: usize, event: StreamEvent) {
        let Some(scope) = self.scopes.get(index) else {
            return;
        };
        match event {
            StreamEvent::Listed(pods) => {
                self.cache.replace(scope.namespace.as_deref(), pods);
                self.loops[index].listed = true;
                self.recovered(index);
                self.pending = true;
            }
            StreamEvent::Changed(key, pod) => {
                if self.cache.apply(key, pod) {
                    self.pending = true;
                }
            }
            StreamEvent::InSync => {
                if self.recovered(index) {
                    self.pending = true;
                }
            }
            StreamEvent::Failed(why) => {
                let state = &mut self.loops[index];
                if state.failure.as_deref() != Some(why.as_str()) {
                    tracing::warn!(source = "kubernetes", error = %why, "pod discovery failing; the last complete listing stays");
                    self.reporter.failed(&why);
                    state.failure = Some(why);
                } else {
                    tracing::debug!(source = "kubernetes", error = %why, "pod discovery still failing");
                }
            }
        }
        self.schedule();
    }

    /// Clears a loop's failure; true when it had one.
    fn recovered(&mut self, index: usize) -> bool {
        let Some(why) = self.loops[index].failure.take() else {
            return false;
        };
        tracing::info!(source = "kubernetes", scope = %self.scopes[index].describe(), was = %why, "pod discovery in sync again");
        true
    }

    fn in_sync(&self) -> bool {
        self.loops.iter().all(|l| l.listed && l.failure.is_none())
    }

    fn schedule(&mut self) {
        if !self.pending || self.due.is_some() || !self.in_sync() {
            return;
        }
        let now = Instant::now();
        self.due = Some(match self.last_report {
            // The first listing goes out at once: until then the source names nothing.
            None => now,
            Some(last) => (now + SETTLE).max(last + MIN_GAP),
        });
    }

    fn report(&mut self) {
        self.due = None;
        if !self.in_sync() {
            return;
        }
        self.pending = false;
        self.last_report = Some(Instant::now());
        self.reporter.complete(self.cache.listing(&self.cluster));
    }
}
