//! The one exponential backoff of the exporter (API retries, credential refreshes) and the jitter
//! that keeps refreshes from synchronising.

use std::time::Duration;

/// Exponential backoff: `base · 2^attempt`, never above `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// A backoff starting at `base` and doubling up to `cap`.
    pub(crate) const fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap }
    }

    /// The wait before retry number `attempt` (0-based), without jitter.
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.cap)
    }

    /// Full jitter: a uniform wait between zero and [`Backoff::ceiling`], so that many clients
    /// retrying after one outage spread out instead of arriving together.
    pub(crate) fn full_jitter(&self, attempt: u32) -> Duration {
        self.ceiling(attempt).mul_f64(fastrand::f64())
    }
}

/// Retries of retryable API errors (and the failure backoff of a digest): full jitter from 1 s,
/// doubling up to 60 s.
pub(crate) const API_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// `d` with ±10 % jitter, so refreshes of digests added together drift apart.
pub(crate) fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

    #[test]
    fn full_jitter_stays_under_the_ceiling_and_reaches_high() {
        for attempt in 0..20 {
            let ceiling = API.ceiling(attempt);
            assert!(ceiling <= Duration::from_secs(60));
            for _ in 0..50 {
                assert!(API.full_jitter(attempt) <= ceiling);
            }
        }
        assert_eq!(API.ceiling(0), Duration::from_secs(1));
        assert_eq!(API.ceiling(3), Duration::from_secs(8));
        assert_eq!(API.ceiling(31), Duration::from_secs(60));
        assert!((0..200).any(|_| API.full_jitter(10) > Duration::from_secs(30)));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = Duration::from_secs(100);
        for _ in 0..1000 {
            let j = jittered(d);
            assert!(j >= Duration::from_secs(90) && j <= Duration::from_secs(110));
        }
    }
}
