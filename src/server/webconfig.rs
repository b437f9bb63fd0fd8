//! `--web.config.file`: TLS, client certificates, security headers and basic auth, in the
//! Prometheus exporter-toolkit format, so operators reuse the files they already have.
//!
//! The file and the files it names are re-read when they change (certificate rotation without a
//! restart); a change that does not load is logged and the running settings stay.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use parking_lot::Mutex;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;

/// Why a web config could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct WebConfigError {
    /// The file at fault (the web config or a file it names).
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    // Accepted for compatibility with existing files; rustls chooses its own secure suites.
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The headers the exporter-toolkit allows in `http_server_config.headers`.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// Settings loaded from a web config file.
pub struct WebSettings {
    /// TLS, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Basic auth, when users are configured.
    pub auth: Option<Authenticator>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Files whose change triggers a reload, with their state when loaded.
    watched: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.auth.as_ref().map(|a| a.users.len()),
            )
            .field("headers", &self.headers.len())
            .finish()
    }
}

impl WebSettings {
    /// No TLS, no auth, no extra headers: what runs without `--web.config.file`.
    pub fn plain() -> Self {
        WebSettings {
            tls: None,
            auth: None,
            headers: Vec::new(),
            watched: Vec::new(),
        }
    }

    /// True when a watched file changed since this was loaded.
    pub fn changed_on_disk(&self) -> bool {
        self.watched.iter().any(|(p, fp)| fingerprint(p) != *fp)
    }

    /// The watched files' state on disk now.
    pub fn disk_state(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.watched.iter().map(|(p, _)| fingerprint(p)).collect()
    }
}

fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Loads a web config file and everything it names.
pub fn load(path: &Path) -> Result<WebSettings, WebConfigError> {
    let err = |p: &Path, message: String| WebConfigError {
        path: p.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let raw: RawWebConfig = if text.trim().is_empty() {
        RawWebConfig {
            tls_server_config: None,
            http_server_config: None,
            basic_auth_users: None,
        }
    } else {
        marked_yaml::from_yaml(0, &text).map_err(|e| err(path, e.to_string()))?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |f: &str| {
        let p = Path::new(f);
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };
    let mut watched = vec![(path.to_owned(), fingerprint(path))];

    let tls = match raw.tls_server_config {
        None => None,
        Some(t) => {
            let (Some(cert), Some(key)) = (t.cert_file.as_deref(), t.key_file.as_deref()) else {
                return Err(err(
                    path,
                    "tls_server_config needs both cert_file and key_file".into(),
                ));
            };
            let (cert, key) = (resolve(cert), resolve(key));
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| err(&cert, format!("cannot read certificates: {e}")))?;
            if certs.is_empty() {
                return Err(err(&cert, "no certificate in the file".into()));
            }
            let private_key = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| err(&key, format!("cannot read the private key: {e}")))?;
            watched.push((cert.clone(), fingerprint(&cert)));
            watched.push((key.clone(), fingerprint(&key)));
            if t.cipher_suites.is_some()
                || t.curve_preferences.is_some()
                || t.prefer_server_cipher_suites.is_some()
            {
                tracing::info!(
                    "cipher_suites, curve_preferences and prefer_server_cipher_suites are ignored: rustls uses its own secure defaults"
                );
            }
            let versions = protocol_versions(t.min_version.as_deref(), t.max_version.as_deref())
                .map_err(|m| err(path, m))?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(&versions)
                .map_err(|e| err(path, format!("TLS versions: {e}")))?;
            let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
            let builder = match auth_type {
                "NoClientCert" => builder.with_no_client_auth(),
                "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
                    let Some(ca) = t.client_ca_file.as_deref() else {
                        return Err(err(
                            path,
                            format!("client_auth_type {auth_type} needs client_ca_file"),
                        ));
                    };
                    let ca = resolve(ca);
                    let mut roots = rustls::RootCertStore::empty();
                    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca)
                        .and_then(|i| i.collect::<Result<_, _>>())
                        .map_err(|e| err(&ca, format!("cannot read CA certificates: {e}")))?;
                    for c in cas {
                        roots
                            .add(c)
                            .map_err(|e| err(&ca, format!("invalid CA certificate: {e}")))?;
                    }
                    watched.push((ca.clone(), fingerprint(&ca)));
                    let verifier = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        Arc::clone(&provider),
                    );
                    let verifier = if auth_type == "VerifyClientCertIfGiven" {
                        verifier.allow_unauthenticated()
                    } else {
                        verifier
                    };
                    let verifier = verifier
                        .build()
                        .map_err(|e| err(&ca, format!("client CA: {e}")))?;
                    builder.with_client_cert_verifier(verifier)
                }
                other => {
                    return Err(err(
                        path,
                        format!(
                            "client_auth_type {other:?} is not supported; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                        ),
                    ));
                }
            };
            let mut config = builder
                .with_single_cert(certs, private_key)
                .map_err(|e| err(&key, format!("certificate and key do not fit: {e}")))?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        }
    };

    let mut headers = Vec::new();
    if let Some(http) = raw.http_server_config {
        if http.http2 == Some(true) {
            tracing::info!("http_server_config.http2 is ignored: the exporter serves HTTP/1.1");
        }
        for (name, value) in http.headers.unwrap_or_default() {
            let Some(allowed) = ALLOWED_HEADERS
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&name))
            else {
                return Err(err(
                    path,
                    format!(
                        "http_server_config.headers: {name:?} is not allowed; allowed: {}",
                        ALLOWED_HEADERS.join(", ")
                    ),
                ));
            };
            let n = HeaderName::from_bytes(allowed.as_bytes())
                .map_err(|e| err(path, format!("header {name}: {e}")))?;
            let v = HeaderValue::from_str(&value)
                .map_err(|e| err(path, format!("header {name} value: {e}")))?;
            headers.push((n, v));
        }
    }

    let auth = match raw.basic_auth_users {
        Some(users) if !users.is_empty() => {
            for (user, hash) in &users {
                if user.contains(':') {
                    return Err(err(
                        path,
                        format!("basic_auth_users: user name {user:?} contains ':'"),
                    ));
                }
                // Fail at load time, not at the first scrape, on a value that is not a bcrypt hash.
                if bcrypt::verify("", hash).is_err() {
                    return Err(err(
                        path,
                        format!("basic_auth_users: the password of {user:?} is not a bcrypt hash"),
                    ));
                }
            }
            Some(Authenticator::new(users.into_iter().collect()))
        }
        _ => None,
    };

    Ok(WebSettings {
        tls,
        auth,
        headers,
        watched,
    })
}

