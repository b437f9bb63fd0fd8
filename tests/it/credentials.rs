//! Every credential provider end to end: simulated STS and ECS metadata servers on loopback issue
//! temporary credentials, and the Security Center simulator accepts requests signed with them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

use chrono::{FixedOffset, Utc};
use sas_image_scan_exporter::clock::Clock;
use sas_image_scan_exporter::config::{CredentialsConfig, OidcConfig, SignatureVersion};
use sas_image_scan_exporter::{ClientOptions, SasClient};
use sas_image_scan_exporter::{CredentialsProvider, provider_from_config};
use sas_simulator::{MetadataSimulator, Scenario, SimKey, Simulator, StsSimulator};
use secrecy::SecretString;

const DIGEST: &str = "8f0fbdb41d3d1ade4ffdf21558443f4c03342010563bb8c43ccc09594d50abcd";
const ROLE: &str = "acs:ram::1234567890:role/sas-reader";
const OIDC_PROVIDER: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa";

/// A test clock: real time plus an offset the test moves.
fn test_clock() -> (Clock, Arc<AtomicI64>) {
    let offset = Arc::new(AtomicI64::new(0));
    let o = Arc::clone(&offset);
    (
        Clock::from_fn(move || Utc::now() + chrono::Duration::seconds(o.load(Relaxed))),
        offset,
    )
}

struct World {
    sas: Arc<Simulator>,
    sts: StsSimulator,
    metadata: MetadataSimulator,
    clock: Clock,
    offset: Arc<AtomicI64>,
    dir: PathBuf,
}

const BASE_ID: &str = "LTAIbase";
const BASE_SECRET: &str = "base-secret-value";

async fn world() -> World {
    let (clock, offset) = test_clock();
    // The issuers stamp expirations with the same moving time the exporter sees.
    let issuer_clock = {
        let clock = clock.clone();
        sas_simulator::Clock::from_fn(move || clock.now())
    };
    let sas = Arc::new(Simulator::start(Scenario::default()).await.expect("sas"));
    let base = SimKey {
        id: BASE_ID.into(),
        secret: BASE_SECRET.into(),
        security_token: None,
    };
    // The base key may also call Security Center directly (profiles of mode AK).
    sas.add_key(base.clone());
    let sts = StsSimulator::start(vec![base], Some(Arc::clone(&sas)), issuer_clock.clone())
        .await
        .expect("sts");
    sts.allow_role(ROLE);
    let metadata = MetadataSimulator::start("EcsSasReader", Some(Arc::clone(&sas)), issuer_clock)
        .await
        .expect("metadata");
    let dir = std::env::temp_dir().join(format!("sas-creds-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    World {
        sas,
        sts,
        metadata,
        clock,
        offset,
        dir,
    }
}

impl World {
    /// An environment with nothing set but what is given, ECS lookups switched off unless
    /// `ecs` is true, and HOME in the test directory.
    fn env(
        &self,
        pairs: &[(&str, &str)],
        ecs: bool,
    ) -> impl Fn(&str) -> Option<String> + Sync + use<> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.entry("HOME".into())
            .or_insert_with(|| self.dir.display().to_string());
        if !ecs {
            map.insert("ALIBABA_CLOUD_ECS_METADATA_DISABLED".into(), "true".into());
        }
        move |k: &str| map.get(k).cloned()
    }

    fn overrides(&self) -> CredentialsConfig {
        CredentialsConfig {
            sts_endpoint: Some(self.sts.url().parse().expect("STS simulator endpoint")),
            metadata_endpoint: Some(
                self.metadata
                    .url()
                    .parse()
                    .expect("metadata simulator endpoint"),
            ),
            ..CredentialsConfig::default()
        }
    }

    async fn provider(
        &self,
        cfg: Option<&CredentialsConfig>,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Arc<dyn CredentialsProvider> {
        provider_from_config(cfg, env, self.clock.clone())
            .await
            .expect("a provider")
    }

    /// One real Security Center call signed with the provider's credentials.
    async fn poll(&self, provider: &Arc<dyn CredentialsProvider>) -> Result<(), String> {
        let client = SasClient::new(
            ClientOptions {
                endpoint: self.sas.url().parse().expect("simulator endpoint"),
                signature_version: SignatureVersion::V3,
                timeout: Duration::from_secs(5),
                timezone: FixedOffset::east_opt(8 * 3600).expect("offset"),
            },
            Arc::clone(provider),
        )
        .expect("client");
        client
            .describe_image_latest_scan_task(DIGEST)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("dirs");
        }
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn ram_role_arn_from_static_keys_sends_a_signed_assume_role() {
    let w = world().await;
    let cfg = CredentialsConfig {
        access_key_id: Some(BASE_ID.into()),
        access_key_secret: Some(SecretString::from(BASE_SECRET)),
        ram_role_arn: Some(ROLE.into()),
        role_session_name: Some("sas-test".into()),
        external_id: Some("ext-42".into()),
        duration: Some(Duration::from_secs(1800)),
        ..w.overrides()
    };
    let env = w.env(&[], false);
    let p = w.provider(Some(&cfg), &env).await;
    assert_eq!(p.name(), "ram_role_arn");
    w.poll(&p)
        .await
        .expect("the SAS simulator accepts the STS credentials");
    let reqs = w.sts.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.action.as_str()),
        ("GET", "AssumeRole")
    );
    assert_eq!(r.signature_valid, Some(true));
    assert_eq!(r.outcome, "ok");
    for (k, v) in [
        ("RoleArn", ROLE),
        ("RoleSessionName", "sas-test"),
        ("DurationSeconds", "1800"),
        ("ExternalId", "ext-42"),
        ("AccessKeyId", BASE_ID),
        ("SignatureMethod", "HMAC-SHA1"),
        ("Version", "2015-04-01"),
    ] {
        assert_eq!(r.params.get(k).map(String::as_str), Some(v), "{k}");
    }
    let issued = w.sts.issued();
    let current = p.credentials().await.expect("creds");
    assert_eq!(current.access_key_id, issued[0].id);
    let status = p.status();
    assert_eq!((status.refreshes, status.refresh_errors), (1, 0));
    let lifetime = status.expiration.expect("expiring") - w.clock.now();
    assert!(
        (1790..=1800).contains(&lifetime.num_seconds()),
        "{lifetime}"
    );
}

