//! The HTML status page served at `/`: counts per scan state and the target table, colour-coded by
//! state, with the age of each digest's data and its last error.
//!
//! Everything shown comes from the snapshot and every string is escaped, since labels come from
//! config and statuses and errors from the API. The page makes no external requests: styles are
//! inline, and the only script is a few inline lines that sort the table when a header is clicked.
//! Without JavaScript the table is still complete, in its default order (problems first).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::aliyun::scan::{ScanState, ScanStatus, ScanTask};
use crate::build_info;
use crate::poll::store::{Snapshot, TargetState, UnixSeconds, unix_now};
use crate::targets::FileStatus;
use crate::telemetry::SourceRow;

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

/// The label shown for targets whose first poll has not ended yet; not one of the metric's states.
const PENDING: &str = "PENDING";

/// The state a target is shown in: a `sas_image_scan_status` state, or pending before its first
/// successful poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shown {
    Pending,
    State(ScanState),
}

impl Shown {
    fn of(t: &TargetState) -> Shown {
        t.data.state().map_or(Shown::Pending, Shown::State)
    }

    fn label(self) -> &'static str {
        match self {
            Shown::Pending => PENDING,
            Shown::State(s) => s.as_str(),
        }
    }

    /// The default row order: what needs attention first, healthy last.
    fn severity(self) -> usize {
        let Shown::State(state) = self else {
            return 3;
        };
        match state.status() {
            Some(ScanStatus::Fail) => 0,
            Some(ScanStatus::Timeout) => 1,
            Some(ScanStatus::Unknown) => 2,
            Some(ScanStatus::Start) => 4,
            Some(ScanStatus::MessageSend) => 5,
            Some(ScanStatus::PreAnalyzer) => 6,
            Some(ScanStatus::Processing) => 7,
            None => 8,
            Some(ScanStatus::Success) => 9,
        }
    }

    /// CSS class; the four active states share one colour.
    fn css_class(self) -> &'static str {
        let Shown::State(state) = self else {
            return "s-pending";
        };
        match state.status() {
            Some(ScanStatus::Fail) => "s-fail",
            Some(ScanStatus::Timeout) => "s-timeout",
            Some(ScanStatus::Unknown) => "s-unknown",
            None => "s-none",
            Some(ScanStatus::Success) => "s-success",
            Some(
                ScanStatus::Start
                | ScanStatus::MessageSend
                | ScanStatus::PreAnalyzer
                | ScanStatus::Processing,
            ) => "s-active",
        }
    }
}

/// How many targets are in each state, in the metric's order, then pending when any are.
fn shown_counts(snapshot: &Snapshot) -> Vec<(Shown, usize)> {
    let mut counts: Vec<(Shown, usize)> = ScanState::ALL
        .iter()
        .map(|s| (Shown::State(*s), 0))
        .collect();
    let mut pending = 0;
    for t in &snapshot.targets {
        match Shown::of(t) {
            Shown::Pending => pending += 1,
            shown => {
                if let Some(c) = counts.iter_mut().find(|(s, _)| *s == shown) {
                    c.1 += 1;
                }
            }
        }
    }
    if pending > 0 {
        counts.push((Shown::Pending, pending));
    }
    counts
}

/// Per account: its targets, how many ended badly, run, were never scanned or are pending, and
/// how many polls fail, so one broken account stands out at a glance.
fn accounts_table(html: &mut String, snapshot: &Snapshot) {
    #[derive(Default)]
    struct Row {
        targets: usize,
        bad: usize,
        active: usize,
        none: usize,
        pending: usize,
        failing: usize,
    }
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    for t in &snapshot.targets {
        let row = rows.entry(&t.account).or_default();
        row.targets += 1;
        row.failing += usize::from(t.up == Some(false));
        match Shown::of(t) {
            Shown::Pending => row.pending += 1,
            Shown::State(s) => match s.status() {
                None => row.none += 1,
                Some(st) if st.is_active() => row.active += 1,
                Some(ScanStatus::Fail | ScanStatus::Timeout | ScanStatus::Unknown) => row.bad += 1,
                Some(_) => {}
            },
        }
    }
    html.push_str(
        "<h2>Accounts</h2><table id=\"accounts\"><thead><tr><th>Account</th><th>Targets</th>\
         <th>Failed, timed out or unknown</th><th>Scanning</th><th>Never scanned</th>\
         <th>Pending</th><th>Failing polls</th></tr></thead><tbody>\n",
    );
    for (account, r) in rows {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(account),
            r.targets,
            r.bad,
            r.active,
            r.none,
            r.pending,
            r.failing
        );
    }
    html.push_str("</tbody></table>\n");
}

