//! The accounts at run time. Each has its own credentials provider, client and scheduler (with
//! its own token bucket, concurrency limit and throttling slow-down), so one account's
//! throttling or broken credentials never slow or stop another's.
//!
//! Changing the set is two steps: [`prepare`] builds what may fail (providers, clients) without
//! touching what runs, and [`Accounts::apply`] swaps it in, which cannot fail. A reload whose new
//! accounts cannot be built is rejected whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::aliyun::client::{
    ACTION, CONTAINERS_ACTION, ClientBuildError, IMAGES_ACTION, SasClient,
};
use crate::aliyun::credentials::{self, CredentialsError, CredentialsProvider, FailureKind};
use crate::app::options::{Options, env_var};
use crate::backoff::Backoff;
use crate::config::{AccountConfig, PollingConfig, Target};
use crate::poll::scheduler::Scheduler;
use crate::poll::store::{Store, TargetState};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::telemetry::{AccountStatus, AccountsHandle, ExporterMetrics};

/// Waits between checks whether an account's credentials work yet, before asking STS its ID.
const IDENTITY_WAIT: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));

/// Why an account could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Its credentials section yields no usable credentials.
    #[error("account {account}: credentials: {source}")]
    Credentials {
        /// The account.
        account: String,
        /// What went wrong.
        source: CredentialsError,
    },
    /// Its `sas` section yields no usable client.
    #[error("account {account}: {source}")]
    Client {
        /// The account.
        account: String,
        /// What went wrong.
        source: ClientBuildError,
    },
}

/// What [`prepare`] built for one account: ready to run, nothing started yet.
pub(crate) struct Prepared {
    config: AccountConfig,
    provider: Arc<dyn CredentialsProvider>,
    client: SasClient,
    /// False when the credentials are those already running, so nothing about them changed.
    new_provider: bool,
}

/// Builds every account of `configs`, reusing the running provider of an account whose
/// credentials section did not change and its client when its `sas` section did not change
/// either. Fails on the first account that cannot be built; nothing running is touched.
pub(crate) async fn prepare(
    configs: &[AccountConfig],
    running: &BTreeMap<String, Current>,
    options: &Options,
) -> Result<Vec<Prepared>, AccountError> {
    let mut out = Vec::with_capacity(configs.len());
    for config in configs {
        let current = running.get(&config.name);
        let same_credentials = current.is_some_and(|r| r.config.credentials == config.credentials);
        let (provider, new_provider) = match current {
            Some(r) if same_credentials => (Arc::clone(r.client.credentials_provider()), false),
            _ => {
                let provider = credentials::provider_from_config(
                    config.credentials.as_ref(),
                    &env_var,
                    options.clock.clone(),
                )
                .await
                .map_err(|source| AccountError::Credentials {
                    account: config.name.clone(),
                    source,
                })?;
                tracing::info!(
                    account = %config.name,
                    provider = provider.name(),
                    "credentials provider selected"
                );
                (provider, true)
            }
        };
        let client = match current {
            Some(r) if same_credentials && r.config.sas == config.sas => r.client.clone(),
            _ => SasClient::new(config.sas.client_options(), Arc::clone(&provider))
                .map_err(|source| AccountError::Client {
                    account: config.name.clone(),
                    source,
                })?
                .with_clock(options.clock.clone()),
        };
        out.push(Prepared {
            config: config.clone(),
            provider,
            client,
            new_provider,
        });
    }
    Ok(out)
}

/// What [`prepare`] needs to know of a running account: what it was built from and its client.
#[derive(Clone)]
pub(crate) struct Current {
    config: AccountConfig,
    client: SasClient,
}

/// One running account.
pub(crate) struct RunningAccount {
    config: AccountConfig,
    client: SasClient,
    scheduler: Scheduler,
    status: Arc<AccountStatus>,
    stop: ShutdownTrigger,
    poller: Option<JoinHandle<()>>,
    /// Learns the account ID; aborted when the account stops, since it may wait for ever.
    identity: JoinHandle<()>,
}

/// Every running account, and what they share: the store they publish into, the exporter's
/// instruments, and the list `/metrics` shows.
pub(crate) struct Accounts {
    running: BTreeMap<String, RunningAccount>,
    store: Arc<Store>,
    metrics: Arc<ExporterMetrics>,
    view: AccountsHandle,
    options: Options,
    /// The process-wide shutdown, which also stops every account.
    shutdown: Shutdown,
    /// Pollers of removed accounts that may still finish requests in flight.
    retiring: Vec<JoinHandle<()>>,
    /// Set by [`Accounts::stop_all`]: a reload that ends after it starts nothing.
    stopped: bool,
}