#[tokio::test]
async fn ram_role_arn_alone_sources_from_the_default_chain() {
    let w = world().await;
    let cfg = CredentialsConfig {
        ram_role_arn: Some(ROLE.into()),
        ..w.overrides()
    };
    let env = w.env(
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", BASE_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", BASE_SECRET),
        ],
        false,
    );
    let p = w.provider(Some(&cfg), &env).await;
    assert_eq!(p.name(), "ram_role_arn");
    w.poll(&p).await.expect("accepted");
    assert_eq!(w.sts.requests()[0].params["AccessKeyId"], BASE_ID);
    assert_eq!(
        w.sts.requests()[0].params["RoleSessionName"],
        "sas-image-scan-exporter"
    );
}

#[tokio::test]
async fn oidc_rereads_the_token_file_at_every_refresh() {
    let w = world().await;
    let token_file = w.write("token", "token-one\n");
    w.sts.set_oidc_token(OIDC_PROVIDER, "token-one");
    let cfg = CredentialsConfig {
        oidc: Some(OidcConfig {
            role_arn: ROLE.into(),
            provider_arn: OIDC_PROVIDER.into(),
            token_file: token_file.clone(),
        }),
        ..w.overrides()
    };
    let env = w.env(
        &[("ALIBABA_CLOUD_ROLE_SESSION_NAME", "rrsa-session")],
        false,
    );
    let p = w.provider(Some(&cfg), &env).await;
    assert_eq!(p.name(), "oidc");
    w.poll(&p).await.expect("accepted");
    let r = &w.sts.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.action.as_str()),
        ("POST", "AssumeRoleWithOIDC")
    );
    assert_eq!(r.signature_valid, None);
    assert!(!r.params.contains_key("AccessKeyId"));
    assert!(!r.params.contains_key("Signature"));
    assert_eq!(r.params["OIDCToken"], "token-one");
    assert_eq!(r.params["OIDCProviderArn"], OIDC_PROVIDER);
    assert_eq!(r.params["RoleSessionName"], "rrsa-session");

    // The kubelet rotates the token; the next refresh (46 minutes later) sends the new one.
    std::fs::write(&token_file, "token-two").expect("rotate");
    w.sts.set_oidc_token(OIDC_PROVIDER, "token-two");
    w.offset.store(46 * 60, Relaxed);
    let before = p
        .credentials()
        .await
        .expect("still valid")
        .access_key_id
        .clone();
    assert_eq!(before, w.sts.issued()[0].id);
    wait_for_refreshes(&*p, 2).await;
    let after = p.credentials().await.expect("refreshed");
    assert_eq!(after.access_key_id, w.sts.issued()[1].id);
    assert_eq!(w.sts.requests()[1].params["OIDCToken"], "token-two");
    w.poll(&p).await.expect("the refreshed credentials work");
}

