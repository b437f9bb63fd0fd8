//! The scan-task model and a lenient parser for `DescribeImageLatestScanTask` responses.
//!
//! The API's documentation is loose about types (numbers sometimes arrive as strings, `Task` may be
//! absent or null), so the parser accepts every shape that has one obvious meaning and rejects the
//! rest. A task field that cannot be read is left out (and reported beside the result) rather than
//! failing the whole answer; strings that become label values are capped.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde_json::Value;

use crate::aliyun::lenient::{kind, lenient_i64, lenient_string, take_field};

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
    /// Fields that could not be read and were left out.
    pub dropped: Vec<DroppedField>,
}

/// Why a success body could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A task field that could not be read and was left out; the rest of the task is still used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedField {
    /// Index of the task in the response's `Task` list.
    pub task: usize,
    /// The API's field name, e.g. `StartTime`.
    pub field: &'static str,
    /// Why it could not be read.
    pub reason: String,
}

impl fmt::Display for DroppedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task[{}].{}: {}", self.task, self.field, self.reason)
    }
}

/// The longest label value taken from the API, in bytes, marker included.
pub const MAX_LABEL_BYTES: usize = 512;
/// What ends a value that was cut to [`MAX_LABEL_BYTES`].
pub const TRUNCATED_MARKER: &str = "…[truncated]";

/// Cuts `s` to at most [`MAX_LABEL_BYTES`] on a character boundary, marking the cut.
pub fn cap_label(mut s: String) -> String {
    if s.len() <= MAX_LABEL_BYTES {
        return s;
    }
    let mut cut = MAX_LABEL_BYTES - TRUNCATED_MARKER.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(TRUNCATED_MARKER);
    s
}

struct RawTask {
    status: Option<String>,
    modified: Option<String>,
    start_time: Option<i64>,
    finish_time: Option<i64>,
    finish: Option<i64>,
    source: Option<String>,
    task_type: Option<String>,
    name: Option<String>,
    task_id: Option<String>,
    id: Option<i64>,
    target_type: Option<String>,
}

/// Reads the fields of one task object, setting aside the ones that cannot be read: one odd value
/// must not hide the status of the whole digest.
struct Fields<'a> {
    obj: serde_json::Map<String, Value>,
    task: usize,
    dropped: &'a mut Vec<DroppedField>,
}

impl Fields<'_> {
    fn take<T>(
        &mut self,
        field: &'static str,
        read: fn(Value) -> Result<Option<T>, String>,
    ) -> Option<T> {
        let (task, dropped) = (self.task, &mut *self.dropped);
        take_field(&mut self.obj, field, read, |reason| {
            dropped.push(DroppedField {
                task,
                field,
                reason,
            })
        })
    }

    fn int(&mut self, field: &'static str) -> Option<i64> {
        self.take(field, lenient_i64)
    }

    fn string(&mut self, field: &'static str) -> Option<String> {
        self.take(field, lenient_string)
    }

    fn label(&mut self, field: &'static str) -> Option<String> {
        self.string(field).map(cap_label)
    }
}

/// A success body's top-level object: every answer of the API is one.
pub(crate) fn top_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("response is not valid JSON: {e}")))?;
    match value {
        Value::Object(top) => Ok(top),
        other => Err(ParseError(format!(
            "expected a JSON object at the top level, got {}",
            kind(&other)
        ))),
    }
}

/// The answer's `RequestId`, kept short enough for a label or a log line.
pub(crate) fn request_id(top: &mut serde_json::Map<String, Value>) -> Option<String> {
    match top.remove("RequestId") {
        Some(Value::String(s)) => Some(cap_label(s)),
        Some(Value::Null) | None => None,
        Some(other) => Some(cap_label(other.to_string())),
    }
}

/// Parses a success body. `zone` is the UTC offset of the API's `Modified` strings.
pub fn parse_response(body: &[u8], zone: FixedOffset) -> Result<ScanResult, ParseError> {
    let mut top = top_object(body)?;
    let request_id = request_id(&mut top);
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
    let mut dropped = Vec::new();
    for (i, item) in raw_tasks.into_iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(ParseError(format!(
                "Task[{i}]: expected an object, got {}",
                kind(&item)
            )));
        };
        tasks.push(read_task(Fields {
            obj,
            task: i,
            dropped: &mut dropped,
        }));
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
        dropped,
    })
}

