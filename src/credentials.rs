//! Credentials and the providers that yield them.
//!
//! Every request asks its provider for the current credentials, so a provider that refreshes STS
//! tokens in the background can slot in behind the same trait without the client changing.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::config::CredentialsConfig;

/// Environment variable holding the AccessKey ID (the official SDKs' name).
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Environment variable holding the AccessKey secret.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Environment variable holding an STS security token.
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// One set of credentials. `Debug` shows the AccessKey ID only; the secret and token never print.
#[derive(Clone)]
pub struct Credentials {
    /// The AccessKey ID; not a secret, it appears in every signed request.
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: SecretString,
    /// The STS security token, for temporary credentials.
    pub security_token: Option<SecretString>,
    /// When temporary credentials stop working; `None` for long-lived keys.
    pub expiration: Option<DateTime<Utc>>,
}

impl Credentials {
    /// Builds credentials from plain strings (the secret is wrapped at once).
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
        expiration: Option<DateTime<Utc>>,
    ) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            access_key_secret: SecretString::from(access_key_secret.into()),
            security_token: security_token.map(SecretString::from),
            expiration,
        }
    }

    /// True once `now` is past the expiration of temporary credentials.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expiration.is_some_and(|e| now >= e)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"[redacted]")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// Why no usable credentials could be produced.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing in the configuration or the environment provides credentials.
    #[error(
        "no credentials found: configure the credentials section or set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}"
    )]
    NotFound,
    /// A secret file could not be read.
    #[error("cannot read the secret file {path}: {source}")]
    ReadFile {
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A secret file exists but holds nothing.
    #[error("the secret file {0} is empty")]
    EmptyFile(PathBuf),
    /// The credentials are past their expiration and no fresh ones are available.
    #[error("the credentials from {provider} expired at {at}")]
    Expired {
        /// The provider that produced them.
        provider: &'static str,
        /// When they expired.
        at: DateTime<Utc>,
    },
}

/// A boxed future, so providers stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of credentials.
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    /// A short name for logs and metric labels, e.g. `static` or `environment`.
    fn name(&self) -> &'static str;

    /// The credentials to sign the next request with.
    fn credentials(&self) -> BoxFuture<'_, Result<Arc<Credentials>, CredentialsError>>;
}

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

/// Picks the provider for this configuration: the config's static keys when given, else the
/// environment.
pub fn provider_from_config(
    cfg: Option<&CredentialsConfig>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
    if let Some(cfg) = cfg
        && let Some(id) = &cfg.access_key_id
    {
        let secret = match (&cfg.access_key_secret, &cfg.access_key_secret_file) {
            (Some(s), _) => s.expose_secret().to_owned(),
            (None, Some(path)) => read_secret_file(path)?,
            (None, None) => return Err(CredentialsError::NotFound),
        };
        let token = cfg
            .security_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned())
            .filter(|t| !t.is_empty());
        return Ok(Arc::new(StaticProvider::new(
            "static",
            Credentials::new(id.clone(), secret, token, None),
        )));
    }
    from_environment(env)
        .map(|c| Arc::new(StaticProvider::new("environment", c)) as Arc<dyn CredentialsProvider>)
        .ok_or(CredentialsError::NotFound)
}

/// Reads a secret from a file (trailing newline stripped), warning when others may read it.
pub fn read_secret_file(path: &Path) -> Result<String, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    warn_if_readable_by_others(path);
    let secret = text.trim_end_matches(['\r', '\n']).to_owned();
    if secret.is_empty() {
        return Err(CredentialsError::EmptyFile(path.to_owned()));
    }
    Ok(secret)
}

/// Logs a warning when a secret-bearing file can be read by its group or by others.
pub fn warn_if_readable_by_others(path: &Path) {
    if let Some(mode) = group_or_other_readable(path) {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{mode:o}"),
            "a file holding a secret is readable by group or others; chmod 600 it"
        );
    }
}

#[cfg(unix)]
fn group_or_other_readable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn group_or_other_readable(_path: &Path) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
            access_key_secret: None,
            access_key_secret_file: Some(file.clone()),
            security_token: None,
        };
        let env = env_of(&[(ENV_ACCESS_KEY_ID, "env-id"), (ENV_ACCESS_KEY_SECRET, "x")]);
        let p = provider_from_config(Some(&cfg), &env).expect("provider");
        assert_eq!(p.name(), "static");
        let c = p.credentials().await.expect("creds");
        assert_eq!(c.access_key_id, "cfg-id");
        assert_eq!(c.access_key_secret.expose_secret(), "from-file");

        std::fs::write(&file, "\n").expect("write secret");
        let err = provider_from_config(Some(&cfg), &env).expect_err("empty file");
        assert_eq!(
            err.to_string(),
            format!("the secret file {} is empty", file.display())
        );
        std::fs::remove_dir_all(&dir).ok();

        let p = provider_from_config(None, &env).expect("env provider");
        assert_eq!(p.name(), "environment");
        let none = provider_from_config(None, &env_of(&[])).expect_err("nothing");
        assert!(matches!(none, CredentialsError::NotFound));
    }
}
