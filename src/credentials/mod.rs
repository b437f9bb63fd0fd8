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

use crate::clock::Clock;
use crate::config::{CredentialsConfig, Endpoint};

pub mod ecs;
pub mod profile;
pub mod refresh;
pub mod sts;

use ecs::{EcsRoleFetcher, UriFetcher};
use refresh::{Fetcher, RefreshingProvider};
use sts::{AssumeRoleFetcher, OidcFetcher, RoleParams, StsClient};

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

/// Where credentials come from, before any network call is made.
#[derive(Debug, Clone)]
pub enum Source {
    /// Fixed keys, under a provider name (`static`, `environment`, `profile`, ...).
    Static(&'static str, Credentials),
    /// `AssumeRole` from `base`, or from the default chain when `base` is `None`.
    AssumeRole {
        /// The identity that assumes the role.
        base: Option<Box<Source>>,
        /// The role.
        role: RoleParams,
    },
    /// `AssumeRoleWithOIDC` (RRSA).
    Oidc {
        /// The role.
        role: RoleParams,
        /// `OIDCProviderArn`.
        provider_arn: String,
        /// The projected token file.
        token_file: PathBuf,
    },
    /// The ECS instance RAM role; `None` discovers the role name.
    EcsRole {
        /// The role name.
        role: Option<String>,
    },
    /// `ALIBABA_CLOUD_CREDENTIALS_URI`.
    Uri(String),
}

/// The session name used when none is configured: the SDKs generate one too.
pub fn default_session_name() -> String {
    "sas-image-scan-exporter".to_owned()
}

fn is_true(v: Option<String>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Turns configuration and environment into a provider.
pub struct Resolver<'a> {
    env: &'a (dyn Fn(&str) -> Option<String> + Sync),
    clock: Clock,
    sts_endpoint: String,
    metadata_endpoint: String,
}

impl<'a> Resolver<'a> {
    /// A resolver with the endpoint overrides of `cfg` (if any).
    pub fn new(
        cfg: Option<&CredentialsConfig>,
        env: &'a (dyn Fn(&str) -> Option<String> + Sync),
        clock: Clock,
    ) -> Self {
        Resolver {
            sts_endpoint: sts::sts_endpoint(
                cfg.and_then(|c| c.sts_endpoint.as_ref())
                    .map(Endpoint::as_str),
                env,
            ),
            metadata_endpoint: cfg
                .and_then(|c| c.metadata_endpoint.as_ref())
                .map_or(ecs::DEFAULT_METADATA_ENDPOINT, Endpoint::as_str)
                .to_owned(),
            env,
            clock,
        }
    }

    /// The source the `credentials:` section names, or `None` for the default chain.
    pub fn configured_source(
        &self,
        cfg: &CredentialsConfig,
    ) -> Result<Option<Source>, CredentialsError> {
        let role = |arn: &str| RoleParams {
            role_arn: arn.to_owned(),
            session_name: cfg
                .role_session_name
                .clone()
                .or_else(|| (self.env)("ALIBABA_CLOUD_ROLE_SESSION_NAME").filter(|s| !s.is_empty()))
                .unwrap_or_else(default_session_name),
            duration: cfg.duration.unwrap_or(std::time::Duration::from_secs(3600)),
            policy: cfg.policy.clone(),
            external_id: cfg.external_id.clone(),
        };
        let static_keys = match &cfg.access_key_id {
            Some(id) => {
                let secret = match (&cfg.access_key_secret, &cfg.access_key_secret_file) {
                    (Some(s), _) => s.expose_secret().to_owned(),
                    (None, Some(path)) => read_secret_file(path)?,
                    (None, None) => {
                        return Err(CredentialsError::NotFound(vec![
                            "the credentials section has access_key_id but no secret".into(),
                        ]));
                    }
                };
                let token = cfg
                    .security_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned())
                    .filter(|t| !t.is_empty());
                Some(Source::Static(
                    "static",
                    Credentials::new(id.clone(), secret, token, None),
                ))
            }
            None => None,
        };
        if let Some(arn) = &cfg.ram_role_arn {
            return Ok(Some(Source::AssumeRole {
                base: static_keys.map(Box::new),
                role: role(arn),
            }));
        }
        if static_keys.is_some() {
            return Ok(static_keys);
        }
        if let Some(name) = &cfg.profile {
            return self.profile(Some(name))?.map(Some).ok_or_else(|| {
                CredentialsError::NotFound(vec![format!(
                    "profile {name:?} is in neither the CLI config nor the credentials file"
                )])
            });
        }
        if let Some(name) = &cfg.ecs_ram_role {
            return Ok(Some(Source::EcsRole {
                role: Some(name.clone()).filter(|n| !n.is_empty()),
            }));
        }
        if let Some(oidc) = &cfg.oidc {
            return Ok(Some(Source::Oidc {
                role: role(&oidc.role_arn),
                provider_arn: oidc.provider_arn.clone(),
                token_file: oidc.token_file.clone(),
            }));
        }
        Ok(None)
    }