/// A coarse age such as "45s ago" or "3h 5m ago".
/// The discovery sources: whether each works, when it last listed completely, how many digests
/// it names, and why it fails (a refused `page_size` says so here).
fn sources_table(html: &mut String, sources: &[SourceRow], now: UnixSeconds) {
    if sources.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Discovery</h2><table id=\"sources\"><thead><tr><th>Source</th><th>Account</th>\
         <th>State</th><th>Last complete listing</th><th>Digests</th><th>Last error</th></tr></thead><tbody>\n",
    );
    for s in sources {
        let state = match s.health.up {
            Some(true) => "<span class=\"ok-poll\">up</span>",
            Some(false) => "<span class=\"fail-poll\">down</span>",
            None => "<span class=\"dim\">pending</span>",
        };
        let error = match &s.error {
            Some(e) => format!("<td class=\"err\">{}</td>", html_escape(e)),
            None => "<td class=\"dim\">none</td>".to_owned(),
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{state}</td>{}<td>{}</td>{error}</tr>",
            s.source,
            html_escape(&s.account),
            age_cell(s.health.last_success, now, "never"),
            s.health.targets,
        );
    }
    html.push_str("</tbody></table>\n");
}

fn format_age(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 1.0 {
        return "just now".to_owned();
    }
    let s = seconds as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if s < 60 {
        format!("{s}s ago")
    } else if s < 3600 {
        format!("{m}m ago")
    } else if s < 86_400 {
        format!("{h}h {m}m ago")
    } else {
        format!("{d}d {h}h ago")
    }
}

