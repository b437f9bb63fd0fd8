//! Credentials and the providers that yield them: long-lived keys, the default chain, STS roles,
//! OIDC (RRSA), CLI profiles, the credentials file, the ECS instance role and a credentials URI,
//! with background refresh for everything temporary.

pub(crate) mod chain;
pub(crate) mod ecs;
pub(crate) mod profile;
pub(crate) mod provider;
pub(crate) mod refresh;
pub(crate) mod settings;
pub(crate) mod source;
pub(crate) mod sts;

pub use crate::aliyun::signing::Credentials;
pub use chain::{Resolver, account_id, provider_from_config};
pub use provider::{
    CredentialsError, CredentialsProvider, FailureKind, ProviderHandle, ProviderStatus,
    StaticProvider,
};
pub use settings::{CredentialsConfig, OidcConfig};
pub use source::Source;
