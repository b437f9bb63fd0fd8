//! When a digest is due: its refresh period (active or ended scan), its first due time after a
//! restart, and the wait after failed polls.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{API_RETRY as RETRY_BACKOFF, jittered};
use crate::clock::unix_now;
use crate::config::PollingConfig;
use crate::poll::store::TargetState;
use crate::telemetry::Trigger;

/// The refresh period that applies to a digest in this state.
pub(crate) fn refresh_interval(state: &TargetState, polling: &PollingConfig) -> Duration {
    if is_active(state) {
        polling.active_interval
    } else {
        polling.interval
    }
}

pub(crate) fn is_active(state: &TargetState) -> bool {
    state.data.task().is_some_and(|t| t.status.is_active())
}

/// A target's first state, due time and reason: `fresh` with the saved data of `restored`
/// when there is some (due once the saved fetch is one refresh interval old), else due now.
pub(crate) fn initial_state(
    fresh: TargetState,
    restored: Option<TargetState>,
    polling: &PollingConfig,
    now: Instant,
) -> (TargetState, Instant, Trigger) {
    let mut state = fresh;
    let Some(saved) = restored else {
        return (state, now, Trigger::New);
    };
    state.data = saved.data;
    state.last_success = saved.last_success;
    state.up = saved.up;
    state.last_error = saved.last_error;
    state.refresh = refresh_interval(&state, polling);
    if state.last_success.is_none() {
        return (state, now, Trigger::New);
    }
    // Due when the saved fetch is one refresh interval old; the clock kept running while down.
    let age = saved
        .last_success
        .map_or(f64::INFINITY, |t| (unix_now() - t).max(0.0));
    let refresh = state.refresh.as_secs_f64();
    let wait = (refresh - age).clamp(0.0, refresh);
    let why = if is_active(&state) {
        Trigger::Active
    } else {
        Trigger::Interval
    };
    (state, now + Duration::from_secs_f64(wait), why)
}

/// When a digest whose retries ran out is polled again: after the larger of `active_interval`
/// and the backoff for `failures` consecutive failures, never later than `interval`.
pub(crate) fn failed_poll_wait(failures: u32, polling: &PollingConfig) -> Duration {
    let backoff = RETRY_BACKOFF.ceiling(failures.saturating_sub(1));
    jittered(backoff.max(polling.active_interval)).min(polling.interval)
}
