//! The scan-task model and a lenient parser for `DescribeImageLatestScanTask` responses.
//!
//! The API's documentation is loose about types (numbers sometimes arrive as strings, `Task` may be
//! absent or null), so the parser accepts every shape that has one obvious meaning and rejects the
//! rest with a message naming the offending field.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;

/// The state of a scan task as the exporter reports it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScanStatus {
    /// `START`
    Start,
    /// `MESSAGE_SEND`
    MessageSend,
    /// `PRE_ANALYZER`
    PreAnalyzer,
    /// `PROCESSING`
    Processing,
    /// `SUCCESS`
    Success,
    /// `FAIL`
    Fail,
    /// `TIMEOUT` (the API spells it `TIMOUT`)
    Timeout,
    /// Anything else; the raw value is kept beside it.
    Unknown,
}

impl ScanStatus {
    /// Every status, in the order the metrics list them.
    pub const ALL: [ScanStatus; 8] = [
        ScanStatus::Start,
        ScanStatus::MessageSend,
        ScanStatus::PreAnalyzer,
        ScanStatus::Processing,
        ScanStatus::Success,
        ScanStatus::Fail,
        ScanStatus::Timeout,
        ScanStatus::Unknown,
    ];

    /// Maps the API's string exactly (`TIMOUT` is its own spelling); anything else is `Unknown`.
    pub fn from_api(raw: &str) -> ScanStatus {
        match raw {
            "START" => ScanStatus::Start,
            "MESSAGE_SEND" => ScanStatus::MessageSend,
            "PRE_ANALYZER" => ScanStatus::PreAnalyzer,
            "PROCESSING" => ScanStatus::Processing,
            "SUCCESS" => ScanStatus::Success,
            "FAIL" => ScanStatus::Fail,
            "TIMOUT" | "TIMEOUT" => ScanStatus::Timeout,
            _ => ScanStatus::Unknown,
        }
    }

    /// The label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Start => "START",
            ScanStatus::MessageSend => "MESSAGE_SEND",
            ScanStatus::PreAnalyzer => "PRE_ANALYZER",
            ScanStatus::Processing => "PROCESSING",
            ScanStatus::Success => "SUCCESS",
            ScanStatus::Fail => "FAIL",
            ScanStatus::Timeout => "TIMEOUT",
            ScanStatus::Unknown => "UNKNOWN",
        }
    }

    /// True for states after which the task will not change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ScanStatus::Success | ScanStatus::Fail | ScanStatus::Timeout
        )
    }

    /// True while the scan is running.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ScanStatus::Start
                | ScanStatus::MessageSend
                | ScanStatus::PreAnalyzer
                | ScanStatus::Processing
        )
    }
}

impl fmt::Display for ScanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state of the `sas_image_scan_status` state set: `NONE` (the API knows no scan task for
/// the digest) or the latest task's status. This is the one list of states that the metrics, the
/// status page, the scheduler and the demo share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScanState(Option<ScanStatus>);

impl ScanState {
    /// No scan task exists for the digest.
    pub const NONE: ScanState = ScanState(None);

    /// Every state, `NONE` first, in the order the state set lists them.
    pub const ALL: [ScanState; 9] = [
        ScanState::NONE,
        ScanState(Some(ScanStatus::Start)),
        ScanState(Some(ScanStatus::MessageSend)),
        ScanState(Some(ScanStatus::PreAnalyzer)),
        ScanState(Some(ScanStatus::Processing)),
        ScanState(Some(ScanStatus::Success)),
        ScanState(Some(ScanStatus::Fail)),
        ScanState(Some(ScanStatus::Timeout)),
        ScanState(Some(ScanStatus::Unknown)),
    ];

    /// The state of a digest whose latest task is `task` (`None`: no task).
    pub fn of(task: Option<&ScanTask>) -> ScanState {
        ScanState(task.map(|t| t.status))
    }

    /// The task status, or `None` for `NONE`.
    pub fn status(self) -> Option<ScanStatus> {
        self.0
    }

    /// The `status` label value.
    pub fn as_str(self) -> &'static str {
        self.0.map_or("NONE", ScanStatus::as_str)
    }
}

impl From<ScanStatus> for ScanState {
    fn from(status: ScanStatus) -> Self {
        ScanState(Some(status))
    }
}

