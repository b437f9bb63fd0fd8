//! Background polling: per-digest due times, one rate limit and one concurrency limit over every
//! request of the account (retries and discovery listings included), retries with backoff, and
//! adaptive slow-down under throttling.
//!
//! Results land in the scheduler's map and are published as snapshots; scrapes never call the API
//! and polling never waits for a scrape. Which digests the map holds is `membership`'s concern;
//! how one request is made, `request`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::aliyun::client::{ACTION, ApiError, SasClient};
use crate::aliyun::scan::{ScanResult, ScanState, ScanStatus};
use crate::backoff::jittered;
use crate::config::{PollingConfig, Target};
use crate::poll::discovered::SharedDiscovered;
use crate::poll::limiter::RateLimiter;
use crate::poll::store::{Interner, Known, Store, TargetState, unix_now};
use crate::poll::timing::{failed_poll_wait, initial_state, is_active, refresh_interval};
use crate::shutdown::Shutdown;
use crate::telemetry::{ExporterMetrics, Trigger};

/// After a credentials failure with no backoff to wait for, the digest is tried again this soon;
/// the provider's single flight and backoff keep the source itself from being hammered.
const CREDENTIALS_RETRY: Duration = Duration::from_secs(1);
/// Spreads the digests waiting on one credentials backoff, so they do not wake in one instant.
const CREDENTIALS_SPREAD: Duration = Duration::from_millis(250);
/// Snapshots are published at most this often; changes within the window are coalesced.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// A due entry: when, then how stale (never polled first, then the oldest success), then the
/// digest. Digests due at one moment are polled stalest first, so restarts do not keep favouring
/// the same subset.
pub(crate) type Due = (Instant, Staleness, Arc<str>);

/// Orders by the last success: `0` for never polled, else its time in milliseconds.
pub(crate) type Staleness = u64;

pub(crate) fn staleness(state: &TargetState) -> Staleness {
    state
        .last_success
        .map_or(0, |t| (t.max(0.0) * 1000.0) as u64 + 1)
}

pub(crate) struct Inner {
    /// Keyed by the state's own digest, which the due set and the other maps share too.
    pub(crate) targets: BTreeMap<Arc<str>, Arc<TargetState>>,
    pub(crate) due: BTreeSet<Due>,
    /// Each scheduled digest's entry in `due` and why it is due; a digest being polled has none.
    pub(crate) scheduled: HashMap<Arc<str>, (Due, Trigger)>,
    /// Consecutive failed polls per digest, for the failure backoff.
    pub(crate) failures: HashMap<Arc<str>, u32>,
    /// Digests whose row changed while they were being polled: due again once that poll ends.
    pub(crate) recheck: HashSet<Arc<str>>,
    /// Saved states (from the state file) that no target names yet: discovery may name them
    /// when it first publishes, then the rest is dropped.
    pub(crate) restored: HashMap<String, TargetState>,
    last_credentials_error: Option<String>,
    unknown_statuses: HashSet<String>,
}

impl Inner {
    /// Puts `digest` on the schedule at `at` for `why`, replacing an earlier entry.
    pub(crate) fn schedule(&mut self, digest: &Arc<str>, at: Instant, why: Trigger) {
        self.unschedule(digest);
        let stale = self.targets.get(digest).map_or(0, |s| staleness(s));
        let entry = (at, stale, Arc::clone(digest));
        self.due.insert(entry.clone());
        self.scheduled.insert(Arc::clone(digest), (entry, why));
    }

    /// Takes `digest` off the schedule; why it was due, if it was.
    pub(crate) fn unschedule(&mut self, digest: &str) -> Option<Trigger> {
        let (entry, why) = self.scheduled.remove(digest)?;
        self.due.remove(&entry);
        Some(why)
    }

    /// Drops everything known about `digest`.
    pub(crate) fn forget(&mut self, digest: &str) {
        self.unschedule(digest);
        self.targets.remove(digest);
        self.failures.remove(digest);
        self.recheck.remove(digest);
    }
}

