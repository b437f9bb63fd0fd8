//! Temporary credentials that refresh themselves before they expire.
//!
//! A refresh starts 15 minutes before `Expiration` (as the Python and Java SDKs do), runs once for
//! all callers (single flight) and in the background, so polls keep using the current credentials
//! meanwhile. A failed refresh keeps the old credentials until they really expire and is retried
//! with exponential backoff. Only when nothing valid is left does a caller wait for a fetch.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, MutexGuard};

use super::provider::{
    BoxFuture, CredentialsError, CredentialsProvider, FailureKind, ProviderStatus,
};
use crate::aliyun::signing::Credentials;
use crate::backoff::Backoff;
use crate::clock::Clock;

/// How long before expiry a refresh starts.
pub const REFRESH_LEAD: Duration = Duration::from_secs(15 * 60);
/// Waits between failed refresh attempts: 1 s, doubling up to 5 minutes.
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5 * 60));

/// Something that can produce a fresh set of credentials (an STS call, a metadata request).
pub trait Fetcher: Send + Sync + fmt::Debug {
    /// Fetches new credentials.
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>>;
}

/// Wraps a [`Fetcher`] into a provider that caches and refreshes.
#[derive(Debug, Clone)]
pub struct RefreshingProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: &'static str,
    fetcher: Box<dyn Fetcher>,
    clock: Clock,
    state: Mutex<State>,
    flight: Arc<tokio::sync::Mutex<()>>,
    refreshes: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    current: Option<Arc<Credentials>>,
    failures: u32,
    next_attempt: Option<DateTime<Utc>>,
    last_error: Option<(String, FailureKind)>,
}

