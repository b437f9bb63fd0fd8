//! The `kubernetes` source against the fake API server: what it lists, how it follows changes,
//! and how it fails and recovers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use sas_simulator::{ContainerState, KubeSimulator, PodBuilder};
use serde_json::Value;
use tokio::sync::mpsc;

use super::kubernetes::run;
use super::listing::{Finding, Listing, Reporter, SourceKey, SourceOutcome, Workload};
use crate::config::KubernetesConfig;
use crate::shutdown::{ShutdownTrigger, channel};

use ContainerState::{Running, Terminated, Waiting};

/// How long a test waits for the source to report what it expects.
const PATIENCE: Duration = Duration::from_secs(20);

fn hex(c: char) -> String {
    c.to_string().repeat(64)
}

fn pulled(repo: &str, c: char) -> String {
    format!("docker-pullable://{repo}@sha256:{}", hex(c))
}

fn containerd(repo: &str, c: char) -> String {
    format!("docker.io/library/{repo}@sha256:{}", hex(c))
}

/// A Deployment's pod with one container.
fn web(ns: &str, name: &str, image: &str, image_id: &str, state: ContainerState) -> Value {
    PodBuilder::new(ns, name)
        .deployment("web", "5d9c7f6b8d")
        .label("app", "web")
        .container("app", image, Some(image_id), state)
        .build()
}