impl fmt::Display for ScanState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The latest scan task of one digest, as parsed from the API (and as kept in the state file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanTask {
    /// Mapped status.
    pub status: ScanStatus,
    /// The API's status string verbatim (empty when absent).
    pub raw_status: String,
    /// `Modified`, read in the configured zone.
    pub modified: Option<DateTime<Utc>>,
    /// `Modified` verbatim, kept only when it could not be read (then `modified` is `None`).
    pub modified_raw: Option<String>,
    /// `StartTime`, Unix milliseconds.
    pub start_time_ms: Option<i64>,
    /// `FinishTime`, Unix milliseconds.
    pub finish_time_ms: Option<i64>,
    /// `Finish`: images finished.
    pub finish: Option<i64>,
    /// `Source`.
    pub source: Option<String>,
    /// `TaskType`.
    pub task_type: Option<String>,
    /// `Name`.
    pub name: Option<String>,
    /// `TaskId`.
    pub task_id: Option<String>,
    /// `Id`.
    pub id: Option<i64>,
    /// `TargetType`.
    pub target_type: Option<String>,
}

/// A successful response: the latest task, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// `RequestId`, for support tickets.
    pub request_id: Option<String>,
    /// The latest task; `None` when the API knows no scan task for the digest.
    pub task: Option<ScanTask>,
    /// How many tasks the response held.
    pub tasks_in_response: usize,
}

/// Why a success body could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

#[derive(Deserialize)]
struct RawTask {
    #[serde(rename = "Status", default, deserialize_with = "lenient_string")]
    status: Option<String>,
    #[serde(rename = "Modified", default, deserialize_with = "lenient_string")]
    modified: Option<String>,
    // Create and Target are read only to reject wrong types like every other field; nothing uses
    // them (Target repeats the digest).
    #[serde(rename = "Create", default, deserialize_with = "lenient_string")]
    #[allow(dead_code)]
    create: Option<String>,
    #[serde(rename = "StartTime", default, deserialize_with = "lenient_i64")]
    start_time: Option<i64>,
    #[serde(rename = "FinishTime", default, deserialize_with = "lenient_i64")]
    finish_time: Option<i64>,
    #[serde(rename = "Finish", default, deserialize_with = "lenient_i64")]
    finish: Option<i64>,
    #[serde(rename = "Source", default, deserialize_with = "lenient_string")]
    source: Option<String>,
    #[serde(rename = "TaskType", default, deserialize_with = "lenient_string")]
    task_type: Option<String>,
    #[serde(rename = "Name", default, deserialize_with = "lenient_string")]
    name: Option<String>,
    #[serde(rename = "TaskId", default, deserialize_with = "lenient_string")]
    task_id: Option<String>,
    #[serde(rename = "Target", default, deserialize_with = "lenient_string")]
    #[allow(dead_code)]
    target: Option<String>,
    #[serde(rename = "Id", default, deserialize_with = "lenient_i64")]
    id: Option<i64>,
    #[serde(rename = "TargetType", default, deserialize_with = "lenient_string")]
    target_type: Option<String>,
}

/// Parses a success body. `zone` is the UTC offset of the API's `Modified` strings.
pub fn parse_response(body: &[u8], zone: FixedOffset) -> Result<ScanResult, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("response is not valid JSON: {e}")))?;
    let Value::Object(mut top) = value else {
        return Err(ParseError(format!(
            "expected a JSON object at the top level, got {}",
            kind(&value)
        )));
    };
    let request_id = match top.remove("RequestId") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let raw_tasks = match top.remove("Task") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(obj @ Value::Object(_)) => vec![obj],
        Some(other) => {
            return Err(ParseError(format!(
                "Task: expected an array of tasks, got {}",
                kind(&other)
            )));
        }
    };
    let mut tasks = Vec::with_capacity(raw_tasks.len());
    for (i, item) in raw_tasks.into_iter().enumerate() {
        if !item.is_object() {
            return Err(ParseError(format!(
                "Task[{i}]: expected an object, got {}",
                kind(&item)
            )));
        }
        let raw: RawTask = serde_path_to_error::deserialize(item)
            .map_err(|e| ParseError(format!("Task[{i}].{}: {}", e.path(), e.inner())))?;
        tasks.push(raw);
    }
    let tasks_in_response = tasks.len();
    // Latest = greatest StartTime, then greatest Id; a missing value sorts first.
    let latest = tasks
        .into_iter()
        .max_by_key(|t| (t.start_time, t.id))
        .map(|t| into_task(t, zone));
    Ok(ScanResult {
        request_id,
        task: latest,
        tasks_in_response,
    })
}

