//! The two listings against the simulator over loopback HTTP: every page read with both signature
//! versions, criteria sent and matched, rows read leniently, a failing page named, a refused
//! page size reported as a configuration problem, and retries left to the caller.

use std::sync::Arc;
use std::time::Duration;

use chrono::FixedOffset;
use sas_image_scan_exporter::listing::{
    CONTAINERS_ACTION, ContainerRow, Criterion, IMAGES_ACTION, ImageRow, ListError, ListQuery,
    Listed, ScannedFilter, list_all,
};
use sas_image_scan_exporter::signing::SignatureVersion;
use sas_image_scan_exporter::{ACTION, ApiError, ClientOptions, ErrorClass, SasClient};
use sas_image_scan_exporter::{Credentials, StaticProvider};
use sas_simulator::{
    ContainerInstance, Fault, FaultAction, FaultScope, ImageInstance, SIM_ACCESS_KEY_ID,
    SIM_ACCESS_KEY_SECRET, Scenario, Simulator,
};
use serde_json::json;

use crate::common::digest;

fn client(sim: &Simulator, version: SignatureVersion) -> SasClient {
    SasClient::new(
        ClientOptions {
            endpoint: sim.url().parse().expect("simulator endpoint"),
            signature_version: version,
            timeout: Duration::from_secs(5),
            timezone: FixedOffset::east_opt(8 * 3600).expect("valid offset"),
        },
        Arc::new(StaticProvider::new(
            "static",
            Credentials::new(SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, None, None),
        )),
    )
    .expect("client builds")
}

async fn start(scenario: Scenario) -> Simulator {
    Simulator::start(scenario).await.expect("simulator starts")
}

