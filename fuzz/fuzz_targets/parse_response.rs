//! The response parser: any bytes, any zone. It must never panic, and what it accepts must hold
//! together: a latest task exactly when there were tasks, one that survives the state file's JSON.
#![no_main]

use chrono::FixedOffset;
use libfuzzer_sys::fuzz_target;
use sas_image_scan_exporter::{ScanTask, parse_api_time, parse_response};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the zone (about ±23.8 h in 11¼-minute steps); the whole input is the
    // body, so JSON seeds stay JSON.
    let offset = (i32::from(data.first().copied().unwrap_or(128)) % 255 - 127) * 675;
    let zone = FixedOffset::east_opt(offset).expect("within a day");
    if let Ok(r) = parse_response(data, zone) {
        assert_eq!(r.task.is_some(), r.tasks_in_response > 0);
        if let Some(task) = r.task {
            // The state file keeps tasks as JSON; they must come back equal.
            let json = serde_json::to_string(&task).expect("a task serialises");
            let back: ScanTask = serde_json::from_str(&json).expect("a saved task reads back");
            assert_eq!(back, task);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_api_time(s, zone);
    }
});