    /// A named profile: the CLI config first, then the INI credentials file.
    fn profile(&self, name: Option<&str>) -> Result<Option<Source>, CredentialsError> {
        let home = (self.env)("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let env_profile = (self.env)("ALIBABA_CLOUD_PROFILE").filter(|p| !p.is_empty());
        let name = name.map(str::to_owned).or(env_profile);
        if let Some(home) = &home {
            match profile::from_cli_config(&profile::cli_config_path(home), name.as_deref()) {
                Ok(Some(source)) => return Ok(Some(source)),
                Ok(None) => {}
                // The CLI file exists but lacks this profile: the INI file may have it.
                Err(CredentialsError::Profile { message, .. })
                    if message.starts_with("no profile named") => {}
                Err(e) => return Err(e),
            }
        }
        match profile::ini_path(home.as_deref(), self.env) {
            Some(path) => profile::from_ini(&path, name.as_deref().unwrap_or("default")),
            None => Ok(None),
        }
    }

    /// Builds the provider for a source; `AssumeRole` without a base resolves the default chain.
    pub fn build(
        &self,
        source: Source,
    ) -> BoxFuture<'_, Result<Arc<dyn CredentialsProvider>, CredentialsError>> {
        Box::pin(async move {
            let clock = self.clock.clone();
            let refreshing = |name, fetcher: Box<dyn Fetcher>| -> Arc<dyn CredentialsProvider> {
                Arc::new(RefreshingProvider::new(name, fetcher, clock.clone()))
            };
            Ok(match source {
                Source::Static(name, creds) => Arc::new(StaticProvider::new(name, creds)),
                Source::AssumeRole { base, role } => {
                    let source = match base {
                        Some(b) => self.build(*b).await?,
                        None => self.default_chain().await?,
                    };
                    let sts = StsClient::new(&self.sts_endpoint, clock.clone())?;
                    refreshing(
                        "ram_role_arn",
                        Box::new(AssumeRoleFetcher { sts, source, role }),
                    )
                }
                Source::Oidc {
                    role,
                    provider_arn,
                    token_file,
                } => {
                    let sts = StsClient::new(&self.sts_endpoint, clock.clone())?;
                    refreshing(
                        "oidc",
                        Box::new(OidcFetcher {
                            sts,
                            role,
                            provider_arn,
                            token_file,
                        }),
                    )
                }
                Source::EcsRole { role } => refreshing(
                    "ecs_ram_role",
                    Box::new(EcsRoleFetcher::new(
                        &self.metadata_endpoint,
                        role,
                        is_true((self.env)("ALIBABA_CLOUD_IMDSV1_DISABLED")),
                    )),
                ),
                Source::Uri(uri) => refreshing("credentials_uri", Box::new(UriFetcher::new(&uri))),
            })
        })
    }

