//! Assembles a running exporter from a configuration: client, scheduler, snapshot store, metrics,
//! HTTP server, reloads, target-file watching and the state file. The binary and the integration
//! tests both start it through here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::client::{ClientBuildError, ClientOptions, SasClient};
use crate::clock::Clock;
use crate::config::{Config, CredentialsConfig};
use crate::credentials::{self, CredentialsError, CredentialsProvider};
use crate::http::{self, App};
use crate::metrics::{ExporterMetrics, Exposition};
use crate::persist;
use crate::scheduler::Scheduler;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::state::Store;
use crate::targets::{Shard, TargetFiles};

/// How often target files are checked for changes on disk.
pub const TARGET_FILE_CHECK_EVERY: Duration = Duration::from_secs(3);
/// The state file is written at most this often (and at shutdown).
pub const STATE_WRITE_EVERY: Duration = Duration::from_secs(5);

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No usable credentials.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The API client could not be built.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    /// A listener's address could not be read.
    #[error("cannot read the listen address: {0}")]
    Listener(std::io::Error),
    /// The web config file is invalid.
    #[error("--web.config.file: {0}")]
    WebConfig(#[from] crate::webconfig::WebConfigError),
}

/// Options that come from flags rather than the config file.
#[derive(Clone, Debug)]
pub struct Options {
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Clock for request timestamps (tests skew it).
    pub clock: Clock,
    /// The config file, re-read on reload; `None` in demo mode.
    pub config_path: Option<PathBuf>,
    /// Which digests this instance polls.
    pub shard: Shard,
    /// Serve `POST /-/reload`.
    pub enable_lifecycle: bool,
    /// `--web.config.file`: TLS, basic auth, headers.
    pub web_config: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            telemetry_path: "/metrics".to_owned(),
            clock: Clock::system(),
            config_path: None,
            shard: Shard::default(),
            enable_lifecycle: false,
            web_config: None,
        }
    }
}

/// The credentials provider in use, swapped by reloads that change credentials.
pub type ProviderHandle = Arc<RwLock<Arc<dyn CredentialsProvider>>>;

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Re-reads configuration and target files and applies them to the running scheduler.
pub struct Reloader {
    options: Options,
    scheduler: Scheduler,
    metrics: Arc<ExporterMetrics>,
    provider: ProviderHandle,
    current: Mutex<(Config, SasClient)>,
    files: Mutex<TargetFiles>,
    serial: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

fn base_dir(config_path: Option<&Path>) -> PathBuf {
    config_path
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// True when two credentials sections would build the same provider.
fn same_credentials(a: Option<&CredentialsConfig>, b: Option<&CredentialsConfig>) -> bool {
    let secret =
        |s: &Option<secrecy::SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            // Debug redacts the secrets, so they are compared on their own.
            format!("{a:?}") == format!("{b:?}")
                && secret(&a.access_key_secret) == secret(&b.access_key_secret)
                && secret(&a.security_token) == secret(&b.security_token)
        }
        _ => false,
    }
}

