//! What the fake Kubernetes API server knows: the pods, the history of their changes, the
//! snapshots of paginated lists, the injected failures and the counters, behind one lock shared
//! by the handle and every connection, with the signals that wake open watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

/// How many changes a watch can resume across; older ones are compacted away, as etcd does.
const MAX_HISTORY: usize = 500_000;
/// Paginated lists whose `continue` tokens still work.
pub(crate) const MAX_SNAPSHOTS: usize = 32;

/// What happened to a pod at one resource version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change: the object after it (for a deletion, its last state at the deletion's version)
/// and before it, which watches with a selector need to tell entering from leaving.
pub(crate) struct Change {
    pub(crate) rv: u64,
    pub(crate) kind: EventType,
    pub(crate) old: Option<Arc<Value>>,
    pub(crate) object: Arc<Value>,
}

/// The objects of one paginated list, as of its first page.
pub(crate) struct Snapshot {
    pub(crate) id: u64,
    pub(crate) rv: u64,
    pub(crate) items: Arc<Vec<Arc<Value>>>,
}

/// Requests answered with an error instead of their result.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failing {
    pub(crate) status: u16,
    pub(crate) remaining: Option<usize>,
}

/// Everything the server knows, behind one lock.
pub(crate) struct KubeState {
    pub(crate) rv: u64,
    pub(crate) pods: BTreeMap<(String, String), Arc<Value>>,
    pub(crate) history: VecDeque<Change>,
    /// A watch from a version older than this has missed changes and gets `410`.
    pub(crate) compacted: u64,
    pub(crate) snapshots: VecDeque<Snapshot>,
    pub(crate) next_snapshot: u64,
    pub(crate) failing: Option<Failing>,
    pub(crate) list_requests: u64,
    pub(crate) watch_requests: u64,
    pub(crate) open_watches: usize,
    pub(crate) bookmark_every: Duration,
}

impl KubeState {
    /// The error the next request gets, if requests fail now.
    pub(crate) fn take_failure(&mut self) -> Option<u16> {
        let failing = self.failing.as_mut()?;
        let status = failing.status;
        match &mut failing.remaining {
            Some(0) => {
                self.failing = None;
                return None;
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(status)
    }

    pub(crate) fn record(&mut self, kind: EventType, old: Option<Arc<Value>>, object: Arc<Value>) {
        self.history.push_back(Change {
            rv: self.rv,
            kind,
            old,
            object,
        });
        while self.history.len() > MAX_HISTORY {
            if let Some(gone) = self.history.pop_front() {
                self.compacted = gone.rv;
            }
        }
    }
}

/// State and signals shared by the handle and every connection.
pub(crate) struct Shared {
    pub(crate) state: Mutex<KubeState>,
    pub(crate) token: String,
    pub(crate) reachable: AtomicBool,
    /// The latest resource version; watches wake when it moves.
    pub(crate) changes: watch::Sender<u64>,
    /// Bumped to cut every open watch.
    pub(crate) drops: watch::Sender<u64>,
    /// Bumped to have every open watch send a bookmark now.
    pub(crate) bookmarks: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, KubeState> {
        // A panic in a handler must not take the whole simulator down with a poisoned lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
