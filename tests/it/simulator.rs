//! The simulators driven by the exporter's own signer: requests signed with the client's signing
//! code are accepted, fault bodies misbehave on the wire as a client sees them, and credentials
//! issued by the STS and metadata simulators open the Security Center simulator.
//!
//! The simulator crate cannot depend on the exporter, so these checks live here; the simulator's
//! own unit tests cover what needs no client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sas_image_scan_exporter::Credentials;
use sas_image_scan_exporter::signing::{self, RpcCall, SignatureVersion};
use sas_image_scan_exporter::{ACTION, API_VERSION};
use sas_simulator::{
    Clock, Fault, FaultAction, FaultScope, MetadataSimulator, SIM_ACCESS_KEY_ID,
    SIM_ACCESS_KEY_SECRET, Scenario, SimKey, Simulator, StsSimulator,
};
use serde_json::{Value, json};

mod fault_bodies {
    use super::*;

    /// What an endless body starts with: the opening of a task list that never closes.
    const ENDLESS_PREFIX: &[u8] = br#"{"RequestId":"endless","Task":["#;

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

mod sts {
    use super::*;

    /// The STS API version every request must name.
    const STS_VERSION: &str = "2015-04-01";

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

mod metadata {
    use super::*;

    const CREDS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

    async fn get(url: String) -> (u16, String) {
        let resp = reqwest::get(url).await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    #[tokio::test]
    async fn issued_credentials_open_the_security_center_simulator() {
        let sas = Arc::new(
            Simulator::start(Scenario::default())
                .await
                .expect("start SAS"),
        );
        let md = MetadataSimulator::start("ExporterRole", Some(Arc::clone(&sas)), Clock::system())
            .await
            .expect("start metadata simulator");
        let (status, body) = get(format!("{}{CREDS_PATH}ExporterRole", md.url())).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let field = |name: &str| v[name].as_str().unwrap_or_default().to_owned();

        let mut q: BTreeMap<String, String> = [
            ("Action", ACTION),
            ("Version", API_VERSION),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("Digest", "sha256:0123"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        q.insert("AccessKeyId".into(), field("AccessKeyId"));
        q.insert("SecurityToken".into(), field("SecurityToken"));
        q.insert("SignatureNonce".into(), signing::new_nonce());
        // The SAS simulator checks timestamps against the real clock.
        q.insert("Timestamp".into(), signing::format_timestamp(Utc::now()));
        let sig = signing::v1_signature(
            &field("AccessKeySecret"),
            &signing::v1_string_to_sign("GET", &q),
        );
        q.insert("Signature".into(), sig);
        let (status, body) = get(format!("{}/?{}", sas.url(), signing::canonical_query(&q))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(sas.outcome_count("ok"), 1);
    }
}