pub(crate) struct Shared {
    /// The account this scheduler polls for; its targets form one part of the snapshot.
    pub(crate) account: Arc<str>,
    /// Set once the account left the configuration: nothing it still finishes is published or
    /// counted. Counting holds it for reading, so `retire` forgets the account's series at a
    /// moment no count is halfway done (always taken after `inner`, never before).
    retired: RwLock<bool>,
    client: ArcSwap<SasClient>,
    polling: ArcSwap<PollingConfig>,
    pub(crate) limiter: RateLimiter,
    permits: Arc<Semaphore>,
    concurrency: Mutex<usize>,
    metrics: Arc<ExporterMetrics>,
    store: Arc<Store>,
    inner: Mutex<Inner>,
    wake: Notify,
    dirty: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    pub(crate) fn polling(&self) -> Arc<PollingConfig> {
        self.polling.load_full()
    }

    /// A place for one request: a concurrency permit, then a token of the bucket. `None` once
    /// shutdown is triggered (or the permits are closed).
    pub(crate) async fn slot(&self, shutdown: &mut Shutdown) -> Option<OwnedSemaphorePermit> {
        let permit = tokio::select! {
            p = Arc::clone(&self.permits).acquire_owned() => p.ok()?,
            _ = shutdown.wait() => return None,
        };
        tokio::select! {
            _ = self.limiter.acquire() => Some(permit),
            _ = shutdown.wait() => None,
        }
    }

    /// Counts one request that reached the API (and its error code), unless the account left
    /// the configuration: its series are gone and must not come back.
    pub(crate) fn observe(&self, action: &str, took: Duration, error: Option<&str>) {
        let retired = self.retired.read();
        if *retired {
            return;
        }
        self.metrics
            .observe_request(&self.account, action, took.as_secs_f64());
        if let Some(code) = error {
            self.metrics.observe_error(&self.account, action, code);
        }
    }

    pub(crate) fn client(&self) -> Arc<SasClient> {
        self.client.load_full()
    }

    fn publish(&self) {
        // Published under the lock, so this account's older part cannot replace a newer one.
        let inner = self.lock();
        if *self.retired.read() {
            return;
        }
        self.store
            .publish_part(&self.account, inner.targets.values().cloned().collect());
    }
}

