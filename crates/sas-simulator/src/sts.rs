//! A simulated STS (`sts.aliyuncs.com`, Version `2015-04-01`): `AssumeRole` and
//! `GetCallerIdentity`, V1-signed and checked
//! like the Security Center simulator checks its requests, and the anonymous `AssumeRoleWithOIDC`
//! of Kubernetes RRSA. Issued credentials can be registered with a [`Simulator`] so the exporter
//! can go on to use them there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use crate::auth::{
    Nonces, V1_REQUIRED, check_security_token, check_timestamp, check_v1_method, require,
    v1_signature_matches,
};
use crate::clock::{Clock, format_timestamp};
use crate::error::{Product, Rejection, error_response, rejection_response};
use crate::issuer::IssuerState;
use crate::keys::{SimKey, find_key, new_sts_key};
use crate::response::{SimBody, json_response, request_id};
use crate::server::{Server, parse_form, parse_query, read_body};
use crate::simulator::Simulator;

/// The STS API version every request must name.
const STS_VERSION: &str = "2015-04-01";

const DEFAULT_DURATION_SECS: i64 = 3600;
const MIN_DURATION_SECS: i64 = 900;
const MAX_DURATION_SECS: i64 = 43_200;

/// One request the STS simulator received, and what it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsRequest {
    /// HTTP method.
    pub method: String,
    /// The `Action` parameter (empty when missing).
    pub action: String,
    /// Query and form parameters, decoded and merged (the body wins).
    pub params: BTreeMap<String, String>,
    /// Whether the V1 signature verified; `None` for anonymous requests.
    pub signature_valid: Option<bool>,
    /// `ok` or the error code answered.
    pub outcome: String,
}

/// The `AccountId` a new STS simulator answers `GetCallerIdentity` with.
pub const DEFAULT_ACCOUNT_ID: &str = "1234567890123456";

struct FailNext {
    remaining: u64,
    status: u16,
    code: String,
}

struct State {
    keys: Vec<SimKey>,
    roles: HashSet<String>,
    oidc_tokens: HashMap<String, String>,
    nonces: Nonces,
    fail_next: Option<FailNext>,
    delay: Option<Duration>,
    requests: Vec<StsRequest>,
    issued: Vec<SimKey>,
    /// What `GetCallerIdentity` answers as `AccountId`.
    account_id: String,
}

type Shared = IssuerState<State>;

/// A running STS simulator on a loopback port; it stops when dropped.
pub struct StsSimulator {
    shared: Arc<Shared>,
    server: Server,
}

impl StsSimulator {
    /// Starts on an ephemeral loopback port, accepting `AssumeRole` calls signed with `keys`.
    pub async fn start(
        keys: Vec<SimKey>,
        issue_to: Option<Arc<Simulator>>,
        clock: Clock,
    ) -> std::io::Result<StsSimulator> {
        let state = State {
            keys,
            roles: HashSet::new(),
            oidc_tokens: HashMap::new(),
            nonces: Nonces::default(),
            fail_next: None,
            delay: None,
            requests: Vec::new(),
            issued: Vec::new(),
            account_id: DEFAULT_ACCOUNT_ID.to_owned(),
        };
        let (shared, server) = Shared::start(state, issue_to, clock, handle).await?;
        Ok(StsSimulator { shared, server })
    }

