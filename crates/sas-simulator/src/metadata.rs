//! A simulated ECS instance metadata service (`100.100.100.200`) with its IMDSv2 session tokens
//! and RAM role credentials, plus the `ALIBABA_CLOUD_CREDENTIALS_URI` endpoint, which answers the
//! same JSON. Issued credentials can be registered with a [`Simulator`] so the exporter can go on
//! to use them there.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use crate::clock::{Clock, format_timestamp};
use crate::issuer::IssuerState;
use crate::keys::{SimKey, new_sts_key};
use crate::response::{SimBody, json_response, text_response};
use crate::server::Server;
use crate::simulator::Simulator;

/// Header carrying the IMDSv2 session token on metadata reads.
const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
/// Header carrying the requested session-token lifetime on `PUT /latest/api/token`.
const TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";

const TOKEN_PATH: &str = "/latest/api/token";
const ROLES_PATH: &str = "/latest/meta-data/ram/security-credentials";
const CREDENTIALS_URI_PATH: &str = "/credentials";
const MAX_TOKEN_TTL_SECS: i64 = 21_600;
const DEFAULT_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// One request the metadata simulator received, and the status it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataRequest {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// The `X-aliyun-ecs-metadata-token` header, if sent.
    pub token_header: Option<String>,
    /// The `X-aliyun-ecs-metadata-token-ttl-seconds` header, if sent.
    pub ttl_header: Option<String>,
    /// HTTP status answered.
    pub status: u16,
}

struct State {
    role: String,
    lifetime: Duration,
    tokens: HashMap<String, DateTime<Utc>>,
    imds_v2_required: bool,
    token_endpoint_enabled: bool,
    fail_next: Option<(u64, u16)>,
    delay: Option<Duration>,
    requests: Vec<MetadataRequest>,
    issued: Vec<SimKey>,
}

type Shared = IssuerState<State>;

/// A running metadata simulator on a loopback port; it stops when dropped.
pub struct MetadataSimulator {
    shared: Arc<Shared>,
    server: Server,
}

impl MetadataSimulator {
    /// Starts on an ephemeral loopback port for an instance whose RAM role is `role`.
    pub async fn start(
        role: &str,
        issue_to: Option<Arc<Simulator>>,
        clock: Clock,
    ) -> std::io::Result<MetadataSimulator> {
        let state = State {
            role: role.to_owned(),
            lifetime: DEFAULT_LIFETIME,
            tokens: HashMap::new(),
            imds_v2_required: false,
            token_endpoint_enabled: true,
            fail_next: None,
            delay: None,
            requests: Vec::new(),
            issued: Vec::new(),
        };
        let (shared, server) = Shared::start(state, issue_to, clock, handle).await?;
        Ok(MetadataSimulator { shared, server })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The base URL (`http://127.0.0.1:PORT`), standing in for `http://100.100.100.200`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The credentials-URI endpoint (`ALIBABA_CLOUD_CREDENTIALS_URI`).
    pub fn credentials_uri(&self) -> String {
        format!("{}{CREDENTIALS_URI_PATH}", self.server.url())
    }

    /// How long issued credentials stay valid (default six hours, as on ECS).
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.shared.lock().lifetime = lifetime;
    }

    /// When true, metadata reads without a valid session token answer 401 (IMDSv2 enforced).
    pub fn set_imds_v2_required(&self, required: bool) {
        self.shared.lock().imds_v2_required = required;
    }

    /// When false, `PUT /latest/api/token` answers 404, like an instance without IMDSv2.
    pub fn set_token_endpoint_enabled(&self, enabled: bool) {
        self.shared.lock().token_endpoint_enabled = enabled;
    }

    /// Makes the next `n` requests answer `status`.
    pub fn fail_next(&self, n: u64, status: u16) {
        self.shared.lock().fail_next = Some((n, status));
    }

