//! The status page as a browser shows it: headless Chromium (Debian's `chromium`) loads `/` from the
//! exporter running in-process against the demo's simulator, takes a screenshot, dumps the rendered
//! DOM, and runs the inline sorting script.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use sas_image_scan_exporter::demo::{Demo, demo_targets};

/// Runs headless Chromium with a fresh profile and nothing that phones home.
async fn chromium(profile: &Path, args: Vec<String>) -> Output {
    let mut command = Command::new("chromium");
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command.args(args);
    // Blocking: run it off the runtime's workers so the exporter keeps answering.
    tokio::task::spawn_blocking(move || run_with_timeout(command, Duration::from_secs(120)))
        .await
        .expect("chromium thread")
}

/// The target table's rows in the dumped DOM, each as its cells' inner HTML.
fn rows(dom: &str) -> Vec<Vec<String>> {
    let table = dom.find("id=\"targets\"").expect("targets table");
    let start = dom[table..].find("<tbody>").expect("tbody") + table;
    let end = dom[start..].find("</tbody>").expect("end of tbody") + start;
    dom[start..end]
        .split("<tr")
        .skip(1)
        .map(|row| row.split("<td").skip(1).map(str::to_owned).collect())
        .collect()
}

fn sort_key(cell: &str) -> f64 {
    let (_, rest) = cell.split_once("data-sort=\"").expect("data-sort");
    rest.split('"')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("numeric key")
}

fn digest_of(cell: &str) -> String {
    let (before, _) = cell.split_once("</code>").expect("code");
    before.rsplit_once('>').expect("digest text").1.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_status_page() {
    if !require_tool("chromium") {
        return;
    }
    // Sped up so that the scans are spread over many states by the time the page is loaded.
    let demo = Demo::start_with_speed(20.0).await.expect("demo");
    let exporter = start(&demo.config()).await;
    wait_ready(&exporter).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = format!("http://{}/", exporter.addrs[0]);
    let dir = TempDir::new("sas-chromium");
    let digests: Vec<String> = demo_targets().into_iter().map(|t| t.digest).collect();
    // `prod` discovers every demo image, `intl` lists four of them.
    let mut all_rows: Vec<String> = digests
        .iter()
        .cloned()
        .chain(demo.config().targets.into_iter().map(|t| t.digest))
        .collect();
    all_rows.sort();

    // A screenshot of a real page, not of an error page.
    let png = dir.path().join("status.png");
    let out = chromium(
        &dir.path().join("profile-shot"),
        vec![format!("--screenshot={}", png.display()), url.clone()],
    )
    .await;
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}); chromium said:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 10 * 1024,
        "screenshot is only {} bytes",
        bytes.len()
    );

    // The rendered DOM holds every target.
    let out = chromium(
        &dir.path().join("profile-dom"),
        vec!["--dump-dom".to_owned(), url.clone()],
    )
    .await;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("Scans by state"), "{dom}");
    for d in &digests {
        assert!(dom.contains(&format!(">{d}</code>")), "{d} missing:\n{dom}");
    }
    let table = rows(&dom);
    assert_eq!(table.len(), all_rows.len());
    for account in ["prod", "intl"] {
        assert!(
            dom.contains(&format!("<tr><td>{account}</td>")),
            "no {account} row"
        );
    }
    for state in ["FAIL", "SUCCESS", "NONE", "UNKNOWN"] {
        assert!(
            dom.contains(&format!("<span class=\"l\">{state}</span>")),
            "no {state} card"
        );
    }
    assert!(dom.contains("PAUSED_BY_OPERATOR"), "raw status shown");

    // The inline script sorts: click "Digest" (text) and then "Last success" (numeric).
    let html = get(&exporter, "/", &[]).await.body;
    // Columns: State, Account, Digest, Labels, Source, Vulnerabilities, Running, Latest scan,
    // Poll, Last success, Last error.
    for (column, clicks) in [(2, 1), (9, 1), (5, 1)] {
        let click = format!(
            "<script>for (let i = 0; i < {clicks}; i++) document.querySelectorAll('#targets th')[{column}].click();</script></body>"
        );
        let page = dir.path().join(format!("sorted-{column}.html"));
        std::fs::write(&page, html.replace("</body>", &click)).expect("write page");
        let out = chromium(
            &dir.path().join(format!("profile-sort-{column}")),
            vec![
                "--dump-dom".to_owned(),
                format!("file://{}", page.display()),
            ],
        )
        .await;
        let dom = String::from_utf8_lossy(&out.stdout);
        let table = rows(&dom);
        assert_eq!(table.len(), all_rows.len(), "{dom}");
        if column == 2 {
            let shown: Vec<String> = table.iter().map(|r| digest_of(&r[2])).collect();
            assert_eq!(shown, all_rows, "sorted by digest");
            assert!(
                dom.contains("<th aria-sort=\"ascending\">Digest</th>"),
                "{dom}"
            );
        } else {
            let keys: Vec<f64> = table.iter().map(|r| sort_key(&r[column])).collect();
            assert!(
                keys.windows(2).all(|w| w[0] <= w[1]),
                "sorted by column {column}: {keys:?}"
            );
        }
    }

    exporter.shutdown().await;
}
