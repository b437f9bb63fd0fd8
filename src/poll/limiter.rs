//! The pacing token bucket in front of every API request. Its rate halves while throttling
//! answers arrive and then recovers step by step, so a throttled account is not hammered.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

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

    /// Waits for the next free slot. Slots are reserved on entry, so waiters go in order.
    pub async fn acquire(&self) {
        let slot = {
            let mut b = self.inner.lock();
            let now = Instant::now();
            let slot = b.next_slot.max(now);
            // The config bounds the rate; the cap only guards the arithmetic.
            let gap =
                Duration::try_from_secs_f64(1.0 / b.rate).unwrap_or(Duration::from_secs(3600));
            b.next_slot = slot + gap.min(Duration::from_secs(3600));
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// A throttling answer arrived: halve the rate, at most once a second so that one burst of
    /// answers to requests already in flight counts once; never below 1/64 of the configured rate.
    pub fn throttled(&self) {
        let mut b = self.inner.lock();
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
        let mut b = self.inner.lock();
        if b.rate < b.base {
            b.rate = (b.rate + b.base / 20.0).min(b.base);
        }
    }

    /// The current rate in requests per second.
    pub fn rate(&self) -> f64 {
        self.inner.lock().rate
    }

    /// Applies a new configured rate (a reload); a throttled rate stays proportionally reduced.
    pub fn set_base(&self, requests_per_second: f64) {
        let mut b = self.inner.lock();
        let ratio = b.rate / b.base;
        b.base = requests_per_second;
        b.rate = requests_per_second * ratio;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
