//! Demo mode: the simulator with a dozen synthetic digests whose scans keep moving
//! through their lifecycle, so a newcomer sees live metrics without an Alibaba Cloud account.
//!
//! The story is a pure function of the (scaled) time since the demo started; a background task
//! only replays it into the simulator once a second. That keeps the story testable without a
//! running server or a real clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{
    AccountConfig, Config, CredentialsConfig, DEFAULT_PAGE_SIZE, DiscoveryConfig, Endpoint,
    ListingConfig, Location, PollingConfig, SasConfig, Scanned, SignatureVersion, SourceKind,
    Target,
};

mod listings;
use sas_simulator::{
    Fault, FaultScope, SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, Scenario, SimKey, Simulator,
};

// The API's local-time strings are in China Standard Time; evaluated at compile time so a bad
// constant fails the build rather than the demo.
const DEMO_TIMEZONE: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(tz) => tz,
    None => panic!("invalid demo timezone"),
};

// One length for every digest's cycle, so the stagger chosen below holds for ever instead of
// drifting into a moment where every scan has ended (or none has).
const CYCLE_SECS: i64 = 240;

// Long enough for the exporter (active_interval 5s) to see `up` drop and recover, short enough that
// a newcomer watching for a few minutes catches it.
const DENY_PERIOD_SECS: i64 = 300;
const DENY_FROM_SECS: i64 = 120;
const DENY_FOR_SECS: i64 = 60;

const TICK: Duration = Duration::from_secs(1);

// Real task ids are seven-digit auto-increment numbers; staying in that range keeps the demo's
// `id` label looking like the real thing.
const FIRST_TASK_ID: i64 = 9_755_000;

const ACTIVE_STATUSES: [&str; 4] = ["START", "MESSAGE_SEND", "PRE_ANALYZER", "PROCESSING"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    Fail,
    Timeout,
    // Stops before PROCESSING in a status the API documentation does not list.
    Paused,
    NeverScanned,
}

impl Outcome {
    fn final_status(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Fail => "FAIL",
            // The API's own spelling; the exporter must map it to TIMEOUT.
            Outcome::Timeout => "TIMOUT",
            Outcome::Paused => "PAUSED_BY_OPERATOR",
            Outcome::NeverScanned => "",
        }
    }

    fn is_terminal(self) -> bool {
        matches!(self, Outcome::Success | Outcome::Fail | Outcome::Timeout)
    }
}

struct Story {
    name: &'static str,
    image: &'static str,
    team: &'static str,
    outcome: Outcome,
    // Answers NoPermission for part of every DENY_PERIOD_SECS.
    denied: bool,
    source: &'static str,
    // Seconds spent in START, MESSAGE_SEND, PRE_ANALYZER and PROCESSING; the rest of the cycle
    // is spent in the final status. A zero skips the phase.
    phases: [i64; 4],
    // How far into its cycle the digest is when the demo starts: the stagger.
    offset: i64,
    story: &'static str,
}

