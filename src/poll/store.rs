//! What the exporter knows about each digest, published as immutable snapshots.
//!
//! The scheduler is the only writer; it swaps in a new [`Snapshot`] after every change. Scrapes and
//! the landing page only ever load the current snapshot, so they never wait for the API and never
//! see a half-updated set.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::aliyun::scan::{ScanState, ScanTask};
use crate::config::Target;
use crate::poll::discovered::SharedDiscovered;

pub use crate::clock::{UnixSeconds, unix_now};

/// What is known about a digest's latest scan.
// Nearly every target holds a task once polled, so boxing it would only add an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Known {
    /// No poll has succeeded yet.
    #[default]
    NotPolled,
    /// The API knows no scan task for the digest.
    NoTask,
    /// The latest scan task.
    Task(ScanTask),
}

impl Known {
    /// What a successful poll answered: its latest task, if any.
    pub fn from_answer(task: Option<ScanTask>) -> Known {
        task.map_or(Known::NoTask, Known::Task)
    }

    /// True once a poll has succeeded.
    pub fn is_fetched(&self) -> bool {
        !matches!(self, Known::NotPolled)
    }

    /// The latest task, when one is known.
    pub fn task(&self) -> Option<&ScanTask> {
        match self {
            Known::Task(t) => Some(t),
            Known::NotPolled | Known::NoTask => None,
        }
    }

    /// The state-set state, or `None` before the first successful poll.
    pub fn state(&self) -> Option<ScanState> {
        self.is_fetched().then(|| ScanState::of(self.task()))
    }
}

/// A target's label set: `account`, `digest` and then the configured labels sorted by name.
/// Every version of a target's state shares one, since a poll never changes it, and the texts
/// that repeat across targets (names, accounts, teams) are one allocation each.
pub type Labels = Arc<[(Arc<str>, Arc<str>)]>;

/// Hands out one shared copy of each distinct text, while a set of targets is being built.
#[derive(Debug, Default)]
pub struct Interner(HashSet<Arc<str>>);

impl Interner {
    /// The shared copy of `text`.
    pub fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

/// One digest's known state.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetState {
    /// The account whose Security Center is asked about this digest.
    pub account: Arc<str>,
    /// Bare lower-case hex digest; the same allocation as the `digest` label's value and the
    /// scheduler's keys.
    pub digest: Arc<str>,
    /// The label set of every series.
    pub labels: Labels,
    /// What the last successful poll learned.
    pub data: Known,
    /// When `data` was fetched.
    pub last_success: Option<UnixSeconds>,
    /// Whether the most recent poll succeeded; `None` before the first poll ended.
    pub up: Option<bool>,
    /// The most recent error, for the landing page.
    pub last_error: Option<String>,
    /// The refresh period that applies now (active or ended scan), for the overdue count.
    pub refresh: Duration,
    /// When the exporter started watching this digest (overdue clock for never-fetched ones).
    pub added_at: UnixSeconds,
    /// True when `targets` or a target file configures the digest: its labels win.
    pub configured: bool,
    /// What discovery knows about the digest, when a source lists it (or it lingers).
    pub discovered: Option<SharedDiscovered>,
}

impl TargetState {
    /// A target that has not been polled yet.
    pub fn new(target: &Target, refresh: Duration) -> Self {
        Self::new_shared(target, refresh, &mut Interner::default())
    }

    /// [`TargetState::new`], with the label texts shared through `interner`.
    pub fn new_shared(target: &Target, refresh: Duration, interner: &mut Interner) -> Self {
        let account = interner.get(&target.account);
        let digest: Arc<str> = Arc::from(target.digest.as_str());
        let mut labels = Vec::with_capacity(target.labels.len() + 2);
        labels.push((interner.get("account"), Arc::clone(&account)));
        labels.push((interner.get("digest"), Arc::clone(&digest)));
        labels.extend(
            target
                .labels
                .iter()
                .map(|(k, v)| (interner.get(k), interner.get(v))),
        );
        TargetState {
            account,
            digest,
            labels: labels.into(),
            data: Known::NotPolled,
            last_success: None,
            up: None,
            last_error: None,
            refresh,
            added_at: unix_now(),
            configured: true,
            discovered: None,
        }
    }

    /// A target only discovery names, with the label set its sources give it.
    pub fn discovered(
        account: Arc<str>,
        digest: Arc<str>,
        discovered: SharedDiscovered,
        refresh: Duration,
    ) -> Self {
        TargetState {
            account,
            digest,
            labels: Arc::clone(&discovered.labels),
            data: Known::NotPolled,
            last_success: None,
            up: None,
            last_error: None,
            refresh,
            added_at: unix_now(),
            configured: false,
            discovered: Some(discovered),
        }
    }

