//! STS: `AssumeRole` (V1-signed with a source identity) and `AssumeRoleWithOIDC` (anonymous, with
//! the RRSA token file's current content).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::provider::{BoxFuture, CredentialsError, CredentialsProvider, FailureKind};
use super::refresh::Fetcher;
use crate::aliyun::signing::Credentials;
use crate::aliyun::signing::{self, RpcCall, SignatureVersion};
use crate::aliyun::transport::{
    self, CappedReadError, ErrorBody, error_chain, is_loopback_host, read_body_capped,
    sanitize_code, sanitize_text,
};
use crate::clock::Clock;

/// STS API version.
pub const STS_VERSION: &str = "2015-04-01";
/// STS answers are small; anything larger is not an STS answer.
const MAX_STS_BODY: usize = 64 * 1024;
/// Per-request timeout for STS calls.
const STS_TIMEOUT: Duration = Duration::from_secs(10);

/// The STS endpoint: the override, else `ALIBABA_CLOUD_STS_REGION` (with
/// `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true` selecting the VPC host), else the global one.
pub fn sts_endpoint(override_url: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> String {
    if let Some(url) = override_url.filter(|u| !u.is_empty()) {
        return url.trim_end_matches('/').to_owned();
    }
    let vpc =
        env("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match env("ALIBABA_CLOUD_STS_REGION").filter(|r| !r.is_empty()) {
        Some(region) if vpc => format!("https://sts-vpc.{region}.aliyuncs.com"),
        Some(region) => format!("https://sts.{region}.aliyuncs.com"),
        None => "https://sts.aliyuncs.com".to_owned(),
    }
}

/// An HTTP client for STS.
#[derive(Clone, Debug)]
pub struct StsClient {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    clock: Clock,
}

impl StsClient {
    /// A client for `endpoint` (`scheme://host[:port]`).
    pub fn new(endpoint: &str, clock: Clock) -> Result<Self, CredentialsError> {
        let bad = |m: String| CredentialsError::Source {
            provider: "sts",
            message: format!("invalid STS endpoint {endpoint:?}: {m}"),
            kind: FailureKind::Permanent,
        };
        let url = reqwest::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
        let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let loopback = is_loopback_host(url.host_str().unwrap_or_default());
        let http = transport::http_client(STS_TIMEOUT, loopback)
            .build()
            .map_err(|e| bad(error_chain(e)))?;
        Ok(StsClient {
            http,
            endpoint: format!("{}://{host}", url.scheme()),
            host,
            clock,
        })
    }

    /// `AssumeRole` with `source`'s identity, V1-signed as the SDKs do.
    pub async fn assume_role(
        &self,
        source: &Credentials,
        role: &RoleParams,
    ) -> Result<Credentials, CredentialsError> {
        let mut params = role.common_params();
        if let Some(id) = &role.external_id {
            params.insert("ExternalId".into(), id.clone());
        }
        let request = self.signed_get("AssumeRole", params, source);
        self.send("ram_role_arn", request).await
    }

    /// A GET of `action` with `params`, V1-signed with `creds` as the SDKs sign STS calls.
    fn signed_get(
        &self,
        action: &str,
        params: BTreeMap<String, String>,
        creds: &Credentials,
    ) -> reqwest::RequestBuilder {
        let call = RpcCall {
            method: "GET",
            host: &self.host,
            action,
            version: STS_VERSION,
            params,
        };
        let signed = signing::sign(
            SignatureVersion::V1,
            &call,
            creds,
            self.clock.now(),
            &signing::new_nonce(),
        );
        self.http
            .get(format!("{}/?{}", self.endpoint, signed.query))
            .header(reqwest::header::HOST, &self.host)
    }

    /// `AssumeRoleWithOIDC`: anonymous; the token proves the identity.
    pub async fn assume_role_with_oidc(
        &self,
        role: &RoleParams,
        provider_arn: &str,
        token: &str,
    ) -> Result<Credentials, CredentialsError> {
        let mut params = role.common_params();
        for (k, v) in [
            ("Action", "AssumeRoleWithOIDC"),
            ("Version", STS_VERSION),
            ("Format", "JSON"),
            ("OIDCProviderArn", provider_arn),
            ("OIDCToken", token),
        ] {
            params.insert(k.into(), v.into());
        }
        params.insert(
            "Timestamp".into(),
            signing::format_timestamp(self.clock.now()),
        );
        // The token is long and secret-like: send everything in the body, not the URL.
        let request = self
            .http
            .post(format!("{}/", self.endpoint))
            .header(reqwest::header::HOST, &self.host)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(signing::canonical_query(&params));
        self.send("oidc", request).await
    }

    /// `GetCallerIdentity` with `creds`: the ID of the account they belong to. Any credentials
    /// may call it; it is signed like `AssumeRole`.
    pub async fn get_caller_identity(
        &self,
        creds: &Credentials,
    ) -> Result<String, CredentialsError> {
        let params = BTreeMap::from([("Format".to_owned(), "JSON".to_owned())]);
        let request = self.signed_get("GetCallerIdentity", params, creds);
        let body = self.exchange("sts", request).await?;
        #[derive(serde::Deserialize)]
        struct Identity {
            #[serde(rename = "AccountId")]
            account_id: Option<String>,
        }
        let fail = |message: String| CredentialsError::Source {
            provider: "sts",
            message,
            kind: FailureKind::Permanent,
        };
        let identity: Identity = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("unreadable GetCallerIdentity answer: {e}")))?;
        identity
            .account_id
            .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| fail("GetCallerIdentity answered no usable AccountId".to_owned()))
    }

    async fn send(
        &self,
        provider: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Credentials, CredentialsError> {
        let body = self.exchange(provider, request).await?;
        let answer: StsAnswer =
            serde_json::from_slice(&body).map_err(|e| CredentialsError::Source {
                provider,
                message: format!("unreadable STS answer: {e}"),
                kind: FailureKind::Permanent,
            })?;
        answer.credentials.into_credentials(provider)
    }

    /// Sends one STS request and returns the body of a success, or the error the body describes.
    async fn exchange(
        &self,
        provider: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, CredentialsError> {
        let fail = |kind: FailureKind, message: String| CredentialsError::Source {
            provider,
            message,
            kind,
        };
        let response = request.send().await.map_err(|e| {
            fail(
                FailureKind::Transient,
                format!("STS request failed: {}", error_chain(e)),
            )
        })?;
        let status = response.status().as_u16();
        let body = read_body_capped(response, MAX_STS_BODY)
            .await
            .map_err(|e| {
                fail(
                    read_failure_kind(&e),
                    format!("reading the STS answer failed: {e}"),
                )
            })?;
        if !(200..300).contains(&status) {
            let err: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            let code = sanitize_code(err.code.unwrap_or_default());
            // Throttling arrives as HTTP 400 with a Throttling* code.
            let kind = if code.starts_with("Throttling") {
                FailureKind::Transient
            } else {
                FailureKind::of_http_status(status)
            };
            return Err(fail(
                kind,
                format!(
                    "STS answered HTTP {status}: {code} {} (RequestId {})",
                    sanitize_text(err.message.unwrap_or_default()),
                    sanitize_text(err.request_id.unwrap_or_default())
                ),
            ));
        }
        Ok(body)
    }
}

/// A body that broke off is worth another try; one over the cap will be over it again.
pub(crate) fn read_failure_kind(e: &CappedReadError) -> FailureKind {
    match e {
        CappedReadError::TooLarge => FailureKind::Permanent,
        CappedReadError::Transport(_) => FailureKind::Transient,
    }
}

/// The role and session parameters shared by both assume calls.
#[derive(Clone, Debug)]
pub struct RoleParams {
    /// `RoleArn`.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `DurationSeconds`.
    pub duration: Duration,
    /// Optional session `Policy`.
    pub policy: Option<String>,
    /// Optional `ExternalId` (AssumeRole only).
    pub external_id: Option<String>,
}

impl RoleParams {
    fn common_params(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::from([
            ("RoleArn".to_owned(), self.role_arn.clone()),
            ("RoleSessionName".to_owned(), self.session_name.clone()),
            (
                "DurationSeconds".to_owned(),
                self.duration.as_secs().to_string(),
            ),
        ]);
        if let Some(policy) = &self.policy {
            p.insert("Policy".into(), policy.clone());
        }
        p
    }
}

#[derive(Deserialize)]
struct StsAnswer {
    #[serde(rename = "Credentials")]
    credentials: TemporaryCredentials,
}

/// The credentials object shared by STS answers, the ECS metadata service and credentials URIs.
#[derive(Deserialize)]
pub(crate) struct TemporaryCredentials {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "AccessKeySecret")]
    access_key_secret: String,
    #[serde(rename = "SecurityToken")]
    security_token: String,
    #[serde(rename = "Expiration")]
    expiration: String,
}

