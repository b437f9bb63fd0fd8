//! The YAML configuration file (SPEC section 3).
//!
//! The file is walked as a marked node tree rather than deserialised with serde, because serde
//! stops at the first error while an operator running `--config.check` wants every problem, each
//! with its file, line and column, in one go.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::FixedOffset;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::{LoadError, LoaderOptions, Node, Span};
use secrecy::SecretString;

/// Label names the exporter puts on its own series, so a target may not reuse them.
pub const RESERVED_LABELS: &[&str] = &[
    "digest",
    "status",
    "task_id",
    "task_name",
    "task_type",
    "source",
    "target_type",
    "raw_status",
    "id",
    "action",
    "code",
];

const TOP_KEYS: &[&str] = &[
    "sas",
    "credentials",
    "polling",
    "targets",
    "target_files",
    "state_file",
];
const SAS_KEYS: &[&str] = &[
    "region",
    "endpoint",
    "signature_version",
    "timeout",
    "timezone",
];
const CREDENTIALS_KEYS: &[&str] = &[
    "access_key_id",
    "access_key_secret",
    "access_key_secret_file",
    "security_token",
    "profile",
    "ram_role_arn",
    "role_session_name",
    "external_id",
    "policy",
    "duration",
    "ecs_ram_role",
    "oidc",
    "sts_endpoint",
    "metadata_endpoint",
];
const OIDC_KEYS: &[&str] = &["role_arn", "provider_arn", "token_file"];
const POLLING_KEYS: &[&str] = &[
    "interval",
    "active_interval",
    "concurrency",
    "requests_per_second",
    "max_retries",
];
const TARGET_KEYS: &[&str] = &["digest", "labels"];

const DEFAULT_REGION: &str = "cn-shanghai";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
// Evaluated at compile time, so a bad constant fails the build instead of panicking at run time.
const DEFAULT_TIMEZONE: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(tz) => tz,
    None => panic!("invalid default timezone"),
};
const UTC: FixedOffset = match FixedOffset::east_opt(0) {
    Some(tz) => tz,
    None => panic!("invalid UTC offset"),
};
const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);
const DEFAULT_ACTIVE_INTERVAL: Duration = Duration::from_secs(30);
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest refresh interval accepted (a week).
const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
// humantime accepts nanoseconds; a sub-millisecond HTTP timeout can only be a typo.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

// STS's own bounds for DurationSeconds.
const MIN_ROLE_DURATION: Duration = Duration::from_secs(15 * 60);
const MAX_ROLE_DURATION: Duration = Duration::from_secs(12 * 3600);

const MAINLAND_HOST: &str = "tds.cn-shanghai.aliyuncs.com";
const INTERNATIONAL_HOST: &str = "tds.ap-southeast-1.aliyuncs.com";

/// The whole validated configuration; built only through [`Config::parse`] or [`Config::load`].
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// How to reach the Security Center API.
    pub sas: SasConfig,
    /// Explicit credentials; `None` means the Alibaba Cloud default credential chain.
    pub credentials: Option<CredentialsConfig>,
    /// Refresh schedule and request limits.
    pub polling: PollingConfig,
    /// Digests listed inline, de-duplicated, in file order.
    pub targets: Vec<Target>,
    /// Globs of extra target files, kept as written so a reload re-expands them.
    pub target_files: Vec<String>,
    /// Where results survive restarts; `None` disables persistence.
    pub state_file: Option<PathBuf>,
}

/// The `sas` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SasConfig {
    /// Region id; it selects the endpoint when no override is given.
    pub region: String,
    /// Endpoint override, normalised to `scheme://host[:port]` without a trailing slash.
    pub endpoint: Option<String>,
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

/// Request signing scheme; V3 is what the official SDKs use today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    /// HMAC-SHA1 query signing, for gateways that still expect it.
    V1,
    /// ACS3-HMAC-SHA256 header signing.
    #[default]
    V3,
}

impl fmt::Display for SignatureVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureVersion::V1 => "v1",
            SignatureVersion::V3 => "v3",
        })
    }
}

/// The `credentials` section; secrets are wrapped so `Debug` and logs cannot leak them.
///
/// At most one source is set: static keys (`access_key_id`), `profile`, `ecs_ram_role` or
/// `oidc`. `ram_role_arn` assumes a role on top of the static keys, or on top of the default
/// chain when it stands alone. With no source and no role, the default chain is used.
#[derive(Clone, Debug, Default)]
pub struct CredentialsConfig {
    /// AccessKey id (not secret, but useless alone).
    pub access_key_id: Option<String>,
    /// Secret written into the config; discouraged, `access_key_secret_file` is preferred.
    pub access_key_secret: Option<SecretString>,
    /// File holding the secret, read by the credentials provider so rotation needs no reload.
    pub access_key_secret_file: Option<PathBuf>,
    /// STS token for temporary credentials.
    pub security_token: Option<SecretString>,
    /// A profile of the Alibaba Cloud CLI config or of the INI credentials file.
    pub profile: Option<String>,
    /// Role to assume with STS AssumeRole.
    pub ram_role_arn: Option<String>,
    /// Session name for AssumeRole or AssumeRoleWithOIDC.
    pub role_session_name: Option<String>,
    /// AssumeRole `ExternalId`.
    pub external_id: Option<String>,
    /// AssumeRole `Policy`, a JSON object kept as written.
    pub policy: Option<String>,
    /// Lifetime of the assumed role's credentials, 15m to 12h.
    pub duration: Option<Duration>,
    /// ECS instance RAM role; `Some("")` means "ask the metadata service for the role name".
    pub ecs_ram_role: Option<String>,
    /// AssumeRoleWithOIDC (RRSA on Kubernetes).
    pub oidc: Option<OidcConfig>,
    /// STS endpoint override, normalised like `sas.endpoint`; the default chain uses it too.
    pub sts_endpoint: Option<String>,
    /// ECS metadata service override, normalised like `sas.endpoint`; the default chain uses it too.
    pub metadata_endpoint: Option<String>,
}

