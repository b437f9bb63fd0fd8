//! The state every simulated credential issuer (STS, metadata service) carries, and its start-up.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::clock::Clock;
use crate::response::SimBody;
use crate::server::{Server, bind_loopback, serve};
use crate::simulator::Simulator;

/// The state of a simulated credential issuer (STS, metadata service), with the clock that stamps
/// expirations and the Security Center simulator that learns the keys it issues.
pub(crate) struct IssuerState<S> {
    state: Mutex<S>,
    pub(crate) issue_to: Option<Arc<Simulator>>,
    pub(crate) clock: Clock,
}

impl<S: Send + 'static> IssuerState<S> {
    /// Serves `handler` on an ephemeral loopback port over this state.
    pub(crate) async fn start<F>(
        state: S,
        issue_to: Option<Arc<Simulator>>,
        clock: Clock,
        handler: fn(Arc<Self>, Request<Incoming>) -> F,
    ) -> std::io::Result<(Arc<Self>, Server)>
    where
        F: Future<Output = Result<Response<SimBody>, Infallible>> + Send + 'static,
    {
        let shared = Arc::new(IssuerState {
            state: Mutex::new(state),
            issue_to,
            clock,
        });
        let for_handler = Arc::clone(&shared);
        let server = serve(bind_loopback().await?, move |req| {
            handler(Arc::clone(&for_handler), req)
        })?;
        Ok((shared, server))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, S> {
        // A panic in a handler must not take the whole simulator down with a poisoned lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