/// The polling engine. Cheap to clone; all clones drive the same state.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler over one account's `targets`, with the account's own client, token bucket
    /// and concurrency limit (`polling` carries the account's rate and concurrency), so one
    /// account's throttling or broken credentials never slow another's. Digests found in
    /// `restored` (the state file) start with their saved data and are due when their refresh
    /// interval since the saved fetch has passed; all others are due at once. Saved digests no
    /// target names wait for [`Scheduler::discover`]. Publishes the account's first part.
    pub fn new(
        account: Arc<str>,
        client: SasClient,
        polling: PollingConfig,
        targets: &[&Target],
        mut restored: HashMap<String, TargetState>,
        store: Arc<Store>,
        metrics: Arc<ExporterMetrics>,
    ) -> Self {
        let now = Instant::now();
        let mut inner = Inner {
            targets: BTreeMap::new(),
            due: BTreeSet::new(),
            scheduled: HashMap::new(),
            failures: HashMap::new(),
            recheck: HashSet::new(),
            restored: HashMap::new(),
            last_credentials_error: None,
            unknown_statuses: HashSet::new(),
        };
        let mut interner = Interner::default();
        for t in targets {
            let fresh = TargetState::new_shared(t, polling.interval, &mut interner);
            let (state, at, why) = initial_state(fresh, restored.remove(&t.digest), &polling, now);
            let key = Arc::clone(&state.digest);
            inner.targets.insert(Arc::clone(&key), Arc::new(state));
            inner.schedule(&key, at, why);
        }
        inner.restored = restored;
        let shared = Arc::new(Shared {
            account,
            retired: RwLock::new(false),
            client: ArcSwap::from_pointee(client),
            limiter: RateLimiter::new(polling.requests_per_second),
            permits: Arc::new(Semaphore::new(polling.concurrency)),
            concurrency: Mutex::new(polling.concurrency),
            polling: ArcSwap::from_pointee(polling),
            metrics,
            store,
            inner: Mutex::new(inner),
            wake: Notify::new(),
            dirty: Notify::new(),
        });
        shared.publish();
        Scheduler { shared }
    }

    /// True when both handles drive the same scheduler.
    pub fn same(&self, other: &Scheduler) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The account left the configuration: its targets leave the snapshot at once, and polls
    /// still in flight publish nothing when they end.
    /// `forget` drops the account's own series while no count is under way, so no request
    /// ending meanwhile brings a series back.
    pub fn retire(&self, forget: impl FnOnce()) {
        let _inner = self.shared.lock();
        let mut retired = self.shared.retired.write();
        *retired = true;
        self.shared.store.remove_part(&self.shared.account);
        forget();
    }

    /// The current request rate (lower than configured while recovering from throttling).
    pub fn current_rate(&self) -> f64 {
        self.shared.limiter.rate()
    }

    /// Applies a reloaded configuration: removed digests disappear from the next snapshot at
    /// once (unless discovery still names them), added ones are due at once, unchanged ones
    /// keep their data and schedule (labels may change). Client, rate, concurrency and
    /// intervals take effect for the next request.
    pub fn reconfigure(&self, client: SasClient, polling: PollingConfig, targets: &[&Target]) {
        let shared = &self.shared;
        shared.client.store(Arc::new(client));
        shared.limiter.set_base(polling.requests_per_second);
        {
            let mut current = shared.concurrency.lock();
            if polling.concurrency > *current {
                shared.permits.add_permits(polling.concurrency - *current);
            } else if polling.concurrency < *current {
                // Take the surplus permits out of circulation as requests in flight return them.
                let surplus = (*current - polling.concurrency) as u32;
                let permits = Arc::clone(&shared.permits);
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned(surplus).await {
                        p.forget();
                    }
                });
            }
            *current = polling.concurrency;
        }
        shared.polling.store(Arc::new(polling.clone()));
        let now = Instant::now();
        let mut inner = shared.lock();
        inner.set_configured(targets, &polling, now);
        inner.pull_in_due_times(&polling, now);
        drop(inner);
        shared.publish();
        shared.wake.notify_one();
    }

    /// Applies the account's discovered set (every digest its sources name or that lingers,
    /// with what they know): digests it adds are due at once (or as their saved state says),
    /// those in `changed` are due at once too, and discovered digests it no longer holds go
    /// (configured ones stay). The first call also drops saved states no target named.
    pub fn discover(&self, found: Vec<(Arc<str>, SharedDiscovered)>, changed: &HashSet<String>) {
        let polling = self.shared.polling();
        let mut inner = self.shared.lock();
        let touched = inner.set_discovered(
            &self.shared.account,
            found,
            changed,
            &polling,
            Instant::now(),
        );
        inner.restored = HashMap::new();
        drop(inner);
        // An unchanged set needs no new snapshot: scrapes and the state file keep theirs.
        if touched {
            self.shared.publish();
        }
        self.shared.wake.notify_one();
    }

    /// One request of this account that is not a digest's poll (a discovery listing page): it
    /// shares the account's concurrency limit and token bucket, retries and slow-down, and is
    /// counted under `action`. `None` once shutdown fires.
    pub async fn request<T, F, Fut>(
        &self,
        action: &'static str,
        what: &str,
        shutdown: &mut Shutdown,
        f: F,
    ) -> Option<Result<T, ApiError>>
    where
        F: FnMut(Arc<SasClient>) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.shared.call(action, what, None, shutdown, f).await
    }

    /// Polls until `shutdown` fires, then lets in-flight requests finish (at most `grace`) and
    /// publishes the final state.
    pub async fn run(&self, mut shutdown: Shutdown, grace: Duration) {
        let publisher = tokio::spawn(publish_loop(Arc::clone(&self.shared), shutdown.clone()));
        let mut polls = JoinSet::new();
        loop {
            while let Some(done) = polls.try_join_next() {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("a poll task panicked; its digest was rescheduled");
                }
            }
            let next = self.shared.lock().due.first().cloned();
            let (at, _, digest) = match next {
                None => {
                    tokio::select! {
                        _ = self.shared.wake.notified() => continue,
                        _ = shutdown.wait() => break,
                    }
                }
                Some(entry) => entry,
            };
            if at > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = self.shared.wake.notified() => {}
                    _ = shutdown.wait() => break,
                }
                continue;
            }
            let Some(why) = self.shared.lock().unschedule(&digest) else {
                continue;
            };
            let Some(permit) = self.shared.slot(&mut shutdown).await else {
                break;
            };
            // While waiting for the slot the digest may have been removed, or removed and added
            // again (then it is scheduled anew): either way this poll is not wanted any more.
            let wanted = {
                let inner = self.shared.lock();
                let wanted =
                    inner.targets.contains_key(&digest) && !inner.scheduled.contains_key(&digest);
                if wanted && !*self.shared.retired.read() {
                    self.shared
                        .metrics
                        .refresh_triggered(&self.shared.account, why);
                }
                wanted
            };
            if !wanted {
                continue;
            }
            polls.spawn(poll_digest(
                Arc::clone(&self.shared),
                digest,
                permit,
                shutdown.clone(),
            ));
        }
        // Stop issuing requests; requests in flight get until the grace period ends.
        if tokio::time::timeout(grace, async { while polls.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!(
                unfinished = polls.len(),
                "requests still in flight at shutdown were abandoned"
            );
            polls.abort_all();
        }
        let _ = publisher.await;
        self.shared.publish();
    }
}