impl TemporaryCredentials {
    pub(crate) fn into_credentials(
        self,
        provider: &'static str,
    ) -> Result<Credentials, CredentialsError> {
        let expiration = DateTime::parse_from_rfc3339(&self.expiration)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| CredentialsError::Source {
                provider,
                message: format!("unreadable Expiration {:?}: {e}", self.expiration),
                kind: FailureKind::Permanent,
            })?;
        if self.access_key_id.is_empty() || self.access_key_secret.is_empty() {
            return Err(CredentialsError::Source {
                provider,
                message: "the answer holds an empty AccessKeyId or AccessKeySecret".into(),
                kind: FailureKind::Permanent,
            });
        }
        Ok(Credentials::new(
            self.access_key_id,
            self.access_key_secret,
            Some(self.security_token).filter(|t| !t.is_empty()),
            Some(expiration),
        ))
    }
}

/// `AssumeRole` from a source provider (static keys, or whatever the default chain found).
#[derive(Debug)]
pub struct AssumeRoleFetcher {
    /// STS client.
    pub sts: StsClient,
    /// Where the source identity comes from.
    pub source: Arc<dyn CredentialsProvider>,
    /// The role to assume.
    pub role: RoleParams,
}

impl Fetcher for AssumeRoleFetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move {
            let source = self.source.credentials().await?;
            self.sts.assume_role(&source, &self.role).await
        })
    }
}