/// Waits until the provider has stored its `n`th set of credentials; the simulator counts an
/// issue when it answers, a moment before the provider has read the answer.
async fn wait_for_refreshes(p: &dyn CredentialsProvider, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.status().refreshes < n {
        assert!(std::time::Instant::now() < deadline, "no refresh happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn ecs_role_uses_an_imdsv2_token_and_discovers_the_role() {
    let w = world().await;
    let cfg = CredentialsConfig {
        ecs_ram_role: Some(String::new()),
        ..w.overrides()
    };
    let env = w.env(&[], false);
    w.metadata.set_imds_v2_required(true);
    let p = w.provider(Some(&cfg), &env).await;
    assert_eq!(p.name(), "ecs_ram_role");
    w.poll(&p).await.expect("accepted");
    let reqs = w.metadata.requests();
    let summary: Vec<(String, String, bool)> = reqs
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.token_header.is_some()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("PUT".into(), "/latest/api/token".into(), false),
            (
                "GET".into(),
                "/latest/meta-data/ram/security-credentials/".into(),
                true
            ),
            (
                "GET".into(),
                "/latest/meta-data/ram/security-credentials/EcsSasReader".into(),
                true
            ),
        ]
    );
    assert_eq!(reqs[0].ttl_header.as_deref(), Some("21600"));
    assert!(reqs.iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn ecs_role_falls_back_to_imdsv1_unless_disabled() {
    let w = world().await;
    w.metadata.set_token_endpoint_enabled(false);
    let cfg = CredentialsConfig {
        ecs_ram_role: Some("EcsSasReader".into()),
        ..w.overrides()
    };
    let env = w.env(&[], false);
    let p = w.provider(Some(&cfg), &env).await;
    w.poll(&p).await.expect("IMDSv1 works");
    let last = w.metadata.requests().pop().expect("requests");
    assert_eq!(
        last.path,
        "/latest/meta-data/ram/security-credentials/EcsSasReader"
    );
    assert_eq!(last.token_header, None);

    let env = w.env(&[("ALIBABA_CLOUD_IMDSV1_DISABLED", "true")], false);
    let p = w.provider(Some(&cfg), &env).await;
    let e = w.poll(&p).await.expect_err("v1 forbidden");
    assert!(
        e.contains("no IMDSv2 token (HTTP 404) and ALIBABA_CLOUD_IMDSV1_DISABLED=true"),
        "{e}"
    );
}

#[tokio::test]
async fn cli_profiles_every_mode() {
    let w = world().await;
    let token_file = w.write("oidc-token", "cli-token");
    w.sts.set_oidc_token(OIDC_PROVIDER, "cli-token");
    w.write(
        ".aliyun/config.json",
        &serde_json::json!({
            "current": "ak",
            "profiles": [
                {"name": "ak", "mode": "AK", "access_key_id": BASE_ID, "access_key_secret": BASE_SECRET},
                {"name": "sts", "mode": "StsToken", "access_key_id": "STS.fixed", "access_key_secret": "fixed-secret", "sts_token": "fixed-token"},
                {"name": "role", "mode": "RamRoleArn", "access_key_id": BASE_ID, "access_key_secret": BASE_SECRET,
                 "ram_role_arn": ROLE, "ram_session_name": "cli-session", "expired_seconds": 900},
                {"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "EcsSasReader"},
                {"name": "oidc", "mode": "OIDC", "ram_role_arn": ROLE, "oidc_provider_arn": OIDC_PROVIDER,
                 "oidc_token_file": token_file.display().to_string()},
                {"name": "chained", "mode": "ChainableRamRoleArn", "source_profile": "ak", "ram_role_arn": ROLE}
            ]
        })
        .to_string(),
    );
    w.sas.add_key(SimKey {
        id: "STS.fixed".into(),
        secret: "fixed-secret".into(),
        security_token: Some("fixed-token".into()),
    });
    let env = w.env(&[], false);
    for (profile, provider) in [
        ("ak", "profile"),
        ("sts", "profile"),
        ("role", "ram_role_arn"),
        ("ecs", "ecs_ram_role"),
        ("oidc", "oidc"),
        ("chained", "ram_role_arn"),
    ] {
        let cfg = CredentialsConfig {
            profile: Some(profile.into()),
            ..w.overrides()
        };
        let p = w.provider(Some(&cfg), &env).await;
        assert_eq!(p.name(), provider, "{profile}");
        w.poll(&p)
            .await
            .unwrap_or_else(|e| panic!("{profile}: {e}"));
    }
    let role_call = w
        .sts
        .requests()
        .into_iter()
        .find(|r| r.params.get("RoleSessionName").map(String::as_str) == Some("cli-session"))
        .expect("the RamRoleArn profile assumed its role");
    assert_eq!(role_call.params["DurationSeconds"], "900");
    // Without a name, the default chain takes `current` (here: ak).
    let p = w.provider(None, &env).await;
    assert_eq!(p.name(), "profile");
    assert_eq!(p.credentials().await.expect("creds").access_key_id, BASE_ID);
}

#[tokio::test]
async fn ini_file_every_type_and_both_file_names() {
    let w = world().await;
    let token_file = w.write("ini-token", "ini-token-value");
    w.sts.set_oidc_token(OIDC_PROVIDER, "ini-token-value");
    let ini = format!(
        "[default]\ntype = access_key\naccess_key_id = {BASE_ID}\naccess_key_secret = {BASE_SECRET}\n\n\
         [ecs]\ntype = ecs_ram_role\nrole_name = EcsSasReader\n\n\
         [role]\ntype = ram_role_arn\naccess_key_id = {BASE_ID}\naccess_key_secret = {BASE_SECRET}\nrole_arn = {ROLE}\nrole_session_name = ini-session\n\n\
         [oidc]\ntype = oidc_role_arn\nrole_arn = {ROLE}\noidc_provider_arn = {OIDC_PROVIDER}\noidc_token_file_path = {}\n",
        token_file.display()
    );
    for file in [".alibabacloud/credentials.ini", ".alibabacloud/credentials"] {
        let path = w.write(file, &ini);
        let env = w.env(&[], false);
        for (section, provider) in [
            ("default", "credentials_file"),
            ("ecs", "ecs_ram_role"),
            ("role", "ram_role_arn"),
            ("oidc", "oidc"),
        ] {
            let cfg = CredentialsConfig {
                profile: Some(section.into()),
                ..w.overrides()
            };
            let p = w.provider(Some(&cfg), &env).await;
            assert_eq!(p.name(), provider, "{file} [{section}]");
            w.poll(&p)
                .await
                .unwrap_or_else(|e| panic!("{file} [{section}]: {e}"));
        }
        // The default chain reads [default] (or ALIBABA_CLOUD_PROFILE's section).
        let p = w.provider(None, &env).await;
        assert_eq!(p.name(), "credentials_file");
        let env = w.env(&[("ALIBABA_CLOUD_PROFILE", "ecs")], false);
        let cfg = w.overrides();
        let p = w.provider(Some(&cfg), &env).await;
        assert_eq!(p.name(), "ecs_ram_role");
        std::fs::remove_file(path).expect("remove");
    }
}

#[tokio::test]
async fn default_chain_order_and_skip_switches() {
    let w = world().await;
    w.write(
        ".aliyun/config.json",
        &serde_json::json!({"current": "ak", "profiles": [
            {"name": "ak", "mode": "AK", "access_key_id": "LTAIcli", "access_key_secret": "cli-secret"}]})
        .to_string(),
    );
    w.write(
        ".alibabacloud/credentials",
        "[default]\ntype = access_key\naccess_key_id = LTAIini\naccess_key_secret = ini-secret\n",
    );
    let cfg = w.overrides();
    let id = |p: Arc<dyn CredentialsProvider>| async move {
        (
            p.name(),
            p.credentials().await.expect("creds").access_key_id.clone(),
        )
    };
    // 1. environment beats everything.
    let env = w.env(
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenv"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret"),
        ],
        true,
    );
    assert_eq!(
        id(w.provider(Some(&cfg), &env).await).await,
        ("environment", "LTAIenv".into())
    );
    // 2. OIDC from the environment beats the profile files.
    let token = w.write("chain-token", "chain-token");
    w.sts.set_oidc_token(OIDC_PROVIDER, "chain-token");
    let token = token.display().to_string();
    let env = w.env(
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token),
        ],
        true,
    );
    assert_eq!(w.provider(Some(&cfg), &env).await.name(), "oidc");
    // 3. the CLI profile, 4. the INI file when the CLI is switched off.
    let env = w.env(&[], true);
    assert_eq!(
        id(w.provider(Some(&cfg), &env).await).await,
        ("profile", "LTAIcli".into())
    );
    let env = w.env(&[("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true")], true);
    assert_eq!(
        id(w.provider(Some(&cfg), &env).await).await,
        ("credentials_file", "LTAIini".into())
    );
    // 5. the ECS role when no file yields; 6. the credentials URI when ECS is switched off.
    std::fs::remove_dir_all(w.dir.join(".aliyun")).expect("rm");
    std::fs::remove_dir_all(w.dir.join(".alibabacloud")).expect("rm");
    let uri = w.metadata.credentials_uri();
    let env = w.env(&[("ALIBABA_CLOUD_CREDENTIALS_URI", &uri)], true);
    assert_eq!(w.provider(Some(&cfg), &env).await.name(), "ecs_ram_role");
    let env = w.env(&[("ALIBABA_CLOUD_CREDENTIALS_URI", &uri)], false);
    let p = w.provider(Some(&cfg), &env).await;
    assert_eq!(p.name(), "credentials_uri");
    w.poll(&p).await.expect("URI credentials work");
    // A metadata service that fails is skipped, and the chain goes on.
    w.metadata.fail_next(3, 500);
    let env = w.env(&[], true);
    let e = provider_from_config(Some(&cfg), &env, w.clock.clone())
        .await
        .expect_err("nothing yields");
    let msg = e.to_string();
    assert!(msg.starts_with("no credentials found; the default chain tried: environment: not configured; oidc: not configured; cli_profile: not configured; credentials_file: not configured; ecs_ram_role: "), "{msg}");
}