/// The `credentials.oidc` mapping; every key is required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    /// The RAM role to assume.
    pub role_arn: String,
    /// The OIDC identity provider registered in RAM.
    pub provider_arn: String,
    /// File holding the OIDC token, re-read on every refresh.
    pub token_file: PathBuf,
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
    /// Extra labels put on every series of this digest.
    pub labels: BTreeMap<String, String>,
    /// Where the digest was written, to point at duplicates across files.
    pub location: Location,
}

/// A position in a config or target file, as editors and compilers print it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// File name as given to the parser.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One thing wrong with the configuration, located so the operator can jump to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where the offending key or value starts.
    pub location: Location,
    /// What is wrong and what is expected instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file was read but is wrong; every problem found is listed, in file order.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(problems: &[Problem]) -> String {
    let n = problems.len();
    let mut out = format!(
        "{n} problem{} in the configuration:",
        if n == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push('\n');
        out.push_str(&p.to_string());
    }
    out
}

impl Config {
    /// Reads and validates a config file, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let env = |name: &str| std::env::var(name).ok();
        let (config, literal_secret) = parse_config(&text, &shown, &env)?;
        if literal_secret {
            warn_if_readable_by_others(path);
        }
        Ok(config)
    }

    /// Validates config text; `file` only labels problems and `env` makes expansion testable.
    pub fn parse(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        parse_config(text, file, env).map(|(config, _)| config)
    }

    /// One line for `--config.check`, so an operator sees what the exporter understood.
    pub fn summary(&self) -> String {
        let n = self.targets.len();
        format!(
            "config OK: {n} target{}, region {} ({}), signature {}, interval {}, active_interval {}, {} requests/s, credentials {}",
            if n == 1 { "" } else { "s" },
            self.sas.region,
            self.sas.endpoint_url(),
            self.sas.signature_version,
            humantime::format_duration(self.polling.interval),
            humantime::format_duration(self.polling.active_interval),
            self.polling.requests_per_second,
            credentials_source(self.credentials.as_ref()),
        )
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
    /// Base URL of the API, without a trailing slash.
    pub fn endpoint_url(&self) -> String {
        match &self.endpoint {
            Some(url) => url.clone(),
            None => format!("https://{}", endpoint_host_for_region(&self.region)),
        }
    }
}

/// Security Center data lives per site, not per region, so only two public hosts exist.
pub fn endpoint_host_for_region(region: &str) -> &'static str {
    if region.starts_with("cn-") || region.contains("-finance-") || region.contains("-gov-") {
        MAINLAND_HOST
    } else {
        INTERNATIONAL_HOST
    }
}

/// Brings a digest to the one form used everywhere (lower-case bare hex); `Err` explains why not.
pub fn normalize_digest(s: &str) -> Result<String, String> {
    let bare = match s.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &s[7..],
        _ => s,
    };
    if bare.len() == 64 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(bare.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected 64 hex characters after an optional \"sha256:\" prefix, got {s:?}"
        ))
    }
}

