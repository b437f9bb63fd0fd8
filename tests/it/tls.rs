//! `--web.config.file` over real TLS: client certificates, basic auth, headers, and certificate
//! rotation without a restart. Certificates and keys are generated here, never committed.

use crate::common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use sas_image_scan_exporter::app::{Exporter, Options};
use sas_simulator::{Scenario, Simulator};

struct Pki {
    dir: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("ca cert");
    (cert.pem(), Issuer::new(params, key))
}

/// A leaf certificate and key (PEM) signed by `issuer`.
fn leaf(issuer: &Issuer<'static, KeyPair>, cn: &str, client: bool) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("sas-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (ca_pem, issuer) = ca("test ca");
        std::fs::write(dir.join("ca.pem"), &ca_pem).expect("ca");
        let pki = Pki {
            dir,
            ca_pem,
            issuer,
        };
        pki.rotate_server("server one");
        pki
    }

    fn rotate_server(&self, cn: &str) -> String {
        let (cert, key) = leaf(&self.issuer, cn, false);
        // Key first: a watcher that wakes in between sees a pair that does not fit and keeps the old.
        std::fs::write(self.dir.join("server.key"), key).expect("key");
        std::fs::write(self.dir.join("server.pem"), &cert).expect("cert");
        cert
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const WEB_CONFIG: &str = "tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  min_version: TLS12
http_server_config:
  headers:
    X-Frame-Options: DENY
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: HASH
";

async fn start_tls(pki: &Pki, sim: &Simulator) -> Exporter {
    let hash = bcrypt::hash("scrape-pass", 4).expect("hash");
    let web = pki.path("web.yml");
    std::fs::write(&web, WEB_CONFIG.replace("HASH", &hash)).expect("web config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = config(
        sim,
        vec![target(&digest(1), "tls")],
        polling(600, 600, 10.0, 1),
    );
    Exporter::start(
        &config,
        vec![listener],
        Options {
            web_config: Some(web),
            ..Options::default()
        },
    )
    .await
    .expect("exporter starts")
}

fn client(pki: &Pki, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_info(true)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"));
    if let Some((cert, key)) = identity {
        b = b.identity(
            reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
        );
    }
    b.build().expect("client")
}

fn url(e: &Exporter, path: &str) -> String {
    format!("https://localhost:{}{path}", e.addrs[0].port())
}

fn peer_cert(r: &reqwest::Response) -> Option<Vec<u8>> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_basic_auth_headers_and_rotation() {
    let pki = Pki::new();
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let exporter = start_tls(&pki, &sim).await;
    let (client_cert, client_key) = leaf(&pki.issuer, "prometheus", true);
    let good = client(&pki, Some((&client_cert, &client_key)));

    // Right certificate and password: the metrics, with the configured headers.
    let r = good
        .get(url(&exporter, "/metrics"))
        .basic_auth("prometheus", Some("scrape-pass"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let first_cert = peer_cert(&r).expect("server certificate");
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("sas_exporter_targets 1")
    );

    // Wrong or missing password: 401 with a challenge; /-/healthy stays open for probes.
    for auth in [
        Some(("prometheus", "nope")),
        Some(("someone", "scrape-pass")),
        None,
    ] {
        let mut req = good.get(url(&exporter, "/metrics"));
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        let r = req.send().await.expect("answered");
        assert_eq!(r.status().as_u16(), 401, "{auth:?}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"sas-image-scan-exporter\""
        );
        assert_eq!(r.headers()["x-frame-options"], "DENY");
    }
    let r = good
        .get(url(&exporter, "/-/healthy"))
        .send()
        .await
        .expect("healthy");
    assert_eq!(r.status().as_u16(), 200);

    // No client certificate, or one from another CA: the handshake is refused.
    let none = client(&pki, None);
    assert!(
        none.get(url(&exporter, "/-/healthy")).send().await.is_err(),
        "accepted without a client certificate"
    );
    let (_, other_issuer) = ca("another ca");
    let (bad_cert, bad_key) = leaf(&other_issuer, "intruder", true);
    let wrong = client(&pki, Some((&bad_cert, &bad_key)));
    assert!(
        wrong
            .get(url(&exporter, "/-/healthy"))
            .send()
            .await
            .is_err(),
        "accepted a certificate from another CA"
    );

    // Rotation on disk is served without a restart (new connections see the new certificate).
    let new_pem = pki.rotate_server("server two");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let fresh = client(&pki, Some((&client_cert, &client_key)));
        let r = fresh
            .get(url(&exporter, "/-/healthy"))
            .send()
            .await
            .expect("still serving");
        let cert = peer_cert(&r).expect("certificate");
        if cert == pem_der(&new_pem) {
            break;
        }
        assert_eq!(cert, first_cert);
        assert!(
            Instant::now() < deadline,
            "rotated certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A broken change is rejected: the server keeps the certificate it has.
    std::fs::write(pki.path("server.pem"), "not a certificate").expect("break");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fresh = client(&pki, Some((&client_cert, &client_key)));
    let r = fresh
        .get(url(&exporter, "/-/healthy"))
        .send()
        .await
        .expect("still serving after a broken change");
    assert_eq!(peer_cert(&r), Some(pem_der(&new_pem)));
    exporter.shutdown().await;
}

#[tokio::test]
async fn an_invalid_web_config_fails_at_start_up() {
    let pki = Pki::new();
    let sim = Simulator::start(Scenario::default()).await.expect("sim");
    let cases = [
        (
            "tls_server_config:\n  cert_file: server.pem\n",
            "tls_server_config needs both cert_file and key_file",
        ),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n",
            "missing.pem: cannot read certificates",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            "client_auth_type RequireAndVerifyClientCert needs client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS10\n",
            "TLS10 is insecure and not supported",
        ),
        (
            "basic_auth_users:\n  prom: plaintext\n",
            "the password of \"prom\" is not a bcrypt hash",
        ),
        (
            "http_server_config:\n  headers:\n    Server: x\n",
            "\"Server\" is not allowed",
        ),
        ("surprise: true\n", "Unknown field `surprise`"),
    ];
    for (text, expected) in cases {
        let web = pki.path("bad.yml");
        std::fs::write(&web, text).expect("write");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let config = config(&sim, vec![], polling(600, 600, 10.0, 1));
        let e = Exporter::start(
            &config,
            vec![listener],
            Options {
                web_config: Some(web),
                ..Options::default()
            },
        )
        .await
        .expect_err(text);
        let msg = e.to_string();
        assert!(msg.starts_with("--web.config.file: "), "{msg}");
        assert!(msg.contains(expected), "{text}: {msg}");
    }
}
