//! What a valid configuration becomes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::FixedOffset;

use super::problem::Location;
use super::sources::{DiscoveryConfig, SourceKind};
use crate::aliyun::client::ClientOptions;
pub use crate::aliyun::credentials::{CredentialsConfig, OidcConfig};
use crate::aliyun::endpoint::Endpoint;
pub use crate::aliyun::signing::SignatureVersion;

const DEFAULT_REGION: &str = "cn-shanghai";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
// Evaluated at compile time, so a bad constant fails the build instead of panicking at run time.
const DEFAULT_TIMEZONE: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(tz) => tz,
    None => panic!("invalid default timezone"),
};
const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);
const DEFAULT_ACTIVE_INTERVAL: Duration = Duration::from_secs(30);

const MAINLAND_HOST: &str = "tds.cn-shanghai.aliyuncs.com";
const INTERNATIONAL_HOST: &str = "tds.ap-southeast-1.aliyuncs.com";

/// The name of the account that a configuration without `accounts:` describes.
pub const DEFAULT_ACCOUNT: &str = "default";

/// The whole validated configuration; built only through [`Config::parse`] or [`Config::load`].
#[derive(Clone, Debug)]
pub struct Config {
    /// The accounts to watch, at least one, in file order with unique names. Without
    /// `accounts:` the top-level `sas` and `credentials` sections form the one account `default`.
    pub accounts: Vec<AccountConfig>,
    /// Refresh schedule, retries, and the defaults for each account's request limits.
    pub polling: PollingConfig,
    /// Digests listed inline, de-duplicated per account, in file order.
    pub targets: Vec<Target>,
    /// Globs of extra target files, kept as written so a reload re-expands them.
    pub target_files: Vec<String>,
    /// Sources that find digests to watch, beside `targets` and `target_files`.
    pub discovery: Vec<DiscoveryConfig>,
    /// Where results survive restarts; `None` disables persistence.
    pub state_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        let polling = PollingConfig::default();
        Config {
            accounts: vec![AccountConfig::new(DEFAULT_ACCOUNT, &polling)],
            polling,
            targets: Vec::new(),
            target_files: Vec::new(),
            discovery: Vec::new(),
            state_file: None,
        }
    }
}

/// One Alibaba Cloud account: its own endpoint, credentials and request budget.
#[derive(Clone, Debug)]
pub struct AccountConfig {
    /// The `account` label value: `[a-z0-9][a-z0-9_-]{0,62}`, unique.
    pub name: String,
    /// How to reach this account's Security Center.
    pub sas: SasConfig,
    /// Explicit credentials; `None` means the Alibaba Cloud default credential chain.
    pub credentials: Option<CredentialsConfig>,
    /// This account's own token bucket, retries included.
    pub requests_per_second: f64,
    /// This account's own limit of requests in flight.
    pub concurrency: usize,
}

impl AccountConfig {
    /// An account with the default `sas` section, the default chain and `polling`'s limits.
    pub fn new(name: &str, polling: &PollingConfig) -> Self {
        AccountConfig {
            name: name.to_owned(),
            sas: SasConfig::default(),
            credentials: None,
            requests_per_second: polling.requests_per_second,
            concurrency: polling.concurrency,
        }
    }
}

/// Which Security Center site an account's data lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The mainland China site.
    China,
    /// The international site.
    International,
}

impl Site {
    /// The `site` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Site::China => "china",
            Site::International => "international",
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `sas` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SasConfig {
    /// Region id; it selects the endpoint when no override is given.
    pub region: String,
    /// Endpoint override; https, or plain http to a loopback host.
    pub endpoint: Option<Endpoint>,
    /// Request signing scheme.
    pub signature_version: SignatureVersion,
    /// Per HTTP request, so one hung call cannot stall a poll slot for ever.
    pub timeout: Duration,
    /// The API's `Modified` strings carry no offset, so it has to be configured.
    pub timezone: FixedOffset,
}

impl Default for SasConfig {
    fn default() -> Self {
        SasConfig {
            region: DEFAULT_REGION.to_owned(),
            endpoint: None,
            signature_version: SignatureVersion::default(),
            timeout: DEFAULT_TIMEOUT,
            timezone: DEFAULT_TIMEZONE,
        }
    }
}

impl SasConfig {
    /// The site whose data the account reaches: the one a known public endpoint override
    /// names, else the site of the region.
    pub fn site(&self) -> Site {
        match self.endpoint.as_ref().map(Endpoint::authority) {
            Some(INTERNATIONAL_HOST) => Site::International,
            Some(MAINLAND_HOST) => Site::China,
            _ => site_of_region(&self.region),
        }
    }

    /// The endpoint to call: the override, else the public host of the region's site.
    pub fn endpoint_url(&self) -> Endpoint {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => Endpoint::public_https(endpoint_host_for_region(&self.region)),
        }
    }
}

