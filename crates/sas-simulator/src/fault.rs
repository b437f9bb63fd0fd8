//! Faults the Security Center simulator injects into requests that passed authentication, and
//! the per-scope queues they wait in.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// What a fault does to a request that passed authentication.
#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer normally (useful with a delay).
    None,
    /// An API error body with this status, `Code` and `Message`.
    Error {
        /// HTTP status.
        status: u16,
        /// Error `Code`.
        code: String,
        /// Error `Message`.
        message: String,
    },
    /// This status with this body verbatim (an empty body, HTML from a proxy, ...).
    Raw {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
    },
    /// A 200 whose body is not JSON.
    MalformedJson,
    /// A 200 whose body is `bytes` long; `chunked` omits `Content-Length` so only a streaming
    /// cap can stop it.
    Oversized {
        /// Body length.
        bytes: usize,
        /// Send without a length.
        chunked: bool,
    },
    /// Close the connection without answering.
    Drop,
    /// A 200 whose headers announce the whole answer's `Content-Length` but whose body stops
    /// half-way, after which the connection is closed: a connection reset mid-body.
    ResetMidBody,
    /// A 200 whose body never ends: the start of a task list, then `chunk` spaces every `every`,
    /// forever. Only the client's timeout or size cap can stop it; the simulator holds one chunk at
    /// a time and stops producing when the client goes away.
    Endless {
        /// Bytes per chunk.
        chunk: usize,
        /// Pause before each chunk.
        every: Duration,
    },
}

impl FaultAction {
    /// A slow body that never ends (1 KiB every 100 ms): only a timeout stops it.
    pub fn endless() -> Self {
        FaultAction::Endless {
            chunk: 1024,
            every: Duration::from_millis(100),
        }
    }

    /// The outcome a request answered this way is counted under.
    pub(crate) fn outcome(&self) -> String {
        match self {
            FaultAction::None => "ok".to_owned(),
            FaultAction::Error { code, .. } => code.clone(),
            FaultAction::Raw { status, .. } => format!("http_{status}"),
            FaultAction::MalformedJson => "malformed_json".to_owned(),
            FaultAction::Oversized { .. } => "oversized".to_owned(),
            FaultAction::Drop => "dropped".to_owned(),
            FaultAction::ResetMidBody => "reset_mid_body".to_owned(),
            FaultAction::Endless { .. } => "endless".to_owned(),
        }
    }
}

/// A fault: an optional delay, an action, an optional `x-acs-retry-after`, and how many requests
/// it applies to (`None` = until cleared).
#[derive(Clone, Debug)]
pub struct Fault {
    /// Wait this long before acting.
    pub delay: Option<Duration>,
    /// What to do.
    pub action: FaultAction,
    /// `x-acs-retry-after` in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// Requests left; `None` = unlimited.
    pub remaining: Option<u64>,
}

impl Fault {
    /// An API error (`code`, `status`) on every request.
    pub fn error(status: u16, code: &str) -> Self {
        Fault::action(FaultAction::Error {
            status,
            code: code.to_owned(),
            message: format!("simulated {code}"),
        })
    }

    /// Any action on every request.
    pub fn action(action: FaultAction) -> Self {
        Fault {
            delay: None,
            action,
            retry_after_ms: None,
            remaining: None,
        }
    }

    /// A delay before a normal answer.
    pub fn delay(d: Duration) -> Self {
        Fault {
            delay: Some(d),
            ..Fault::action(FaultAction::None)
        }
    }

    /// Limits the fault to the next `n` requests.
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Adds `x-acs-retry-after: ms`.
    pub fn retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }
}

/// Where a fault applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FaultScope {
    /// Every request that passed authentication, whatever its action.
    Global,
    /// `DescribeImageLatestScanTask` requests naming this bare lower-case digest.
    Digest(String),
    /// Every request of one action, e.g. `DescribeImageInstances`.
    Action(String),
    /// One page (`CurrentPage`, from 1) of a listing action.
    Page {
        /// The listing action.
        action: String,
        /// The page number.
        page: u32,
    },
}