impl Reloader {
    fn lock_current(&self) -> std::sync::MutexGuard<'_, (Config, SasClient)> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, TargetFiles> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads the config file and target files. An invalid config is rejected whole and the
    /// running one stays; the error says what was wrong.
    pub async fn reload(&self) -> Result<String, String> {
        let _serial = self.serial.lock().await;
        let Some(path) = self.options.config_path.clone() else {
            return Ok("nothing to reload: running without a config file (demo mode)".into());
        };
        let result = self.reload_from(&path).await;
        self.metrics.config_loaded(result.is_ok());
        match &result {
            Ok(summary) => {
                tracing::info!(file = %path.display(), %summary, "configuration reloaded")
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "reload rejected; the previous configuration stays in effect")
            }
        }
        result
    }

    async fn reload_from(&self, path: &Path) -> Result<String, String> {
        let config = Config::load(path).map_err(|e| e.to_string())?;
        let (old_sas, old_creds, old_client) = {
            let cur = self.lock_current();
            (cur.0.sas.clone(), cur.0.credentials.clone(), cur.1.clone())
        };
        let creds_changed = !same_credentials(old_creds.as_ref(), config.credentials.as_ref());
        let client = if creds_changed || old_sas != config.sas {
            let provider = if creds_changed {
                let p = credentials::provider_from_config(
                    config.credentials.as_ref(),
                    &env_var,
                    self.options.clock.clone(),
                )
                .await
                .map_err(|e| format!("credentials: {e}"))?;
                tracing::info!(provider = p.name(), "credentials provider selected");
                *self.provider.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&p);
                p
            } else {
                Arc::clone(old_client.credentials_provider())
            };
            SasClient::new(ClientOptions::from_config(&config.sas), provider)
                .map_err(|e| e.to_string())?
                .with_clock(self.options.clock.clone())
        } else {
            old_client
        };
        let assembled = self.lock_files().assemble(
            &config,
            &base_dir(Some(path)),
            self.options.shard,
            &env_var,
        );
        self.metrics.target_files(self.lock_files().status());
        self.scheduler
            .reconfigure(client.clone(), config.polling.clone(), &assembled.targets);
        let summary = format!(
            "{} targets ({} configured, shard {}/{}){}",
            assembled.targets.len(),
            assembled.total_before_shard,
            self.options.shard.index,
            self.options.shard.total,
            if assembled.problems.is_empty() {
                String::new()
            } else {
                format!("; kept going despite: {}", assembled.problems.join("; "))
            }
        );
        *self.lock_current() = (config, client);
        Ok(summary)
    }

    /// Re-reads the target files if any changed on disk, keeping the rest of the config.
    pub async fn refresh_target_files(&self) {
        let _serial = self.serial.lock().await;
        let (config, client) = self.lock_current().clone();
        let base = base_dir(self.options.config_path.as_deref());
        if !self.lock_files().changed(&config, &base) {
            return;
        }
        let assembled = self
            .lock_files()
            .assemble(&config, &base, self.options.shard, &env_var);
        self.metrics.target_files(self.lock_files().status());
        tracing::info!(
            targets = assembled.targets.len(),
            "target files changed on disk; targets updated"
        );
        self.scheduler
            .reconfigure(client, config.polling.clone(), &assembled.targets);
    }
}

/// What the reloader keeps of the start-up config. Inline targets are only needed to merge with
/// target files that change on disk; without target files a reload re-reads everything anyway,
/// so a 10 000-target list is not kept twice for the life of the process.
fn retained_config(config: &Config) -> Config {
    Config {
        sas: config.sas.clone(),
        credentials: config.credentials.clone(),
        polling: config.polling.clone(),
        targets: if config.target_files.is_empty() {
            Vec::new()
        } else {
            config.targets.clone()
        },
        target_files: config.target_files.clone(),
        state_file: config.state_file.clone(),
    }
}

/// A running exporter.
#[derive(Debug)]
pub struct Exporter {
    /// Where the HTTP server listens.
    pub addrs: Vec<SocketAddr>,
    /// The published state.
    pub store: Arc<Store>,
    /// The polling engine.
    pub scheduler: Scheduler,
    /// Reloads configuration and target files.
    pub reloader: Arc<Reloader>,
    trigger: ShutdownTrigger,
    poller: JoinHandle<()>,
    others: Vec<JoinHandle<()>>,
    state_file: Option<PathBuf>,
}

impl Exporter {
    /// Starts polling and serving on the given (already bound) listeners.
    pub async fn start(
        config: &Config,
        listeners: Vec<TcpListener>,
        options: Options,
    ) -> Result<Exporter, StartError> {
        let web_settings = match &options.web_config {
            Some(path) => crate::webconfig::load(path)?,
            None => crate::webconfig::WebSettings::plain(),
        };
        let web: crate::http::WebHandle = Arc::new(arc_swap::ArcSwap::from_pointee(web_settings));
        let provider = credentials::provider_from_config(
            config.credentials.as_ref(),
            &env_var,
            options.clock.clone(),
        )
        .await?;
        tracing::info!(provider = provider.name(), "credentials provider selected");
        let client = SasClient::new(
            ClientOptions::from_config(&config.sas),
            Arc::clone(&provider),
        )?
        .with_clock(options.clock.clone());
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
            Some(path) => match persist::read(path) {
                Ok(r) => {
                    tracing::info!(file = %path.display(), digests = r.len(), "state restored");
                    r
                }
                Err(e) => {
                    tracing::warn!(error = %e, "state file ignored");
                    Default::default()
                }
            },
            None => Default::default(),
        };

