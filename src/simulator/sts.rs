//! A simulated STS (`sts.aliyuncs.com`, Version `2015-04-01`): `AssumeRole`, V1-signed and checked
//! like the Security Center simulator checks its requests, and the anonymous `AssumeRoleWithOIDC`
//! of Kubernetes RRSA. Issued credentials can be registered with a [`Simulator`] so the exporter
//! can go on to use them there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use super::{
    IssuerState, Product, Rejection, Server, SimBody, SimKey, Simulator, V1_REQUIRED,
    check_security_token, check_timestamp, check_v1_method, find_key, json_response, new_sts_key,
    parse_form, parse_query, product_error_response, read_body, request_id, require, spend_nonce,
    v1_signature_matches,
};
use crate::aliyun::signing;
use crate::clock::Clock;

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

struct FailNext {
    remaining: u64,
    status: u16,
    code: String,
}

struct State {
    keys: Vec<SimKey>,
    roles: HashSet<String>,
    oidc_tokens: HashMap<String, String>,
    nonces: HashMap<String, Instant>,
    fail_next: Option<FailNext>,
    delay: Option<Duration>,
    requests: Vec<StsRequest>,
    issued: Vec<SimKey>,
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
            nonces: HashMap::new(),
            fail_next: None,
            delay: None,
            requests: Vec::new(),
            issued: Vec::new(),
        };
        let (shared, server) = Shared::start(state, issue_to, clock, handle).await?;
        Ok(StsSimulator { shared, server })
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
            Answer::Reject(api_not_found())
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
        Answer::Reject(r) => {
            product_error_response(Product::STS, r.status, r.code, &r.message, None)
        }
        Answer::Fault { status, code } => product_error_response(
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

fn api_not_found() -> Rejection {
    Rejection::new(
        404,
        "InvalidApi.NotFound",
        "Specified api is not found, please check your url and method.",
    )
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
        return Err(api_not_found());
    }
    match params.get("Action").map(String::as_str) {
        Some("AssumeRole") => assume_role(st, method, params, now),
        Some("AssumeRoleWithOIDC") => assume_role_with_oidc(st, params, now),
        _ => Err(api_not_found()),
    }
}

