//! What the Security Center simulator knows and has seen, behind one lock shared by the handle
//! and every connection.

use std::sync::{Mutex, MutexGuard};

use crate::auth::Nonces;
use crate::fault::FaultQueues;
use crate::log::{RecordedRequest, RequestLog};
use crate::scenario::Scenario;

/// Everything the Security Center simulator knows and has seen.
pub(crate) struct State {
    pub(crate) scenario: Scenario,
    pub(crate) faults: FaultQueues,
    pub(crate) nonces: Nonces,
    pub(crate) log: RequestLog,
    pub(crate) last_request: Option<RecordedRequest>,
    pub(crate) in_flight: usize,
    pub(crate) max_in_flight: usize,
}

/// The state behind one lock, shared by the handle and every connection.
pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(state: State) -> Self {
        Shared {
            state: Mutex::new(state),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a handler must not take the whole simulator down with a poisoned lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
