//! What the Security Center simulator knows: the keys it accepts, what each digest answers, and
//! the rows of the two listings.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::instances::{ContainerInstance, ImageInstance};
use crate::log::DEFAULT_LOG_CAPACITY;
use crate::response::request_id;
use crate::{SIM_ACCESS_KEY_ID, SIM_ACCESS_KEY_SECRET, SimKey};

/// What one digest answers.
#[derive(Clone, Debug)]
pub enum DigestReply {
    /// `{"RequestId": ..., "Task": <value>}`: the value verbatim (an array of tasks, `null`, ...).
    Task(Value),
    /// `{"RequestId": ...}` with no `Task` key at all.
    NoTaskKey,
}

/// The simulator's data: keys, per-digest answers, what unknown digests get, and the listings.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Accepted keys.
    pub keys: Vec<SimKey>,
    /// Answers per bare lower-case digest.
    pub digests: HashMap<String, DigestReply>,
    /// When true, a digest not listed gets one synthetic finished task instead of an empty list,
    /// so benchmarks can use thousands of digests without listing them.
    pub synthetic_unknown: bool,
    /// How many of the most recent requests the traffic log keeps (counters stay exact).
    pub log_capacity: usize,
    /// The rows `DescribeImageInstances` lists, in this order.
    pub images: Vec<ImageInstance>,
    /// The rows `DescribeContainerInstances` lists, in this order.
    pub containers: Vec<ContainerInstance>,
    /// The largest `PageSize` the listings accept; `None`: any.
    pub max_page_size: Option<u32>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            keys: vec![SimKey {
                id: SIM_ACCESS_KEY_ID.to_owned(),
                secret: SIM_ACCESS_KEY_SECRET.to_owned(),
                security_token: None,
            }],
            digests: HashMap::new(),
            synthetic_unknown: false,
            log_capacity: DEFAULT_LOG_CAPACITY,
            images: Vec::new(),
            containers: Vec::new(),
            max_page_size: None,
        }
    }
}

impl Scenario {
    /// Sets a digest's task list.
    pub fn with_tasks(mut self, digest: &str, tasks: Vec<Value>) -> Self {
        self.digests
            .insert(digest.to_owned(), DigestReply::Task(Value::Array(tasks)));
        self
    }

    /// Sets a digest's answer verbatim.
    pub fn with_reply(mut self, digest: &str, reply: DigestReply) -> Self {
        self.digests.insert(digest.to_owned(), reply);
        self
    }

    /// Answers unknown digests with a synthetic finished task.
    pub fn with_synthetic_unknown(mut self) -> Self {
        self.synthetic_unknown = true;
        self
    }

    /// Keeps the last `entries` requests in the traffic log instead of the default.
    pub fn with_log_capacity(mut self, entries: usize) -> Self {
        self.log_capacity = entries;
        self
    }

    /// Lists these image rows.
    pub fn with_images(mut self, rows: Vec<ImageInstance>) -> Self {
        self.images = rows;
        self
    }

    /// Lists these container rows.
    pub fn with_containers(mut self, rows: Vec<ContainerInstance>) -> Self {
        self.containers = rows;
        self
    }

    /// Refuses a larger `PageSize` with a parameter error.
    pub fn with_max_page_size(mut self, max: u32) -> Self {
        self.max_page_size = Some(max);
        self
    }

    /// The latest task `digest` (bare, lower-case) answers with, chosen as the exporter does:
    /// greatest `StartTime`, then greatest `Id`.
    pub(crate) fn latest_task(&self, digest: &str) -> Option<Value> {
        let key = |t: &&Value| {
            (
                t.get("StartTime").and_then(Value::as_i64),
                t.get("Id").and_then(Value::as_i64),
            )
        };
        match self.digests.get(digest) {
            Some(DigestReply::Task(Value::Array(tasks))) => tasks
                .iter()
                .filter(|t| t.is_object())
                .max_by_key(key)
                .cloned(),
            Some(DigestReply::Task(task @ Value::Object(_))) => Some(task.clone()),
            Some(_) => None,
            None if self.synthetic_unknown => Some(synthetic_task(digest)),
            None => None,
        }
    }

    /// The success body for `digest` (bare, lower-case).
    pub(crate) fn reply_body(&self, digest: &str) -> Value {
        let request_id = request_id();
        match self.digests.get(digest) {
            Some(DigestReply::Task(v)) => json!({"RequestId": request_id, "Task": v}),
            Some(DigestReply::NoTaskKey) => json!({"RequestId": request_id}),
            None if self.synthetic_unknown => {
                json!({"RequestId": request_id, "Task": [synthetic_task(digest)]})
            }
            None => json!({"RequestId": request_id, "Task": []}),
        }
    }
}

/// The deterministic finished task served for unlisted digests in synthetic mode.
pub fn synthetic_task(digest: &str) -> Value {
    let seed = digest
        .get(..8)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    let start = 1_700_000_000_000_i64 + (seed % 86_400_000) as i64;
    let finish = start + 30_000 + (seed % 90_000) as i64;
    // The API writes `Modified` in China Standard Time.
    let modified = DateTime::<Utc>::from_timestamp_millis(finish).map(|t| {
        (t + chrono::Duration::hours(8))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    });
    json!({
        "Status": "SUCCESS",
        "Modified": modified,
        "StartTime": start,
        "FinishTime": finish,
        "Finish": 1,
        "Source": "openapi",
        "TaskType": "IMAGE_SCAN",
        "Name": "IMAGE_SCAN",
        "TaskId": digest.get(..32).unwrap_or(digest),
        "Target": digest,
        "Id": seed % 10_000_000,
        "TargetType": "IMAGE",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn replies_follow_the_scenario() {
        let scenario = Scenario::default()
            .with_tasks(DIGEST, vec![json!({"Status": "FAIL"})])
            .with_reply("ab", DigestReply::NoTaskKey);
        assert_eq!(scenario.reply_body(DIGEST)["Task"][0]["Status"], "FAIL");
        assert!(scenario.reply_body("ab").get("Task").is_none());
        assert_eq!(scenario.reply_body("cd")["Task"], json!([]));
        let synthetic = scenario.with_synthetic_unknown();
        assert_eq!(synthetic.reply_body("cd")["Task"][0], synthetic_task("cd"));
        assert!(synthetic.reply_body(DIGEST)["RequestId"].is_string());
    }

    #[test]
    fn synthetic_tasks_are_deterministic_and_finished() {
        let task = synthetic_task(DIGEST);
        assert_eq!(task, synthetic_task(DIGEST));
        assert_eq!(task["Status"], "SUCCESS");
        assert_eq!(task["Target"], DIGEST);
        let (start, finish) = (task["StartTime"].as_i64(), task["FinishTime"].as_i64());
        assert!(
            matches!((start, finish), (Some(s), Some(f)) if s < f),
            "{task}"
        );
    }
}
