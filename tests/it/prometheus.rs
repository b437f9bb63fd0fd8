//! The Prometheus side of the project: the rule file passes `promtool check rules` and its unit
//! tests, every alert is complete and documented, the dashboard is an importable Grafana model,
//! and, end to end, a real `prometheus` server scraping the exporter (itself polling the
//! simulator) parses and answers every dashboard and alert expression and fires the expected
//! alerts.
//!
//! Alerts with a `for:` duration (up to 1h) cannot fire within a test, so the end-to-end test
//! loads a copy of prometheus/alerts.yml with every `for:` set to 0s. The value thresholds are
//! kept as they ship: the simulator's tasks are dated relative to now (a scan started 3h ago, one
//! finished 8 days ago) so that they cross them.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use marked_yaml::Node;
use sas_simulator::{Fault, FaultScope, Scenario, Simulator};
use serde_json::{Value, json};

/// Where every `runbook_url` points, up to the anchor.
const RUNBOOK_BASE: &str = "https://example.com/sas-image-scan-exporter/docs/runbook.md";

/// Every alert the rule file must define.
const ALERTS: [&str; 21] = [
    "SasImageScanFailed",
    "SasImageScanTimedOut",
    "SasImageScanStuck",
    "SasImageScanStale",
    "SasImageNeverScanned",
    "SasImageScanStatusUnknown",
    "SasImageScanDataNotRefreshed",
    "SasExporterApiThrottled",
    "SasExporterApiErrorRatioHigh",
    "SasExporterTargetsOverdue",
    "SasExporterConfigReloadFailed",
    "SasExporterCredentialsExpiring",
    "SasExporterDown",
    "SasExporterAbsent",
    "SasRunningImageScanFailed",
    "SasRunningImageNeverScanned",
    "SasRunningImageScanStale",
    "SasRunningImageVulnerable",
    "SasExporterDiscoveryDown",
    "SasExporterDiscoveryStale",
    "SasExporterDiscoveryTargetsDropped",
];

fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_path(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo_path("prometheus"))
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn rules_and_config_pass_promtool() {
    if !require_tool("promtool") {
        return;
    }
    let out = promtool(&["check", "rules", "alerts.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool(&["check", "config", "prometheus.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

// ---- The rule file, read as YAML --------------------------------------------------------------

fn scalar<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.as_mapping()?.get_scalar(key).map(|s| s.as_str())
}

/// Every rule of every group, as (alert name or record name, the rule's node).
fn rules(yaml: &str) -> Vec<(String, bool, Node)> {
    let doc = marked_yaml::parse_yaml(0, yaml).expect("alerts.yml is YAML");
    let groups = doc
        .as_mapping()
        .and_then(|m| m.get_sequence("groups"))
        .expect("groups");
    let mut out = Vec::new();
    for group in groups.iter() {
        let rules = group
            .as_mapping()
            .and_then(|m| m.get_sequence("rules"))
            .expect("rules");
        for rule in rules.iter() {
            match (scalar(rule, "alert"), scalar(rule, "record")) {
                (Some(a), None) => out.push((a.to_owned(), true, rule.clone())),
                (None, Some(r)) => out.push((r.to_owned(), false, rule.clone())),
                _ => panic!("a rule is neither an alert nor a recording rule"),
            }
        }
    }
    out
}

/// GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_is_complete_documented_and_tested() {
    let rules = rules(&read("prometheus/alerts.yml"));
    let runbook = read("docs/runbook.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(anchor)
        .collect();
    let tests = read("prometheus/alerts_test.yml");
    let readme = read("README.md");

    let names: Vec<&str> = rules.iter().filter(|r| r.1).map(|r| r.0.as_str()).collect();
    assert_eq!(names, ALERTS, "the alerts, in file order");

    for (name, is_alert, rule) in &rules {
        let expr = scalar(rule, "expr").expect("expr");
        if !is_alert {
            // Thresholds: the one place to change them.
            assert!(name.starts_with("sas:threshold_"), "{name}");
            assert!(expr.starts_with("vector("), "{name}: {expr}");
            continue;
        }
        let labels = rule.as_mapping().and_then(|m| m.get_mapping("labels"));
        let severity = labels.and_then(|l| l.get_scalar("severity"));
        assert!(
            severity.is_some_and(|s| ["critical", "warning", "info"].contains(&s.as_str())),
            "{name}: severity"
        );
        let annotations = rule
            .as_mapping()
            .and_then(|m| m.get_mapping("annotations"))
            .unwrap_or_else(|| panic!("{name}: annotations"));
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                annotations
                    .get_scalar(key)
                    .is_some_and(|s| !s.as_str().trim().is_empty()),
                "{name}: {key}"
            );
        }
        let url = annotations.get_scalar("runbook_url").expect("url").as_str();
        let (base, fragment) = url.split_once('#').expect("runbook_url has an anchor");
        assert_eq!(base, RUNBOOK_BASE, "{name}");
        assert_eq!(fragment, name.to_lowercase(), "{name}");
        assert!(
            anchors.contains(fragment),
            "{name}: docs/runbook.md has no section #{fragment}"
        );
        if expr.contains("sas_image_scan_") {
            let description = annotations.get_scalar("description").expect("d").as_str();
            for label in ["{{ $labels.digest }}", "{{ $labels.image }}"] {
                assert!(description.contains(label), "{name}: {label}");
            }
        }
        // Tested firing and not firing (each case names the alert once).
        assert!(
            tests.matches(&format!("alertname: {name}\n")).count() >= 2,
            "{name}: alerts_test.yml lacks firing and non-firing cases"
        );
        assert!(readme.contains(name), "{name}: not described in README.md");
    }
}