fn protocol_versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let rank = |v: &str| match v {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(format!(
            "{v} is insecure and not supported; use TLS12 or TLS13"
        )),
        other => Err(format!("unknown TLS version {other:?}; use TLS12 or TLS13")),
    };
    let lo = min.map(rank).transpose()?.unwrap_or(12);
    let hi = max.map(rank).transpose()?.unwrap_or(13);
    if lo > hi {
        return Err("min_version is above max_version".into());
    }
    let mut out = Vec::new();
    if lo <= 12 {
        out.push(&rustls::version::TLS12);
    }
    if hi >= 13 {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

/// Checks `Authorization: Basic` against bcrypt hashes, caching outcomes so a scrape does not
/// pay bcrypt's deliberate cost every time. Hashing runs on the blocking pool, a few at once, so
/// a flood of wrong passwords cannot stall the async workers that serve and poll.
pub struct Authenticator {
    users: HashMap<String, String>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// Bounds the bcrypt computations running at once.
    hashing: Arc<Semaphore>,
    /// Cost of the dummy hash: the highest among the configured ones.
    dummy_cost: u32,
    /// Verified for unknown users, so that timing does not tell which user names exist; made on
    /// first use, on the blocking pool.
    dummy: Arc<OnceLock<String>>,
}

/// Outcomes remembered at most; the cache is emptied when full (bounds memory under guessing).
const AUTH_CACHE_MAX: usize = 1024;
/// The bcrypt cost assumed when no configured hash states a readable one.
const DEFAULT_COST: u32 = 10;

/// bcrypt computations allowed at once: half the cores, so the rest keep serving and polling.
fn hashing_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4))
}

/// The cost field of a `$2b$12$...` hash.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

impl Authenticator {
    fn new(users: HashMap<String, String>) -> Self {
        let dummy_cost = users
            .values()
            .filter_map(|h| bcrypt_cost(h))
            .filter(|c| (4..=31).contains(c))
            .max()
            .unwrap_or(DEFAULT_COST);
        Authenticator {
            users,
            cache: Mutex::new(HashMap::new()),
            hashing: Arc::new(Semaphore::new(hashing_slots())),
            dummy_cost,
            dummy: Arc::new(OnceLock::new()),
        }
    }

