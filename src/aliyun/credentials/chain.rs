//! Turns the `credentials:` section and the environment into a provider: the source the section
//! names, else the Alibaba Cloud default chain in the official SDKs' order.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::ExposeSecret;

use super::ecs::{self, EcsRoleFetcher, UriFetcher};
use super::profile;
use super::provider::{
    BoxFuture, CredentialsError, CredentialsProvider, FailureKind, StaticProvider,
    from_environment, read_secret_file,
};
use super::refresh::{Fetcher, RefreshingProvider};
use super::source::{Source, default_session_name};
use super::sts::{self, AssumeRoleFetcher, OidcFetcher, RoleParams, StsClient};
use crate::aliyun::credentials::settings::CredentialsConfig;
use crate::aliyun::endpoint::Endpoint;
use crate::aliyun::signing::Credentials;
use crate::clock::Clock;

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

    /// Whether a chain step that failed only for now is kept and retried. Every step is, except
    /// the ECS role when nothing names it: off ECS its metadata address is simply unreachable,
    /// which must fall through to the next step, as in the SDKs.
    fn keeps_transient_failures(&self, step: &str) -> bool {
        step != "ecs_ram_role"
            || (self.env)("ALIBABA_CLOUD_ECS_METADATA").is_some_and(|r| !r.is_empty())
    }

    /// The default chain: the first candidate that yields credentials is kept, and so is the
    /// first one that is configured but fails only transiently (STS briefly unreachable): its
    /// provider retries with backoff instead of start-up failing. A permanent failure (a missing
    /// file, a refusal) falls through to the next candidate.
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
                let provider = match self.build(source).await {
                    Ok(p) => p,
                    Err(e) => {
                        tried.push(format!("{name}: {e}"));
                        continue;
                    }
                };
                match provider.credentials().await {
                    Ok(_) => {
                        tracing::info!(
                            source = name,
                            provider = provider.name(),
                            "default credentials chain resolved"
                        );
                        return Ok(provider);
                    }
                    Err(e)
                        if e.kind() == FailureKind::Transient
                            && self.keeps_transient_failures(name) =>
                    {
                        tracing::warn!(
                            source = name,
                            provider = provider.name(),
                            error = %e,
                            retry_in = ?provider.retry_in(),
                            "default credentials chain: this source is configured but failed for now; keeping it and retrying with backoff"
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

/// The ID of the account `provider`'s credentials belong to, from STS `GetCallerIdentity` at the
/// STS endpoint this configuration resolves to.
pub async fn account_id(
    cfg: Option<&CredentialsConfig>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    clock: Clock,
    provider: &dyn CredentialsProvider,
) -> Result<String, CredentialsError> {
    let creds = provider.credentials().await?;
    let resolver = Resolver::new(cfg, env, clock.clone());
    StsClient::new(&resolver.sts_endpoint, clock)?
        .get_caller_identity(&creds)
        .await
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
