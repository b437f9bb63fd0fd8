//! The Security Center API client: one signed `DescribeImageLatestScanTask` call per digest, and
//! one call per page of the two listings, `DescribeImageInstances` and
//! `DescribeContainerInstances`.
//!
//! The client makes exactly one HTTP request per call and classifies what went wrong; retrying,
//! rate limiting and backoff belong to the caller, which sees every attempt.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::FixedOffset;

use crate::aliyun::credentials::{CredentialsError, CredentialsProvider};
use crate::aliyun::endpoint::Endpoint;
use crate::aliyun::listing::{ListQuery, Page, parse_container_page, parse_image_page};
use crate::aliyun::rows::{ContainerRow, ImageRow};
use crate::aliyun::scan::{DroppedField, ScanResult, parse_response};
use crate::aliyun::signing::{self, RpcCall, SignatureVersion};
use crate::aliyun::transport::{
    self, CappedReadError, ErrorBody, MAX_BODY_BYTES, error_chain, read_body_capped, sanitize_code,
    sanitize_text,
};
use crate::clock::Clock;

/// The operation this exporter polls each digest with.
pub const ACTION: &str = "DescribeImageLatestScanTask";
/// The image listing discovery reads.
pub const IMAGES_ACTION: &str = "DescribeImageInstances";
/// The container listing discovery reads.
pub const CONTAINERS_ACTION: &str = "DescribeContainerInstances";
/// The Security Center API version.
pub const API_VERSION: &str = "2018-12-03";

/// The `code` label values of failures that carry no API error `Code`.
pub(crate) const TRANSPORT_CODES: [&str; 4] =
    ["http_5xx", "timeout", "connect", "invalid_response"];

/// How a failed call should be treated (retryable codes, throttling, and the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A `Throttling*` code: retry with backoff and slow the whole exporter down.
    Throttled,
    /// A transient failure: retry with backoff.
    Retryable,
    /// `SignatureNonceUsed`: retry once with a new nonce.
    NonceReused,
    /// Retrying cannot help (signature, key, permission, parameters, unreadable response).
    Fatal,
}

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable credentials; nothing was sent.
    #[error("credentials unavailable: {0}")]
    Credentials(#[from] CredentialsError),
    /// The service answered with an error body.
    #[error("{code} (HTTP {status}): {message}{}", request_id_suffix(.request_id))]
    Service {
        /// HTTP status.
        status: u16,
        /// The API's error `Code`.
        code: String,
        /// The API's `Message`.
        message: String,
        /// The API's `RequestId`, for support tickets.
        request_id: Option<String>,
        /// `x-acs-retry-after`, when positive.
        retry_after: Option<Duration>,
    },
    /// A non-success status with no readable error body (e.g. a bare 502 from a proxy).
    #[error("HTTP {status} without an error body")]
    HttpStatus {
        /// HTTP status.
        status: u16,
        /// `x-acs-retry-after`, when positive.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the per-request timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made or broke before the answer was complete.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The body exceeded [`MAX_BODY_BYTES`].
    #[error("response body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The cap.
        limit: usize,
    },
    /// A success status with a body that is not a valid answer.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
}

fn request_id_suffix(id: &Option<String>) -> String {
    id.as_ref()
        .map(|id| format!(" (RequestId {id})"))
        .unwrap_or_default()
}

impl ApiError {
    /// The retry class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Service { code, status, .. } => classify_code(code, *status),
            ApiError::HttpStatus { status: 429, .. } => ErrorClass::Throttled,
            ApiError::HttpStatus { status, .. } if *status >= 500 => ErrorClass::Retryable,
            ApiError::Timeout(_) | ApiError::Connect(_) => ErrorClass::Retryable,
            ApiError::HttpStatus { .. }
            | ApiError::Credentials(_)
            | ApiError::BodyTooLarge { .. }
            | ApiError::InvalidResponse(_) => ErrorClass::Fatal,
        }
    }

    /// The `code` label of `sas_exporter_api_request_errors_total`; the caller caps distinct API
    /// codes. `None` when no request was sent.
    pub fn metric_code(&self) -> Option<&str> {
        let [http_5xx, timeout, connect, invalid_response] = TRANSPORT_CODES;
        Some(match self {
            ApiError::Credentials(_) => return None,
            ApiError::Service { code, .. } => code,
            ApiError::HttpStatus { status, .. } if *status >= 500 => http_5xx,
            ApiError::Timeout(_) => timeout,
            ApiError::Connect(_) => connect,
            ApiError::HttpStatus { .. }
            | ApiError::BodyTooLarge { .. }
            | ApiError::InvalidResponse(_) => invalid_response,
        })
    }

    /// The server's requested wait before the next attempt, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Service { retry_after, .. } | ApiError::HttpStatus { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// Classifies an API error `Code`: throttling, transient service errors and the rest; codes not named are