// ---- The dashboard ----------------------------------------------------------------------------

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboards/sas-image-scan.json")).expect("dashboard is JSON")
}

const DS_REF: &str = "${datasource}";

#[test]
fn dashboard_is_an_importable_grafana_model() {
    let d = dashboard();
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
        && i["type"] == "datasource"
        && i["pluginId"] == "prometheus"));
    let requires = d["__requires"].as_array().expect("__requires");
    let required: BTreeSet<(String, String)> = requires
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap_or_default().to_owned(),
                r["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(required.contains(&("grafana".into(), "grafana".into())));
    assert!(required.contains(&("datasource".into(), "prometheus".into())));
    assert!(d["schemaVersion"].as_i64().is_some_and(|v| v >= 36));
    assert!(d["uid"].is_string() && d["title"].is_string());
    assert!(d["id"].is_null(), "exported dashboards carry no id");

    let vars = d["templating"]["list"].as_array().expect("variables");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("variable {name}"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    assert_eq!(ds["current"]["value"], "${DS_PROMETHEUS}");
    for name in ["job", "instance", "image", "team"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], DS_REF, "{name}");
        let q = v["query"]["query"].as_str().expect("query");
        assert!(q.starts_with("label_values(") && q.ends_with(&format!(", {name})")));
        assert_eq!(v["includeAll"], true, "{name}");
    }

    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel has no title: {p}");
        assert!(
            ids.insert(p["id"].as_i64().expect("id")),
            "{title}: duplicate id"
        );
        if p["type"] == "row" {
            // A row only heads the panels after it. Kept expanded, it holds none itself, so
            // every panel stays in the top-level list and gets the checks below.
            assert_eq!(p["collapsed"], false, "{title}: rows stay expanded");
            assert!(
                p["panels"].as_array().is_some_and(|ps| ps.is_empty()),
                "{title}: an expanded row holds no panels"
            );
            assert!(p["gridPos"]["y"].is_number(), "{title}: gridPos");
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|s| s.len() > 20),
            "{title}: description"
        );
        assert!(
            p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_some_and(|u| !u.is_empty()),
            "{title}: unit"
        );
        assert_eq!(p["datasource"]["uid"], DS_REF, "{title}");
        assert!(p["gridPos"]["w"].is_number() && p["gridPos"]["h"].is_number());
        let ty = p["type"].as_str().expect("type");
        assert!(
            required.contains(&("panel".into(), ty.into())),
            "{title}: panel type {ty} not in __requires"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], DS_REF, "{title}");
            let expr = t["expr"].as_str().expect("expr");
            if expr.contains("rate(") {
                assert!(
                    expr.matches("rate(").count() == expr.matches("[$__rate_interval])").count(),
                    "{title}: rates must use $__rate_interval: {expr}"
                );
            }
        }
    }
    let titles: BTreeSet<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in PANELS_WITH_DATA {
        assert!(titles.contains(want), "missing panel {want}");
    }
}