/// Parses a target file (a YAML list shaped like `targets`), de-duplicated within the file.
pub fn parse_targets(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Target>, ConfigError> {
    let mut d = Decoder::new(file, env);
    let targets = match d.load(text, true) {
        Some(root) => {
            let targets = d.targets(&root, "targets");
            d.dedupe(targets)
        }
        None => Vec::new(),
    };
    d.finish(targets)
}

/// Merges target lists from several files: identical duplicates collapse, conflicting ones are problems.
pub fn dedupe_targets(targets: Vec<Target>) -> Result<Vec<Target>, Vec<Problem>> {
    let (kept, problems) = merge_targets(targets);
    if problems.is_empty() {
        Ok(kept)
    } else {
        Err(problems)
    }
}

/// Merges target lists: identical duplicates collapse, and of conflicting ones the first is kept
/// and each later one is reported (a reload must go on with what is consistent).
pub fn merge_targets(targets: Vec<Target>) -> (Vec<Target>, Vec<Problem>) {
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut kept: Vec<Target> = Vec::with_capacity(targets.len());
    let mut problems = Vec::new();
    for t in targets {
        match first.get(&t.digest) {
            Some(&i) => {
                let earlier = &kept[i];
                if earlier.labels != t.labels {
                    let at = if earlier.location.file == t.location.file {
                        format!("line {}", earlier.location.line)
                    } else {
                        format!("{}:{}", earlier.location.file, earlier.location.line)
                    };
                    problems.push(Problem {
                        location: t.location.clone(),
                        message: format!(
                            "duplicate digest {} with different labels (first at {at}); give both entries the same labels or remove one",
                            t.digest
                        ),
                    });
                }
            }
            None => {
                first.insert(t.digest.clone(), kept.len());
                kept.push(t);
            }
        }
    }
    (kept, problems)
}

fn parse_config(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, bool), ConfigError> {
    let mut d = Decoder::new(file, env);
    let config = match d.load(text, false) {
        Some(Node::Mapping(root)) => d.config(&root),
        // The loader guarantees a mapping here; anything else was already reported.
        _ => Config::default(),
    };
    let literal_secret = d.literal_secret;
    d.finish((config, literal_secret))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o044 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the config file holds a literal access_key_secret and is readable by group or others; use access_key_secret_file or restrict its permissions"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// The outcome of reading one optional value, so cross-field checks can skip values already reported.
enum Field<T> {
    Absent,
    Invalid,
    Set(T, Span),
}

impl<T> Field<T> {
    fn or(self, default: T) -> T {
        match self {
            Field::Set(v, _) => v,
            _ => default,
        }
    }

    /// The effective value, or `None` when it was invalid (and already reported).
    fn resolved(&self, default: T) -> Option<T>
    where
        T: Copy,
    {
        match self {
            Field::Absent => Some(default),
            Field::Invalid => None,
            Field::Set(v, _) => Some(*v),
        }
    }
}

impl<T> Field<Option<T>> {
    /// Span of a value that is really there (an empty string counts as absent).
    fn present(&self) -> Option<Span> {
        match self {
            Field::Set(Some(_), span) => Some(*span),
            _ => None,
        }
    }
}

/// Whether the operator wrote a value, valid or not (an empty string counts as absent).
trait Given {
    fn given(&self) -> bool;
}

impl<T> Given for Field<Option<T>> {
    fn given(&self) -> bool {
        matches!(self, Field::Set(Some(_), _) | Field::Invalid)
    }
}

impl Given for Field<String> {
    fn given(&self) -> bool {
        !matches!(self, Field::Absent)
    }
}

impl Given for Field<OidcConfig> {
    fn given(&self) -> bool {
        !matches!(self, Field::Absent)
    }
}

/// Every `credentials` key as read, before the cross-field rules.
struct CredentialFields {
    id: Field<Option<String>>,
    secret: Field<Option<String>>,
    file: Field<Option<String>>,
    token: Field<Option<String>>,
    profile: Field<Option<String>>,
    role_arn: Field<Option<String>>,
    session: Field<Option<String>>,
    external_id: Field<Option<String>>,
    policy: Field<Option<String>>,
    duration: Field<Option<Duration>>,
    /// Never `Set` to "absent": an empty value means "discover the role name".
    ecs: Field<String>,
    oidc: Field<OidcConfig>,
    sts: Field<Option<String>>,
    metadata: Field<Option<String>>,
}

fn position(span: &Span) -> (usize, usize) {
    span.start().map_or((0, 0), |m| (m.line(), m.column()))
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

struct Decoder<'a> {
    file: &'a str,
    env: Env<'a>,
    problems: Vec<Problem>,
    literal_secret: bool,
}

impl<'a> Decoder<'a> {
    fn new(file: &'a str, env: Env<'a>) -> Self {
        Decoder {
            file,
            env,
            problems: Vec::new(),
            literal_secret: false,
        }
    }

    fn location(&self, span: &Span) -> Location {
        let (line, column) = position(span);
        Location {
            file: self.file.to_owned(),
            line,
            column,
        }
    }

    fn report(&mut self, span: &Span, message: String) {
        let location = self.location(span);
        self.problems.push(Problem { location, message });
    }

    fn finish<T>(mut self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            // Stable, so problems found at one spot keep the order they were found in.
            self.problems
                .sort_by_key(|p| (p.location.line, p.location.column));
            Err(ConfigError::Invalid(self.problems))
        }
    }

    /// Parses the YAML; `None` after reporting a syntax problem.
    fn load(&mut self, text: &str, sequence: bool) -> Option<Node> {
        let options = LoaderOptions::default()
            .prevent_coercion(true)
            .error_on_duplicate_keys(true);
        let options = if sequence {
            options.toplevel_sequence()
        } else {
            options.toplevel_mapping()
        };
        let empty = || {
            if sequence {
                Node::from(MarkedSequenceNode::new_empty(Span::new_blank()))
            } else {
                Node::from(MarkedMappingNode::new_empty(Span::new_blank()))
            }
        };
        let (span, message) = match marked_yaml::parse_yaml_with_options(0, text, options) {
            // An empty stream comes back as an empty mapping whatever the requested top level.
            Ok(Node::Mapping(m)) if sequence && m.is_empty() => return Some(empty()),
            Ok(node) => return Some(node),
            Err(LoadError::TopLevelMustBeMapping(_) | LoadError::TopLevelMustBeSequence(_))
                if is_blank_document(text) =>
            {
                return Some(empty());
            }
            Err(LoadError::TopLevelMustBeMapping(m)) => (
                Span::new_start(m),
                format!(
                    "the top level must be a mapping with keys such as {}",
                    TOP_KEYS.join(", ")
                ),
            ),
            Err(LoadError::TopLevelMustBeSequence(m)) => (
                Span::new_start(m),
                "a target file must hold a YAML list of targets (\"- digest: ...\")".to_owned(),
            ),
            Err(LoadError::UnexpectedAnchor(m)) => (
                Span::new_start(m),
                "YAML anchors and aliases are not supported; write the value out".to_owned(),
            ),
            Err(LoadError::UnexpectedTag(m)) => (
                Span::new_start(m),
                "YAML tags (such as !!str) are not supported; quote the value instead".to_owned(),
            ),
            Err(LoadError::MappingKeyMustBeScalar(m)) => (
                Span::new_start(m),
                "mapping keys must be plain strings".to_owned(),
            ),
            Err(LoadError::ScanError(m, e)) => {
                (Span::new_start(m), format!("invalid YAML: {}", e.info()))
            }
            Err(LoadError::DuplicateKey(dup)) => {
                let first = self.location(dup.prev_key.span());
                (
                    *dup.key.span(),
                    format!(
                        "duplicate key \"{}\" (first at line {})",
                        dup.key.as_str(),
                        first.line
                    ),
                )
            }
        };
        self.report(&span, message);
        None
    }

    fn config(&mut self, root: &MarkedMappingNode) -> Config {
        self.check_keys(root, "", TOP_KEYS);
        let empty = MarkedMappingNode::new_empty(Span::new_blank());
        let sas = self.section(root, "sas").unwrap_or(&empty);
        let sas = self.sas(sas);
        let credentials =
            entry(root, "credentials").and_then(|(key, node)| self.credentials(key.span(), node));
        let polling = self.section(root, "polling").unwrap_or(&empty);
        let polling = self.polling(polling);
        let targets = match root.get_node("targets") {
            Some(node) => {
                let targets = self.targets(node, "targets");
                self.dedupe(targets)
            }
            None => Vec::new(),
        };
        let target_files = match root.get_node("target_files") {
            Some(node) => self.target_files(node, "target_files"),
            None => Vec::new(),
        };
        let state_file = self
            .value(root, "state_file", "", optional(|s| Ok(PathBuf::from(s))))
            .or(None);
        Config {
            sas,
            credentials,
            polling,
            targets,
            target_files,
            state_file,
        }
    }

    fn sas(&mut self, m: &MarkedMappingNode) -> SasConfig {
        let p = "sas";
        self.check_keys(m, p, SAS_KEYS);
        SasConfig {
            region: self
                .value(m, "region", p, parse_region)
                .or(DEFAULT_REGION.to_owned()),
            endpoint: self
                .value(m, "endpoint", p, optional(parse_endpoint))
                .or(None),
            signature_version: self
                .value(m, "signature_version", p, parse_signature_version)
                .or(SignatureVersion::default()),
            timeout: self
                .value(m, "timeout", p, duration_in(MIN_TIMEOUT, Some(MAX_TIMEOUT)))
                .or(DEFAULT_TIMEOUT),
            timezone: self
                .value(m, "timezone", p, parse_timezone)
                .or(DEFAULT_TIMEZONE),
        }
    }

    fn credentials(&mut self, key: &Span, node: &Node) -> Option<CredentialsConfig> {
        let p = "credentials";
        let empty = MarkedMappingNode::new_empty(Span::new_blank());
        let m = match self.mapping(node, p) {
            Field::Set(m, _) => m,
            Field::Absent => &empty,
            Field::Invalid => return None,
        };
        self.check_keys(m, p, CREDENTIALS_KEYS);
        let string = optional(|s| Ok(s.to_owned()));
        let f = CredentialFields {
            id: self.value(m, "access_key_id", p, &string),
            secret: self.value(m, "access_key_secret", p, &string),
            file: self.value(m, "access_key_secret_file", p, &string),
            token: self.value(m, "security_token", p, &string),
            profile: self.value(m, "profile", p, &string),
            role_arn: self.value(m, "ram_role_arn", p, optional(parse_role_arn)),
            session: self.value(m, "role_session_name", p, optional(parse_session_name)),
            external_id: self.value(m, "external_id", p, &string),
            policy: self.policy(m, p),
            duration: self.value(
                m,
                "duration",
                p,
                optional(duration_in(MIN_ROLE_DURATION, Some(MAX_ROLE_DURATION))),
            ),
            ecs: self.ecs_ram_role(m, p),
            oidc: match entry(m, "oidc") {
                Some((key, node)) => self.oidc(key.span(), node, &join(p, "oidc")),
                None => Field::Absent,
            },
            sts: self.value(m, "sts_endpoint", p, optional(parse_endpoint)),
            metadata: self.value(m, "metadata_endpoint", p, optional(parse_metadata_endpoint)),
        };
        if let Some(Node::Scalar(s)) = m.get_node("access_key_secret") {
            // Only a secret typed into the file makes the file itself sensitive.
            self.literal_secret |=
                !s.as_str().is_empty() && !is_null(s) && !s.as_str().contains("${");
        }
        self.check_credentials(key, m, &f);
        Some(CredentialsConfig {
            access_key_id: f.id.or(None),
            access_key_secret: f.secret.or(None).map(SecretString::from),
            access_key_secret_file: f.file.or(None).map(PathBuf::from),
            security_token: f.token.or(None).map(SecretString::from),
            profile: f.profile.or(None),
            ram_role_arn: f.role_arn.or(None),
            role_session_name: f.session.or(None),
            external_id: f.external_id.or(None),
            policy: f.policy.or(None),
            duration: f.duration.or(None),
            ecs_ram_role: match f.ecs {
                Field::Set(role, _) => Some(role),
                _ => None,
            },
            oidc: match f.oidc {
                Field::Set(oidc, _) => Some(oidc),
                _ => None,
            },
            sts_endpoint: f.sts.or(None),
            metadata_endpoint: f.metadata.or(None),
        })
    }

    /// `credentials.policy`: a JSON object, kept as written since STS takes it as a string.
    fn policy(&mut self, m: &MarkedMappingNode, p: &str) -> Field<Option<String>> {
        if let Some(node @ (Node::Mapping(_) | Node::Sequence(_))) = m.get_node("policy") {
            // Unquoted `{"Version": ...}` is a YAML flow mapping, which reads as JSON to the eye.
            self.report(
                node.span(),
                format!(
                    "{}: expected the policy document as a JSON string; quote it, e.g. policy: '{{\"Version\": \"1\", \"Statement\": [...]}}'",
                    join(p, "policy")
                ),
            );
            return Field::Invalid;
        }
        self.value(m, "policy", p, optional(parse_policy))
    }

    /// `credentials.ecs_ram_role`, where an empty value is meaningful: unlike every other key, a
    /// bare `ecs_ram_role:` (null) or `ecs_ram_role: ""` yields `Some("")`, "discover the role
    /// name from the metadata service", since there is no other way to spell that.
    fn ecs_ram_role(&mut self, m: &MarkedMappingNode, p: &str) -> Field<String> {
        let Some(node) = m.get_node("ecs_ram_role") else {
            return Field::Absent;
        };
        let path = join(p, "ecs_ram_role");
        match self.text(node, &path) {
            Field::Absent => Field::Set(String::new(), *node.span()),
            Field::Set(role, span) => match parse_ecs_role(&role) {
                Ok(()) => Field::Set(role, span),
                Err(why) => {
                    self.report(&span, format!("{path}: {why}"));
                    Field::Invalid
                }
            },
            Field::Invalid => Field::Invalid,
        }
    }

    /// `credentials.oidc`, a mapping of three required keys; `key` is where `oidc:` is written.
    fn oidc(&mut self, key: &Span, node: &Node, path: &str) -> Field<OidcConfig> {
        let m = match self.mapping(node, path) {
            Field::Set(m, _) => m,
            Field::Absent => {
                self.report(
                    key,
                    format!(
                        "{path}: expected a mapping with role_arn, provider_arn and token_file, got an empty value"
                    ),
                );
                return Field::Invalid;
            }
            Field::Invalid => return Field::Invalid,
        };
        self.check_keys(m, path, OIDC_KEYS);
        let role_arn = self.value(m, "role_arn", path, optional(parse_role_arn));
        let provider_arn = self.value(m, "provider_arn", path, optional(parse_provider_arn));
        let token_file = self.value(m, "token_file", path, optional(|s| Ok(PathBuf::from(s))));
        for (name, set, what) in [
            (
                "role_arn",
                role_arn.given(),
                "the RAM role to assume, acs:ram::ACCOUNT:role/NAME",
            ),
            (
                "provider_arn",
                provider_arn.given(),
                "the OIDC provider registered in RAM, acs:ram::ACCOUNT:oidc-provider/NAME",
            ),
            (
                "token_file",
                token_file.given(),
                "the file holding the OIDC token, such as a projected service account token",
            ),
        ] {
            if !set {
                self.report(key, format!("{path}: {name} is required ({what})"));
            }
        }
        match (role_arn, provider_arn, token_file) {
            (
                Field::Set(Some(role_arn), _),
                Field::Set(Some(provider_arn), _),
                Field::Set(Some(token_file), _),
            ) => Field::Set(
                OidcConfig {
                    role_arn,
                    provider_arn,
                    token_file,
                },
                *key,
            ),
            _ => Field::Invalid,
        }
    }

    /// Cross-field rules. A value already reported as invalid still counts as given (it can be
    /// ambiguous with another source, and it satisfies what needs it), but it is not itself told
    /// that it needs something else, so one mistake yields one problem.
    fn check_credentials(&mut self, key: &Span, m: &MarkedMappingNode, f: &CredentialFields) {
        let statics = [&f.id, &f.secret, &f.file, &f.token];
        if !statics.iter().any(|f| matches!(f, Field::Invalid)) {
            self.check_static_keys(f);
        }

        let anything = [
            &f.id,
            &f.secret,
            &f.file,
            &f.token,
            &f.profile,
            &f.role_arn,
            &f.session,
            &f.external_id,
            &f.policy,
            &f.sts,
            &f.metadata,
        ]
        .iter()
        .any(|f| f.given())
            || f.duration.given()
            || f.ecs.given()
            || f.oidc.given();
        if !anything {
            self.report(
                key,
                "credentials: no credentials given; set access_key_id with access_key_secret_file, profile, ram_role_arn, ecs_ram_role or oidc, or remove the section to use the default credential chain".to_owned(),
            );
        }

        // Sources in file order; each conflicting one is reported once, against the first it clashes with.
        let key_at = |name: &str| entry(m, name).map(|(k, _)| *k.span());
        let mut sources: Vec<(&str, Span)> = [
            ("access_key_id", f.id.given()),
            ("profile", f.profile.given()),
            ("ecs_ram_role", f.ecs.given()),
            ("oidc", f.oidc.given()),
            ("ram_role_arn", f.role_arn.given()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .filter_map(|(name, _)| key_at(name).map(|at| (name, at)))
        .collect();
        sources.sort_by_key(|(_, at)| position(at));
        for (j, (later, at)) in sources.iter().enumerate() {
            // ram_role_arn is a modifier of static keys, not a rival source.
            let clash = sources[..j].iter().find(|(earlier, _)| {
                !matches!(
                    (*earlier, *later),
                    ("access_key_id", "ram_role_arn") | ("ram_role_arn", "access_key_id")
                )
            });
            if let Some((earlier, _)) = clash {
                self.report(
                    at,
                    format!(
                        "credentials: ambiguous: both {earlier} and {later} are given; choose one source"
                    ),
                );
            }
        }

        let role = f.role_arn.given();
        let oidc = f.oidc.given();
        if let (Some(at), false) = (f.session.present(), role || oidc) {
            self.report(
                &at,
                "credentials: role_session_name is set but neither ram_role_arn nor oidc is; it names the session of an assumed role, so set one of them or remove it".to_owned(),
            );
        }
        if let (Some(at), false) = (f.duration.present(), role || oidc) {
            self.report(
                &at,
                "credentials: duration is set but neither ram_role_arn nor oidc is; it is the lifetime of an assumed role's credentials, so set one of them or remove it".to_owned(),
            );
        }
        for (name, field) in [("external_id", &f.external_id), ("policy", &f.policy)] {
            if let (Some(at), false) = (field.present(), role) {
                self.report(
                    &at,
                    format!(
                        "credentials: {name} is set but ram_role_arn is not; it only applies to AssumeRole, so set ram_role_arn or remove it"
                    ),
                );
            }
        }
    }

    fn check_static_keys(&mut self, f: &CredentialFields) {
        let (id, secret, file, token) = (&f.id, &f.secret, &f.file, &f.token);
        if let (Some(at), Some(_)) = (secret.present(), file.present()) {
            self.report(
                &at,
                "credentials: access_key_secret and access_key_secret_file are mutually exclusive; keep only one (preferably access_key_secret_file)".to_owned(),
            );
        }
        let secret_source = secret
            .present()
            .map(|at| ("access_key_secret", at))
            .or_else(|| file.present().map(|at| ("access_key_secret_file", at)));
        match (id.present(), secret_source) {
            (Some(at), None) => self.report(
                &at,
                "credentials: access_key_id is set but neither access_key_secret nor access_key_secret_file is; set one of them".to_owned(),
            ),
            (None, Some((name, at))) => self.report(
                &at,
                format!("credentials: {name} is set but access_key_id is not; set access_key_id too"),
            ),
            (None, None) => {
                if let Some(at) = token.present() {
                    self.report(
                        &at,
                        "credentials: security_token is set but access_key_id and access_key_secret are not; an STS token needs both".to_owned(),
                    );
                }
            }
            (Some(_), Some(_)) => {}
        }
    }

    fn polling(&mut self, m: &MarkedMappingNode) -> PollingConfig {
        let p = "polling";
        self.check_keys(m, p, POLLING_KEYS);
        // An upper bound keeps due-time arithmetic far from overflow.
        let interval = self.value(
            m,
            "interval",
            p,
            duration_in(MIN_INTERVAL, Some(MAX_INTERVAL)),
        );
        let active = self.value(
            m,
            "active_interval",
            p,
            duration_in(MIN_INTERVAL, Some(MAX_INTERVAL)),
        );
        let effective_interval = interval.resolved(DEFAULT_INTERVAL);
        if let (Field::Set(a, at), Some(i)) = (&active, effective_interval) {
            if *a > i {
                self.report(
                    at,
                    format!(
                        "polling.active_interval: must not be longer than polling.interval ({}), got {}",
                        humantime::format_duration(i),
                        humantime::format_duration(*a)
                    ),
                );
            }
        }
        let interval = interval.or(DEFAULT_INTERVAL);
        PollingConfig {
            interval,
            // A short `interval` alone must not trip the active_interval ≤ interval rule.
            active_interval: active.or(DEFAULT_ACTIVE_INTERVAL.min(interval)),
            concurrency: self
                .value(m, "concurrency", p, integer_in(1usize, 1024))
                .or(4),
            requests_per_second: self.value(m, "requests_per_second", p, parse_rate).or(5.0),
            max_retries: self.value(m, "max_retries", p, integer_in(0u32, 10)).or(3),
        }
    }

    fn targets(&mut self, node: &Node, path: &str) -> Vec<Target> {
        let items = match self.sequence(node, path) {
            Field::Set(items, _) => items,
            _ => return Vec::new(),
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.target(item, &format!("{path}[{i}]")))
            .collect()
    }

    fn target(&mut self, node: &Node, path: &str) -> Option<Target> {
        let m = match self.mapping(node, path) {
            Field::Set(m, _) => m,
            Field::Absent => {
                self.report(
                    node.span(),
                    format!("{path}: expected a mapping with a digest, got an empty entry"),
                );
                return None;
            }
            Field::Invalid => return None,
        };
        self.check_keys(m, path, TARGET_KEYS);
        let labels = match m.get_node("labels") {
            Some(node) => self.labels(node, &join(path, "labels")),
            None => BTreeMap::new(),
        };
        match self.value(m, "digest", path, normalize_digest) {
            Field::Set(digest, at) => Some(Target {
                digest,
                labels,
                location: self.location(&at),
            }),
            Field::Absent => {
                // A block mapping's own mark lands after its first key; the key itself reads better.
                let at = m.keys().next().map_or(*m.span(), |k| *k.span());
                self.report(
                    &at,
                    format!("{path}: digest is required (64 hex characters)"),
                );
                None
            }
            Field::Invalid => None,
        }
    }

    fn labels(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        let Field::Set(m, _) = self.mapping(node, path) else {
            return labels;
        };
        for (key, value) in m.iter() {
            let name = key.as_str();
            if let Err(why) = check_label_name(name) {
                self.report(key.span(), format!("{path}: {why}"));
            }
            match self.text(value, &join(path, name)) {
                Field::Set(v, _) => {
                    labels.insert(name.to_owned(), v);
                }
                Field::Absent => {
                    labels.insert(name.to_owned(), String::new());
                }
                Field::Invalid => {}
            }
        }
        labels
    }

    fn dedupe(&mut self, targets: Vec<Target>) -> Vec<Target> {
        match dedupe_targets(targets) {
            Ok(targets) => targets,
            Err(problems) => {
                self.problems.extend(problems);
                Vec::new()
            }
        }
    }

    fn target_files(&mut self, node: &Node, path: &str) -> Vec<String> {
        let items = match self.sequence(node, path) {
            Field::Set(items, _) => items,
            _ => return Vec::new(),
        };
        let mut globs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match self.text(item, &item_path) {
                Field::Set(glob, _) if !glob.is_empty() => globs.push(glob),
                Field::Invalid => {}
                _ => self.report(
                    item.span(),
                    format!("{item_path}: expected a file path or glob, got an empty value"),
                ),
            }
        }
        globs
    }

    /// Reports every key not in `known`, naming the section and the keys it accepts.
    fn check_keys(&mut self, m: &MarkedMappingNode, path: &str, known: &[&str]) {
        for key in m.keys() {
            if !known.contains(&key.as_str()) {
                let place = if path.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in {path}")
                };
                self.report(
                    key.span(),
                    format!(
                        "unknown key {:?} {place} (expected one of: {})",
                        key.as_str(),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// A section that must be a mapping; `None` when absent, null or (reported) of the wrong kind.
    fn section<'n>(
        &mut self,
        root: &'n MarkedMappingNode,
        key: &str,
    ) -> Option<&'n MarkedMappingNode> {
        match self.mapping(root.get_node(key)?, key) {
            Field::Set(m, _) => Some(m),
            _ => None,
        }
    }

    fn mapping<'n>(&mut self, node: &'n Node, path: &str) -> Field<&'n MarkedMappingNode> {
        match node {
            Node::Mapping(m) => Field::Set(m, *m.span()),
            Node::Scalar(s) if is_null(s) => Field::Absent,
            other => self.wrong_kind(other, path, "a mapping"),
        }
    }

    fn sequence<'n>(&mut self, node: &'n Node, path: &str) -> Field<&'n [Node]> {
        match node {
            Node::Sequence(s) => Field::Set(s.as_slice(), *s.span()),
            Node::Scalar(s) if is_null(s) => Field::Absent,
            other => self.wrong_kind(other, path, "a list"),
        }
    }

    /// A scalar's text after `${VAR}` expansion.
    fn text(&mut self, node: &Node, path: &str) -> Field<String> {
        match node {
            Node::Scalar(s) if is_null(s) => Field::Absent,
            Node::Scalar(s) => match expand(s.as_str(), self.env) {
                Ok(text) => Field::Set(text, *s.span()),
                Err(errors) => {
                    for e in errors {
                        self.report(s.span(), format!("{path}: {e}"));
                    }
                    Field::Invalid
                }
            },
            other => self.wrong_kind(other, path, "a single value"),
        }
    }

    /// The value under `key` in `m`, converted by `parse`, whose `Err` says what was expected.
    fn value<T>(
        &mut self,
        m: &MarkedMappingNode,
        key: &str,
        section: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Field<T> {
        let Some(node) = m.get_node(key) else {
            return Field::Absent;
        };
        let path = join(section, key);
        match self.text(node, &path) {
            Field::Set(text, span) => match parse(&text) {
                Ok(v) => Field::Set(v, span),
                Err(why) => {
                    self.report(&span, format!("{path}: {why}"));
                    Field::Invalid
                }
            },
            Field::Absent => Field::Absent,
            Field::Invalid => Field::Invalid,
        }
    }

    fn wrong_kind<T>(&mut self, node: &Node, path: &str, expected: &str) -> Field<T> {
        let got = match node {
            Node::Scalar(_) => "a single value",
            Node::Mapping(_) => "a mapping",
            Node::Sequence(_) => "a list",
        };
        self.report(
            node.span(),
            format!("{path}: expected {expected}, got {got}"),
        );
        Field::Invalid
    }
}

fn entry<'n>(m: &'n MarkedMappingNode, key: &str) -> Option<(&'n MarkedScalarNode, &'n Node)> {
    m.iter().find(|(k, _)| k.as_str() == key)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// YAML's null: an empty, `~` or `null` plain scalar (quoted ones are strings).
fn is_null(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// Whether text the loader refused as a top level is really an empty document (comments, `---`, null).
fn is_blank_document(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        let line = line
            .strip_prefix("---")
            .or_else(|| line.strip_prefix("..."))
            .unwrap_or(line)
            .trim_start();
        line.is_empty() || line.starts_with('#') || matches!(line, "~" | "null" | "Null" | "NULL")
    })
}

