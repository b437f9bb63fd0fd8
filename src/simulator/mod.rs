//! An in-process simulator of Security Center's `DescribeImageLatestScanTask`, served over loopback
//! HTTP. It checks requests the way the real service does (signature V1 and V3, AccessKey,
//! timestamp window, nonce reuse), answers from a scenario, injects faults, and counts what it saw.
//! The tests and `--demo` run the real exporter against it.
//!
//! Two companions simulate where credentials come from: [`StsSimulator`] (`AssumeRole`,
//! `AssumeRoleWithOIDC`) and [`MetadataSimulator`] (ECS instance metadata and a credentials URI).
//! Both can register what they hand out with a [`Simulator`], so the exporter can use the
//! credentials end to end. All three share the server plumbing below.

mod metadata;
mod sts;

pub use metadata::{MetadataRequest, MetadataSimulator};
pub use sts::{StsRequest, StsSimulator};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::aliyun::client::{ACTION, API_VERSION};
use crate::aliyun::signing;
use crate::clock::Clock;

/// The simulator's default AccessKey ID (also used by `--demo`).
pub const SIM_ACCESS_KEY_ID: &str = "LTAIsimulator0000demo";
/// The simulator's default AccessKey secret. Not a real secret: it only opens the simulator.
pub const SIM_ACCESS_KEY_SECRET: &str = "simulator-secret-not-for-production";
/// How far a request's timestamp may be from the simulator's clock, as the real service allows.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(15 * 60);

const MAX_REQUEST_BODY: usize = 64 * 1024;

/// A key the simulator accepts. With `security_token` set, requests must carry exactly that token.
#[derive(Clone, Debug)]
pub struct SimKey {
    /// AccessKey ID.
    pub id: String,
    /// AccessKey secret.
    pub secret: String,
    /// STS token that must accompany this key, if any.
    pub security_token: Option<String>,
}

/// What one digest answers.
#[derive(Clone, Debug)]
pub enum DigestReply {
    /// `{"RequestId": ..., "Task": <value>}`: the value verbatim (an array of tasks, `null`, ...).
    Task(Value),
    /// `{"RequestId": ...}` with no `Task` key at all.
    NoTaskKey,
}

/// The simulator's data: keys, per-digest answers, and what unknown digests get.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Accepted keys.
    pub keys: Vec<SimKey>,
    /// Answers per bare lower-case digest.
    pub digests: HashMap<String, DigestReply>,
    /// When true, a digest not listed gets one synthetic finished task instead of an empty list,
    /// so benchmarks can use thousands of digests without listing them.
    pub synthetic_unknown: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            keys: vec![SimKey {
                id: SIM_ACCESS_KEY_ID.to_owned(),
                secret: SIM_ACCESS_KEY_SECRET.to_owned(),
                security_token: None,
            }],
            digests: HashMap::new(),
            synthetic_unknown: false,
        }
    }
}

impl Scenario {
    /// Sets a digest's task list.
    pub fn with_tasks(mut self, digest: &str, tasks: Vec<Value>) -> Self {
        self.digests
            .insert(digest.to_owned(), DigestReply::Task(Value::Array(tasks)));
        self
    }

    /// Sets a digest's answer verbatim.
    pub fn with_reply(mut self, digest: &str, reply: DigestReply) -> Self {
        self.digests.insert(digest.to_owned(), reply);
        self
    }

    /// Answers unknown digests with a synthetic finished task.
    pub fn with_synthetic_unknown(mut self) -> Self {
        self.synthetic_unknown = true;
        self
    }
}

/// The deterministic finished task served for unlisted digests in synthetic mode.
pub fn synthetic_task(digest: &str) -> Value {
    let seed = digest
        .get(..8)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    let start = 1_700_000_000_000_i64 + (seed % 86_400_000) as i64;
    let finish = start + 30_000 + (seed % 90_000) as i64;
    let modified = DateTime::<Utc>::from_timestamp_millis(finish).map(|t| {
        (t + chrono::Duration::hours(8))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    });
    json!({
        "Status": "SUCCESS",
        "Modified": modified,
        "StartTime": start,
        "FinishTime": finish,
        "Finish": 1,
        "Source": "openapi",
        "TaskType": "IMAGE_SCAN",
        "Name": "IMAGE_SCAN",
        "TaskId": digest.get(..32).unwrap_or(digest),
        "Target": digest,
        "Id": seed % 10_000_000,
        "TargetType": "IMAGE",
    })
}