impl Accounts {
    /// No accounts yet; [`Accounts::apply`] starts them.
    pub(crate) fn new(
        store: Arc<Store>,
        metrics: Arc<ExporterMetrics>,
        view: AccountsHandle,
        options: Options,
        shutdown: Shutdown,
    ) -> Self {
        Accounts {
            running: BTreeMap::new(),
            store,
            metrics,
            view,
            options,
            shutdown,
            retiring: Vec::new(),
            stopped: false,
        }
    }

    /// The running accounts by name, for [`prepare`] (which must not hold the lock while it
    /// awaits providers).
    pub(crate) fn current(&self) -> BTreeMap<String, Current> {
        self.running
            .iter()
            .map(|(name, r)| {
                let current = Current {
                    config: r.config.clone(),
                    client: r.client.clone(),
                };
                (name.clone(), current)
            })
            .collect()
    }

    /// The running accounts prepared as they are, for a change of targets alone.
    pub(crate) fn keep_as_they_are(&self) -> Vec<Prepared> {
        self.running
            .values()
            .map(|r| Prepared {
                config: r.config.clone(),
                provider: Arc::clone(r.client.credentials_provider()),
                client: r.client.clone(),
                new_provider: false,
            })
            .collect()
    }

    /// Makes the prepared accounts the running ones: new accounts start (their targets due at
    /// once, or as `restored` says), kept ones take the new client, limits and targets without
    /// losing their data or schedule, and accounts no longer configured stop and leave
    /// `/metrics` at once.
    pub(crate) fn apply(
        &mut self,
        prepared: Vec<Prepared>,
        polling: &PollingConfig,
        targets: &[Target],
        restored: &HashMap<(String, String), TargetState>,
    ) {
        if self.stopped {
            return;
        }
        // Borrowed, not cloned: at start-up the config's targets, the assembled list and this
        // split would otherwise all be alive at once beside the schedulers' own state.
        let mut by_account: HashMap<&str, Vec<&Target>> = HashMap::new();
        for t in targets {
            by_account.entry(t.account.as_str()).or_default().push(t);
        }
        let wanted: Vec<String> = prepared.iter().map(|p| p.config.name.clone()).collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| !wanted.contains(name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(mut account) = self.running.remove(&name) {
                let metrics = Arc::clone(&self.metrics);
                account.scheduler.retire(|| {
                    metrics.forget_account(&name, &[ACTION, IMAGES_ACTION, CONTAINERS_ACTION])
                });
                account.stop.trigger();
                account.identity.abort();
                // Its requests in flight get their grace; shutdown waits for them too.
                self.retiring.retain(|h| !h.is_finished());
                self.retiring.extend(account.poller.take());
                tracing::info!(account = %name, "account removed; its targets are gone");
            }
        }
        for p in prepared {
            let name = p.config.name.clone();
            let account_polling = PollingConfig {
                requests_per_second: p.config.requests_per_second,
                concurrency: p.config.concurrency,
                ..polling.clone()
            };
            let mine = by_account.remove(name.as_str()).unwrap_or_default();
            match self.running.get_mut(&name) {
                Some(running) => {
                    running
                        .scheduler
                        .reconfigure(p.client.clone(), account_polling, &mine);
                    running.status.site.store(Arc::new(p.config.sas.site()));
                    if p.new_provider {
                        running
                            .status
                            .provider
                            .store(Arc::new(Arc::clone(&p.provider)));
                        running.status.account_id.store(None);
                        running.identity.abort();
                        running.identity =
                            Self::identity_task(&p, Arc::clone(&running.status), &self.options);
                    }
                    running.config = p.config;
                    running.client = p.client;
                }
                None => {
                    let account = self.start(p, account_polling, &mine, restored);
                    self.running.insert(name, account);
                }
            }
        }
        let view = self
            .running
            .values()
            .map(|r| Arc::clone(&r.status))
            .collect();
        self.view.store(Arc::new(view));
    }

