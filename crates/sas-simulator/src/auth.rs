//! Request authentication as the real services do it: required parameters, API name, key,
//! timestamp window, signature (V1 or V3), security token, then nonce reuse.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::clock::TIMESTAMP_FORMAT;
use crate::error::Rejection;
use crate::keys::{SimKey, find_key};
use crate::log::RecordedRequest;
use crate::operation::Operation;
use crate::signature::{self, V3_ALGORITHM};
use crate::{API_VERSION, TIMESTAMP_WINDOW};

/// The common parameters of a V1-signed request, in the order their absence is reported.
pub(crate) const V1_REQUIRED: [&str; 8] = [
    "AccessKeyId",
    "Action",
    "Version",
    "Timestamp",
    "SignatureNonce",
    "SignatureMethod",
    "SignatureVersion",
    "Signature",
];

/// Nonces seen recently; a second request with one of them is refused.
#[derive(Default)]
pub(crate) struct Nonces(HashMap<String, Instant>);

impl Nonces {
    /// Spends a nonce; only correctly signed requests get here, so a forged request cannot burn
    /// one.
    pub(crate) fn spend(&mut self, nonce: String) -> Result<(), Rejection> {
        let now = Instant::now();
        // Forgetting nonces older than any acceptable timestamp keeps the map bounded.
        self.0
            .retain(|_, seen| now.duration_since(*seen) < TIMESTAMP_WINDOW * 2);
        if self.0.insert(nonce, now).is_some() {
            return Err(Rejection::new(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        Ok(())
    }
}

/// How a Security Center request is signed.
enum Auth {
    V1,
    V3(V3Auth),
}

/// The parts of a V3 `Authorization` header.
struct V3Auth {
    credential: String,
    signed_headers: String,
    signature: String,
}

fn parse_v3_authorization(value: &str) -> Option<V3Auth> {
    let rest = value.strip_prefix(V3_ALGORITHM)?.trim_start();
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

/// The V3 `Authorization` header, when the request is V3-signed.
fn v3_authorization(req: &RecordedRequest) -> Option<&str> {
    req.header("authorization")
        .filter(|a| a.starts_with(V3_ALGORITHM))
}

/// The action a request names where its signature version carries it: `x-acs-action` for V3,
/// the `Action` parameter for V1.
pub(crate) fn requested_action<'a>(
    req: &'a RecordedRequest,
    query: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    match v3_authorization(req) {
        Some(_) => req.header("x-acs-action"),
        None => query.get("Action").map(String::as_str),
    }
}

/// Checks a Security Center request as the real service does, in its order: parameters, API,
/// key, timestamp, signature, token, then nonce reuse (a nonce is spent only by a correctly
/// signed request), and tells which operation it asks for. `query` is the decoded query string;
/// `body` the raw request body.
pub(crate) fn authenticate(
    keys: &[SimKey],
    nonces: &mut Nonces,
    req: &RecordedRequest,
    query: &BTreeMap<String, String>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Operation, Rejection> {
    let header = |name: &str| req.header(name);
    let (auth, timestamp, nonce, token, operation) = match v3_authorization(req) {
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
            let operation = check_api(header("x-acs-action"), header("x-acs-version"))?;
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
                operation,
            )
        }
        None => {
            require(query, &V1_REQUIRED)?;
            let operation = check_api(
                query.get("Action").map(String::as_str),
                query.get("Version").map(String::as_str),
            )?;
            check_v1_method(query)?;
            (
                Auth::V1,
                query.get("Timestamp").cloned().unwrap_or_default(),
                query.get("SignatureNonce").cloned().unwrap_or_default(),
                query.get("SecurityToken").cloned(),
                operation,
            )
        }
    };

    let key_id = match &auth {
        Auth::V3(a) => a.credential.as_str(),
        Auth::V1 => query
            .get("AccessKeyId")
            .map(String::as_str)
            .unwrap_or_default(),
    };
    let key = find_key(keys, key_id)?;
    check_timestamp(&timestamp, now)?;

    let valid = match &auth {
        Auth::V1 => v1_signature_matches(&req.method, query, &key.secret),
        Auth::V3(a) => v3_signature_matches(req, a, query, body, &key.secret)?,
    };
    if !valid {
        return Err(Rejection::mismatch());
    }
    check_security_token(&key, token.as_deref())?;
    nonces.spend(nonce)?;
    Ok(operation)
}

/// Rebuilds the V3 canonical request from the headers the client says it signed, as received.
fn v3_signature_matches(
    req: &RecordedRequest,
    auth: &V3Auth,
    query: &BTreeMap<String, String>,
    body: &[u8],
    secret: &str,
) -> Result<bool, Rejection> {
    let mut signed = BTreeMap::new();
    for name in auth.signed_headers.split(';') {
        let value = req.header(name).ok_or_else(Rejection::mismatch)?;
        signed.insert(name.to_owned(), value.to_owned());
    }
    let payload_hash = req.header("x-acs-content-sha256").unwrap_or_default();
    if payload_hash != signature::sha256_hex(body) {
        return Err(Rejection::mismatch());
    }
    let canonical = signature::v3_canonical_request(&req.method, query, &signed, payload_hash);
    Ok(signature::v3_verifies(
        secret,
        &signature::v3_string_to_sign(&canonical),
        &auth.signature,
    ))
}

/// Recomputes the V1 signature over exactly the parameters received, so anything the client
/// signed differently from what it sent shows up as a mismatch.
pub(crate) fn v1_signature_matches(
    method: &str,
    params: &BTreeMap<String, String>,
    secret: &str,
) -> bool {
    let mut params = params.clone();
    let Some(given) = params.remove("Signature") else {
        return false;
    };
    signature::v1_verifies(
        secret,
        &signature::v1_string_to_sign(method, &params),
        &given,
    )
}

/// The first of `names` missing from `params`, as the service reports it.
pub(crate) fn require(params: &BTreeMap<String, String>, names: &[&str]) -> Result<(), Rejection> {
    match names.iter().find(|n| !params.contains_key(**n)) {
        Some(name) => Err(Rejection::missing(name)),
        None => Ok(()),
    }
}

/// V1 requests must name the one method and version the service signs with.
pub(crate) fn check_v1_method(params: &BTreeMap<String, String>) -> Result<(), Rejection> {
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

/// The timestamp must be well formed and within the window around `now`.
pub(crate) fn check_timestamp(timestamp: &str, now: DateTime<Utc>) -> Result<(), Rejection> {
    let Ok(ts) = NaiveDateTime::parse_from_str(timestamp, TIMESTAMP_FORMAT) else {
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

/// A key issued with a security token only opens requests that carry exactly that token.
pub(crate) fn check_security_token(key: &SimKey, token: Option<&str>) -> Result<(), Rejection> {
    if key.security_token.is_some() && key.security_token.as_deref() != token {
        return Err(Rejection::new(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "The security token does not match the access key.",
        ));
    }
    Ok(())
}

fn check_api(action: Option<&str>, version: Option<&str>) -> Result<Operation, Rejection> {
    action
        .and_then(Operation::from_action)
        .filter(|_| version == Some(API_VERSION))
        .ok_or_else(Rejection::api_not_found)
}

/// Whole requests built from the published vectors: each carries a signature produced by the
/// official SDKs, so authentication is checked without any client-side signer.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ACTION;

    const DIGEST: &str = "sha256:8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
    const TOKEN: &str = "CAIS+test/token==";
    const SIGNED_AT: &str = "2024-05-01T08:00:00Z";

    fn at(offset_secs: i64) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(SIGNED_AT, TIMESTAMP_FORMAT)
            .map(|t| t.and_utc())
            .unwrap_or_default()
            + chrono::Duration::seconds(offset_secs)
    }

    fn keys(token: Option<&str>) -> Vec<SimKey> {
        vec![SimKey {
            id: "testid".to_owned(),
            secret: "testsecret".to_owned(),
            security_token: token.map(str::to_owned),
        }]
    }

    fn v1_query() -> BTreeMap<String, String> {
        [
            ("Action", ACTION),
            ("Format", "json"),
            ("Version", API_VERSION),
            ("Timestamp", SIGNED_AT),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Digest", DIGEST),
            ("SecurityToken", TOKEN),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("AccessKeyId", "testid"),
            ("Signature", "sNv7L5DVXA+kkm2iZQ1d/lAS9nE="),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn v1_request() -> RecordedRequest {
        RecordedRequest {
            method: "GET".to_owned(),
            uri: "/?(not read: the decoded query is passed separately)".to_owned(),
            headers: vec![(
                "host".to_owned(),
                "tds.ap-southeast-1.aliyuncs.com".to_owned(),
            )],
        }
    }

    fn v3_request(signature: &str) -> RecordedRequest {
        let headers = [
            ("host", "tds.ap-southeast-1.aliyuncs.com"),
            ("x-acs-action", ACTION),
            (
                "x-acs-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            ("x-acs-date", SIGNED_AT),
            ("x-acs-security-token", TOKEN),
            (
                "x-acs-signature-nonce",
                "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
            ),
            ("x-acs-version", API_VERSION),
        ];
        let mut headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        headers.push((
            "authorization".to_owned(),
            format!(
                "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,Signature={signature}"
            ),
        ));
        RecordedRequest {
            method: "POST".to_owned(),
            uri: "/".to_owned(),
            headers,
        }
    }

    fn v3_query() -> BTreeMap<String, String> {
        BTreeMap::from([("Digest".to_owned(), DIGEST.to_owned())])
    }

    const V3_SIGNATURE: &str = "5b3c80e7f17066195a418631dbfe99852f4bfcefbdae3dcfd4f3e0c0ca6d0aad";

    fn code(r: Result<Operation, Rejection>) -> &'static str {
        r.err().map_or("ok", |r| r.code)
    }

    #[test]
    fn a_v1_request_signed_by_the_sdk_passes_once() {
        let mut nonces = Nonces::default();
        let mut check = |query: &BTreeMap<String, String>, keys: &[SimKey], now| {
            code(authenticate(
                keys,
                &mut nonces,
                &v1_request(),
                query,
                b"",
                now,
            ))
        };
        let keys_ = keys(Some(TOKEN));
        // Nothing is spent by a refused request, so the same nonce still works afterwards.
        assert_eq!(
            check(&v1_query(), &keys_, at(16 * 60)),
            "InvalidTimeStamp.Expired"
        );
        let mut tampered = v1_query();
        tampered.insert("Digest".into(), "sha256:0000".into());
        assert_eq!(check(&tampered, &keys_, at(0)), "SignatureDoesNotMatch");
        assert_eq!(
            check(&v1_query(), &keys(Some("other")), at(0)),
            "InvalidSecurityToken.MismatchWithAccessKey"
        );
        assert_eq!(check(&v1_query(), &keys_, at(-14 * 60)), "ok");
        assert_eq!(check(&v1_query(), &keys_, at(0)), "SignatureNonceUsed");
    }

    #[test]
    fn v1_parameter_and_key_errors() {
        let mut nonces = Nonces::default();
        let mut check = |query: &BTreeMap<String, String>| {
            code(authenticate(
                &keys(Some(TOKEN)),
                &mut nonces,
                &v1_request(),
                query,
                b"",
                at(0),
            ))
        };
        let mut q = v1_query();
        q.remove("SignatureNonce");
        assert_eq!(check(&q), "MissingParameter");
        let mut q = v1_query();
        q.insert("Version".into(), "2014-05-26".into());
        assert_eq!(check(&q), "InvalidApi.NotFound");
        let mut q = v1_query();
        q.insert("SignatureMethod".into(), "HMAC-SHA256".into());
        assert_eq!(check(&q), "InvalidParameter");
        let mut q = v1_query();
        q.insert("AccessKeyId".into(), "stranger".into());
        assert_eq!(check(&q), "InvalidAccessKeyId.NotFound");
        let mut q = v1_query();
        q.insert("Timestamp".into(), "2024-05-01 08:00:00".into());
        assert_eq!(check(&q), "InvalidTimeStamp.Format");
    }

    #[test]
    fn a_v3_request_signed_by_the_sdk_passes_once() {
        let mut nonces = Nonces::default();
        let keys_ = keys(Some(TOKEN));
        let mut check = |req: &RecordedRequest, body: &[u8]| {
            code(authenticate(
                &keys_,
                &mut nonces,
                req,
                &v3_query(),
                body,
                at(0),
            ))
        };
        let forged = V3_SIGNATURE.replace('5', "6");
        assert_eq!(check(&v3_request(&forged), b""), "SignatureDoesNotMatch");
        // The payload hash must match the body actually received.
        assert_eq!(
            check(&v3_request(V3_SIGNATURE), b"x"),
            "SignatureDoesNotMatch"
        );
        assert_eq!(check(&v3_request(V3_SIGNATURE), b""), "ok");
        assert_eq!(check(&v3_request(V3_SIGNATURE), b""), "SignatureNonceUsed");
    }

    #[test]
    fn v3_headers_must_be_signed_and_well_formed() {
        let mut nonces = Nonces::default();
        let keys_ = keys(Some(TOKEN));
        let mut check = |req: &RecordedRequest| {
            code(authenticate(
                &keys_,
                &mut nonces,
                req,
                &v3_query(),
                b"",
                at(0),
            ))
        };
        let mut extra = v3_request(V3_SIGNATURE);
        extra
            .headers
            .push(("x-acs-extra".into(), "unsigned".into()));
        assert_eq!(check(&extra), "IncompleteSignature");

        let mut garbled = v3_request(V3_SIGNATURE);
        if let Some((_, v)) = garbled
            .headers
            .iter_mut()
            .find(|(k, _)| k == "authorization")
        {
            *v = "ACS3-HMAC-SHA256 Credential=testid".into();
        }
        assert_eq!(check(&garbled), "IncompleteSignature");

        let mut dateless = v3_request(V3_SIGNATURE);
        dateless.headers.retain(|(k, _)| k != "x-acs-date");
        assert_eq!(check(&dateless), "MissingParameter");
    }
}