/// What a fault does to a request that passed authentication.
#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer normally (useful with a delay).
    None,
    /// An API error body with this status, `Code` and `Message`.
    Error {
        /// HTTP status.
        status: u16,
        /// Error `Code`.
        code: String,
        /// Error `Message`.
        message: String,
    },
    /// This status with this body verbatim (an empty body, HTML from a proxy, ...).
    Raw {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
    },
    /// A 200 whose body is not JSON.
    MalformedJson,
    /// A 200 whose body is `bytes` long; `chunked` omits `Content-Length` so only a streaming
    /// cap can stop it.
    Oversized {
        /// Body length.
        bytes: usize,
        /// Send without a length.
        chunked: bool,
    },
    /// Close the connection without answering.
    Drop,
    /// A 200 whose headers announce the whole answer's `Content-Length` but whose body stops
    /// half-way, after which the connection is closed: a connection reset mid-body.
    ResetMidBody,
    /// A 200 whose body never ends: the start of a task list, then `chunk` spaces every `every`,
    /// forever. Only the client's timeout or size cap can stop it; the simulator holds one chunk at
    /// a time and stops producing when the client goes away.
    Endless {
        /// Bytes per chunk.
        chunk: usize,
        /// Pause before each chunk.
        every: Duration,
    },
}

impl FaultAction {
    /// A slow body that never ends (1 KiB every 100 ms): only a timeout stops it.
    pub fn endless() -> Self {
        FaultAction::Endless {
            chunk: 1024,
            every: Duration::from_millis(100),
        }
    }
}

/// A fault: an optional delay, an action, an optional `x-acs-retry-after`, and how many requests
/// it applies to (`None` = until cleared).
#[derive(Clone, Debug)]
pub struct Fault {
    /// Wait this long before acting.
    pub delay: Option<Duration>,
    /// What to do.
    pub action: FaultAction,
    /// `x-acs-retry-after` in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// Requests left; `None` = unlimited.
    pub remaining: Option<u64>,
}

impl Fault {
    /// An API error (`code`, `status`) on every request.
    pub fn error(status: u16, code: &str) -> Self {
        Fault::action(FaultAction::Error {
            status,
            code: code.to_owned(),
            message: format!("simulated {code}"),
        })
    }

    /// Any action on every request.
    pub fn action(action: FaultAction) -> Self {
        Fault {
            delay: None,
            action,
            retry_after_ms: None,
            remaining: None,
        }
    }

    /// A delay before a normal answer.
    pub fn delay(d: Duration) -> Self {
        Fault {
            delay: Some(d),
            ..Fault::action(FaultAction::None)
        }
    }

    /// Limits the fault to the next `n` requests.
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Adds `x-acs-retry-after: ms`.
    pub fn retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

/// Where a fault applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FaultScope {
    /// Every digest.
    Global,
    /// One bare lower-case digest.
    Digest(String),
}

/// One request as received, for replay and independent verification in tests.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query, exactly as received.
    pub uri: String,
    /// Headers in arrival order (names lower-case).
    pub headers: Vec<(String, String)>,
}

/// One entry of the traffic log.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// When the request arrived.
    pub at: Instant,
    /// Its digest, if it named one.
    pub digest: Option<String>,
    /// What the simulator did (see [`Simulator::outcome_count`]).
    pub outcome: String,
}

struct State {
    scenario: Scenario,
    faults: HashMap<FaultScope, VecDeque<Fault>>,
    nonces: HashMap<String, Instant>,
    per_digest: HashMap<String, u64>,
    per_outcome: BTreeMap<String, u64>,
    log: Vec<LogEntry>,
    last_request: Option<RecordedRequest>,
    in_flight: usize,
    max_in_flight: usize,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a handler must not take the whole simulator down with a poisoned lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The state of a simulated credential issuer (STS, metadata service), with the clock that stamps
/// expirations and the Security Center simulator that learns the keys it issues.
struct IssuerState<S> {
    state: Mutex<S>,
    issue_to: Option<Arc<Simulator>>,
    clock: Clock,
}

impl<S: Send + 'static> IssuerState<S> {
    /// Serves `handler` on an ephemeral loopback port over this state.
    async fn start<F>(
        state: S,
        issue_to: Option<Arc<Simulator>>,
        clock: Clock,
        handler: fn(Arc<Self>, Request<Incoming>) -> F,
    ) -> std::io::Result<(Arc<Self>, Server)>
    where
        F: Future<Output = Result<Response<SimBody>, Infallible>> + Send + 'static,
    {
        let shared = Arc::new(IssuerState {
            state: Mutex::new(state),
            issue_to,
            clock,
        });
        let for_handler = Arc::clone(&shared);
        let server = serve(bind_loopback().await?, move |req| {
            handler(Arc::clone(&for_handler), req)
        })?;
        Ok((shared, server))
    }