    /// Sets the `AccountId` that `GetCallerIdentity` answers.
    pub fn set_account_id(&self, id: &str) {
        self.shared.lock().account_id = id.to_owned();
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Lets both assume calls assume this role.
    pub fn allow_role(&self, arn: &str) {
        self.shared.lock().roles.insert(arn.to_owned());
    }

    /// Sets the one OIDC token `AssumeRoleWithOIDC` accepts for this provider.
    pub fn set_oidc_token(&self, provider_arn: &str, token: &str) {
        self.shared
            .lock()
            .oidc_tokens
            .insert(provider_arn.to_owned(), token.to_owned());
    }

    /// Adds a key `AssumeRole` accepts.
    pub fn add_key(&self, key: SimKey) {
        self.shared.lock().keys.push(key);
    }

    /// Makes the next `n` requests answer `status` with an error body carrying `code`.
    pub fn fail_next(&self, n: u64, status: u16, code: &str) {
        self.shared.lock().fail_next = Some(FailNext {
            remaining: n,
            status,
            code: code.to_owned(),
        });
    }

    /// Delays every answer (`None` = answer at once).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.shared.lock().delay = delay;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<StsRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every set of credentials handed out, in order.
    pub fn issued(&self) -> Vec<SimKey> {
        self.shared.lock().issued.clone()
    }
}

enum Answer {
    Issued(Value),
    Reject(Rejection),
    Fault { status: u16, code: String },
}

impl Answer {
    fn outcome(&self) -> String {
        match self {
            Answer::Issued(_) => "ok".to_owned(),
            Answer::Reject(r) => r.code.to_owned(),
            Answer::Fault { code, .. } => code.clone(),
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = read_body(body).await;
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let mut params = parse_query(parts.uri.query().unwrap_or(""));
    if parts.method == Method::POST && is_form {
        if let Some(body) = &body {
            params.extend(parse_form(&String::from_utf8_lossy(body)));
        }
    }
    let action = params.get("Action").cloned().unwrap_or_default();
    // OIDC calls are anonymous: a stray signature on one is ignored, not judged.
    let signature_valid = match action.as_str() {
        "AssumeRoleWithOIDC" => None,
        _ if params.contains_key("Signature") => Some(signature_verifies(
            &shared.lock().keys,
            parts.method.as_str(),
            &params,
        )),
        _ => None,
    };

    let now = shared.clock.now();
    let (answer, delay, issued) = {
        let mut st = shared.lock();
        let answer = if let Some(fault) = take_fault(&mut st) {
            fault
        } else if body.is_none() {
            Answer::Reject(Rejection::new(
                400,
                "InvalidParameter",
                "The request body is too large or unreadable.",
            ))
        } else if parts.uri.path() != "/" {
            Answer::Reject(Rejection::api_not_found())
        } else if parts.method != Method::GET && parts.method != Method::POST {
            Answer::Reject(Rejection::new(
                405,
                "UnsupportedHTTPMethod",
                "This http method is not supported.",
            ))
        } else {
            match decide(&mut st, parts.method.as_str(), &params, now) {
                Ok(v) => Answer::Issued(v),
                Err(r) => Answer::Reject(r),
            }
        };
        st.requests.push(StsRequest {
            method: parts.method.to_string(),
            action,
            params,
            signature_valid,
            outcome: answer.outcome(),
        });
        let issued = matches!(answer, Answer::Issued(_))
            .then(|| st.issued.last().cloned())
            .flatten();
        (answer, st.delay, issued)
    };

    // Registered before answering, so a client may use the credentials the moment it has them.
    if let (Some(key), Some(sas)) = (issued, &shared.issue_to) {
        sas.add_key(key);
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    Ok(match answer {
        Answer::Issued(v) => json_response(200, v.to_string(), None),
        Answer::Reject(r) => rejection_response(Product::STS, &r),
        Answer::Fault { status, code } => error_response(
            Product::STS,
            status,
            &code,
            &format!("simulated {code}"),
            None,
        ),
    })
}

fn take_fault(st: &mut State) -> Option<Answer> {
    let fault = st.fail_next.as_mut().filter(|f| f.remaining > 0)?;
    fault.remaining -= 1;
    Some(Answer::Fault {
        status: fault.status,
        code: fault.code.clone(),
    })
}

fn signature_verifies(keys: &[SimKey], method: &str, params: &BTreeMap<String, String>) -> bool {
    params
        .get("AccessKeyId")
        .and_then(|id| keys.iter().find(|k| &k.id == id))
        .is_some_and(|k| v1_signature_matches(method, params, &k.secret))
}

/// Checks and answers one call in the real service's order: API, authentication, parameters,
/// then the role.
fn decide(
    st: &mut State,
    method: &str,
    params: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Value, Rejection> {
    require(params, &["Action", "Version"])?;
    if params.get("Version").map(String::as_str) != Some(STS_VERSION) {
        return Err(Rejection::api_not_found());
    }
    match params.get("Action").map(String::as_str) {
        Some("AssumeRole") => assume_role(st, method, params, now),
        Some("AssumeRoleWithOIDC") => assume_role_with_oidc(st, params, now),
        Some("GetCallerIdentity") => caller_identity(st, method, params, now),
        _ => Err(Rejection::api_not_found()),
    }
}

fn assume_role(
    st: &mut State,
    method: &str,
    params: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Value, Rejection> {
    authenticate_v1(st, method, params, now, false)?;
    require_non_empty(params, &["RoleArn", "RoleSessionName"])?;
    let duration = duration_seconds(params)?;
    issue_for_role(st, params, duration, now)
}

/// Checks a V1-signed call the way STS does: parameters, key, timestamp, signature, token, nonce.
/// `or_issued` also accepts the keys this STS has handed out.
fn authenticate_v1(
    st: &mut State,
    method: &str,
    params: &BTreeMap<String, String>,
    now: DateTime<Utc>,
    or_issued: bool,
) -> Result<SimKey, Rejection> {
    require(params, &V1_REQUIRED)?;
    check_v1_method(params)?;
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let id = param("AccessKeyId");
    let key = match find_key(&st.keys, id) {
        Err(_) if or_issued => find_key(&st.issued, id)?,
        found => found?,
    };
    check_timestamp(param("Timestamp"), now)?;
    if !v1_signature_matches(method, params, &key.secret) {
        return Err(Rejection::mismatch());
    }
    check_security_token(&key, params.get("SecurityToken").map(String::as_str))?;
    st.nonces.spend(param("SignatureNonce").to_owned())?;
    Ok(key)
}

/// `GetCallerIdentity`: any key STS accepts or has issued may ask whose it is.
fn caller_identity(
    st: &mut State,
    method: &str,
    params: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Value, Rejection> {
    let key = authenticate_v1(st, method, params, now, true)?;
    let assumed = key.security_token.is_some();
    Ok(json!({
        "RequestId": request_id(),
        "AccountId": st.account_id,
        "Arn": if assumed {
            format!("acs:ram::{}:assumed-role/sas-exporter/session", st.account_id)
        } else {
            format!("acs:ram::{}:user/sas-exporter", st.account_id)
        },
        "IdentityType": if assumed { "AssumedRoleUser" } else { "RAMUser" },
        "PrincipalId": key.id,
        "UserId": key.id,
        "RoleId": "",
    }))
}

fn assume_role_with_oidc(
    st: &mut State,
    params: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Value, Rejection> {
    require_non_empty(
        params,
        &["RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName"],
    )?;
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let duration = duration_seconds(params)?;
    if st
        .oidc_tokens
        .get(param("OIDCProviderArn"))
        .map(String::as_str)
        != Some(param("OIDCToken"))
    {
        return Err(Rejection::new(
            400,
            "AuthenticationFail.OIDCToken.Invalid",
            "The OIDC token is invalid.",
        ));
    }
    issue_for_role(st, params, duration, now)
}

/// Issues credentials for the call's `RoleArn` and `RoleSessionName` once the role is allowed.
fn issue_for_role(
    st: &mut State,
    params: &BTreeMap<String, String>,
    duration: i64,
    now: DateTime<Utc>,
) -> Result<Value, Rejection> {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    check_role(st, param("RoleArn"))?;
    Ok(issue(
        st,
        param("RoleArn"),
        param("RoleSessionName"),
        duration,
        now,
    ))
}

/// Like [`require`], but an empty value counts as missing, as STS treats it.
fn require_non_empty(params: &BTreeMap<String, String>, names: &[&str]) -> Result<(), Rejection> {
    match names
        .iter()
        .find(|n| params.get(**n).is_none_or(|v| v.is_empty()))
    {
        Some(name) => Err(Rejection::missing(name)),
        None => Ok(()),
    }
}

fn duration_seconds(params: &BTreeMap<String, String>) -> Result<i64, Rejection> {
    let Some(raw) = params.get("DurationSeconds") else {
        return Ok(DEFAULT_DURATION_SECS);
    };
    raw.parse::<i64>()
        .ok()
        .filter(|d| (MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(d))
        .ok_or_else(|| {
            Rejection::new(
                400,
                "InvalidParameter.DurationSeconds",
                format!(
                    "The parameter DurationSeconds must be between {MIN_DURATION_SECS} and {MAX_DURATION_SECS}."
                ),
            )
        })
}

fn check_role(st: &State, arn: &str) -> Result<(), Rejection> {
    if st.roles.contains(arn) {
        Ok(())
    } else {
        Err(Rejection::new(
            404,
            "EntityNotExist.Role",
            "The specified Role not exists.",
        ))
    }
}

/// Mints credentials, remembers them, and builds the success body the real STS sends.
fn issue(
    st: &mut State,
    role_arn: &str,
    session: &str,
    duration_secs: i64,
    now: DateTime<Utc>,
) -> Value {
    let key = new_sts_key();
    let expiration = now + chrono::Duration::seconds(duration_secs);
    // `acs:ram::<account>:role/<name>` becomes `acs:ram::<account>:assumed-role/<name>/<session>`.
    let assumed_arn = match role_arn.split_once(":role/") {
        Some((prefix, name)) => format!("{prefix}:assumed-role/{name}/{session}"),
        None => format!("{role_arn}/{session}"),
    };
    let role_id = 300_000_000_000_000_000_u128
        + u128::from_le_bytes(*uuid::Uuid::new_v4().as_bytes()) % 100_000_000_000_000_000;
    let body = json!({
        "RequestId": request_id(),
        "AssumedRoleUser": {
            "Arn": assumed_arn,
            "AssumedRoleId": format!("{role_id}:{session}"),
        },
        "Credentials": {
            "AccessKeyId": key.id,
            "AccessKeySecret": key.secret,
            "SecurityToken": key.security_token,
            "Expiration": format_timestamp(expiration),
        },
    });
    st.issued.push(key);
    body
}