/// Panels that must show data for the end-to-end scenario: all but those about discovery,
/// running images, vulnerabilities and refresh triggers, which need discovery sources.
const PANELS_WITH_DATA: [&str; 21] = [
    "Accounts",
    "Current scans by state",
    "Digests with failing polls",
    "Failed scans",
    "Timed-out scans",
    "Stuck scans",
    "Stale scans",
    "Never-scanned images",
    "Scan duration distribution",
    "Scan duration over time",
    "Images finished",
    "Data freshness",
    "Targets overdue",
    "API request rate",
    "API errors by code",
    "Throttling",
    "API error ratio",
    "API latency quantiles",
    "API requests by action",
    "Listing vs task requests",
    "Task requests per target per hour",
];

/// Replaces Grafana's variables as Grafana would with "All" selected and default text boxes.
fn substitute(expr: &str, dashboard: &Value) -> String {
    let mut s = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace(DS_REF, "");
    let vars = dashboard["templating"]["list"].as_array().expect("vars");
    for v in vars {
        let name = v["name"].as_str().expect("name");
        let value = match v["type"].as_str() {
            Some("textbox" | "constant") => v["query"].as_str().expect("value").to_owned(),
            Some("query") => v["allValue"].as_str().unwrap_or(".*").to_owned(),
            _ => continue,
        };
        s = s
            .replace(&format!("${{{name}}}"), &value)
            .replace(&format!("${name}"), &value);
    }
    assert!(!s.contains('$'), "unsubstituted variable in {s}");
    s
}

/// `label_values(QUERY, LABEL)` is Grafana's, not PromQL; `count by (LABEL) (QUERY)` returns
/// exactly the values Grafana would offer.
fn variable_query(q: &str) -> (String, String) {
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unsupported variable query {q}"));
    let (query, label) = inner.rsplit_once(',').expect("label_values(query, label)");
    let label = label.trim().to_owned();
    (format!("count by ({label}) ({query})"), label)
}

// ---- End to end -------------------------------------------------------------------------------

