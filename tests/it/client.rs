//! The client against the simulator over loopback HTTP: every response shape, every fault, and the
//! simulator's authentication checks.

use std::sync::Arc;
use std::time::Duration;

use chrono::FixedOffset;
use sas_image_scan_exporter::clock::Clock;
use sas_image_scan_exporter::config::{Endpoint, EndpointError};
use sas_image_scan_exporter::signing::{self, SignatureVersion};
use sas_image_scan_exporter::{ApiError, ClientOptions, ErrorClass, SasClient};
use sas_image_scan_exporter::{Credentials, StaticProvider};
use sas_image_scan_exporter::{ScanStatus, ScanTask};
use sas_simulator::{
    DigestReply, Fault, FaultAction, FaultScope, SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET,
    Scenario, SimKey, Simulator, synthetic_task,
};
use serde_json::{Value, json};

const D1: &str = "8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
const D2: &str = "0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a";

fn zone8() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

fn client_with(
    sim: &Simulator,
    version: SignatureVersion,
    creds: Credentials,
    timeout: Duration,
) -> SasClient {
    SasClient::new(
        ClientOptions {
            endpoint: sim.url().parse().expect("simulator endpoint"),
            signature_version: version,
            timeout,
            timezone: zone8(),
        },
        Arc::new(StaticProvider::new("static", creds)),
    )
    .expect("client builds")
}

fn sim_creds() -> Credentials {
    Credentials::new(SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, None, None)
}

fn client(sim: &Simulator, version: SignatureVersion) -> SasClient {
    client_with(sim, version, sim_creds(), Duration::from_secs(5))
}

fn doc_task() -> Value {
    json!({"Status":"SUCCESS","Modified":"2022-12-20 12:00:05","FinishTime":1669693430977_i64,
        "Create":"2022-12-20 11:59:05","Finish":100,"Source":"console_batch","StartTime":1668614400000_i64,
        "TaskType":"IMAGE_SCAN","Name":"IMAGE_SCAN","TaskId":"0a960b9a48b788a8689154b032bf****",
        "Target":D1,"Id":9755662,"TargetType":"IMAGE"})
}

fn doc_task_parsed() -> ScanTask {
    ScanTask {
        status: ScanStatus::Success,
        raw_status: "SUCCESS".into(),
        modified: chrono::DateTime::from_timestamp(1_671_508_805, 0),
        modified_raw: None,
        start_time_ms: Some(1_668_614_400_000),
        finish_time_ms: Some(1_669_693_430_977),
        finish: Some(100),
        source: Some("console_batch".into()),
        task_type: Some("IMAGE_SCAN".into()),
        name: Some("IMAGE_SCAN".into()),
        task_id: Some("0a960b9a48b788a8689154b032bf****".into()),
        id: Some(9_755_662),
        target_type: Some("IMAGE".into()),
    }
}

async fn start(scenario: Scenario) -> Simulator {
    Simulator::start(scenario).await.expect("simulator starts")
}

#[tokio::test]
async fn both_signature_versions_are_accepted_and_parsed_exactly() {
    let sim = start(Scenario::default().with_tasks(D1, vec![doc_task()])).await;
    for version in [SignatureVersion::V3, SignatureVersion::V1] {
        let r = client(&sim, version)
            .describe_image_latest_scan_task(D1)
            .await
            .expect("accepted");
        assert_eq!(r.task, Some(doc_task_parsed()), "{version:?}");
        assert_eq!(r.tasks_in_response, 1);
        assert_eq!(r.request_id.as_deref().map(str::len), Some(36));
    }
    assert_eq!(sim.requests_for(D1), 2);
    assert_eq!(sim.outcome_count("ok"), 2);
    assert_eq!(sim.total_requests(), 2);
}