impl FaultScope {
    /// One page of a listing action.
    pub fn page(action: &str, page: u32) -> Self {
        FaultScope::Page {
            action: action.to_owned(),
            page,
        }
    }
}

/// Queued faults per scope; within a scope they apply in the order they were added.
#[derive(Default)]
pub(crate) struct FaultQueues(HashMap<FaultScope, VecDeque<Fault>>);

impl FaultQueues {
    pub(crate) fn push(&mut self, scope: FaultScope, fault: Fault) {
        self.0.entry(scope).or_default().push_back(fault);
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// The fault for a request that falls in `scopes`, most specific first: the first scope
    /// with a fault queued gives it. A fault limited to a number of requests is used up by this
    /// call.
    pub(crate) fn take(&mut self, scopes: &[FaultScope]) -> Option<Fault> {
        for scope in scopes {
            let Some(queue) = self.0.get_mut(scope) else {
                continue;
            };
            let Some(front) = queue.front_mut() else {
                continue;
            };
            let fault = front.clone();
            match &mut front.remaining {
                Some(n) if *n <= 1 => {
                    queue.pop_front();
                }
                Some(n) => *n -= 1,
                None => {}
            }
            return Some(fault);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(f: &Fault) -> String {
        f.action.outcome()
    }

    fn scan(digest: &str) -> [FaultScope; 3] {
        [
            FaultScope::Digest(digest.into()),
            FaultScope::Action("DescribeImageLatestScanTask".into()),
            FaultScope::Global,
        ]
    }

    #[test]
    fn digest_faults_come_first_and_limited_ones_run_out() {
        let mut q = FaultQueues::default();
        q.push(FaultScope::Global, Fault::error(503, "ServiceUnavailable"));
        q.push(
            FaultScope::Digest("d".into()),
            Fault::error(400, "Throttling.User").times(2),
        );
        q.push(
            FaultScope::Digest("d".into()),
            Fault::action(FaultAction::Drop).times(1),
        );
        let seen: Vec<String> = (0..5)
            .filter_map(|_| q.take(&scan("d")))
            .map(|f| code(&f))
            .collect();
        assert_eq!(
            seen,
            [
                "Throttling.User",
                "Throttling.User",
                "dropped",
                "ServiceUnavailable",
                "ServiceUnavailable"
            ]
        );
        assert_eq!(
            q.take(&scan("other")).map(|f| code(&f)).as_deref(),
            Some("ServiceUnavailable")
        );
        q.clear();
        assert!(q.take(&scan("d")).is_none());
    }

    #[test]
    fn a_page_fault_hits_only_its_page_and_comes_before_broader_ones() {
        let mut q = FaultQueues::default();
        let action = "DescribeImageInstances";
        let page = |n| {
            [
                FaultScope::page(action, n),
                FaultScope::Action(action.into()),
                FaultScope::Global,
            ]
        };
        q.push(
            FaultScope::page(action, 3),
            Fault::error(503, "ServiceUnavailable").times(1),
        );
        assert!(q.take(&page(2)).is_none());
        assert!(q.take(&scan("d")).is_none());
        assert_eq!(
            q.take(&page(3)).map(|f| code(&f)).as_deref(),
            Some("ServiceUnavailable")
        );
        assert!(q.take(&page(3)).is_none());
        q.push(
            FaultScope::Action(action.into()),
            Fault::action(FaultAction::MalformedJson),
        );
        q.push(
            FaultScope::page(action, 3),
            Fault::action(FaultAction::Drop),
        );
        assert_eq!(
            q.take(&page(3)).map(|f| code(&f)).as_deref(),
            Some("dropped")
        );
        assert_eq!(
            q.take(&page(1)).map(|f| code(&f)).as_deref(),
            Some("malformed_json")
        );
        assert!(q.take(&scan("d")).is_none());
    }
}