fn format_time(unix: UnixSeconds) -> String {
    chrono::DateTime::from_timestamp(unix as i64, 0).map_or_else(
        || "invalid time".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// A table cell showing how long ago `unix` was, with the exact time on hover and the age as the
/// sort key (missing times sort last).
fn age_cell(unix: Option<UnixSeconds>, now: UnixSeconds, missing: &str) -> String {
    match unix {
        Some(t) => format!(
            "<td class=\"age\" data-sort=\"{:.0}\" title=\"{}\">{}</td>",
            (now - t).max(0.0),
            format_time(t),
            format_age(now - t)
        ),
        None => format!("<td data-sort=\"1e15\" class=\"dim\">{missing}</td>"),
    }
}

/// What the latest task says about its timing: when it finished, or when it started.
fn scan_cell(task: Option<&ScanTask>, now: UnixSeconds) -> String {
    let ms = |v: Option<i64>| v.map(|v| v as f64 / 1000.0);
    let Some(task) = task else {
        return "<td data-sort=\"1e15\" class=\"dim\">no task</td>".to_owned();
    };
    let (verb, at) = if task.status.is_terminal() && task.finish_time_ms.is_some() {
        ("finished", ms(task.finish_time_ms))
    } else {
        ("started", ms(task.start_time_ms))
    };
    match at {
        Some(t) => format!(
            "<td class=\"age\" data-sort=\"{:.0}\" title=\"{verb} {}\">{verb} {}</td>",
            (now - t).max(0.0),
            format_time(t),
            format_age(now - t)
        ),
        None => "<td data-sort=\"1e15\" class=\"dim\">no time</td>".to_owned(),
    }
}

const STYLE: &str = "\
:root{--fail:#c62828;--timeout:#e65100;--unknown:#f9a825;--active:#1565c0;--none:#6a1b9a;\
--success:#2e7d32;--pending:#757575}\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em 2em;color:#212121;background:#fafafa}\
h1{margin:0 0 .2em;font-size:1.6em}h2{font-size:1.2em;margin:1.4em 0 .5em}\
.meta{color:#616161;margin:.2em 0}a{color:#1565c0}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(7.5em,1fr));gap:.6em;margin:1em 0}\
.card{padding:.5em .8em;border-radius:6px;color:#fff;background:var(--c)}\
.card .n{display:block;font-size:1.8em;font-weight:600;line-height:1.1}\
.card .l{font-size:.8em;letter-spacing:.03em}.card.zero{opacity:.35}\
.s-fail{--c:var(--fail)}.s-timeout{--c:var(--timeout)}.s-unknown{--c:var(--unknown)}\
.s-active{--c:var(--active)}.s-none{--c:var(--none)}.s-success{--c:var(--success)}.s-pending{--c:var(--pending)}\
.s-unknown.card,.s-unknown .badge{color:#212121}\
table{border-collapse:collapse;background:#fff;width:100%;font-size:.9em}\
th,td{border-bottom:1px solid #e0e0e0;padding:.35em .6em;text-align:left;vertical-align:top}\
th{background:#eeeeee;cursor:pointer;user-select:none;white-space:nowrap}\
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}\
thead tr{border-left:5px solid #eeeeee}tbody tr{border-left:5px solid var(--c)}tbody tr:hover{background:#f5f5f5}\
.badge{display:inline-block;padding:.1em .5em;border-radius:4px;color:#fff;background:var(--c);\
font-size:.85em;font-weight:600;white-space:nowrap}\
code{font-size:.85em}.digest{display:inline-block;max-width:9em;overflow:hidden;text-overflow:ellipsis;\
white-space:nowrap;vertical-align:bottom}.age{white-space:nowrap}.raw{color:#616161;font-size:.85em}\
.label{display:inline-block;background:#eceff1;border-radius:3px;padding:0 .35em;margin:.1em .2em .1em 0;font-size:.9em}\
.fail-poll{color:var(--fail);font-weight:600}.ok-poll{color:var(--success)}.dim{color:#9e9e9e}\
.err{color:var(--fail);min-width:13em;max-width:32em;overflow-wrap:anywhere}";

// Sorts by the clicked column: by the cells' numeric data-sort keys where the column has them
// (ages, state severity), else by their text. Clicking again reverses. Nothing is fetched.
const SCRIPT: &str = "\
for (const th of document.querySelectorAll('#targets th')) th.addEventListener('click', () => {\
const tb = th.closest('table').tBodies[0], i = th.cellIndex, asc = th.getAttribute('aria-sort') !== 'ascending';\
const rows = [...tb.rows].sort((a, b) => { const x = a.cells[i], y = b.cells[i];\
const d = 'sort' in x.dataset && 'sort' in y.dataset ? x.dataset.sort - y.dataset.sort \
: x.textContent.trim().localeCompare(y.textContent.trim()); return asc ? d : -d; });\
for (const h of th.parentNode.cells) h.removeAttribute('aria-sort');\
th.setAttribute('aria-sort', asc ? 'ascending' : 'descending'); tb.append(...rows); });";

/// The landing page: name, version, links, counts per state, target file problems (if any), and
/// the targets table.
pub(crate) fn render(
    snapshot: &Snapshot,
    telemetry_path: &str,
    file_problems: &[FileStatus],
    sources: &[SourceRow],
) -> String {
    render_at(snapshot, telemetry_path, file_problems, sources, unix_now())
}

/// A short list, above the targets, of the target files that could not be used as they are.
fn problems_section(files: &[FileStatus]) -> String {
    let mut html = String::from("<h2>Target file problems</h2><ul class=\"problems\">");
    for f in files {
        let _ = write!(
            html,
            "<li><code>{}</code>: {}</li>",
            html_escape(&f.path.display().to_string()),
            html_escape(f.error.as_deref().unwrap_or_default()),
        );
    }
    html.push_str("</ul>\n");
    html
}

fn render_at(
    snapshot: &Snapshot,
    telemetry_path: &str,
    file_problems: &[FileStatus],
    sources: &[SourceRow],
    now: UnixSeconds,
) -> String {
    let path = html_escape(telemetry_path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>SAS image scan exporter</title><style>{STYLE}</style></head><body>\n\
         <h1>SAS image scan exporter</h1>\
         <p class=\"meta\">Version {} (revision {}). Watches Alibaba Cloud Security Center image scans; \
         data is refreshed in the background.</p>\
         <p class=\"meta\"><a href=\"{path}\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · \
         <a href=\"/-/ready\">Readiness</a></p>\n",
        html_escape(build_info::VERSION),
        html_escape(build_info::REVISION),
    );

    html.push_str("<h2>Scans by state</h2><div class=\"cards\">");
    for (shown, n) in shown_counts(snapshot) {
        let zero = if n == 0 { " zero" } else { "" };
        let _ = write!(
            html,
            "<div class=\"card {}{zero}\"><span class=\"n\">{n}</span><span class=\"l\">{}</span></div>",
            shown.css_class(),
            shown.label(),
        );
    }
    html.push_str("</div>\n");

    let failing = snapshot
        .targets
        .iter()
        .filter(|t| t.up == Some(false))
        .count();
    let _ = writeln!(
        html,
        "<p class=\"meta\">{} targets · {failing} with failing polls · {} overdue · as of {}</p>",
        snapshot.targets.len(),
        snapshot.overdue(now),
        format_time(now),
    );

    if !file_problems.is_empty() {
        html.push_str(&problems_section(file_problems));
    }
    accounts_table(&mut html, snapshot);
    sources_table(&mut html, sources, now);

    html.push_str(
        "<h2>Targets</h2><table id=\"targets\"><thead><tr>\
         <th title=\"Click a header to sort\" aria-sort=\"ascending\">State</th><th>Account</th><th>Digest</th>\
         <th>Labels</th><th>Source</th><th>Vulnerabilities</th><th>Running</th><th>Latest scan</th>\
         <th>Poll</th><th>Last success</th><th>Last error</th>\
         </tr></thead><tbody>\n",
    );
    let mut rows: Vec<&TargetState> = snapshot.targets.iter().map(|t| t.as_ref()).collect();
    rows.sort_by(|a, b| {
        Shown::of(a)
            .severity()
            .cmp(&Shown::of(b).severity())
            .then_with(|| a.digest.cmp(&b.digest))
    });
    for t in rows {
        row(&mut html, t, now);
    }
    let _ = write!(
        html,
        "</tbody></table>\n<script>{SCRIPT}</script></body></html>\n"
    );
    html
}

/// The source, vulnerability and running-container cells: where the digest comes from, and
/// what discovery learned of it for free.
fn discovery_cells(t: &TargetState, now: UnixSeconds) -> String {
    let d = t.discovered.as_deref();
    let mut sources: Vec<String> = Vec::new();
    if t.configured {
        sources.push("configured".to_owned());
    }
    if let Some(d) = d {
        sources.extend(d.sources.iter().map(|s| (*s).to_owned()));
        if let Some(at) = d.leaves_at {
            sources.push(format!(
                "<span class=\"dim\">no longer listed; leaves in {}</span>",
                format_age((at - now).max(0.0))
            ));
        }
    }
    let vulns = match d
        .and_then(|d| d.image.as_ref())
        .and_then(|i| i.vulnerabilities)
    {
        Some(n) => format!("<td data-sort=\"{n}\">{n}</td>"),
        None => "<td data-sort=\"-1\" class=\"dim\">unknown</td>".to_owned(),
    };
    let running = match d {
        Some(d) if !d.running.is_empty() => {
            let total: u64 = d.running.iter().map(|(_, n)| u64::from(*n)).sum();
            let title: Vec<String> = d
                .running
                .iter()
                .map(|(w, n)| format!("{}/{}/{}: {n}", w.cluster, w.namespace, w.workload))
                .collect();
            format!(
                "<td data-sort=\"{total}\" title=\"{}\">{total}</td>",
                html_escape(&title.join("; "))
            )
        }
        _ => "<td data-sort=\"0\" class=\"dim\">0</td>".to_owned(),
    };
    format!("<td>{}</td>{vulns}{running}", sources.join(", "))
}

fn row(html: &mut String, t: &TargetState, now: UnixSeconds) {
    let shown = Shown::of(t);
    let state = shown.label();
    let task = t.data.task();
    // The raw value is the only hint what an UNKNOWN status means.
    let raw = match task {
        Some(task) if task.status == ScanStatus::Unknown => format!(
            " <span class=\"raw\">{}</span>",
            html_escape(&task.raw_status)
        ),
        _ => String::new(),
    };
    let labels: String = t
        .labels
        .iter()
        .filter(|(k, _)| !matches!(&**k, "digest" | "account"))
        .map(|(k, v)| {
            format!(
                "<span class=\"label\">{}={}</span>",
                html_escape(k),
                html_escape(v)
            )
        })
        .collect();
    let (poll, poll_key) = match t.up {
        Some(false) => ("<span class=\"fail-poll\">failing</span>", 0),
        None => ("<span class=\"dim\">pending</span>", 1),
        Some(true) => ("<span class=\"ok-poll\">ok</span>", 2),
    };
    let error = match &t.last_error {
        Some(e) => format!("<td class=\"err\">{}</td>", html_escape(e)),
        None => "<td class=\"dim\">none</td>".to_owned(),
    };
    let scan = if t.data.is_fetched() {
        scan_cell(task, now)
    } else {
        "<td data-sort=\"1e15\" class=\"dim\">not polled yet</td>".to_owned()
    };
    let digest = html_escape(&t.digest);
    let found = discovery_cells(t, now);
    let _ = writeln!(
        html,
        "<tr class=\"{}\"><td data-sort=\"{}\"><span class=\"badge\">{state}</span>{raw}</td>\
         <td>{}</td><td><code class=\"digest\" title=\"{digest}\">{digest}</code></td><td>{labels}</td>{found}{scan}<td data-sort=\"{poll_key}\">{poll}</td>{}{error}</tr>",
        shown.css_class(),
        shown.severity(),
        html_escape(&t.account),
        age_cell(t.last_success, now, "never"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`shown_counts`] by label, as the cards show them.
    fn state_counts(snapshot: &Snapshot) -> Vec<(&'static str, usize)> {
        shown_counts(snapshot)
            .into_iter()
            .map(|(s, n)| (s.label(), n))
            .collect()
    }
    use crate::aliyun::scan::ScanStatus;
    use crate::config::{Location, Target};
    use crate::poll::store::Known;
    use std::sync::Arc;
    use std::time::Duration;

    const NOW: UnixSeconds = 1_714_550_400.0;

    fn task(status: &str, start_ago: i64, finish_ago: Option<i64>) -> ScanTask {
        let ms = |ago: i64| (NOW as i64 - ago) * 1000;
        ScanTask {
            status: ScanStatus::from_api(status),
            raw_status: status.to_owned(),
            modified: None,
            modified_raw: None,
            start_time_ms: Some(ms(start_ago)),
            finish_time_ms: finish_ago.map(ms),
            finish: Some(1),
            source: None,
            task_type: None,
            name: None,
            task_id: None,
            id: None,
            target_type: None,
        }
    }

    fn state(n: u32, labels: &[(&str, &str)], data: Known) -> TargetState {
        let target = Target {
            digest: format!("{n:064x}"),
            account: "default".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            location: Location {
                file: "t".into(),
                line: 1,
                column: 1,
            },
        };
        let mut s = TargetState::new(&target, Duration::from_secs(600));
        if data.is_fetched() {
            s.up = Some(true);
            s.last_success = Some(NOW - 180.0);
        }
        s.data = data;
        s
    }

    fn snapshot(states: Vec<TargetState>) -> Snapshot {
        Snapshot::new(1, states.into_iter().map(Arc::new).collect())
    }

    #[test]
    fn target_file_problems_are_listed_above_the_targets() {
        let html = render(&snapshot(vec![]), "/metrics", &[], &[]);
        assert!(!html.contains("Target file problems"));
        let files = [FileStatus {
            path: "/t/<a>.yml".into(),
            error: Some("dangling symlink (points to <x>, which does not exist)".into()),
        }];
        let html = render(&snapshot(vec![]), "/metrics", &files, &[]);
        let list = html.find("<h2>Target file problems</h2>").expect("listed");
        assert!(list < html.find("<h2>Targets</h2>").expect("targets"));
        assert!(html.contains(
            "<li><code>/t/&lt;a&gt;.yml</code>: dangling symlink (points to &lt;x&gt;, which does not exist)</li>"
        ), "{html}");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn untrusted_strings_are_escaped_on_the_page() {
        let evil = "<img src=x onerror=alert(1)>";
        let mut failing = state(
            1,
            &[("image", evil), ("team", "a\"b")],
            Known::Task(task(evil, 60, None)),
        );
        failing.up = Some(false);
        failing.last_error = Some(format!("Forbidden: {evil} & more"));
        let html = render_at(&snapshot(vec![failing]), "/m\"><script>", &[], &[], NOW);
        assert!(!html.contains(evil), "{html}");
        assert!(!html.contains("/m\"><script>"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("team=a&quot;b"));
        assert!(html.contains("Forbidden: &lt;img src=x onerror=alert(1)&gt; &amp; more"));
        // Exactly one script element: the inline sorter.
        assert_eq!(html.matches("<script").count(), 1);
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn counts_per_state() {
        let s = snapshot(vec![
            state(1, &[], Known::Task(task("FAIL", 600, Some(300)))),
            state(2, &[], Known::Task(task("FAIL", 600, Some(300)))),
            state(3, &[], Known::Task(task("TIMOUT", 600, Some(300)))),
            state(4, &[], Known::NoTask),
            state(5, &[], Known::Task(task("PROCESSING", 600, None))),
            state(6, &[], Known::Task(task("SUCCESS", 600, Some(30)))),
            state(7, &[], Known::Task(task("PAUSED", 600, None))),
            state(8, &[], Known::NotPolled),
        ]);
        let counts: BTreeMap<&str, usize> = state_counts(&s).into_iter().collect();
        let want: BTreeMap<&str, usize> = [
            ("NONE", 1),
            ("START", 0),
            ("MESSAGE_SEND", 0),
            ("PRE_ANALYZER", 0),
            ("PROCESSING", 1),
            ("SUCCESS", 1),
            ("FAIL", 2),
            ("TIMEOUT", 1),
            ("UNKNOWN", 1),
            ("PENDING", 1),
        ]
        .into();
        assert_eq!(counts, want);
        let html = render_at(&s, "/metrics", &[], &[], NOW);
        assert!(html.contains("<span class=\"n\">2</span><span class=\"l\">FAIL</span>"));
        assert!(
            html.contains("card s-active zero\"><span class=\"n\">0</span><span class=\"l\">START")
        );
        assert!(html.contains("8 targets · 0 with failing polls"));
        // Without pending targets there is no PENDING card.
        let s = snapshot(vec![state(1, &[], Known::NoTask)]);
        assert_eq!(state_counts(&s).len(), ScanState::ALL.len());
    }

    #[test]
    fn rows_are_ordered_problems_first_and_colour_coded() {
        let s = snapshot(vec![
            state(1, &[], Known::Task(task("SUCCESS", 600, Some(30)))),
            state(2, &[], Known::NoTask),
            state(3, &[], Known::Task(task("FAIL", 7200, Some(3900)))),
            state(4, &[], Known::Task(task("PAUSED_BY_OPERATOR", 600, None))),
            state(5, &[], Known::Task(task("PROCESSING", 90, None))),
        ]);
        let html = render_at(&s, "/metrics", &[], &[], NOW);
        let order: Vec<usize> = (1..=5)
            .map(|n| html.find(&format!(">{n:064x}</code>")).expect("row"))
            .collect();
        // FAIL (3), UNKNOWN (4), PROCESSING (5), NONE (2), SUCCESS (1).
        assert!(order[2] < order[3] && order[3] < order[4] && order[4] < order[1]);
        assert!(order[1] < order[0]);
        assert!(html.contains("<tr class=\"s-fail\">"));
        assert!(html.contains("<tr class=\"s-active\">"));
        assert!(html.contains("UNKNOWN</span> <span class=\"raw\">PAUSED_BY_OPERATOR</span>"));
        assert!(html.contains(">finished 1h 5m ago</td>"));
        assert!(html.contains(">started 1m ago</td>"));
        assert!(html.contains(">3m ago</td>"));
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(0.4), "just now");
        assert_eq!(format_age(-5.0), "just now");
        assert_eq!(format_age(45.0), "45s ago");
        assert_eq!(format_age(185.0), "3m ago");
        assert_eq!(format_age(3.0 * 3600.0 + 300.0), "3h 5m ago");
        assert_eq!(format_age(8.0 * 86_400.0 + 7200.0), "8d 2h ago");
        assert_eq!(
            age_cell(None, NOW, "never"),
            "<td data-sort=\"1e15\" class=\"dim\">never</td>"
        );
    }
}
