//! What a `credentials:` section asks for, as the config file walker fills it in. It lives here,
//! beside the providers that read it, so the API layer never looks up into the config layer.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::aliyun::endpoint::Endpoint;

/// The `credentials` section; secrets are wrapped so `Debug` and logs cannot leak them.
///
/// At most one source is set: static keys (`access_key_id`), `profile`, `ecs_ram_role` or
/// `oidc`. `ram_role_arn` assumes a role on top of the static keys, or on top of the default
/// chain when it stands alone. With no source and no role, the default chain is used.
#[derive(Clone, Debug, Default)]
pub struct CredentialsConfig {
    /// AccessKey id (not secret, but useless alone).
    pub access_key_id: Option<String>,
    /// Secret written into the config; discouraged, `access_key_secret_file` is preferred.
    pub access_key_secret: Option<SecretString>,
    /// File holding the secret, read when the provider is built (at start-up and on a reload that
    /// changes this section).
    pub access_key_secret_file: Option<PathBuf>,
    /// STS token for temporary credentials.
    pub security_token: Option<SecretString>,
    /// A profile of the Alibaba Cloud CLI config or of the INI credentials file.
    pub profile: Option<String>,
    /// Role to assume with STS AssumeRole.
    pub ram_role_arn: Option<String>,
    /// Session name for AssumeRole or AssumeRoleWithOIDC.
    pub role_session_name: Option<String>,
    /// AssumeRole `ExternalId`.
    pub external_id: Option<String>,
    /// AssumeRole `Policy`, a JSON object kept as written.
    pub policy: Option<String>,
    /// Lifetime of the assumed role's credentials, 15m to 12h.
    pub duration: Option<Duration>,
    /// ECS instance RAM role; `Some("")` means "ask the metadata service for the role name".
    pub ecs_ram_role: Option<String>,
    /// AssumeRoleWithOIDC (RRSA on Kubernetes).
    pub oidc: Option<OidcConfig>,
    /// STS endpoint override, checked like `sas.endpoint`; the default chain uses it too.
    pub sts_endpoint: Option<Endpoint>,
    /// ECS metadata service override, plain http allowed; the default chain uses it too.
    pub metadata_endpoint: Option<Endpoint>,
}

/// Two sections are equal when they would build the same provider; the secrets are compared
/// in place, never copied out of their wrappers.
impl PartialEq for CredentialsConfig {
    fn eq(&self, other: &Self) -> bool {
        fn secret(s: &Option<SecretString>) -> Option<&str> {
            s.as_ref().map(|s| s.expose_secret())
        }
        self.access_key_id == other.access_key_id
            && secret(&self.access_key_secret) == secret(&other.access_key_secret)
            && self.access_key_secret_file == other.access_key_secret_file
            && secret(&self.security_token) == secret(&other.security_token)
            && self.profile == other.profile
            && self.ram_role_arn == other.ram_role_arn
            && self.role_session_name == other.role_session_name
            && self.external_id == other.external_id
            && self.policy == other.policy
            && self.duration == other.duration
            && self.ecs_ram_role == other.ecs_ram_role
            && self.oidc == other.oidc
            && self.sts_endpoint == other.sts_endpoint
            && self.metadata_endpoint == other.metadata_endpoint
    }
}

/// The `credentials.oidc` mapping; every key is required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    /// The RAM role to assume.
    pub role_arn: String,
    /// The OIDC identity provider registered in RAM.
    pub provider_arn: String,
    /// File holding the OIDC token, re-read on every refresh.
    pub token_file: PathBuf,
}
