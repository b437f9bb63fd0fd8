//! Benchmark of the `kubernetes` discovery source against the fake API server, with N pods
//! (default 5 000) of N/10 Deployments over D digests (default 500), each pod with an app
//! container, a sidecar and a finished init container, shaped as real pods are (owner,
//! `managedFields`, conditions, resources).
//!
//! - Memory: the source's compact pod cache built from the N pod objects, as live heap bytes
//!   counted by this benchmark's global allocator, beside the peer: the same pods decoded into
//!   `k8s_openapi` `Pod` objects, as a reflector store keeps them.
//! - CPU: the source runs on this thread alone (a current-thread runtime; the fake server runs
//!   on another runtime's threads), so this thread's CPU time is the source's: for the initial
//!   list, and per 1 000 `MODIFIED` events both when each flips a container between running
//!   and waiting (the listing changes) and when each touches only a condition's timestamp
//!   (nothing the source keeps). Beside them, the decoding alone of 1 000 pods: into the
//!   source's cache, and the peer's into `Pod`.
//!
//! `cargo bench --bench kubernetes`; knobs (environment): SAS_BENCH_PODS (5000),
//! SAS_BENCH_DIGESTS (500), SAS_BENCH_ROUNDS (5 of each kind).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use sas_image_scan_exporter::config::KubernetesConfig;
use sas_image_scan_exporter::{CacheSample, KubernetesProbe, ProbeOutcome};
use sas_simulator::{ContainerState, KubeSimulator, PodBuilder};
use serde_json::Value;

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; the clock ID is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn digest(i: usize) -> String {
    format!("{i:064x}")
}

/// The benchmark's cluster: pod `i` of Deployment `i / 10`.
struct Cluster {
    digests: usize,
    /// Whether each pod's app container runs now.
    running: Vec<bool>,
    /// Bumped to make an event that changes nothing the source keeps.
    touch: Vec<u32>,
}

impl Cluster {
    fn pod(&self, i: usize) -> Value {
        let deployment = i / 10;
        let app = deployment % self.digests;
        let sidecar = (deployment * 7 + 3) % self.digests;
        let init = (deployment * 13 + 5) % self.digests;
        let team = deployment % 20;
        let ns = format!("team-{team}");
        let name = format!("app-{deployment}-7c9d8f6b5a-{i:05}");
        let state = if self.running[i] {
            ContainerState::Running
        } else {
            ContainerState::Waiting
        };
        let mut pod = PodBuilder::new(&ns, &name)
            .deployment(&format!("app-{deployment}"), "7c9d8f6b5a")
            .label("app", &format!("app-{deployment}"))
            .label("team", &format!("team-{team}"))
            .container(
                "app",
                &format!("registry.example/team-{team}/app-{deployment}:1.{}", i % 7),
                Some(&format!(
                    "registry.example/team-{team}/app-{deployment}@sha256:{}",
                    digest(app)
                )),
                state,
            )
            .container(
                "proxy",
                "registry.example/mesh/proxy:1.22",
                Some(&format!(
                    "registry.example/mesh/proxy@sha256:{}",
                    digest(sidecar)
                )),
                ContainerState::Running,
            )
            .init_container(
                "migrate",
                &format!("registry.example/team-{team}/migrate:3"),
                Some(&format!(
                    "registry.example/team-{team}/migrate@sha256:{}",
                    digest(init)
                )),
                ContainerState::Terminated,
            )
            .build();
        pod["status"]["conditions"][1]["lastProbeTime"] =
            Value::from(format!("2025-01-01T00:{:02}:00Z", self.touch[i] % 60));
        pod
    }

    fn running_total(&self) -> u64 {
        // Every pod's sidecar runs; its app container when flagged.
        self.running.len() as u64 + self.running.iter().filter(|&&r| r).count() as u64
    }
}