#[tokio::test]
async fn refresh_before_expiry_and_a_failed_refresh_keeps_the_old_credentials() {
    let w = world().await;
    let cfg = CredentialsConfig {
        access_key_id: Some(BASE_ID.into()),
        access_key_secret: Some(SecretString::from(BASE_SECRET)),
        ram_role_arn: Some(ROLE.into()),
        ..w.overrides()
    };
    let env = w.env(&[], false);
    let p = w.provider(Some(&cfg), &env).await;
    w.poll(&p).await.expect("first");
    // STS fails: at 50 minutes the refresh fails, the old credentials keep working.
    w.sts.fail_next(1, 503, "ServiceUnavailable");
    w.offset.store(50 * 60, Relaxed);
    w.poll(&p).await.expect("old credentials still work");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.status().refresh_errors < 1 {
        assert!(std::time::Instant::now() < deadline, "no refresh attempt");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        p.credentials().await.expect("old").access_key_id,
        w.sts.issued()[0].id
    );
    // After the backoff, the refresh succeeds and the new credentials are used.
    w.offset.store(50 * 60 + 5, Relaxed);
    w.poll(&p).await.expect("still fine");
    wait_for_refreshes(&*p, 2).await;
    let fresh = p.credentials().await.expect("fresh");
    assert_eq!(fresh.access_key_id, w.sts.issued()[1].id);
    w.poll(&p).await.expect("refreshed credentials accepted");
    let s = p.status();
    assert_eq!((s.refreshes, s.refresh_errors), (2, 1));
}
