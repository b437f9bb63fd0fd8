//! The `kubernetes` source end to end: the exporter watches the fake Kubernetes API server's pods
//! through a kubeconfig the test writes, polls the Security Center simulator for the digests they
//! run, and shows where they run in `sas_image_running_containers`.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use sas_image_scan_exporter::config::{
    Config, DEFAULT_ACCOUNT, DiscoveryConfig, KubernetesConfig, Location, SourceKind,
};
use sas_simulator::{ContainerState, KubeSimulator, PodBuilder, Scenario, Simulator};

fn source(
    kubeconfig: &std::path::Path,
    namespaces: &[&str],
    keep_for: Duration,
) -> DiscoveryConfig {
    DiscoveryConfig {
        account: DEFAULT_ACCOUNT.into(),
        kind: SourceKind::Kubernetes(KubernetesConfig {
            kubeconfig: Some(kubeconfig.to_owned()),
            cluster: "ack-prod".into(),
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            label_selector: None,
        }),
        labels: BTreeMap::new(),
        keep_for,
        location: Location {
            file: "test".into(),
            line: 1,
            column: 1,
        },
    }
}

/// `sas_image_running_containers` as (digest, namespace, workload) → containers.
fn running(body: &str) -> BTreeMap<(String, String, String), f64> {
    samples(body)
        .into_iter()
        .filter(|(s, _)| s.starts_with("sas_image_running_containers{"))
        .map(|(s, v)| {
            let label = |name: &str| {
                s.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(label("cluster"), "ack-prod", "{s}");
            ((label("digest"), label("namespace"), label("workload")), v)
        })
        .collect()
}

fn key(d: &str, ns: &str, w: &str) -> (String, String, String) {
    (d.to_owned(), ns.to_owned(), w.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_pods_become_targets_with_their_workloads() {
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let kube = KubeSimulator::start().await.expect("kube");
    let dir = TempDir::new("kube-e2e");
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let (d1, d2, d3) = (digest(70), digest(71), digest(72));
    let web = |name: &str| {
        PodBuilder::new("prod", name)
            .deployment("web", "5d9c7f6b8d")
            .container(
                "web",
                "registry.example.com/shop/web:1.2",
                Some(&format!(
                    "docker-pullable://registry.example.com/shop/web@sha256:{d1}"
                )),
                ContainerState::Running,
            )
            .build()
    };
    kube.apply_pods([
        web("web-5d9c7f6b8d-a"),
        web("web-5d9c7f6b8d-b"),
        PodBuilder::new("prod", "batch-1")
            .owner("Job", "batch")
            .init_container(
                "migrate",
                &format!("registry.example.com/shop/migrate@sha256:{d2}"),
                None,
                ContainerState::Waiting,
            )
            .container(
                "batch",
                "registry.example.com/shop/batch:7",
                Some(&format!("registry.example.com/shop/batch@sha256:{d3}")),
                ContainerState::Running,
            )
            .build(),
        // Not watched: another namespace.
        PodBuilder::new("kube-system", "dns")
            .container(
                "dns",
                "coredns:1.11",
                Some(&format!("coredns@sha256:{}", digest(79))),
                ContainerState::Running,
            )
            .build(),
    ]);
    let config = Config {
        discovery: vec![source(&kubeconfig, &["prod"], Duration::from_millis(1500))],
        ..config(&sim, Vec::new(), polling(3600, 3600, 200.0, 4))
    };
    let exporter = sas_image_scan_exporter::app::Exporter::start(
        &config,
        vec![
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        ],
        Default::default(),
    )
    .await
    .expect("starts");
    let body = scrape_until(&exporter, "three digests polled", |b| {
        samples(b)
            .keys()
            .filter(|k| k.starts_with("sas_image_scan_up{"))
            .count()
            == 3
    })
    .await;
    // The init container waits: its workload shows with no running container.
    let want: BTreeMap<_, _> = [
        (key(&d1, "prod", "web"), 2.0),
        (key(&d2, "prod", "batch"), 0.0),
        (key(&d3, "prod", "batch"), 1.0),
    ]
    .into();
    assert_eq!(running(&body), want);
    // The pinned init container's digest is a target, with the spec's image as its label.
    assert!(
        body.contains(&format!(
            "sas_image_scan_up{{account=\"default\",digest=\"{d2}\",image=\"registry.example.com/shop/migrate@sha256:{d2}\"}} 1"
        )),
        "{body}"
    );
    assert!(body.contains(&format!(
        "sas_image_scan_up{{account=\"default\",digest=\"{d1}\",image=\"registry.example.com/shop/web:1.2\"}} 1"
    )));
    assert!(
        body.contains("sas_exporter_discovery_up{source=\"kubernetes\",account=\"default\"} 1")
    );
    assert!(
        body.contains(
            "sas_exporter_discovery_targets{source=\"kubernetes\",account=\"default\"} 3"
        )
    );
    assert_eq!(
        sim.requests_for(&digest(79)),
        0,
        "kube-system is not watched"
    );
    for d in [&d1, &d2, &d3] {
        assert_eq!(sim.requests_for(d), 1);
    }

    // A pod deleted stops counting at once; the digest stays while another pod runs it.
    kube.delete_pod("prod", "web-5d9c7f6b8d-a");
    scrape_until(&exporter, "one web pod", |b| {
        running(b).get(&key(&d1, "prod", "web")) == Some(&1.0)
    })
    .await;
    // The batch pod ends: its digests are no longer run, their series linger for keep_for…
    kube.apply_pod(
        PodBuilder::new("prod", "batch-1")
            .owner("Job", "batch")
            .phase("Succeeded")
            .container(
                "batch",
                "registry.example.com/shop/batch:7",
                Some(&format!("registry.example.com/shop/batch@sha256:{d3}")),
                ContainerState::Terminated,
            )
            .build(),
    );
    let body = scrape_until(&exporter, "batch stops running", |b| {
        !running(b).contains_key(&key(&d3, "prod", "batch"))
    })
    .await;
    assert!(
        body.contains(&format!("digest=\"{d3}\"")),
        "lingers: {body}"
    );
    // … and then leave.
    scrape_until(&exporter, "batch digests gone", |b| {
        !b.contains(&format!("digest=\"{d3}\"")) && !b.contains(&format!("digest=\"{d2}\""))
    })
    .await;

    // The API server goes away: the last set stays, the source says it is down.
    kube.go_offline();
    let body = scrape_until(&exporter, "the source down", |b| {
        b.contains("sas_exporter_discovery_up{source=\"kubernetes\",account=\"default\"} 0")
    })
    .await;
    assert_eq!(running(&body), [(key(&d1, "prod", "web"), 1.0)].into());
    kube.go_online().await.expect("back");
    kube.apply_pod(web("web-5d9c7f6b8d-c"));
    scrape_until(&exporter, "in sync again with the new pod", |b| {
        b.contains("sas_exporter_discovery_up{source=\"kubernetes\",account=\"default\"} 1")
            && running(b).get(&key(&d1, "prod", "web")) == Some(&2.0)
    })
    .await;
    exporter.shutdown().await;
}
