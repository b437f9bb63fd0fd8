//! Background polling: per-digest due times, one rate limit and one concurrency limit over every
//! request (retries included), retries with backoff, and adaptive slow-down under throttling.
//!
//! Results land in the scheduler's map and are published as snapshots; scrapes never call the API
//! and polling never waits for a scrape.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{ACTION, ApiError, ErrorClass, SasClient};
use crate::config::{PollingConfig, Target};
use crate::metrics::ExporterMetrics;
use crate::scan::{ScanResult, ScanStatus};
use crate::shutdown::Shutdown;
use crate::state::{Snapshot, Store, TargetState, unix_now};

/// Base of the exponential retry backoff.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Cap of the exponential retry backoff.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Snapshots are published at most this often; changes within the window are coalesced.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// A pacing token bucket whose rate halves under throttling and then recovers step by step.
#[derive(Debug)]
pub struct RateLimiter {
    inner: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    base: f64,
    rate: f64,
    next_slot: Instant,
    last_cut: Option<Instant>,
}

impl RateLimiter {
    /// A limiter allowing `requests_per_second` on average, with no burst beyond one request.
    pub fn new(requests_per_second: f64) -> Self {
        RateLimiter {
            inner: Mutex::new(Bucket {
                base: requests_per_second,
                rate: requests_per_second,
                next_slot: Instant::now(),
                last_cut: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Bucket> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the next free slot. Slots are reserved on entry, so waiters go in order.
    pub async fn acquire(&self) {
        let slot = {
            let mut b = self.lock();
            let now = Instant::now();
            let slot = b.next_slot.max(now);
            // The config bounds the rate; the cap only guards the arithmetic.
            let gap = Duration::try_from_secs_f64(1.0 / b.rate).unwrap_or(BACKOFF_CAP);
            b.next_slot = slot + gap.min(Duration::from_secs(3600));
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// A throttling answer arrived: halve the rate, at most once a second so that one burst of
    /// answers to requests already in flight counts once; never below 1/64 of the configured rate.
    pub fn throttled(&self) {
        let mut b = self.lock();
        let now = Instant::now();
        if b.last_cut
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            b.rate = (b.rate / 2.0).max(b.base / 64.0);
            b.last_cut = Some(now);
        }
    }

    /// A request succeeded: recover by 5 % of the configured rate, up to it.
    pub fn succeeded(&self) {
        let mut b = self.lock();
        if b.rate < b.base {
            b.rate = (b.rate + b.base / 20.0).min(b.base);
        }
    }

    /// The current rate in requests per second.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Applies a new configured rate (a reload); a throttled rate stays proportionally reduced.
    pub fn set_base(&self, requests_per_second: f64) {
        let mut b = self.lock();
        let ratio = b.rate / b.base;
        b.base = requests_per_second;
        b.rate = requests_per_second * ratio;
    }
}

/// Full-jitter exponential backoff for retry number `attempt` (0-based).
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

/// `d` with ±10 % jitter, so refreshes of digests added together drift apart.
pub fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + 0.2 * fastrand::f64())
}

struct Inner {
    targets: BTreeMap<String, Arc<TargetState>>,
    due: BTreeSet<(Instant, String)>,
    version: u64,
    last_credentials_error: Option<String>,
    unknown_statuses: HashSet<String>,
}

struct Shared {
    client: RwLock<SasClient>,
    polling: RwLock<PollingConfig>,
    limiter: RateLimiter,
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
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn polling(&self) -> PollingConfig {
        self.polling
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn client(&self) -> SasClient {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self) {
        // Stored under the lock, so two publishers cannot swap an older snapshot over a newer one.
        let mut inner = self.lock();
        inner.version += 1;
        self.store
            .publish(Snapshot::new(inner.version, &inner.targets));
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
    /// A scheduler over `targets`. Digests found in `restored` (the state file) start with their
    /// saved data and are due when their refresh interval since the saved fetch has passed; all
    /// others are due at once. Publishes the first snapshot.
    pub fn new(
        client: SasClient,
        polling: PollingConfig,
        targets: &[Target],
        restored: &HashMap<String, TargetState>,
        store: Arc<Store>,
        metrics: Arc<ExporterMetrics>,
    ) -> Self {
        let now = Instant::now();
        let mut map = BTreeMap::new();
        let mut due = BTreeSet::new();
        for t in targets {
            let (state, at) = initial_state(t, restored.get(&t.digest), &polling, now);
            map.insert(t.digest.clone(), Arc::new(state));
            due.insert((at, t.digest.clone()));
        }
        let shared = Arc::new(Shared {
            client: RwLock::new(client),
            limiter: RateLimiter::new(polling.requests_per_second),
            permits: Arc::new(Semaphore::new(polling.concurrency)),
            concurrency: Mutex::new(polling.concurrency),
            polling: RwLock::new(polling),
            metrics,
            store,
            inner: Mutex::new(Inner {
                targets: map,
                due,
                version: 0,
                last_credentials_error: None,
                unknown_statuses: HashSet::new(),
            }),
            wake: Notify::new(),
            dirty: Notify::new(),
        });
        shared.publish();
        Scheduler { shared }
    }

    /// The current request rate (lower than configured while recovering from throttling).
    pub fn current_rate(&self) -> f64 {
        self.shared.limiter.rate()
    }

    /// Applies a reloaded configuration: removed digests disappear from the next snapshot at
    /// once, added ones are due at once, unchanged ones keep their data and schedule (labels may
    /// change). Client, rate, concurrency and intervals take effect for the next request.
    pub fn reconfigure(&self, client: SasClient, polling: PollingConfig, targets: &[Target]) {
        let shared = &self.shared;
        *shared.client.write().unwrap_or_else(|p| p.into_inner()) = client;
        shared.limiter.set_base(polling.requests_per_second);
        {
            let mut current = shared.concurrency.lock().unwrap_or_else(|p| p.into_inner());
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
        *shared.polling.write().unwrap_or_else(|p| p.into_inner()) = polling.clone();

        let now = Instant::now();
        let mut inner = shared.lock();
        let wanted: HashMap<&str, &Target> =
            targets.iter().map(|t| (t.digest.as_str(), t)).collect();
        let removed: HashSet<String> = inner
            .targets
            .keys()
            .filter(|d| !wanted.contains_key(d.as_str()))
            .cloned()
            .collect();
        if !removed.is_empty() {
            inner.targets.retain(|d, _| !removed.contains(d));
            inner.due.retain(|(_, d)| !removed.contains(d));
        }
        for t in targets {
            match inner.targets.get(&t.digest) {
                Some(existing) => {
                    let fresh = TargetState::new(t, existing.refresh);
                    if fresh.labels != existing.labels {
                        let mut state = TargetState::clone(existing);
                        state.labels = fresh.labels;
                        inner.targets.insert(t.digest.clone(), Arc::new(state));
                    }
                }
                None => {
                    inner.targets.insert(
                        t.digest.clone(),
                        Arc::new(TargetState::new(t, polling.interval)),
                    );
                    inner.due.insert((now, t.digest.clone()));
                }
            }
        }
        drop(inner);
        shared.publish();
        shared.wake.notify_one();
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
            let (at, digest) = match next {
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
            if !self.shared.lock().due.remove(&(at, digest.clone())) {
                continue;
            }
            let permit = tokio::select! {
                p = Arc::clone(&self.shared.permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.wait() => break,
            };
            tokio::select! {
                _ = self.shared.limiter.acquire() => {}
                _ = shutdown.wait() => break,
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
    digest: String,
    permit: OwnedSemaphorePermit,
    mut shutdown: Shutdown,
) {
    let mut guard = PollGuard {
        shared: Arc::clone(&shared),
        digest: digest.clone(),
        armed: true,
    };
    let mut permit = Some(permit);
    let mut retries = 0u32;
    let mut nonce_retry_used = false;
    let outcome = loop {
        let held = match permit.take() {
            Some(p) => p,
            None => {
                let p = tokio::select! {
                    p = Arc::clone(&shared.permits).acquire_owned() => p,
                    _ = shutdown.wait() => return,
                };
                let Ok(p) = p else { return };
                tokio::select! {
                    _ = shared.limiter.acquire() => {}
                    _ = shutdown.wait() => return,
                }
                p
            }
        };
        let started = Instant::now();
        let client = shared.client();
        let result = client.describe_image_latest_scan_task(&digest).await;
        drop(held);
        let err = match result {
            Ok(r) => {
                shared
                    .metrics
                    .observe_request(ACTION, started.elapsed().as_secs_f64());
                shared.limiter.succeeded();
                break Ok(r);
            }
            Err(e) => e,
        };
        if let Some(code) = err.metric_code() {
            shared
                .metrics
                .observe_request(ACTION, started.elapsed().as_secs_f64());
            shared.metrics.observe_error(ACTION, code);
        }
        let wait = match err.class() {
            ErrorClass::Fatal => break Err(err),
            ErrorClass::NonceReused if !nonce_retry_used => {
                nonce_retry_used = true;
                Duration::ZERO
            }
            ErrorClass::NonceReused => break Err(err),
            ErrorClass::Throttled | ErrorClass::Retryable
                if retries < shared.polling().max_retries =>
            {
                if err.class() == ErrorClass::Throttled {
                    shared.limiter.throttled();
                }
                // A server may ask for any wait; more than the backoff cap would park the digest.
                let asked = err.retry_after().unwrap_or_default().min(BACKOFF_CAP);
                let wait = backoff(retries).max(asked);
                retries += 1;
                wait
            }
            ErrorClass::Throttled | ErrorClass::Retryable => {
                if err.class() == ErrorClass::Throttled {
                    shared.limiter.throttled();
                }
                break Err(err);
            }
        };
        tracing::debug!(%digest, error = %err, retry_in = ?wait, "retrying");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => return,
        }
    };
    guard.armed = false;
    record(&shared, &digest, outcome);
}

/// Puts a digest back on the schedule if its poll task ends without recording an outcome (a panic,
/// or an abort), so no digest is ever silently dropped from polling.
struct PollGuard {
    shared: Arc<Shared>,
    digest: String,
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
            inner
                .due
                .insert((Instant::now() + jittered(interval), self.digest.clone()));
        }
        drop(inner);
        self.shared.wake.notify_one();
    }
}

/// The refresh period that applies to a digest in this state.
fn refresh_interval(state: &TargetState, polling: &PollingConfig) -> Duration {
    if matches!(&state.data, Some(Some(t)) if t.status.is_active()) {
        polling.active_interval
    } else {
        polling.interval
    }
}

/// A target's first state and due time: restored from the state file when possible.
fn initial_state(
    target: &Target,
    restored: Option<&TargetState>,
    polling: &PollingConfig,
    now: Instant,
) -> (TargetState, Instant) {
    let mut state = TargetState::new(target, polling.interval);
    let Some(saved) = restored else {
        return (state, now);
    };
    state.data = saved.data.clone();
    state.last_success = saved.last_success;
    state.up = saved.up;
    state.last_error = saved.last_error.clone();
    state.refresh = refresh_interval(&state, polling);
    // Due when the saved fetch is one refresh interval old; the clock kept running while down.
    let age = saved
        .last_success
        .map_or(f64::INFINITY, |t| (unix_now() - t).max(0.0));
    let refresh = state.refresh.as_secs_f64();
    let wait = (refresh - age).clamp(0.0, refresh);
    (state, now + Duration::from_secs_f64(wait))
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
    match outcome {
        Ok(result) => {
            // Bounded: a misbehaving API must not grow this set without limit.
            if let Some(task) = &result.task
                && task.status == ScanStatus::Unknown
                && inner.unknown_statuses.len() < 1000
                && inner.unknown_statuses.insert(task.raw_status.clone())
            {
                tracing::warn!(%digest, raw_status = %task.raw_status, "unknown scan status; reported as UNKNOWN");
            }
            tracing::debug!(
                %digest,
                status = crate::metrics::state_of(result.task.as_ref()),
                request_id = result.request_id.as_deref().unwrap_or(""),
                tasks = result.tasks_in_response,
                "polled"
            );
            if inner.last_credentials_error.take().is_some() {
                tracing::info!("credentials work again; polling resumed");
            }
            state.data = Some(result.task);
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
                        tracing::error!(error = %e, "not polling: no valid credentials (logged once until it changes)");
                        inner.last_credentials_error = Some(text);
                    }
                }
                _ => tracing::warn!(%digest, error = %e, "poll failed; keeping the last good data"),
            }
            state.up = Some(false);
            state.last_error = Some(e.to_string());
        }
    }
    state.refresh = refresh_interval(&state, &shared.polling());
    let next = Instant::now() + jittered(state.refresh);
    inner.due.insert((next, digest.to_owned()));
    inner.targets.insert(digest.to_owned(), Arc::new(state));
    drop(inner);
    shared.wake.notify_one();
    shared.dirty.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        for attempt in 0..20 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(2u32.saturating_pow(attempt))
                .min(BACKOFF_CAP);
            for _ in 0..50 {
                assert!(backoff(attempt) <= ceiling);
            }
        }
        assert!((0..200).any(|_| backoff(10) > Duration::from_secs(30)));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = Duration::from_secs(100);
        for _ in 0..1000 {
            let j = jittered(d);
            assert!(j >= Duration::from_secs(90) && j <= Duration::from_secs(110));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_halves_and_recovers() {
        let l = RateLimiter::new(10.0);
        let start = Instant::now();
        for _ in 0..11 {
            l.acquire().await;
        }
        // 11 requests at 10/s: the first at once, the last 1 s later.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        l.throttled();
        l.throttled();
        assert_eq!(l.rate(), 5.0);
        tokio::time::advance(Duration::from_secs(1)).await;
        l.throttled();
        assert_eq!(l.rate(), 2.5);
        for _ in 0..100 {
            l.throttled();
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(l.rate(), 10.0 / 64.0);
        for _ in 0..19 {
            l.succeeded();
        }
        assert!(l.rate() < 10.0);
        l.succeeded();
        assert_eq!(l.rate(), 10.0);
    }
}
