//! The HTML status page served at `/`. Everything shown comes from the snapshot; every string is
//! escaped, since digests' labels come from config and errors from the API.

use std::fmt::Write as _;

use crate::build_info;
use crate::metrics::state_of;
use crate::state::Snapshot;

/// Escapes text for HTML element content and attribute values: the API's strings are untrusted.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn format_time(unix: Option<f64>) -> String {
    unix.and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
        .map_or_else(
            || "never".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

/// The landing page: name, version, links, and the targets table.
pub fn render(snapshot: &Snapshot, telemetry_path: &str) -> String {
    let path = html_escape(telemetry_path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>SAS image scan exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}code{{font-size:90%}}</style></head><body>\
         <h1>SAS image scan exporter</h1>\
         <p>Version {} (revision {}). Watches Alibaba Cloud Security Center image scans.</p>\
         <p><a href=\"{path}\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>\
         <h2>Targets ({})</h2><table><thead><tr><th>Digest</th><th>Labels</th><th>Status</th>\
         <th>Last success</th><th>Last error</th></tr></thead><tbody>\n",
        html_escape(build_info::VERSION),
        html_escape(build_info::REVISION),
        snapshot.targets.len(),
    );
    for t in &snapshot.targets {
        let labels = t
            .labels
            .iter()
            .skip(1)
            .map(|(k, v)| format!("{}={}", html_escape(k), html_escape(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let status = match &t.data {
            None => "not polled yet".to_owned(),
            Some(task) => state_of(task.as_ref()).to_owned(),
        };
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td>{labels}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&t.digest),
            html_escape(&status),
            format_time(t.last_success),
            html_escape(t.last_error.as_deref().unwrap_or("")),
        );
    }
    html.push_str("</tbody></table></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