impl RefreshingProvider {
    /// A provider named `name` (for logs and metric labels) around `fetcher`.
    pub fn new(name: &'static str, fetcher: Box<dyn Fetcher>, clock: Clock) -> Self {
        RefreshingProvider {
            inner: Arc::new(Inner {
                name,
                fetcher,
                clock,
                state: Mutex::new(State::default()),
                flight: Arc::new(tokio::sync::Mutex::new(())),
                refreshes: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            }),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// True when the current credentials are inside the refresh window and no backoff holds.
    fn refresh_due(&self, now: DateTime<Utc>) -> bool {
        let st = self.lock();
        let Some(exp) = st.current.as_ref().and_then(|c| c.expiration) else {
            return st.current.is_none();
        };
        let lead = chrono::Duration::from_std(REFRESH_LEAD).unwrap_or_default();
        now >= exp - lead && st.next_attempt.is_none_or(|t| now >= t)
    }

    /// One fetch; updates the cache, the counters and the backoff.
    async fn fetch_and_store(&self) -> Result<Arc<Credentials>, CredentialsError> {
        match self.fetcher.fetch().await {
            Ok(creds) => {
                let creds = Arc::new(creds);
                self.refreshes.fetch_add(1, Relaxed);
                let mut st = self.lock();
                st.current = Some(Arc::clone(&creds));
                st.failures = 0;
                st.next_attempt = None;
                st.last_error = None;
                drop(st);
                tracing::info!(
                    provider = self.name,
                    access_key_id = %creds.access_key_id,
                    expiration = ?creds.expiration,
                    "credentials refreshed"
                );
                Ok(creds)
            }
            Err(e) => {
                self.errors.fetch_add(1, Relaxed);
                let now = self.clock.now();
                let mut st = self.lock();
                st.failures = st.failures.saturating_add(1);
                let wait = RETRY_BACKOFF.ceiling(st.failures - 1);
                st.next_attempt = Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
                st.last_error = Some((e.to_string(), e.kind()));
                let keeping = st.current.as_ref().and_then(|c| c.expiration);
                drop(st);
                tracing::warn!(
                    provider = self.name,
                    error = %e,
                    retry_in = ?wait,
                    keeping_until = ?keeping,
                    "credentials refresh failed"
                );
                Err(e)
            }
        }
    }
}

impl CredentialsProvider for RefreshingProvider {
    fn name(&self) -> &'static str {
        self.inner.name
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Arc<Credentials>, CredentialsError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let now = inner.clock.now();
            let current = inner.lock().current.clone();
            if let Some(c) = current.filter(|c| !c.is_expired(now)) {
                if inner.refresh_due(now)
                    && let Ok(guard) = Arc::clone(&inner.flight).try_lock_owned()
                {
                    let bg = Arc::clone(inner);
                    tokio::spawn(async move {
                        // Another caller may have refreshed between the check and the lock.
                        if bg.refresh_due(bg.clock.now()) {
                            let _ = bg.fetch_and_store().await;
                        }
                        drop(guard);
                    });
                }
                return Ok(c);
            }
            // Nothing valid: wait for the one fetch in flight, or make it.
            let _guard = inner.flight.lock().await;
            let now = inner.clock.now();
            if let Some(c) = inner.lock().current.clone().filter(|c| !c.is_expired(now)) {
                return Ok(c);
            }
            let (previous, backoff) = {
                let st = inner.lock();
                let backoff = st.next_attempt.filter(|t| now < *t).map(|t| {
                    let (last, kind) = st
                        .last_error
                        .clone()
                        .unwrap_or((String::new(), FailureKind::Transient));
                    (t, last, kind)
                });
                (st.current.clone(), backoff)
            };
            // Still backing off after a failure: answer without hammering the source.
            if let Some((until, last, kind)) = backoff {
                return Err(match previous.and_then(|p| p.expiration) {
                    Some(at) => CredentialsError::Expired {
                        provider: inner.name,
                        at,
                    },
                    None => CredentialsError::Source {
                        provider: inner.name,
                        message: format!("{last} (next attempt at {until})"),
                        kind,
                    },
                });
            }
            match inner.fetch_and_store().await {
                Ok(c) => Ok(c),
                Err(e) => Err(match previous.and_then(|p| p.expiration) {
                    Some(at) => CredentialsError::Expired {
                        provider: inner.name,
                        at,
                    },
                    None => e,
                }),
            }
        })
    }

    fn retry_in(&self) -> Option<Duration> {
        let next = self.inner.lock().next_attempt?;
        (next - self.inner.clock.now()).to_std().ok()
    }

    fn status(&self) -> ProviderStatus {
        ProviderStatus {
            refreshes: self.inner.refreshes.load(Relaxed),
            refresh_errors: self.inner.errors.load(Relaxed),
            expiration: self
                .inner
                .lock()
                .current
                .as_ref()
                .and_then(|c| c.expiration),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32};

    /// Issues credentials valid for one hour of the test clock; can be told to fail.
    #[derive(Debug)]
    struct FakeSts {
        clock: Clock,
        calls: AtomicU32,
        failing: AtomicBool,
        delay: Duration,
    }

    impl Fetcher for FakeSts {
        fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                let n = self.calls.fetch_add(1, Relaxed) + 1;
                if self.failing.load(Relaxed) {
                    return Err(CredentialsError::Source {
                        provider: "fake",
                        message: "STS is down".into(),
                        kind: FailureKind::Transient,
                    });
                }
                Ok(Credentials::new(
                    format!("STS.{n}"),
                    "secret",
                    Some("token".into()),
                    Some(self.clock.now() + chrono::Duration::hours(1)),
                ))
            })
        }
    }

    fn setup(delay: Duration) -> (RefreshingProvider, Arc<AtomicI64>, Arc<FakeSts>) {
        let offset = Arc::new(AtomicI64::new(0));
        let base = Utc::now();
        let o = Arc::clone(&offset);
        let clock = Clock::from_fn(move || base + chrono::Duration::seconds(o.load(Relaxed)));
        let sts = Arc::new(FakeSts {
            clock: clock.clone(),
            calls: AtomicU32::new(0),
            failing: AtomicBool::new(false),
            delay,
        });
        #[derive(Debug)]
        struct Shared(Arc<FakeSts>);
        impl Fetcher for Shared {
            fn fetch(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
                self.0.fetch()
            }
        }
        let p = RefreshingProvider::new("fake", Box::new(Shared(Arc::clone(&sts))), clock);
        (p, offset, sts)
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn refreshes_in_the_background_before_expiry_once_for_all_callers() {
        let (p, clock, sts) = setup(Duration::from_millis(30));
        let first = p.credentials().await.expect("first fetch");
        assert_eq!(first.access_key_id, "STS.1");
        // 44 minutes in: outside the 15-minute window, no refresh.
        clock.store(44 * 60, Relaxed);
        assert_eq!(
            p.credentials().await.expect("cached").access_key_id,
            "STS.1"
        );
        settle().await;
        assert_eq!(sts.calls.load(Relaxed), 1);
        // 46 minutes in: callers get the current credentials at once and one refresh runs.
        clock.store(46 * 60, Relaxed);
        let many = futures_join(&p, 10).await;
        assert!(many.iter().all(|c| c == "STS.1"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sts.calls.load(Relaxed), 2);
        assert_eq!(p.credentials().await.expect("fresh").access_key_id, "STS.2");
        let status = p.status();
        assert_eq!((status.refreshes, status.refresh_errors), (2, 0));
        assert_eq!(
            status.expiration,
            p.credentials().await.expect("fresh").expiration
        );
    }

    async fn futures_join(p: &RefreshingProvider, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let p = p.clone();
            set.spawn(async move { p.credentials().await.map(|c| c.access_key_id.clone()) });
        }
        while let Some(r) = set.join_next().await {
            out.push(r.expect("join").expect("creds"));
        }
        out
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_old_credentials_and_backs_off() {
        let (p, clock, sts) = setup(Duration::ZERO);
        p.credentials().await.expect("first");
        sts.failing.store(true, Relaxed);
        clock.store(50 * 60, Relaxed);
        assert_eq!(p.credentials().await.expect("old").access_key_id, "STS.1");
        settle().await;
        assert_eq!(sts.calls.load(Relaxed), 2);
        // Within the 1 s backoff nothing is retried.
        assert_eq!(p.credentials().await.expect("old").access_key_id, "STS.1");
        settle().await;
        assert_eq!(sts.calls.load(Relaxed), 2);
        clock.store(50 * 60 + 2, Relaxed);
        assert_eq!(p.credentials().await.expect("old").access_key_id, "STS.1");
        settle().await;
        assert_eq!(sts.calls.load(Relaxed), 3);
        assert_eq!(p.status().refresh_errors, 2);
        // Past expiry with STS still down: an error that says so, not stale credentials.
        clock.store(61 * 60, Relaxed);
        let e = p.credentials().await.expect_err("expired");
        assert!(
            matches!(
                e,
                CredentialsError::Expired {
                    provider: "fake",
                    ..
                }
            ),
            "{e}"
        );
        // STS recovers: the next call fetches inline.
        sts.failing.store(false, Relaxed);
        clock.store(70 * 60, Relaxed);
        let c = p.credentials().await.expect("recovered");
        assert!(c.access_key_id.starts_with("STS."));
        assert_eq!(p.status().refresh_errors, 3);
    }
}