    fn lock(&self) -> MutexGuard<'_, S> {
        // A panic in a handler must not take the whole simulator down with a poisoned lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulator; it stops when dropped.
pub struct Simulator {
    shared: Arc<Shared>,
    server: Server,
}

impl Simulator {
    /// Starts on an ephemeral loopback port.
    pub async fn start(scenario: Scenario) -> std::io::Result<Simulator> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), scenario).await
    }

    /// Starts on the given address.
    pub async fn start_on(addr: SocketAddr, scenario: Scenario) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                scenario,
                faults: HashMap::new(),
                nonces: HashMap::new(),
                per_digest: HashMap::new(),
                per_outcome: BTreeMap::new(),
                log: Vec::new(),
                last_request: None,
                in_flight: 0,
                max_in_flight: 0,
            }),
        });
        let handler_shared = Arc::clone(&shared);
        let server = serve(listener, move |req| {
            handle(Arc::clone(&handler_shared), req)
        })?;
        Ok(Simulator { shared, server })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The endpoint URL to configure the exporter with.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Replaces one digest's task list.
    pub fn set_tasks(&self, digest: &str, tasks: Vec<Value>) {
        self.set_reply(digest, DigestReply::Task(Value::Array(tasks)));
    }

    /// Replaces one digest's answer.
    pub fn set_reply(&self, digest: &str, reply: DigestReply) {
        self.shared
            .lock()
            .scenario
            .digests
            .insert(digest.to_owned(), reply);
    }

    /// Adds a key the simulator accepts (e.g. fresh STS credentials).
    pub fn add_key(&self, key: SimKey) {
        self.shared.lock().scenario.keys.push(key);
    }

    /// Queues a fault; faults of one scope apply in the order they were added.
    pub fn inject(&self, scope: FaultScope, fault: Fault) {
        self.shared
            .lock()
            .faults
            .entry(scope)
            .or_default()
            .push_back(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Requests that named this digest (whatever the outcome).
    pub fn requests_for(&self, digest: &str) -> u64 {
        self.shared
            .lock()
            .per_digest
            .get(digest)
            .copied()
            .unwrap_or(0)
    }

    /// Requests with this outcome: `ok`, an error code (`SignatureDoesNotMatch`,
    /// `Throttling.User`, ...), `http_<status>` for raw answers, `malformed_json`, `oversized`,
    /// `dropped`, `reset_mid_body`, `endless`.
    pub fn outcome_count(&self, outcome: &str) -> u64 {
        self.shared
            .lock()
            .per_outcome
            .get(outcome)
            .copied()
            .unwrap_or(0)
    }

    /// Every outcome and its count.
    pub fn outcomes(&self) -> BTreeMap<String, u64> {
        self.shared.lock().per_outcome.clone()
    }

    /// Every request received, in order.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.lock().log.clone()
    }

    /// Total requests received.
    pub fn total_requests(&self) -> u64 {
        self.shared.lock().log.len() as u64
    }

    /// The most requests ever handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.lock().max_in_flight
    }

    /// The most recent request as received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.lock().last_request.clone()
    }
}

type SimBody = BoxBody<Bytes, Infallible>;

/// A loopback HTTP/1 server: an accept loop serving every connection with one handler. Dropping
/// it stops accepting; open connections run on, so an answer in flight is never cut off.
struct Server {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Binds an ephemeral loopback port, so parallel tests never collide.
async fn bind_loopback() -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Serves `listener` with `handler` until the returned [`Server`] is dropped.
fn serve<H, F, E>(listener: TcpListener, handler: H) -> std::io::Result<Server>
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<SimBody>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = listener.local_addr()?;
    let handler = Arc::new(handler);
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = service_fn(move |req| handler(req));
                // Errors here are clients going away or deliberate drops; nothing to report.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Server { addr, accept })
}