fn wait_for(
    rt: &tokio::runtime::Runtime,
    probe: &mut KubernetesProbe,
    want: impl Fn(usize, u64) -> bool,
) -> (usize, u64) {
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, probe.next()).await {
                Ok(Some(ProbeOutcome::Complete { digests, running })) if want(digests, running) => {
                    return (digests, running);
                }
                Ok(Some(ProbeOutcome::Complete { .. })) => {}
                Ok(Some(ProbeOutcome::Failed(why))) => panic!("the source failed: {why}"),
                Ok(None) => panic!("the source stopped"),
                Err(_) => panic!("no listing as expected within a minute"),
            }
        }
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let pods = env_usize("SAS_BENCH_PODS", 5000);
    let digests = env_usize("SAS_BENCH_DIGESTS", 500);
    let rounds = env_usize("SAS_BENCH_ROUNDS", 5);
    let batch = pods.min(1000);
    let mut cluster = Cluster {
        digests,
        running: vec![true; pods],
        touch: vec![0; pods],
    };
    println!(
        "kubernetes source: {pods} pods, {digests} digests, {rounds} rounds of {batch} events"
    );

    // ---- memory ----
    let objects: Vec<Vec<u8>> = (0..pods)
        .map(|i| serde_json::to_vec(&cluster.pod(i)).expect("serialisable"))
        .collect();
    let json_bytes: usize = objects.iter().map(Vec::len).sum();
    let before = live();
    let cache = CacheSample::build(&objects).expect("pods decode");
    let cache_bytes = live() - before;
    let (cached, listed) = (cache.pods(), cache.digests());
    drop(cache);
    let before = live();
    let peer: Vec<Pod> = objects
        .iter()
        .map(|o| serde_json::from_slice(o).expect("pods decode as Pod"))
        .collect();
    let peer_bytes = live() - before;
    drop(peer);
    println!(
        "memory: compact cache {:.1} KiB for {cached} pods, {listed} digests ({:.0} B per pod); \
         peer (k8s_openapi Pod objects) {:.1} KiB ({:.0} B per pod); pod JSON {:.0} B on average",
        cache_bytes as f64 / 1024.0,
        cache_bytes as f64 / pods as f64,
        peer_bytes as f64 / 1024.0,
        peer_bytes as f64 / pods as f64,
        json_bytes as f64 / pods as f64,
    );

    // ---- decoding alone, 1 000 pods: the median of 5 alternating runs, after a warm-up ----
    let sample = &objects[..batch];
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for run in 0..6 {
        let t = thread_cpu();
        let cache = CacheSample::build(sample).expect("pods decode");
        let a = thread_cpu() - t;
        drop(cache);
        let t = thread_cpu();
        let peer: Vec<Pod> = sample
            .iter()
            .map(|o| serde_json::from_slice(o).expect("pods decode as Pod"))
            .collect();
        let b = thread_cpu() - t;
        drop(peer);
        if run > 0 {
            ours.push(a);
            theirs.push(b);
        }
    }
    ours.sort();
    theirs.sort();
    println!(
        "decode {batch} pods (median of {}): into the cache {:.2} ms CPU; peer into Pod {:.2} ms CPU",
        ours.len(),
        ms(ours[ours.len() / 2]),
        ms(theirs[theirs.len() / 2])
    );
    drop(objects);

    // ---- the source against the fake server ----
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = Arc::new(sim_rt.block_on(KubeSimulator::start()).expect("simulator"));
    let all: Vec<Value> = (0..pods).map(|i| cluster.pod(i)).collect();
    sim.apply_pods(all);
    let kubeconfig =
        std::env::temp_dir().join(format!("sas-bench-kube-{}.yaml", std::process::id()));
    sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = KubernetesConfig {
        kubeconfig: Some(kubeconfig.clone()),
        cluster: "bench".into(),
        namespaces: Vec::new(),
        label_selector: None,
    };
    let wall = Instant::now();
    let t = thread_cpu();
    let mut probe = rt.block_on(async { KubernetesProbe::start(config) });
    let expected = cluster.running_total();
    let got = wait_for(&rt, &mut probe, |_, r| r == expected);
    let initial = thread_cpu() - t;
    println!(
        "initial list of {pods} pods: {:.1} ms CPU ({:.1} ms wall); {} digests, {} running",
        ms(initial),
        ms(wall.elapsed()),
        got.0,
        got.1
    );

    // Flips: each event starts or stops one app container.
    let mut flips = Duration::ZERO;
    let mut next = 0;
    for _ in 0..rounds {
        let events: Vec<Value> = (0..batch)
            .map(|k| {
                let i = (next + k) % pods;
                cluster.running[i] = !cluster.running[i];
                cluster.pod(i)
            })
            .collect();
        next = (next + batch) % pods;
        let expected = cluster.running_total();
        let t = thread_cpu();
        let server = Arc::clone(&sim);
        sim_rt.spawn(async move { server.apply_pods(events) });
        wait_for(&rt, &mut probe, |_, r| r == expected);
        flips += thread_cpu() - t;
    }

    // Touches: each event changes a condition's timestamp only; one flip at the end marks
    // when the source has read them all.
    let mut touches = Duration::ZERO;
    for _ in 0..rounds {
        let mut events: Vec<Value> = (0..batch)
            .map(|k| {
                let i = (next + k) % pods;
                cluster.touch[i] += 1;
                cluster.pod(i)
            })
            .collect();
        next = (next + batch) % pods;
        cluster.running[next] = !cluster.running[next];
        events.push(cluster.pod(next));
        let expected = cluster.running_total();
        let t = thread_cpu();
        let server = Arc::clone(&sim);
        sim_rt.spawn(async move { server.apply_pods(events) });
        wait_for(&rt, &mut probe, |_, r| r == expected);
        touches += thread_cpu() - t;
    }
    let per = |total: Duration| ms(total) / rounds as f64 * 1000.0 / batch as f64;
    println!(
        "per 1000 MODIFIED events: {:.2} ms CPU when each flips a running container (listing \
         rebuilt at most once a second); {:.2} ms CPU when each touches nothing the source keeps",
        per(flips),
        per(touches)
    );
    println!(
        "fake server: {} list requests, {} watch requests",
        sim.list_requests(),
        sim.watch_requests()
    );
    drop(probe);
    let _ = std::fs::remove_file(&kubeconfig);
}