/// Expands `${NAME}` from `env`; `$$` is a literal `$`, any other `$` stays as written.
fn expand(text: &str, env: Env<'_>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                errors.push(
                    "unterminated \"${\" (expected ${NAME}; write $$ for a literal $)".to_owned(),
                );
                rest = "";
                break;
            };
            let name = &tail[..end];
            if !is_identifier(name) {
                errors.push(format!(
                    "invalid variable name {name:?} in \"${{{name}}}\" (expected letters, digits and _, not starting with a digit)"
                ));
            } else {
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None => errors.push(format!("environment variable {name} is not set")),
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_label_name(name: &str) -> Result<(), String> {
    if !is_identifier(name) {
        Err(format!(
            "invalid label name {name:?} (expected [a-zA-Z_][a-zA-Z0-9_]*)"
        ))
    } else if name.starts_with("__") {
        Err(format!(
            "label name {name:?} starts with \"__\", which Prometheus reserves for internal use"
        ))
    } else if RESERVED_LABELS.contains(&name) {
        Err(format!(
            "label name {name:?} is used by the exporter itself (reserved: {})",
            RESERVED_LABELS.join(", ")
        ))
    } else {
        Ok(())
    }
}

/// Wraps a parser so that an empty string means "not set", as for `${VAR}` set to "".
fn optional<T>(
    parse: impl Fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<Option<T>, String> {
    move |s| {
        if s.is_empty() {
            Ok(None)
        } else {
            parse(s).map(Some)
        }
    }
}

fn duration_in(min: Duration, max: Option<Duration>) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| {
        let d = humantime::parse_duration(s)
            .map_err(|_| format!("expected a duration such as 30s, 5m or 1h30m, got {s:?}"))?;
        let show = humantime::format_duration;
        if d < min {
            Err(format!("must be at least {}, got {s}", show(min)))
        } else if let Some(max) = max.filter(|max| d > *max) {
            Err(format!("must be at most {}, got {s}", show(max)))
        } else {
            Ok(d)
        }
    }
}

fn integer_in<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    move |s| match s.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "expected an integer from {min} to {max}, got {s:?}"
        )),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    // Below one request in ~17 minutes nothing useful happens; the bounds also keep the rate
    // limiter's arithmetic finite.
    match s.parse::<f64>() {
        Ok(r) if (0.001..=10_000.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0.001 to 10000, got {s:?}")),
    }
}

