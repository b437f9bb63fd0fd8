//! What the Security Center simulator saw: counters per digest and outcome, and a traffic log of
//! every request.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// One request as received, for replay and independent verification in tests.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query, exactly as received.
    pub uri: String,
    /// Headers in arrival order (names lower-case).
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of the header `name` (lower-case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One entry of the traffic log.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// When the request arrived.
    pub at: Instant,
    /// Its digest, if it named one.
    pub digest: Option<String>,
    /// What the simulator did (see [`crate::Simulator::outcome_count`]).
    pub outcome: String,
}

/// Counters and the log behind them.
#[derive(Default)]
pub(crate) struct RequestLog {
    entries: Vec<LogEntry>,
    total: u64,
    per_digest: HashMap<String, u64>,
    per_outcome: BTreeMap<String, u64>,
}

impl RequestLog {
    /// Counts one request and appends it.
    pub(crate) fn record(&mut self, digest: Option<String>, outcome: String) {
        self.total += 1;
        if let Some(d) = &digest {
            *self.per_digest.entry(d.clone()).or_default() += 1;
        }
        *self.per_outcome.entry(outcome.clone()).or_default() += 1;
        self.entries.push(LogEntry {
            at: Instant::now(),
            digest,
            outcome,
        });
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn for_digest(&self, digest: &str) -> u64 {
        self.per_digest.get(digest).copied().unwrap_or(0)
    }

    pub(crate) fn for_outcome(&self, outcome: &str) -> u64 {
        self.per_outcome.get(outcome).copied().unwrap_or(0)
    }

    pub(crate) fn outcomes(&self) -> &BTreeMap<String, u64> {
        &self.per_outcome
    }

    /// Every entry, oldest first.
    pub(crate) fn entries(&self) -> Vec<LogEntry> {
        self.entries.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_the_log() {
        let mut log = RequestLog::default();
        for i in 0..10 {
            let outcome = if i % 2 == 0 { "ok" } else { "Throttling" };
            log.record(Some(format!("d{}", i % 3)), outcome.to_owned());
        }
        log.record(None, "MissingParameter".to_owned());
        assert_eq!(log.entries().len(), 11);
        assert_eq!(log.total(), 11);
        assert_eq!(
            (
                log.for_digest("d0"),
                log.for_digest("d1"),
                log.for_digest("d2")
            ),
            (4, 3, 3)
        );
        assert_eq!(log.for_outcome("ok"), 5);
        assert_eq!(log.for_outcome("MissingParameter"), 1);
        assert_eq!(log.outcomes().values().sum::<u64>(), 11);
    }
}