fn finding(images: &[&str], running: &[(&str, &str, u32)]) -> Finding {
    Finding {
        images: images
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>(),
        row: None,
        running: running
            .iter()
            .map(|&(ns, workload, n)| {
                let w = Workload {
                    cluster: "test-cluster".into(),
                    namespace: ns.into(),
                    workload: workload.into(),
                };
                (w, n)
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

struct Harness {
    sim: KubeSimulator,
    rx: mpsc::UnboundedReceiver<(SourceKey, SourceOutcome)>,
    kubeconfig: PathBuf,
    /// Every outcome seen so far, in order.
    seen: Vec<SourceOutcome>,
    _stop: ShutdownTrigger,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn kubeconfig_path() -> PathBuf {
    std::env::temp_dir().join(format!("sas-kube-{}.yaml", uuid::Uuid::new_v4()))
}

/// A fake API server holding `pods`, and the source started against it.
async fn start(pods: Vec<Value>, namespaces: &[&str], selector: Option<&str>) -> Harness {
    let sim = KubeSimulator::start().await.unwrap();
    sim.apply_pods(pods);
    let kubeconfig = kubeconfig_path();
    sim.write_kubeconfig(&kubeconfig).unwrap();
    start_source(sim, kubeconfig, namespaces, selector)
}

fn start_source(
    sim: KubeSimulator,
    kubeconfig: PathBuf,
    namespaces: &[&str],
    selector: Option<&str>,
) -> Harness {
    let config = KubernetesConfig {
        kubeconfig: Some(kubeconfig.clone()),
        cluster: "test-cluster".into(),
        namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
        label_selector: selector.map(str::to_owned),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, shutdown) = channel();
    tokio::spawn(run(config, Reporter::new(SourceKey(0), tx), shutdown));
    Harness {
        sim,
        rx,
        kubeconfig,
        seen: Vec::new(),
        _stop: stop,
    }
}

impl Harness {
    /// Waits for a complete listing that `want` accepts, and returns it.
    async fn complete_where(&mut self, want: impl Fn(&Listing) -> bool) -> Listing {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            let Ok(Some((_, outcome))) = next else {
                panic!(
                    "no listing as wanted within {PATIENCE:?}; seen: {:#?}",
                    self.seen
                );
            };
            let hit = match &outcome {
                SourceOutcome::Complete(listing) if want(listing) => Some(listing.clone()),
                _ => None,
            };
            self.seen.push(outcome);
            if let Some(listing) = hit {
                return listing;
            }
        }
    }

    /// Waits for exactly `expected`.
    async fn complete(&mut self, expected: &Listing) {
        let got = self.complete_where(|l| l == expected).await;
        assert_eq!(&got, expected);
    }

    /// Waits for a failure report whose reason contains `text`.
    async fn failed_with(&mut self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            let Ok(Some((_, outcome))) = next else {
                panic!(
                    "no failure naming {text:?} within {PATIENCE:?}; seen: {:#?}",
                    self.seen
                );
            };
            let hit = match &outcome {
                SourceOutcome::Failed(why) if why.contains(text) => Some(why.clone()),
                _ => None,
            };
            self.seen.push(outcome);
            if let Some(why) = hit {
                return why;
            }
        }
    }

    /// Every outcome that arrives within `period`.
    async fn drain_for(&mut self, period: Duration) {
        let deadline = tokio::time::Instant::now() + period;
        while let Ok(Some((_, outcome))) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.seen.push(outcome);
        }
    }

    fn completes(&self) -> Vec<&Listing> {
        self.seen
            .iter()
            .filter_map(|o| match o {
                SourceOutcome::Complete(l) => Some(l),
                SourceOutcome::Failed(_) => None,
            })
            .collect()
    }
}

#[tokio::test]
async fn digests_from_every_image_id_form_and_container_kind() {
    let pinned = format!("registry.example/team/api@sha256:{}", hex('d'));
    let pods = vec![
        web(
            "prod",
            "web-5d9c7f6b8d-aaaaa",
            "nginx:1.25",
            &pulled("nginx", 'a'),
            Running,
        ),
        PodBuilder::new("prod", "api-0")
            .owner("StatefulSet", "api")
            .container("api", &pinned, None, Waiting)
            .container(
                "local",
                "tool:dev",
                Some(&format!("sha256:{}", hex('e'))),
                Running,
            )
            .container(
                "docker",
                "old:1",
                Some(&format!("docker://sha256:{}", hex('e'))),
                Running,
            )
            .init_container(
                "init",
                "busybox:1.36",
                Some(&containerd("busybox", 'b')),
                Terminated,
            )
            .ephemeral_container(
                "debug",
                "alpine:3",
                Some(&containerd("alpine", 'c')),
                Running,
            )
            .build(),
        PodBuilder::new("prod", "unpinned")
            .phase("Pending")
            .container("c", "nginx:latest", None, Waiting)
            .build(),
    ];
    let mut h = start(pods, &[], None).await;
    let expected = Listing::from([
        (hex('a'), finding(&["nginx:1.25"], &[("prod", "web", 1)])),
        (hex('b'), finding(&["busybox:1.36"], &[("prod", "api", 0)])),
        (hex('c'), finding(&["alpine:3"], &[("prod", "api", 1)])),
        (hex('d'), finding(&[&pinned], &[("prod", "api", 0)])),
    ]);
    h.complete(&expected).await;
    // The first report is the initial list's, not an empty one or a failure before it.
    assert_eq!(h.seen.len(), 1, "{:#?}", h.seen);
}

#[tokio::test]
async fn namespaces_and_the_label_selector_choose_the_pods() {
    let pod = |ns: &str, name: &str, tier: &str, c: char| {
        PodBuilder::new(ns, name)
            .label("tier", tier)
            .container(
                "c",
                &format!("img-{c}"),
                Some(&containerd("img", c)),
                Running,
            )
            .build()
    };
    let mut canary = pod("a", "canary", "web", 'e');
    canary["metadata"]["labels"]["canary"] = Value::from("true");
    let pods = vec![
        pod("a", "a1", "web", 'a'),
        pod("a", "a2", "db", 'b'),
        pod("b", "b1", "web", 'c'),
        pod("c", "c1", "web", 'd'),
        canary,
    ];
    let mut h = start(pods, &["a", "b"], Some("tier in (web, cache),!canary")).await;
    let expected = Listing::from([
        (hex('a'), finding(&["img-a"], &[("a", "a1", 1)])),
        (hex('c'), finding(&["img-c"], &[("b", "b1", 1)])),
    ]);
    h.complete(&expected).await;
    // A pod that starts matching is added by the filtered watch; one that stops, removed.
    h.sim.apply_pod(pod("b", "b2", "cache", 'f'));
    h.sim.apply_pod(pod("a", "a1", "db", 'a'));
    h.sim.apply_pod(pod("c", "c2", "cache", 'b'));
    let expected = Listing::from([
        (hex('c'), finding(&["img-c"], &[("b", "b1", 1)])),
        (hex('f'), finding(&["img-f"], &[("b", "b2", 1)])),
    ]);
    h.complete(&expected).await;
    assert_eq!(h.sim.list_requests(), 2, "one list per namespace");
}

#[tokio::test]
async fn adds_modifications_and_deletions_change_the_running_counts() {
    let nginx = pulled("nginx", 'a');
    let pods = vec![
        web(
            "prod",
            "web-5d9c7f6b8d-aaaaa",
            "nginx:1.25",
            &nginx,
            Running,
        ),
        web(
            "prod",
            "web-5d9c7f6b8d-bbbbb",
            "nginx:1.25",
            &nginx,
            Running,
        ),
    ];
    let mut h = start(pods, &[], None).await;
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx:1.25"], &[("prod", "web", 2)]),
    )]))
    .await;

    // One replica crash-loops: still listed, one fewer running.
    h.sim.apply_pod(web(
        "prod",
        "web-5d9c7f6b8d-bbbbb",
        "nginx:1.25",
        &nginx,
        Waiting,
    ));
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx:1.25"], &[("prod", "web", 1)]),
    )]))
    .await;

    // A new pod of another workload in another namespace, by another name of the image.
    let job = PodBuilder::new("batch", "report-28a1-xk2p")
        .owner("Job", "report-28a1")
        .container("run", "docker.io/nginx:1.25", Some(&nginx), Running)
        .build();
    h.sim.apply_pod(job.clone());
    h.complete(&Listing::from([(
        hex('a'),
        finding(
            &["docker.io/nginx:1.25", "nginx:1.25"],
            &[("batch", "report-28a1", 1), ("prod", "web", 1)],
        ),
    )]))
    .await;

    // The job's pod succeeds: it stops counting and naming its image at once.
    let mut done = job;
    done["status"]["phase"] = Value::from("Succeeded");
    h.sim.apply_pod(done);
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx:1.25"], &[("prod", "web", 1)]),
    )]))
    .await;

    // Deleting both replicas leaves nothing: the source names no digest.
    assert!(h.sim.delete_pod("prod", "web-5d9c7f6b8d-aaaaa"));
    assert!(h.sim.delete_pod("prod", "web-5d9c7f6b8d-bbbbb"));
    h.complete(&Listing::new()).await;
    assert_eq!(
        h.sim.list_requests(),
        1,
        "followed by the watch, without a relist"
    );
}