/// Reads a whole request body, refusing more than the simulators ever need.
async fn read_body(body: Incoming) -> Option<Bytes> {
    Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .ok()
        .map(|b| b.to_bytes())
}

/// An error that makes hyper close the connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated dropped connection")
    }
}

impl std::error::Error for DropConnection {}

struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, DropConnection> {
    {
        let mut st = shared.lock();
        st.in_flight += 1;
        st.max_in_flight = st.max_in_flight.max(st.in_flight);
    }
    let _in_flight = InFlight(Arc::clone(&shared));
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Some(b) => b,
        None => {
            return Ok(error_response(
                400,
                "InvalidParameter",
                "The request body is too large or unreadable.",
                None,
            ));
        }
    };
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let digest = query
        .get("Digest")
        .map(|d| d.strip_prefix("sha256:").unwrap_or(d).to_ascii_lowercase());

    let decision = {
        let mut st = shared.lock();
        st.last_request = Some(recorded.clone());
        let decision = match authenticate(&mut st, &parts.method, &recorded, &query, &body) {
            Err(rejection) => Decision::Reject(rejection),
            Ok(()) => match &digest {
                None => Decision::Reject(Rejection::missing("Digest")),
                Some(d) => match take_fault(&mut st, d) {
                    Some(f) => Decision::Fault(f, reply_body(&st.scenario, d)),
                    None => Decision::Answer(reply_body(&st.scenario, d)),
                },
            },
        };
        if let Some(d) = &digest {
            *st.per_digest.entry(d.clone()).or_default() += 1;
        }
        let outcome = decision.outcome();
        *st.per_outcome.entry(outcome.clone()).or_default() += 1;
        st.log.push(LogEntry {
            at: Instant::now(),
            digest: digest.clone(),
            outcome,
        });
        decision
    };

    match decision {
        Decision::Reject(r) => Ok(error_response(r.status, r.code, &r.message, None)),
        Decision::Answer(body) => Ok(json_response(200, body.to_string(), None)),
        Decision::Fault(fault, body) => {
            if let Some(d) = fault.delay {
                tokio::time::sleep(d).await;
            }
            let ra = fault.retry_after_ms;
            Ok(match fault.action {
                FaultAction::None => json_response(200, body.to_string(), ra),
                FaultAction::Error {
                    status,
                    code,
                    message,
                } => error_response(status, &code, &message, ra),
                FaultAction::Raw { status, body } => json_response(status, body, ra),
                FaultAction::MalformedJson => json_response(
                    200,
                    "{\"RequestId\": \"x\", \"Task\": [{\"Status\": ".into(),
                    ra,
                ),
                FaultAction::Oversized { bytes, chunked } => oversized_response(bytes, chunked),
                FaultAction::Drop => return Err(DropConnection),
                FaultAction::ResetMidBody => truncated_response(body.to_string()),
                FaultAction::Endless { chunk, every } => endless_response(chunk, every),
            })
        }
    }
}

enum Decision {
    Reject(Rejection),
    Answer(Value),
    Fault(Fault, Value),
}

impl Decision {
    fn outcome(&self) -> String {
        match self {
            Decision::Reject(r) => r.code.to_owned(),
            Decision::Answer(_) => "ok".to_owned(),
            Decision::Fault(f, _) => match &f.action {
                FaultAction::None => "ok".to_owned(),
                FaultAction::Error { code, .. } => code.clone(),
                FaultAction::Raw { status, .. } => format!("http_{status}"),
                FaultAction::MalformedJson => "malformed_json".to_owned(),
                FaultAction::Oversized { .. } => "oversized".to_owned(),
                FaultAction::Drop => "dropped".to_owned(),
                FaultAction::ResetMidBody => "reset_mid_body".to_owned(),
                FaultAction::Endless { .. } => "endless".to_owned(),
            },
        }
    }
}

fn take_fault(st: &mut State, digest: &str) -> Option<Fault> {
    for scope in [FaultScope::Digest(digest.to_owned()), FaultScope::Global] {
        let Some(queue) = st.faults.get_mut(&scope) else {
            continue;
        };
        let Some(front) = queue.front_mut() else {
            continue;
        };
        let fault = front.clone();
        match &mut front.remaining {
            Some(n) if *n <= 1 => {
                queue.pop_front();
            }
            Some(n) => *n -= 1,
            None => {}
        }
        return Some(fault);
    }
    None
}