fn parse_region(s: &str) -> Result<String, String> {
    let mut parts = s.split('-');
    let head_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    let mut rest = parts.peekable();
    let has_rest = rest.peek().is_some();
    let rest_ok = rest.all(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if head_ok && has_rest && rest_ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected a region id such as cn-hangzhou or ap-southeast-1, got {s:?}"
        ))
    }
}

fn parse_signature_version(s: &str) -> Result<SignatureVersion, String> {
    if s.eq_ignore_ascii_case("v1") {
        Ok(SignatureVersion::V1)
    } else if s.eq_ignore_ascii_case("v3") {
        Ok(SignatureVersion::V3)
    } else {
        Err(format!("expected v1 or v3, got {s:?}"))
    }
}

fn parse_timezone(s: &str) -> Result<FixedOffset, String> {
    let fail = || format!("expected a UTC offset such as +08:00, -05:30, Z or UTC, got {s:?}");
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Ok(UTC);
    }
    let sign = match s.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(fail()),
    };
    let b = s.as_bytes();
    let two = |i: usize| -> Option<i32> {
        let (h, l) = (*b.get(i)?, *b.get(i + 1)?);
        (h.is_ascii_digit() && l.is_ascii_digit())
            .then(|| i32::from(h - b'0') * 10 + i32::from(l - b'0'))
    };
    match (b.len(), two(1), b.get(3), two(4)) {
        (6, Some(hh), Some(b':'), Some(mm)) if hh <= 23 && mm <= 59 => {
            FixedOffset::east_opt(sign * (hh * 3600 + mm * 60)).ok_or_else(fail)
        }
        _ => Err(fail()),
    }
}