#[tokio::test]
async fn lists_page_by_page() {
    let pods: Vec<Value> = (0..1203)
        .map(|i| {
            let c = ['a', 'b', 'c'][i % 3];
            web(
                "big",
                &format!("web-5d9c7f6b8d-{i:05}"),
                "nginx",
                &pulled("nginx", c),
                Running,
            )
        })
        .collect();
    let mut h = start(pods, &[], None).await;
    h.complete(&Listing::from([
        (hex('a'), finding(&["nginx"], &[("big", "web", 401)])),
        (hex('b'), finding(&["nginx"], &[("big", "web", 401)])),
        (hex('c'), finding(&["nginx"], &[("big", "web", 401)])),
    ]))
    .await;
    assert_eq!(h.sim.list_requests(), 3, "pages of 500");
}

#[tokio::test]
async fn relists_after_the_history_expires() {
    let pods = vec![web(
        "prod",
        "web-5d9c7f6b8d-aaaaa",
        "nginx",
        &pulled("nginx", 'a'),
        Running,
    )];
    let mut h = start(pods, &[], None).await;
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx"], &[("prod", "web", 1)]),
    )]))
    .await;
    // Compaction ends the open watch with 410; the source lists again and watches from there.
    h.sim.expire_history();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while h.sim.list_requests() < 2 || h.sim.open_watches() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no relist after 410"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.sim.apply_pod(web(
        "prod",
        "web-5d9c7f6b8d-bbbbb",
        "nginx",
        &pulled("nginx", 'b'),
        Running,
    ));
    h.complete(&Listing::from([
        (hex('a'), finding(&["nginx"], &[("prod", "web", 1)])),
        (hex('b'), finding(&["nginx"], &[("prod", "web", 1)])),
    ]))
    .await;
    assert_eq!(h.sim.list_requests(), 2);
    // A 410 is the protocol, not a failure.
    assert!(
        h.seen
            .iter()
            .all(|o| matches!(o, SourceOutcome::Complete(l) if !l.is_empty())),
        "{:#?}",
        h.seen
    );
}

#[tokio::test]
async fn a_dropped_watch_resumes_and_the_last_set_stays_meanwhile() {
    let nginx = pulled("nginx", 'a');
    let pods = vec![web(
        "prod",
        "web-5d9c7f6b8d-aaaaa",
        "nginx",
        &nginx,
        Running,
    )];
    let mut h = start(pods, &[], None).await;
    let first = Listing::from([(hex('a'), finding(&["nginx"], &[("prod", "web", 1)]))]);
    h.complete(&first).await;

    // Cut the watch while the server refuses requests: the source says why, and reports no
    // listing until it is back.
    h.sim.fail_requests(500, None);
    h.sim.drop_watches();
    let why = h.failed_with("500").await;
    assert!(why.contains("watching pods in all namespaces"), "{why}");
    h.sim.apply_pod(web(
        "prod",
        "web-5d9c7f6b8d-bbbbb",
        "nginx",
        &nginx,
        Running,
    ));
    h.drain_for(Duration::from_millis(1500)).await;
    assert_eq!(h.completes(), vec![&first], "{:#?}", h.seen);

    // Back: the watch resumes from the last version (no relist) and brings the change.
    h.sim.stop_failing();
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx"], &[("prod", "web", 2)]),
    )]))
    .await;
    assert_eq!(h.sim.list_requests(), 1);
    assert!(h.sim.watch_requests() >= 2);
}

