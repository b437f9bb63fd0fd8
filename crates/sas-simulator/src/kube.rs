//! A fake Kubernetes API server for pods, on loopback over plain HTTP: `GET /api/v1/pods` and
//! `GET /api/v1/namespaces/{ns}/pods`, listed and watched as the real server does (label
//! selectors, paginated lists with a consistent snapshot per `continue` token, a
//! `resourceVersion` on every object and list, watches resuming after a given version with
//! bookmarks, `410 Expired` for a version older than the kept history). Tests change the pods
//! and break things: expired history, dropped watches, failing requests.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::kube_http;
use crate::kube_state::{EventType, Failing, KubeState, Shared};
use crate::server::{Server, bind_loopback, serve};

/// The real server sends a bookmark about once a minute.
const DEFAULT_BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// What a connection gets while the server is unreachable: closed without an answer.
#[derive(Debug, thiserror::Error)]
#[error("the simulated API server is unreachable")]
pub(crate) struct Unreachable;

fn serve_on(shared: &Arc<Shared>, listener: tokio::net::TcpListener) -> std::io::Result<Server> {
    let shared = Arc::clone(shared);
    serve(listener, move |req| {
        let shared = Arc::clone(&shared);
        async move {
            if shared.reachable.load(Ordering::SeqCst) {
                Ok(kube_http::route(shared, &req))
            } else {
                Err(Unreachable)
            }
        }
    })
}

/// A running fake API server on a loopback port; it stops when dropped.
pub struct KubeSimulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<Server>>,
}

impl KubeSimulator {
    /// Starts on an ephemeral loopback port, with no pods.
    pub async fn start() -> std::io::Result<KubeSimulator> {
        let state = KubeState {
            rv: 1,
            pods: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 1,
            snapshots: VecDeque::new(),
            next_snapshot: 1,
            failing: None,
            list_requests: 0,
            watch_requests: 0,
            open_watches: 0,
            bookmark_every: DEFAULT_BOOKMARK_EVERY,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            token: format!("sim-{}", uuid::Uuid::new_v4().simple()),
            reachable: AtomicBool::new(true),
            changes: watch::Sender::new(1),
            drops: watch::Sender::new(0),
            bookmarks: watch::Sender::new(0),
        });
        let listener = bind_loopback().await?;
        let addr = listener.local_addr()?;
        let server = serve_on(&shared, listener)?;
        Ok(KubeSimulator {
            shared,
            addr,
            server: Mutex::new(Some(server)),
        })
    }

    /// The server's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes the server off the network, as a crashed API server: new connections are refused,
    /// open ones are closed at their next request, watches are cut.
    pub fn go_offline(&self) {
        self.shared.reachable.store(false, Ordering::SeqCst);
        self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.drop_watches();
    }

    /// Serves again on the same port, with the same pods and history.
    pub async fn go_online(&self) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let server = serve_on(&self.shared, listener)?;
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        self.shared.reachable.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The bearer token requests must carry.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Writes a kubeconfig whose current context reaches this server with its token.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\n\
             contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\n\
             current-context: sim\nusers:\n- name: sim\n  user:\n    token: {}\n",
            self.url(),
            self.shared.token
        );
        std::fs::write(path, text)
    }

    /// Creates or replaces a pod (`metadata.namespace` defaults to `default`), as a client's
    /// create or update would: an `ADDED` or `MODIFIED` event at a new resource version, which
    /// is returned. A pod without `metadata.name` is ignored and 0 returned.
    pub fn apply_pod(&self, pod: Value) -> u64 {
        self.apply_pods([pod])
    }

    /// Creates or replaces several pods, one resource version each; returns the last.
    pub fn apply_pods(&self, pods: impl IntoIterator<Item = Value>) -> u64 {
        let mut state = self.shared.lock();
        let mut last = 0;
        for mut pod in pods {
            let Some(name) = pod.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let name = name.to_owned();
            let namespace = pod
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            state.rv += 1;
            let rv = state.rv;
            let key = (namespace.clone(), name);
            let old = state.pods.get(&key).cloned();
            let uid = old
                .as_ref()
                .and_then(|o| o.pointer("/metadata/uid").cloned())
                .or_else(|| pod.pointer("/metadata/uid").cloned())
                .unwrap_or_else(|| Value::from(uuid::Uuid::new_v4().to_string()));
            pod["kind"] = Value::from("Pod");
            pod["apiVersion"] = Value::from("v1");
            let meta = &mut pod["metadata"];
            meta["namespace"] = Value::from(namespace);
            meta["uid"] = uid;
            meta["resourceVersion"] = Value::from(rv.to_string());
            let object = Arc::new(pod);
            state.pods.insert(key, Arc::clone(&object));
            let kind = if old.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            };
            state.record(kind, old, object);
            last = rv;
        }
        drop(state);
        if last > 0 {
            self.shared.changes.send_replace(last);
        }
        last
    }

    /// Deletes a pod: a `DELETED` event with its last state at a new resource version. Returns
    /// whether it existed.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        let mut state = self.shared.lock();
        let Some(old) = state.pods.remove(&(namespace.to_owned(), name.to_owned())) else {
            return false;
        };
        state.rv += 1;
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = Value::from(state.rv.to_string());
        state.record(EventType::Deleted, Some(old), Arc::new(last));
        let rv = state.rv;
        drop(state);
        self.shared.changes.send_replace(rv);
        true
    }

    /// Pods stored now.
    pub fn pod_count(&self) -> usize {
        self.shared.lock().pods.len()
    }

    /// The latest resource version.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Compacts the history away (and with it every `continue` token): open watches, and a
    /// watch resuming from any version handed out so far, get `410 Expired`, and their clients
    /// must list again.
    pub fn expire_history(&self) {
        let mut state = self.shared.lock();
        // The compaction takes a version of its own, as etcd's does, so that a list made after
        // it can be watched from while everything before it is gone.
        state.rv += 1;
        state.compacted = state.rv;
        state.history.clear();
        state.snapshots.clear();
        let rv = state.rv;
        drop(state);
        // Open watches are behind the compaction now; waking them has each end with 410.
        self.shared.changes.send_replace(rv);
    }

    /// Cuts every open watch mid-stream, without the end of the chunked body, as a restarting
    /// API server or a load balancer does.
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|g| *g += 1);
    }

    /// Has every open watch that asked for bookmarks send one now.
    pub fn send_bookmarks(&self) {
        self.shared.bookmarks.send_modify(|g| *g += 1);
    }

    /// How often open watches send a bookmark unasked (default one minute).
    pub fn set_bookmark_interval(&self, every: Duration) {
        self.shared.lock().bookmark_every = every;
    }

    /// Answers the next `times` API requests (every one until [`KubeSimulator::stop_failing`]
    /// when `None`) with `status` (500, 403, 401, …) and a `Status` body as the real server
    /// writes it.
    pub fn fail_requests(&self, status: u16, times: Option<usize>) {
        self.shared.lock().failing = Some(Failing {
            status,
            remaining: times,
        });
    }

    /// Requests succeed again.
    pub fn stop_failing(&self) {
        self.shared.lock().failing = None;
    }

    /// List requests received (failed ones included).
    pub fn list_requests(&self) -> u64 {
        self.shared.lock().list_requests
    }

    /// Watch requests received (failed ones included).
    pub fn watch_requests(&self) -> u64 {
        self.shared.lock().watch_requests
    }

    /// Watches streaming now.
    pub fn open_watches(&self) -> usize {
        self.shared.lock().open_watches
    }
}
