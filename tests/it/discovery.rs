//! Discovery from Security Center end to end: the exporter lists the simulator's images and
//! containers over HTTP, merges them with configured targets, polls only what changed, keeps
//! what a failed listing would lose, lets vanished digests linger for `keep_for`, and carries
//! it all across reloads and restarts.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use sas_image_scan_exporter::app::{Exporter, Options};
use sas_image_scan_exporter::config::{
    Config, DEFAULT_ACCOUNT, DiscoveryConfig, Filter, ListingConfig, Location, Scanned, SourceKind,
};
use sas_simulator::{
    ContainerInstance, Fault, FaultScope, ImageInstance, SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET,
    Scenario, Simulator,
};

const IMAGES: &str = "DescribeImageInstances";
const CONTAINERS: &str = "DescribeContainerInstances";

fn here() -> Location {
    Location {
        file: "test".into(),
        line: 1,
        column: 1,
    }
}

fn listing(refresh_ms: u64, page_size: u32, filters: &[(&str, &str)]) -> ListingConfig {
    ListingConfig {
        refresh: Duration::from_millis(refresh_ms),
        page_size,
        filters: filters
            .iter()
            .map(|(n, v)| Filter {
                name: (*n).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
    }
}

fn images_source(
    listing: ListingConfig,
    labels: &[(&str, &str)],
    keep_for: Duration,
) -> DiscoveryConfig {
    DiscoveryConfig {
        account: DEFAULT_ACCOUNT.into(),
        kind: SourceKind::SasImages {
            listing,
            scanned: Scanned::Any,
        },
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        keep_for,
        location: here(),
    }
}

fn image(d: &str, ns: &str, name: &str, tag: &str, vulns: i64, scanned_ms: i64) -> ImageInstance {
    ImageInstance {
        sca_status: Some("SUCCESS".into()),
        last_scan_time: Some(scanned_ms),
        vul_count: Some(vulns),
        hc_count: Some(1),
        alarm_count: Some(0),
        ..ImageInstance::new(d, ns, name, tag)
    }
}

fn discovery_config(sim: &Simulator, sources: Vec<DiscoveryConfig>) -> Config {
    Config {
        discovery: sources,
        ..config(sim, Vec::new(), polling(3600, 3600, 200.0, 4))
    }
}

/// The value of the one sample whose series starts with `prefix` and holds every `part`.
fn value(body: &str, name: &str, parts: &[&str]) -> Option<f64> {
    samples(body)
        .into_iter()
        .find(|(series, _)| {
            series.split('{').next() == Some(name) && parts.iter().all(|p| series.contains(p))
        })
        .map(|(_, v)| v)
}

/// The digests that carry `name` series.
fn digests_of(body: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = samples(body)
        .keys()
        .filter(|s| s.split('{').next() == Some(name))
        .filter_map(|s| {
            let rest = s.split("digest=\"").nth(1)?;
            Some(rest.split('"').next()?.to_owned())
        })
        .collect();
    out.dedup();
    out
}

async fn scrape(exporter: &Exporter) -> String {
    get(exporter, "/metrics", &[]).await.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_page_listing_with_filters_gives_exact_digests_and_labels() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let (d1, d2, d3, d4) = (digest(1), digest(2), digest(3), digest(4));
    sim.set_images(vec![
        image(&d1, "payments", "cart", "1.4.2", 3, 1_700_000_000_000),
        // One digest under two tags: the smaller name is the `image` label.
        image(&d2, "payments", "cart", "1.5.0", 0, 1_700_000_100_000),
        image(&d2, "payments", "cart", "1.5.0-rc1", 0, 1_700_000_100_000),
        // The service matches fuzzily: `payments-old` comes back, the exporter drops it.
        image(&d3, "payments-old", "cart", "0.9", 7, 1_600_000_000_000),
        image(&d4, "payments", "cart", "2.0", 1, 1_700_000_200_000),
        image(&digest(5), "search", "cart", "1", 2, 1_700_000_000_000),
        image(&digest(6), "search", "cart", "2", 2, 1_700_000_000_000),
    ]);
    let source = images_source(
        listing(300, 2, &[("repoNamespace", "payments")]),
        &[("team", "payments")],
        Duration::from_secs(3600),
    );
    let exporter = start(&discovery_config(&sim, vec![source])).await;
    let body = scrape_until(&exporter, "four digests polled", |b| {
        digests_of(b, "sas_image_scan_up").len() == 3
    })
    .await;
    let mut want = vec![d1.clone(), d2.clone(), d4.clone()];
    want.sort();
    assert_eq!(digests_of(&body, "sas_image_vulnerabilities"), want);
    assert_eq!(
        value(
            &body,
            "sas_image_vulnerabilities",
            &[
                &format!("digest=\"{d1}\""),
                "image=\"payments/cart:1.4.2\"",
                "team=\"payments\""
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &body,
            "sas_image_scan_up",
            &[&format!("digest=\"{d2}\""), "image=\"payments/cart:1.5.0\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "sas_image_last_scan_timestamp_seconds",
            &[&format!("digest=\"{d4}\"")]
        ),
        Some(1_700_000_200.0)
    );
    assert_eq!(
        value(
            &body,
            "sas_image_baseline_risks",
            &[&format!("digest=\"{d4}\"")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "sas_exporter_discovery_targets",
            &["source=\"sas_images\"", "account=\"default\""]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &body,
            "sas_exporter_discovery_up",
            &["source=\"sas_images\""]
        ),
        Some(1.0)
    );
    // The filter goes to the service as Criteria: five matching rows at two per page are three
    // pages per listing (all seven rows would be four).
    let pages: Vec<u32> = sim
        .log()
        .into_iter()
        .filter(|e| e.action.as_deref() == Some(IMAGES))
        .filter_map(|e| e.page)
        .collect();
    assert_eq!(pages.iter().max(), Some(&3), "{pages:?}");
    assert!(pages.len() >= 3);
    assert_eq!(promtool_check(&body), "");
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_row_triggers_exactly_one_task_request() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let digests: Vec<String> = (10..16).map(digest).collect();
    sim.set_images(
        digests
            .iter()
            .map(|d| image(d, "ns", "app", &d[..6], 0, 1_700_000_000_000))
            .collect(),
    );
    let source = images_source(listing(200, 4, &[]), &[], Duration::from_secs(3600));
    let exporter = start(&discovery_config(&sim, vec![source])).await;
    wait_for("every digest polled once", || {
        digests.iter().all(|d| sim.requests_for(d) == 1)
    })
    .await;
    // Several refreshes with nothing changed: no task request at all.
    let listings = sim.requests_for_action(IMAGES);
    wait_for("three more listings", || {
        sim.requests_for_action(IMAGES) >= listings + 6
    })
    .await;
    assert!(digests.iter().all(|d| sim.requests_for(d) == 1));
    // One scan ends with a new time: one request for that digest, within about one refresh.
    let changed = &digests[3];
    sim.upsert_image(image(
        changed,
        "ns",
        "app",
        &changed[..6],
        2,
        1_700_000_500_000,
    ));
    let started = std::time::Instant::now();
    wait_for("the changed digest polled again", || {
        sim.requests_for(changed) == 2
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let listings = sim.requests_for_action(IMAGES);
    wait_for("two more listings", || {
        sim.requests_for_action(IMAGES) >= listings + 4
    })
    .await;
    let counts: BTreeMap<&str, u64> = digests
        .iter()
        .map(|d| (d.as_str(), sim.requests_for(d)))
        .collect();
    let expected: BTreeMap<&str, u64> = digests
        .iter()
        .map(|d| (d.as_str(), if d == changed { 2 } else { 1 }))
        .collect();
    assert_eq!(counts, expected);
    let body = scrape(&exporter).await;
    assert_eq!(
        value(
            &body,
            "sas_exporter_refresh_triggers_total",
            &["reason=\"new\""]
        ),
        Some(6.0)
    );
    assert_eq!(
        value(
            &body,
            "sas_exporter_refresh_triggers_total",
            &["reason=\"changed\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "sas_image_vulnerabilities",
            &[&format!("digest=\"{changed}\"")]
        ),
        Some(2.0)
    );
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_page_keeps_the_previous_listing_and_keep_for_expires_vanished_digests() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let digests: Vec<String> = (20..25).map(digest).collect();
    sim.set_images(
        digests
            .iter()
            .map(|d| image(d, "ns", "app", &d[..4], 1, 1_700_000_000_000))
            .collect(),
    );
    let source = images_source(listing(200, 2, &[]), &[], Duration::from_millis(1500));
    let exporter = start(&discovery_config(&sim, vec![source])).await;
    scrape_until(&exporter, "five digests", |b| {
        digests_of(b, "sas_image_vulnerabilities").len() == 5
    })
    .await;
    // Page 2 of every listing fails: nothing is lost, the source says it is down.
    sim.inject(
        FaultScope::page(IMAGES, 2),
        Fault::error(503, "ServiceUnavailable"),
    );
    sim.remove_images(&digests[0]);
    let body = scrape_until(&exporter, "the source down", |b| {
        value(b, "sas_exporter_discovery_up", &["source=\"sas_images\""]) == Some(0.0)
    })
    .await;
    assert_eq!(
        digests_of(&body, "sas_image_vulnerabilities").len(),
        5,
        "{body}"
    );
    let listings = sim.requests_for_action(IMAGES);
    wait_for("more failed listings", || {
        sim.requests_for_action(IMAGES) >= listings + 4
    })
    .await;
    assert_eq!(
        digests_of(&scrape(&exporter).await, "sas_image_vulnerabilities").len(),
        5
    );
    // Back to normal: the removed digest is no longer listed, keeps its series for keep_for…
    sim.clear_faults();
    let body = scrape_until(&exporter, "the source up", |b| {
        value(b, "sas_exporter_discovery_up", &["source=\"sas_images\""]) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(
            &body,
            "sas_exporter_discovery_targets",
            &["source=\"sas_images\""]
        ),
        Some(4.0)
    );
    assert!(
        digests_of(&body, "sas_image_scan_up").contains(&digests[0]),
        "lingers: {body}"
    );
    // … then leaves /metrics.
    let body = scrape_until(&exporter, "the vanished digest gone", |b| {
        !digests_of(b, "sas_image_scan_up").contains(&digests[0])
    })
    .await;
    assert_eq!(digests_of(&body, "sas_image_scan_up").len(), 4);
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_targets_win_and_sas_containers_count_running_containers() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let (d1, d2) = (digest(31), digest(32));
    let container = |d: &str, cluster: &str, ns: &str, app: &str, pod: &str| ContainerInstance {
        cluster_id: Some(format!("c-{cluster}")),
        cluster_name: Some(cluster.into()),
        namespace: Some(ns.into()),
        app_name: Some(app.into()),
        pod: Some(pod.into()),
        container_id: Some(format!("{pod}-c")),
        image_digest: Some(format!("sha256:{d}")),
        image_repo_namespace: Some("shop".into()),
        image_repo_name: Some(app.into()),
        image_repo_tag: Some("1".into()),
        ..ContainerInstance::default()
    };
    sim.set_containers(vec![
        container(&d1, "ack-prod", "prod", "web", "web-1"),
        container(&d1, "ack-prod", "prod", "web", "web-2"),
        container(&d1, "ack-prod", "staging", "web", "web-3"),
        container(&d2, "ack-prod", "prod", "api", "api-1"),
        // A fuzzy match of the cluster filter, dropped by the exact check.
        container(&d2, "ack-prod-2", "prod", "api", "api-9"),
    ]);
    let source = DiscoveryConfig {
        account: DEFAULT_ACCOUNT.into(),
        kind: SourceKind::SasContainers {
            listing: listing(300, 2, &[("clusterName", "ack-prod")]),
        },
        labels: BTreeMap::new(),
        keep_for: Duration::from_secs(3600),
        location: here(),
    };
    let config = Config {
        targets: vec![target(&d2, "configured")],
        ..discovery_config(&sim, vec![source])
    };
    let exporter = start(&config).await;
    let body = scrape_until(&exporter, "running containers", |b| {
        digests_of(b, "sas_image_running_containers").len() == 2
    })
    .await;
    let running: BTreeMap<String, f64> = samples(&body)
        .into_iter()
        .filter(|(s, _)| s.starts_with("sas_image_running_containers{"))
        .collect();
    let expected: BTreeMap<String, f64> = [
        (format!("sas_image_running_containers{{account=\"default\",digest=\"{d1}\",cluster=\"ack-prod\",namespace=\"prod\",workload=\"web\"}}"), 2.0),
        (format!("sas_image_running_containers{{account=\"default\",digest=\"{d1}\",cluster=\"ack-prod\",namespace=\"staging\",workload=\"web\"}}"), 1.0),
        (format!("sas_image_running_containers{{account=\"default\",digest=\"{d2}\",cluster=\"ack-prod\",namespace=\"prod\",workload=\"api\"}}"), 1.0),
    ]
    .into();
    assert_eq!(running, expected);
    // The configured target keeps its own labels; the discovered one gets the image name.
    assert_eq!(
        value(
            &body,
            "sas_image_scan_up",
            &[
                &format!("digest=\"{d2}\""),
                "image=\"registry.example.com/app:configured\""
            ]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "sas_image_scan_up",
            &[&format!("digest=\"{d1}\""), "image=\"shop/web:1\""]
        ),
        Some(1.0)
    );
    assert!(sim.requests_for_action(CONTAINERS) >= 3);
    exporter.shutdown().await;
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn write_config(dir: &Path, sim: &Simulator, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("secret"), SIM_ACCESS_KEY_SECRET).expect("secret");
    set_private(&dir.join("secret"));
    let yaml = format!(
        "sas:\n  endpoint: {}\n  timeout: 2s\ncredentials:\n  access_key_id: {SIM_ACCESS_KEY_ID}\n  access_key_secret_file: {}\npolling:\n  interval: 1h\n  active_interval: 1h\n  requests_per_second: 100\n{extra}",
        sim.url(),
        dir.join("secret").display()
    );
    let path = dir.join("config.yml");
    std::fs::write(&path, yaml).expect("config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_restart_keep_discovered_targets() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let digests: Vec<String> = (40..44).map(digest).collect();
    sim.set_images(
        digests
            .iter()
            .map(|d| image(d, "ns", "app", &d[..4], 4, 1_700_000_000_000))
            .collect(),
    );
    let dir = TempDir::new("discovery");
    let state = dir.path().join("state.json");
    let path = write_config(
        dir.path(),
        &sim,
        &format!(
            "state_file: {}\ndiscovery:\n  - source: sas_images\n    refresh: 10s\n    labels: {{team: a}}\n",
            state.display()
        ),
    );
    let first = start_from(&path, Options::default()).await;
    wait_for("every digest polled", || {
        digests.iter().all(|d| sim.requests_for(d) == 1)
    })
    .await;
    scrape_until(&first, "labels", |b| {
        digests_of(b, "sas_image_scan_up").len() == 4 && b.contains("team=\"a\"")
    })
    .await;
    // A reload that changes the source's labels keeps its listing and polls nothing again.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .expect("config")
            .replace("team: a", "team: b"),
    )
    .expect("rewrite");
    let listings = sim.requests_for_action(IMAGES);
    first.reload().await.expect("reload");
    let body = scrape(&first).await;
    assert_eq!(digests_of(&body, "sas_image_scan_up").len(), 4);
    assert!(
        body.contains("team=\"b\"") && !body.contains("team=\"a\""),
        "{body}"
    );
    assert_eq!(sim.requests_for_action(IMAGES), listings, "no new listing");
    assert!(digests.iter().all(|d| sim.requests_for(d) == 1));
    let before = samples(&body);
    first.shutdown().await;

    // A restart with the API down: every discovered target and its free series are back at
    // once, and nothing is polled again.
    sim.inject(FaultScope::Global, Fault::error(503, "ServiceUnavailable"));
    let second = start_from(&path, Options::default()).await;
    let body = scrape(&second).await;
    let restored = samples(&body);
    for name in [
        "sas_image_scan_up",
        "sas_image_vulnerabilities",
        "sas_image_scan_status",
    ] {
        let pick = |m: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
            m.iter()
                .filter(|(k, _)| k.starts_with(&format!("{name}{{")))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        assert_eq!(pick(&restored), pick(&before), "{name}");
    }
    assert_eq!(get(&second, "/-/ready", &[]).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(digests.iter().all(|d| sim.requests_for(d) == 1));
    sim.clear_faults();
    second.shutdown().await;
}

#[test]
fn every_discovery_key_is_validated_with_its_location() {
    let yaml = "discovery:
  - source: sas_images
    refresh: 5s
    page_size: 501
    filters: {repo_namespace: payments, cluster_id: c1}
    scanned: maybe
    labels: {digest: x}
    keep_for: forever
  - source: sas_containers
    filters: {namespace: ''}
  - source: kubernetes
    namespaces: [prod, Prod, prod]
    label_selector: 'app in (a,b'
    refresh: 1m
  - source: docker
  - {}
";
    let got = config_problems(yaml, "d.yml");
    let want = vec![
        (3, 14, "discovery[0].refresh: must be at least 10s, got 5s".to_owned()),
        (4, 16, "discovery[0].page_size: expected an integer from 1 to 500, got \"501\"".to_owned()),
        (5, 41, format!("discovery[0].filters: unknown filter \"cluster_id\" (expected one of: {})", sas_image_scan_exporter::config::IMAGE_FILTERS.join(", "))),
        (6, 14, "discovery[0].scanned: expected one of any, scanned, unscanned, got \"maybe\"".to_owned()),
        (7, 14, "discovery[0].labels: label name \"digest\" is used by the exporter itself (reserved: account, digest, status, task_id, task_name, task_type, source, target_type, raw_status, id, action, code)".to_owned()),
        (8, 15, "discovery[0].keep_for: expected a duration such as 30s, 5m or 1h30m, got \"forever\"".to_owned()),
        (10, 26, "discovery[1].filters.namespace: a filter value must not be empty".to_owned()),
        (12, 24, "discovery[2].namespaces[1]: expected a namespace name (lower-case letters, digits and '-', at most 63), got \"Prod\"".to_owned()),
        (12, 30, "discovery[2].namespaces[2]: namespace \"prod\" is listed twice".to_owned()),
        (13, 21, "discovery[2].label_selector: expected a Kubernetes label selector such as app=web,tier!=cache, got \"app in (a,b\"".to_owned()),
        (14, 5, "unknown key \"refresh\" in discovery[2] (expected one of: source, account, labels, keep_for, kubeconfig, cluster, namespaces, label_selector)".to_owned()),
        (15, 13, "discovery[3].source: unknown source \"docker\" (expected sas_images, sas_containers or kubernetes)".to_owned()),
        (16, 5, "discovery[4]: source is required (sas_images, sas_containers or kubernetes)".to_owned()),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "{got:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_page_size_is_a_configuration_problem_on_the_status_page() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    sim.set_max_page_size(Some(20));
    sim.set_images(vec![image(
        &digest(50),
        "ns",
        "app",
        "1",
        0,
        1_700_000_000_000,
    )]);
    let source = images_source(listing(300, 50, &[]), &[], Duration::from_secs(60));
    let exporter = start(&discovery_config(&sim, vec![source])).await;
    scrape_until(&exporter, "the source down", |b| {
        value(b, "sas_exporter_discovery_up", &["source=\"sas_images\""]) == Some(0.0)
    })
    .await;
    let page = get(&exporter, "/", &[]).await.body;
    let table = page
        .split("<table id=\"sources\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("a discovery table");
    assert!(
        table.contains(
            "<td>sas_images</td><td>default</td><td><span class=\"fail-poll\">down</span></td>"
        ),
        "{table}"
    );
    assert!(table.contains("page_size 50"), "{table}");
    // Nothing was listed, so nothing is polled.
    assert_eq!(sim.requests_for(&digest(50)), 0);
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_sources_without_losing_what_the_others_know() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let (di, dc) = (digest(60), digest(61));
    sim.set_images(vec![image(&di, "ns", "img", "1", 5, 1_700_000_000_000)]);
    sim.set_containers(vec![ContainerInstance {
        cluster_name: Some("ack".into()),
        namespace: Some("prod".into()),
        app_name: Some("web".into()),
        image_digest: Some(dc.clone()),
        image: Some("shop/web:2".into()),
        ..ContainerInstance::default()
    }]);
    let dir = TempDir::new("discovery-reload");
    let images = "  - source: sas_images\n    refresh: 10s\n";
    let containers = "  - source: sas_containers\n    refresh: 10s\n    keep_for: 0s\n";
    let path = write_config(
        dir.path(),
        &sim,
        &format!("discovery:\n{images}{containers}"),
    );
    let exporter = start_from(&path, Options::default()).await;
    scrape_until(&exporter, "both digests", |b| {
        digests_of(b, "sas_image_scan_up").len() == 2
    })
    .await;
    let listings = sim.requests_for_action(IMAGES);
    // The container source goes (keep_for 0s: its digest leaves at once); the image source and
    // what it listed stay.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .expect("config")
            .replace(containers, ""),
    )
    .expect("rewrite");
    exporter.reload().await.expect("reload");
    let body = scrape_until(&exporter, "the container digest gone", |b| {
        digests_of(b, "sas_image_scan_up") == [di.clone()]
    })
    .await;
    assert_eq!(
        value(
            &body,
            "sas_image_vulnerabilities",
            &[&format!("digest=\"{di}\"")]
        ),
        Some(5.0)
    );
    assert!(
        !body.contains("source=\"sas_containers\""),
        "its series are gone: {body}"
    );
    assert_eq!(
        sim.requests_for_action(IMAGES),
        listings,
        "the image source was not restarted"
    );
    // Back again: it lists at once.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path).expect("config") + containers,
    )
    .expect("rewrite");
    exporter.reload().await.expect("reload");
    scrape_until(&exporter, "the container digest back", |b| {
        digests_of(b, "sas_image_running_containers") == [dc.clone()]
    })
    .await;
    assert_eq!(sim.requests_for(&di), 1);
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_the_first_listing_and_the_digests_it_found() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let d = digest(90);
    sim.set_images(vec![image(&d, "ns", "app", "1", 0, 1_700_000_000_000)]);
    // The listing and then the poll take a while: readiness waits for both.
    sim.inject(
        FaultScope::Action(IMAGES.into()),
        Fault::delay(Duration::from_millis(800)),
    );
    let source = images_source(listing(60_000, 50, &[]), &[], Duration::from_secs(60));
    let exporter = start(&discovery_config(&sim, vec![source])).await;
    let first = get(&exporter, "/-/ready", &[]).await;
    assert_eq!(first.status, 503);
    assert_eq!(
        first.body,
        "Not ready: a discovery source has not ended its first listing yet.\n"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while get(&exporter, "/-/ready", &[]).await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sim.requests_for(&d),
        1,
        "ready only once the discovered digest was polled"
    );
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_outage_keeps_the_discovered_targets_past_keep_for() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let digests: Vec<String> = (95..97).map(digest).collect();
    sim.set_images(
        digests
            .iter()
            .map(|d| image(d, "ns", "app", &d[..4], 1, 1_700_000_000_000))
            .collect(),
    );
    let dir = TempDir::new("discovery-outage");
    let state = dir.path().join("state.json");
    let path = write_config(
        dir.path(),
        &sim,
        &format!(
            "state_file: {}\ndiscovery:\n  - source: sas_images\n    refresh: 10s\n    keep_for: 1s\n",
            state.display()
        ),
    );
    let first = start_from(&path, Options::default()).await;
    wait_for("both polled", || {
        digests.iter().all(|d| sim.requests_for(d) == 1)
    })
    .await;
    first.shutdown().await;
    // The listing is refused from now on: the last complete result (the state file's) stays,
    // however short keep_for is, and the restarted exporter is ready at once.
    sim.inject(FaultScope::Global, Fault::error(403, "NoPermission"));
    let second = start_from(&path, Options::default()).await;
    assert_eq!(get(&second, "/-/ready", &[]).await.status, 200);
    scrape_until(&second, "the source down", |b| {
        value(b, "sas_exporter_discovery_up", &["source=\"sas_images\""]) == Some(0.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let body = scrape(&second).await;
    let mut want = digests.clone();
    want.sort();
    assert_eq!(
        digests_of(&body, "sas_image_vulnerabilities"),
        want,
        "{body}"
    );
    second.shutdown().await;
}
