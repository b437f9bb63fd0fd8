//! The test-facing handle of the Security Center simulator: start it, change what digests answer
//! and what the listings hold, inject faults, and read back what it received.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tokio::net::TcpListener;

use crate::auth::Nonces;
use crate::fault::{Fault, FaultQueues, FaultScope};
use crate::instances::{ContainerInstance, ImageInstance, normalize_digest};
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

    /// Replaces every row `DescribeImageInstances` lists.
    pub fn set_images(&self, rows: Vec<ImageInstance>) {
        self.shared.lock().scenario.images = rows;
    }

    /// Replaces the image row with the same digest, namespace, name and tag in place, or lists
    /// it last.
    pub fn upsert_image(&self, row: ImageInstance) {
        let images = &mut self.shared.lock().scenario.images;
        match images.iter_mut().find(|r| r.key() == row.key()) {
            Some(existing) => *existing = row,
            None => images.push(row),
        }
    }

    /// Removes every image row of a digest (any case, with or without `sha256:`); returns how
    /// many there were.
    pub fn remove_images(&self, digest: &str) -> usize {
        let digest = normalize_digest(digest);
        let images = &mut self.shared.lock().scenario.images;
        let before = images.len();
        images.retain(|r| {
            r.digest.as_deref().map(normalize_digest).as_deref() != Some(digest.as_str())
        });
        before - images.len()
    }

    /// Replaces every row `DescribeContainerInstances` lists.
    pub fn set_containers(&self, rows: Vec<ContainerInstance>) {
        self.shared.lock().scenario.containers = rows;
    }

    /// Replaces the container row with the same cluster, namespace, pod and container ID in
    /// place, or lists it last.
    pub fn upsert_container(&self, row: ContainerInstance) {
        let containers = &mut self.shared.lock().scenario.containers;
        match containers.iter_mut().find(|r| r.key() == row.key()) {
            Some(existing) => *existing = row,
            None => containers.push(row),
        }
    }

    /// Removes every container row whose image has this digest; returns how many there were.
    pub fn remove_containers(&self, digest: &str) -> usize {
        let digest = normalize_digest(digest);
        let containers = &mut self.shared.lock().scenario.containers;
        let before = containers.len();
        containers.retain(|r| {
            r.image_digest.as_deref().map(normalize_digest).as_deref() != Some(digest.as_str())
        });
        before - containers.len()
    }

    /// The largest `PageSize` the listings accept (`None`: any); a larger one is refused with a
    /// parameter error.
    pub fn set_max_page_size(&self, max: Option<u32>) {
        self.shared.lock().scenario.max_page_size = max;
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

    /// Requests that named this action (whatever the outcome), e.g. `DescribeImageInstances`.
    pub fn requests_for_action(&self, action: &str) -> u64 {
        self.shared.lock().log.for_action(action)
    }

    /// Requests of this action with this outcome (see [`Simulator::outcome_count`]).
    pub fn outcome_count_for(&self, action: &str, outcome: &str) -> u64 {
        self.shared.lock().log.for_action_outcome(action, outcome)
    }

    /// Requests with this outcome, whatever their action: `ok`, an error code (`SignatureDoesNotMatch`,
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
        // An unsigned request names no action.
        assert!(log.iter().all(|e| e.action.is_none() && e.page.is_none()));
        assert_eq!(sim.last_request().map(|r| r.method).as_deref(), Some("GET"));
    }
}