    /// True when the header carries a valid user and password.
    pub async fn check(&self, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let hash = self.users.get(&user).cloned();
        // The key binds user, password and stored hash: a changed hash never hits an old entry.
        let mut h = Sha256::new();
        for part in [
            user.as_bytes(),
            password.as_bytes(),
            hash.as_deref().map_or(&b""[..], |s| s.as_bytes()),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let key: [u8; 32] = h.finalize().into();
        if let Some(ok) = self.cache.lock().get(&key) {
            return *ok;
        }
        let Ok(_permit) = Arc::clone(&self.hashing).acquire_owned().await else {
            return false;
        };
        let dummy = Arc::clone(&self.dummy);
        let cost = self.dummy_cost;
        let verified = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => bcrypt::verify(&password, &hash).unwrap_or(false),
            None => {
                let dummy = dummy.get_or_init(|| {
                    bcrypt::hash(uuid::Uuid::new_v4().to_string(), cost).unwrap_or_default()
                });
                let _ = bcrypt::verify(&password, dummy);
                false
            }
        })
        .await;
        let ok = verified.unwrap_or(false);
        let mut cache = self.cache.lock();
        if cache.len() >= AUTH_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }
}

fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// How often the web config and the files it names are checked for changes.
const WEB_CONFIG_CHECK_EVERY: Duration = Duration::from_secs(3);

/// The web settings in force, swapped when the web config file changes.
pub type WebHandle = Arc<ArcSwap<WebSettings>>;

/// Re-reads the web config when it or a file it names changes; a broken change keeps the old one.
pub async fn watch_web_config(path: PathBuf, web: WebHandle, mut shutdown: Shutdown) {
    // The on-disk state of a rejected change, so its error is logged once, not every few seconds.
    let mut rejected = None;
    while shutdown.tick(WEB_CONFIG_CHECK_EVERY).await {
        let current = web.load_full();
        if !current.changed_on_disk() {
            rejected = None;
            continue;
        }
        let disk = current.disk_state();
        if rejected.as_ref() == Some(&disk) {
            continue;
        }
        let p = path.clone();
        match tokio::task::spawn_blocking(move || load(&p)).await {
            Ok(Ok(settings)) => {
                web.store(Arc::new(settings));
                rejected = None;
                tracing::info!(file = %path.display(), "web config reloaded");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "web config change rejected; the previous settings stay");
                rejected = Some(disk);
            }
            Err(e) => tracing::error!(error = %e, "web config reload failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[tokio::test]
    async fn basic_auth_with_cache() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let a = Authenticator::new([("prom".to_owned(), hash)].into());
        assert!(a.check(Some(&basic("prom", "s3cret"))).await);
        assert!(a.check(Some(&basic("prom", "s3cret"))).await);
        assert!(!a.check(Some(&basic("prom", "wrong"))).await);
        assert!(!a.check(Some(&basic("nobody", "s3cret"))).await);
        assert!(!a.check(None).await);
        assert!(!a.check(Some("Bearer x")).await);
        assert!(!a.check(Some("Basic !!!")).await);
        assert_eq!(a.cache.lock().len(), 3);
    }

    #[tokio::test]
    async fn an_unknown_user_costs_the_highest_configured_cost() {
        let users = [
            ("a".to_owned(), bcrypt::hash("x", 4).expect("hash")),
            ("b".to_owned(), bcrypt::hash("y", 6).expect("hash")),
        ];
        let a = Authenticator::new(users.into());
        assert_eq!(a.dummy_cost, 6);
        assert!(!a.check(Some(&basic("nobody", "x"))).await);
        let dummy = a.dummy.get().expect("made on first use");
        assert_eq!(bcrypt_cost(dummy), Some(6));
        assert_eq!(bcrypt_cost("$2b$12$abc"), Some(12));
        assert_eq!(bcrypt_cost("plain"), None);
    }

    #[test]
    fn versions() {
        assert_eq!(protocol_versions(None, None).map(|v| v.len()), Ok(2));
        assert_eq!(
            protocol_versions(Some("TLS13"), None).map(|v| v.len()),
            Ok(1)
        );
        assert!(protocol_versions(Some("TLS10"), None).is_err());
        assert!(protocol_versions(Some("TLS13"), Some("TLS12")).is_err());
    }
}
