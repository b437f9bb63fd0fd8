//! Credentials, the provider trait, and long-lived keys.
//!
//! Every request asks its provider for the current credentials, so a provider that refreshes STS
//! tokens in the background can slot in behind the same trait without the client changing.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::aliyun::signing::Credentials;
use crate::fsperm;
/// Environment variable holding the AccessKey ID (the official SDKs' name).
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Environment variable holding the AccessKey secret.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Environment variable holding an STS security token.
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// Why no usable credentials could be produced.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing in the configuration, the environment or the default chain provides credentials.
    #[error("no credentials found; the default chain tried: {}", .0.join("; "))]
    NotFound(Vec<String>),
    /// A file (secret, token, profile) could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A secret or token file exists but holds nothing.
    #[error("the file {0} is empty")]
    EmptyFile(PathBuf),
    /// A profile file is malformed or lacks what the profile needs.
    #[error("{path}: {message}")]
    Profile {
        /// The profile file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A credential source (STS, metadata service, credentials URI) failed.
    #[error("{provider}: {message}")]
    Source {
        /// The provider that failed.
        provider: &'static str,
        /// What went wrong (never a secret).
        message: String,
        /// Whether asking again later may help.
        kind: FailureKind,
    },
    /// The credentials are past their expiration and no fresh ones are available.
    #[error("the credentials from {provider} expired at {at}")]
    Expired {
        /// The provider that produced them.
        provider: &'static str,
        /// When they expired.
        at: DateTime<Utc>,
    },
}

/// Whether a failure may go away by itself, which decides between retrying a source and giving up
/// on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The source could not be reached or was overloaded (network error, timeout, HTTP 5xx,
    /// throttling): the same request may succeed later.
    Transient,
    /// The source refused or answered with something unusable (HTTP 4xx, a malformed answer, a
    /// missing file): asking again will not help until someone changes something.
    Permanent,
}

impl FailureKind {
    /// The kind of a failed HTTP answer from a credential source.
    pub fn of_http_status(status: u16) -> FailureKind {
        if status >= 500 || status == 429 {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        }
    }
}

impl CredentialsError {
    /// Whether the failure may go away without anyone changing the configuration.
    pub fn kind(&self) -> FailureKind {
        match self {
            CredentialsError::Source { kind, .. } => *kind,
            // Credentials that were once issued and then lapsed: the source worked before.
            CredentialsError::Expired { .. } => FailureKind::Transient,
            CredentialsError::NotFound(_)
            | CredentialsError::ReadFile { .. }
            | CredentialsError::EmptyFile(_)
            | CredentialsError::Profile { .. } => FailureKind::Permanent,
        }
    }
}

/// What a provider reports for the `sas_exporter_credentials_*` metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProviderStatus {
    /// Successful fetches (the first one included).
    pub refreshes: u64,
    /// Failed fetches.
    pub refresh_errors: u64,
    /// When the current credentials expire; `None` for long-lived keys.
    pub expiration: Option<DateTime<Utc>>,
}