#[tokio::test]
async fn sts_credentials_carry_their_token() {
    let sim = start(Scenario::default().with_tasks(D1, vec![doc_task()])).await;
    sim.add_key(SimKey {
        id: "STS.temp".into(),
        secret: "temp-secret".into(),
        security_token: Some("CAIS+tok/en==".into()),
    });
    for version in [SignatureVersion::V3, SignatureVersion::V1] {
        let good = Credentials::new(
            "STS.temp",
            "temp-secret",
            Some("CAIS+tok/en==".into()),
            None,
        );
        let r = client_with(&sim, version, good, Duration::from_secs(5))
            .describe_image_latest_scan_task(D1)
            .await;
        assert!(r.is_ok(), "{version:?}: {r:?}");
        let wrong = Credentials::new("STS.temp", "temp-secret", Some("other".into()), None);
        let e = client_with(&sim, version, wrong, Duration::from_secs(5))
            .describe_image_latest_scan_task(D1)
            .await
            .expect_err("token mismatch");
        assert_eq!(
            e.metric_code(),
            Some("InvalidSecurityToken.MismatchWithAccessKey")
        );
    }
}

#[tokio::test]
async fn every_response_shape() {
    let several = vec![
        json!({"Id": 1, "StartTime": 100, "Status": "FAIL"}),
        json!({"Id": 7, "StartTime": "300", "Status": "PROCESSING", "Finish": "3"}),
        json!({"Id": 5, "StartTime": 300, "Status": "SUCCESS"}),
    ];
    let sim = start(
        Scenario::default()
            .with_reply(D1, DigestReply::NoTaskKey)
            .with_reply(D2, DigestReply::Task(Value::Null)),
    )
    .await;
    let c = client(&sim, SignatureVersion::V3);
    let check_none = |r: Result<_, ApiError>| {
        let r: sas_image_scan_exporter::ScanResult = r.expect("ok");
        assert_eq!((r.task, r.tasks_in_response), (None, 0));
    };
    check_none(c.describe_image_latest_scan_task(D1).await);
    check_none(c.describe_image_latest_scan_task(D2).await);
    sim.set_tasks(D1, vec![]);
    check_none(c.describe_image_latest_scan_task(D1).await);
    // A digest the scenario does not list has no task.
    check_none(c.describe_image_latest_scan_task(&"e".repeat(64)).await);

    sim.set_tasks(D1, several);
    let r = c.describe_image_latest_scan_task(D1).await.expect("ok");
    assert_eq!(r.tasks_in_response, 3);
    let t = r.task.expect("latest");
    assert_eq!(
        (t.id, t.status, t.finish),
        (Some(7), ScanStatus::Processing, Some(3))
    );

    sim.set_tasks(
        D2,
        vec![json!({"Status": "QUEUED", "StartTime": 5, "NewField": {"nested": true}})],
    );
    let t = c
        .describe_image_latest_scan_task(D2)
        .await
        .expect("ok")
        .task
        .expect("task");
    assert_eq!(
        (t.status, t.raw_status.as_str()),
        (ScanStatus::Unknown, "QUEUED")
    );

    sim.set_tasks(
        D2,
        vec![json!({"Status": "TIMOUT", "Modified": "2024-05-01T08:00:00"})],
    );
    let t = c
        .describe_image_latest_scan_task(D2)
        .await
        .expect("ok")
        .task
        .expect("task");
    assert_eq!(t.status, ScanStatus::Timeout);
    assert_eq!(t.modified.map(|m| m.timestamp()), Some(1_714_521_600));

    // An unreadable field is left out; the rest of the task still counts.
    sim.set_tasks(
        D2,
        vec![json!({"StartTime": "yesterday", "Status": "SUCCESS"})],
    );
    let r = c.describe_image_latest_scan_task(D2).await.expect("ok");
    let t = r.task.expect("task");
    assert_eq!((t.status, t.start_time_ms), (ScanStatus::Success, None));
    assert_eq!(
        r.dropped
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["Task[0].StartTime: \"yesterday\" is not an integer"]
    );

    // A shape with no reading at all still fails the answer.
    sim.set_tasks(D2, vec![json!("not a task")]);
    let e = c
        .describe_image_latest_scan_task(D2)
        .await
        .expect_err("bad");
    assert_eq!(
        e.to_string(),
        "invalid response: Task[0]: expected an object, got a string"
    );
    assert_eq!(
        (e.class(), e.metric_code()),
        (ErrorClass::Fatal, Some("invalid_response"))
    );
}