fn reply_body(scenario: &Scenario, digest: &str) -> Value {
    let request_id = request_id();
    match scenario.digests.get(digest) {
        Some(DigestReply::Task(v)) => json!({"RequestId": request_id, "Task": v}),
        Some(DigestReply::NoTaskKey) => json!({"RequestId": request_id}),
        None if scenario.synthetic_unknown => {
            json!({"RequestId": request_id, "Task": [synthetic_task(digest)]})
        }
        None => json!({"RequestId": request_id, "Task": []}),
    }
}

struct Rejection {
    status: u16,
    code: &'static str,
    message: String,
}

impl Rejection {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            code,
            message: message.into(),
        }
    }

    fn missing(name: &str) -> Self {
        Rejection::new(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    fn mismatch() -> Self {
        Rejection::new(
            400,
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
        )
    }

    fn incomplete() -> Self {
        Rejection::new(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        )
    }
}

/// Checks a request as the real service does, in its order: parameters, key, timestamp,
/// signature, then nonce reuse (a nonce is spent only by a correctly signed request).
fn authenticate(
    st: &mut State,
    method: &Method,
    req: &RecordedRequest,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<(), Rejection> {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let v3 = header("authorization").filter(|a| a.starts_with(signing::V3_ALGORITHM));
    let (auth, timestamp, nonce, token) = match v3 {
        Some(authorization) => {
            let auth = parse_v3_authorization(authorization).ok_or_else(Rejection::incomplete)?;
            for (h, p) in [
                ("x-acs-action", "Action"),
                ("x-acs-version", "Version"),
                ("x-acs-date", "Timestamp"),
                ("x-acs-signature-nonce", "SignatureNonce"),
            ] {
                if header(h).is_none() {
                    return Err(Rejection::missing(p));
                }
            }
            check_api(header("x-acs-action"), header("x-acs-version"))?;
            let signed: Vec<&str> = auth.signed_headers.split(';').collect();
            let unsigned_acs = req
                .headers
                .iter()
                .any(|(k, _)| k.starts_with("x-acs-") && !signed.contains(&k.as_str()));
            if !signed.contains(&"host") || unsigned_acs {
                return Err(Rejection::incomplete());
            }
            (
                Auth::V3(auth),
                header("x-acs-date").unwrap_or_default().to_owned(),
                header("x-acs-signature-nonce")
                    .unwrap_or_default()
                    .to_owned(),
                header("x-acs-security-token").map(str::to_owned),
            )
        }
        None => {
            require(query, &V1_REQUIRED)?;
            check_api(
                query.get("Action").map(String::as_str),
                query.get("Version").map(String::as_str),
            )?;
            check_v1_method(query)?;
            (
                Auth::V1,
                query.get("Timestamp").cloned().unwrap_or_default(),
                query.get("SignatureNonce").cloned().unwrap_or_default(),
                query.get("SecurityToken").cloned(),
            )
        }
    };

    let key_id = match &auth {
        Auth::V3(a) => a.credential.clone(),
        Auth::V1 => query.get("AccessKeyId").cloned().unwrap_or_default(),
    };
    let key = find_key(&st.scenario.keys, &key_id)?;
    check_timestamp(&timestamp, Utc::now())?;

    let method = method.as_str();
    let valid = match &auth {
        Auth::V1 => v1_signature_matches(method, query, &key.secret),
        Auth::V3(a) => {
            let mut signed = BTreeMap::new();
            for name in a.signed_headers.split(';') {
                let Some(v) = header(name) else {
                    return Err(Rejection::mismatch());
                };
                signed.insert(name.to_owned(), v.to_owned());
            }
            let payload_hash = header("x-acs-content-sha256").unwrap_or_default();
            if payload_hash != signing::sha256_hex(body) {
                return Err(Rejection::mismatch());
            }
            let (canonical, _) =
                signing::v3_canonical_request(method, query, &signed, payload_hash);
            let expected =
                signing::v3_signature(&key.secret, &signing::v3_string_to_sign(&canonical));
            a.signature == expected
        }
    };
    if !valid {
        return Err(Rejection::mismatch());
    }
    check_security_token(&key, token.as_deref())?;
    spend_nonce(&mut st.nonces, nonce)
}

/// The common parameters of a V1-signed request, in the order their absence is reported.
const V1_REQUIRED: [&str; 8] = [
    "AccessKeyId",
    "Action",
    "Version",
    "Timestamp",
    "SignatureNonce",
    "SignatureMethod",
    "SignatureVersion",
    "Signature",
];

fn require(params: &BTreeMap<String, String>, names: &[&str]) -> Result<(), Rejection> {
    match names.iter().find(|n| !params.contains_key(**n)) {
        Some(name) => Err(Rejection::missing(name)),
        None => Ok(()),
    }
}

fn check_v1_method(params: &BTreeMap<String, String>) -> Result<(), Rejection> {
    if params.get("SignatureMethod").map(String::as_str) != Some("HMAC-SHA1")
        || params.get("SignatureVersion").map(String::as_str) != Some("1.0")
    {
        return Err(Rejection::new(
            400,
            "InvalidParameter",
            "SignatureMethod must be HMAC-SHA1 and SignatureVersion 1.0.",
        ));
    }
    Ok(())
}

fn find_key(keys: &[SimKey], id: &str) -> Result<SimKey, Rejection> {
    keys.iter().find(|k| k.id == id).cloned().ok_or_else(|| {
        Rejection::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )
    })
}

fn check_timestamp(timestamp: &str, now: DateTime<Utc>) -> Result<(), Rejection> {
    let Ok(ts) = NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%SZ") else {
        return Err(Rejection::new(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        ));
    };
    let skew = (now - ts.and_utc()).abs();
    if skew.to_std().map_or(true, |s| s > TIMESTAMP_WINDOW) {
        return Err(Rejection::new(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

/// Recomputes the V1 signature over exactly the parameters received, so anything the client
/// signed differently from what it sent shows up as a mismatch.
fn v1_signature_matches(method: &str, params: &BTreeMap<String, String>, secret: &str) -> bool {
    let mut params = params.clone();
    let Some(given) = params.remove("Signature") else {
        return false;
    };
    given == signing::v1_signature(secret, &signing::v1_string_to_sign(method, &params))
}

fn check_security_token(key: &SimKey, token: Option<&str>) -> Result<(), Rejection> {
    if key.security_token.is_some() && key.security_token.as_deref() != token {
        return Err(Rejection::new(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "The security token does not match the access key.",
        ));
    }
    Ok(())
}

/// Spends a nonce; only correctly signed requests get here, so a forged request cannot burn one.
fn spend_nonce(nonces: &mut HashMap<String, Instant>, nonce: String) -> Result<(), Rejection> {
    let now = Instant::now();
    // Forgetting nonces older than any acceptable timestamp keeps the map bounded.
    nonces.retain(|_, seen| now.duration_since(*seen) < TIMESTAMP_WINDOW * 2);
    if nonces.insert(nonce, now).is_some() {
        return Err(Rejection::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        ));
    }
    Ok(())
}

fn check_api(action: Option<&str>, version: Option<&str>) -> Result<(), Rejection> {
    if action == Some(ACTION) && version == Some(API_VERSION) {
        Ok(())
    } else {
        Err(Rejection::new(
            404,
            "InvalidApi.NotFound",
            "Specified api is not found, please check your url and method.",
        ))
    }
}

enum Auth {
    V1,
    V3(V3Auth),
}

struct V3Auth {
    credential: String,
    signed_headers: String,
    signature: String,
}

fn parse_v3_authorization(value: &str) -> Option<V3Auth> {
    let rest = value.strip_prefix(signing::V3_ALGORITHM)?.trim_start();
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v.to_owned()),
            "SignedHeaders" => signed_headers = Some(v.to_owned()),
            "Signature" => signature = Some(v.to_owned()),
            _ => return None,
        }
    }
    Some(V3Auth {
        credential: credential?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// Decodes a query string; `+` is a literal plus (the signing rules never produce it for space).
fn parse_query(q: &str) -> BTreeMap<String, String> {
    decode_pairs(q, false)
}

/// Decodes an `application/x-www-form-urlencoded` body, where `+` stands for a space: generic
/// HTTP clients encode forms that way, and a token's own `+` arrives as `%2B`.
fn parse_form(body: &str) -> BTreeMap<String, String> {
    decode_pairs(body, true)
}

fn decode_pairs(q: &str, plus_is_space: bool) -> BTreeMap<String, String> {
    let dec = |s: &str| {
        let s = if plus_is_space {
            s.replace('+', " ")
        } else {
            s.to_owned()
        };
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (dec(k), dec(v))
        })
        .collect()
}

const JSON: &str = "application/json;charset=utf-8";

/// Every simulator answer goes through here: status, content type, optional retry-after.
fn respond(
    status: u16,
    content_type: &str,
    retry_after_ms: Option<u64>,
    body: SimBody,
) -> Response<SimBody> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type);
    if let Some(ms) = retry_after_ms {
        builder = builder.header("x-acs-retry-after", ms.to_string());
    }
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn text_response(status: u16, body: String) -> Response<SimBody> {
    respond(
        status,
        "text/plain;charset=utf-8",
        None,
        Full::new(Bytes::from(body)).boxed(),
    )
}

fn json_response(status: u16, body: String, retry_after_ms: Option<u64>) -> Response<SimBody> {
    respond(
        status,
        JSON,
        retry_after_ms,
        Full::new(Bytes::from(body)).boxed(),
    )
}

fn error_response(
    status: u16,
    code: &str,
    message: &str,
    retry_after_ms: Option<u64>,
) -> Response<SimBody> {
    product_error_response(Product::SAS, status, code, message, retry_after_ms)
}

/// Which API an error body claims to come from, as the real `HostId` and `Recommend` show.
struct Product {
    host: &'static str,
    name: &'static str,
}

impl Product {
    const SAS: Product = Product {
        host: "tds.simulator.local",
        name: "Sas",
    };
    const STS: Product = Product {
        host: "sts.simulator.local",
        name: "Sts",
    };
}

fn product_error_response(
    product: Product,
    status: u16,
    code: &str,
    message: &str,
    retry_after_ms: Option<u64>,
) -> Response<SimBody> {
    let body = json!({
        "RequestId": request_id(),
        "HostId": product.host,
        "Code": code,
        "Message": message,
        "Recommend": format!(
            "https://api.aliyun.com/troubleshoot?q={code}&product={}",
            product.name
        ),
    });
    json_response(status, body.to_string(), retry_after_ms)
}

/// A request ID in the service's format (an upper-case UUID).
fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_ascii_uppercase()
}

