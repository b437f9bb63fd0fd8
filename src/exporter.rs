//! Assembles a running exporter from a configuration: client, scheduler, snapshot store, metrics
//! and HTTP server. The binary and the integration tests both start it through here.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::client::{ClientBuildError, ClientOptions, SasClient};
use crate::clock::Clock;
use crate::config::Config;
use crate::credentials::{self, CredentialsError};
use crate::http::{self, App};
use crate::metrics::{ExporterMetrics, Exposition};
use crate::scheduler::Scheduler;
use crate::shutdown::{self, ShutdownTrigger};
use crate::state::Store;

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
}

/// Options that come from flags rather than the config file.
#[derive(Clone, Debug)]
pub struct Options {
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Clock for request timestamps (tests skew it).
    pub clock: Clock,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            telemetry_path: "/metrics".to_owned(),
            clock: Clock::system(),
        }
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
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
}

impl Exporter {
    /// Starts polling and serving on the given (already bound) listeners.
    pub async fn start(
        config: &Config,
        listeners: Vec<TcpListener>,
        options: Options,
    ) -> Result<Exporter, StartError> {
        let env = |name: &str| std::env::var(name).ok();
        let provider = credentials::provider_from_config(
            config.credentials.as_ref(),
            &env,
            options.clock.clone(),
        )
        .await?;
        tracing::info!(provider = provider.name(), "credentials provider selected");
        let client = SasClient::new(
            ClientOptions::from_config(&config.sas),
            Arc::clone(&provider),
        )?
        .with_clock(options.clock);
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Listener)?;

        let store = Arc::new(Store::default());
        let metrics = Arc::new(ExporterMetrics::default());
        metrics.config_loaded(true);
        let scheduler = Scheduler::new(
            client,
            config.polling.clone(),
            &config.targets,
            Arc::clone(&store),
            Arc::clone(&metrics),
        );
        let app = Arc::new(App {
            exposition: Exposition::new(Arc::clone(&store), &metrics, provider),
            store: Arc::clone(&store),
            telemetry_path: options.telemetry_path,
        });
        let (trigger, signal) = shutdown::channel();
        let poller = {
            let scheduler = scheduler.clone();
            let signal = signal.clone();
            let grace = config.sas.timeout;
            tokio::spawn(async move { scheduler.run(signal, grace).await })
        };
        let server = tokio::spawn(http::serve(listeners, app, signal));
        tracing::info!(
            targets = config.targets.len(),
            listen = ?addrs,
            endpoint = %config.sas.endpoint_url(),
            "exporter started"
        );
        Ok(Exporter {
            addrs,
            store,
            scheduler,
            trigger,
            tasks: vec![poller, server],
        })
    }

    /// Stops gracefully: no new requests, in-flight ones finish (bounded by `sas.timeout`),
    /// connections drain.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a background task failed during shutdown");
            }
        }
    }
}
