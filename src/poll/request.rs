//! One API request as every caller of an account makes it: a concurrency permit and a token of
//! the account's bucket per attempt, retries with backoff for what is retryable, the throttling
//! slow-down, and a count of each request that reached the API.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::aliyun::client::{ApiError, ErrorClass, SasClient};
use crate::backoff::API_RETRY as RETRY_BACKOFF;
use crate::poll::scheduler::Shared;
use crate::shutdown::Shutdown;

/// The longest `x-acs-retry-after` that is honoured.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

impl Shared {
    /// Calls `f` with the account's current client until it succeeds, fails for good, or its
    /// retries run out. The first attempt uses `permit` when one is given (its rate token
    /// already taken). `None` once shutdown fires; `what` names the call in debug logs.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        action: &'static str,
        what: &str,
        mut permit: Option<OwnedSemaphorePermit>,
        shutdown: &mut Shutdown,
        mut f: F,
    ) -> Option<Result<T, ApiError>>
    where
        F: FnMut(Arc<SasClient>) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut retries = 0u32;
        let mut nonce_retry_used = false;
        loop {
            let held = match permit.take() {
                Some(p) => p,
                None => self.slot(shutdown).await?,
            };
            let started = Instant::now();
            let result = f(self.client()).await;
            drop(held);
            let err = match result {
                Ok(r) => {
                    self.observe(action, started.elapsed(), None);
                    self.limiter.succeeded();
                    return Some(Ok(r));
                }
                Err(e) => e,
            };
            if let Some(code) = err.metric_code() {
                self.observe(action, started.elapsed(), Some(code));
            }
            let throttled = err.class() == ErrorClass::Throttled;
            if throttled {
                self.limiter.throttled();
            }
            let wait = match err.class() {
                ErrorClass::Fatal => return Some(Err(err)),
                ErrorClass::NonceReused if !nonce_retry_used => {
                    nonce_retry_used = true;
                    Duration::ZERO
                }
                ErrorClass::NonceReused => return Some(Err(err)),
                ErrorClass::Throttled | ErrorClass::Retryable
                    if retries < self.polling().max_retries =>
                {
                    // A server may ask for any wait; more than the backoff cap would park the call.
                    let asked = err.retry_after().unwrap_or_default().min(RETRY_AFTER_CAP);
                    let wait = RETRY_BACKOFF.full_jitter(retries).max(asked);
                    retries += 1;
                    wait
                }
                ErrorClass::Throttled | ErrorClass::Retryable => return Some(Err(err)),
            };
            tracing::debug!(account = %self.account, call = what, error = %err, retry_in = ?wait, "retrying");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait() => return None,
            }
        }
    }
}
