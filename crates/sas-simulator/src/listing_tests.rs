//! The listing operations over loopback HTTP, through the whole service: signed requests (V1 and
//! V3), paging, criteria, the page-size limit, page faults, rows changing at run time, counters.
//! The requests are signed here with the checker's own canonical strings: the signature rules
//! themselves are pinned by the published vectors elsewhere; this is about what a signed listing
//! request gets.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::Sha256;

use crate::clock::format_timestamp;
use crate::signature::{self, V3_ALGORITHM};
use crate::{
    API_VERSION, CONTAINERS_ACTION, ContainerInstance, Fault, FaultAction, FaultScope,
    IMAGES_ACTION, ImageInstance, SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, Scenario, Simulator,
};

fn digest(n: u32) -> String {
    format!("{n:08x}").repeat(8)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A V1-signed `POST /` for `action` with `params`; `tamper` changes a parameter after signing.
async fn call_v1(
    sim: &Simulator,
    action: &str,
    params: &[(&str, &str)],
    tamper: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut q: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (k, v) in [
        ("Action", action),
        ("Version", API_VERSION),
        ("Format", "JSON"),
        ("AccessKeyId", SIM_ACCESS_KEY_ID),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
    ] {
        q.insert(k.to_owned(), v.to_owned());
    }
    q.insert("Timestamp".into(), format_timestamp(Utc::now()));
    q.insert("SignatureNonce".into(), uuid::Uuid::new_v4().to_string());
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{SIM_ACCESS_KEY_SECRET}&").as_bytes())
        .expect("any key length");
    mac.update(signature::v1_string_to_sign("POST", &q).as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    q.insert("Signature".into(), sig);
    if let Some((k, v)) = tamper {
        q.insert(k.to_owned(), v.to_owned());
    }
    let url = format!("{}/?{}", sim.url(), signature::canonical_query(&q));
    answer(http().post(url).send().await.expect("an answer")).await
}

/// A V3-signed `POST /` for `action` with `params` in the query.
async fn call_v3(sim: &Simulator, action: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let q: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let empty = signature::sha256_hex(b"");
    let headers: BTreeMap<String, String> = [
        ("host", sim.addr().to_string()),
        ("x-acs-action", action.to_owned()),
        ("x-acs-content-sha256", empty.clone()),
        ("x-acs-date", format_timestamp(Utc::now())),
        ("x-acs-signature-nonce", uuid::Uuid::new_v4().to_string()),
        ("x-acs-version", API_VERSION.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let canonical = signature::v3_canonical_request("POST", &q, &headers, &empty);
    let mut mac =
        Hmac::<Sha256>::new_from_slice(SIM_ACCESS_KEY_SECRET.as_bytes()).expect("any key length");
    mac.update(signature::v3_string_to_sign(&canonical).as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let signed = headers.keys().cloned().collect::<Vec<_>>().join(";");
    let mut req = http().post(format!("{}/?{}", sim.url(), signature::canonical_query(&q)));
    for (k, v) in headers.iter().filter(|(k, _)| k.as_str() != "host") {
        req = req.header(k, v);
    }
    req = req.header(
        "authorization",
        format!(
            "{V3_ALGORITHM} Credential={SIM_ACCESS_KEY_ID},SignedHeaders={signed},Signature={sig}"
        ),
    );
    answer(req.send().await.expect("an answer")).await
}

async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn digests(body: &Value) -> Vec<String> {
    body["ImageInstanceList"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["Digest"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn images(n: u32) -> Vec<ImageInstance> {
    (0..n)
        .map(|i| ImageInstance::new(&digest(i), &format!("team{}", i % 3), "app", "1.0"))
        .collect()
}

async fn start(scenario: Scenario) -> Simulator {
    Simulator::start(scenario).await.expect("simulator starts")
}

#[tokio::test]
async fn pages_of_images_are_served_to_v1_and_v3_requests_and_counted() {
    let sim = start(Scenario::default().with_images(images(45))).await;
    let (status, first) = call_v1(&sim, IMAGES_ACTION, &[], None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["PageInfo"],
        json!({"Count": 20, "CurrentPage": 1, "PageSize": 20, "TotalCount": 45})
    );
    assert!(first["RequestId"].is_string());
    let (status, last) = call_v3(
        &sim,
        IMAGES_ACTION,
        &[("CurrentPage", "3"), ("PageSize", "20")],
    )
    .await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(digests(&last), (40..45).map(digest).collect::<Vec<_>>());
    assert_eq!(last["ImageInstanceList"][0]["RepoNamespace"], "team1");

    let (status, refused) = call_v1(
        &sim,
        IMAGES_ACTION,
        &[("CurrentPage", "2")],
        Some(("CurrentPage", "3")),
    )
    .await;
    assert_eq!(
        (status, &refused["Code"]),
        (400, &json!("SignatureDoesNotMatch"))
    );

    assert_eq!(sim.requests_for_action(IMAGES_ACTION), 3);
    assert_eq!(sim.outcome_count_for(IMAGES_ACTION, "ok"), 2);
    assert_eq!(
        sim.outcome_count_for(IMAGES_ACTION, "SignatureDoesNotMatch"),
        1
    );
    assert_eq!(sim.requests_for_action(crate::ACTION), 0);
    assert_eq!(sim.total_requests(), 3);
    let pages: Vec<(Option<String>, Option<u32>, Option<String>)> = sim
        .log()
        .into_iter()
        .map(|e| (e.action, e.page, e.digest))
        .collect();
    let images = Some(IMAGES_ACTION.to_owned());
    assert_eq!(
        pages,
        [
            (images.clone(), Some(1), None),
            (images.clone(), Some(3), None),
            (images, Some(3), None)
        ]
    );
}

#[tokio::test]
async fn criteria_match_fuzzily_and_combine_with_and_or_or() {
    let mut rows = images(6);
    rows[4].repo_namespace = Some("team1-canary".into());
    rows[5].last_scan_time = Some(1_700_000_000_000);
    let sim = start(Scenario::default().with_images(rows)).await;
    let team1 = r#"[{"name":"repoNamespace","value":"team1","logicalExp":"AND"}]"#;
    let (_, body) = call_v1(&sim, IMAGES_ACTION, &[("Criteria", team1)], None).await;
    assert_eq!(digests(&body), [digest(1), digest(4)]);
    assert_eq!(body["PageInfo"]["TotalCount"], 2);

    let two = r#"[{"name":"repoNamespace","value":"team1"},{"name":"digest","value":"00000004"}]"#;
    let (_, and) = call_v3(&sim, IMAGES_ACTION, &[("Criteria", two)]).await;
    assert_eq!(digests(&and), [digest(4)]);
    let (_, or) = call_v3(
        &sim,
        IMAGES_ACTION,
        &[("Criteria", two), ("LogicalExp", "OR")],
    )
    .await;
    assert_eq!(digests(&or), [digest(1), digest(4)]);

    let (_, scanned) = call_v1(&sim, IMAGES_ACTION, &[("Scanned", "true")], None).await;
    assert_eq!(digests(&scanned), [digest(5)]);
    let (_, unscanned) = call_v1(&sim, IMAGES_ACTION, &[("Scanned", "false")], None).await;
    assert_eq!(unscanned["PageInfo"]["TotalCount"], 5);

    let (status, bad) = call_v1(&sim, IMAGES_ACTION, &[("Criteria", "[{\"name\":")], None).await;
    assert_eq!((status, &bad["Code"]), (400, &json!("InvalidParameter")));
    assert!(
        bad["Message"]
            .as_str()
            .is_some_and(|m| m.contains("Criteria")),
        "{bad}"
    );
}

#[tokio::test]
async fn containers_are_listed_and_filtered_by_their_own_criteria() {
    let rows = (0..4)
        .map(|i| ContainerInstance {
            app_name: Some(format!("app{i}")),
            ..ContainerInstance::new(&format!("c{}", i % 2), "prod", &format!("p{i}"), &digest(i))
        })
        .collect();
    let sim = start(Scenario::default().with_containers(rows)).await;
    let c1 = r#"[{"name":"clusterId","value":"c1"}]"#;
    let (status, body) = call_v3(&sim, CONTAINERS_ACTION, &[("Criteria", c1)]).await;
    assert_eq!(status, 200, "{body}");
    let pods: Vec<&str> = body["ContainerInstanceList"]
        .as_array()
        .map(|r| r.iter().filter_map(|c| c["Pod"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(pods, ["p1", "p3"]);
    assert_eq!(body["ContainerInstanceList"][0]["ImageDigest"], digest(1));
    assert_eq!(body["PageInfo"]["TotalCount"], 2);
    assert_eq!(
        sim.remove_containers(&format!("sha256:{}", digest(1).to_uppercase())),
        1
    );
    let (_, body) = call_v1(&sim, CONTAINERS_ACTION, &[("Criteria", c1)], None).await;
    assert_eq!(body["PageInfo"]["TotalCount"], 1);
    assert_eq!(sim.requests_for_action(CONTAINERS_ACTION), 2);
}

#[tokio::test]
async fn a_page_size_over_the_limit_is_a_parameter_error() {
    let sim = start(Scenario::default().with_images(images(30))).await;
    sim.set_max_page_size(Some(25));
    let (status, body) = call_v1(&sim, IMAGES_ACTION, &[("PageSize", "26")], None).await;
    assert_eq!(status, 400);
    assert_eq!(body["Code"], "InvalidParameter");
    assert_eq!(
        body["Message"],
        "The specified parameter \"PageSize\" is not valid: 26 is larger than the maximum of 25."
    );
    let (status, body) = call_v1(&sim, IMAGES_ACTION, &[("PageSize", "25")], None).await;
    assert_eq!(
        (status, body["PageInfo"]["Count"].as_u64()),
        (200, Some(25))
    );
    sim.set_max_page_size(None);
    let (status, body) = call_v3(&sim, IMAGES_ACTION, &[("PageSize", "500")]).await;
    assert_eq!(
        (status, body["PageInfo"]["Count"].as_u64()),
        (200, Some(30))
    );
    assert_eq!(sim.outcome_count_for(IMAGES_ACTION, "InvalidParameter"), 1);
}

#[tokio::test]
async fn a_fault_on_one_page_hits_that_page_only() {
    let sim = start(Scenario::default().with_images(images(50))).await;
    sim.inject(
        FaultScope::page(IMAGES_ACTION, 3),
        Fault::error(503, "ServiceUnavailable").times(1),
    );
    sim.inject(
        FaultScope::page(IMAGES_ACTION, 2),
        Fault::action(FaultAction::MalformedJson).times(1),
    );
    let page = |n: &'static str| [("CurrentPage", n), ("PageSize", "20")];
    let (status, body) = call_v1(&sim, IMAGES_ACTION, &page("1"), None).await;
    assert_eq!(
        (status, body["PageInfo"]["Count"].as_u64()),
        (200, Some(20))
    );
    let (status, body) = call_v1(&sim, IMAGES_ACTION, &page("2"), None).await;
    assert_eq!(status, 200);
    assert!(body.is_string(), "not JSON: {body}");
    let (status, body) = call_v3(&sim, IMAGES_ACTION, &page("3")).await;
    assert_eq!((status, &body["Code"]), (503, &json!("ServiceUnavailable")));
    // Used up: the same page answers again, and the scan-task operation never saw a fault.
    let (status, body) = call_v3(&sim, IMAGES_ACTION, &page("3")).await;
    assert_eq!(
        (status, body["PageInfo"]["Count"].as_u64()),
        (200, Some(10))
    );

    sim.inject(
        FaultScope::page(IMAGES_ACTION, 1),
        Fault::error(400, "Throttling.User").retry_after_ms(250),
    );
    for _ in 0..2 {
        let (status, body) = call_v1(&sim, IMAGES_ACTION, &page("1"), None).await;
        assert_eq!((status, &body["Code"]), (400, &json!("Throttling.User")));
    }
    // The container listing's page 1 is another scope.
    let (status, _) = call_v1(&sim, CONTAINERS_ACTION, &page("1"), None).await;
    assert_eq!(status, 200);
    assert_eq!(sim.outcome_count_for(IMAGES_ACTION, "Throttling.User"), 2);
    assert_eq!(sim.outcome_count_for(IMAGES_ACTION, "malformed_json"), 1);
    assert_eq!(
        sim.outcome_count_for(IMAGES_ACTION, "ServiceUnavailable"),
        1
    );
    assert_eq!(sim.outcome_count_for(IMAGES_ACTION, "ok"), 2);
    assert_eq!(sim.requests_for_action(IMAGES_ACTION), 6);
}

#[tokio::test]
async fn rows_appear_change_and_disappear_at_run_time() {
    let sim = start(Scenario::default()).await;
    let d = digest(7);
    sim.set_images(vec![
        ImageInstance::new(&d, "team", "app", "1.0").following_task(),
    ]);
    let row = |body: &Value| body["ImageInstanceList"][0].clone();
    let (_, body) = call_v1(&sim, IMAGES_ACTION, &[], None).await;
    assert_eq!(
        row(&body),
        json!({"Digest": d, "RepoNamespace": "team", "RepoName": "app", "Tag": "1.0"})
    );

    sim.set_tasks(&d, vec![json!({"Status": "PROCESSING", "StartTime": 1})]);
    let (_, body) = call_v1(&sim, IMAGES_ACTION, &[], None).await;
    assert_eq!(row(&body)["ScaStatus"], "START_RUN");
    sim.set_tasks(
        &d,
        vec![json!({"Status": "SUCCESS", "StartTime": 1, "FinishTime": 1_700_000_000_000_i64})],
    );
    let (_, body) = call_v3(&sim, IMAGES_ACTION, &[]).await;
    assert_eq!(row(&body)["ScaStatus"], "SUCCESS");
    assert_eq!(row(&body)["LastScanTime"], 1_700_000_000_000_i64);

    // An upsert with the same digest and place replaces the row; another tag adds one.
    sim.upsert_image(ImageInstance {
        vul_count: Some(4),
        ..ImageInstance::new(&d, "team", "app", "1.0")
    });
    sim.upsert_image(ImageInstance::new(&d, "team", "app", "latest"));
    let (_, body) = call_v1(&sim, IMAGES_ACTION, &[], None).await;
    assert_eq!(body["PageInfo"]["TotalCount"], 2);
    assert_eq!(row(&body)["VulCount"], 4);
    assert!(row(&body).get("ScaStatus").is_none());
    assert_eq!(body["ImageInstanceList"][1]["Tag"], "latest");

    assert_eq!(sim.remove_images(&format!("sha256:{d}")), 2);
    let (_, body) = call_v1(&sim, IMAGES_ACTION, &[], None).await;
    assert_eq!(body["PageInfo"]["TotalCount"], 0);
    assert_eq!(body["ImageInstanceList"], json!([]));
}