/// A boxed future, so providers stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of credentials.
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    /// A short name for logs and metric labels, e.g. `static` or `environment`.
    fn name(&self) -> &'static str;

    /// The credentials to sign the next request with.
    fn credentials(&self) -> BoxFuture<'_, Result<Arc<Credentials>, CredentialsError>>;

    /// Refresh counters and expiry; long-lived keys have none.
    fn status(&self) -> ProviderStatus {
        ProviderStatus::default()
    }

    /// How long until a failed source is asked again (its backoff); `None` when nothing holds
    /// the next attempt back, so a caller may ask again at once.
    fn retry_in(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The credentials provider in use, swapped whole when a reload changes the credentials section.
pub type ProviderHandle = Arc<ArcSwap<Arc<dyn CredentialsProvider>>>;

/// Long-lived keys (or a fixed STS token) that never change while the process runs.
#[derive(Debug)]
pub struct StaticProvider {
    name: &'static str,
    creds: Arc<Credentials>,
}

impl StaticProvider {
    /// Wraps fixed credentials under the given provider name.
    pub fn new(name: &'static str, creds: Credentials) -> Self {
        StaticProvider {
            name,
            creds: Arc::new(creds),
        }
    }
}

impl CredentialsProvider for StaticProvider {
    fn name(&self) -> &'static str {
        self.name
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Arc<Credentials>, CredentialsError>> {
        let creds = Arc::clone(&self.creds);
        Box::pin(async move { Ok(creds) })
    }
}

/// Reads credentials from the `ALIBABA_CLOUD_*` variables as the official SDKs do: both the ID and
/// the secret must be non-empty; a non-empty token makes them STS credentials.
pub fn from_environment(env: &dyn Fn(&str) -> Option<String>) -> Option<Credentials> {
    let non_empty = |name| env(name).filter(|v: &String| !v.is_empty());
    let id = non_empty(ENV_ACCESS_KEY_ID)?;
    let secret = non_empty(ENV_ACCESS_KEY_SECRET)?;
    Some(Credentials::new(
        id,
        secret,
        non_empty(ENV_SECURITY_TOKEN),
        None,
    ))
}

/// Reads a secret from a file (trailing newline stripped), warning when others may read it.
pub fn read_secret_file(path: &Path) -> Result<String, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    fsperm::warn_if_readable(
        path,
        "a file holding a secret is readable by group or others; chmod 600 it",
    );
    let secret = text.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(CredentialsError::EmptyFile(path.to_owned()));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::credentials::chain::provider_from_config;
    use crate::aliyun::credentials::settings::CredentialsConfig;
    use crate::clock::Clock;
    use secrecy::ExposeSecret;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn environment_needs_both_id_and_secret() {
        assert!(from_environment(&env_of(&[(ENV_ACCESS_KEY_ID, "id")])).is_none());
        assert!(
            from_environment(&env_of(&[
                (ENV_ACCESS_KEY_ID, "id"),
                (ENV_ACCESS_KEY_SECRET, "")
            ]))
            .is_none()
        );
        let c = from_environment(&env_of(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, "s3cret"),
            (ENV_SECURITY_TOKEN, "tok"),
        ]))
        .expect("both set");
        assert_eq!(c.access_key_id, "id");
        assert_eq!(c.access_key_secret.expose_secret(), "s3cret");
        assert_eq!(
            c.security_token.as_ref().map(|t| t.expose_secret()),
            Some("tok")
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::new("id", "s3cret", Some("tok3n".into()), None);
        let shown = format!("{c:?} {:?}", StaticProvider::new("static", c.clone()));
        assert!(shown.contains("id"));
        assert!(!shown.contains("s3cret"));
        assert!(!shown.contains("tok3n"));
    }

    #[tokio::test]
    async fn config_keys_win_over_environment_and_secret_file_is_read() {
        let dir = std::env::temp_dir().join(format!("sas-cred-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("secret");
        std::fs::write(&file, "from-file\n").expect("write secret");
        let cfg = CredentialsConfig {
            access_key_id: Some("cfg-id".into()),
            access_key_secret_file: Some(file.clone()),
            ..CredentialsConfig::default()
        };
        let env = env_of(&[
            (ENV_ACCESS_KEY_ID, "env-id"),
            (ENV_ACCESS_KEY_SECRET, "x"),
            ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true"),
        ]);
        let p = provider_from_config(Some(&cfg), &env, Clock::system())
            .await
            .expect("provider");
        assert_eq!(p.name(), "static");
        let c = p.credentials().await.expect("creds");
        assert_eq!(c.access_key_id, "cfg-id");
        assert_eq!(c.access_key_secret.expose_secret(), "from-file");

        std::fs::write(&file, "\n").expect("write secret");
        let err = provider_from_config(Some(&cfg), &env, Clock::system())
            .await
            .expect_err("empty file");
        assert_eq!(
            err.to_string(),
            format!("the file {} is empty", file.display())
        );
        std::fs::remove_dir_all(&dir).ok();

        let p = provider_from_config(None, &env, Clock::system())
            .await
            .expect("env provider");
        assert_eq!(p.name(), "environment");
        let none = provider_from_config(
            None,
            &env_of(&[("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")]),
            Clock::system(),
        )
        .await
        .expect_err("nothing");
        assert_eq!(
            none.to_string(),
            "no credentials found; the default chain tried: environment: not configured; oidc: not configured; cli_profile: not configured; credentials_file: not configured"
        );
    }
}
