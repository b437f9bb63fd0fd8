//! What the Security Center simulator saw: exact counters per action, digest and outcome, and a
//! traffic log of the most recent requests, bounded so that a simulator serving a long `--demo` run does
//! not grow without limit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

/// How many of the most recent requests the traffic log keeps unless the scenario says otherwise.
pub const DEFAULT_LOG_CAPACITY: usize = 10_000;

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

/// What a request was about, as far as it said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Subject {
    pub(crate) action: Option<String>,
    pub(crate) digest: Option<String>,
    pub(crate) page: Option<u32>,
}

/// One entry of the traffic log.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// When the request arrived.
    pub at: Instant,
    /// The action it named (`Action` or `x-acs-action`), if any.
    pub action: Option<String>,
    /// Its digest, if it named one.
    pub digest: Option<String>,
    /// The page a listing request asked for (`CurrentPage`, 1 when absent).
    pub page: Option<u32>,
    /// What the simulator did (see [`crate::Simulator::outcome_count`]).
    pub outcome: String,
}

/// Counters that never forget and a log that keeps only its last `capacity` entries.
pub(crate) struct RequestLog {
    capacity: usize,
    entries: VecDeque<LogEntry>,
    total: u64,
    per_action: HashMap<String, u64>,
    per_digest: HashMap<String, u64>,
    per_outcome: BTreeMap<String, u64>,
    per_action_outcome: HashMap<(String, String), u64>,
}

impl RequestLog {
    pub(crate) fn new(capacity: usize) -> Self {
        RequestLog {
            capacity,
            entries: VecDeque::new(),
            total: 0,
            per_action: HashMap::new(),
            per_digest: HashMap::new(),
            per_outcome: BTreeMap::new(),
            per_action_outcome: HashMap::new(),
        }
    }

    /// Counts one request and appends it, dropping the oldest entry once the log is full.
    pub(crate) fn record(&mut self, subject: Subject, outcome: String) {
        let Subject {
            action,
            digest,
            page,
        } = subject;
        self.total += 1;
        if let Some(a) = &action {
            *self.per_action.entry(a.clone()).or_default() += 1;
            *self
                .per_action_outcome
                .entry((a.clone(), outcome.clone()))
                .or_default() += 1;
        }
        if let Some(d) = &digest {
            *self.per_digest.entry(d.clone()).or_default() += 1;
        }
        *self.per_outcome.entry(outcome.clone()).or_default() += 1;
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(LogEntry {
            at: Instant::now(),
            action,
            digest,
            page,
            outcome,
        });
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn for_action(&self, action: &str) -> u64 {
        self.per_action.get(action).copied().unwrap_or(0)
    }

    pub(crate) fn for_action_outcome(&self, action: &str, outcome: &str) -> u64 {
        self.per_action_outcome
            .get(&(action.to_owned(), outcome.to_owned()))
            .copied()
            .unwrap_or(0)
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

    /// The retained entries, oldest first.
    pub(crate) fn entries(&self) -> Vec<LogEntry> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(digest: &str) -> Subject {
        Subject {
            action: Some("DescribeImageLatestScanTask".to_owned()),
            digest: Some(digest.to_owned()),
            page: None,
        }
    }

    #[test]
    fn the_log_keeps_the_newest_entries_and_the_counters_stay_exact() {
        let mut log = RequestLog::new(3);
        for i in 0..10 {
            let outcome = if i % 2 == 0 { "ok" } else { "Throttling" };
            log.record(scan(&format!("d{}", i % 3)), outcome.to_owned());
        }
        log.record(Subject::default(), "MissingParameter".to_owned());
        let kept: Vec<(Option<String>, String)> = log
            .entries()
            .into_iter()
            .map(|e| (e.digest, e.outcome))
            .collect();
        assert_eq!(
            kept,
            [
                (Some("d2".to_owned()), "ok".to_owned()),
                (Some("d0".to_owned()), "Throttling".to_owned()),
                (None, "MissingParameter".to_owned()),
            ]
        );
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
        assert_eq!(log.for_outcome("Throttling"), 5);
        assert_eq!(log.for_outcome("MissingParameter"), 1);
        assert_eq!(log.outcomes().values().sum::<u64>(), 11);
        assert_eq!(log.for_action("DescribeImageLatestScanTask"), 10);
        assert_eq!(
            log.for_action_outcome("DescribeImageLatestScanTask", "Throttling"),
            5
        );
    }

    #[test]
    fn listing_requests_count_per_action_and_log_their_page() {
        let mut log = RequestLog::new(10);
        for page in 1..=3 {
            let subject = Subject {
                action: Some("DescribeImageInstances".to_owned()),
                digest: None,
                page: Some(page),
            };
            log.record(subject, "ok".to_owned());
        }
        log.record(scan("d"), "ok".to_owned());
        assert_eq!(log.for_action("DescribeImageInstances"), 3);
        assert_eq!(log.for_action("DescribeImageLatestScanTask"), 1);
        assert_eq!(log.for_action("DescribeContainerInstances"), 0);
        assert_eq!(log.for_action_outcome("DescribeImageInstances", "ok"), 3);
        assert_eq!(log.for_outcome("ok"), 4);
        let pages: Vec<Option<u32>> = log.entries().iter().map(|e| e.page).collect();
        assert_eq!(pages, [Some(1), Some(2), Some(3), None]);
        assert_eq!(
            log.entries()[0].action.as_deref(),
            Some("DescribeImageInstances")
        );
    }

    #[test]
    fn the_default_bound_holds_over_a_long_run() {
        let mut log = RequestLog::new(DEFAULT_LOG_CAPACITY);
        let n = DEFAULT_LOG_CAPACITY as u64 * 3 + 7;
        for _ in 0..n {
            log.record(scan("d"), "ok".to_owned());
        }
        assert_eq!(log.entries().len(), DEFAULT_LOG_CAPACITY);
        assert_eq!(log.total(), n);
        assert_eq!(log.for_digest("d"), n);
    }

    #[test]
    fn a_zero_capacity_log_only_counts() {
        let mut log = RequestLog::new(0);
        log.record(scan("d"), "ok".to_owned());
        assert!(log.entries().is_empty());
        assert_eq!(log.total(), 1);
    }
}
