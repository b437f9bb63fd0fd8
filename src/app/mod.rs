//! Assembles a running exporter from a configuration: the accounts (each with its client and
//! scheduler), snapshot store, metrics,
//! HTTP server, reloads, target-file watching and the state file. The binary and the integration
//! tests both start it through here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::discovery::sources::Discovery;
use crate::exposition::encode::Exposition;
use crate::poll::state_file;
use crate::poll::store::Store;
use crate::server::listener;
use crate::server::routes::{App, Reload};
use crate::server::webconfig::{self, WebHandle};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::targets::TargetFiles;
use crate::telemetry::{AccountsHandle, ExporterMetrics};

pub(crate) mod accounts;
pub(crate) mod options;
pub(crate) mod reload;

pub use accounts::AccountError;
use accounts::Accounts;
pub use options::Options;
use options::env_var;
pub use reload::{ReloadError, ReloadOutcome};
use reload::{Reloader, base_dir, retained_config};

/// The state file is written at most this often (and at shutdown).
pub const STATE_WRITE_EVERY: Duration = Duration::from_secs(5);

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An account's credentials or client could not be set up.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// A listener's address could not be read.
    #[error("cannot read the listen address: {0}")]
    Listener(std::io::Error),
    /// The web config file is invalid.
    #[error("--web.config.file: {0}")]
    WebConfig(#[from] crate::server::webconfig::WebConfigError),
}

/// A running exporter.
pub struct Exporter {
    /// Where the HTTP server listens.
    pub addrs: Vec<SocketAddr>,
    /// The published state.
    pub store: Arc<Store>,
    /// Reloads configuration and target files.
    pub(crate) reloader: Arc<Reloader>,
    accounts: Arc<Mutex<Accounts>>,
    discovery: Arc<Mutex<Discovery>>,
    trigger: ShutdownTrigger,
    others: Vec<JoinHandle<()>>,
    state_file: Option<PathBuf>,
    metrics: Arc<ExporterMetrics>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Starts polling and serving on the given (already bound) listeners.
    pub async fn start(
        config: &Config,
        listeners: Vec<TcpListener>,
        options: Options,
    ) -> Result<Exporter, StartError> {
        let web_settings = match &options.web_config {
            Some(path) => webconfig::load(path)?,
            None => webconfig::WebSettings::plain(),
        };
        let web: WebHandle = Arc::new(ArcSwap::from_pointee(web_settings));
        let prepared = accounts::prepare(&config.accounts, &BTreeMap::new(), &options).await?;
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Listener)?;