fn into_task(raw: RawTask, zone: FixedOffset) -> ScanTask {
    let raw_status = raw.status.unwrap_or_default();
    let modified = raw
        .modified
        .as_deref()
        .and_then(|m| parse_api_time(m, zone));
    ScanTask {
        status: ScanStatus::from_api(&raw_status),
        raw_status,
        modified,
        // Kept for diagnosis only when unreadable: at 10 000 digests every string counts.
        modified_raw: raw.modified.filter(|_| modified.is_none()),
        start_time_ms: raw.start_time,
        finish_time_ms: raw.finish_time,
        finish: raw.finish,
        source: raw.source,
        task_type: raw.task_type,
        name: raw.name,
        task_id: raw.task_id,
        id: raw.id,
        target_type: raw.target_type,
    }
}

/// Reads the API's `yyyy-MM-dd HH:mm:ss` (or `T`-separated) local time in `zone`; a string that
/// carries its own offset (RFC 3339) is read with that offset instead.
pub fn parse_api_time(s: &str, zone: FixedOffset) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .and_then(|naive| naive.and_local_timezone(zone).single())
        .map(|t| t.with_timezone(&Utc))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A 64-bit integer given as a JSON number or a numeric string; null and "" mean absent.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer or a string holding one")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // Some encoders write 1.6686144e12; accept it only when it is a whole number in range.
            if v.fract() == 0.0 && v.abs() < 9.0e18 {
                Ok(Some(v as i64))
            } else {
                Err(E::custom(format!("{v} is not a whole number")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse::<i64>()
                .map(Some)
                .map_err(|_| E::custom(format!("{v:?} is not an integer")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// A string; numbers and booleans are taken as their text, null means absent.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone8() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).expect("valid offset")
    }

    fn parse(body: &str) -> Result<ScanResult, ParseError> {
        parse_response(body.as_bytes(), zone8())
    }

    #[test]
    fn documentation_example() {
        let r = parse(
            r#"{"RequestId":"0B48AB3C-84FC-424D-A01D-B9270EF4****","Task":[{"Status":"SUCCESS",
            "Modified":"2022-12-20 12:00:05","FinishTime":1669693430977,"Create":"2022-12-20 11:59:05",
            "Finish":100,"Source":"console_batch","StartTime":1668614400000,"TaskType":"IMAGE_SCAN",
            "Name":"IMAGE_SCAN","TaskId":"0a960b9a48b788a8689154b032bf****",
            "Target":"8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50****",
            "Id":9755662,"TargetType":"IMAGE"}]}"#,
        )
        .expect("valid");
        assert_eq!(
            r.request_id.as_deref(),
            Some("0B48AB3C-84FC-424D-A01D-B9270EF4****")
        );
        assert_eq!(r.tasks_in_response, 1);
        let t = r.task.expect("one task");
        assert_eq!(t.status, ScanStatus::Success);
        assert_eq!(t.raw_status, "SUCCESS");
        // 12:00:05 at +08:00 is 04:00:05Z.
        assert_eq!(t.modified.map(|m| m.timestamp()), Some(1_671_508_805));
        assert_eq!(t.start_time_ms, Some(1_668_614_400_000));
        assert_eq!(t.finish_time_ms, Some(1_669_693_430_977));
        assert_eq!(t.finish, Some(100));
        assert_eq!(t.id, Some(9_755_662));
        assert_eq!(t.source.as_deref(), Some("console_batch"));
        assert_eq!(
            t.task_id.as_deref(),
            Some("0a960b9a48b788a8689154b032bf****")
        );
        assert_eq!(t.target_type.as_deref(), Some("IMAGE"));
    }

    #[test]
    fn missing_null_and_empty_task_mean_no_task() {
        for body in [
            r#"{"RequestId":"r"}"#,
            r#"{"RequestId":"r","Task":null}"#,
            r#"{"RequestId":"r","Task":[]}"#,
            r#"{"RequestId":"r","Task":""}"#,
        ] {
            let r = parse(body).expect(body);
            assert_eq!(r.task, None, "{body}");
            assert_eq!(r.tasks_in_response, 0);
        }
    }

    #[test]
    fn numbers_as_strings_unknown_fields_and_single_object() {
        let r = parse(
            r#"{"Task":{"Status":"TIMOUT","StartTime":"1668614400000","FinishTime":"",
            "Id":"42","Finish":"7","Extra":{"x":[1,2]},"TaskId":12345}}"#,
        )
        .expect("valid");
        let t = r.task.expect("task");
        assert_eq!(t.status, ScanStatus::Timeout);
        assert_eq!(t.raw_status, "TIMOUT");
        assert_eq!(t.start_time_ms, Some(1_668_614_400_000));
        assert_eq!(t.finish_time_ms, None);
        assert_eq!(t.id, Some(42));
        assert_eq!(t.finish, Some(7));
        assert_eq!(t.task_id.as_deref(), Some("12345"));
    }

    #[test]
    fn several_tasks_pick_greatest_start_then_id() {
        let r = parse(
            r#"{"Task":[{"Id":1,"StartTime":200,"Status":"FAIL"},
                        {"Id":3,"StartTime":300,"Status":"SUCCESS"},
                        {"Id":2,"StartTime":300,"Status":"PROCESSING"},
                        {"Id":9,"Status":"START"}]}"#,
        )
        .expect("valid");
        assert_eq!(r.tasks_in_response, 4);
        let t = r.task.expect("task");
        assert_eq!(t.id, Some(3));
        assert_eq!(t.status, ScanStatus::Success);
    }

    #[test]
    fn unknown_status_keeps_raw_value() {
        let t = parse(r#"{"Task":[{"Status":"PAUSED"}]}"#)
            .expect("valid")
            .task
            .expect("task");
        assert_eq!(t.status, ScanStatus::Unknown);
        assert_eq!(t.raw_status, "PAUSED");
    }

    #[test]
    fn bad_shapes_name_the_field() {
        let cases = [
            (
                "[]",
                "expected a JSON object at the top level, got an array",
            ),
            (
                r#"{"Task":5}"#,
                "Task: expected an array of tasks, got a number",
            ),
            (
                r#"{"Task":["x"]}"#,
                "Task[0]: expected an object, got a string",
            ),
            (
                r#"{"Task":[{},{"StartTime":"soon"}]}"#,
                "Task[1].StartTime: \"soon\" is not an integer",
            ),
            (
                r#"{"Task":[{"Id":1.5}]}"#,
                "Task[0].Id: 1.5 is not a whole number",
            ),
            (
                r#"{"Task":[{"Name":[1]}]}"#,
                "Task[0].Name: invalid type: sequence, expected a string",
            ),
        ];
        for (body, msg) in cases {
            assert_eq!(parse(body).expect_err(body).0, msg, "{body}");
        }
        let e = parse(r#"{"Task":[{"#).expect_err("truncated");
        assert!(
            e.0.starts_with("response is not valid JSON: EOF while parsing"),
            "{e}"
        );
    }

    #[test]
    fn api_times_in_zone() {
        let z = zone8();
        let expect = Some(1_671_508_805);
        assert_eq!(
            parse_api_time("2022-12-20 12:00:05", z).map(|t| t.timestamp()),
            expect
        );
        assert_eq!(
            parse_api_time("2022-12-20T12:00:05", z).map(|t| t.timestamp()),
            expect
        );
        assert_eq!(
            parse_api_time("2022-12-20T04:00:05Z", z).map(|t| t.timestamp()),
            expect
        );
        assert_eq!(parse_api_time("yesterday", z), None);
    }

    #[test]
    fn status_mapping() {
        assert_eq!(ScanStatus::from_api("TIMEOUT"), ScanStatus::Timeout);
        assert_eq!(
            ScanStatus::from_api("MESSAGE_SEND"),
            ScanStatus::MessageSend
        );
        assert_eq!(
            ScanStatus::from_api("PRE_ANALYZER"),
            ScanStatus::PreAnalyzer
        );
        assert_eq!(ScanStatus::from_api(""), ScanStatus::Unknown);
        assert!(ScanStatus::Timeout.is_terminal() && !ScanStatus::Timeout.is_active());
        assert!(ScanStatus::Start.is_active() && !ScanStatus::Unknown.is_active());
        assert!(!ScanStatus::Unknown.is_terminal());
    }
}