#[tokio::test]
async fn synthetic_unknown_digests() {
    let sim = start(Scenario::default().with_synthetic_unknown()).await;
    let c = client(&sim, SignatureVersion::V3);
    let digest = "1234abcd".repeat(8);
    let t = c
        .describe_image_latest_scan_task(&digest)
        .await
        .expect("ok")
        .task
        .expect("synthetic task");
    let expected = synthetic_task(&digest);
    assert_eq!(t.status, ScanStatus::Success);
    assert_eq!(t.start_time_ms, expected["StartTime"].as_i64());
    assert_eq!(t.finish_time_ms, expected["FinishTime"].as_i64());
    assert_eq!(t.task_id.as_deref(), Some(&digest[..32]));
    assert!(t.finish_time_ms > t.start_time_ms);
}

/// (fault, expected class, expected metric code, expected retry-after)
#[tokio::test]
async fn every_api_error_code_is_classified() {
    let table = [
        (400, "Throttling", ErrorClass::Throttled),
        (400, "Throttling.User", ErrorClass::Throttled),
        (400, "Throttling.Api", ErrorClass::Throttled),
        (503, "ServiceUnavailable", ErrorClass::Retryable),
        (500, "InternalError", ErrorClass::Retryable),
        (500, "ServerError", ErrorClass::Retryable),
        (500, "UnknownError", ErrorClass::Retryable),
        (400, "SignatureNonceUsed", ErrorClass::NonceReused),
        (400, "SignatureDoesNotMatch", ErrorClass::Fatal),
        (400, "IncompleteSignature", ErrorClass::Fatal),
        (404, "InvalidAccessKeyId.NotFound", ErrorClass::Fatal),
        (400, "InvalidAccessKeyId.Inactive", ErrorClass::Fatal),
        (400, "InvalidTimeStamp.Expired", ErrorClass::Fatal),
        (400, "InvalidTimeStamp.Format", ErrorClass::Fatal),
        (403, "Forbidden.RAM", ErrorClass::Fatal),
        (403, "NoPermission", ErrorClass::Fatal),
        (400, "MissingParameter", ErrorClass::Fatal),
        (400, "InvalidParameter", ErrorClass::Fatal),
        (404, "InvalidApi.NotFound", ErrorClass::Fatal),
    ];
    let sim = start(Scenario::default().with_tasks(D1, vec![doc_task()])).await;
    let c = client(&sim, SignatureVersion::V3);
    for (status, code, class) in table {
        sim.inject(
            FaultScope::Digest(D1.into()),
            Fault::error(status, code).times(1),
        );
        let e = c.describe_image_latest_scan_task(D1).await.expect_err(code);
        match &e {
            ApiError::Service {
                status: s,
                code: c,
                message,
                request_id,
                retry_after,
            } => {
                assert_eq!((*s, c.as_str()), (status, code));
                assert_eq!(message, &format!("simulated {code}"));
                assert_eq!(request_id.as_deref().map(str::len), Some(36));
                assert_eq!(*retry_after, None);
            }
            other => panic!("{code}: expected a service error, got {other:?}"),
        }
        assert_eq!(e.class(), class, "{code}");
        assert_eq!(e.metric_code(), Some(code));
        assert_eq!(sim.outcome_count(code), 1, "{code}");
    }
    // The faults were one-shot: the digest answers normally again.
    let r = c
        .describe_image_latest_scan_task(D1)
        .await
        .expect("recovered");
    assert_eq!(r.task, Some(doc_task_parsed()));
}

