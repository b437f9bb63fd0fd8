//! Credential profiles: the `aliyun` CLI's `~/.aliyun/config.json` and the SDKs' INI credentials
//! file (`~/.alibabacloud/credentials.ini` or `credentials`). Both turn into a [`Source`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::provider::CredentialsError;
use super::source::{Source, default_session_name};
use super::sts::RoleParams;
use crate::aliyun::signing::Credentials;

/// Where the CLI keeps its profiles, under the home directory.
pub fn cli_config_path(home: &Path) -> PathBuf {
    home.join(".aliyun").join("config.json")
}

/// The INI credentials file: `ALIBABA_CLOUD_CREDENTIALS_FILE`, else the first of
/// `~/.alibabacloud/credentials.ini` (Python, Java) and `~/.alibabacloud/credentials` (Go) that exists.
pub fn ini_path(home: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = env("ALIBABA_CLOUD_CREDENTIALS_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let dir = home?.join(".alibabacloud");
    ["credentials.ini", "credentials"]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
}

#[derive(Deserialize)]
struct CliConfig {
    #[serde(default)]
    current: String,
    #[serde(default)]
    profiles: Vec<CliProfile>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CliProfile {
    name: String,
    mode: String,
    access_key_id: String,
    access_key_secret: String,
    sts_token: String,
    ram_role_arn: String,
    ram_session_name: String,
    expired_seconds: u64,
    ram_role_name: String,
    oidc_provider_arn: String,
    oidc_token_file: String,
    source_profile: String,
}

/// A profile file's text, `None` when it does not exist; warns when others may read it.
fn read_if_present(path: &Path) -> Result<Option<String>, CredentialsError> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            crate::fsperm::warn_if_readable(
                path,
                "a file holding a secret is readable by group or others; chmod 600 it",
            );
            Ok(Some(t))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CredentialsError::ReadFile {
            path: path.to_owned(),
            source,
        }),
    }
}

fn invalid(path: &Path, message: String) -> CredentialsError {
    CredentialsError::Profile {
        path: path.to_owned(),
        message,
    }
}

/// The profile `name` (else `current`) of a CLI config file; `Ok(None)` when the file is absent.
pub fn from_cli_config(
    path: &Path,
    name: Option<&str>,
) -> Result<Option<Source>, CredentialsError> {
    let Some(text) = read_if_present(path)? else {
        return Ok(None);
    };
    let config: CliConfig = serde_json::from_str(&text)
        .map_err(|e| invalid(path, format!("not a valid CLI config: {e}")))?;
    let name = name.unwrap_or(&config.current);
    cli_source(path, &config, name, 0).map(Some)
}

fn cli_source(
    path: &Path,
    config: &CliConfig,
    name: &str,
    depth: u8,
) -> Result<Source, CredentialsError> {
    if depth > 4 {
        return Err(invalid(
            path,
            format!("source_profile chain too deep at {name:?}"),
        ));
    }
    let p = config
        .profiles
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| invalid(path, format!("no profile named {name:?}")))?;
    let need = |field: &str, v: &str| {
        if v.is_empty() {
            Err(invalid(
                path,
                format!("profile {name:?} (mode {}) lacks {field}", p.mode),
            ))
        } else {
            Ok(v.to_owned())
        }
    };
    let keys = |token: Option<String>| -> Result<Credentials, CredentialsError> {
        Ok(Credentials::new(
            need("access_key_id", &p.access_key_id)?,
            need("access_key_secret", &p.access_key_secret)?,
            token,
            None,
        ))
    };
    let role = || -> Result<RoleParams, CredentialsError> {
        Ok(RoleParams {
            role_arn: need("ram_role_arn", &p.ram_role_arn)?,
            session_name: Some(p.ram_session_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(default_session_name),
            duration: Duration::from_secs(if p.expired_seconds > 0 {
                p.expired_seconds
            } else {
                3600
            }),
            policy: None,
            external_id: None,
        })
    };
    Ok(match p.mode.as_str() {
        "AK" => Source::Static("profile", keys(None)?),
        "StsToken" => Source::Static("profile", keys(Some(need("sts_token", &p.sts_token)?))?),
        "RamRoleArn" => Source::AssumeRole {
            base: Some(Box::new(Source::Static("profile", keys(None)?))),
            role: role()?,
        },
        "EcsRamRole" => Source::EcsRole {
            role: Some(p.ram_role_name.clone()).filter(|r| !r.is_empty()),
        },
        "OIDC" => Source::Oidc {
            role: role()?,
            provider_arn: need("oidc_provider_arn", &p.oidc_provider_arn)?,
            token_file: PathBuf::from(need("oidc_token_file", &p.oidc_token_file)?),
        },
        "ChainableRamRoleArn" => Source::AssumeRole {
            base: Some(Box::new(cli_source(
                path,
                config,
                &need("source_profile", &p.source_profile)?,
                depth + 1,
            )?)),
            role: role()?,
        },
        other => {
            return Err(invalid(
                path,
                format!("profile {name:?} has mode {other:?}, which is not supported"),
            ));
        }
    })
}

/// The section `name` of an INI credentials file; `Ok(None)` when the file or section is absent.
pub fn from_ini(path: &Path, name: &str) -> Result<Option<Source>, CredentialsError> {
    let Some(text) = read_if_present(path)? else {
        return Ok(None);
    };
    let ini = ini::Ini::load_from_str(&text)
        .map_err(|e| invalid(path, format!("not a valid INI file: {e}")))?;
    let Some(section) = ini.section(Some(name)) else {
        return Ok(None);
    };
    let get = |key: &str| section.get(key).map(str::trim).filter(|v| !v.is_empty());
    let need = |key: &str| {
        get(key)
            .map(str::to_owned)
            .ok_or_else(|| invalid(path, format!("section [{name}] lacks {key}")))
    };
    let session = || {
        get("role_session_name")
            .map(str::to_owned)
            .unwrap_or_else(default_session_name)
    };
    let kind = get("type").unwrap_or("access_key");
    Ok(Some(match kind {
        "access_key" => Source::Static(
            "credentials_file",
            Credentials::new(
                need("access_key_id")?,
                need("access_key_secret")?,
                None,
                None,
            ),
        ),
        "ecs_ram_role" => Source::EcsRole {
            role: get("role_name").map(str::to_owned),
        },
        "ram_role_arn" => Source::AssumeRole {
            base: Some(Box::new(Source::Static(
                "credentials_file",
                Credentials::new(
                    need("access_key_id")?,
                    need("access_key_secret")?,
                    None,
                    None,
                ),
            ))),
            role: RoleParams {
                role_arn: need("role_arn")?,
                session_name: session(),
                duration: Duration::from_secs(3600),
                policy: get("policy").map(str::to_owned),
                external_id: None,
            },
        },
        "oidc_role_arn" => Source::Oidc {
            role: RoleParams {
                role_arn: need("role_arn")?,
                session_name: session(),
                duration: Duration::from_secs(3600),
                policy: get("policy").map(str::to_owned),
                external_id: None,
            },
            provider_arn: need("oidc_provider_arn")?,
            token_file: PathBuf::from(need("oidc_token_file_path")?),
        },
        other => {
            return Err(invalid(
                path,
                format!("section [{name}] has type {other:?}, which is not supported"),
            ));
        }
    }))
}