    /// The default chain's candidates in the SDKs' order, with the ones switched off left out.
    pub fn chain_sources(&self) -> Vec<(&'static str, Result<Option<Source>, CredentialsError>)> {
        let env = self.env;
        let set = |k: &str| env(k).filter(|v| !v.is_empty());
        let mut out: Vec<(&'static str, Result<Option<Source>, CredentialsError>)> = Vec::new();
        out.push((
            "environment",
            Ok(from_environment(env).map(|c| Source::Static("environment", c))),
        ));
        let oidc = match (
            set("ALIBABA_CLOUD_ROLE_ARN"),
            set("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
            set("ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
        ) {
            (Some(role_arn), Some(provider_arn), Some(token_file)) => Some(Source::Oidc {
                role: RoleParams {
                    role_arn,
                    session_name: set("ALIBABA_CLOUD_ROLE_SESSION_NAME")
                        .unwrap_or_else(default_session_name),
                    duration: std::time::Duration::from_secs(3600),
                    policy: None,
                    external_id: None,
                },
                provider_arn,
                token_file: PathBuf::from(token_file),
            }),
            _ => None,
        };
        out.push(("oidc", Ok(oidc)));
        if !is_true(env("ALIBABA_CLOUD_CLI_PROFILE_DISABLED")) {
            let home = set("HOME").map(PathBuf::from);
            let cli = match &home {
                Some(h) => profile::from_cli_config(
                    &profile::cli_config_path(h),
                    set("ALIBABA_CLOUD_PROFILE").as_deref(),
                ),
                None => Ok(None),
            };
            out.push(("cli_profile", cli));
        }
        let ini = match profile::ini_path(set("HOME").map(PathBuf::from).as_deref(), env) {
            Some(path) => profile::from_ini(
                &path,
                set("ALIBABA_CLOUD_PROFILE").as_deref().unwrap_or("default"),
            ),
            None => Ok(None),
        };
        out.push(("credentials_file", ini));
        if !is_true(env("ALIBABA_CLOUD_ECS_METADATA_DISABLED")) {
            out.push((
                "ecs_ram_role",
                Ok(Some(Source::EcsRole {
                    role: set("ALIBABA_CLOUD_ECS_METADATA"),
                })),
            ));
        }
        if let Some(uri) = set("ALIBABA_CLOUD_CREDENTIALS_URI") {
            out.push(("credentials_uri", Ok(Some(Source::Uri(uri)))));
        }
        out
    }

    /// The default chain: the first candidate that yields credentials is kept.
    pub fn default_chain(
        &self,
    ) -> BoxFuture<'_, Result<Arc<dyn CredentialsProvider>, CredentialsError>> {
        Box::pin(async move {
            let mut tried = Vec::new();
            for (name, candidate) in self.chain_sources() {
                let source = match candidate {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        tried.push(format!("{name}: not configured"));
                        continue;
                    }
                    Err(e) => {
                        tried.push(format!("{name}: {e}"));
                        continue;
                    }
                };
                let attempt = async {
                    let provider = self.build(source).await?;
                    provider.credentials().await?;
                    Ok::<_, CredentialsError>(provider)
                };
                match attempt.await {
                    Ok(provider) => {
                        tracing::info!(
                            source = name,
                            provider = provider.name(),
                            "default credentials chain resolved"
                        );
                        return Ok(provider);
                    }
                    Err(e) => tried.push(format!("{name}: {e}")),
                }
            }
            Err(CredentialsError::NotFound(tried))
        })
    }
}

/// Picks the provider for this configuration: the source the `credentials:` section names, else
/// the Alibaba Cloud default chain.
pub async fn provider_from_config(
    cfg: Option<&CredentialsConfig>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    clock: Clock,
) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
    let resolver = Resolver::new(cfg, env, clock);
    let source = match cfg {
        Some(c) => resolver.configured_source(c)?,
        None => None,
    };
    match source {
        Some(s) => resolver.build(s).await,
        None => resolver.default_chain().await,
    }
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
