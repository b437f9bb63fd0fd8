//! A request the client signs is accepted by an independent implementation of the official SDK
//! algorithm (tests/support/verify_signature.py, Python standard library only).
//!
//! Needs `python3`. Without it the test prints a notice and passes, except under `CI=true`, where a
//! missing tool fails the run so nothing silently stops being tested.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::FixedOffset;
use sas_image_scan_exporter::signing::SignatureVersion;
use sas_image_scan_exporter::{ClientOptions, SasClient};
use sas_image_scan_exporter::{Credentials, StaticProvider};
use sas_simulator::{RecordedRequest, Scenario, SimKey, Simulator};

const VERIFIER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/verify_signature.py"
);

fn verify(python: &str, req: &RecordedRequest, secret: &str) -> String {
    let input = serde_json::json!({
        "method": req.method, "uri": req.uri, "headers": req.headers, "secret": secret,
    });
    let mut child = Command::new(python)
        .arg(VERIFIER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("verifier runs");
    assert!(out.status.success(), "verifier failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn signatures_verify_with_the_sdk_algorithm() {
    if !common::require_tool("python3") {
        return;
    }
    let python = "python3";
    let sim = Simulator::start(Scenario::default())
        .await
        .expect("simulator");
    // A secret and token with characters that need encoding.
    let secret = "s3cr+t/with*odd~chars=";
    sim.add_key(SimKey {
        id: "STS.independent".into(),
        secret: secret.into(),
        security_token: Some("CAIS+test/token==".into()),
    });
    let digest = "8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
    for version in [SignatureVersion::V3, SignatureVersion::V1] {
        let client = SasClient::new(
            ClientOptions {
                endpoint: sim.url().parse().expect("simulator endpoint"),
                signature_version: version,
                timeout: Duration::from_secs(5),
                timezone: FixedOffset::east_opt(8 * 3600).expect("offset"),
            },
            Arc::new(StaticProvider::new(
                "static",
                Credentials::new(
                    "STS.independent",
                    secret,
                    Some("CAIS+test/token==".into()),
                    None,
                ),
            )),
        )
        .expect("client");
        client
            .describe_image_latest_scan_task(digest)
            .await
            .expect("the simulator accepts it");
        let req = sim.last_request().expect("recorded");
        assert_eq!(verify(python, &req, secret), "OK", "{version:?}");
        // The verifier can fail: the wrong secret does not verify.
        assert!(
            verify(python, &req, "other").starts_with("MISMATCH "),
            "{version:?}"
        );
    }
}
