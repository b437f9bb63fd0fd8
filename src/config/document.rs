//! The document walk: the top level, `sas`, `polling`, `targets` and `target_files`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use marked_yaml::types::MarkedMappingNode;
use marked_yaml::{Node, Span};

use super::decoder::{Decoder, Field, TOP_KEYS, entry, join};
use super::merge::dedupe_targets;
use super::types::{AccountConfig, Config, DEFAULT_ACCOUNT, PollingConfig, SasConfig, Target};
use super::values::parse_endpoint;
use super::values::{
    check_label_name, duration_in, integer_in, normalize_digest, parse_rate, parse_region,
    parse_signature_version, parse_timezone,
};

const SAS_KEYS: &[&str] = &[
    "region",
    "endpoint",
    "signature_version",
    "timeout",
    "timezone",
];
const POLLING_KEYS: &[&str] = &[
    "interval",
    "active_interval",
    "concurrency",
    "requests_per_second",
    "max_retries",
];
const TARGET_KEYS: &[&str] = &["digest", "account", "labels"];

const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest refresh interval accepted (a week).
const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
// humantime accepts nanoseconds; a sub-millisecond HTTP timeout can only be a typo.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

impl Decoder<'_> {
    pub(super) fn config(&mut self, root: &MarkedMappingNode) -> Config {
        self.check_keys(root, "", TOP_KEYS);
        let empty = MarkedMappingNode::new_empty(Span::new_blank());
        let polling = self.section(root, "polling").unwrap_or(&empty);
        let polling = self.polling(polling);
        let accounts = match entry(root, "accounts") {
            Some((_, node)) => {
                for section in ["sas", "credentials"] {
                    if let Some((key, _)) = entry(root, section) {
                        self.report(
                            key.span(),
                            format!(
                                "{section}: not allowed beside accounts; with accounts: every account has its own {section} section"
                            ),
                        );
                    }
                }
                self.accounts(node, &polling)
            }
            None => {
                let sas = self.section(root, "sas").unwrap_or(&empty);
                let sas = self.sas(sas, "sas");
                let credentials = entry(root, "credentials")
                    .and_then(|(key, node)| self.credentials(key.span(), node, "credentials"));
                vec![AccountConfig {
                    sas,
                    credentials,
                    ..AccountConfig::new(DEFAULT_ACCOUNT, &polling)
                }]
            }
        };
        self.accounts = accounts.iter().map(|a| a.name.clone()).collect();
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
        let discovery = match root.get_node("discovery") {
            Some(node) => self.discovery(node),
            None => Vec::new(),
        };
        let state_file = self
            .optional(root, "state_file", "", |s| Ok(PathBuf::from(s)))
            .ok();
        Config {
            accounts,
            polling,
            targets,
            target_files,
            discovery,
            state_file,
        }
    }

    pub(super) fn sas(&mut self, m: &MarkedMappingNode, p: &str) -> SasConfig {
        self.check_keys(m, p, SAS_KEYS);
        let defaults = SasConfig::default();
        SasConfig {
            region: self.value(m, "region", p, parse_region).or(defaults.region),
            endpoint: self.optional(m, "endpoint", p, parse_endpoint).ok(),
            signature_version: self
                .value(m, "signature_version", p, parse_signature_version)
                .or(defaults.signature_version),
            timeout: self
                .value(m, "timeout", p, duration_in(MIN_TIMEOUT, MAX_TIMEOUT))
                .or(defaults.timeout),
            timezone: self
                .value(m, "timezone", p, parse_timezone)
                .or(defaults.timezone),
        }
    }

    fn polling(&mut self, m: &MarkedMappingNode) -> PollingConfig {
        let p = "polling";
        self.check_keys(m, p, POLLING_KEYS);
        let defaults = PollingConfig::default();
        // An upper bound keeps due-time arithmetic far from overflow.
        let interval = self.value(m, "interval", p, duration_in(MIN_INTERVAL, MAX_INTERVAL));
        let active = self.value(
            m,
            "active_interval",
            p,
            duration_in(MIN_INTERVAL, MAX_INTERVAL),
        );
        let effective_interval = interval.resolved(defaults.interval);
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
        let interval = interval.or(defaults.interval);
        PollingConfig {
            interval,
            // A short `interval` alone must not trip the active_interval ≤ interval rule.
            active_interval: active.or(defaults.active_interval.min(interval)),
            concurrency: self
                .value(m, "concurrency", p, integer_in(1usize, 1024))
                .or(defaults.concurrency),
            requests_per_second: self
                .value(m, "requests_per_second", p, parse_rate)
                .or(defaults.requests_per_second),
            max_retries: self
                .value(m, "max_retries", p, integer_in(0u32, 10))
                .or(defaults.max_retries),
        }
    }

    pub(super) fn targets(&mut self, node: &Node, path: &str) -> Vec<Target> {
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
        let account = self.target_account(m, path);
        match self.value(m, "digest", path, normalize_digest) {
            Field::Set(digest, at) => Some(Target {
                digest,
                account: account?,
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

    pub(super) fn labels(&mut self, node: &Node, path: &str) -> BTreeMap<String, String> {
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

    pub(super) fn dedupe(&mut self, targets: Vec<Target>) -> Vec<Target> {
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
}