async fn publish_loop(shared: Arc<Shared>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shared.dirty.notified() => {}
            _ = shutdown.wait() => return,
        }
        shared.publish();
        tokio::time::sleep(PUBLISH_EVERY).await;
    }
}

/// Polls one digest: the first attempt holds `permit` and an already-taken rate token; retries
/// take both again.
async fn poll_digest(
    shared: Arc<Shared>,
    digest: Arc<str>,
    permit: OwnedSemaphorePermit,
    mut shutdown: Shutdown,
) {
    let mut guard = PollGuard {
        shared: Arc::clone(&shared),
        digest: Arc::clone(&digest),
        armed: true,
    };
    let outcome = shared
        .call(ACTION, &digest, Some(permit), &mut shutdown, |client| {
            let digest = Arc::clone(&digest);
            async move { client.describe_image_latest_scan_task(&digest).await }
        })
        .await;
    let Some(outcome) = outcome else {
        // Shutdown: the guard puts the digest back for the final state.
        return;
    };
    guard.armed = false;
    record(&shared, &digest, outcome);
}

/// Puts a digest back on the schedule if its poll task ends without recording an outcome (a panic,
/// or an abort), so no digest is ever silently dropped from polling.
struct PollGuard {
    shared: Arc<Shared>,
    digest: Arc<str>,
    armed: bool,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let interval = self.shared.polling().interval;
        let mut inner = self.shared.lock();
        if inner.targets.contains_key(&self.digest) {
            let at = Instant::now() + jittered(interval);
            inner.schedule(&Arc::clone(&self.digest), at, Trigger::Retry);
        }
        drop(inner);
        self.shared.wake.notify_one();
    }
}

/// When a digest whose poll found no credentials is due again: just after the provider's backoff
/// ends, so polling resumes as soon as the source works again.
fn credentials_wait(shared: &Shared) -> Duration {
    let backoff = shared
        .client()
        .credentials_provider()
        .retry_in()
        .unwrap_or(CREDENTIALS_RETRY);
    backoff + CREDENTIALS_SPREAD.mul_f64(fastrand::f64())
}