/// `AssumeRoleWithOIDC` with the token file re-read at every refresh (kubelet rotates it).
#[derive(Debug)]
pub struct OidcFetcher {
    /// STS client.
    pub sts: StsClient,
    /// The role to assume.
    pub role: RoleParams,
    /// `OIDCProviderArn`.
    pub provider_arn: String,
    /// The projected service-account token.
    pub token_file: PathBuf,
}

impl Fetcher for OidcFetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(async move {
            let token = tokio::fs::read_to_string(&self.token_file)
                .await
                .map_err(|source| CredentialsError::ReadFile {
                    path: self.token_file.clone(),
                    source,
                })?;
            let token = token.trim();
            if token.is_empty() {
                return Err(CredentialsError::EmptyFile(self.token_file.clone()));
            }
            self.sts
                .assume_role_with_oidc(&self.role, &self.provider_arn, token)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_selection() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(sts_endpoint(None, &env(&[])), "https://sts.aliyuncs.com");
        assert_eq!(
            sts_endpoint(None, &env(&[("ALIBABA_CLOUD_STS_REGION", "cn-hangzhou")])),
            "https://sts.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            sts_endpoint(
                None,
                &env(&[
                    ("ALIBABA_CLOUD_STS_REGION", "cn-hangzhou"),
                    ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true")
                ])
            ),
            "https://sts-vpc.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            sts_endpoint(
                Some("http://127.0.0.1:9/"),
                &env(&[("ALIBABA_CLOUD_STS_REGION", "x")])
            ),
            "http://127.0.0.1:9"
        );
    }
}