fn task(status: &str, start_ms: i64, finish_ms: Option<i64>, id: i64) -> Value {
    let modified = (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let mut t = json!({
        "Status": status, "Modified": modified, "Finish": 1, "Source": "openapi",
        "TaskType": "IMAGE_SCAN", "Name": "IMAGE_SCAN", "TaskId": format!("task{id}"), "Id": id,
        "TargetType": "IMAGE", "StartTime": start_ms,
    });
    if let Some(f) = finish_ms {
        t["FinishTime"] = json!(f);
    }
    t
}

struct Prom {
    http: reqwest::Client,
    base: String,
    log: PathBuf,
}

impl Prom {
    /// A GET of the HTTP API; `None` while the server does not answer (still starting).
    async fn try_get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .ok()?;
        let text = resp.text().await.ok()?;
        Some(serde_json::from_str(&text).unwrap_or_else(|_| panic!("GET {path}: not JSON: {text}")))
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        match self.try_get(path, query).await {
            Some(v) => v,
            None => panic!("GET {path} failed\n{}", self.log_tail()),
        }
    }

    /// An instant query; panics unless Prometheus accepted it. Returns the result vector.
    async fn query(&self, what: &str, q: &str) -> Vec<Value> {
        let v = self.get("/api/v1/query", &[("query", q)]).await;
        assert_eq!(v["status"], "success", "{what}: {q}\n{v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "prometheus log (tail):\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }

    /// Polls `f` every 250 ms for up to `secs`.
    async fn eventually<F, Fut>(&self, what: &str, secs: u64, f: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A `prometheus` server scraping `exporter` every second with the shipped rules, every `for:`
/// zeroed (see the module comment) and each `(from, to)` of `patches` replaced in them; its data
/// directory, the process (killed on drop) and a client for its API.
fn start_prometheus(
    exporter: std::net::SocketAddr,
    patches: &[(&str, &str)],
) -> (TempDir, KillOnDrop, Prom) {
    let dir = TempDir::new("sas-prometheus");
    let mut zeroed = 0;
    let mut rules: String = read("prometheus/alerts.yml")
        .lines()
        .map(|l| {
            let indent = l.len() - l.trim_start().len();
            if l.trim_start().starts_with("for:") {
                zeroed += 1;
                format!("{}for: 0s\n", &l[..indent])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(zeroed >= 5, "expected `for:` durations to zero");
    for (from, to) in patches {
        assert!(rules.contains(from), "the rules have no {from:?} to patch");
        rules = rules.replace(from, to);
    }
    std::fs::write(dir.path().join("alerts.yml"), rules).expect("write rules");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [alerts.yml]\n\
             scrape_configs:\n  - job_name: sas-image-scan\n    static_configs:\n      - targets: [\"{exporter}\"]\n"
        ),
    )
    .expect("write config");
    let port = free_port();
    let log = dir.path().join("prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start prometheus");
    let prom = Prom {
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    (dir, KillOnDrop(child), prom)
}

fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["metric"][name]
        .as_str()
        .or_else(|| series["labels"][name].as_str())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_evaluates_dashboard_and_alerts() {
    if !require_tool("prometheus") || !require_tool("promtool") {
        return;
    }
    let now = chrono::Utc::now().timestamp_millis();
    let (min, hour, day) = (60_000, 3_600_000, 86_400_000);
    let d = |n| digest(n);
    let (failed, timed_out, never, healthy, stuck, stale, denied) =
        (d(1), d(2), d(3), d(4), d(5), d(6), d(7));
    let scenario = Scenario::default()
        .with_tasks(
            &failed,
            vec![task("FAIL", now - 10 * min, Some(now - 5 * min), 11)],
        )
        .with_tasks(
            &timed_out,
            vec![task("TIMOUT", now - 70 * min, Some(now - 10 * min), 12)],
        )
        .with_tasks(&never, vec![])
        .with_tasks(
            &healthy,
            vec![task("SUCCESS", now - 4 * min, Some(now - 2 * min), 14)],
        )
        .with_tasks(&stuck, vec![task("PROCESSING", now - 3 * hour, None, 15)])
        .with_tasks(
            &stale,
            vec![task(
                "SUCCESS",
                now - 8 * day - 5 * min,
                Some(now - 8 * day),
                16,
            )],
        );
    let sim = Simulator::start(scenario).await.expect("simulator");
    // A digest the account may not read (its polls keep failing), and a short burst of throttling
    // (retried, then answered), so the error panels have data.
    sim.inject(
        FaultScope::Digest(denied.clone()),
        Fault::error(403, "NoPermission"),
    );
    sim.inject(
        FaultScope::Digest(healthy.clone()),
        Fault::error(400, "Throttling.User").times(2),
    );
    let teams = [
        (&failed, "failing"),
        (&timed_out, "timing"),
        (&never, "unscanned"),
        (&healthy, "healthy"),
        (&stuck, "stuck"),
        (&stale, "stale"),
        (&denied, "denied"),
    ];
    // A second account whose key no longer works: its copy of the failed digest scanned fine,
    // but it never gets an answer, so only its targets go stale and only prod's copy fails.
    let intl_only = d(8);
    let intl_sim = Simulator::start(Scenario::default().with_tasks(
        &failed,
        vec![task("SUCCESS", now - 4 * min, Some(now - 2 * min), 21)],
    ))
    .await
    .expect("intl simulator");
    intl_sim.inject(
        FaultScope::Global,
        Fault::error(404, "InvalidAccessKeyId.NotFound"),
    );
    let mut targets: Vec<_> = teams.iter().map(|(d, team)| target(d, team)).collect();
    for d in [&failed, &intl_only] {
        targets.push(sas_image_scan_exporter::config::Target {
            account: "intl".to_owned(),
            ..target(d, "intl")
        });
    }
    let polling = polling(2, 1, 50.0, 4);
    let mut cfg = config(&sim, targets, polling.clone());
    cfg.accounts.push(account("intl", &intl_sim, &polling));
    let exporter = start(&cfg).await;
    wait_ready(&exporter).await;
    let scrape = get(&exporter, "/metrics", &[]).await;
    assert_eq!(
        promtool_check(&scrape.body),
        "",
        "promtool check metrics on a live scrape"
    );

    // Prometheus with the shipped rules, `for:` durations zeroed (see the module comment).
    let exporter_addr = exporter.addrs[0];
    let (_dir, _prometheus, prom) = start_prometheus(exporter_addr, &[]);
    prom.eventually("the exporter target to be up", 30, || async {
        let v = prom.try_get("/api/v1/targets", &[]).await;
        v.unwrap_or_default()["data"]["activeTargets"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["health"] == "up"))
    })
    .await;
    // Enough scrapes that rates over 1m have two points and every series is in.
    prom.eventually("a few scrapes", 30, || async {
        let r = prom
            .query(
                "scrapes",
                r#"count_over_time(up{job="sas-image-scan"}[1m]) >= 4"#,
            )
            .await;
        !r.is_empty()
    })
    .await;

    // Every dashboard expression parses; every panel has data.
    let dash = dashboard();
    for p in dash["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().expect("title");
        if p["type"] == "row" {
            continue;
        }
        let mut rows = 0;
        for t in p["targets"].as_array().expect("targets") {
            let q = substitute(t["expr"].as_str().expect("expr"), &dash);
            rows += prom.query(title, &q).await.len();
        }
        if PANELS_WITH_DATA.contains(&title) {
            assert!(rows > 0, "panel {title:?} has no data");
        }
    }
    // The tables list exactly the digests they are about.
    for (title, want) in [
        ("Failed scans", &failed),
        ("Timed-out scans", &timed_out),
        ("Stuck scans", &stuck),
        ("Stale scans", &stale),
        ("Never-scanned images", &never),
    ] {
        let p = dash["panels"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["title"] == title))
            .expect("panel");
        let q = substitute(p["targets"][0]["expr"].as_str().expect("expr"), &dash);
        let digests: Vec<String> = prom
            .query(title, &q)
            .await
            .iter()
            .map(|s| label(s, "digest").to_owned())
            .collect();
        assert_eq!(digests, vec![want.clone()], "{title}");
    }
    // Template variables offer the expected values.
    for v in dash["templating"]["list"].as_array().expect("vars") {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().expect("name");
        let (q, label_name) = variable_query(v["query"]["query"].as_str().expect("query"));
        let q = substitute(&q, &dash);
        let values: BTreeSet<String> = prom
            .query(name, &q)
            .await
            .iter()
            .map(|s| label(s, &label_name).to_owned())
            .collect();
        let expected: BTreeSet<String> = match name {
            "account" => ["default".to_owned(), "intl".to_owned()].into(),
            "job" => ["sas-image-scan".to_owned()].into(),
            "instance" => [exporter_addr.to_string()].into(),
            // The denied digest never had a successful poll, so it has no status series.
            "image" => teams
                .iter()
                .filter(|(_, t)| *t != "denied")
                .map(|(_, t)| format!("registry.example.com/app:{t}"))
                .collect(),
            "team" => teams
                .iter()
                .filter(|(_, t)| *t != "denied")
                .map(|(_, t)| (*t).to_owned())
                .collect(),
            // From sas_image_running_containers, which this scenario (no discovery source) does
            // not produce.
            "cluster" | "namespace" => BTreeSet::new(),
            other => panic!("unexpected variable {other}"),
        };
        assert_eq!(values, expected, "variable {name}");
    }

    // Every alert expression parses and has been evaluated without error.
    let alert_count = read("prometheus/alerts.yml").matches("- alert: ").count();
    prom.eventually("every rule evaluated", 20, || async {
        let v = prom.get("/api/v1/rules", &[]).await;
        let rules: Vec<&Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        rules.iter().all(|r| r["health"] == "ok")
            && rules.iter().filter(|r| r["type"] == "alerting").count() == alert_count
    })
    .await;
    let v = prom.get("/api/v1/rules", &[]).await;
    let mut with_data = BTreeSet::new();
    for g in v["data"]["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            if r["type"] != "alerting" {
                continue;
            }
            let name = r["name"].as_str().expect("name");
            let q = r["query"].as_str().expect("query");
            if !prom.query(name, q).await.is_empty() {
                with_data.insert(name.to_owned());
            }
        }
    }
    for name in [
        "SasImageScanFailed",
        "SasImageScanTimedOut",
        "SasImageScanStuck",
        "SasImageScanStale",
        "SasImageNeverScanned",
        "SasImageScanDataNotRefreshed",
    ] {
        assert!(
            with_data.contains(name),
            "{name}'s expression returned nothing"
        );
    }

    // The alerts the scenario calls for are firing, each about the right (account, digest).
    let one = |account: &str, digest: &String| -> BTreeSet<(String, String)> {
        [(account.to_owned(), digest.clone())].into()
    };
    let expected: BTreeMap<&str, BTreeSet<(String, String)>> = [
        ("SasImageScanFailed", one("default", &failed)),
        ("SasImageScanTimedOut", one("default", &timed_out)),
        ("SasImageNeverScanned", one("default", &never)),
        ("SasImageScanStuck", one("default", &stuck)),
        ("SasImageScanStale", one("default", &stale)),
        (
            "SasImageScanDataNotRefreshed",
            [
                ("default".to_owned(), denied.clone()),
                ("intl".to_owned(), failed.clone()),
                ("intl".to_owned(), intl_only.clone()),
            ]
            .into(),
        ),
    ]
    .into();
    let firing = || async {
        let v = prom.get("/api/v1/alerts", &[]).await;
        v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["state"] == "firing")
            .collect::<Vec<Value>>()
    };
    let about = |alerts: &[Value], name: &str| -> BTreeSet<(String, String)> {
        alerts
            .iter()
            .filter(|a| label(a, "alertname") == name)
            .map(|a| {
                (
                    label(a, "account").to_owned(),
                    label(a, "digest").to_owned(),
                )
            })
            .collect()
    };
    prom.eventually("the expected alerts to fire", 20, || async {
        let alerts = firing().await;
        expected
            .iter()
            .all(|(name, want)| about(&alerts, name) == *want)
    })
    .await;
    let alerts = firing().await;
    for (name, want) in &expected {
        assert_eq!(&about(&alerts, name), want, "{name}");
        for a in alerts.iter().filter(|a| label(a, "alertname") == *name) {
            let description = a["annotations"]["description"].as_str().unwrap_or_default();
            assert!(
                description.contains(label(a, "digest"))
                    && description.contains("registry.example.com/app:"),
                "{name}: {description}"
            );
        }
    }
    // The broken account's API errors are its own: an error-ratio alert, if it fires yet,
    // names intl and never the healthy account.
    for a in alerts
        .iter()
        .filter(|a| label(a, "alertname") == "SasExporterApiErrorRatioHigh")
    {
        assert_eq!(label(a, "account"), "intl", "{a}");
    }
    let names: BTreeSet<String> = alerts
        .iter()
        .map(|a| label(a, "alertname").to_owned())
        .collect();
    for quiet in [
        "SasExporterDown",
        "SasExporterAbsent",
        "SasExporterConfigReloadFailed",
    ] {
        assert!(!names.contains(quiet), "{quiet} fires: {names:?}");
    }

    exporter.shutdown().await;
}

/// The running-image and discovery alerts on a real Prometheus: the exporter discovers the
/// simulator's images and containers in one account, and a second account's listing is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_fires_the_running_image_and_discovery_alerts() {
    use sas_image_scan_exporter::config::{
        Config, DiscoveryConfig, ListingConfig, Location, Scanned, SourceKind,
    };
    use sas_simulator::{ContainerInstance, ImageInstance};

    if !require_tool("prometheus") || !require_tool("promtool") {
        return;
    }
    let now = chrono::Utc::now().timestamp_millis();
    let (hour, day) = (3_600_000, 86_400_000);
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let broken = Simulator::start(Scenario::default()).await.expect("sim");
    broken.inject(FaultScope::Global, Fault::error(403, "NoPermission"));
    let [failed, never, stale, vulnerable, healthy, idle] = [81, 82, 83, 84, 85, 86].map(digest);
    sim.set_tasks(
        &failed,
        vec![task("FAIL", now - hour, Some(now - hour / 2), 1)],
    );
    sim.set_tasks(&never, vec![]);
    sim.set_tasks(
        &stale,
        vec![task("SUCCESS", now - 9 * day, Some(now - 8 * day), 2)],
    );
    sim.set_tasks(
        &vulnerable,
        vec![task("SUCCESS", now - hour, Some(now - hour / 2), 3)],
    );
    sim.set_tasks(
        &healthy,
        vec![task("SUCCESS", now - hour, Some(now - hour / 2), 4)],
    );
    sim.set_tasks(
        &idle,
        vec![task("FAIL", now - hour, Some(now - hour / 2), 5)],
    );
    let workloads = [
        (&failed, "web"),
        (&never, "api"),
        (&stale, "legacy"),
        (&vulnerable, "shop"),
        (&healthy, "ok"),
    ];
    sim.set_images(
        [&failed, &never, &stale, &vulnerable, &healthy, &idle]
            .iter()
            .map(|d| ImageInstance {
                vul_count: Some(if *d == &vulnerable { 25 } else { 1 }),
                ..ImageInstance::new(d, "shop", &d[..6], "1")
            })
            .collect(),
    );
    let containers: Vec<ContainerInstance> = workloads
        .iter()
        .map(|(d, w)| ContainerInstance {
            cluster_name: Some("ack-prod".into()),
            namespace: Some("prod".into()),
            app_name: Some((*w).into()),
            pod: Some(format!("{w}-1")),
            image_digest: Some((*d).clone()),
            ..ContainerInstance::default()
        })
        .collect();
    sim.set_containers(containers);
    let source = |account: &str, kind: SourceKind| DiscoveryConfig {
        account: account.into(),
        kind,
        labels: BTreeMap::new(),
        keep_for: Duration::from_secs(3600),
        location: Location {
            file: "test".into(),
            line: 1,
            column: 1,
        },
    };
    let fast = || ListingConfig {
        refresh: Duration::from_millis(500),
        page_size: 50,
        filters: Vec::new(),
    };
    let polling = polling(3600, 3600, 50.0, 4);
    let config = Config {
        accounts: vec![
            account("default", &sim, &polling),
            account("broken", &broken, &polling),
        ],
        discovery: vec![
            source(
                "default",
                SourceKind::SasImages {
                    listing: fast(),
                    scanned: Scanned::Any,
                },
            ),
            source("default", SourceKind::SasContainers { listing: fast() }),
            source(
                "broken",
                SourceKind::SasImages {
                    listing: fast(),
                    scanned: Scanned::Any,
                },
            ),
        ],
        polling,
        ..Config::default()
    };
    let exporter = start(&config).await;
    let (_dir, _prometheus, prom) = start_prometheus(
        exporter.addrs[0],
        &[(
            "record: sas:threshold_discovery_stale_seconds\n        expr: vector(900)",
            "record: sas:threshold_discovery_stale_seconds\n        expr: vector(3)",
        )],
    );
    prom.eventually("the exporter target to be up", 30, || async {
        let v = prom.try_get("/api/v1/targets", &[]).await;
        v.unwrap_or_default()["data"]["activeTargets"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["health"] == "up"))
    })
    .await;
    let firing = || async {
        let v = prom.get("/api/v1/alerts", &[]).await;
        v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["state"] == "firing")
            .collect::<Vec<Value>>()
    };
    // Each alert by the labels that say what it is about.
    let about = |alerts: &[Value], name: &str, keys: &[&str]| -> BTreeSet<Vec<String>> {
        alerts
            .iter()
            .filter(|a| label(a, "alertname") == name)
            .map(|a| keys.iter().map(|k| label(a, k).to_owned()).collect())
            .collect()
    };
    let running = |d: &String, w: &str| -> BTreeSet<Vec<String>> {
        [vec![
            "default".to_owned(),
            d.clone(),
            "ack-prod".to_owned(),
            "prod".to_owned(),
            w.to_owned(),
        ]]
        .into()
    };
    let source_key = |account: &str, source: &str| -> BTreeSet<Vec<String>> {
        [vec![account.to_owned(), source.to_owned()]].into()
    };
    const WORKLOAD: [&str; 5] = ["account", "digest", "cluster", "namespace", "workload"];
    const SOURCE: [&str; 2] = ["account", "source"];
    // (alert, the labels that say what it is about, the label values expected to fire).
    type Expected<'a> = Vec<(&'a str, &'a [&'a str], BTreeSet<Vec<String>>)>;
    let expected: Expected = vec![
        (
            "SasRunningImageScanFailed",
            &WORKLOAD,
            running(&failed, "web"),
        ),
        (
            "SasRunningImageNeverScanned",
            &WORKLOAD,
            running(&never, "api"),
        ),
        (
            "SasRunningImageScanStale",
            &WORKLOAD,
            running(&stale, "legacy"),
        ),
        (
            "SasRunningImageVulnerable",
            &WORKLOAD,
            running(&vulnerable, "shop"),
        ),
        (
            "SasExporterDiscoveryDown",
            &SOURCE,
            source_key("broken", "sas_images"),
        ),
    ];
    prom.eventually("the running-image and discovery alerts", 60, || async {
        let alerts = firing().await;
        expected
            .iter()
            .all(|(name, keys, want)| about(&alerts, name, keys) == *want)
    })
    .await;
    let alerts = firing().await;
    for (name, keys, want) in &expected {
        assert_eq!(&about(&alerts, name, keys), want, "{name}");
    }
    let failed_alert = alerts
        .iter()
        .find(|a| label(a, "alertname") == "SasRunningImageScanFailed")
        .expect("the failed alert");
    assert_eq!(
        label(failed_alert, "image"),
        format!("shop/{}:1", &failed[..6])
    );
    for quiet in [
        "SasExporterDiscoveryStale",
        "SasExporterDiscoveryTargetsDropped",
    ] {
        assert!(
            about(&alerts, quiet, &SOURCE).is_empty(),
            "{quiet} fired early"
        );
    }

    // No container listed any more: the running-image alerts resolve and the source that named
    // some digests and now names none says so.
    sim.set_containers(Vec::new());
    prom.eventually("targets dropped, running alerts resolved", 30, || async {
        let alerts = firing().await;
        about(&alerts, "SasExporterDiscoveryTargetsDropped", &SOURCE)
            == source_key("default", "sas_containers")
            && about(&alerts, "SasRunningImageScanFailed", &WORKLOAD).is_empty()
    })
    .await;

    // The image listing starts failing: down at once, stale once its last success is older
    // than the (patched) threshold.
    sim.inject(
        FaultScope::Action("DescribeImageInstances".into()),
        Fault::error(503, "ServiceUnavailable"),
    );
    prom.eventually("the image listing stale", 30, || async {
        let alerts = firing().await;
        about(&alerts, "SasExporterDiscoveryStale", &SOURCE) == source_key("default", "sas_images")
            && about(&alerts, "SasExporterDiscoveryDown", &SOURCE)
                == [
                    vec!["broken".to_owned(), "sas_images".to_owned()],
                    vec!["default".to_owned(), "sas_images".to_owned()],
                ]
                .into()
    })
    .await;
    exporter.shutdown().await;
}