/// retryable only when the HTTP status says the server failed.
pub fn classify_code(code: &str, status: u16) -> ErrorClass {
    match code {
        c if c.starts_with("Throttling") => ErrorClass::Throttled,
        "ServiceUnavailable" | "InternalError" | "ServerError" | "UnknownError" => {
            ErrorClass::Retryable
        }
        "SignatureNonceUsed" => ErrorClass::NonceReused,
        _ if status >= 500 => ErrorClass::Retryable,
        _ => ErrorClass::Fatal,
    }
}

/// The client's settings, usually taken from the `sas` config section.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Where the API is, e.g. `https://tds.cn-shanghai.aliyuncs.com`.
    pub endpoint: Endpoint,
    /// Signature algorithm.
    pub signature_version: SignatureVersion,
    /// Per-request timeout, covering connect, headers and body.
    pub timeout: Duration,
    /// UTC offset of the API's local-time strings.
    pub timezone: FixedOffset,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The HTTP client could not be created (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// A Security Center client bound to one endpoint and one credentials provider.
#[derive(Clone, Debug)]
pub struct SasClient {
    http: reqwest::Client,
    base_url: String,
    host: String,
    options: ClientOptions,
    credentials: Arc<dyn CredentialsProvider>,
    clock: Clock,
    dropped_logged: Arc<DroppedLog>,
}

/// How many (digest, field) pairs are remembered as already logged; past that the memory starts
/// over, so the cost is a repeated warning, never unbounded growth.
const DROPPED_LOG_CAPACITY: usize = 4096;

/// Which unreadable fields have been logged, so a digest whose answer keeps carrying one bad
/// field warns once, not on every poll.
#[derive(Debug, Default)]
struct DroppedLog(parking_lot::Mutex<HashSet<(String, &'static str)>>);

impl DroppedLog {
    fn report(&self, digest: &str, dropped: &[DroppedField]) {
        for d in dropped {
            let first = {
                let mut seen = self.0.lock();
                if seen.len() >= DROPPED_LOG_CAPACITY {
                    seen.clear();
                }
                seen.insert((digest.to_owned(), d.field))
            };
            if first {
                tracing::warn!(%digest, field = d.field, problem = %d, "unreadable field in the scan task left out; the rest of the task is used");
            }
        }
    }
}

impl SasClient {
    /// Builds a client; the endpoint was checked when it was parsed (plain `http://` only for
    /// loopback hosts).
    pub fn new(
        options: ClientOptions,
        credentials: Arc<dyn CredentialsProvider>,
    ) -> Result<Self, ClientBuildError> {
        Ok(SasClient {
            http: transport::http_client(options.timeout, options.endpoint.is_loopback())
                .build()?,
            base_url: format!("{}/", options.endpoint),
            host: options.endpoint.authority().to_owned(),
            options,
            credentials,
            clock: Clock::system(),
            dropped_logged: Arc::default(),
        })
    }

    /// Replaces the clock that timestamps requests (tests simulate clock skew with it).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The credentials provider in use.
    pub fn credentials_provider(&self) -> &Arc<dyn CredentialsProvider> {
        &self.credentials
    }

    /// Calls `DescribeImageLatestScanTask` for a bare lower-case hex digest: one signed request,
    /// with a fresh timestamp and nonce.
    pub async fn describe_image_latest_scan_task(
        &self,
        digest: &str,
    ) -> Result<ScanResult, ApiError> {
        let params = BTreeMap::from([("Digest".to_owned(), digest.to_owned())]);
        let body = self.call(ACTION, params).await?;
        let result = parse_response(&body, self.options.timezone)
            .map_err(|e| ApiError::InvalidResponse(e.0))?;
        self.dropped_logged.report(digest, &result.dropped);
        Ok(result)
    }

    /// Calls `DescribeImageInstances` for one page: one signed request.
    pub async fn describe_image_instances(
        &self,
        q: &ListQuery<'_>,
    ) -> Result<Page<ImageRow>, ApiError> {
        let body = self.call(IMAGES_ACTION, q.image_params()).await?;
        parse_image_page(&body, q.page).map_err(|e| ApiError::InvalidResponse(e.0))
    }

    /// Calls `DescribeContainerInstances` for one page: one signed request.
    pub async fn describe_container_instances(
        &self,
        q: &ListQuery<'_>,
    ) -> Result<Page<ContainerRow>, ApiError> {
        let body = self.call(CONTAINERS_ACTION, q.container_params()).await?;
        parse_container_page(&body, q.page).map_err(|e| ApiError::InvalidResponse(e.0))
    }

    /// One signed RPC request for `action` with its business `params`, and a fresh timestamp
    /// and nonce: the body of a success answer, read under the size cap, or the failure
    /// classified.
    async fn call(
        &self,
        action: &'static str,
        params: BTreeMap<String, String>,
    ) -> Result<Vec<u8>, ApiError> {
        let creds = self.credentials.credentials().await?;
        let now = self.clock.now();
        if let Some(at) = creds.expiration.filter(|_| creds.is_expired(now)) {
            return Err(CredentialsError::Expired {
                provider: self.credentials.name(),
                at,
            }
            .into());
        }
        let call = RpcCall {
            method: "POST",
            host: &self.host,
            action,
            version: API_VERSION,
            params,
        };
        let signed = signing::sign(
            self.options.signature_version,
            &call,
            &creds,
            now,
            &signing::new_nonce(),
        );
        let mut request = self
            .http
            .post(format!("{}?{}", self.base_url, signed.query))
            .header(reqwest::header::HOST, &self.host)
            .header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in &signed.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = read_body_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                CappedReadError::TooLarge => ApiError::BodyTooLarge {
                    limit: MAX_BODY_BYTES,
                },
                CappedReadError::Transport(e) => self.transport_error(e),
            })?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(error_from_body(status, &body, retry_after))
    }

    fn transport_error(&self, e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout(self.options.timeout)
        } else {
            ApiError::Connect(error_chain(e))
        }
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get("x-acs-retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

fn error_from_body(status: u16, body: &[u8], retry_after: Option<Duration>) -> ApiError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            code: Some(code),
            message,
            request_id,
        }) if !code.is_empty() => ApiError::Service {
            status,
            code: sanitize_code(code),
            message: sanitize_text(message.unwrap_or_default()),
            request_id: request_id.map(sanitize_text),
            retry_after,
        },
        _ => ApiError::HttpStatus {
            status,
            retry_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::transport::is_loopback_host;

    #[test]
    fn classification_follows_the_table() {
        use ErrorClass::*;
        let cases = [
            ("Throttling", 400, Throttled),
            ("Throttling.User", 400, Throttled),
            ("Throttling.Api", 400, Throttled),
            ("ServiceUnavailable", 503, Retryable),
            ("InternalError", 500, Retryable),
            ("ServerError", 500, Retryable),
            ("UnknownError", 500, Retryable),
            ("SignatureNonceUsed", 400, NonceReused),
            ("SignatureDoesNotMatch", 400, Fatal),
            ("IncompleteSignature", 400, Fatal),
            ("InvalidAccessKeyId.NotFound", 404, Fatal),
            ("InvalidAccessKeyId.Inactive", 400, Fatal),
            ("InvalidTimeStamp.Expired", 400, Fatal),
            ("InvalidTimeStamp.Format", 400, Fatal),
            ("Forbidden.RAM", 403, Fatal),
            ("NoPermission", 403, Fatal),
            ("MissingParameter", 400, Fatal),
            ("InvalidParameter", 400, Fatal),
            ("InvalidApi.NotFound", 404, Fatal),
            ("InvalidAction.NotFound", 404, Fatal),
            // Classified by code, not status: a throttle sent as 503 is still a throttle.
            ("Throttling.User", 503, Throttled),
            ("SomethingNew", 502, Retryable),
            ("SomethingNew", 400, Fatal),
        ];
        for (code, status, class) in cases {
            assert_eq!(classify_code(code, status), class, "{code} {status}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "::1",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1", "example.com", "localhost.example.com", "[::2]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn error_bodies() {
        let e = error_from_body(
            400,
            br#"{"RequestId":"R1","HostId":"h","Code":"Throttling.User","Message":"slow down","Recommend":"u"}"#,
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(e.class(), ErrorClass::Throttled);
        assert_eq!(e.metric_code(), Some("Throttling.User"));
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(
            e.to_string(),
            "Throttling.User (HTTP 400): slow down (RequestId R1)"
        );
        let e = error_from_body(502, b"<html>bad gateway</html>", None);
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert_eq!(e.metric_code(), Some("http_5xx"));
        let e = error_from_body(404, b"", None);
        assert_eq!(e.class(), ErrorClass::Fatal);
        assert_eq!(e.metric_code(), Some("invalid_response"));
    }
}