fn parse_role_arn(s: &str) -> Result<String, String> {
    parse_arn(
        s,
        "role",
        "a RAM role ARN such as acs:ram::123456789012:role/exporter",
    )
}

fn parse_provider_arn(s: &str) -> Result<String, String> {
    parse_arn(
        s,
        "oidc-provider",
        "an OIDC provider ARN such as acs:ram::123456789012:oidc-provider/ack-rrsa",
    )
}

/// A RAM ARN `acs:ram::ACCOUNT:KIND/NAME`, checked only as far as STS would reject it.
fn parse_arn(s: &str, kind: &str, expected: &str) -> Result<String, String> {
    let named = s
        .strip_prefix("acs:ram::")
        .and_then(|rest| rest.split_once(&format!(":{kind}/")))
        .is_some_and(|(_, name)| !name.is_empty());
    if named {
        Ok(s.to_owned())
    } else {
        Err(format!("expected {expected}, got {s:?}"))
    }
}

/// STS's rule for RoleSessionName.
fn parse_session_name(s: &str) -> Result<String, String> {
    let ok = (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected 2 to 64 characters among letters, digits, '.', '_', '@' and '-', got {s:?}"
        ))
    }
}

/// A RAM policy document: it must be a JSON object, kept as written.
fn parse_policy(s: &str) -> Result<String, String> {
    let expected = "expected a JSON object such as {\"Version\": \"1\", \"Statement\": [...]}";
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(_)) => Ok(s.to_owned()),
        Ok(other) => {
            let kind = match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
            };
            Err(format!("{expected}, got {kind}"))
        }
        Err(e) => Err(format!("{expected}, but it is not valid JSON: {e}")),
    }
}