fn assume_role(
    st: &mut State,
    method: &str,
    params: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Value, Rejection> {
    require(params, &V1_REQUIRED)?;
    check_v1_method(params)?;
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let key = find_key(&st.keys, param("AccessKeyId"))?;
    check_timestamp(param("Timestamp"), now)?;
    if !v1_signature_matches(method, params, &key.secret) {
        return Err(Rejection::mismatch());
    }
    check_security_token(&key, params.get("SecurityToken").map(String::as_str))?;
    spend_nonce(&mut st.nonces, param("SignatureNonce").to_owned())?;
    require_non_empty(params, &["RoleArn", "RoleSessionName"])?;
    let duration = duration_seconds(params)?;
    check_role(st, param("RoleArn"))?;
    Ok(issue(
        st,
        param("RoleArn"),
        param("RoleSessionName"),
        duration,
        now,
    ))
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
            "Expiration": signing::format_timestamp(expiration),
        },
    });
    st.issued.push(key);
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::client::{ACTION, API_VERSION};
    use crate::simulator::Scenario;

    const ROLE: &str = "acs:ram::123456789012:role/exporter";
    const PROVIDER: &str = "acs:ram::123456789012:oidc-provider/ack-rrsa";

    fn fixed_now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn fixed_clock() -> Clock {
        Clock::from_fn(fixed_now)
    }

    fn key() -> SimKey {
        SimKey {
            id: "LTAIstsCaller".to_owned(),
            secret: "caller-secret".to_owned(),
            security_token: None,
        }
    }

    async fn start(issue_to: Option<Arc<Simulator>>) -> StsSimulator {
        let sts = StsSimulator::start(vec![key()], issue_to, fixed_clock())
            .await
            .expect("start STS simulator");
        sts.allow_role(ROLE);
        sts
    }

    fn owned(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// AssumeRole parameters signed for `method` with `key`'s secret at `at`.
    fn signed(
        method: &str,
        key: &SimKey,
        secret: &str,
        at: DateTime<Utc>,
        extra: &[(&str, &str)],
    ) -> BTreeMap<String, String> {
        let mut p = owned(&[
            ("Action", "AssumeRole"),
            ("Version", STS_VERSION),
            ("Format", "JSON"),
            ("AccessKeyId", &key.id),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", &signing::new_nonce()),
            ("RoleArn", ROLE),
            ("RoleSessionName", "exporter"),
        ]);
        p.insert("Timestamp".into(), signing::format_timestamp(at));
        if let Some(t) = &key.security_token {
            p.insert("SecurityToken".into(), t.clone());
        }
        for (k, v) in extra {
            p.insert((*k).to_owned(), (*v).to_owned());
        }
        let sig = signing::v1_signature(secret, &signing::v1_string_to_sign(method, &p));
        p.insert("Signature".into(), sig);
        p
    }

    async fn get(url: &str, params: &BTreeMap<String, String>) -> (u16, Value) {
        let resp = reqwest::get(format!("{url}/?{}", signing::canonical_query(params)))
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        // A body that is not JSON shows up as `null` in the failing assertion.
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post_form(url: &str, query: &str, body: String) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{url}/?{query}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        // A body that is not JSON shows up as `null` in the failing assertion.
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn code(v: &Value) -> &str {
        v["Code"].as_str().unwrap_or_default()
    }

    #[tokio::test]
    async fn assume_role_issues_credentials_expiring_after_the_duration() {
        let sts = start(None).await;
        let p = signed("GET", &key(), &key().secret, fixed_now(), &[]);
        let (status, v) = get(&sts.url(), &p).await;
        assert_eq!(status, 200, "{v}");
        let creds = &v["Credentials"];
        assert_eq!(creds["Expiration"], "2030-01-02T04:04:05Z");
        let id = creds["AccessKeyId"].as_str().unwrap_or_default();
        assert!(id.starts_with("STS.NX"), "{id}");
        let token = creds["SecurityToken"].as_str().unwrap_or_default();
        assert!(token.starts_with("CAIS"), "{token}");
        assert_eq!(
            v["AssumedRoleUser"]["Arn"],
            "acs:ram::123456789012:assumed-role/exporter/exporter"
        );
        assert!(v["RequestId"].is_string());

        let issued = sts.issued();
        assert_eq!(issued.len(), 1);
        assert_eq!(issued[0].id, id);
        assert_eq!(
            issued[0].secret,
            creds["AccessKeySecret"].as_str().unwrap_or_default()
        );
        assert_eq!(issued[0].security_token.as_deref(), Some(token));

        let p = signed(
            "GET",
            &key(),
            &key().secret,
            fixed_now(),
            &[("DurationSeconds", "900")],
        );
        let (status, v) = get(&sts.url(), &p).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["Credentials"]["Expiration"], "2030-01-02T03:19:05Z");
        assert_ne!(v["Credentials"]["AccessKeyId"].as_str(), Some(id));

        let log = sts.requests();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].method, "GET");
        assert_eq!(log[0].action, "AssumeRole");
        assert_eq!(log[0].signature_valid, Some(true));
        assert_eq!(log[0].outcome, "ok");
        assert_eq!(
            log[1].params.get("DurationSeconds").map(String::as_str),
            Some("900")
        );
    }

    #[tokio::test]
    async fn post_form_body_is_merged_and_wins() {
        let sts = start(None).await;
        let p = signed(
            "POST",
            &key(),
            &key().secret,
            fixed_now(),
            &[("Policy", r#"{"Statement": [{"Effect": "Allow"}]}"#)],
        );
        // Split: common parameters in the query, business ones in the body, plus a query value
        // the body overrides (the signature covers the merged, overridden set).
        let body_names = ["RoleArn", "RoleSessionName", "Policy"];
        let query: BTreeMap<String, String> = p
            .iter()
            .filter(|(k, _)| !body_names.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([("RoleSessionName".to_owned(), "overridden".to_owned())])
            .collect();
        let body: BTreeMap<String, String> = p
            .iter()
            .filter(|(k, _)| body_names.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Generic form encoders write spaces as `+`; the simulator must read them as spaces.
        let form = signing::canonical_query(&body).replace("%20", "+");
        let (status, v) = post_form(&sts.url(), &signing::canonical_query(&query), form).await;
        assert_eq!(status, 200, "{v}");
        let log = sts.requests();
        assert_eq!(log[0].method, "POST");
        assert_eq!(
            log[0].params.get("RoleSessionName").map(String::as_str),
            Some("exporter")
        );
        assert_eq!(log[0].params.get("Policy"), p.get("Policy"));
        assert_eq!(log[0].signature_valid, Some(true));
    }

    #[tokio::test]
    async fn signing_errors_answer_like_the_real_service() {
        let sts = start(None).await;
        let url = sts.url();

        let p = signed("GET", &key(), "wrong-secret", fixed_now(), &[]);
        let (status, v) = get(&url, &p).await;
        assert_eq!((status, code(&v)), (400, "SignatureDoesNotMatch"));

        // Signed for POST, sent as GET: the method is part of the signature.
        let p = signed("POST", &key(), &key().secret, fixed_now(), &[]);
        let (_, v) = get(&url, &p).await;
        assert_eq!(code(&v), "SignatureDoesNotMatch");

        let stale = fixed_now() - chrono::Duration::minutes(16);
        let p = signed("GET", &key(), &key().secret, stale, &[]);
        let (status, v) = get(&url, &p).await;
        assert_eq!((status, code(&v)), (400, "InvalidTimeStamp.Expired"));

        let stranger = SimKey {
            id: "LTAIstranger".into(),
            ..key()
        };
        let p = signed("GET", &stranger, &key().secret, fixed_now(), &[]);
        let (status, v) = get(&url, &p).await;
        assert_eq!((status, code(&v)), (404, "InvalidAccessKeyId.NotFound"));

        let mut p = signed("GET", &key(), &key().secret, fixed_now(), &[]);
        p.remove("SignatureNonce");
        let (status, v) = get(&url, &p).await;
        assert_eq!((status, code(&v)), (400, "MissingParameter"));

        let p = signed("GET", &key(), &key().secret, fixed_now(), &[]);
        let (status, _) = get(&url, &p).await;
        assert_eq!(status, 200);
        let (status, v) = get(&url, &p).await;
        assert_eq!((status, code(&v)), (400, "SignatureNonceUsed"));

        let outcomes: Vec<(String, Option<bool>)> = sts
            .requests()
            .into_iter()
            .map(|r| (r.outcome, r.signature_valid))
            .collect();
        assert_eq!(outcomes[0], ("SignatureDoesNotMatch".into(), Some(false)));
        assert_eq!(outcomes[2], ("InvalidTimeStamp.Expired".into(), Some(true)));
        assert_eq!(sts.issued().len(), 1);
    }

    type Extra = &'static [(&'static str, &'static str)];

    #[tokio::test]
    async fn parameter_and_role_errors() {
        let sts = start(None).await;
        let url = sts.url();
        let cases: [(Extra, u16, &str); 5] = [
            (&[("RoleSessionName", "")], 400, "MissingParameter"),
            (
                &[("DurationSeconds", "899")],
                400,
                "InvalidParameter.DurationSeconds",
            ),
            (
                &[("DurationSeconds", "43201")],
                400,
                "InvalidParameter.DurationSeconds",
            ),
            (
                &[("RoleArn", "acs:ram::1:role/other")],
                404,
                "EntityNotExist.Role",
            ),
            (&[("Version", "2018-12-03")], 404, "InvalidApi.NotFound"),
        ];
        for (extra, want_status, want_code) in cases {
            let p = signed("GET", &key(), &key().secret, fixed_now(), extra);
            let (status, v) = get(&url, &p).await;
            assert_eq!((status, code(&v)), (want_status, want_code), "{extra:?}");
        }
        let p = signed(
            "GET",
            &key(),
            &key().secret,
            fixed_now(),
            &[("DurationSeconds", "43200"), ("ExternalId", "abc")],
        );
        let (status, v) = get(&url, &p).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["Credentials"]["Expiration"], "2030-01-02T15:04:05Z");
    }

    #[tokio::test]
    async fn a_caller_with_sts_credentials_must_send_its_token() {
        let caller = SimKey {
            id: "STS.caller".into(),
            secret: "s".into(),
            security_token: Some("CAIS+tok/en==".into()),
        };
        let sts = StsSimulator::start(vec![caller.clone()], None, fixed_clock())
            .await
            .expect("start");
        sts.allow_role(ROLE);
        let p = signed("GET", &caller, "s", fixed_now(), &[]);
        let (status, v) = get(&sts.url(), &p).await;
        assert_eq!(status, 200, "{v}");
        let tokenless = SimKey {
            security_token: None,
            ..caller
        };
        let p = signed("GET", &tokenless, "s", fixed_now(), &[]);
        let (_, v) = get(&sts.url(), &p).await;
        assert_eq!(code(&v), "InvalidSecurityToken.MismatchWithAccessKey");
    }

    fn oidc(token: &str, session: Option<&str>) -> BTreeMap<String, String> {
        let mut p = owned(&[
            ("Action", "AssumeRoleWithOIDC"),
            ("Version", STS_VERSION),
            ("Format", "JSON"),
            ("RoleArn", ROLE),
            ("OIDCProviderArn", PROVIDER),
            ("OIDCToken", token),
        ]);
        if let Some(s) = session {
            p.insert("RoleSessionName".into(), s.into());
        }
        p
    }

    #[tokio::test]
    async fn assume_role_with_oidc() {
        let sts = start(None).await;
        sts.set_oidc_token(PROVIDER, "eyJhbGciOi.jwt.sig");
        let url = sts.url();

        let mut p = oidc("eyJhbGciOi.jwt.sig", Some("pod"));
        p.insert("DurationSeconds".into(), "1800".into());
        let body = signing::canonical_query(&p);
        let (status, v) = post_form(&url, "", body).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["Credentials"]["Expiration"], "2030-01-02T03:34:05Z");
        assert_eq!(
            v["AssumedRoleUser"]["Arn"],
            "acs:ram::123456789012:assumed-role/exporter/pod"
        );

        let (status, v) = get(&url, &oidc("forged", Some("pod"))).await;
        assert_eq!(
            (status, code(&v)),
            (400, "AuthenticationFail.OIDCToken.Invalid")
        );

        let (status, v) = get(&url, &oidc("eyJhbGciOi.jwt.sig", None)).await;
        assert_eq!((status, code(&v)), (400, "MissingParameter"));

        let log = sts.requests();
        assert_eq!(log[0].action, "AssumeRoleWithOIDC");
        assert_eq!(log[0].signature_valid, None);
        assert_eq!(log[1].outcome, "AuthenticationFail.OIDCToken.Invalid");
        assert_eq!(sts.issued().len(), 1);
    }

    #[tokio::test]
    async fn faults_and_delay() {
        let sts = start(None).await;
        sts.fail_next(2, 503, "ServiceUnavailable");
        for _ in 0..2 {
            let p = signed("GET", &key(), &key().secret, fixed_now(), &[]);
            let (status, v) = get(&sts.url(), &p).await;
            assert_eq!((status, code(&v)), (503, "ServiceUnavailable"));
        }
        sts.set_delay(Some(Duration::from_millis(150)));
        let started = Instant::now();
        let p = signed("GET", &key(), &key().secret, fixed_now(), &[]);
        let (status, _) = get(&sts.url(), &p).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn issued_credentials_open_the_security_center_simulator() {
        let sas = Arc::new(
            Simulator::start(Scenario::default())
                .await
                .expect("start SAS"),
        );
        let sts = start(Some(Arc::clone(&sas))).await;
        let p = signed("GET", &key(), &key().secret, fixed_now(), &[]);
        let (status, v) = get(&sts.url(), &p).await;
        assert_eq!(status, 200, "{v}");
        let issued = sts.issued().pop().expect("one issued key");

        // The SAS simulator checks timestamps against the real clock.
        let mut q = owned(&[
            ("Action", ACTION),
            ("Version", API_VERSION),
            ("Format", "JSON"),
            ("AccessKeyId", &issued.id),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", &signing::new_nonce()),
            ("Digest", "sha256:0123"),
        ]);
        q.insert("Timestamp".into(), signing::format_timestamp(Utc::now()));
        q.insert(
            "SecurityToken".into(),
            issued.security_token.clone().unwrap_or_default(),
        );
        let sig = signing::v1_signature(&issued.secret, &signing::v1_string_to_sign("GET", &q));
        q.insert("Signature".into(), sig);
        let (status, v) = get(&sas.url(), &q).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(sas.outcome_count("ok"), 1);
    }
}
