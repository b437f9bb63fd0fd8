//! The test-facing handle of the Security Center simulator: start it, change what digests answer,
//! inject faults, and read back what it received.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;

use crate::auth::Nonces;
use crate::fault::{Fault, FaultQueues, FaultScope};
use crate::keys::SimKey;
use crate::log::{LogEntry, RecordedRequest, RequestLog};
use crate::scenario::{DigestReply, Scenario};
use crate::server::{Server, serve};
use crate::service;
use crate::state::{Shared, State};

/// A running simulator; it stops when dropped.
pub struct Simulator {
    shared: Arc<Shared>,
    server: Server,
}

impl Simulator {
    /// Starts on an ephemeral loopback port.
    pub async fn start(scenario: Scenario) -> std::io::Result<Simulator> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), scenario).await
    }

    /// Starts on the given address.
    pub async fn start_on(addr: SocketAddr, scenario: Scenario) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared::new(State {
            log: RequestLog::new(scenario.log_capacity),
            scenario,
            faults: FaultQueues::default(),
            nonces: Nonces::default(),
            last_request: None,
            in_flight: 0,
            max_in_flight: 0,
        }));
        let handler_shared = Arc::clone(&shared);
        let server = serve(listener, move |req| {
            service::handle(Arc::clone(&handler_shared), req)
        })?;
        Ok(Simulator { shared, server })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The endpoint URL to configure the exporter with.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Replaces one digest's task list.
    pub fn set_tasks(&self, digest: &str, tasks: Vec<Value>) {
        self.set_reply(digest, DigestReply::Task(Value::Array(tasks)));
    }

    /// Replaces one digest's answer.
    pub fn set_reply(&self, digest: &str, reply: DigestReply) {
        self.shared
            .lock()
            .scenario
            .digests
            .insert(digest.to_owned(), reply);
    }

    /// Adds a key the simulator accepts (e.g. fresh STS credentials).
    pub fn add_key(&self, key: SimKey) {
        self.shared.lock().scenario.keys.push(key);
    }

    /// Queues a fault; faults of one scope apply in the order they were added.
    pub fn inject(&self, scope: FaultScope, fault: Fault) {
        self.shared.lock().faults.push(scope, fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Requests that named this digest (whatever the outcome).
    pub fn requests_for(&self, digest: &str) -> u64 {
        self.shared.lock().log.for_digest(digest)
    }

    /// Requests with this outcome: `ok`, an error code (`SignatureDoesNotMatch`,
    /// `Throttling.User`, ...), `http_<status>` for raw answers, `malformed_json`, `oversized`,
    /// `dropped`, `reset_mid_body`, `endless`.
    pub fn outcome_count(&self, outcome: &str) -> u64 {
        self.shared.lock().log.for_outcome(outcome)
    }

    /// Every outcome and its count.
    pub fn outcomes(&self) -> BTreeMap<String, u64> {
        self.shared.lock().log.outcomes().clone()
    }

    /// The most recent requests, oldest first: all of them until the scenario's `log_capacity`
    /// is reached, then only that many.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.lock().log.entries()
    }

    /// Total requests received, however many the log still holds.
    pub fn total_requests(&self) -> u64 {
        self.shared.lock().log.total()
    }

    /// The most requests ever handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.lock().max_in_flight
    }

    /// The most recent request as received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.lock().last_request.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_handle_reports_a_bounded_log_and_exact_counts() {
        let sim = Simulator::start(Scenario::default().with_log_capacity(3))
            .await
            .expect("start simulator");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        // Unsigned requests are refused, but still counted and logged.
        for _ in 0..5 {
            let resp = http
                .get(format!("{}/?Digest=sha256:ABC", sim.url()))
                .send()
                .await
                .expect("an answer");
            assert_eq!(resp.status().as_u16(), 400);
        }
        let log = sim.log();
        assert_eq!(log.len(), 3);
        assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(log.iter().all(|e| e.digest.as_deref() == Some("abc")));
        assert_eq!(sim.total_requests(), 5);
        assert_eq!(sim.requests_for("abc"), 5);
        assert_eq!(sim.outcome_count("MissingParameter"), 5);
        assert_eq!(sim.last_request().map(|r| r.method).as_deref(), Some("GET"));
    }
}