// Offsets are picked so that at start-up four scans run, six have ended (success, both failures,
// the timeout) and the paused one shows its odd status: every panel has something on it at once.
const STORIES: [Story; 12] = [
    Story {
        name: "cart",
        image: "registry.example.com/shop/cart:1.4.2",
        team: "payments",
        outcome: Outcome::Success,
        denied: false,
        source: "openapi",
        phases: [10, 15, 20, 50],
        offset: 60,
        story: "scans succeed; starts in PROCESSING",
    },
    Story {
        name: "checkout",
        image: "registry.example.com/shop/checkout:2.0.1",
        team: "payments",
        outcome: Outcome::Success,
        denied: false,
        source: "console_batch",
        phases: [12, 10, 25, 45],
        offset: 150,
        story: "scans succeed; started from the console",
    },
    Story {
        name: "payment-gateway",
        image: "registry.example.com/payments/gateway:3.7.0",
        team: "payments",
        outcome: Outcome::Fail,
        denied: false,
        source: "openapi",
        phases: [10, 20, 15, 35],
        offset: 100,
        story: "scans fail (FAIL)",
    },
    Story {
        name: "search-api",
        image: "registry.example.com/search/api:5.2.0",
        team: "search",
        outcome: Outcome::Success,
        denied: false,
        source: "openapi",
        phases: [15, 10, 30, 55],
        offset: 20,
        story: "scans succeed; starts in MESSAGE_SEND",
    },
    Story {
        name: "indexer",
        image: "registry.example.com/search/indexer:5.1.9",
        team: "search",
        outcome: Outcome::Timeout,
        denied: false,
        source: "console_batch",
        phases: [10, 15, 20, 60],
        offset: 130,
        story: "scans time out (the API says TIMOUT, the exporter reports TIMEOUT)",
    },
    Story {
        name: "ingress",
        image: "registry.example.com/platform/ingress-nginx:1.11.3",
        team: "platform",
        outcome: Outcome::Success,
        denied: false,
        source: "openapi",
        phases: [10, 12, 18, 40],
        offset: 5,
        story: "scans succeed; starts in START",
    },
    Story {
        name: "auth",
        image: "registry.example.com/platform/auth:0.9.14",
        team: "platform",
        outcome: Outcome::Success,
        denied: true,
        source: "openapi",
        phases: [10, 15, 25, 50],
        offset: 200,
        story: "scans succeed, but the API denies access (NoPermission) for a minute every five minutes, so up drops to 0 and recovers",
    },
    Story {
        name: "catalog",
        image: "registry.example.com/shop/catalog:1.18.0",
        team: "shop",
        outcome: Outcome::Fail,
        denied: false,
        source: "console_batch",
        phases: [12, 15, 20, 30],
        offset: 220,
        story: "scans fail (FAIL); started from the console",
    },
    Story {
        name: "recommender",
        image: "registry.example.com/search/recommender:0.3.2",
        team: "search",
        outcome: Outcome::Paused,
        denied: false,
        source: "openapi",
        phases: [10, 15, 25, 0],
        offset: 90,
        story: "scans stop in an undocumented status, PAUSED_BY_OPERATOR (reported as UNKNOWN)",
    },
    Story {
        name: "legacy-batch",
        image: "registry.example.com/data/legacy-batch:2016.4",
        team: "data",
        outcome: Outcome::NeverScanned,
        denied: false,
        source: "openapi",
        phases: [0, 0, 0, 0],
        offset: 0,
        story: "never scanned: the API returns an empty task list (status NONE)",
    },
    Story {
        name: "notifications",
        image: "registry.example.com/platform/notifications:4.0.0",
        team: "platform",
        outcome: Outcome::Success,
        denied: false,
        source: "openapi",
        phases: [10, 10, 20, 45],
        offset: 35,
        story: "scans succeed; starts in PRE_ANALYZER",
    },
    Story {
        name: "reporting",
        image: "registry.example.com/data/reporting:2.3.5",
        team: "data",
        outcome: Outcome::Success,
        denied: false,
        source: "console_batch",
        phases: [15, 15, 25, 60],
        offset: 180,
        story: "scans succeed; started from the console",
    },
];

/// One demo digest: what it is labelled with and what its scans do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoTarget {
    /// Bare lower-case hex digest.
    pub digest: String,
    /// The `image` and `team` labels the demo config puts on it.
    pub labels: BTreeMap<String, String>,
    /// What its scans do, in one sentence.
    pub story: &'static str,
}

/// The demo's digests with their labels and their scripted story, for the README and tests.
pub fn demo_targets() -> Vec<DemoTarget> {
    STORIES
        .iter()
        .map(|s| DemoTarget {
            digest: demo_digest(s.name),
            labels: BTreeMap::from([
                ("image".to_owned(), s.image.to_owned()),
                ("team".to_owned(), s.team.to_owned()),
            ]),
            story: s.story,
        })
        .collect()
}

/// The stories as the demo's listings show them.
fn listed_stories() -> Vec<listings::Listed> {
    STORIES
        .iter()
        .map(|s| listings::Listed {
            digest: demo_digest(s.name),
            image: s.image,
            team: s.team,
        })
        .collect()
}

fn demo_digest(name: &str) -> String {
    hex::encode(Sha256::digest(format!("demo-{name}").as_bytes()))
}

fn demo_task_id(name: &str, cycle: i64) -> String {
    let full = hex::encode(Sha256::digest(
        format!("demo-task-{name}-{cycle}").as_bytes(),
    ));
    full[..32].to_owned()
}

