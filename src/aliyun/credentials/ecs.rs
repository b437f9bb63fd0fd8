//! The ECS instance RAM role (metadata service, IMDSv2 token with v1 fallback) and
//! `ALIBABA_CLOUD_CREDENTIALS_URI`, which answers in the same JSON shape.

use std::time::Duration;

use serde::Deserialize;

use super::provider::{BoxFuture, CredentialsError, FailureKind};
use super::refresh::Fetcher;
use super::sts::{TemporaryCredentials, read_failure_kind};
use crate::aliyun::signing::Credentials;
use crate::aliyun::transport::{self, error_chain, read_body_capped};

/// The metadata service's address on every ECS instance.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://100.100.100.200";
/// The SDKs give the metadata service one second.
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BODY: usize = 64 * 1024;
const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

fn http_client(timeout: Duration, url: &str) -> reqwest::Client {
    // The metadata service and credential URIs are local services: never via a proxy.
    let mut builder = transport::http_client(timeout, true);
    if url.starts_with("https://") {
        builder = builder.https_only(true);
    }
    // Building fails only if TLS cannot initialise; fall back to the default client then.
    builder.build().unwrap_or_default()
}

/// Fetches the instance's RAM role credentials from the metadata service.
#[derive(Debug)]
pub struct EcsRoleFetcher {
    http: reqwest::Client,
    endpoint: String,
    role: Option<String>,
    imds_v1_disabled: bool,
}

impl EcsRoleFetcher {
    /// `role` `None` discovers the role name; `imds_v1_disabled` forbids going on without a token.
    pub fn new(endpoint: &str, role: Option<String>, imds_v1_disabled: bool) -> Self {
        EcsRoleFetcher {
            http: http_client(METADATA_TIMEOUT, endpoint),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            role: role.filter(|r| !r.is_empty()),
            imds_v1_disabled,
        }
    }

    fn fail(kind: FailureKind, message: String) -> CredentialsError {
        CredentialsError::Source {
            provider: "ecs_ram_role",
            message,
            kind,
        }
    }

    async fn get_text(&self, path: &str, token: Option<&str>) -> Result<String, CredentialsError> {
        let mut req = self.http.get(format!("{}{path}", self.endpoint));
        if let Some(t) = token {
            req = req.header("X-aliyun-ecs-metadata-token", t);
        }
        let resp = req.send().await.map_err(|e| {
            Self::fail(
                FailureKind::Transient,
                format!("metadata service unreachable: {}", error_chain(e)),
            )
        })?;
        let status = resp.status().as_u16();
        let body = read_body_capped(resp, MAX_BODY).await.map_err(|e| {
            Self::fail(
                read_failure_kind(&e),
                format!("reading the metadata answer failed: {e}"),
            )
        })?;
        if status != 200 {
            return Err(Self::fail(
                FailureKind::of_http_status(status),
                format!("metadata service answered HTTP {status} for {path}"),
            ));
        }
        String::from_utf8(body).map_err(|_| {
            Self::fail(
                FailureKind::Permanent,
                format!("{path}: answer is not UTF-8"),
            )
        })
    }

    async fn token(&self) -> Result<Option<String>, CredentialsError> {
        let result = self
            .http
            .put(format!("{}/latest/api/token", self.endpoint))
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
            .send()
            .await;
        let (kind, failure) = match result {
            Ok(resp) if resp.status().as_u16() == 200 => {
                match read_body_capped(resp, MAX_BODY).await {
                    Ok(body) => return Ok(Some(String::from_utf8_lossy(&body).trim().to_owned())),
                    Err(e) => (read_failure_kind(&e), format!("{e}")),
                }
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                (
                    FailureKind::of_http_status(status),
                    format!("HTTP {status}"),
                )
            }
            Err(e) => (FailureKind::Transient, error_chain(e)),
        };
        if self.imds_v1_disabled {
            return Err(Self::fail(
                kind,
                format!("no IMDSv2 token ({failure}) and ALIBABA_CLOUD_IMDSV1_DISABLED=true"),
            ));
        }
        tracing::debug!(reason = %failure, "no IMDSv2 token; continuing without one");
        Ok(None)
    }
}

