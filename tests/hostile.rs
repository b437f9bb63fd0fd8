//! The exporter under hostile clients and failing dependencies: credentials outages, stalled
//! readers, password floods, broken answers and broken files.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sas_image_scan_exporter::clock::Clock;
use sas_image_scan_exporter::config::CredentialsConfig;
use sas_image_scan_exporter::simulator::{Scenario, SimKey, Simulator, StsSimulator};

const ROLE: &str = "acs:ram::1234567890:role/sas-reader";
const BASE_ID: &str = "LTAIbase";
const BASE_SECRET: &str = "base-secret-value";

/// A credentials outage at start-up: once STS answers again, polling resumes within seconds
/// (not after `interval`), and STS sees only the provider's backoff meanwhile, not a storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_resumes_soon_after_sts_recovers() {
    let sas = Arc::new(Simulator::start(Scenario::default()).await.expect("sas"));
    let base = SimKey {
        id: BASE_ID.into(),
        secret: BASE_SECRET.into(),
        security_token: None,
    };
    let sts = StsSimulator::start(vec![base], Some(Arc::clone(&sas)), Clock::system())
        .await
        .expect("sts");
    sts.allow_role(ROLE);
    sts.fail_next(u64::MAX, 503, "ServiceUnavailable");
    let targets: Vec<_> = (0..20).map(|n| target(&digest(n), "a")).collect();
    let mut cfg = config(&sas, targets, polling(600, 600, 50.0, 4));
    cfg.credentials = Some(CredentialsConfig {
        access_key_id: Some(BASE_ID.into()),
        access_key_secret: Some(BASE_SECRET.to_owned().into()),
        ram_role_arn: Some(ROLE.into()),
        sts_endpoint: Some(sts.url()),
        ..CredentialsConfig::default()
    });
    let started = Instant::now();
    let exporter = start(&cfg).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during_outage = sts.requests().len();
    sts.fail_next(0, 503, "ServiceUnavailable");
    let recovered = Instant::now();
    let store = exporter.store.clone();
    let deadline = recovered + Duration::from_secs(12);
    while !store.load().targets.iter().all(|t| t.up == Some(true)) {
        assert!(
            Instant::now() < deadline,
            "no digest up 12 s after STS recovered; STS saw {} requests",
            sts.requests().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = recovered.elapsed();
    eprintln!(
        "all up {:?} after STS recovered ({:?} after start); STS requests during the 4 s outage: {during_outage}, total {}",
        resumed,
        started.elapsed(),
        sts.requests().len()
    );
    // Backoff of 1 s, 2 s, 4 s: at most a handful of attempts in 4 s, whatever the digest count.
    assert!((2..=5).contains(&during_outage), "{during_outage}");
    assert!(
        sts.requests().len() <= during_outage + 2,
        "{}",
        sts.requests().len()
    );
    exporter.shutdown().await;
}