#[tokio::test]
async fn retry_after_is_surfaced() {
    let sim = start(Scenario::default()).await;
    sim.inject(
        FaultScope::Global,
        Fault::error(400, "Throttling.User")
            .retry_after_ms(2500)
            .times(1),
    );
    sim.inject(
        FaultScope::Global,
        Fault::action(FaultAction::Raw {
            status: 503,
            body: String::new(),
        })
        .retry_after_ms(700)
        .times(1),
    );
    let c = client(&sim, SignatureVersion::V1);
    let e = c
        .describe_image_latest_scan_task(D1)
        .await
        .expect_err("throttled");
    assert_eq!(e.class(), ErrorClass::Throttled);
    assert_eq!(e.retry_after(), Some(Duration::from_millis(2500)));
    let e = c
        .describe_image_latest_scan_task(D1)
        .await
        .expect_err("503");
    assert_eq!(e.to_string(), "HTTP 503 without an error body");
    assert_eq!(
        (e.class(), e.metric_code()),
        (ErrorClass::Retryable, Some("http_5xx"))
    );
    assert_eq!(e.retry_after(), Some(Duration::from_millis(700)));
    assert_eq!(sim.outcome_count("Throttling.User"), 1);
    assert_eq!(sim.outcome_count("http_503"), 1);
}

#[tokio::test]
async fn transport_faults() {
    let sim = start(Scenario::default().with_tasks(D1, vec![doc_task()])).await;
    let c = client_with(
        &sim,
        SignatureVersion::V3,
        sim_creds(),
        Duration::from_millis(300),
    );
    let scope = || FaultScope::Digest(D1.into());
    let cases: Vec<(Fault, &str, ErrorClass, &str)> = vec![
        (
            Fault::delay(Duration::from_secs(2)),
            "timeout",
            ErrorClass::Retryable,
            "no response within 300ms",
        ),
        (
            Fault::action(FaultAction::Drop),
            "connect",
            ErrorClass::Retryable,
            "connection failed: ",
        ),
        (
            Fault::action(FaultAction::Raw {
                status: 502,
                body: "<html>Bad Gateway</html>".into(),
            }),
            "http_5xx",
            ErrorClass::Retryable,
            "HTTP 502 without an error body",
        ),
        (
            Fault::action(FaultAction::MalformedJson),
            "invalid_response",
            ErrorClass::Fatal,
            "invalid response: response is not valid JSON: EOF while parsing",
        ),
        (
            Fault::action(FaultAction::Oversized {
                bytes: 2 << 20,
                chunked: false,
            }),
            "invalid_response",
            ErrorClass::Fatal,
            "response body exceeds 1048576 bytes",
        ),
        (
            Fault::action(FaultAction::Oversized {
                bytes: 64 << 20,
                chunked: true,
            }),
            "invalid_response",
            ErrorClass::Fatal,
            "response body exceeds 1048576 bytes",
        ),
    ];
    for (fault, code, class, text) in cases {
        sim.inject(scope(), fault.times(1));
        let e = c.describe_image_latest_scan_task(D1).await.expect_err(code);
        assert_eq!(e.metric_code(), Some(code), "{e}");
        assert_eq!(e.class(), class, "{e}");
        assert!(
            e.to_string().starts_with(text),
            "{e} should start with {text}"
        );
    }
    // A delay shorter than the timeout is just slow.
    sim.inject(scope(), Fault::delay(Duration::from_millis(50)).times(1));
    assert!(c.describe_image_latest_scan_task(D1).await.is_ok());
    // A body exactly at the cap is read (and is then not JSON).
    sim.inject(
        scope(),
        Fault::action(FaultAction::Oversized {
            bytes: 1 << 20,
            chunked: true,
        })
        .times(1),
    );
    let e = c
        .describe_image_latest_scan_task(D1)
        .await
        .expect_err("spaces");
    assert!(
        e.to_string()
            .starts_with("invalid response: response is not valid JSON"),
        "{e}"
    );
    assert_eq!(sim.outcome_count("oversized"), 3);
    assert_eq!(sim.outcome_count("dropped"), 1);
    assert_eq!(sim.outcome_count("malformed_json"), 1);
}