impl Fetcher for EcsRoleFetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move {
            let token = self.token().await?;
            let role = match &self.role {
                Some(r) => r.clone(),
                None => {
                    let listing = self.get_text(CREDENTIALS_PATH, token.as_deref()).await?;
                    listing
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .ok_or_else(|| {
                            Self::fail(
                                FailureKind::Permanent,
                                "the instance has no RAM role attached".into(),
                            )
                        })?
                        .to_owned()
                }
            };
            let body = self
                .get_text(&format!("{CREDENTIALS_PATH}{role}"), token.as_deref())
                .await?;
            parse_metadata_credentials("ecs_ram_role", &body)
        })
    }
}

/// Fetches credentials from `ALIBABA_CLOUD_CREDENTIALS_URI`.
#[derive(Debug)]
pub struct UriFetcher {
    http: reqwest::Client,
    uri: String,
}

impl UriFetcher {
    /// A fetcher for `uri`.
    pub fn new(uri: &str) -> Self {
        UriFetcher {
            http: http_client(Duration::from_secs(5), uri),
            uri: uri.to_owned(),
        }
    }
}

impl Fetcher for UriFetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move {
            let fail = |kind: FailureKind, message: String| CredentialsError::Source {
                provider: "credentials_uri",
                message,
                kind,
            };
            let resp = self.http.get(&self.uri).send().await.map_err(|e| {
                fail(
                    FailureKind::Transient,
                    format!("credentials URI unreachable: {}", error_chain(e)),
                )
            })?;
            let status = resp.status().as_u16();
            let body = read_body_capped(resp, MAX_BODY).await.map_err(|e| {
                fail(
                    read_failure_kind(&e),
                    format!("reading the answer failed: {e}"),
                )
            })?;
            if status != 200 {
                return Err(fail(
                    FailureKind::of_http_status(status),
                    format!("credentials URI answered HTTP {status}"),
                ));
            }
            let text = String::from_utf8_lossy(&body);
            parse_metadata_credentials("credentials_uri", &text)
        })
    }
}

#[derive(Deserialize)]
struct MetadataAnswer {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(flatten)]
    credentials: Option<TemporaryCredentials>,
}

fn parse_metadata_credentials(
    provider: &'static str,
    body: &str,
) -> Result<Credentials, CredentialsError> {
    let fail = |message: String| CredentialsError::Source {
        provider,
        message,
        kind: FailureKind::Permanent,
    };
    let answer: MetadataAnswer =
        serde_json::from_str(body).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    if let Some(code) = answer.code.filter(|c| c != "Success") {
        return Err(fail(format!(
            "the answer's Code is {code:?}, not \"Success\""
        )));
    }
    answer
        .credentials
        .ok_or_else(|| {
            fail(
                "the answer lacks AccessKeyId, AccessKeySecret, SecurityToken or Expiration".into(),
            )
        })?
        .into_credentials(provider)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn metadata_answers() {
        let c = parse_metadata_credentials(
            "ecs_ram_role",
            r#"{"AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2024-05-01T08:00:00Z","LastUpdated":"2024-05-01T02:00:00Z","Code":"Success"}"#,
        )
        .expect("valid");
        assert_eq!(c.access_key_id, "STS.a");
        assert_eq!(c.access_key_secret.expose_secret(), "s");
        assert_eq!(c.expiration.map(|e| e.timestamp()), Some(1_714_550_400));
        let e = parse_metadata_credentials("ecs_ram_role", r#"{"Code":"Failed"}"#)
            .expect_err("failed code");
        assert_eq!(
            e.to_string(),
            "ecs_ram_role: the answer's Code is \"Failed\", not \"Success\""
        );
        let e = parse_metadata_credentials("credentials_uri", r#"{"AccessKeyId":"x"}"#)
            .expect_err("incomplete");
        assert!(e.to_string().contains("lacks AccessKeyId"), "{e}");
    }
}
