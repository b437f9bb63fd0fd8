//! The settings that come from flags rather than the config file.

use std::path::PathBuf;

use crate::clock::Clock;
use crate::targets::Shard;

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

/// The process environment, as the config's `${VAR}` and the credential providers read it.
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