#[tokio::test]
async fn an_unreachable_server_is_reported_and_recovered_from() {
    let nginx = pulled("nginx", 'a');
    let pods = vec![web(
        "prod",
        "web-5d9c7f6b8d-aaaaa",
        "nginx",
        &nginx,
        Running,
    )];
    let mut h = start(pods, &["prod"], None).await;
    let first = Listing::from([(hex('a'), finding(&["nginx"], &[("prod", "web", 1)]))]);
    h.complete(&first).await;

    h.sim.go_offline();
    let why = h.failed_with("watching pods in namespace prod").await;
    assert!(!why.contains(h.sim.token()), "{why}");
    // Changes while the source cannot see them arrive once it can.
    h.sim.apply_pod(web(
        "prod",
        "web-5d9c7f6b8d-aaaaa",
        "nginx",
        &nginx,
        Waiting,
    ));
    h.sim.go_online().await.unwrap();
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx"], &[("prod", "web", 0)]),
    )]))
    .await;
    assert!(h.completes().iter().all(|l| !l.is_empty()), "{:#?}", h.seen);
}

#[tokio::test]
async fn forbidden_lists_are_reported_once_and_recovered_from() {
    let sim = KubeSimulator::start().await.unwrap();
    sim.apply_pod(web(
        "prod",
        "web-5d9c7f6b8d-aaaaa",
        "nginx",
        &pulled("nginx", 'a'),
        Running,
    ));
    sim.fail_requests(403, None);
    let kubeconfig = kubeconfig_path();
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let mut h = start_source(sim, kubeconfig, &[], None);
    let why = h.failed_with("403").await;
    assert_eq!(
        why,
        "listing pods in all namespaces: the API server answered 403 Forbidden: pods is \
         forbidden: User \"system:serviceaccount:monitoring:sas-exporter\" cannot list \
         resource \"pods\" in API group \"\" at the cluster scope"
    );
    // Retries with backoff say nothing new.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while h.sim.list_requests() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no retries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.drain_for(Duration::from_millis(100)).await;
    assert_eq!(h.seen.len(), 1, "{:#?}", h.seen);
    h.sim.stop_failing();
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx"], &[("prod", "web", 1)]),
    )]))
    .await;
}

#[tokio::test]
async fn a_missing_kubeconfig_is_reported_until_it_appears() {
    let sim = KubeSimulator::start().await.unwrap();
    sim.apply_pod(web(
        "prod",
        "web-5d9c7f6b8d-aaaaa",
        "nginx",
        &pulled("nginx", 'a'),
        Running,
    ));
    let kubeconfig = kubeconfig_path();
    let mut h = start_source(sim, kubeconfig.clone(), &[], None);
    let why = h.failed_with("kubeconfig").await;
    assert!(
        why.starts_with(&format!("kubeconfig {}: ", kubeconfig.display())),
        "{why}"
    );
    h.sim.write_kubeconfig(&kubeconfig).unwrap();
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx"], &[("prod", "web", 1)]),
    )]))
    .await;
}

#[tokio::test]
async fn a_burst_of_changes_is_reported_in_few_listings() {
    let nginx = pulled("nginx", 'a');
    let pods: Vec<Value> = (0..300)
        .map(|i| {
            web(
                "prod",
                &format!("web-5d9c7f6b8d-{i:05}"),
                "nginx",
                &nginx,
                Running,
            )
        })
        .collect();
    let mut h = start(pods, &[], None).await;
    h.complete_where(|l| l.len() == 1).await;
    let flipped: Vec<Value> = (0..300)
        .map(|i| {
            web(
                "prod",
                &format!("web-5d9c7f6b8d-{i:05}"),
                "nginx",
                &nginx,
                Waiting,
            )
        })
        .collect();
    h.sim.apply_pods(flipped);
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx"], &[("prod", "web", 0)]),
    )]))
    .await;
    // 300 events arrive within a moment; they are reported in a handful of listings, not 300.
    assert!(h.completes().len() <= 4, "{} listings", h.completes().len());
}

#[tokio::test]
async fn an_event_larger_than_one_read_is_put_together() {
    let nginx = pulled("nginx", 'a');
    let mut h = start(vec![], &[], None).await;
    h.complete(&Listing::new()).await;
    let mut big = web("prod", "web-5d9c7f6b8d-aaaaa", "nginx", &nginx, Running);
    big["metadata"]["annotations"]["bulk"] = Value::from("x".repeat(300_000));
    h.sim.apply_pod(big);
    h.complete(&Listing::from([(
        hex('a'),
        finding(&["nginx"], &[("prod", "web", 1)]),
    )]))
    .await;
}