/// Stores a poll's outcome, reschedules the digest, and marks the snapshot dirty.
fn record(shared: &Shared, digest: &str, outcome: Result<ScanResult, ApiError>) {
    let now = unix_now();
    let mut inner = shared.lock();
    let Some(current) = inner.targets.get(digest) else {
        // Removed (by a reload) while in flight: drop the answer.
        return;
    };
    let mut state = TargetState::clone(current);
    let key = Arc::clone(&state.digest);
    let credentials_failed = matches!(outcome, Err(ApiError::Credentials(_)));
    let failed = outcome.is_err();
    match outcome {
        Ok(result) => {
            // Bounded: a misbehaving API must not grow this set without limit.
            if let Some(task) = &result.task
                && task.status == ScanStatus::Unknown
                && inner.unknown_statuses.len() < 1000
                && inner.unknown_statuses.insert(task.raw_status.clone())
            {
                tracing::warn!(account = %shared.account, %digest, raw_status = %task.raw_status, "unknown scan status; reported as UNKNOWN");
            }
            tracing::debug!(
                %digest,
                status = %ScanState::of(result.task.as_ref()),
                request_id = result.request_id.as_deref().unwrap_or(""),
                tasks = result.tasks_in_response,
                "polled"
            );
            if inner.last_credentials_error.take().is_some() {
                tracing::info!(account = %shared.account, "credentials work again; polling resumed");
            }
            state.data = Known::from_answer(result.task);
            state.last_success = Some(now);
            state.up = Some(true);
            state.last_error = None;
        }
        Err(e) => {
            match &e {
                // One line per distinct problem, not one per digest per interval.
                ApiError::Credentials(_) => {
                    let text = e.to_string();
                    if inner.last_credentials_error.as_deref() != Some(text.as_str()) {
                        tracing::error!(account = %shared.account, error = %e, "not polling: no valid credentials (logged once until it changes)");
                        inner.last_credentials_error = Some(text);
                    }
                }
                _ => {
                    tracing::warn!(account = %shared.account, %digest, error = %e, "poll failed; keeping the last good data")
                }
            }
            state.up = Some(false);
            state.last_error = Some(e.to_string());
        }
    }
    let polling = shared.polling();
    state.refresh = refresh_interval(&state, &polling);
    let (wait, why) = if credentials_failed {
        (credentials_wait(shared).min(state.refresh), Trigger::Retry)
    } else if failed {
        let failures = inner.failures.entry(Arc::clone(&key)).or_insert(0);
        *failures = failures.saturating_add(1);
        (failed_poll_wait(*failures, &polling), Trigger::Retry)
    } else {
        inner.failures.remove(digest);
        let why = if is_active(&state) {
            Trigger::Active
        } else {
            Trigger::Interval
        };
        (jittered(state.refresh), why)
    };
    let (wait, why) = if inner.recheck.remove(digest) && !failed {
        // The row changed while this poll was on its way: what it read may predate the change.
        (Duration::ZERO, Trigger::Changed)
    } else {
        (wait, why)
    };
    inner.targets.insert(Arc::clone(&key), Arc::new(state));
    inner.schedule(&key, Instant::now() + wait, why);
    drop(inner);
    shared.wake.notify_one();
    shared.dirty.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::credentials::StaticProvider;
    use crate::aliyun::signing::Credentials;
    use crate::config::{Location, SasConfig};
    use sas_simulator::{SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, Scenario, Simulator};

    fn target(n: u32) -> Target {
        Target {
            digest: format!("{n:08x}").repeat(8),
            account: "default".into(),
            labels: BTreeMap::new(),
            location: Location {
                file: "test".into(),
                line: 1,
                column: 1,
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn due_digests_are_polled_stalest_first() {
        let sim = Simulator::start(Scenario::default()).await.expect("sim");
        let sas = SasConfig {
            endpoint: sim.url().parse().ok(),
            ..SasConfig::default()
        };
        let provider = Arc::new(StaticProvider::new(
            "static",
            Credentials::new(SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, None, None),
        ));
        let client = SasClient::new(sas.client_options(), provider).expect("client");
        let polling = PollingConfig {
            interval: Duration::from_secs(600),
            active_interval: Duration::from_secs(600),
            concurrency: 1,
            requests_per_second: 100.0,
            max_retries: 0,
        };
        let targets: Vec<Target> = (0..6).map(target).collect();
        // All overdue; the higher the number, the older the last success; 5 was never polled.
        let now = unix_now();
        let restored: HashMap<String, TargetState> = targets[..5]
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut state = TargetState::new(t, polling.interval);
                state.data = Known::NoTask;
                state.last_success = Some(now - 10_000.0 - 100.0 * i as f64);
                state.up = Some(true);
                (t.digest.clone(), state)
            })
            .collect();
        let scheduler = Scheduler::new(
            Arc::from("default"),
            client,
            polling,
            &targets.iter().collect::<Vec<_>>(),
            restored,
            Arc::new(Store::default()),
            Arc::new(ExporterMetrics::default()),
        );
        let (trigger, signal) = crate::shutdown::channel();
        let run = {
            let s = scheduler.clone();
            tokio::spawn(async move { s.run(signal, Duration::from_secs(1)).await })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sim.total_requests() < 6 {
            assert!(std::time::Instant::now() < deadline, "not all polled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        trigger.trigger();
        run.await.expect("run");
        let order: Vec<String> = sim.log().into_iter().filter_map(|e| e.digest).collect();
        let expected: Vec<String> = [5, 4, 3, 2, 1, 0]
            .iter()
            .map(|&n| targets[n].digest.clone())
            .collect();
        assert_eq!(order, expected);
    }
}