fn api_time(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| {
        t.with_timezone(&DEMO_TIMEZONE)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    })
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The latest scan task of demo target `target_index` once `scaled_elapsed` of story time has
/// passed since `start_epoch_ms`; `None` when the digest has no task.
fn task_at(target_index: usize, scaled_elapsed: Duration, start_epoch_ms: i64) -> Option<Value> {
    let story = STORIES.get(target_index)?;
    if story.outcome == Outcome::NeverScanned {
        return None;
    }
    let cycle_ms = CYCLE_SECS * 1000;
    let offset_ms = story.offset * 1000;
    let t = millis(scaled_elapsed).saturating_add(offset_ms);
    let cycle = t / cycle_ms;
    let pos = t % cycle_ms;
    // The task was started `pos` ago, so timestamps at start-up lie in the recent past.
    let start_ms = start_epoch_ms
        .saturating_sub(offset_ms)
        .saturating_add(cycle * cycle_ms);

    let mut phase_start = 0;
    let mut current = None;
    for (status, secs) in ACTIVE_STATUSES.iter().zip(story.phases) {
        let end = phase_start + secs * 1000;
        if pos < end {
            current = Some(*status);
            break;
        }
        phase_start = end;
    }
    let changed_ms = start_ms.saturating_add(phase_start);
    let (status, ended) = match current {
        Some(status) => (status, false),
        None => (story.outcome.final_status(), story.outcome.is_terminal()),
    };

    let mut task = json!({
        "Status": status,
        "Modified": api_time(changed_ms),
        "Create": api_time(start_ms),
        "StartTime": start_ms,
        "Finish": if ended { 1 } else { 0 },
        "Source": story.source,
        "TaskType": "IMAGE_SCAN",
        "Name": "IMAGE_SCAN",
        "TaskId": demo_task_id(story.name, cycle),
        "Target": demo_digest(story.name),
        "Id": task_number(target_index, cycle),
        "TargetType": "IMAGE",
    });
    if ended && let Some(fields) = task.as_object_mut() {
        // The API sends FinishTime only for finished tasks.
        fields.insert("FinishTime".to_owned(), json!(changed_ms));
    }
    Some(task)
}

// Ids grow with every new task and never collide between digests, as the API's do.
fn task_number(target_index: usize, cycle: i64) -> i64 {
    let n = STORIES.len() as i64;
    FIRST_TASK_ID
        .saturating_add(cycle.saturating_mul(n))
        .saturating_add(target_index as i64)
}

/// Whether demo target `target_index` answers NoPermission at this point of the story.
fn denied_at(target_index: usize, scaled_elapsed: Duration) -> bool {
    let Some(story) = STORIES.get(target_index) else {
        return false;
    };
    let pos = (millis(scaled_elapsed) / 1000) % DENY_PERIOD_SECS;
    story.denied && (DENY_FROM_SECS..DENY_FROM_SECS + DENY_FOR_SECS).contains(&pos)
}

fn scale(elapsed: Duration, speed: f64) -> Duration {
    Duration::try_from_secs_f64(elapsed.as_secs_f64() * speed).unwrap_or(Duration::MAX)
}

/// Pushes the story at `scaled` into the simulator; `denied` is the set of digests whose
/// NoPermission fault is currently injected, updated in place.
fn apply(
    simulator: &Simulator,
    scaled: Duration,
    start_epoch_ms: i64,
    denied: &mut BTreeSet<String>,
) {
    let mut want = BTreeSet::new();
    for (i, story) in STORIES.iter().enumerate() {
        let digest = demo_digest(story.name);
        simulator.set_tasks(
            &digest,
            task_at(i, scaled, start_epoch_ms).into_iter().collect(),
        );
        if denied_at(i, scaled) {
            want.insert(digest);
        }
    }
    if want != *denied {
        // The simulator can only drop every fault at once; the demo is the only one injecting.
        simulator.clear_faults();
        for digest in &want {
            simulator.inject(
                FaultScope::Digest(digest.clone()),
                Fault::error(403, "NoPermission"),
            );
        }
        *denied = want;
    }
}

/// The demo's second account reaches its own simulator with a key of its own.
const INTL_KEY_ID: &str = "LTAIsimulator0000intl";
/// Not a real secret: it only opens the demo's second simulator.
const INTL_KEY_SECRET: &str = "simulator-intl-secret-not-for-production";
/// The stories the second account watches too: the same digests pushed to a registry there.
const INTL_STORIES: [usize; 4] = [0, 3, 6, 9];

