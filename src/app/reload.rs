//! Reloading: the config file on SIGHUP or `POST /-/reload`, and target files when they change
//! on disk. An invalid config is rejected whole and the running one stays.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::app::accounts::{self, AccountError, Accounts};
use crate::app::options::{Options, env_var};
use crate::config::{Config, ConfigError, config_dir};
use crate::discovery::sources::Discovery;
use crate::server::routes::{BoxFuture, Reload};
use crate::shutdown::Shutdown;
use crate::targets::{Assembled, TargetFiles};
use crate::telemetry::ExporterMetrics;

/// How often target files are checked for changes on disk.
pub const TARGET_FILE_CHECK_EVERY: Duration = Duration::from_secs(3);

/// Why a reload was rejected; the previous configuration stays in effect.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config file is invalid (every problem is listed).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An account's new credentials or `sas` section yields no usable provider or client.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The worker that parses the new config failed.
    #[error("the reload worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// What a successful reload applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Running without a config file (demo mode): there is nothing to re-read.
    NoConfigFile,
    /// The new configuration is in force.
    Applied {
        /// Targets this instance now polls.
        targets: usize,
        /// Targets configured before sharding.
        configured: usize,
        /// This instance's shard index.
        shard_index: u64,
        /// The number of shards.
        shard_total: u64,
        /// Target problems that were skipped (the rest of the config applied).
        problems: Vec<String>,
    },
}