/// A fresh set of STS-style credentials, as both STS and the metadata service hand out: the
/// token is base64 with `+`, `/` and `=`, so clients that mis-encode it fail visibly.
fn new_sts_key() -> SimKey {
    use base64::Engine as _;
    let random = |n: usize| -> Vec<u8> {
        (0..n.div_ceil(16))
            .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
            .take(n)
            .collect()
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let alnum = |n: usize| -> String {
        b64(&random(n * 2))
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(n)
            .collect()
    };
    SimKey {
        id: format!("STS.NX{}", alnum(22)),
        secret: alnum(44),
        security_token: Some(format!("CAIS{}", b64(&random(180)))),
    }
}

fn oversized_response(bytes: usize, chunked: bool) -> Response<SimBody> {
    let body = RepeatBody {
        remaining: bytes,
        announce: !chunked,
    };
    respond(200, JSON, None, body.boxed())
}

/// A body of spaces produced 64 KiB at a time, so the simulator itself never holds it whole.
struct RepeatBody {
    remaining: usize,
    announce: bool,
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        const CHUNK: usize = 64 * 1024;
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.announce {
            http_body::SizeHint::with_exact(self.remaining as u64)
        } else {
            http_body::SizeHint::default()
        }
    }
}

fn truncated_response(full: String) -> Response<SimBody> {
    let full = Bytes::from(full);
    let body = TruncatedBody {
        announced: full.len() as u64,
        part: Some(full.slice(..full.len() / 2)),
        pause: None,
    };
    respond(200, JSON, None, body.boxed())
}