/// A running demo: one simulator per account plus the background task that moves the scans along.
pub struct Demo {
    /// The simulator of the `prod` account (China site); shared with the driver.
    pub simulator: Arc<Simulator>,
    /// The simulator of the `intl` account (international site), with a key of its own.
    pub intl: Arc<Simulator>,
    driver: JoinHandle<()>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Demo {
    /// Starts both simulators on ephemeral 127.0.0.1 ports and the lifecycle driver.
    pub async fn start() -> std::io::Result<Demo> {
        Self::start_with_speed(1.0).await
    }

    /// Same with a time-scale factor (tests use e.g. 60.0 so minutes of lifecycle pass in seconds).
    pub async fn start_with_speed(speed: f64) -> std::io::Result<Demo> {
        if !(speed.is_finite() && speed > 0.0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("demo speed must be a positive number, got {speed}"),
            ));
        }
        let simulator = Arc::new(Simulator::start(Scenario::default()).await?);
        let intl = Arc::new(Simulator::start(Scenario::default()).await?);
        intl.add_key(SimKey {
            id: INTL_KEY_ID.to_owned(),
            secret: INTL_KEY_SECRET.to_owned(),
            security_token: None,
        });
        let started = Instant::now();
        let start_epoch_ms = chrono::Utc::now().timestamp_millis();
        let mut denied = BTreeSet::new();
        let mut intl_denied = BTreeSet::new();
        // Filled before returning, so the very first request already sees the story.
        apply(&simulator, Duration::ZERO, start_epoch_ms, &mut denied);
        let listed = Arc::new(listed_stories());
        listings::apply(&simulator, &listed, Duration::ZERO);
        apply(&intl, Duration::ZERO, start_epoch_ms, &mut intl_denied);
        let (driven, driven_intl) = (Arc::clone(&simulator), Arc::clone(&intl));
        let driver = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let scaled = scale(started.elapsed(), speed);
                apply(&driven, scaled, start_epoch_ms, &mut denied);
                listings::apply(&driven, &listed, scaled);
                apply(&driven_intl, scaled, start_epoch_ms, &mut intl_denied);
            }
        });
        Ok(Demo {
            simulator,
            intl,
            driver,
        })
    }

    /// The exporter configuration: two accounts, each pointing at its own simulator: `prod`
    /// (China site) discovers every demo image from Security Center's image and container
    /// listings, `intl` (international site) watches a written list of four of them.
    pub fn config(&self) -> Config {
        let target = |(i, t): (usize, DemoTarget), account: &str| Target {
            digest: t.digest,
            account: account.to_owned(),
            labels: t.labels,
            location: Location {
                file: "<demo>".to_owned(),
                line: i + 1,
                column: 1,
            },
        };
        // `prod` finds its images in Security Center's listings; `intl` keeps a written list.
        let targets: Vec<Target> = demo_targets()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| INTL_STORIES.contains(i))
            .map(|t| target(t, "intl"))
            .collect();
        let source = |line: usize, kind: SourceKind, keep_for: u64| DiscoveryConfig {
            account: "prod".to_owned(),
            kind,
            labels: BTreeMap::new(),
            keep_for: Duration::from_secs(keep_for),
            location: Location {
                file: "<demo>".to_owned(),
                line,
                column: 1,
            },
        };
        let discovery = vec![
            source(
                1,
                SourceKind::SasImages {
                    // Small pages, so the listing visibly takes several requests.
                    listing: ListingConfig {
                        refresh: Duration::from_secs(10),
                        page_size: 5,
                        filters: Vec::new(),
                    },
                    scanned: Scanned::Any,
                },
                120,
            ),
            source(
                2,
                SourceKind::SasContainers {
                    listing: ListingConfig {
                        refresh: Duration::from_secs(30),
                        page_size: DEFAULT_PAGE_SIZE,
                        filters: Vec::new(),
                    },
                },
                120,
            ),
        ];
        // Faster than production so the demo visibly moves; still well inside the rate limit.
        // With discovery, `interval` is only the safety net: changes come from the listing.
        let polling = PollingConfig {
            interval: Duration::from_secs(600),
            active_interval: Duration::from_secs(5),
            concurrency: 4,
            requests_per_second: 5.0,
            max_retries: 3,
        };
        let account = |name: &str, region: &str, sim: &Simulator, id: &str, secret: &str| {
            AccountConfig {
                sas: SasConfig {
                    region: region.to_owned(),
                    // The simulators bind 127.0.0.1, where plain http is a valid endpoint.
                    endpoint: sim.url().parse::<Endpoint>().ok(),
                    signature_version: SignatureVersion::V3,
                    timeout: Duration::from_secs(5),
                    timezone: DEMO_TIMEZONE,
                },
                credentials: Some(CredentialsConfig {
                    access_key_id: Some(id.to_owned()),
                    access_key_secret: Some(SecretString::from(secret)),
                    ..CredentialsConfig::default()
                }),
                ..AccountConfig::new(name, &polling)
            }
        };
        Config {
            accounts: vec![
                account(
                    "prod",
                    "cn-hangzhou",
                    &self.simulator,
                    SIM_ACCESS_KEY_ID,
                    SIM_ACCESS_KEY_SECRET,
                ),
                AccountConfig {
                    requests_per_second: 2.0,
                    concurrency: 2,
                    ..account(
                        "intl",
                        "ap-southeast-1",
                        &self.intl,
                        INTL_KEY_ID,
                        INTL_KEY_SECRET,
                    )
                },
            ],
            polling,
            targets,
            target_files: Vec::new(),
            discovery,
            state_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aliyun::client::{ApiError, SasClient};
    use crate::aliyun::credentials;
    use crate::aliyun::scan::ScanStatus;
    use crate::config::{self, normalize_digest};

    const EPOCH: i64 = 1_760_000_000_000;

    fn index_of(outcome: Outcome) -> usize {
        STORIES
            .iter()
            .position(|s| s.outcome == outcome && !s.denied)
            .expect("the demo has a target with this outcome")
    }

    fn status(task: &Value) -> &str {
        task["Status"].as_str().expect("Status is a string")
    }

    fn secs(s: i64) -> Duration {
        Duration::from_secs(s as u64)
    }

    /// Statuses in the order they appear over two cycles, consecutive repeats collapsed.
    fn transitions(target: usize) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for s in 0..2 * CYCLE_SECS {
            let Some(task) = task_at(target, secs(s), EPOCH) else {
                continue;
            };
            let now = status(&task).to_owned();
            if seen.last() != Some(&now) {
                seen.push(now);
            }
        }
        seen
    }

    fn assert_cyclic(target: usize, expected: &[&str]) {
        let seen = transitions(target);
        let first = expected
            .iter()
            .position(|s| *s == seen[0])
            .expect("first status belongs to the story");
        for (k, s) in seen.iter().enumerate() {
            assert_eq!(s, expected[(first + k) % expected.len()], "{seen:?}");
        }
        assert!(seen.len() > expected.len(), "{seen:?}");
    }

    #[test]
    fn successful_digest_goes_through_every_phase_in_order() {
        assert_cyclic(
            index_of(Outcome::Success),
            &[
                "START",
                "MESSAGE_SEND",
                "PRE_ANALYZER",
                "PROCESSING",
                "SUCCESS",
            ],
        );
    }

    #[test]
    fn timeout_digest_ends_in_timout() {
        assert_cyclic(
            index_of(Outcome::Timeout),
            &[
                "START",
                "MESSAGE_SEND",
                "PRE_ANALYZER",
                "PROCESSING",
                "TIMOUT",
            ],
        );
        assert_cyclic(
            index_of(Outcome::Fail),
            &[
                "START",
                "MESSAGE_SEND",
                "PRE_ANALYZER",
                "PROCESSING",
                "FAIL",
            ],
        );
        assert_cyclic(
            index_of(Outcome::Paused),
            &[
                "START",
                "MESSAGE_SEND",
                "PRE_ANALYZER",
                "PAUSED_BY_OPERATOR",
            ],
        );
    }

    #[test]
    fn never_scanned_digest_has_no_task() {
        let i = index_of(Outcome::NeverScanned);
        for s in (0..2 * CYCLE_SECS).step_by(7) {
            assert_eq!(task_at(i, secs(s), EPOCH), None);
        }
    }

    #[test]
    fn outcomes_are_the_promised_mix() {
        let count = |o: Outcome| STORIES.iter().filter(|s| s.outcome == o).count();
        assert_eq!(STORIES.len(), 12);
        assert_eq!(count(Outcome::Fail), 2);
        assert_eq!(count(Outcome::Timeout), 1);
        assert_eq!(count(Outcome::NeverScanned), 1);
        assert_eq!(count(Outcome::Paused), 1);
        assert_eq!(STORIES.iter().filter(|s| s.denied).count(), 1);
    }

    #[test]
    fn some_scans_run_and_some_have_ended_at_any_moment() {
        for s in 0..CYCLE_SECS {
            let statuses: Vec<ScanStatus> = (0..STORIES.len())
                .filter_map(|i| task_at(i, secs(s), EPOCH))
                .map(|t| ScanStatus::from_api(status(&t)))
                .collect();
            let active = statuses.iter().filter(|s| s.is_active()).count();
            let ended = statuses.iter().filter(|s| s.is_terminal()).count();
            assert!(active >= 3, "at {s}s only {active} active");
            assert!(ended >= 3, "at {s}s only {ended} ended");
        }
    }

    #[test]
    fn start_time_never_decreases_and_a_new_task_follows() {
        for (i, story) in STORIES.iter().enumerate() {
            let mut last: Option<(i64, String, i64)> = None;
            let mut new_tasks = 0;
            for s in 0..=2 * CYCLE_SECS {
                let Some(task) = task_at(i, secs(s), EPOCH) else {
                    continue;
                };
                let start = task["StartTime"].as_i64().expect("StartTime");
                let id = task["Id"].as_i64().expect("Id");
                let task_id = task["TaskId"].as_str().expect("TaskId").to_owned();
                if let Some((prev_start, prev_task_id, prev_id)) = &last {
                    assert!(start >= *prev_start, "target {i} went back at {s}s");
                    if start > *prev_start {
                        assert_ne!(&task_id, prev_task_id);
                        assert!(id > *prev_id);
                        new_tasks += 1;
                    } else {
                        assert_eq!(&task_id, prev_task_id);
                        assert_eq!(id, *prev_id);
                    }
                }
                last = Some((start, task_id, id));
            }
            if story.outcome != Outcome::NeverScanned {
                assert!(new_tasks >= 2, "target {i} started {new_tasks} new tasks");
            }
        }
    }

    #[test]
    fn tasks_look_like_the_api() {
        for (i, story) in STORIES.iter().enumerate() {
            for s in (0..CYCLE_SECS).step_by(3) {
                let Some(task) = task_at(i, secs(s), EPOCH) else {
                    continue;
                };
                let status = ScanStatus::from_api(status(&task));
                assert_eq!(task["Target"], json!(demo_digest(story.name)));
                assert_eq!(task["TaskType"], "IMAGE_SCAN");
                assert_eq!(task["Name"], "IMAGE_SCAN");
                assert_eq!(task["TargetType"], "IMAGE");
                let source = task["Source"].as_str().expect("Source");
                assert!(["openapi", "console_batch"].contains(&source));
                let task_id = task["TaskId"].as_str().expect("TaskId");
                assert_eq!(task_id.len(), 32);
                assert!(task_id.bytes().all(|b| b.is_ascii_hexdigit()));
                let start = task["StartTime"].as_i64().expect("StartTime");
                assert!(start <= EPOCH + s * 1000);
                for key in ["Modified", "Create"] {
                    let text = task[key].as_str().expect("local time string");
                    assert!(
                        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").is_ok(),
                        "{key} = {text}"
                    );
                }
                assert_eq!(
                    crate::aliyun::scan::parse_api_time(
                        task["Create"].as_str().expect("Create"),
                        DEMO_TIMEZONE
                    )
                    .map(|t| t.timestamp()),
                    Some(start / 1000)
                );
                let finish = task["Finish"].as_i64().expect("Finish");
                if status.is_terminal() {
                    assert_eq!(finish, 1);
                    let finished = task["FinishTime"].as_i64().expect("FinishTime");
                    assert!(finished > start);
                } else {
                    assert_eq!(finish, 0);
                    assert!(task.get("FinishTime").is_none());
                }
            }
        }
    }

    #[test]
    fn denial_comes_and_goes_for_one_digest() {
        let denied: Vec<usize> = (0..STORIES.len()).filter(|&i| STORIES[i].denied).collect();
        let i = denied[0];
        assert!(!denied_at(i, Duration::ZERO));
        let windows: Vec<bool> = (0..DENY_PERIOD_SECS)
            .map(|s| denied_at(i, secs(s)))
            .collect();
        let on = windows.iter().filter(|d| **d).count() as i64;
        assert_eq!(on, DENY_FOR_SECS);
        for other in (0..STORIES.len()).filter(|j| !denied.contains(j)) {
            assert!((0..DENY_PERIOD_SECS).all(|s| !denied_at(other, secs(s))));
        }
    }

    #[test]
    fn digests_and_labels_are_valid() {
        let targets = demo_targets();
        assert_eq!(targets.len(), 12);
        let distinct: BTreeSet<&str> = targets.iter().map(|t| t.digest.as_str()).collect();
        assert_eq!(distinct.len(), 12);
        for t in &targets {
            assert_eq!(
                normalize_digest(&t.digest).as_deref(),
                Ok(t.digest.as_str())
            );
            assert!(
                t.digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            );
            for name in t.labels.keys() {
                assert!(!config::RESERVED_LABELS.contains(&name.as_str()));
                assert!(!name.starts_with("__"));
            }
            assert!(t.labels.contains_key("image") && t.labels.contains_key("team"));
            assert!(!t.story.is_empty());
        }
        // The labels must survive the real config parser, not only the checks above.
        let yaml: String = targets
            .iter()
            .map(|t| {
                format!(
                    "- digest: {}\n  labels: {{image: \"{}\", team: {}}}\n",
                    t.digest, t.labels["image"], t.labels["team"]
                )
            })
            .collect();
        let parsed = config::parse_targets(&yaml, "demo.yml", &|_| None, &["default".to_owned()])
            .expect("valid targets");
        assert_eq!(parsed.len(), 12);
    }

    #[test]
    fn example_config_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/sas-image-scan-exporter.yml"
        );
        let text = std::fs::read_to_string(path).expect("example config exists");
        let env =
            |name: &str| (name == "ALIBABA_CLOUD_ACCESS_KEY_ID").then(|| "LTAIexample".to_owned());
        let cfg = Config::parse(&text, path, &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.targets.len(), 3);
        assert_eq!(cfg.accounts.len(), 1);
        assert_eq!(cfg.accounts[0].name, "default");
        assert_eq!(cfg.accounts[0].sas.region, "cn-shanghai");
        assert_eq!(cfg.accounts[0].sas.signature_version, SignatureVersion::V3);
        assert_eq!(cfg.polling.interval, Duration::from_secs(600));
        assert_eq!(cfg.polling.active_interval, Duration::from_secs(30));
        assert_eq!(cfg.polling.requests_per_second, 5.0);
        assert_eq!(cfg.target_files, vec!["targets.d/*.yml".to_owned()]);
        assert_eq!(cfg.state_file, None);
        let creds = cfg.accounts[0]
            .credentials
            .clone()
            .expect("credentials section");
        assert_eq!(creds.access_key_id.as_deref(), Some("LTAIexample"));
        assert!(creds.access_key_secret.is_none());
        assert!(creds.access_key_secret_file.is_some());
        assert_eq!(cfg.targets[0].labels["team"], "payments");

        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/targets.d/example.yml");
        let text = std::fs::read_to_string(path).expect("example target file exists");
        let targets = config::parse_targets(&text, path, &|_| None, &["default".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(targets.len(), 2);
        assert!(targets.iter().all(|t| !t.labels.is_empty()));
    }

    #[test]
    fn scaling_multiplies_and_saturates() {
        assert_eq!(
            scale(Duration::from_secs(2), 60.0),
            Duration::from_secs(120)
        );
        assert_eq!(scale(Duration::MAX, 1e9), Duration::MAX);
    }

    #[tokio::test]
    async fn rejects_a_nonsense_speed() {
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Demo::start_with_speed(speed).await.is_err());
        }
    }

    /// The real client, configured as the exporter would be for the demo.
    async fn demo_client(cfg: &Config) -> SasClient {
        let prod = &cfg.accounts[0];
        let creds = credentials::provider_from_config(
            prod.credentials.as_ref(),
            &|_| None,
            crate::clock::Clock::system(),
        )
        .await
        .expect("demo credentials");
        SasClient::new(prod.sas.client_options(), creds).expect("client builds")
    }

    #[tokio::test]
    async fn the_real_client_sees_the_story() {
        let speed = 120.0;
        let demo = Demo::start_with_speed(speed).await.expect("demo starts");
        let started = std::time::Instant::now();
        let cfg = demo.config();
        assert_eq!(
            cfg.accounts[0].sas.endpoint.as_ref().map(Endpoint::as_str),
            Some(demo.simulator.url().as_str())
        );
        assert_eq!(
            cfg.accounts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>(),
            ["prod", "intl"]
        );
        assert_eq!(cfg.accounts[0].sas.site(), crate::config::Site::China);
        assert_eq!(
            cfg.accounts[1].sas.site(),
            crate::config::Site::International
        );
        assert_eq!(
            cfg.accounts[1].sas.endpoint.as_ref().map(Endpoint::as_str),
            Some(demo.intl.url().as_str())
        );
        // `prod` discovers the twelve images; `intl` lists four.
        assert_eq!(cfg.targets.len(), INTL_STORIES.len());
        assert_eq!(
            cfg.discovery
                .iter()
                .map(|d| (d.account.as_str(), d.source_name()))
                .collect::<Vec<_>>(),
            [("prod", "sas_images"), ("prod", "sas_containers")]
        );
        let client = demo_client(&cfg).await;

        let mut seen = Vec::new();
        for (i, target) in demo_targets().iter().enumerate() {
            let story = &STORIES[i];
            match client.describe_image_latest_scan_task(&target.digest).await {
                Ok(result) => {
                    let status = result.task.as_ref().map(|t| t.status);
                    let raw = result.task.as_ref().map(|t| t.raw_status.clone());
                    match story.outcome {
                        Outcome::NeverScanned => assert_eq!(status, None),
                        Outcome::Paused => {
                            let status = status.expect("a task");
                            assert!(status.is_active() || status == ScanStatus::Unknown);
                            if status == ScanStatus::Unknown {
                                assert_eq!(raw.as_deref(), Some("PAUSED_BY_OPERATOR"));
                            }
                        }
                        outcome => {
                            let status = status.expect("a task");
                            let end = ScanStatus::from_api(outcome.final_status());
                            assert!(status.is_active() || status == end, "{i}: {status}");
                        }
                    }
                    seen.push(status);
                }
                Err(ApiError::Service { status, code, .. }) if story.denied => {
                    assert_eq!((status, code.as_str()), (403, "NoPermission"));
                }
                Err(e) => panic!("target {i} ({}): {e}", story.name),
            }
        }
        // Right after start-up the driver has moved the story by at most a few ticks, and the
        // stagger guarantees running and ended scans at every moment.
        assert!(started.elapsed() < Duration::from_secs(30));
        let statuses: Vec<ScanStatus> = seen.iter().flatten().copied().collect();
        assert!(statuses.iter().any(|s| s.is_active()), "{statuses:?}");
        assert!(statuses.iter().any(|s| s.is_terminal()), "{statuses:?}");
        assert!(
            seen.contains(&None),
            "the never-scanned digest answers NONE"
        );
        assert!(seen.len() >= 11);
    }

    #[tokio::test]
    async fn the_denied_digest_answers_no_permission_during_its_window() {
        let demo = Demo::start_with_speed(1.0).await.expect("demo starts");
        let i = STORIES
            .iter()
            .position(|s| s.denied)
            .expect("a denied target");
        let digest = demo_digest(STORIES[i].name);
        let mut denied = BTreeSet::new();
        // Jump the story into the denial window by hand, as the driver would at that moment.
        apply(
            &demo.simulator,
            secs(DENY_FROM_SECS + 1),
            EPOCH,
            &mut denied,
        );
        assert!(denied.contains(&digest));
        let cfg = demo.config();
        let client = demo_client(&cfg).await;
        match client.describe_image_latest_scan_task(&digest).await {
            Err(ApiError::Service { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (403, "NoPermission"));
            }
            other => panic!("expected NoPermission, got {other:?}"),
        }
        apply(
            &demo.simulator,
            secs(DENY_FROM_SECS + DENY_FOR_SECS + 1),
            EPOCH,
            &mut denied,
        );
        assert!(denied.is_empty());
        assert!(
            client
                .describe_image_latest_scan_task(&digest)
                .await
                .is_ok()
        );
    }
}