        let store = Arc::new(Store::default());
        let metrics = Arc::new(ExporterMetrics::default());
        metrics.config_loaded(true);
        metrics.target_files(files.status());
        let scheduler = Scheduler::new(
            client.clone(),
            config.polling.clone(),
            &assembled.targets,
            &restored,
            Arc::clone(&store),
            Arc::clone(&metrics),
        );
        let provider: ProviderHandle = Arc::new(RwLock::new(provider));
        let reloader = Arc::new(Reloader {
            options: options.clone(),
            scheduler: scheduler.clone(),
            metrics: Arc::clone(&metrics),
            provider: Arc::clone(&provider),
            current: Mutex::new((retained_config(config), client)),
            files: Mutex::new(files),
            serial: tokio::sync::Mutex::new(()),
        });
        let app = Arc::new(App {
            exposition: Exposition::new(Arc::clone(&store), &metrics, provider),
            store: Arc::clone(&store),
            telemetry_path: options.telemetry_path.clone(),
            reloader: options.enable_lifecycle.then(|| Arc::clone(&reloader)),
            web: Arc::clone(&web),
        });
        let (trigger, signal) = shutdown::channel();
        let poller = {
            let scheduler = scheduler.clone();
            let signal = signal.clone();
            let grace = config.sas.timeout;
            tokio::spawn(async move { scheduler.run(signal, grace).await })
        };
        let mut others = vec![tokio::spawn(http::serve(listeners, app, signal.clone()))];
        if let Some(path) = &options.web_config {
            others.push(tokio::spawn(http::watch_web_config(
                path.clone(),
                web,
                signal.clone(),
            )));
        }
        if !config.target_files.is_empty() {
            others.push(tokio::spawn(watch_target_files(
                Arc::clone(&reloader),
                signal.clone(),
            )));
        }
        if let Some(path) = &config.state_file {
            others.push(tokio::spawn(write_state_periodically(
                path.clone(),
                Arc::clone(&store),
                signal,
            )));
        }
        tracing::info!(
            targets = assembled.targets.len(),
            configured = assembled.total_before_shard,
            shard = format!("{}/{}", options.shard.index, options.shard.total),
            listen = ?addrs,
            endpoint = %config.sas.endpoint_url(),
            "exporter started"
        );
        Ok(Exporter {
            addrs,
            store,
            scheduler,
            reloader,
            trigger,
            poller,
            others,
            state_file: config.state_file.clone(),
        })
    }

    /// Reloads configuration and target files (SIGHUP).
    pub async fn reload(&self) -> Result<String, String> {
        self.reloader.reload().await
    }

    /// Stops gracefully: no new requests, in-flight ones finish (bounded by `sas.timeout`), the
    /// final state is written, connections drain.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        if let Err(e) = self.poller.await {
            tracing::error!(error = %e, "the poller failed during shutdown");
        }
        for task in self.others {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a background task failed during shutdown");
            }
        }
        if let Some(path) = self.state_file {
            write_state(path, Arc::clone(&self.store)).await;
        }
    }
}

async fn write_state(path: PathBuf, store: Arc<Store>) -> u64 {
    let snapshot = store.load();
    let version = snapshot.version;
    let result = tokio::task::spawn_blocking(move || persist::write(&path, &snapshot)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write the state file"),
        Err(e) => tracing::error!(error = %e, "the state writer failed"),
    }
    version
}

async fn write_state_periodically(path: PathBuf, store: Arc<Store>, mut shutdown: Shutdown) {
    let mut written = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(STATE_WRITE_EVERY) => {}
            _ = shutdown.wait() => return,
        }
        if store.load().version != written {
            written = write_state(path.clone(), Arc::clone(&store)).await;
        }
    }
}

async fn watch_target_files(reloader: Arc<Reloader>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TARGET_FILE_CHECK_EVERY) => {}
            _ = shutdown.wait() => return,
        }
        reloader.refresh_target_files().await;
    }
}