#[tokio::test]
async fn faults_per_digest_and_global() {
    let sim = start(Scenario::default()).await;
    let c = client(&sim, SignatureVersion::V3);
    sim.inject(
        FaultScope::Digest(D1.into()),
        Fault::error(403, "NoPermission"),
    );
    sim.inject(
        FaultScope::Global,
        Fault::error(500, "InternalError").times(2),
    );
    // The digest's own fault wins and is unlimited; D2 sees the global one twice, then recovers.
    for _ in 0..3 {
        let e = c.describe_image_latest_scan_task(D1).await.expect_err("D1");
        assert_eq!(e.metric_code(), Some("NoPermission"));
    }
    for _ in 0..2 {
        let e = c.describe_image_latest_scan_task(D2).await.expect_err("D2");
        assert_eq!(e.metric_code(), Some("InternalError"));
    }
    assert!(c.describe_image_latest_scan_task(D2).await.is_ok());
    sim.clear_faults();
    assert!(c.describe_image_latest_scan_task(D1).await.is_ok());
    assert_eq!((sim.requests_for(D1), sim.requests_for(D2)), (4, 3));
    assert_eq!(sim.outcome_count("NoPermission"), 3);
    assert_eq!(sim.outcome_count("InternalError"), 2);
    assert_eq!(sim.outcome_count("ok"), 2);
}

#[tokio::test]
async fn simulator_rejects_bad_authentication() {
    let sim = start(Scenario::default().with_tasks(D1, vec![doc_task()])).await;
    for version in [SignatureVersion::V3, SignatureVersion::V1] {
        let wrong_secret = Credentials::new(SIM_ACCESS_KEY_ID, "not-the-secret", None, None);
        let e = client_with(&sim, version, wrong_secret, Duration::from_secs(5))
            .describe_image_latest_scan_task(D1)
            .await
            .expect_err("wrong secret");
        assert_eq!(
            e.metric_code(),
            Some("SignatureDoesNotMatch"),
            "{version:?}"
        );
        assert!(matches!(e, ApiError::Service { status: 400, .. }));

        let unknown = Credentials::new("LTAIunknown", SIM_ACCESS_KEY_SECRET, None, None);
        let e = client_with(&sim, version, unknown, Duration::from_secs(5))
            .describe_image_latest_scan_task(D1)
            .await
            .expect_err("unknown key");
        assert_eq!(e.metric_code(), Some("InvalidAccessKeyId.NotFound"));
        assert!(matches!(e, ApiError::Service { status: 404, .. }));

        let stale = client(&sim, version).with_clock(Clock::skewed(chrono::Duration::minutes(-16)));
        let e = stale
            .describe_image_latest_scan_task(D1)
            .await
            .expect_err("stale");
        assert_eq!(e.metric_code(), Some("InvalidTimeStamp.Expired"));
        // Within the window is fine.
        let skewed = client(&sim, version).with_clock(Clock::skewed(chrono::Duration::minutes(14)));
        assert!(skewed.describe_image_latest_scan_task(D1).await.is_ok());
    }
    assert_eq!(sim.outcome_count("SignatureDoesNotMatch"), 2);
    assert_eq!(sim.outcome_count("InvalidAccessKeyId.NotFound"), 2);
    assert_eq!(sim.outcome_count("InvalidTimeStamp.Expired"), 2);
    assert_eq!(sim.outcome_count("ok"), 2);
}