        let mut files = TargetFiles::default();
        let assembled = files.assemble(
            config,
            &base_dir(options.config_path.as_deref()),
            options.shard,
            &env_var,
        );
        for problem in &assembled.problems {
            tracing::error!(problem = %problem, "target problem; continuing without it");
        }
        let restored = match &config.state_file {
            Some(path) => match state_file::read(path) {
                Ok(r) => {
                    tracing::info!(file = %path.display(), digests = r.len(), "state restored");
                    r
                }
                Err(state_file::StateError::Newer { version, .. }) => {
                    match state_file::set_aside(path, version) {
                        Ok(aside) => tracing::warn!(
                            file = %path.display(),
                            kept_as = %aside.display(),
                            version,
                            "state file from a newer exporter set aside, not overwritten"
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot set the newer state file aside")
                        }
                    }
                    Default::default()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "state file ignored");
                    Default::default()
                }
            },
            None => Default::default(),
        };

        let store = Arc::new(Store::default());
        let metrics = Arc::new(ExporterMetrics::new(config.state_file.is_some()));
        metrics.config_loaded(true);
        metrics.target_files(files.status());
        let view: AccountsHandle = Arc::new(ArcSwap::from_pointee(Vec::new()));
        let (trigger, signal) = shutdown::channel();
        let mut running = Accounts::new(
            Arc::clone(&store),
            Arc::clone(&metrics),
            Arc::clone(&view),
            options.clone(),
            signal.clone(),
        );
        running.apply(prepared, &config.polling, &assembled.targets, &restored);
        let mut discovery = Discovery::start(
            &restored,
            options.shard,
            Arc::clone(&metrics),
            signal.clone(),
        );
        discovery.configure(&config.discovery, running.schedulers());
        drop(restored);
        let discovery = Arc::new(Mutex::new(discovery));
        let accounts = Arc::new(Mutex::new(running));
        let reloader = Arc::new(Reloader::new(
            options.clone(),
            Arc::clone(&accounts),
            Arc::clone(&discovery),
            Arc::clone(&metrics),
            retained_config(config),
            files,
        ));
        let app = Arc::new(App {
            exposition: Exposition::new(Arc::clone(&store), &metrics, view),
            store: Arc::clone(&store),
            telemetry_path: options.telemetry_path.clone(),
            reloader: options
                .enable_lifecycle
                .then(|| Arc::clone(&reloader) as Arc<dyn Reload>),
            web: Arc::clone(&web),
            metrics: Arc::clone(&metrics),
        });
        let mut others = vec![tokio::spawn(listener::serve(
            listeners,
            app,
            signal.clone(),
        ))];
        if let Some(path) = &options.web_config {
            others.push(tokio::spawn(webconfig::watch_web_config(
                path.clone(),
                web,
                signal.clone(),
            )));
        }
        if !config.target_files.is_empty() {
            others.push(tokio::spawn(reload::watch_target_files(
                Arc::clone(&reloader),
                signal.clone(),
            )));
        }
        if let Some(path) = &config.state_file {
            others.push(tokio::spawn(write_state_periodically(
                path.clone(),
                Arc::clone(&store),
                Arc::clone(&metrics),
                signal,
            )));
        }
        tracing::info!(
            targets = assembled.targets.len(),
            configured = assembled.total_before_shard,
            accounts = config.accounts.len(),
            discovery_sources = config.discovery.len(),
            shard = format!("{}/{}", options.shard.index, options.shard.total),
            listen = ?addrs,
            "exporter started"
        );
        Ok(Exporter {
            addrs,
            store,
            reloader,
            accounts,
            discovery,
            trigger,
            others,
            state_file: config.state_file.clone(),
            metrics,
        })
    }

    /// Reloads configuration and target files.
    pub async fn reload(&self) -> Result<ReloadOutcome, ReloadError> {
        self.reloader.reload().await
    }

    /// Reloads in a task of its own (SIGHUP), which runs to its end whatever the caller does.
    pub fn spawn_reload(&self) -> JoinHandle<Result<ReloadOutcome, ReloadError>> {
        let reloader = Arc::clone(&self.reloader);
        tokio::spawn(async move { reloader.reload().await })
    }

    /// The current request rate of an account's token bucket (lower than configured while it
    /// recovers from throttling), or `None` for an account that is not configured.
    pub fn current_rate(&self, account: &str) -> Option<f64> {
        self.accounts.lock().current_rate(account)
    }

    /// Stops gracefully: no new requests, in-flight ones finish (bounded by `sas.timeout`), the
    /// final state is written, connections drain.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        let sources = self.discovery.lock().stop_all();
        let pollers = self.accounts.lock().stop_all();
        for task in sources.into_iter().chain(pollers).chain(self.others) {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a background task failed during shutdown");
            }
        }
        if let Some(path) = self.state_file {
            write_state(path, Arc::clone(&self.store), &self.metrics).await;
        }
    }
}

async fn write_state(path: PathBuf, store: Arc<Store>, metrics: &ExporterMetrics) -> u64 {
    let snapshot = store.load();
    let version = snapshot.version;
    let result = tokio::task::spawn_blocking(move || state_file::write(&path, &snapshot)).await;
    let ok = match result {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot write the state file");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "the state writer failed");
            false
        }
    };
    metrics.state_file_written(ok);
    if !ok {
        // Try again at the next tick rather than wait for the next change.
        return 0;
    }
    version
}

async fn write_state_periodically(
    path: PathBuf,
    store: Arc<Store>,
    metrics: Arc<ExporterMetrics>,
    mut shutdown: Shutdown,
) {
    let mut written = 0;
    while shutdown.tick(STATE_WRITE_EVERY).await {
        if store.load().version != written {
            written = write_state(path.clone(), Arc::clone(&store), &metrics).await;
        }
    }
}