    /// True when this state's label set is the one `target` describes now.
    pub fn labels_match(&self, target: &Target) -> bool {
        let configured = [
            ("account", target.account.as_str()),
            ("digest", &target.digest),
        ]
        .into_iter()
        .chain(target.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.labels.iter().map(|(k, v)| (&**k, &**v)).eq(configured)
    }

    /// True once a poll of this digest has ended, successfully or not.
    pub fn polled(&self) -> bool {
        self.up.is_some() || self.data.is_fetched()
    }
}

/// An immutable view of every target, as of one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every published change; encoded output is cached per version.
    pub version: u64,
    /// Targets sorted by account, then digest.
    pub targets: Vec<Arc<TargetState>>,
    /// True once every target has been polled (or restored) at least once.
    pub ready: bool,
    /// Sorted instants after which each target counts as overdue.
    overdue_after: Vec<UnixSeconds>,
}

impl Snapshot {
    /// Builds a snapshot from targets already in their final order.
    pub fn new(version: u64, targets: Vec<Arc<TargetState>>) -> Self {
        let mut overdue_after: Vec<UnixSeconds> = targets
            .iter()
            .map(|t| t.last_success.unwrap_or(t.added_at) + 2.0 * t.refresh.as_secs_f64())
            .collect();
        overdue_after.sort_by(f64::total_cmp);
        Snapshot {
            version,
            ready: targets.iter().all(|t| t.polled()),
            targets,
            overdue_after,
        }
    }

    /// Targets whose last success is older than twice their refresh interval at `now`.
    pub fn overdue(&self, now: UnixSeconds) -> usize {
        self.overdue_after.partition_point(|&t| t < now)
    }
}

/// The current snapshot, swapped atomically. Each account's scheduler publishes its own part;
/// the snapshot is their union, accounts in name order.
#[derive(Debug, Default)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    parts: Mutex<Parts>,
}

#[derive(Debug, Default)]
struct Parts {
    version: u64,
    by_account: BTreeMap<Arc<str>, Vec<Arc<TargetState>>>,
}

impl Store {
    /// The snapshot to read now.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces one account's targets (sorted by digest) and publishes the union. Serialised, so
    /// two publishers cannot swap an older snapshot over a newer one.
    pub fn publish_part(&self, account: &Arc<str>, targets: Vec<Arc<TargetState>>) {
        let mut parts = self.parts.lock();
        parts.by_account.insert(Arc::clone(account), targets);
        self.publish_locked(&mut parts);
    }

    /// Drops an account's targets (the account left the configuration) and publishes the rest.
    pub fn remove_part(&self, account: &str) {
        let mut parts = self.parts.lock();
        if parts.by_account.remove(account).is_some() {
            self.publish_locked(&mut parts);
        }
    }

    fn publish_locked(&self, parts: &mut Parts) {
        parts.version += 1;
        let all = parts.by_account.values().flatten().cloned().collect();
        self.current
            .store(Arc::new(Snapshot::new(parts.version, all)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;

    fn target(d: char) -> Target {
        Target {
            digest: d.to_string().repeat(64),
            account: "prod".into(),
            labels: [("team".to_owned(), "x".to_owned())].into(),
            location: Location {
                file: "t".into(),
                line: 1,
                column: 1,
            },
        }
    }

    #[test]
    fn overdue_and_ready() {
        let mut a = TargetState::new(&target('a'), Duration::from_secs(10));
        a.last_success = Some(1000.0);
        a.up = Some(true);
        a.data = Known::NoTask;
        let mut b = TargetState::new(&target('b'), Duration::from_secs(60));
        b.added_at = 990.0;
        let labels: Vec<(&str, &str)> = a.labels.iter().map(|(k, v)| (&**k, &**v)).collect();
        let digest = "a".repeat(64);
        assert_eq!(
            labels,
            [
                ("account", "prod"),
                ("digest", digest.as_str()),
                ("team", "x")
            ]
        );
        assert!(Arc::ptr_eq(&a.digest, &a.labels[1].1));
        let s = Snapshot::new(7, vec![Arc::new(a), Arc::new(b)]);
        assert!(!s.ready);
        // a: overdue after 1020; b (never fetched): after 990 + 120 = 1110.
        assert_eq!(s.overdue(1020.0), 0);
        assert_eq!(s.overdue(1020.5), 1);
        assert_eq!(s.overdue(1110.5), 2);
        let store = Store::default();
        let (prod, intl): (Arc<str>, Arc<str>) = ("prod".into(), "intl".into());
        store.publish_part(&prod, s.targets.clone());
        store.publish_part(&intl, s.targets[..1].to_vec());
        let both = store.load();
        assert_eq!((both.version, both.targets.len()), (2, 3));
        // Accounts in name order: intl's part first.
        assert!(Arc::ptr_eq(&both.targets[0], &s.targets[0]));
        store.remove_part("intl");
        assert_eq!(store.load().targets.len(), 2);
        assert_eq!(store.load().version, 3);
    }
}