// Strings that become label values are capped here, once, so neither the store, the state file
// nor a scrape ever carries a megabyte label. `Create` and `Target` are not read: nothing uses
// them (Target repeats the digest).
fn read_task(mut f: Fields<'_>) -> RawTask {
    RawTask {
        // Capping cannot change the mapping: every known status is short.
        status: f.label("Status"),
        modified: f.label("Modified"),
        start_time: f.int("StartTime"),
        finish_time: f.int("FinishTime"),
        finish: f.int("Finish"),
        source: f.label("Source"),
        task_type: f.label("TaskType"),
        name: f.label("Name"),
        task_id: f.label("TaskId"),
        id: f.int("Id"),
        target_type: f.label("TargetType"),
    }
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
    fn unreadable_fields_are_dropped_and_the_rest_is_used() {
        let r = parse(
            r#"{"Task":[{"Id":1,"StartTime":100,"Status":"FAIL"},
                        {"Id":1e300,"StartTime":"soon","Finish":1.5,"FinishTime":18446744073709551615,
                         "Name":[1],"Status":"SUCCESS","TaskId":"t","Extra":-1e300}]}"#,
        )
        .expect("one bad field does not fail the answer");
        assert_eq!(r.tasks_in_response, 2);
        let reasons: Vec<String> = r.dropped.iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            [
                "Task[1].StartTime: \"soon\" is not an integer",
                "Task[1].FinishTime: 18446744073709551615 is out of range",
                "Task[1].Finish: 1.5 is not a whole number",
                "Task[1].Name: invalid type: an array, expected a string",
                "Task[1].Id: 1e+300 is out of range",
            ]
        );
        // Task 0 has the only readable StartTime, so it is the latest.
        let t = r.task.expect("task");
        assert_eq!((t.id, t.status), (Some(1), ScanStatus::Fail));

        let t = parse(r#"{"Task":[{"Id":1e300,"Status":"SUCCESS","TaskId":"t","StartTime":5}]}"#)
            .expect("valid")
            .task
            .expect("task");
        assert_eq!(t.id, None);
        assert_eq!(t.status, ScanStatus::Success);
        assert_eq!(t.start_time_ms, Some(5));
        assert_eq!(t.task_id.as_deref(), Some("t"));
    }

    #[test]
    fn a_reason_never_carries_the_whole_value() {
        let body = format!(r#"{{"Task":[{{"Id":"{}"}}]}}"#, "x".repeat(100_000));
        let r = parse(&body).expect("valid");
        let expected = format!("\"{}\"… is not an integer", "x".repeat(40));
        assert_eq!(r.dropped[0].reason, expected);
    }

    #[test]
    fn api_strings_are_capped_on_a_character_boundary() {
        let long = "a".repeat(1_000_000);
        // 497 ASCII bytes then a 3-byte character that straddles the cut at 498.
        let straddling = format!("{}€€€{}", "b".repeat(497), "c".repeat(600));
        let body = serde_json::json!({"RequestId": long, "Task": [{
            "TaskId": long, "Name": straddling, "Source": long, "TaskType": long,
            "TargetType": long, "Status": long, "Modified": long,
        }]})
        .to_string();
        let r = parse(&body).expect("valid");
        let t = r.task.expect("task");
        let capped = format!("{}{TRUNCATED_MARKER}", "a".repeat(498));
        assert_eq!(capped.len(), MAX_LABEL_BYTES);
        for value in [
            t.task_id.as_deref(),
            t.source.as_deref(),
            t.task_type.as_deref(),
            t.target_type.as_deref(),
            Some(t.raw_status.as_str()),
            t.modified_raw.as_deref(),
            r.request_id.as_deref(),
        ] {
            assert_eq!(value, Some(capped.as_str()));
        }
        assert_eq!(t.status, ScanStatus::Unknown);
        assert_eq!(
            t.name,
            Some(format!("{}{TRUNCATED_MARKER}", "b".repeat(497)))
        );
        // At the limit nothing is cut.
        let exact = "d".repeat(MAX_LABEL_BYTES);
        assert_eq!(cap_label(exact.clone()), exact);
        let shifted = cap_label(format!("x{}", "€".repeat(200)));
        assert_eq!(shifted.len(), 496 + TRUNCATED_MARKER.len());
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
