//! Where credentials come from, described before any network call is made.

use std::path::PathBuf;

use super::sts::RoleParams;
use crate::aliyun::signing::Credentials;

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