/// Announces `announced` bytes, sends `part`, then ends short of the announced length, which makes
/// hyper abort the connection.
struct TruncatedBody {
    announced: u64,
    part: Option<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for TruncatedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(part) = self.part.take() {
            return Poll::Ready(Some(Ok(Frame::data(part))));
        }
        // A moment for hyper to flush the part before the short end closes the connection.
        let pause = self
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(20))));
        match pause.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.announced)
    }
}

/// What an endless body starts with: the opening of a task list that never closes.
const ENDLESS_PREFIX: &[u8] = br#"{"RequestId":"endless","Task":["#;

fn endless_response(chunk: usize, every: Duration) -> Response<SimBody> {
    let body = EndlessBody {
        prefix: Some(Bytes::from_static(ENDLESS_PREFIX)),
        chunk: Bytes::from(vec![b' '; chunk.max(1)]),
        every,
        timer: Box::pin(tokio::time::sleep(every)),
    };
    respond(200, JSON, None, body.boxed())
}

/// A body that never ends. hyper polls it only when it can write, so a client that stops reading
/// stops it too, and one that disconnects drops it.
struct EndlessBody {
    prefix: Option<Bytes>,
    chunk: Bytes,
    every: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Body for EndlessBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let next = tokio::time::Instant::now() + self.every;
        self.timer.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::credentials::Credentials;
    use crate::aliyun::signing::{RpcCall, SignatureVersion};

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Sends one correctly signed request for `DIGEST` with plain reqwest.
    async fn send(sim: &Simulator) -> reqwest::Response {
        let host = sim.addr().to_string();
        let call = RpcCall {
            method: "POST",
            host: &host,
            action: ACTION,
            version: API_VERSION,
            params: BTreeMap::from([("Digest".to_owned(), DIGEST.to_owned())]),
        };
        let creds = Credentials::new(SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, None, None);
        let signed = signing::sign(
            SignatureVersion::V3,
            &call,
            &creds,
            Utc::now(),
            &signing::new_nonce(),
        );
        let mut req = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(format!("{}/?{}", sim.url(), signed.query));
        for (k, v) in &signed.headers {
            req = req.header(k, v);
        }
        req.send().await.expect("headers arrive")
    }

