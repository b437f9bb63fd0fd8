//! The config and target-file parsers: any text. Errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sas_image_scan_exporter::config::{self, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Without an environment, and with one in which every variable starting with A is set, so
    // `${...}` expansion is exercised both ways.
    let none = |_: &str| None;
    let some = |name: &str| name.starts_with('A').then(|| format!("v{name}"));
    for env in [&none as &dyn Fn(&str) -> Option<String>, &some] {
        if let Ok(c) = Config::parse(text, "fuzz.yml", env) {
            let _ = c.summary();
        }
        let _ = config::parse_targets(text, "fuzz.yml", env);
    }
    let _ = config::normalize_digest(text);
});