/// A RAM role name; it goes into the metadata URL path, so nothing else may slip in.
fn parse_ecs_role(s: &str) -> Result<(), String> {
    let ok = s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !s.bytes().all(|b| b == b'.');
    if ok || s.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "expected a RAM role name (up to 64 letters, digits, '.', '_' and '-'), or \"\" to discover it, got {s:?}"
        ))
    }
}

/// Checks an endpoint override by hand (no URL crate) and returns it as `scheme://host[:port]`.
fn parse_endpoint(s: &str) -> Result<String, String> {
    parse_url(
        s,
        "https://host[:port] (http:// only for a loopback host)",
        false,
    )
}

/// Like [`parse_endpoint`], but plain http is fine: the metadata service speaks nothing else.
fn parse_metadata_endpoint(s: &str) -> Result<String, String> {
    parse_url(s, "http://host[:port] or https://host[:port]", true)
}

fn parse_url(s: &str, expected: &str, http_anywhere: bool) -> Result<String, String> {
    let fail = |why: &str| {
        Err(format!(
            "expected an absolute URL {expected}, got {s:?}: {why}"
        ))
    };
    let Some((scheme, rest)) = s.split_once("://") else {
        return fail("no scheme");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return fail("unsupported scheme");
    }
    let authority = match rest.find(['/', '?', '#']) {
        Some(i) if &rest[i..] == "/" => &rest[..i],
        Some(_) => return fail("a path, query or fragment is not allowed"),
        None => rest,
    };
    if authority.contains('@') {
        return fail("user information is not allowed");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inner, after)) = bracketed.split_once(']') else {
            return fail("unterminated IPv6 address");
        };
        if inner.parse::<Ipv6Addr>().is_err() {
            return fail("invalid IPv6 address");
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return fail("invalid host"),
            },
        };
        (inner, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.parse::<Ipv6Addr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return fail("invalid host");
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return fail("invalid port");
        }
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    if scheme == "http" && !loopback && !http_anywhere {
        return fail("plain http to a host that is not loopback (127.0.0.0/8, ::1, localhost)");
    }
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expand_handles_every_dollar_form() {
        assert_eq!(expand("x${A}y", &env).as_deref(), Ok("xalphay"));
        assert_eq!(expand("$$${A}$$", &env).as_deref(), Ok("$alpha$"));
        assert_eq!(expand("${EMPTY}", &env).as_deref(), Ok(""));
        assert_eq!(expand("a$b $ $1 $", &env).as_deref(), Ok("a$b $ $1 $"));
        assert_eq!(expand("$$$", &env).as_deref(), Ok("$$"));
        assert_eq!(
            expand("${NOPE}-${A}-${1X}", &env),
            Err(vec![
                "environment variable NOPE is not set".to_owned(),
                "invalid variable name \"1X\" in \"${1X}\" (expected letters, digits and _, not starting with a digit)".to_owned(),
            ])
        );
        assert_eq!(
            expand("ab${A", &env),
            Err(vec![
                "unterminated \"${\" (expected ${NAME}; write $$ for a literal $)".to_owned()
            ])
        );
        assert!(expand("${}", &env).is_err());
        assert_eq!(expand("é${A}ü", &env).as_deref(), Ok("éalphaü"));
    }

    #[test]
    fn endpoint_accepts_https_and_loopback_http() {
        let ok = [
            (
                "https://tds.ap-southeast-1.aliyuncs.com",
                "https://tds.ap-southeast-1.aliyuncs.com",
            ),
            (
                "https://tds.ap-southeast-1.aliyuncs.com/",
                "https://tds.ap-southeast-1.aliyuncs.com",
            ),
            ("HTTPS://example.com:8443", "https://example.com:8443"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://127.9.8.7", "http://127.9.8.7"),
            ("http://localhost:1/", "http://localhost:1"),
            ("http://LocalHost", "http://LocalHost"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://[2001:db8::1]", "https://[2001:db8::1]"),
        ];
        for (input, want) in ok {
            assert_eq!(parse_endpoint(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn endpoint_rejects_everything_else() {
        let bad = [
            ("tds.aliyuncs.com", "no scheme"),
            ("ftp://example.com", "unsupported scheme"),
            ("http://example.com", "plain http to a host"),
            ("http://128.0.0.1", "plain http to a host"),
            ("http://[2001:db8::1]", "plain http to a host"),
            ("https://example.com/api", "a path, query or fragment"),
            ("https://example.com?x=1", "a path, query or fragment"),
            ("https://example.com/#f", "a path, query or fragment"),
            ("https://u:p@example.com", "user information"),
            ("https://", "invalid host"),
            ("https://exa mple.com", "invalid host"),
            ("https://[::1", "unterminated IPv6"),
            ("https://[zz]", "invalid IPv6"),
            ("https://[::1]x", "invalid host"),
            ("https://example.com:", "invalid port"),
            ("https://example.com:0", "invalid port"),
            ("https://example.com:65536", "invalid port"),
            ("https://example.com:+1", "invalid port"),
            ("https://a:1:2", "invalid port"),
        ];
        for (input, why) in bad {
            match parse_endpoint(input) {
                Err(e) => assert!(e.contains(&format!("got {input:?}: {why}")), "{input}: {e}"),
                Ok(v) => panic!("{input} accepted as {v}"),
            }
        }
    }

    #[test]
    fn region_shape() {
        for ok in [
            "cn-hangzhou",
            "ap-southeast-1",
            "cn-shanghai-finance-1",
            "us-east-1",
        ] {
            assert!(parse_region(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "cn",
            "CN-hangzhou",
            "cn-",
            "-cn",
            "cn--x",
            "1cn-x",
            "cn_hz",
            "cn-hz ",
        ] {
            assert!(parse_region(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timezone_forms() {
        assert_eq!(
            parse_timezone("+08:00").map(|t| t.local_minus_utc()),
            Ok(28800)
        );
        assert_eq!(
            parse_timezone("-05:30").map(|t| t.local_minus_utc()),
            Ok(-19800)
        );
        assert_eq!(parse_timezone("Z").map(|t| t.local_minus_utc()), Ok(0));
        assert_eq!(parse_timezone("utc").map(|t| t.local_minus_utc()), Ok(0));
        for bad in [
            "08:00", "+8:00", "+08:60", "+24:00", "+0800", "+08:00 ", "+０8:00", "",
        ] {
            assert!(parse_timezone(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn blank_documents() {
        assert!(is_blank_document(""));
        assert!(is_blank_document("# only\n   # comments\n"));
        assert!(is_blank_document("---\n...\n"));
        assert!(is_blank_document("--- # c\n~\n"));
        assert!(!is_blank_document("foo\n"));
        assert!(!is_blank_document("--- foo\n"));
    }
}