/// Security Center data lives per site, not per region, so only two public hosts exist.
pub fn endpoint_host_for_region(region: &str) -> &'static str {
    match site_of_region(region) {
        Site::China => MAINLAND_HOST,
        Site::International => INTERNATIONAL_HOST,
    }
}

fn site_of_region(region: &str) -> Site {
    if region.starts_with("cn-") || region.contains("-finance-") || region.contains("-gov-") {
        Site::China
    } else {
        Site::International
    }
}

/// The `polling` section.
#[derive(Clone, Debug)]
pub struct PollingConfig {
    /// Refresh period of a digest whose latest scan has ended or that has none.
    pub interval: Duration,
    /// Faster refresh period while a scan runs, so state changes show up promptly.
    pub active_interval: Duration,
    /// API requests in flight at most.
    pub concurrency: usize,
    /// Token-bucket rate over all API requests, retries included.
    pub requests_per_second: f64,
    /// Retries for retryable errors only.
    pub max_retries: u32,
}

impl Default for PollingConfig {
    fn default() -> Self {
        PollingConfig {
            interval: DEFAULT_INTERVAL,
            active_interval: DEFAULT_ACTIVE_INTERVAL,
            concurrency: 4,
            requests_per_second: 5.0,
            max_retries: 3,
        }
    }
}

/// One image digest to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Lower-case bare hex, the one form used in labels and API calls.
    pub digest: String,
    /// The account whose Security Center is asked about this digest.
    pub account: String,
    /// Extra labels put on every series of this digest.
    pub labels: BTreeMap<String, String>,
    /// Where the digest was written, to point at duplicates across files.
    pub location: Location,
}

impl Config {
    /// The account named `name`, if configured.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// One line for `--config.check`, so an operator sees what the exporter understood: the
    /// totals, then each account's site, endpoint, credentials and request budget.
    pub fn summary(&self) -> String {
        let n = self.targets.len();
        let accounts = self.accounts.len();
        let mut line = format!(
            "config OK: {n} target{}, {accounts} account{}, interval {}, active_interval {}",
            if n == 1 { "" } else { "s" },
            if accounts == 1 { "" } else { "s" },
            humantime::format_duration(self.polling.interval),
            humantime::format_duration(self.polling.active_interval),
        );
        for a in &self.accounts {
            let targets = self.targets.iter().filter(|t| t.account == a.name).count();
            line.push_str(&format!(
                "; account {}: {targets} target{}, site {}, region {} ({}), signature {}, {} requests/s, concurrency {}, credentials {}",
                a.name,
                if targets == 1 { "" } else { "s" },
                a.sas.site(),
                a.sas.region,
                a.sas.endpoint_url(),
                a.sas.signature_version,
                a.requests_per_second,
                a.concurrency,
                credentials_source(a.credentials.as_ref()),
            ));
        }
        for d in &self.discovery {
            let how = match &d.kind {
                SourceKind::SasImages { listing, .. } | SourceKind::SasContainers { listing } => {
                    format!(
                        "refresh {}, page_size {}, {} filter{}",
                        humantime::format_duration(listing.refresh),
                        listing.page_size,
                        listing.filters.len(),
                        if listing.filters.len() == 1 { "" } else { "s" }
                    )
                }
                SourceKind::Kubernetes(k) => format!(
                    "cluster {}, {}",
                    k.cluster,
                    if k.namespaces.is_empty() {
                        "every namespace".to_owned()
                    } else {
                        format!("namespaces {}", k.namespaces.join(", "))
                    }
                ),
            };
            line.push_str(&format!(
                "; discovery {} for account {}: {how}, keep_for {}",
                d.source_name(),
                d.account,
                humantime::format_duration(d.keep_for),
            ));
        }
        line
    }
}

/// How the summary names the configured credentials source.
fn credentials_source(c: Option<&CredentialsConfig>) -> String {
    let Some(c) = c else {
        return "default chain".to_owned();
    };
    if let Some(arn) = &c.ram_role_arn {
        format!("ram role {arn}")
    } else if c.access_key_id.is_some() {
        "static".to_owned()
    } else if let Some(profile) = &c.profile {
        format!("profile {profile}")
    } else if let Some(role) = &c.ecs_ram_role {
        if role.is_empty() {
            "ecs role (discovered)".to_owned()
        } else {
            format!("ecs role {role}")
        }
    } else if c.oidc.is_some() {
        "oidc".to_owned()
    } else {
        "default chain".to_owned()
    }
}

impl SasConfig {
    /// The client settings this section asks for.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            endpoint: self.endpoint_url(),
            signature_version: self.signature_version,
            timeout: self.timeout,
            timezone: self.timezone,
        }
    }
}