    fn tasks() -> Vec<Value> {
        (0..20)
            .map(|i| json!({"Status": "SUCCESS", "Id": i, "StartTime": 1_700_000_000_000_i64 + i}))
            .collect()
    }

    #[tokio::test]
    async fn reset_mid_body_announces_the_whole_length_and_sends_half() {
        let sim = Simulator::start(Scenario::default().with_tasks(DIGEST, tasks()))
            .await
            .expect("sim");
        let full = send(&sim)
            .await
            .bytes()
            .await
            .expect("a normal answer")
            .len();
        sim.inject(
            FaultScope::Digest(DIGEST.to_owned()),
            Fault::action(FaultAction::ResetMidBody).times(1),
        );
        let mut resp = send(&sim).await;
        assert_eq!(resp.status().as_u16(), 200);
        // The normal answer differs only in its RequestId, which has a fixed length.
        assert_eq!(resp.content_length(), Some(full as u64));
        let mut got = 0;
        let err = loop {
            match resp.chunk().await {
                Ok(Some(c)) => got += c.len(),
                Ok(None) => panic!("the body ended cleanly after {got} of {full} bytes"),
                Err(e) => break e,
            }
        };
        assert!(err.is_body() || err.is_decode(), "{err:?}");
        assert!(!err.is_timeout());
        assert_eq!(got, full / 2);
        assert_eq!(sim.outcome_count("reset_mid_body"), 1);
        // The fault was used up: the next answer is whole again.
        assert_eq!(send(&sim).await.bytes().await.expect("whole").len(), full);
    }

    #[tokio::test]
    async fn endless_body_keeps_coming_until_the_client_gives_up() {
        let sim = Simulator::start(Scenario::default()).await.expect("sim");
        sim.inject(
            FaultScope::Global,
            Fault::action(FaultAction::Endless {
                chunk: 4096,
                every: Duration::from_millis(10),
            }),
        );
        let mut resp = send(&sim).await;
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.content_length(), None);
        let mut body = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(600);
        while Instant::now() < deadline {
            let chunk = resp.chunk().await.expect("no error").expect("never ends");
            body.extend_from_slice(&chunk);
        }
        assert!(body.starts_with(ENDLESS_PREFIX));
        // About 60 chunks in 600 ms; far more than one, and the stream is still open.
        assert!(body.len() > 10 * 4096, "{}", body.len());
        assert!(body[ENDLESS_PREFIX.len()..].iter().all(|b| *b == b' '));
        drop(resp);
        assert_eq!(sim.outcome_count("endless"), 1);

        // The slow default: a chunk per 100 ms, so a client timeout ends it.
        sim.clear_faults();
        sim.inject(FaultScope::Global, Fault::action(FaultAction::endless()));
        let started = Instant::now();
        let resp = send(&sim).await;
        let read = tokio::time::timeout(Duration::from_millis(500), resp.bytes()).await;
        assert!(read.is_err(), "an endless body ended");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