impl fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadOutcome::NoConfigFile => {
                f.write_str("nothing to reload: running without a config file (demo mode)")
            }
            ReloadOutcome::Applied {
                targets,
                configured,
                shard_index,
                shard_total,
                problems,
            } => {
                write!(
                    f,
                    "{targets} targets ({configured} configured, shard {shard_index}/{shard_total})"
                )?;
                if !problems.is_empty() {
                    write!(f, "; kept going despite: {}", problems.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

/// Re-reads configuration and target files and applies them to the running accounts.
pub(crate) struct Reloader {
    options: Options,
    accounts: Arc<Mutex<Accounts>>,
    discovery: Arc<Mutex<Discovery>>,
    metrics: Arc<ExporterMetrics>,
    current: Mutex<Config>,
    files: Mutex<TargetFiles>,
    serial: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// Where relative `target_files` globs start: the config file's directory (`.` in demo mode).
pub(crate) fn base_dir(config_path: Option<&Path>) -> PathBuf {
    config_path.map_or_else(|| PathBuf::from("."), config_dir)
}

impl Reloader {
    /// A reloader that starts from `current` (the retained start-up config).
    pub(crate) fn new(
        options: Options,
        accounts: Arc<Mutex<Accounts>>,
        discovery: Arc<Mutex<Discovery>>,
        metrics: Arc<ExporterMetrics>,
        current: Config,
        files: TargetFiles,
    ) -> Self {
        Reloader {
            options,
            accounts,
            discovery,
            metrics,
            current: Mutex::new(current),
            files: Mutex::new(files),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    fn lock_files(&self) -> MutexGuard<'_, TargetFiles> {
        self.files.lock()
    }

    /// Reloads the config file and target files. An invalid config is rejected whole and the
    /// running one stays; the error says what was wrong.
    pub(crate) async fn reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let _serial = self.serial.lock().await;
        let Some(path) = self.options.config_path.clone() else {
            return Ok(ReloadOutcome::NoConfigFile);
        };
        let result = self.reload_from(&path).await;
        self.metrics.config_loaded(result.is_ok());
        // The parsed file and every target a reload dropped were just freed; hand the pages
        // back, off the async workers since it walks the whole heap.
        drop(tokio::task::spawn_blocking(crate::memory::release_freed));
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

    async fn reload_from(&self, path: &Path) -> Result<ReloadOutcome, ReloadError> {
        // A config with a long target list takes a while to parse: never on the async workers,
        // where it would hold up scrapes and polls.
        let file = path.to_owned();
        let config = Arc::new(tokio::task::spawn_blocking(move || Config::load(&file)).await??);
        // Everything that can fail is built before anything running changes.
        let running = self.accounts.lock().current();
        let prepared = accounts::prepare(&config.accounts, &running, &self.options).await?;
        let assembled = self
            .assemble_off_workers(Arc::clone(&config), base_dir(Some(path)), false)
            .await?
            .unwrap_or_default();
        let schedulers = {
            let mut accounts = self.accounts.lock();
            accounts.apply(
                prepared,
                &config.polling,
                &assembled.targets,
                &HashMap::new(),
            );
            accounts.schedulers()
        };
        // Merging every source's listing again is work for the blocking pool.
        let discovery = Arc::clone(&self.discovery);
        let sources = config.discovery.clone();
        tokio::task::spawn_blocking(move || discovery.lock().configure(&sources, schedulers))
            .await?;
        let outcome = ReloadOutcome::Applied {
            targets: assembled.targets.len(),
            configured: assembled.total_before_shard,
            shard_index: self.options.shard.index,
            shard_total: self.options.shard.total,
            problems: assembled.problems,
        };
        *self.current.lock() = retained_config(&config);
        Ok(outcome)
    }

    /// Reads the target files and merges them with `config`'s targets on the blocking pool: a
    /// long list takes a while. With `only_if_changed`, nothing is assembled (`None`) when no
    /// file changed; telling needs every file's content, so that runs there too. Callers hold
    /// `serial`, so the files' state is theirs meanwhile.
    async fn assemble_off_workers(
        &self,
        config: Arc<Config>,
        base: PathBuf,
        only_if_changed: bool,
    ) -> Result<Option<Assembled>, ReloadError> {
        let mut files = std::mem::take(&mut *self.lock_files());
        let shard = self.options.shard;
        let (files, assembled) = tokio::task::spawn_blocking(move || {
            if only_if_changed && !files.changed(&config, &base) {
                return (files, None);
            }
            let assembled = files.assemble(&config, &base, shard, &env_var);
            (files, Some(assembled))
        })
        .await?;
        if assembled.is_some() {
            self.metrics.target_files(files.status());
        }
        *self.lock_files() = files;
        Ok(assembled)
    }

    /// Re-reads the target files if any changed on disk, keeping the rest of the config.
    pub(crate) async fn refresh_target_files(&self) {
        let _serial = self.serial.lock().await;
        let config = Arc::new(self.current.lock().clone());
        let base = base_dir(self.options.config_path.as_deref());
        let assembled = match self
            .assemble_off_workers(Arc::clone(&config), base, true)
            .await
        {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "target files not re-read");
                return;
            }
        };
        tracing::info!(
            targets = assembled.targets.len(),
            "target files changed on disk; targets updated"
        );
        let mut accounts = self.accounts.lock();
        let kept = accounts.keep_as_they_are();
        accounts.apply(kept, &config.polling, &assembled.targets, &HashMap::new());
    }
}

/// What the reloader keeps of the start-up config. Inline targets are only needed to merge with
/// target files that change on disk; without target files a reload re-reads everything anyway,
/// so a 10 000-target list is not kept twice for the life of the process.
pub(crate) fn retained_config(config: &Config) -> Config {
    Config {
        accounts: config.accounts.clone(),
        polling: config.polling.clone(),
        targets: if config.target_files.is_empty() {
            Vec::new()
        } else {
            config.targets.clone()
        },
        target_files: config.target_files.clone(),
        discovery: config.discovery.clone(),
        state_file: config.state_file.clone(),
    }
}

impl Reload for Reloader {
    fn reload(&self) -> BoxFuture<'_, Result<String, Box<dyn std::error::Error + Send + Sync>>> {
        Box::pin(async move {
            Reloader::reload(self)
                .await
                .map(|outcome| outcome.to_string())
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}

/// Checks the target files every few seconds and applies what changed.
pub(crate) async fn watch_target_files(reloader: Arc<Reloader>, mut shutdown: Shutdown) {
    while shutdown.tick(TARGET_FILE_CHECK_EVERY).await {
        reloader.refresh_target_files().await;
    }
}