fn criterion(name: &str, value: &str) -> Criterion {
    Criterion {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn query(page: u32, page_size: u32, criteria: &[Criterion]) -> ListQuery<'_> {
    ListQuery {
        page,
        page_size,
        criteria,
        logical_and: true,
        scanned: ScannedFilter::Any,
    }
}

/// Every image page, one request each, no retries.
async fn list_images(
    client: &SasClient,
    page_size: u32,
    criteria: &[Criterion],
) -> Result<Listed<ImageRow>, ListError> {
    list_all(page_size, |page| async move {
        client
            .describe_image_instances(&query(page, page_size, criteria))
            .await
    })
    .await
}

/// 130 images in three namespaces, one of which (`payments-2`) the service's fuzzy match on
/// `payments` also returns.
fn images() -> Vec<ImageInstance> {
    (0..130)
        .map(|i| {
            let ns = ["payments", "payments-2", "search"][i as usize % 3];
            ImageInstance {
                vul_count: Some(i64::from(i % 7)),
                last_scan_time: (i % 2 == 0).then_some(1_700_000_000_000 + i64::from(i)),
                ..ImageInstance::new(&digest(i), ns, &format!("app{i}"), "1.0")
            }
        })
        .collect()
}

#[tokio::test]
async fn every_page_is_read_with_criteria_and_both_signature_versions() {
    let sim = start(Scenario::default().with_images(images())).await;
    let payments = [criterion("repoNamespace", "payments")];
    for (version, sent_before) in [(SignatureVersion::V3, 0), (SignatureVersion::V1, 4)] {
        let listed = list_images(&client(&sim, version), 25, &payments)
            .await
            .expect("complete listing");
        // 87 rows match fuzzily: four pages of 25, 25, 25 and 12.
        assert_eq!(listed.pages, 4, "{version:?}");
        assert_eq!(listed.rows.len(), 87);
        assert_eq!(listed.skipped, []);
        let want: Vec<String> = (0..130).filter(|i| i % 3 != 2).map(digest).collect();
        let got: Vec<&str> = listed.rows.iter().map(|r| r.digest.as_str()).collect();
        assert_eq!(got, want);
        // The exact re-check the discovery layer makes keeps `payments` only.
        let exact = listed
            .rows
            .iter()
            .filter(|r| r.field("repoNamespace") == Some("payments"))
            .count();
        assert_eq!(exact, 44);
        let third = &listed.rows[2];
        assert_eq!(third.repo_name.as_deref(), Some("app3"));
        assert_eq!(third.vul_count, Some(3));
        assert_eq!(third.last_scan_time_ms, None);
        assert_eq!(listed.rows[3].last_scan_time_ms, Some(1_700_000_000_004));
        assert_eq!(sim.requests_for_action(IMAGES_ACTION), sent_before + 4);
    }
    assert_eq!(sim.outcome_count_for(IMAGES_ACTION, "ok"), 8);
    assert_eq!(sim.requests_for_action(ACTION), 0);
    let pages: Vec<Option<u32>> = sim.log().iter().map(|e| e.page).collect();
    assert_eq!(
        pages,
        [1, 2, 3, 4, 1, 2, 3, 4].map(Some),
        "every page once per listing"
    );
}

#[tokio::test]
async fn or_criteria_scanned_and_total_count_shape_the_listing() {
    let sim = start(Scenario::default().with_images(images())).await;
    let client = client(&sim, SignatureVersion::V3);
    let either = [
        criterion("repoName", "app100"),
        criterion("repoName", "app7"),
    ];
    let q = ListQuery {
        logical_and: false,
        scanned: ScannedFilter::Scanned,
        ..query(1, 50, &either)
    };
    let page = client.describe_image_instances(&q).await.expect("a page");
    let names: Vec<&str> = page
        .rows
        .iter()
        .filter_map(|r| r.repo_name.as_deref())
        .collect();
    // app7 and app70..app79 match `app7`; app100 matches itself; only even ones are scanned.
    assert_eq!(
        names,
        ["app70", "app72", "app74", "app76", "app78", "app100"]
    );
    assert_eq!(page.total_count, Some(6));
    assert_eq!(page.request_id.as_deref().map(str::len), Some(36));

    // An exact multiple: TotalCount ends the listing without asking for an empty page.
    let unscanned = list_all(13, |p| {
        let q = ListQuery {
            scanned: ScannedFilter::Unscanned,
            ..query(p, 13, &[])
        };
        let client = &client;
        async move { client.describe_image_instances(&q).await }
    })
    .await
    .expect("complete listing");
    assert_eq!((unscanned.rows.len(), unscanned.pages), (65, 5));
    assert_eq!(sim.requests_for_action(IMAGES_ACTION), 6);
}

#[tokio::test]
async fn containers_are_listed_by_their_own_criteria() {
    let rows: Vec<ContainerInstance> = (0..30)
        .map(|i| ContainerInstance {
            cluster_name: Some(format!("cluster-{}", i % 2)),
            app_name: Some(format!("app{}", i % 5)),
            image_repo_namespace: Some("payments".into()),
            image_repo_name: Some("cart".into()),
            image_repo_tag: Some("1.4.2".into()),
            ..ContainerInstance::new(
                &format!("c{}", i % 2),
                "prod",
                &format!("pod-{i}"),
                &format!("sha256:{}", digest(i % 4)),
            )
        })
        .collect();
    let sim = start(Scenario::default().with_containers(rows)).await;
    let client = client(&sim, SignatureVersion::V1);
    let c1 = [criterion("clusterId", "c1"), criterion("namespace", "prod")];
    let listed = list_all(4, |p| {
        let client = &client;
        let c1 = &c1;
        async move { client.describe_container_instances(&query(p, 4, c1)).await }
    })
    .await
    .expect("complete listing");
    assert_eq!((listed.rows.len(), listed.pages), (15, 4));
    let first: &ContainerRow = &listed.rows[0];
    assert_eq!(first.image_digest, digest(1));
    assert_eq!(first.pod.as_deref(), Some("pod-1"));
    assert_eq!(first.cluster_name.as_deref(), Some("cluster-1"));
    assert_eq!(first.app_name.as_deref(), Some("app1"));
    assert_eq!(first.field("imageRepoNamespace"), Some("payments"));
    assert_eq!(sim.requests_for_action(CONTAINERS_ACTION), 4);
    assert_eq!(sim.requests_for_action(IMAGES_ACTION), 0);
}

#[tokio::test]
async fn a_failing_page_is_named_and_the_listing_is_not_complete() {
    let sim = start(Scenario::default().with_images(images())).await;
    let client = client(&sim, SignatureVersion::V3);
    sim.inject(
        FaultScope::page(IMAGES_ACTION, 3),
        Fault::error(503, "ServiceUnavailable").times(1),
    );
    let err = list_images(&client, 20, &[])
        .await
        .expect_err("page 3 fails");
    let shown = err.to_string();
    assert!(
        shown.starts_with(
            "listing page 3 failed: ServiceUnavailable (HTTP 503): simulated ServiceUnavailable (RequestId "
        ),
        "{shown}"
    );
    assert!(
        matches!(&err, ListError::Page { page: 3, source } if source.class() == ErrorClass::Retryable),
        "{err:?}"
    );
    // The next listing goes through: the fault was used up.
    let listed = list_images(&client, 20, &[]).await.expect("complete");
    assert_eq!((listed.rows.len(), listed.pages), (130, 7));

    // A garbage body on one page fails that page; a body without the list is no listing.
    sim.inject(
        FaultScope::page(IMAGES_ACTION, 2),
        Fault::action(FaultAction::MalformedJson).times(1),
    );
    let err = list_images(&client, 20, &[]).await.expect_err("garbage");
    assert!(
        matches!(&err, ListError::Page { page: 2, source: ApiError::InvalidResponse(m) }
            if m.starts_with("response is not valid JSON")),
        "{err:?}"
    );
    sim.inject(
        FaultScope::page(IMAGES_ACTION, 1),
        Fault::action(FaultAction::Raw {
            status: 200,
            body: r#"{"RequestId":"R","PageInfo":{"TotalCount":0}}"#.into(),
        })
        .times(1),
    );
    let err = list_images(&client, 20, &[]).await.expect_err("no list");
    assert_eq!(
        err.to_string(),
        "listing page 1 failed: invalid response: ImageInstanceList: missing"
    );
    assert_eq!(sim.requests_for_action(IMAGES_ACTION), 3 + 7 + 2 + 1);
}

#[tokio::test]
async fn a_page_size_the_service_refuses_is_a_configuration_problem() {
    let sim = start(
        Scenario::default()
            .with_images(images())
            .with_max_page_size(100),
    )
    .await;
    let client = client(&sim, SignatureVersion::V1);
    let err = list_images(&client, 500, &[]).await.expect_err("refused");
    assert_eq!(
        err.to_string(),
        "discovery page_size 500 refused by the service (InvalidParameter: The specified \
         parameter \"PageSize\" is not valid: 500 is larger than the maximum of 100.): lower \
         page_size"
    );
    assert!(
        matches!(&err, ListError::PageSizeRefused { page_size: 500, code, .. } if code == "InvalidParameter")
    );
    assert_eq!(sim.requests_for_action(IMAGES_ACTION), 1);
    let listed = list_images(&client, 100, &[]).await.expect("accepted");
    assert_eq!((listed.rows.len(), listed.pages), (130, 2));
}

#[tokio::test]
async fn rows_are_read_leniently_and_bad_ones_reported() {
    let sim = start(Scenario::default()).await;
    let d = digest(1);
    let body = json!({
        "RequestId": "R1",
        "PageInfo": {"Count": 4, "CurrentPage": 1, "PageSize": 4, "TotalCount": "4"},
        "ImageInstanceList": [
            {"Digest": format!("sha256:{}", d.to_uppercase()), "VulCount": "5",
             "LastScanTime": "1700000000000", "Deployed": "1", "NewField": {"a": 1}},
            {"RepoName": "no-digest"},
            17,
            {"Digest": digest(2), "HcCount": -1},
        ],
    });
    sim.inject(
        FaultScope::page(IMAGES_ACTION, 1),
        Fault::action(FaultAction::Raw {
            status: 200,
            body: body.to_string(),
        }),
    );
    let listed = list_images(&client(&sim, SignatureVersion::V3), 4, &[])
        .await
        .expect("a listing with problems is still complete");
    let want = ImageRow {
        digest: d,
        vul_count: Some(5),
        last_scan_time_ms: Some(1_700_000_000_000),
        deployed: Some(true),
        ..ImageRow::default()
    };
    assert_eq!(listed.rows.first(), Some(&want));
    assert_eq!(listed.rows.len(), 2);
    assert_eq!(
        listed.pages, 1,
        "TotalCount 4 was reached with the skipped rows"
    );
    let problems: Vec<String> = listed.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "page 1 row 1: Digest: missing (row skipped)",
            "page 1 row 2: expected an object, got a number (row skipped)",
            "page 1 row 3 HcCount: -1 is negative (field left out)",
        ]
    );
}

#[tokio::test]
async fn retries_belong_to_the_callers_fetch() {
    let sim = start(Scenario::default().with_images(images())).await;
    let client = client(&sim, SignatureVersion::V3);
    sim.inject(
        FaultScope::page(IMAGES_ACTION, 2),
        Fault::error(400, "Throttling.User").times(1),
    );
    let listed = list_all(50, |page| {
        let client = &client;
        async move {
            let q = query(page, 50, &[]);
            match client.describe_image_instances(&q).await {
                Err(e) if e.class() == ErrorClass::Throttled => {
                    client.describe_image_instances(&q).await
                }
                other => other,
            }
        }
    })
    .await
    .expect("the retry went through");
    assert_eq!((listed.rows.len(), listed.pages), (130, 3));
    assert_eq!(sim.outcome_count_for(IMAGES_ACTION, "Throttling.User"), 1);
    assert_eq!(sim.requests_for_action(IMAGES_ACTION), 4);
}