    /// Delays every answer (`None` = answer at once), to exercise the SDKs' one-second timeouts.
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.shared.lock().delay = delay;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<MetadataRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every set of credentials handed out, in order.
    pub fn issued(&self) -> Vec<SimKey> {
        self.shared.lock().issued.clone()
    }
}

enum Reply {
    Text(u16, String),
    Credentials(Value),
}

impl Reply {
    fn status(&self) -> u16 {
        match self {
            Reply::Text(status, _) => *status,
            Reply::Credentials(_) => 200,
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let token_header = header(TOKEN_HEADER);
    let ttl_header = header(TTL_HEADER);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let now = shared.clock.now();

    let (reply, delay, issued) = {
        let mut st = shared.lock();
        let issued_before = st.issued.len();
        let reply = route(
            &mut st,
            &method,
            &path,
            token_header.as_deref(),
            ttl_header.as_deref(),
            now,
        );
        st.requests.push(MetadataRequest {
            method: method.to_string(),
            path,
            token_header,
            ttl_header,
            status: reply.status(),
        });
        let issued = st.issued.get(issued_before).cloned();
        (reply, st.delay, issued)
    };

    // Registered before answering, so a client may use the credentials the moment it has them.
    if let (Some(key), Some(sas)) = (issued, &shared.issue_to) {
        sas.add_key(key);
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    Ok(match reply {
        Reply::Text(status, body) => text_response(status, body),
        Reply::Credentials(v) => json_response(200, v.to_string(), None),
    })
}

fn route(
    st: &mut State,
    method: &Method,
    path: &str,
    token: Option<&str>,
    ttl: Option<&str>,
    now: DateTime<Utc>,
) -> Reply {
    if let Some((remaining, status)) = st.fail_next.as_mut().filter(|(n, _)| *n > 0) {
        *remaining -= 1;
        return Reply::Text(*status, "simulated failure".to_owned());
    }
    if path == TOKEN_PATH {
        return match *method {
            Method::PUT => new_session_token(st, ttl, now),
            _ => not_allowed(),
        };
    }
    if path == CREDENTIALS_URI_PATH {
        // The credentials URI is a separate service: IMDSv2 tokens do not apply to it.
        return match *method {
            Method::GET => Reply::Credentials(issue(st, now)),
            _ => not_allowed(),
        };
    }
    if !path.starts_with("/latest/meta-data") {
        return not_found();
    }
    if *method != Method::GET {
        return not_allowed();
    }
    // A token that is present but unknown or expired is refused even when IMDSv2 is optional,
    // since the client believes it holds a session.
    let token_valid = token.is_some_and(|t| st.tokens.get(t).is_some_and(|exp| *exp > now));
    if (token.is_some() || st.imds_v2_required) && !token_valid {
        return Reply::Text(401, "Unauthorized".to_owned());
    }
    // SDKs list roles with and without the trailing slash; both must work.
    let role = match path.strip_prefix(ROLES_PATH) {
        Some("") => "",
        Some(r) => match r.strip_prefix('/') {
            Some(role) => role,
            None => return not_found(),
        },
        None => return not_found(),
    };
    match role {
        "" => Reply::Text(200, st.role.clone()),
        r if r == st.role => Reply::Credentials(issue(st, now)),
        _ => not_found(),
    }
}

fn new_session_token(st: &mut State, ttl: Option<&str>, now: DateTime<Utc>) -> Reply {
    if !st.token_endpoint_enabled {
        return not_found();
    }
    let Some(ttl) = ttl
        .and_then(|t| t.trim().parse::<i64>().ok())
        .filter(|t| (1..=MAX_TOKEN_TTL_SECS).contains(t))
    else {
        return Reply::Text(
            400,
            format!("{TTL_HEADER} must be between 1 and {MAX_TOKEN_TTL_SECS}"),
        );
    };
    // Forgetting expired tokens keeps the map bounded however long a test runs.
    st.tokens.retain(|_, exp| *exp > now);
    let token = new_sts_key().secret;
    st.tokens
        .insert(token.clone(), now + chrono::Duration::seconds(ttl));
    Reply::Text(200, token)
}

fn issue(st: &mut State, now: DateTime<Utc>) -> Value {
    let key = new_sts_key();
    let expiration = chrono::Duration::from_std(st.lifetime)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let body = json!({
        "AccessKeyId": key.id,
        "AccessKeySecret": key.secret,
        "SecurityToken": key.security_token,
        "Expiration": format_timestamp(expiration),
        "LastUpdated": format_timestamp(now),
        "Code": "Success",
    });
    st.issued.push(key);
    body
}

fn not_found() -> Reply {
    Reply::Text(404, "Not Found".to_owned())
}

fn not_allowed() -> Reply {
    Reply::Text(405, "Method Not Allowed".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    const CREDS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

    fn fixed_now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    async fn start(issue_to: Option<Arc<Simulator>>) -> MetadataSimulator {
        MetadataSimulator::start("ExporterRole", issue_to, Clock::from_fn(fixed_now))
            .await
            .expect("start metadata simulator")
    }

    async fn send(method: reqwest::Method, url: String, headers: &[(&str, &str)]) -> (u16, String) {
        let mut req = reqwest::Client::new().request(method, url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    async fn get(url: String, token: Option<&str>) -> (u16, String) {
        let headers: Vec<(&str, &str)> = token.map(|t| (TOKEN_HEADER, t)).into_iter().collect();
        send(reqwest::Method::GET, url, &headers).await
    }

    async fn put_token(md: &MetadataSimulator, ttl: Option<&str>) -> (u16, String) {
        let headers: Vec<(&str, &str)> = ttl.map(|t| (TTL_HEADER, t)).into_iter().collect();
        send(
            reqwest::Method::PUT,
            format!("{}{TOKEN_PATH}", md.url()),
            &headers,
        )
        .await
    }

    fn json(body: &str) -> Value {
        serde_json::from_str(body).unwrap_or(Value::Null)
    }

    #[tokio::test]
    async fn imds_v2_token_flow() {
        let md = start(None).await;
        md.set_imds_v2_required(true);
        let (status, token) = put_token(&md, Some("21600")).await;
        assert_eq!(status, 200);
        assert!(!token.is_empty());

        let (status, role) = get(format!("{}{CREDS_PATH}", md.url()), Some(&token)).await;
        assert_eq!((status, role.as_str()), (200, "ExporterRole"));

        let (status, body) = get(
            format!("{}{CREDS_PATH}ExporterRole", md.url()),
            Some(&token),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v = json(&body);
        assert_eq!(v["Code"], "Success");
        assert_eq!(v["Expiration"], "2030-01-02T09:04:05Z");
        assert_eq!(v["LastUpdated"], "2030-01-02T03:04:05Z");
        for field in ["AccessKeyId", "AccessKeySecret", "SecurityToken"] {
            assert!(v[field].as_str().is_some_and(|s| !s.is_empty()), "{field}");
        }
        let issued = md.issued();
        assert_eq!(issued.len(), 1);
        assert_eq!(v["AccessKeyId"].as_str(), Some(issued[0].id.as_str()));
        assert_eq!(
            v["SecurityToken"].as_str(),
            issued[0].security_token.as_deref()
        );

        let log = md.requests();
        assert_eq!(log.len(), 3);
        assert_eq!(log[0].method, "PUT");
        assert_eq!(log[0].ttl_header.as_deref(), Some("21600"));
        assert_eq!(log[2].path, format!("{CREDS_PATH}ExporterRole"));
        assert_eq!(log[2].token_header.as_deref(), Some(token.as_str()));
        assert_eq!(log[2].status, 200);
    }

    #[tokio::test]
    async fn token_request_needs_a_valid_ttl() {
        let md = start(None).await;
        for ttl in [None, Some("0"), Some("21601"), Some("soon")] {
            let (status, _) = put_token(&md, ttl).await;
            assert_eq!(status, 400, "{ttl:?}");
        }
        let (status, _) = put_token(&md, Some("1")).await;
        assert_eq!(status, 200);
        let (status, _) = get(format!("{}{TOKEN_PATH}", md.url()), None).await;
        assert_eq!(status, 405);
    }

    #[tokio::test]
    async fn v2_required_refuses_reads_without_a_valid_token() {
        let md = start(None).await;
        let url = format!("{}{CREDS_PATH}", md.url());
        // IMDSv1 reads work while v2 is optional.
        let (status, _) = get(url.clone(), None).await;
        assert_eq!(status, 200);
        md.set_imds_v2_required(true);
        let (status, _) = get(url.clone(), None).await;
        assert_eq!(status, 401);
        let (status, _) = get(url.clone(), Some("made-up")).await;
        assert_eq!(status, 401);
        assert_eq!(md.requests()[2].status, 401);
        assert!(md.issued().is_empty());
    }

    #[tokio::test]
    async fn session_tokens_expire_with_the_clock() {
        let offset = Arc::new(AtomicI64::new(0));
        let clock_offset = Arc::clone(&offset);
        let clock = Clock::from_fn(move || {
            fixed_now() + chrono::Duration::seconds(clock_offset.load(Ordering::SeqCst))
        });
        let md = MetadataSimulator::start("ExporterRole", None, clock)
            .await
            .expect("start");
        md.set_imds_v2_required(true);
        let (_, token) = put_token(&md, Some("60")).await;
        let url = format!("{}{CREDS_PATH}", md.url());
        assert_eq!(get(url.clone(), Some(&token)).await.0, 200);
        offset.store(61, Ordering::SeqCst);
        assert_eq!(get(url, Some(&token)).await.0, 401);
    }

    #[tokio::test]
    async fn token_endpoint_can_be_absent() {
        let md = start(None).await;
        md.set_token_endpoint_enabled(false);
        let (status, _) = put_token(&md, Some("21600")).await;
        assert_eq!(status, 404);
        let (status, body) = get(format!("{}{CREDS_PATH}ExporterRole", md.url()), None).await;
        assert_eq!(status, 200, "{body}");
    }

    #[tokio::test]
    async fn unknown_role_and_paths_are_not_found() {
        let md = start(None).await;
        let (status, _) = get(format!("{}{CREDS_PATH}OtherRole", md.url()), None).await;
        assert_eq!(status, 404);
        let (status, _) = get(format!("{}/latest/meta-data/instance-id", md.url()), None).await;
        assert_eq!(status, 404);
        let (status, _) = get(format!("{}/nowhere", md.url()), None).await;
        assert_eq!(status, 404);
        assert!(md.issued().is_empty());
    }

    #[tokio::test]
    async fn credentials_uri_issues_fresh_credentials_each_time() {
        let md = start(None).await;
        md.set_lifetime(Duration::from_secs(900));
        md.set_imds_v2_required(true);
        let (status, first) = get(md.credentials_uri(), None).await;
        assert_eq!(status, 200, "{first}");
        let (_, second) = get(md.credentials_uri(), None).await;
        let (first, second) = (json(&first), json(&second));
        assert_eq!(first["Expiration"], "2030-01-02T03:19:05Z");
        assert_eq!(first["Code"], "Success");
        assert_ne!(first["AccessKeyId"], second["AccessKeyId"]);
        assert_ne!(first["SecurityToken"], second["SecurityToken"]);
        assert_eq!(md.issued().len(), 2);
    }

    #[tokio::test]
    async fn fail_next_then_recover() {
        let md = start(None).await;
        md.fail_next(2, 500);
        assert_eq!(get(md.credentials_uri(), None).await.0, 500);
        assert_eq!(put_token(&md, Some("10")).await.0, 500);
        assert_eq!(get(md.credentials_uri(), None).await.0, 200);
        assert_eq!(md.issued().len(), 1);
    }
}