/// Sends a recorded request again, optionally altered, and returns the simulator's error code
/// (or "ok").
async fn replay(sim: &Simulator, method: &str, uri: &str, headers: &[(String, String)]) -> String {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http.request(method, format!("http://{}{uri}", sim.addr()));
    for (k, v) in headers {
        if k != "content-length" {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.expect("sent");
    let ok = resp.status().is_success();
    let body: Value = serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
    if ok {
        "ok".into()
    } else {
        body["Code"].as_str().unwrap_or("?").to_owned()
    }
}

fn flip(c: u8) -> u8 {
    match c {
        b'0'..=b'8' | b'a'..=b'y' | b'A'..=b'Y' => c + 1,
        b'9' => b'0',
        b'z' => b'a',
        b'Z' => b'A',
        b'%' => b'2',
        _ => b'x',
    }
}

#[tokio::test]
async fn any_changed_byte_of_signed_material_is_rejected() {
    let sim = start(Scenario::default().with_tasks(D1, vec![doc_task()])).await;
    sim.add_key(SimKey {
        id: "STS.temp".into(),
        secret: "temp-secret".into(),
        security_token: Some("CAIS+tok/en==".into()),
    });
    let creds = Credentials::new(
        "STS.temp",
        "temp-secret",
        Some("CAIS+tok/en==".into()),
        None,
    );
    for version in [SignatureVersion::V3, SignatureVersion::V1] {
        let c = client_with(&sim, version, creds.clone(), Duration::from_secs(5));
        c.describe_image_latest_scan_task(D1)
            .await
            .expect("signed ok");
        let original = sim.last_request().expect("recorded");
        // The untouched replay is refused only because its nonce was spent.
        assert_eq!(
            replay(&sim, &original.method, &original.uri, &original.headers).await,
            "SignatureNonceUsed"
        );
        // The method is signed.
        assert_ne!(
            replay(&sim, "GET", &original.uri, &original.headers).await,
            "ok"
        );
        // Every byte of the query (V1 carries all signed parameters there; V3 the Digest).
        let (path, query) = original.uri.split_once('?').expect("query");
        let mut rejected = 0;
        for i in 0..query.len() {
            let mut q = query.as_bytes().to_vec();
            if q[i] == b'&' || q[i] == b'=' {
                continue;
            }
            q[i] = flip(q[i]);
            let uri = format!("{path}?{}", String::from_utf8_lossy(&q));
            let code = replay(&sim, &original.method, &uri, &original.headers).await;
            assert_ne!(
                code, "ok",
                "{version:?}: byte {i} of the query changed: {uri}"
            );
            assert_ne!(code, "SignatureNonceUsed", "{version:?}: query byte {i}");
            rejected += 1;
        }
        // Every byte of every signed header value (V3).
        let signed: Vec<String> = if version == SignatureVersion::V3 {
            [
                "host",
                "x-acs-action",
                "x-acs-version",
                "x-acs-date",
                "x-acs-signature-nonce",
                "x-acs-content-sha256",
                "x-acs-security-token",
            ]
            .map(String::from)
            .to_vec()
        } else {
            Vec::new()
        };
        for name in &signed {
            let pos = original
                .headers
                .iter()
                .position(|(k, _)| k == name)
                .unwrap_or_else(|| panic!("{name} sent"));
            let value = original.headers[pos].1.clone();
            for i in 0..value.len() {
                let mut v = value.as_bytes().to_vec();
                v[i] = flip(v[i]);
                let mut headers = original.headers.clone();
                headers[pos].1 = String::from_utf8_lossy(&v).into_owned();
                let code = replay(&sim, &original.method, &original.uri, &headers).await;
                assert_ne!(code, "ok", "{name} byte {i}");
                assert_ne!(code, "SignatureNonceUsed", "{name} byte {i}");
                rejected += 1;
            }
        }
        assert!(rejected > 60, "{version:?}: only {rejected} variants tried");
    }
}

#[tokio::test]
async fn wrong_method_and_missing_parameters() {
    let sim = start(Scenario::default().with_tasks(D1, vec![doc_task()])).await;
    // A V1 request signed for GET but sent as POST.
    let call = signing::RpcCall {
        method: "GET",
        host: &sim.addr().to_string(),
        action: "DescribeImageLatestScanTask",
        version: "2018-12-03",
        params: [("Digest".to_owned(), D1.to_owned())].into(),
    };
    let creds = sim_creds();
    let signed = signing::sign(
        SignatureVersion::V1,
        &call,
        &creds,
        chrono::Utc::now(),
        &signing::new_nonce(),
    );
    let uri = format!("/?{}", signed.query);
    assert_eq!(
        replay(&sim, "POST", &uri, &[]).await,
        "SignatureDoesNotMatch"
    );
    // Signed and sent as GET, it is fine: the simulator accepts either method.
    let signed = signing::sign(
        SignatureVersion::V1,
        &call,
        &creds,
        chrono::Utc::now(),
        &signing::new_nonce(),
    );
    assert_eq!(
        replay(&sim, "GET", &format!("/?{}", signed.query), &[]).await,
        "ok"
    );

    // No Digest at all, correctly signed.
    let call = signing::RpcCall {
        params: Default::default(),
        method: "POST",
        ..call
    };
    for version in [SignatureVersion::V1, SignatureVersion::V3] {
        let signed = signing::sign(
            version,
            &call,
            &creds,
            chrono::Utc::now(),
            &signing::new_nonce(),
        );
        let code = replay(
            &sim,
            "POST",
            &format!("/?{}", signed.query),
            &signed.headers,
        )
        .await;
        assert_eq!(code, "MissingParameter", "{version:?}");
    }
    // No signature parameters at all.
    assert_eq!(
        replay(&sim, "POST", &format!("/?Digest={D1}"), &[]).await,
        "MissingParameter"
    );
}

#[tokio::test]
async fn client_rejects_unsafe_endpoints() {
    // The endpoint is checked when it is parsed, so an unsafe one cannot reach the client.
    let mk = |endpoint: &str| -> Result<(), String> {
        let endpoint: Endpoint = endpoint.parse().map_err(|e: EndpointError| e.to_string())?;
        SasClient::new(
            ClientOptions {
                endpoint,
                signature_version: SignatureVersion::V3,
                timeout: Duration::from_secs(1),
                timezone: zone8(),
            },
            Arc::new(StaticProvider::new("static", sim_creds())),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert_eq!(mk("https://tds.cn-shanghai.aliyuncs.com"), Ok(()));
    assert_eq!(mk("http://127.0.0.1:8080"), Ok(()));
    assert_eq!(mk("http://[::1]:8080/"), Ok(()));
    let expected =
        "expected an absolute URL https://host[:port] (http:// only for a loopback host), got";
    assert_eq!(
        mk("http://tds.cn-shanghai.aliyuncs.com"),
        Err(format!(
            "{expected} \"http://tds.cn-shanghai.aliyuncs.com\": plain http to a host that is not loopback (127.0.0.0/8, ::1, localhost)"
        ))
    );
    assert_eq!(
        mk("ftp://x"),
        Err(format!("{expected} \"ftp://x\": unsupported scheme"))
    );
    assert_eq!(
        mk("https://x/path"),
        Err(format!(
            "{expected} \"https://x/path\": a path, query or fragment is not allowed"
        ))
    );
}

#[tokio::test]
async fn expired_credentials_send_nothing() {
    let sim = start(Scenario::default()).await;
    let expired = Credentials::new(
        SIM_ACCESS_KEY_ID,
        SIM_ACCESS_KEY_SECRET,
        Some("t".into()),
        Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
    );
    let e = client_with(&sim, SignatureVersion::V3, expired, Duration::from_secs(1))
        .describe_image_latest_scan_task(D1)
        .await
        .expect_err("expired");
    assert!(
        e.to_string()
            .starts_with("credentials unavailable: the credentials from static expired at "),
        "{e}"
    );
    assert_eq!(e.metric_code(), None);
    assert_eq!(sim.total_requests(), 0);
}

#[tokio::test]
async fn transport_errors_never_show_the_signed_url() {
    // A V1-signed URL carries the STS token; reqwest's error text would include it.
    let sim = start(Scenario::default()).await;
    sim.inject(FaultScope::Global, Fault::action(FaultAction::Drop));
    let token = "CAIS-secret-token-value";
    let creds = Credentials::new(
        SIM_ACCESS_KEY_ID,
        SIM_ACCESS_KEY_SECRET,
        Some(token.into()),
        None,
    );
    let c = client_with(
        &sim,
        SignatureVersion::V1,
        creds.clone(),
        Duration::from_secs(2),
    );
    let e = c
        .describe_image_latest_scan_task(D1)
        .await
        .expect_err("dropped");
    assert_eq!(e.metric_code(), Some("connect"));
    assert!(!format!("{e} {e:?}").contains(token), "{e}");
    // Nothing listening at all.
    drop(sim);
    let e = c
        .describe_image_latest_scan_task(D1)
        .await
        .expect_err("refused");
    assert!(!format!("{e} {e:?}").contains(token), "{e}");
    assert!(!format!("{e}").contains("SecurityToken"), "{e}");
}