    fn start(
        &self,
        p: Prepared,
        polling: PollingConfig,
        targets: &[&Target],
        restored: &HashMap<(String, String), TargetState>,
    ) -> RunningAccount {
        let name: Arc<str> = Arc::from(p.config.name.as_str());
        let mine: HashMap<String, TargetState> = restored
            .iter()
            .filter(|((account, _), _)| **account == *name)
            .map(|((_, digest), state)| (digest.clone(), state.clone()))
            .collect();
        let scheduler = Scheduler::new(
            Arc::clone(&name),
            p.client.clone(),
            polling,
            targets,
            mine,
            Arc::clone(&self.store),
            Arc::clone(&self.metrics),
        );
        let (stop, stopped) = shutdown::channel();
        let signal = shutdown::either(self.shutdown.clone(), stopped);
        let grace = p.config.sas.timeout;
        let poller = {
            let scheduler = scheduler.clone();
            tokio::spawn(async move { scheduler.run(signal, grace).await })
        };
        let status = Arc::new(AccountStatus::new(
            Arc::clone(&name),
            p.config.sas.site(),
            Arc::new(arc_swap::ArcSwap::from_pointee(Arc::clone(&p.provider))),
        ));
        let identity = Self::identity_task(&p, Arc::clone(&status), &self.options);
        tracing::info!(
            account = %name,
            targets = targets.len(),
            endpoint = %p.config.sas.endpoint_url(),
            site = %p.config.sas.site(),
            "account started"
        );
        RunningAccount {
            config: p.config,
            client: p.client,
            scheduler,
            status,
            stop,
            poller: Some(poller),
            identity,
        }
    }

    /// Learns the account ID once the credentials work: `account_id` stays empty until then,
    /// and when STS refuses or cannot be reached (logged once).
    fn identity_task(
        p: &Prepared,
        status: Arc<AccountStatus>,
        options: &Options,
    ) -> JoinHandle<()> {
        let config = p.config.clone();
        let provider = Arc::clone(&p.provider);
        let clock = options.clock.clone();
        // A Security Center endpoint on loopback without an STS endpoint is a local stand-in
        // (the simulator, a test): there is no STS to ask, and the public one must not be.
        let sts_known = config
            .credentials
            .as_ref()
            .is_some_and(|c| c.sts_endpoint.is_some());
        let local = config
            .sas
            .endpoint
            .as_ref()
            .is_some_and(|e| e.is_loopback());
        tokio::spawn(async move {
            if local && !sts_known {
                tracing::debug!(account = %config.name, "no STS endpoint for a local Security Center; account_id stays empty");
                return;
            }
            let mut attempt = 0;
            while provider.credentials().await.is_err() {
                tokio::time::sleep(IDENTITY_WAIT.ceiling(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
            // A refusal is final; STS out of reach or overloaded is asked again, logged once.
            let mut attempt = 0;
            loop {
                let asked = credentials::account_id(
                    config.credentials.as_ref(),
                    &env_var,
                    clock.clone(),
                    &*provider,
                )
                .await;
                match asked {
                    Ok(id) => {
                        tracing::info!(account = %config.name, account_id = %id, "account identified");
                        status.account_id.store(Some(Arc::new(id)));
                        return;
                    }
                    Err(e) if e.kind() == FailureKind::Transient => {
                        if attempt == 0 {
                            tracing::warn!(
                                account = %config.name,
                                error = %e,
                                "GetCallerIdentity failed for now; asking again with backoff"
                            );
                        }
                        tokio::time::sleep(IDENTITY_WAIT.ceiling(attempt)).await;
                        attempt = attempt.saturating_add(1);
                    }
                    Err(e) => {
                        tracing::warn!(
                            account = %config.name,
                            error = %e,
                            "GetCallerIdentity refused; sas_exporter_account_info keeps account_id empty"
                        );
                        return;
                    }
                }
            }
        })
    }

    /// Every running account's scheduler, for the discovery sources.
    pub(crate) fn schedulers(&self) -> std::collections::BTreeMap<Arc<str>, Scheduler> {
        self.running
            .iter()
            .map(|(name, r)| (Arc::from(name.as_str()), r.scheduler.clone()))
            .collect()
    }

    /// The current request rate of an account's token bucket.
    pub(crate) fn current_rate(&self, account: &str) -> Option<f64> {
        self.running
            .get(account)
            .map(|r| r.scheduler.current_rate())
    }

    /// Stops every account and hands back the tasks to wait for.
    pub(crate) fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        self.stopped = true;
        let mut tasks: Vec<JoinHandle<()>> = self.retiring.drain(..).collect();
        for account in self.running.values_mut() {
            account.stop.trigger();
            account.identity.abort();
            tasks.extend(account.poller.take());
        }
        tasks
    }
}
